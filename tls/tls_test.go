package sbctls

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const serverName = "sip.example.test"

// fileManager starts a Manager on a certificate file pair issued by ca.
func fileManager(t *testing.T, ca *testCA, mod func(*Options)) (*Manager, string, Options) {
	t.Helper()
	dir := t.TempDir()
	certPEM, keyPEM, _ := ca.issue(t, leafOpts{dns: []string{serverName}})
	opt := Options{
		CertFile:       writeFile(t, dir, "cert.pem", certPEM),
		KeyFile:        writeFile(t, dir, "key.pem", keyPEM),
		ReloadInterval: 50 * time.Millisecond,
		Log:            testLogger(t),
	}
	if mod != nil {
		mod(&opt)
	}
	m, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go m.Run(ctx)
	t.Cleanup(func() { cancel(); m.Close() })
	return m, dir, opt
}

func clientCfg(ca *testCA) *tls.Config {
	return &tls.Config{RootCAs: ca.pool(), ServerName: serverName}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(Options{}); err != ErrNoCertificate {
		t.Fatalf("empty options: %v", err)
	}
	_, err := New(Options{CertFile: "/nonexistent/cert.pem", KeyFile: "/nonexistent/key.pem"})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/cert.pem") {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := New(Options{Names: []string{"a.example"}, Storage: t.TempDir()}); err == nil {
		t.Fatal("ACME without a challenge accepted")
	}
	if _, err := New(Options{Names: []string{"a.example"}, HTTPPort: 80}); err == nil {
		t.Fatal("ACME without storage accepted")
	}
	if Fingerprint(tls.ConnectionState{}) != "" {
		t.Fatal("fingerprint without verified chains")
	}
	if id, ok := Identity(tls.ConnectionState{}); ok || id != "" {
		t.Fatal("identity without verified chains")
	}
}

func TestFileCertificateReload(t *testing.T) {
	ca := newTestCA(t, "files CA")
	m, dir, _ := fileManager(t, ca, nil)
	addr := serve(t, m.ServerConfig(), ListenerOptions{})

	r, err := exchange(addr, clientCfg(ca))
	if err != nil {
		t.Fatal(err)
	}
	first := r.serial
	r.conn.Close()
	if m.Stats().NotAfter.IsZero() {
		t.Fatal("NotAfter not set")
	}

	// replace the pair: the new certificate is served after a reload
	certPEM, keyPEM, leaf := ca.issue(t, leafOpts{dns: []string{serverName}, notAfter: time.Now().Add(48 * time.Hour)})
	writeFile(t, dir, "key.pem", keyPEM)
	writeFile(t, dir, "cert.pem", certPEM)
	eventually(t, 5*time.Second, "the new certificate", func() bool {
		r, err := exchange(addr, clientCfg(ca))
		if err != nil {
			return false
		}
		r.conn.Close()
		return r.serial == leaf.SerialNumber.String()
	})
	if leaf.SerialNumber.String() == first {
		t.Fatal("same serial")
	}
	st := m.Stats()
	if st.Reloads < 1 || !st.NotAfter.Equal(leaf.NotAfter) {
		t.Fatalf("stats after reload: %+v", st)
	}

	// a corrupt replacement keeps the current certificate
	before := st.ReloadErrors
	writeFile(t, dir, "cert.pem", []byte("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"))
	eventually(t, 5*time.Second, "a reload error", func() bool { return m.Stats().ReloadErrors > before })
	r, err = exchange(addr, clientCfg(ca))
	if err != nil {
		t.Fatal(err)
	}
	r.conn.Close()
	if r.serial != leaf.SerialNumber.String() {
		t.Fatalf("served %s after a bad reload, want %s", r.serial, leaf.SerialNumber)
	}
	if st := m.Stats(); st.LastError == "" || st.ReloadErrors != before+1 {
		t.Fatalf("stats after bad reload: %+v", st)
	}
	// it is counted once, not at every poll
	time.Sleep(200 * time.Millisecond)
	if st := m.Stats(); st.ReloadErrors != before+1 {
		t.Fatalf("bad file counted again: %+v", st)
	}
}

