package sbctls

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"github.com/sipwall/sipwall/sbc/siptest"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"
)

// The ACME tests run pebble, Let's Encrypt's test ACME server, and
// pebble-challtestsrv as its DNS server (every name is 127.0.0.1). Both come
// with the Debian package "pebble".

type pebble struct {
	dir      string // ACME directory URL
	mgmt     string // management address (roots)
	caFile   string // roots of pebble's HTTPS
	httpPort int
	tlsPort  int
	cmd      *exec.Cmd
	out      *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	port, err := siptest.FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func needPebble(t *testing.T) {
	t.Helper()
	for _, b := range []string{"pebble", "pebble-challtestsrv"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not found: install the Debian package \"pebble\" (scripts/install-test-tools.sh)", b)
		}
	}
}

func startProc(t *testing.T, out *lockedBuffer, env []string, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	return cmd
}

// startPebble runs challtestsrv and pebble; validity is pebble's
// certificateValidityPeriod in seconds (0: pebble's default).
func startPebble(t *testing.T, httpPort, tlsPort, validity int) *pebble {
	t.Helper()
	needPebble(t)
	dir := t.TempDir()

	// pebble's HTTPS certificate, from a CA of our own
	ca := newTestCA(t, "pebble https CA")
	certPEM, keyPEM, _ := ca.issue(t, leafOpts{dns: []string{"localhost"}, ips: []net.IP{net.IPv4(127, 0, 0, 1)}})
	p := &pebble{httpPort: httpPort, tlsPort: tlsPort, out: &lockedBuffer{}}
	p.caFile = writeFile(t, dir, "pebble-ca.pem", ca.pem)
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p.mgmt = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p.dir = "https://" + listen + "/dir"
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        p.mgmt,
		"certificate":                    writeFile(t, dir, "cert.pem", certPEM),
		"privateKey":                     writeFile(t, dir, "key.pem", keyPEM),
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
	}}
	if validity > 0 {
		conf["pebble"].(map[string]any)["certificateValidityPeriod"] = validity
	}
	js, _ := json.Marshal(conf)
	confFile := writeFile(t, dir, "pebble-config.json", js)

	dns := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	chmgmt := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startProc(t, &lockedBuffer{}, nil, "pebble-challtestsrv",
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-dns01", dns, "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", chmgmt)
	p.cmd = startProc(t, p.out, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"},
		"pebble", "-config", confFile, "-dnsserver", dns, "-strict=false")

	insecure := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // test only: pebble's endpoints
	eventually(t, 15*time.Second, "pebble and challtestsrv to start", func() bool {
		resp, err := insecure.Get(p.dir)
		if err != nil {
			return false
		}
		resp.Body.Close()
		c, err := net.DialTimeout("tcp", chmgmt, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return resp.StatusCode == 200
	})
	return p
}

// issuingRoot fetches the root pebble issues under.
func (p *pebble) issuingRoot(t *testing.T) *x509.CertPool {
	t.Helper()
	insecure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // test only
	resp, err := insecure.Get("https://" + p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("no root from pebble: %q", b)
	}
	return pool
}

func (p *pebble) stop() {
	_ = p.cmd.Process.Kill()
	_, _ = p.cmd.Process.Wait()
}

func shortRenewChecks(t *testing.T) {
	old := renewCheckInterval
	renewCheckInterval = time.Second
	t.Cleanup(func() { renewCheckInterval = old })
}

func runManager(t *testing.T, opt Options) *Manager {
	t.Helper()
	m, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go m.Run(ctx)
	t.Cleanup(func() { cancel(); m.Close() })
	return m
}

// TestACMEObtainRestartFailure: HTTP-01 issuance, a restart serving the
// stored certificate without a new order, and a CA outage that keeps it.
func TestACMEObtainRestartFailure(t *testing.T) {
	needPebble(t)
	shortRenewChecks(t)
	const name = "sip-a.test.example"
	httpPort := freePort(t)
	p := startPebble(t, httpPort, freePort(t), 3600)
	roots := p.issuingRoot(t)
	storage := t.TempDir()
	opt := Options{
		Names: []string{name}, Email: "ops@test.example", CA: p.dir, CARootFile: p.caFile,
		HTTPPort: httpPort, HTTPAddr: "127.0.0.1", Storage: storage, Log: testLogger(t),
	}
	client := &tls.Config{RootCAs: roots, ServerName: name}

	// (1) obtain
	m1 := runManager(t, opt)
	addr1 := serve(t, m1.ServerConfig(), ListenerOptions{})
	var serial string
	eventually(t, 60*time.Second, "a certificate from pebble", func() bool {
		if m1.Stats().Obtained != 1 {
			return false
		}
		r, err := exchange(addr1, client)
		if err != nil {
			return false
		}
		r.conn.Close()
		serial = r.serial
		return true
	})
	st := m1.Stats()
	if st.NotAfter.IsZero() || st.Failures != 0 {
		t.Fatalf("stats after obtaining: %+v", st)
	}
	if d := time.Until(st.NotAfter); d > time.Hour+time.Minute || d < 50*time.Minute {
		t.Fatalf("pebble's certificate validity not applied: expires in %v", d)
	}
	m1.Close()

	// (2) restart: the stored certificate is served at once
	m2, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Stats().NotAfter.IsZero() {
		t.Fatal("stored certificate not loaded by New")
	}
	ctx, cancel := context.WithCancel(context.Background())
	go m2.Run(ctx)
	addr2 := serve(t, m2.ServerConfig(), ListenerOptions{})
	r, err := exchange(addr2, client)
	if err != nil {
		t.Fatal(err)
	}
	r.conn.Close()
	if r.serial != serial {
		t.Fatalf("restart served serial %s, want %s", r.serial, serial)
	}
	time.Sleep(1500 * time.Millisecond) // a renewal check passes
	if st := m2.Stats(); st.Obtained != 0 || st.Renewed != 0 {
		t.Fatalf("restart ordered a certificate: %+v", st)
	}
	cancel()
	m2.Close()

	// (4) the CA goes away while the certificate is due: it stays served
	p.stop()
	opt3 := opt
	opt3.RenewBefore = 2 * time.Hour // more than the validity: due now
	m3 := runManager(t, opt3)
	addr3 := serve(t, m3.ServerConfig(), ListenerOptions{})
	eventually(t, 30*time.Second, "a counted ACME failure", func() bool { return m3.Stats().Failures >= 1 })
	if st := m3.Stats(); st.LastError == "" || st.Renewed != 0 {
		t.Fatalf("stats after failure: %+v", st)
	}
	r, err = exchange(addr3, client)
	if err != nil {
		t.Fatal(err)
	}
	r.conn.Close()
	if r.serial != serial {
		t.Fatalf("after a failed renewal served %s, want %s", r.serial, serial)
	}
}

// TestACMERenewalALPN: TLS-ALPN-01 on the TLS listener, then a renewal of
// a short-lived certificate while an established connection keeps going.
func TestACMERenewalALPN(t *testing.T) {
	needPebble(t)
	shortRenewChecks(t)
	const name = "sip-b.test.example"
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsPort := inner.Addr().(*net.TCPAddr).Port
	p := startPebble(t, freePort(t), tlsPort, 30)
	roots := p.issuingRoot(t)
	m := runManager(t, Options{
		Names: []string{name}, CA: p.dir, CARootFile: p.caFile, ALPN: true,
		Storage: t.TempDir(), RenewBefore: 22 * time.Second, Log: testLogger(t),
	})
	cfg := m.ServerConfig()
	if !slices.Equal(cfg.NextProtos, []string{"acme-tls/1", "http/1.1"}) {
		t.Fatalf("NextProtos %v", cfg.NextProtos)
	}
	inner.Close()
	// serve on the port pebble validates TLS-ALPN-01 on
	var ln net.Listener
	eventually(t, 2*time.Second, "the TLS port again", func() bool {
		ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", tlsPort))
		return err == nil
	})
	ln.Close()
	addr := serveOn(t, fmt.Sprintf("127.0.0.1:%d", tlsPort), cfg)
	client := &tls.Config{RootCAs: roots, ServerName: name}

	var first *reply
	eventually(t, 60*time.Second, "a certificate by TLS-ALPN-01", func() bool {
		if m.Stats().Obtained != 1 {
			return false
		}
		first, err = exchange(addr, client)
		return err == nil
	})
	defer first.conn.Close()
	eventually(t, 60*time.Second, "a renewed certificate served", func() bool {
		if m.Stats().Renewed < 1 {
			return false
		}
		r, err := exchange(addr, client)
		if err != nil {
			return false
		}
		r.conn.Close()
		return r.serial != first.serial
	})
	if _, err := roundTrip(first.conn, "still there"); err != nil {
		t.Fatalf("connection established before the renewal: %v", err)
	}
	if st := m.Stats(); st.Failures != 0 {
		t.Logf("failures during the test: %+v", st)
	}
}

// serveOn is serve on a given address.
func serveOn(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	old := listenAddr
	listenAddr = addr
	defer func() { listenAddr = old }()
	return serve(t, cfg, ListenerOptions{})
}
