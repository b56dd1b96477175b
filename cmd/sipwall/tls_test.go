package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/sipwall/sipwall/sbc/config"
	"github.com/sipwall/sipwall/sbc/e2e"
)

// pki is a throw-away CA with a server certificate for sipwall and client
// certificates for a trunk, all written as PEM files in dir.
type pki struct {
	dir                string
	ca                 *x509.Certificate
	caKey              *ecdsa.PrivateKey
	pool               *x509.CertPool
	caFile             string
	serverCert, server string // PEM files: certificate, key
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	p.ca, p.caKey = newCert(t, "sipwall test CA", nil, nil, true, nil, nil)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.ca)
	p.caFile = writePEM(t, p.dir, "ca.pem", "CERTIFICATE", p.ca.Raw)
	p.serverCert, p.server = p.issue(t, "server", []string{"sbc.test"}, []net.IP{net.ParseIP("127.0.0.1")})
	return p
}

// issue writes a certificate for names signed by the CA and returns the
// certificate and key files.
func (p *pki) issue(t *testing.T, file string, names []string, ips []net.IP) (string, string) {
	t.Helper()
	c, k := newCert(t, names[0], p.ca, p.caKey, false, names, ips)
	return writeCertKey(t, p.dir, file, c, k)
}

func newCert(t *testing.T, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool, names []string, ips []net.IP) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: names, IPAddresses: ips,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		tmpl.ExtKeyUsage = nil
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func writeCertKey(t *testing.T, dir, name string, c *x509.Certificate, k *ecdsa.PrivateKey) (string, string) {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, dir, name+".pem", "CERTIFICATE", c.Raw), writePEM(t, dir, name+".key", "EC PRIVATE KEY", der)
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	f := filepath.Join(dir, name)
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// withTLS adds tls and wss listeners on free ports and the certificate
// files; it returns the adjust function and the two addresses.
func withTLS(t *testing.T, p *pki, more func(*config.Config)) (func(*config.Config), string, string) {
	tlsAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	wssAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	return func(c *config.Config) {
		c.Listen = append(c.Listen,
			config.Listener{Transport: "tls", Addr: tlsAddr, Side: "external"},
			config.Listener{Transport: "wss", Addr: wssAddr, Side: "external"})
		c.TLS.CertFile, c.TLS.KeyFile = p.serverCert, p.server
		if more != nil {
			more(c)
		}
	}, tlsAddr, wssAddr
}

// A whole call over SIP over TLS with sipp as the caller. This sipp has no
// TLS, so socat carries its TCP stream over TLS (verifying sipwall's
// certificate against the test CA); sipwall sees a TLS connection.
func TestTLSCallWithSipp(t *testing.T) {
	e2e.SkipIfShort(t)
	socat, err := exec.LookPath("socat")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("socat is missing (Debian package socat; scripts/install-test-tools.sh installs it)")
		}
		t.Skip("socat is missing (Debian package socat): it carries sipp's TCP over TLS")
	}
	p := newPKI(t)
	adjust, tlsAddr, _ := withTLS(t, p, nil)
	a, _ := startDemo(t, adjust)
	relay := "127.0.0.2:" + strconv.Itoa(freePort(t))
	host, port, _ := net.SplitHostPort(tlsAddr)
	rhost, rport, _ := net.SplitHostPort(relay)
	cmd := exec.Command(socat, "-d",
		"TCP-LISTEN:"+rport+",bind="+rhost+",reuseaddr,fork",
		"OPENSSL:"+host+":"+port+",cafile="+p.caFile+",commonname=sbc.test,verify=1")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitTCP(t, relay)
	sp := e2e.Sipp{Name: "tls-caller", Scenario: "uac_auth_call.xml", IP: "127.0.0.2", Remote: relay, Transport: e2e.Transports[1],
		Service: "1000", AuthUser: "alice", AuthPass: "demo", AuthURI: "1000@" + relay, Timeout: 20 * time.Second}.Start(t)
	if r := sp.Wait(30 * time.Second); r.ExitCode != 0 || r.Count("SuccessfulCall(C)") != 1 {
		t.Fatalf("call over TLS: sipp exit %d, stats %v\n%s", r.ExitCode, r.Stats, sp.Messages())
	}
	if a.certs == nil || a.certs.Stats().NotAfter.IsZero() {
		t.Fatalf("no certificate served: %+v", a.certs)
	}
}