func TestTLSPolicy(t *testing.T) {
	ca := newTestCA(t, "policy CA")
	m, _, _ := fileManager(t, ca, nil)
	addr := serve(t, m.ServerConfig(), ListenerOptions{})

	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		c := clientCfg(ca)
		c.MinVersion, c.MaxVersion = v, v
		if r, err := exchange(addr, c); err == nil {
			r.conn.Close()
			t.Fatalf("version %#x accepted", v)
		}
	}
	for _, suite := range []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA} {
		c := clientCfg(ca)
		c.MaxVersion = tls.VersionTLS12
		c.CipherSuites = []uint16{suite}
		if r, err := exchange(addr, c); err == nil {
			r.conn.Close()
			t.Fatalf("suite %s accepted", tls.CipherSuiteName(suite))
		}
	}
	c := clientCfg(ca)
	c.MaxVersion = tls.VersionTLS12
	c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}
	r, err := exchange(addr, c)
	if err != nil {
		t.Fatalf("TLS 1.2 AEAD: %v", err)
	}
	r.conn.Close()
	r, err = exchange(addr, clientCfg(ca))
	if err != nil {
		t.Fatalf("TLS 1.3: %v", err)
	}
	if v := r.conn.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("version %#x", v)
	}
	r.conn.Close()

	// MinVersion raises the floor; it never lowers it
	m13, _, _ := fileManager(t, ca, func(o *Options) { o.MinVersion = tls.VersionTLS13 })
	if got := m13.ServerConfig().MinVersion; got != tls.VersionTLS13 {
		t.Fatalf("min version %#x", got)
	}
	addr13 := serve(t, m13.ServerConfig(), ListenerOptions{})
	c = clientCfg(ca)
	c.MaxVersion = tls.VersionTLS12
	if r, err := exchange(addr13, c); err == nil {
		r.conn.Close()
		t.Fatal("TLS 1.2 accepted with MinVersion 1.3")
	}
	m10, _, _ := fileManager(t, ca, func(o *Options) { o.MinVersion = tls.VersionTLS10 })
	if got := m10.ServerConfig().MinVersion; got != tls.VersionTLS12 {
		t.Fatalf("min version lowered to %#x", got)
	}
}

func TestMutualTLS(t *testing.T) {
	serverCA := newTestCA(t, "server CA")
	clientCA := newTestCA(t, "trunk CA")
	otherCA := newTestCA(t, "other CA")
	dir := t.TempDir()

	goodPEM, goodKey, goodLeaf := clientCA.issue(t, leafOpts{dns: []string{"trunk.example.net"}, cn: "trunk", client: true})
	cnPEM, cnKey, _ := clientCA.issue(t, leafOpts{cn: "carrier-b", client: true})
	otherPEM, otherKey, _ := otherCA.issue(t, leafOpts{dns: []string{"trunk.example.net"}, client: true})
	expPEM, expKey, _ := clientCA.issue(t, leafOpts{dns: []string{"trunk.example.net"}, client: true,
		notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-24 * time.Hour)})
	revPEM, revKey, revLeaf := clientCA.issue(t, leafOpts{dns: []string{"revoked.example.net"}, client: true})

	crlDER, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:     big.NewInt(1),
		ThisUpdate: time.Now().Add(-time.Minute),
		NextUpdate: time.Now().Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{
			{SerialNumber: revLeaf.SerialNumber, RevocationTime: time.Now().Add(-time.Minute)},
		},
	}, clientCA.cert, clientCA.key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := writeFile(t, dir, "clients.pem", clientCA.pem)
	crlFile := writeFile(t, dir, "clients.crl", pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crlDER}))

	m, _, _ := fileManager(t, serverCA, func(o *Options) { o.ClientCAFile = caFile; o.CRLFile = crlFile })
	sc := m.ServerConfig()
	if sc.ClientAuth != tls.VerifyClientCertIfGiven || sc.ClientCAs == nil {
		t.Fatalf("client auth %v", sc.ClientAuth)
	}
	addr := serve(t, sc, ListenerOptions{})

	withCert := func(certPEM, keyPEM []byte) *tls.Config {
		c := clientCfg(serverCA)
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		// present it even when its issuer is not among the server's
		// acceptable CAs (Go's client would otherwise send none)
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
		return c
	}

	r, err := exchange(addr, withCert(goodPEM, goodKey))
	if err != nil {
		t.Fatalf("good client certificate: %v", err)
	}
	r.conn.Close()
	sum := sha256.Sum256(goodLeaf.Raw)
	if !r.ok || r.identity != "trunk.example.net" || r.fingerprint != hex.EncodeToString(sum[:]) {
		t.Fatalf("identity %q ok=%v fingerprint %q", r.identity, r.ok, r.fingerprint)
	}

	r, err = exchange(addr, withCert(cnPEM, cnKey))
	if err != nil {
		t.Fatalf("CN-only client certificate: %v", err)
	}
	r.conn.Close()
	if !r.ok || r.identity != "carrier-b" {
		t.Fatalf("CN identity %q ok=%v", r.identity, r.ok)
	}

	for name, c := range map[string]*tls.Config{
		"other CA": withCert(otherPEM, otherKey),
		"expired":  withCert(expPEM, expKey),
		"revoked":  withCert(revPEM, revKey),
	} {
		if r, err := exchange(addr, c); err == nil {
			r.conn.Close()
			t.Errorf("%s client certificate accepted", name)
		}
	}

	// a phone without a certificate still connects
	r, err = exchange(addr, clientCfg(serverCA))
	if err != nil {
		t.Fatalf("no client certificate: %v", err)
	}
	r.conn.Close()
	if r.ok || r.identity != "" || r.fingerprint != "" {
		t.Fatalf("identity without certificate: %+v", r)
	}

	// the CRL is reloaded: an empty list admits the certificate again,
	// a DER one works too
	emptyDER, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(2), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour),
	}, clientCA.cert, clientCA.key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "clients.crl", emptyDER)
	eventually(t, 5*time.Second, "the revoked certificate admitted after the CRL reload", func() bool {
		r, err := exchange(addr, withCert(revPEM, revKey))
		if err != nil {
			return false
		}
		r.conn.Close()
		return r.ok && r.identity == "revoked.example.net"
	})
}

