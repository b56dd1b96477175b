package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runDemo runs `sipwall demo args...` in-process until the test ends and
// waits for its banner.
func runDemo(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan error, 1)
	go func() { done <- cmdDemo(ctx, args, &out, &errb) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("demo: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("demo did not stop within 10s of its context")
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "Press Ctrl-C") {
		select {
		case err := <-done:
			t.Fatalf("demo ended before its banner: %v\n%s", err, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no banner within 10s:\n%s\n%s", out.String(), errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return out.String()
}

// upgradeSIP sends a WebSocket upgrade for the "sip" subprotocol (RFC
// 7118) over conn and checks the answer (RFC 6455 section 4).
func upgradeSIP(t *testing.T, conn net.Conn, host string) {
	t.Helper()
	nonce := make([]byte, 16)
	rand.Read(nonce)
	key := base64.StdEncoding.EncodeToString(nonce)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n\r\n", host, key)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.StatusCode != http.StatusSwitchingProtocols ||
		resp.Header.Get("Sec-WebSocket-Protocol") != "sip" ||
		resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		t.Fatalf("upgrade answered %s, headers %v", resp.Status, resp.Header)
	}
}

// `sipwall demo -wss ADDR` listens there with a certificate of its own
// (self-signed, ECDSA P-256, for 127.0.0.1 and localhost), answers a
// WebSocket upgrade for SIP, and names the address in its banner.
func TestDemoWSSListens(t *testing.T) {
	listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
	wss := "127.0.0.1:" + strconv.Itoa(freePort(t))
	banner := runDemo(t, "-listen", listen, "-wss", wss, "-admin", "", "-log", "warn")
	if !strings.Contains(banner, "wss://"+wss) {
		t.Errorf("the banner does not name wss://%s:\n%s", wss, banner)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", wss, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS to %s: %v", wss, err)
	}
	defer conn.Close()
	cert := conn.ConnectionState().PeerCertificates[0]
	if k, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("certificate key %T, want ECDSA P-256", cert.PublicKey)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	for _, name := range []string{"127.0.0.1", "localhost"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("the certificate, as its own root, does not verify for %s: %v", name, err)
		}
	}
	upgradeSIP(t, conn, wss)
}

// -cert and -key replace the self-signed certificate; they go together,
// and only with -wss.
func TestDemoWSSCertFlags(t *testing.T) {
	certFile, keyFile, err := writeSelfSigned(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mine, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-wss", "127.0.0.1:0", "-cert", certFile}, "-cert and -key go together"},
		{[]string{"-cert", certFile, "-key", keyFile}, "-cert and -key need -wss"},
	} {
		err := cmdDemo(context.Background(), append([]string{"-listen", listen, "-admin", ""}, tc.args...), &syncBuffer{}, &syncBuffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("demo %v: %v, want an error saying %q", tc.args, err, tc.want)
		}
	}

	wss := "127.0.0.1:" + strconv.Itoa(freePort(t))
	runDemo(t, "-listen", listen, "-wss", wss, "-cert", certFile, "-key", keyFile, "-admin", "", "-log", "warn")
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", wss, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS to %s: %v", wss, err)
	}
	defer conn.Close()
	if got := conn.ConnectionState().PeerCertificates[0].Raw; string(got) != string(mine.Certificate[0]) {
		t.Error("the WSS listener does not present the certificate given with -cert")
	}
	upgradeSIP(t, conn, wss)
}