func waitTCP(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The TLS listener accepts TLS 1.2 and 1.3 only.
func TestTLSOldVersionsRefused(t *testing.T) {
	p := newPKI(t)
	adjust, tlsAddr, wssAddr := withTLS(t, p, nil)
	startDemo(t, adjust)
	for _, addr := range []string{tlsAddr, wssAddr} {
		for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
			c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: p.pool, ServerName: "sbc.test", MinVersion: v, MaxVersion: v})
			if err == nil {
				c.Close()
				t.Fatalf("%s: TLS version %x accepted", addr, v)
			}
		}
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: p.pool, ServerName: "sbc.test", MinVersion: v, MaxVersion: v})
			if err != nil {
				t.Fatalf("%s: TLS version %x refused: %v", addr, v, err)
			}
			c.Close()
		}
	}
}

// A phone registers over secure WebSocket (RFC 7118) with a Go WebSocket
// client, answering the digest challenge.
func TestWSSRegister(t *testing.T) {
	p := newPKI(t)
	adjust, _, wssAddr := withTLS(t, p, nil)
	startDemo(t, adjust)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := ws.Dialer{TLSConfig: &tls.Config{RootCAs: p.pool, ServerName: "sbc.test"}, Protocols: []string{"sip"}, Timeout: 5 * time.Second}
	conn, _, hs, err := d.Dial(ctx, "wss://"+wssAddr)
	if err != nil {
		t.Fatalf("WSS dial: %v", err)
	}
	defer conn.Close()
	if hs.Protocol != "sip" {
		t.Fatalf("WebSocket subprotocol %q, want sip", hs.Protocol)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	ask := func(authz string, cseq int) (int, textproto.MIMEHeader) {
		t.Helper()
		msg := "REGISTER sip:" + testRealm + " SIP/2.0\r\n" +
			"Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK-wss-" + strconv.Itoa(cseq) + "\r\n" +
			"Max-Forwards: 70\r\n" +
			"From: <sip:alice@" + testRealm + ">;tag=wss1\r\n" +
			"To: <sip:alice@" + testRealm + ">\r\n" +
			"Call-ID: wss-register-1\r\n" +
			"CSeq: " + strconv.Itoa(cseq) + " REGISTER\r\n" +
			"Contact: <sip:alice@df7jal23ls0d.invalid;transport=ws>\r\n" +
			"Expires: 300\r\n" + authz +
			"Content-Length: 0\r\n\r\n"
		if err := wsutil.WriteClientText(conn, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		for {
			b, err := wsutil.ReadServerText(conn)
			if err != nil {
				t.Fatalf("WSS read: %v", err)
			}
			code, hdr := parseResponse(t, b)
			if code >= 200 {
				return code, hdr
			}
		}
	}
	code, hdr := ask("", 1)
	if code != 401 {
		t.Fatalf("first REGISTER: %d, want 401", code)
	}
	var chal string
	for _, h := range hdr.Values("Www-Authenticate") {
		if strings.Contains(h, "algorithm=MD5") {
			chal = h
		}
	}
	if chal == "" {
		t.Fatalf("no MD5 challenge among %q", hdr.Values("Www-Authenticate"))
	}
	code, _ = ask(digestMD5(chal, "alice", "demo", "REGISTER", "sip:"+testRealm), 2)
	if code != 200 {
		t.Fatalf("authenticated REGISTER over WSS: %d, want 200", code)
	}
}

func parseResponse(t *testing.T, b []byte) (int, textproto.MIMEHeader) {
	t.Helper()
	r := textproto.NewReader(bufio.NewReader(strings.NewReader(string(b))))
	line, err := r.ReadLine()
	if err != nil || !strings.HasPrefix(line, "SIP/2.0 ") || len(line) < 11 {
		t.Fatalf("not a response: %q", b)
	}
	code, _ := strconv.Atoi(line[8:11])
	hdr, err := r.ReadMIMEHeader()
	if err != nil {
		t.Fatalf("response headers: %v\n%s", err, b)
	}
	return code, hdr
}

var paramRE = regexp.MustCompile(`(\w+)="?([^",]*)"?`)

// digestMD5 answers an MD5 digest challenge with qop=auth (RFC 7616).
func digestMD5(chal, user, pass, method, uri string) string {
	p := map[string]string{}
	for _, m := range paramRE.FindAllStringSubmatch(strings.TrimPrefix(chal, "Digest "), -1) {
		p[m[1]] = m[2]
	}
	h := func(s string) string { x := md5.Sum([]byte(s)); return hex.EncodeToString(x[:]) }
	ha1 := h(user + ":" + p["realm"] + ":" + pass)
	ha2 := h(method + ":" + uri)
	cnonce, nc := "0a4f113b", "00000001"
	resp := h(ha1 + ":" + p["nonce"] + ":" + nc + ":" + cnonce + ":auth:" + ha2)
	return fmt.Sprintf("Authorization: Digest username=%q, realm=%q, nonce=%q, uri=%q, response=%q, algorithm=MD5, qop=auth, nc=%s, cnonce=%q, opaque=%q\r\n",
		user, p["realm"], p["nonce"], uri, resp, nc, cnonce, p["opaque"])
}

// A trunk identified by its client certificate (mutual TLS) calls without
// digest; the same call without a certificate is challenged, and a
// certificate from another CA does not get through the handshake.
func TestMTLSTrunk(t *testing.T) {
	p := newPKI(t)
	trunkCert, trunkKey := p.issue(t, "trunk", []string{"trunk.carrier.example"}, nil)
	rogueCA, rogueKey := newCert(t, "rogue CA", nil, nil, true, nil, nil)
	rc, rk := newCert(t, "trunk.carrier.example", rogueCA, rogueKey, false, []string{"trunk.carrier.example"}, nil)
	rogueCert, rogueKeyFile := writeCertKey(t, p.dir, "rogue", rc, rk)
	adjust, tlsAddr, _ := withTLS(t, p, func(c *config.Config) {
		c.TLS.ClientCA = p.caFile
		c.Auth.Trusted = append(c.Auth.Trusted, config.Trusted{Name: "carrier", CertNames: []string{"trunk.carrier.example"}})
	})
	startDemo(t, adjust)
	call := func(certFile, keyFile string) (int, error) {
		t.Helper()
		cfg := &tls.Config{RootCAs: p.pool, ServerName: "sbc.test"}
		if certFile != "" {
			kp, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			// Presented whatever CAs the server asks for: a Go client
			// would otherwise keep a certificate of another CA to itself.
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &kp, nil }
		}
		c, err := tls.Dial("tcp", tlsAddr, cfg)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		local := c.LocalAddr().String()
		sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40100 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
		msg := "INVITE sip:1000@sbc.test SIP/2.0\r\n" +
			"Via: SIP/2.0/TLS " + local + ";branch=z9hG4bK-mtls-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "\r\n" +
			"Max-Forwards: 70\r\n" +
			"From: <sip:+15551230000@trunk.carrier.example>;tag=mtls\r\n" +
			"To: <sip:1000@sbc.test>\r\n" +
			"Call-ID: mtls-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "\r\n" +
			"CSeq: 1 INVITE\r\n" +
			"Contact: <sip:trunk@" + local + ";transport=tls>\r\n" +
			"Content-Type: application/sdp\r\n" +
			"Content-Length: " + strconv.Itoa(len(sdp)) + "\r\n\r\n" + sdp
		if _, err := c.Write([]byte(msg)); err != nil {
			return 0, err
		}
		br := bufio.NewReader(c)
		for {
			r := textproto.NewReader(br)
			line, err := r.ReadLine()
			if err != nil {
				return 0, err
			}
			hdr, err := r.ReadMIMEHeader()
			if err != nil {
				return 0, err
			}
			if n, _ := strconv.Atoi(hdr.Get("Content-Length")); n > 0 {
				if _, err := br.Discard(n); err != nil {
					return 0, err
				}
			}
			code, _ := strconv.Atoi(strings.Fields(line)[1])
			if code > 100 {
				return code, nil
			}
		}
	}
	if code, err := call(trunkCert, trunkKey); err != nil || code == 401 || code == 407 || code >= 400 {
		t.Fatalf("trunk with its certificate: %d, %v; want the call through (180/200)", code, err)
	}
	if code, err := call("", ""); err != nil || code != 407 {
		t.Fatalf("without a certificate: %d, %v; want 407", code, err)
	}
	// The client's side of a TLS 1.3 handshake ends before the server has
	// checked its certificate: the refusal shows as the connection failing
	// instead of an answer.
	if code, err := call(rogueCert, rogueKeyFile); err == nil {
		t.Fatalf("certificate from another CA got through the handshake (answer %d)", code)
	}
}

// testRealm is the demo's digest realm (auth.realm's default).
var testRealm = config.Default().Auth.Realm

// Toward an upstream with transport=tls sipwall opens a verified TLS
// connection: the health check's OPTIONS reaches a PBX whose certificate
// carries the configured tls_name, and nothing reaches one whose
// certificate does not.
func TestUpstreamOverTLS(t *testing.T) {
	for _, tc := range []struct {
		name, tlsName string
		want          bool
	}{{"right name", "pbx.inside.test", true}, {"wrong name", "other.inside.test", false}} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPKI(t)
			pbxCert, pbxKey := p.issue(t, "pbx", []string{"pbx.inside.test"}, nil)
			kp, err := tls.LoadX509KeyPair(pbxCert, pbxKey)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := tls.Listen("tcp", "127.0.0.11:0", &tls.Config{Certificates: []tls.Certificate{kp}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			got, attempts := make(chan string, 8), make(chan error, 8)
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						c.SetDeadline(time.Now().Add(3 * time.Second))
						err := c.(*tls.Conn).Handshake()
						attempts <- err
						if err != nil {
							return
						}
						if line, err := bufio.NewReader(c).ReadString('\n'); err == nil {
							got <- line
						}
					}()
				}
			}()
			adjust, _, _ := withTLS(t, p, func(c *config.Config) {
				c.Upstreams = append(c.Upstreams, config.Upstream{Name: "pbx-tls", URI: "sip:" + ln.Addr().String() + ";transport=tls",
					TLSName: tc.tlsName, Priority: 2, Weight: 1})
				c.TLS.UpstreamCA = p.caFile
				c.Health.Interval = config.Duration(300 * time.Millisecond)
				c.Health.Timeout = config.Duration(250 * time.Millisecond)
			})
			startDemo(t, adjust)
			select {
			case err := <-attempts:
				if tc.want && err != nil {
					t.Fatalf("handshake with the PBX failed: %v", err)
				}
				if !tc.want && err == nil {
					t.Fatal("handshake succeeded with a certificate for another name")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("sipwall never connected to the TLS upstream")
			}
			if tc.want {
				select {
				case line := <-got:
					if !strings.HasPrefix(line, "OPTIONS sip:") {
						t.Fatalf("first line over TLS: %q, want an OPTIONS health check", line)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("no OPTIONS over the TLS connection")
				}
			} else {
				select {
				case line := <-got:
					t.Fatalf("message sent over an unverified connection: %q", line)
				case <-time.After(time.Second):
				}
			}
		})
	}
}