func TestListenerHandshakeTimeout(t *testing.T) {
	ca := newTestCA(t, "timeout CA")
	m, _, _ := fileManager(t, ca, nil)
	addr := serve(t, m.ServerConfig(), ListenerOptions{HandshakeTimeout: 200 * time.Millisecond})

	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	start := time.Now()

	// others are served meanwhile
	r, err := exchange(addr, clientCfg(ca))
	if err != nil {
		t.Fatal(err)
	}
	// an established connection outlives the handshake timeout
	time.Sleep(300 * time.Millisecond)
	if _, err := roundTrip(r.conn, "later"); err != nil {
		t.Fatalf("established connection cut: %v", err)
	}
	r.conn.Close()

	_ = silent.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err = silent.Read(make([]byte, 1))
	if err == nil || !isEOFish(err) {
		t.Fatalf("silent client: %v", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 2*time.Second {
		t.Fatalf("silent client cut after %v", d)
	}
}

func TestListenerNobodyReads(t *testing.T) {
	// a connection nobody reads is still closed after the timeout
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := NewListener(inner, &tls.Config{}, ListenerOptions{HandshakeTimeout: 200 * time.Millisecond})
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case sc := <-accepted:
		defer sc.Close()
		if _, ok := sc.(interface{ ConnectionState() tls.ConnectionState }); !ok {
			t.Fatalf("%T has no ConnectionState", sc)
		}
		if sc.RemoteAddr().String() != c.LocalAddr().String() {
			t.Fatalf("remote %v, want %v", sc.RemoteAddr(), c.LocalAddr())
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Accept blocked")
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || !isEOFish(err) {
		t.Fatalf("unread connection: %v", err)
	}
}

func TestListenerRateLimit(t *testing.T) {
	ca := newTestCA(t, "rate CA")
	m, _, _ := fileManager(t, ca, nil)
	var refused atomic.Int64
	addr := serve(t, m.ServerConfig(), ListenerOptions{Rate: 0.001, Burst: 2, OnRefused: func() { refused.Add(1) }})

	for i := 0; i < 2; i++ {
		r, err := exchange(addr, clientCfg(ca))
		if err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		r.conn.Close()
	}
	if _, err := exchange(addr, clientCfg(ca)); err == nil {
		t.Fatal("third connection served")
	}
	eventually(t, 2*time.Second, "OnRefused", func() bool { return refused.Load() == 1 })

	rl := newRateLimiter(1, 1, 4)
	now := time.Now()
	for i := 0; i < 10; i++ {
		ip := net.IPv4(10, 0, 0, byte(i))
		addr, _ := netipFrom(ip)
		if !rl.allow(addr, now) {
			t.Fatal("fresh address refused")
		}
		if len(rl.buckets) > 4 {
			t.Fatalf("%d buckets", len(rl.buckets))
		}
	}
}

func TestClientConfig(t *testing.T) {
	ca := newTestCA(t, "upstream CA")
	clientCA := newTestCA(t, "our client CA")
	dir := t.TempDir()
	caFile := writeFile(t, dir, "clients.pem", clientCA.pem)
	m, _, _ := fileManager(t, ca, func(o *Options) { o.ClientCAFile = caFile })
	addr := serve(t, m.ServerConfig(), ListenerOptions{})
	root := writeFile(t, dir, "root.pem", ca.pem)
	certPEM, keyPEM, _ := clientCA.issue(t, leafOpts{dns: []string{"sbc.example.org"}, client: true})

	c, err := ClientConfig(ClientOptions{ServerName: serverName, RootFile: root,
		CertFile: writeFile(t, dir, "c.pem", certPEM), KeyFile: writeFile(t, dir, "k.pem", keyPEM)})
	if err != nil {
		t.Fatal(err)
	}
	if c.MinVersion != tls.VersionTLS12 {
		t.Fatalf("min version %#x", c.MinVersion)
	}
	r, err := exchange(addr, c)
	if err != nil {
		t.Fatal(err)
	}
	r.conn.Close()
	if !r.ok || r.identity != "sbc.example.org" {
		t.Fatalf("client certificate not seen: %+v", r)
	}

	wrong, err := ClientConfig(ClientOptions{ServerName: "other.example.test", RootFile: root})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := exchange(addr, wrong); err == nil {
		r.conn.Close()
		t.Fatal("wrong server name accepted")
	}
	sys, err := ClientConfig(ClientOptions{ServerName: serverName})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := exchange(addr, sys); err == nil {
		r.conn.Close()
		t.Fatal("private CA accepted with the system roots")
	}
	if _, err := ClientConfig(ClientOptions{RootFile: writeFile(t, dir, "empty.pem", []byte("nothing"))}); err == nil {
		t.Fatal("root file without certificates accepted")
	}
}

// UpstreamConfig accepts an upstream dialled by IP address (ServerName set
// to the address, as the SIP stack does) when its certificate chains to the
// roots and is valid for one of the configured names.
func TestUpstreamConfig(t *testing.T) {
	ca := newTestCA(t, "upstream CA")
	m, dir, _ := fileManager(t, ca, nil)
	addr := serve(t, m.ServerConfig(), ListenerOptions{})
	host, _, _ := net.SplitHostPort(addr)
	root := writeFile(t, dir, "root.pem", ca.pem)
	dial := func(rootFile string, names ...string) error {
		t.Helper()
		c, err := UpstreamConfig(ClientOptions{RootFile: rootFile}, names)
		if err != nil {
			t.Fatal(err)
		}
		c = c.Clone()
		c.ServerName = host // what the SIP stack sets
		r, err := exchange(addr, c)
		if err == nil {
			r.conn.Close()
		}
		return err
	}
	if err := dial(root, "pbx-b.example.test", serverName); err != nil {
		t.Fatalf("configured name: %v", err)
	}
	if err := dial(root, "other.example.test"); err == nil {
		t.Fatal("certificate for another name accepted")
	}
	if err := dial(root, host); err == nil {
		t.Fatal("certificate without the address as IP SAN accepted for the address")
	}
	other := writeFile(t, dir, "other.pem", newTestCA(t, "another CA").pem)
	if err := dial(other, serverName); err == nil {
		t.Fatal("certificate of another CA accepted")
	}
	if _, err := UpstreamConfig(ClientOptions{RootFile: root}, nil); err == nil {
		t.Fatal("no names accepted")
	}
}
