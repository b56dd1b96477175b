package e2e

// The harness of phones_test.go: sipwall with its default configuration,
// a test PKI for its TLS listener, and two real softphones driven
// headless (baresip through its ctrl_tcp module, linphone-daemon through
// its standard input), with parsers for the SIP traces they log.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Bounds of the phone tests.
const (
	phoneStep    = 10 * time.Second // one step: registered, established, closed
	phoneLife    = 90 * time.Second // a client's own bound on its run (baresip -t)
	phoneQuit    = 5 * time.Second  // a client leaving after quit
	passwdBound  = 30 * time.Second // `sipwall passwd`
	ctrlDialWait = 5 * time.Second  // baresip's control socket appearing
)

// RequireTool returns the path of command, skipping the test when it is
// missing, or failing it under CI (or SIPWALL_E2E_REQUIRED=1), like
// RequireSipp. pkg is the Debian package that installs it.
func RequireTool(t testing.TB, command, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(command)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found in PATH: run `make test`, which installs it "+
		"(scripts/install-test-tools.sh, Debian package %s)", command, pkg)
	if os.Getenv("CI") != "" || os.Getenv("SIPWALL_E2E_REQUIRED") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// ---------------------------------------------------------------------------
// sipwall with its default configuration

// testPKI is a throw-away CA and a server certificate for SBCIP and
// sbc.test, as PEM files.
type testPKI struct {
	CAFile, CertFile, KeyFile string
}

// newTestPKI writes a CA and a server certificate signed by it into dir.
func newTestPKI(t testing.TB, dir string) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sipwall e2e test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "sbc.test"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		// SBCIP is also a DNS-type name: the mbedTLS of Debian's linphone
		// skips IP SANs and compares the host it connected to with the
		// DNS names as text.
		DNSNames:    []string{"sbc.test", SBCIP},
		IPAddresses: []net.IP{net.ParseIP(SBCIP)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{
		CAFile:   filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "sbc.pem"),
		KeyFile:  filepath.Join(dir, "sbc.key"),
	}
	for _, f := range []struct {
		path, typ string
		der       []byte
	}{{p.CAFile, "CERTIFICATE", caDER}, {p.CertFile, "CERTIFICATE", der}, {p.KeyFile, "EC PRIVATE KEY", keyDER}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// passwdUser adds user to the users file at path with `sipwall passwd`
// and its default algorithms, the password on standard input.
func passwdUser(t testing.TB, path, realm, user, password string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), passwdBound)
	defer cancel()
	cmd := exec.CommandContext(ctx, SipwallBinary(t), "passwd", "-file", path, "-realm", realm, user)
	cmd.Stdin = strings.NewReader(password + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sipwall passwd: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// defaultSBC is a sipwall run with its default configuration.
type defaultSBC struct {
	*SBC
	TLSAddr string // SBCIP:port of the tls listener
	Config  string // the configuration file's text
}

// ListenAddr is sipwall's address for a phone's transport.
func (s *defaultSBC) ListenAddr(transport string) string {
	if transport == "tls" {
		return s.TLSAddr
	}
	return s.Addr
}

// defaultSBCConfig is sipwall's configuration for the phone tests: the
// defaults (config.Default()) and only what a deployment has to say
// itself — listeners, the PBX, the users file, the TLS certificate and
// where the store lives — plus three keys a test needs: the admin API on
// a free port (tests run side by side), no OPTIONS health checks (the PBX
// is a sipp UAS, which would take an OPTIONS for a failed call), and
// debug logs (the SIP exchange when a test fails).
func defaultSBCConfig(port, tlsPort, pbxPort int, usersFile string, pki testPKI, storeDir string) string {
	var b strings.Builder
	b.WriteString("# generated by the sipwall e2e harness (phones): defaults plus the keys below\n")
	b.WriteString("listen:\n")
	fmt.Fprintf(&b, "  - {transport: udp, addr: \"%s:%d\"}\n", SBCIP, port)
	fmt.Fprintf(&b, "  - {transport: tcp, addr: \"%s:%d\"}\n", SBCIP, port)
	fmt.Fprintf(&b, "  - {transport: tls, addr: \"%s:%d\"}\n", SBCIP, tlsPort)
	b.WriteString("upstreams:\n")
	fmt.Fprintf(&b, "  - {name: pbx, uri: \"sip:%s:%d\"}\n", PBXIP, pbxPort)
	fmt.Fprintf(&b, "auth: {users_file: %q}\n", usersFile)
	fmt.Fprintf(&b, "tls: {cert_file: %q, key_file: %q}\n", pki.CertFile, pki.KeyFile)
	fmt.Fprintf(&b, "store: {path: %q}\n", storeDir)
	b.WriteString("# test-only\n")
	b.WriteString("admin: {addr: \"127.0.0.1:0\"}\n")
	b.WriteString("health: {interval: 0s}\n")
	b.WriteString("log: {level: debug}\n")
	return b.String()
}

// startDefaultSBC starts sipwall with defaultSBCConfig in front of the PBX
// at PBXIP:pbxPort and waits until it answers.
// extra lines are appended to the configuration (a test's own keys).
func startDefaultSBC(t testing.TB, pbxPort int, usersFile string, pki testPKI, extra ...string) *defaultSBC {
	t.Helper()
	bin := SipwallBinary(t)
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	port := AllocPorts(t, SBCIP)
	tlsPort := port + 1 // AllocPorts checked the whole block free
	s := &defaultSBC{
		SBC:     &SBC{Port: port, Addr: net.JoinHostPort(SBCIP, strconv.Itoa(port)), Dir: dir},
		TLSAddr: net.JoinHostPort(SBCIP, strconv.Itoa(tlsPort)),
		Config:  defaultSBCConfig(port, tlsPort, pbxPort, usersFile, pki, store) + strings.Join(extra, ""),
	}
	cfgPath := filepath.Join(dir, "sipwall.yaml")
	if err := os.WriteFile(cfgPath, []byte(s.Config), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := startProc(t, "sipwall", dir, bin, "run", "-config", cfgPath)
	if err != nil {
		t.Fatalf("starting sipwall: %v", err)
	}
	s.p = p
	t.Cleanup(func() { s.stop(t) })
	if err := s.waitReady(readyTimeout); err != nil {
		t.Fatalf("sipwall not ready: %v\nconfig:\n%s", err, s.Config)
	}
	if !waitListening("tcp", SBCIP, tlsPort, listenTimeout) {
		t.Fatalf("sipwall's tls listener %s is not listening", s.TLSAddr)
	}
	return s
}

// ---------------------------------------------------------------------------
// SIP traces

// traceMsg is one SIP message a party logged.
type traceMsg struct {
	Sent    bool   // false: received
	Flow    string // the socket or connection, in the party's own terms
	Start   string // request or status line
	Headers map[string][]string
}

// Header returns the first value of a header (canonical long name, any
// case), or "".
func (m traceMsg) Header(name string) string {
	if v := m.Headers[strings.ToLower(name)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// CSeqMethod is the method of the CSeq header.
func (m traceMsg) CSeqMethod() string {
	f := strings.Fields(m.Header("CSeq"))
	if len(f) != 2 {
		return ""
	}
	return f[1]
}

// IsRequest reports whether m is a request of method.
func (m traceMsg) IsRequest(method string) bool { return strings.HasPrefix(m.Start, method+" ") }

// IsResponse reports whether m is a response with code to a method request.
func (m traceMsg) IsResponse(code int, method string) bool {
	return strings.HasPrefix(m.Start, "SIP/2.0 "+strconv.Itoa(code)+" ") && m.CSeqMethod() == method
}

func (m traceMsg) String() string {
	dir := "received"
	if m.Sent {
		dir = "sent"
	}
	return fmt.Sprintf("%s %q (%s)", dir, m.Start, m.Flow)
}

// traceMarker recognises the line a party logs before each message: ok,
// the direction and the flow.
type traceMarker func(line string) (ok, sent bool, flow string)

var (
	ansiEscape = regexp.MustCompile(`\x1b\[[0-9;]*m`)
	sipStart   = regexp.MustCompile(`^(SIP/2\.0 [1-6][0-9][0-9] |[A-Z]+ \S+ SIP/2\.0$)`)
	// baresip -s: "UDP 127.0.0.1:5060 -> 127.0.0.21:5080".
	baresipMarker = regexp.MustCompile(`^(UDP|TCP|TLS) (\S+) -> (\S+)$`)
	// linphone: "channel [0x...]: message sent to [UDP://...], size: ..."
	// and "channel [0x...]: received [N] new bytes from [UDP://...]:".
	linphoneMarker = regexp.MustCompile(`channel \[(0x[0-9a-f]+)\]: (message sent to|received \[\d+\] new bytes from) \[(\w+)://`)
	// sipp -trace_msg: "UDP message received [N] bytes :", "UDP message sent (N bytes):".
	sippMarker = regexp.MustCompile(`^(UDP|TCP|TLS) message (received|sent) `)
)

// parseTrace reads the SIP messages out of a party's log: after each
// marker line, the next non-empty line that is a SIP start line and the
// header lines up to the first empty line.
func parseTrace(text string, marker traceMarker) []traceMsg {
	var msgs []traceMsg
	var cur *traceMsg
	pending := false
	var sent bool
	var flow string
	for _, line := range strings.Split(ansiEscape.ReplaceAllString(text, ""), "\n") {
		line = strings.TrimRight(line, "\r")
		if ok, s, f := marker(line); ok {
			cur, pending, sent, flow = nil, true, s, f
			continue
		}
		switch {
		case pending && strings.TrimSpace(line) == "":
		case pending && sipStart.MatchString(line):
			msgs = append(msgs, traceMsg{Sent: sent, Flow: flow, Start: line, Headers: map[string][]string{}})
			cur, pending = &msgs[len(msgs)-1], false
		case pending:
			pending = false
		case cur != nil && strings.TrimSpace(line) == "":
			cur = nil
		case cur != nil:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				cur = nil
				continue
			}
			k = strings.ToLower(strings.TrimSpace(k))
			cur.Headers[k] = append(cur.Headers[k], strings.TrimSpace(v))
		}
	}
	return msgs
}

// baresipTrace parses baresip's -s output. baresip talks only to sipwall
// at peer: a message to peer was sent, one from it received; the flow is
// baresip's end of the socket or connection. (libre binds its UDP socket
// to the configured address but leaves the source of TCP and TLS
// connections to the kernel, which picks 127.0.0.1 toward 127.0.0.1.)
func baresipTrace(text, peer string) []traceMsg {
	return parseTrace(text, func(line string) (bool, bool, string) {
		m := baresipMarker.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			return false, false, ""
		}
		if m[3] == peer {
			return true, true, m[1] + " " + m[2]
		}
		return true, false, m[1] + " " + m[3]
	})
}

// linphoneTrace parses linphone's log; the flow is the transport and
// belle-sip's channel.
func linphoneTrace(text string) []traceMsg {
	return parseTrace(text, func(line string) (bool, bool, string) {
		m := linphoneMarker.FindStringSubmatch(line)
		if m == nil {
			return false, false, ""
		}
		return true, strings.HasPrefix(m[2], "message sent"), strings.ToUpper(m[3]) + " channel " + m[1]
	})
}

// sippTrace parses a sipp message log.
func sippTrace(text string) []traceMsg {
	return parseTrace(text, func(line string) (bool, bool, string) {
		m := sippMarker.FindStringSubmatch(line)
		if m == nil {
			return false, false, ""
		}
		return true, m[2] == "sent", m[1]
	})
}

// findMsg returns the first message after from (an index) for which ok
// holds, and its index; -1 when there is none.
func findMsg(msgs []traceMsg, from int, ok func(traceMsg) bool) (traceMsg, int) {
	for i := max(from, 0); i < len(msgs); i++ {
		if ok(msgs[i]) {
			return msgs[i], i
		}
	}
	return traceMsg{}, -1
}

// digestParam returns a parameter of a Digest challenge or credential.
func digestParam(v, name string) string {
	re := regexp.MustCompile(`(?i)(?:^|[\s,])` + regexp.QuoteMeta(name) + `\s*=\s*("([^"]*)"|[^\s,]+)`)
	m := re.FindStringSubmatch(v)
	switch {
	case m == nil:
		return ""
	case m[2] != "" || strings.HasPrefix(m[1], `"`):
		return m[2]
	default:
		return m[1]
	}
}

// ---------------------------------------------------------------------------
// Softphones

// phoneAccount is what a phone is set up with.
type phoneAccount struct {
	IP        string // the phone's own loopback address
	Transport string // udp, tcp or tls toward sipwall
	Registrar string // sipwall's host:port for that transport
	User      string
	Password  string
	CAFile    string // the CA that signed sipwall's certificate
	// MediaEnc is the phone's media encryption (baresip's mediaenc:
	// srtp-mand for SDES-SRTP, dtls_srtp for DTLS-SRTP); "": plain RTP.
	MediaEnc string
}

// uri is a SIP URI at sipwall for user over the account's transport.
func (a phoneAccount) uri(user string) string {
	u := "sip:" + user + "@" + a.Registrar
	if a.Transport != "udp" {
		u += ";transport=" + a.Transport
	}
	return u
}

// softphone is a real SIP client driven headless. Every wait is bounded
// by phoneStep and fails the test with what the client reported.
type softphone interface {
	// Register adds the account and waits until the client reports it
	// registered.
	Register(t *testing.T)
	// Dial calls ext at sipwall over the account's transport and waits
	// until the client reports the call established.
	Dial(t *testing.T, ext string)
	// WaitAnswered waits until the client reports an incoming call it
	// answered by itself established.
	WaitAnswered(t *testing.T)
	// Hangup ends the call from the phone and waits until the client
	// reports it closed.
	Hangup(t *testing.T)
	// WaitClosed waits until the client reports the call closed by the
	// other side.
	WaitClosed(t *testing.T)
	// Trace is every SIP message the client logged so far.
	Trace() []traceMsg
	// Quit asks the client to leave and waits a moment for it.
	Quit(t *testing.T)
}

// textBuffer collects a process's output and wakes waiters on new text.
type textBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	notify chan struct{}
}

func newTextBuffer() *textBuffer { return &textBuffer{notify: make(chan struct{})} }

func (b *textBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	close(b.notify)
	b.notify = make(chan struct{})
	return len(p), nil
}

// String is the text so far.
func (b *textBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Len is the length of the text so far.
func (b *textBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// waitFor waits up to d until ok holds for the text from offset on.
func (b *textBuffer) waitFor(from int, d time.Duration, ok func(string) bool) (string, bool) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		text := b.buf.String()[min(from, b.buf.Len()):]
		ch := b.notify
		b.mu.Unlock()
		if ok(text) {
			return text, true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return text, false
		}
	}
}

// ---------------------------------------------------------------------------
// baresip

// baresip drives baresip through its ctrl_tcp module (netstring-framed
// JSON commands, responses and events) and reads the SIP trace it prints
// with -s. The account is added with uanew once the control connection is
// up, so that its REGISTER_OK event cannot be missed.
type baresip struct {
	acct    phoneAccount
	rtpPort int // the first of its RTP ports (portBlock of them)
	dir     string
	p       *proc
	conn    net.Conn
	events  chan map[string]any
	resps   chan map[string]any
	token   int

	mu  sync.Mutex
	log []string // every event and response, for failure reports
}

// startBaresip starts baresip for acct with a configuration in a temp
// directory: only the modules a headless call needs (G.711; aubridge as
// sound card, its player and source joined in memory, no device),
// ctrl_tcp, menu (dial, hangup, quit, uanew), and sipwall's test CA in
// sip_cafile for TLS. baresip 1.0 with libre 1.1 does not verify the
// server's certificate with it, though: with an unrelated CA in
// sip_cafile it registers just the same (checked by hand; libre has
// tls_set_verify_server, baresip 1.0 never calls it and has no setting
// for it). Its TLS is encrypted, not authenticated.
func startBaresip(t *testing.T, acct phoneAccount) *baresip {
	t.Helper()
	bin := RequireTool(t, "baresip", "baresip-core")
	// The modules are installed beside the binary: PREFIX/bin/baresip,
	// PREFIX/lib/baresip/modules.
	if real, err := filepath.EvalSymlinks(bin); err == nil {
		bin = real
	}
	modDir := filepath.Join(filepath.Dir(filepath.Dir(bin)), "lib", "baresip", "modules")
	if _, err := os.Stat(filepath.Join(modDir, "ctrl_tcp.so")); err != nil {
		t.Fatalf("baresip's modules are not beside it in %s (ctrl_tcp.so: %v)", modDir, err)
	}
	sipPort := AllocPorts(t, acct.IP) // +1: baresip's own TLS listener, +2: ctrl_tcp
	rtpPort := AllocPorts(t, acct.IP)
	b := &baresip{acct: acct, rtpPort: rtpPort, dir: t.TempDir(), events: make(chan map[string]any, 64), resps: make(chan map[string]any, 8)}
	conf := strings.Join([]string{
		"poll_method epoll",
		fmt.Sprintf("sip_listen %s:%d", acct.IP, sipPort),
		"net_interface " + acct.IP,
		"sip_cafile " + acct.CAFile,
		"call_local_timeout 30",
		"audio_player aubridge,phone",
		audioSource(acct),
		"audio_alert aubridge,alert",
		fmt.Sprintf("rtp_ports %d-%d", rtpPort, rtpPort+portBlock-1),
		"module_path " + modDir,
		"module g711.so",
		"module aubridge.so",
		"module ausine.so",
		"module srtp.so",
		"module dtls_srtp.so",
		"module_tmp account.so",
		"module_app menu.so",
		"module_app ctrl_tcp.so",
		fmt.Sprintf("ctrl_tcp_listen %s:%d", acct.IP, sipPort+2),
		"",
	}, "\n")
	for name, text := range map[string]string{"config": conf, "accounts": ""} {
		if err := os.WriteFile(filepath.Join(b.dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p, err := startProc(t, "baresip", b.dir, bin, "-f", b.dir, "-s", "-t", strconv.Itoa(int(phoneLife.Seconds())))
	if err != nil {
		t.Fatalf("starting baresip: %v", err)
	}
	b.p = p
	t.Cleanup(func() {
		if b.conn != nil {
			b.conn.Close()
		}
		p.kill()
		if t.Failed() {
			b.dump(t)
		}
	})
	ctrl := net.JoinHostPort(acct.IP, strconv.Itoa(sipPort+2))
	deadline := time.Now().Add(ctrlDialWait)
	for {
		c, err := net.DialTimeout("tcp", ctrl, 250*time.Millisecond)
		if err == nil {
			b.conn = c
			break
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("baresip's control socket %s: %v (exited: %v)", ctrl, err, p.exited())
		}
		time.Sleep(50 * time.Millisecond)
	}
	go b.read()
	return b
}

// audioSource is baresip's audio source: aubridge (what the player
// gets, so nothing until the other side sends) for the call tests, a
// 440 Hz tone for those that look at the media.
func audioSource(acct phoneAccount) string {
	if acct.MediaEnc != "" {
		return "audio_source ausine,440\nausrc_srate 48000\nausrc_channels 2" // ausine makes 48 kHz stereo only
	}
	return "audio_source aubridge,phone"
}

// read dispatches what ctrl_tcp sends until the connection closes.
func (b *baresip) read() {
	r := bufio.NewReader(b.conn)
	for {
		msg, err := readNetstring(r)
		if err != nil {
			close(b.events)
			return
		}
		var m map[string]any
		if err := json.Unmarshal(msg, &m); err != nil {
			b.note("undecodable: " + string(msg))
			continue
		}
		b.note(string(msg))
		switch {
		case m["event"] == true:
			select {
			case b.events <- m:
			default:
				b.note("event dropped: queue full")
			}
		case m["response"] == true:
			select {
			case b.resps <- m:
			default:
			}
		}
	}
}

// readNetstring reads "LEN:DATA,". LEN is bounded: this is a test peer,
// but a garbled stream must not allocate without end.
func readNetstring(r *bufio.Reader) ([]byte, error) {
	head, err := r.ReadString(':')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(head[:len(head)-1]))
	if err != nil || n < 0 || n > 1<<20 {
		return nil, fmt.Errorf("netstring length %q", head)
	}
	buf := make([]byte, n+1)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	if buf[n] != ',' {
		return nil, errors.New("netstring without its comma")
	}
	return buf[:n], nil
}

func (b *baresip) note(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.log = append(b.log, s)
}

// command sends one command and waits for its response.
func (b *baresip) command(t *testing.T, cmd, params string) {
	t.Helper()
	b.token++
	js, err := json.Marshal(map[string]string{"command": cmd, "params": params, "token": strconv.Itoa(b.token)})
	if err != nil {
		t.Fatal(err)
	}
	b.conn.SetWriteDeadline(time.Now().Add(phoneStep))
	if _, err := fmt.Fprintf(b.conn, "%d:%s,", len(js), js); err != nil {
		t.Fatalf("baresip %s: %v", cmd, err)
	}
	select {
	case r := <-b.resps:
		if r["ok"] != true {
			t.Fatalf("baresip %s %s: %v", cmd, params, r)
		}
	case <-time.After(phoneStep):
		t.Fatalf("baresip %s: no response within %s", cmd, phoneStep)
	}
}

// waitEvent waits for an event of type want; an event of a type in fail
// ends the test.
func (b *baresip) waitEvent(t *testing.T, want string, fail ...string) map[string]any {
	t.Helper()
	timeout := time.After(phoneStep)
	for {
		select {
		case e, ok := <-b.events:
			if !ok {
				t.Fatalf("baresip: control connection closed while waiting for %s", want)
			}
			typ, _ := e["type"].(string)
			if typ == want {
				return e
			}
			for _, f := range fail {
				if typ == f {
					t.Fatalf("baresip reported %s (%v) while waiting for %s", typ, e["param"], want)
				}
			}
		case <-timeout:
			t.Fatalf("baresip: no %s event within %s", want, phoneStep)
		}
	}
}

func (b *baresip) Register(t *testing.T) {
	t.Helper()
	// answermode=auto: the phone answers the PBX's call by itself.
	enc := ""
	if b.acct.MediaEnc != "" {
		enc = ";mediaenc=" + b.acct.MediaEnc
	}
	b.command(t, "uanew", fmt.Sprintf("<%s>;auth_pass=%s;answermode=auto;audio_codecs=PCMU,PCMA%s",
		b.acct.uri(b.acct.User), b.acct.Password, enc))
	b.waitEvent(t, "REGISTER_OK", "REGISTER_FAIL")
}

func (b *baresip) Dial(t *testing.T, ext string) {
	t.Helper()
	// No transport parameter: baresip appends the account's own, even to
	// a URI that has one already.
	b.command(t, "dial", "sip:"+ext+"@"+b.acct.Registrar)
	b.waitEvent(t, "CALL_ESTABLISHED", "CALL_CLOSED")
}

func (b *baresip) WaitAnswered(t *testing.T) {
	t.Helper()
	b.waitEvent(t, "CALL_ESTABLISHED", "CALL_CLOSED")
}

func (b *baresip) Hangup(t *testing.T) {
	t.Helper()
	b.command(t, "hangup", "")
	b.waitEvent(t, "CALL_CLOSED")
}

func (b *baresip) WaitClosed(t *testing.T) {
	t.Helper()
	b.waitEvent(t, "CALL_CLOSED")
}

func (b *baresip) Trace() []traceMsg {
	data, _ := os.ReadFile(b.p.stdout)
	return baresipTrace(string(data), b.acct.Registrar)
}

func (b *baresip) Quit(t *testing.T) {
	t.Helper()
	// quit unregisters first; a response may not come before the exit.
	js := `{"command":"quit","params":"","token":"quit"}`
	fmt.Fprintf(b.conn, "%d:%s,", len(js), js)
	if _, ok := b.p.wait(phoneQuit); !ok {
		t.Logf("baresip did not leave within %s of quit (killed)", phoneQuit)
	}
}

func (b *baresip) dump(t *testing.T) {
	b.mu.Lock()
	log := strings.Join(b.log, "\n")
	b.mu.Unlock()
	t.Logf("baresip control messages:\n%s", log)
	t.Logf("baresip stdout (tail):\n%s", tailFile(b.p.stdout, logTail))
	t.Logf("baresip stderr (tail):\n%s", tailFile(b.p.stderr, logTail))
}

// ---------------------------------------------------------------------------
// linphone

// linphoneDaemon drives linphone-daemon through its standard input: one
// command a line, each answered "Status: Ok|Error" and a body, followed by
// the next prompt; call state changes arrive unasked as "Event: ..."
// blocks. The SIP trace comes from its log file.
type linphoneDaemon struct {
	acct  phoneAccount
	dir   string
	p     *proc
	stdin io.WriteCloser
	out   *textBuffer
	log   string
	regID string
	mark  int // output up to here holds events already waited for
}

const linphonePrompt = "daemon-linphone>"

// startLinphone starts linphone-daemon with a configuration that binds
// its SIP and RTP sockets to acct.IP, trusts sipwall's test CA and checks
// the server certificate and its name (verify_server_certs,
// verify_server_cn), and answers calls by itself (--auto-answer). No
// sound card is configured and none exists: linphone logs that it found
// none and runs its calls without one.
func startLinphone(t *testing.T, acct phoneAccount) *linphoneDaemon {
	t.Helper()
	bin := RequireTool(t, "linphone-daemon", "linphone-cli")
	port := AllocPorts(t, acct.IP) // SIP udp+tcp, +1 tls, +2/+3 RTP/RTCP
	l := &linphoneDaemon{acct: acct, dir: t.TempDir(), out: newTextBuffer()}
	// The call log and other databases live under $HOME/.local/share;
	// linphone does not start its SIP stack when it cannot open them.
	if err := os.MkdirAll(filepath.Join(l.dir, ".local", "share", "linphone"), 0o700); err != nil {
		t.Fatal(err)
	}
	rc := strings.Join([]string{
		"[sip]",
		fmt.Sprintf("sip_port=%d", port),
		fmt.Sprintf("sip_tcp_port=%d", port),
		fmt.Sprintf("sip_tls_port=%d", port+1),
		"bind_address=" + acct.IP,
		"root_ca=" + acct.CAFile,
		"verify_server_certs=1",
		"verify_server_cn=1",
		"[rtp]",
		fmt.Sprintf("audio_rtp_port=%d", port+2),
		"[video]",
		"capture=0",
		"display=0",
		"",
	}, "\n")
	rcPath := filepath.Join(l.dir, "linphonerc")
	if err := os.WriteFile(rcPath, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	l.log = filepath.Join(l.dir, "linphone.log")
	p := &proc{
		name:   "linphone-daemon",
		done:   make(chan struct{}),
		stdout: filepath.Join(l.dir, "linphone-daemon.stdout"),
		stderr: filepath.Join(l.dir, "linphone-daemon.stderr"),
	}
	so, err := os.Create(p.stdout)
	if err != nil {
		t.Fatal(err)
	}
	se, err := os.Create(p.stderr)
	if err != nil {
		so.Close()
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "--config", rcPath, "--log", l.log, "--auto-answer")
	p.cmd.Dir = l.dir
	p.cmd.Env = append(os.Environ(), "HOME="+l.dir, "XDG_DATA_HOME="+filepath.Join(l.dir, ".local", "share"),
		"XDG_CONFIG_HOME="+filepath.Join(l.dir, ".config"))
	p.cmd.Stdout = io.MultiWriter(so, l.out)
	p.cmd.Stderr = se
	if l.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		so.Close()
		se.Close()
		t.Fatalf("starting linphone-daemon: %v", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		so.Close()
		se.Close()
		close(p.done)
	}()
	l.p = p
	t.Cleanup(func() {
		l.stdin.Close()
		p.kill()
		if t.Failed() {
			l.dump(t)
		}
	})
	if _, ok := l.out.waitFor(0, phoneStep, func(s string) bool { return strings.Contains(s, linphonePrompt) }); !ok {
		t.Fatalf("linphone-daemon printed no prompt within %s", phoneStep)
	}
	return l
}

// command sends one command line and returns its response, the text from
// "Status:" up to the next prompt.
func (l *linphoneDaemon) command(t *testing.T, line string) string {
	t.Helper()
	from := l.out.Len()
	if _, err := io.WriteString(l.stdin, line+"\n"); err != nil {
		t.Fatalf("linphone-daemon %q: %v", line, err)
	}
	text, ok := l.out.waitFor(from, phoneStep, func(s string) bool {
		i := strings.Index(s, "Status: ")
		return i >= 0 && strings.Contains(s[i:], linphonePrompt)
	})
	if !ok {
		t.Fatalf("linphone-daemon %q: no response within %s:\n%s", line, phoneStep, text)
	}
	resp := text[strings.Index(text, "Status: "):]
	resp = resp[:strings.Index(resp, linphonePrompt)]
	if !strings.HasPrefix(resp, "Status: Ok") {
		t.Fatalf("linphone-daemon %q: %s", line, resp)
	}
	return resp
}

// waitEvent waits for a call state event (e.g. "LinphoneCallEnd") printed
// after the end of the previous one; an event in fail ends the test.
func (l *linphoneDaemon) waitEvent(t *testing.T, want string, fail ...string) {
	t.Helper()
	from := l.mark
	var found string
	text, ok := l.out.waitFor(from, phoneStep, func(s string) bool {
		for _, e := range append([]string{want}, fail...) {
			if strings.Contains(s, "Event: "+e+"\n") {
				found = e
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("linphone: no %s event within %s", want, phoneStep)
	}
	end := "Event: " + found + "\n"
	l.mark = from + strings.Index(text, end) + len(end)
	if found != want {
		t.Fatalf("linphone reported %s while waiting for %s", found, want)
	}
}

// bodyField returns "Key: value" from a response body.
func bodyField(resp, key string) string {
	for _, line := range strings.Split(resp, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+": "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func (l *linphoneDaemon) Register(t *testing.T) {
	t.Helper()
	proxy := "sip:" + l.acct.Registrar
	if l.acct.Transport != "udp" {
		proxy += ";transport=" + l.acct.Transport
	}
	// Password only: given a user id and realm as well, this daemon's
	// auth info did not match sipwall's challenge ("No auth info found").
	resp := l.command(t, fmt.Sprintf("register sip:%s@%s %s %s", l.acct.User, l.acct.Registrar, proxy, l.acct.Password))
	l.regID = bodyField(resp, "Id")
	if l.regID == "" {
		t.Fatalf("linphone register: no Id in %q", resp)
	}
	deadline := time.Now().Add(phoneStep)
	var state string
	for time.Now().Before(deadline) {
		state = bodyField(l.command(t, "register-status "+l.regID), "State")
		switch state {
		case "LinphoneRegistrationOk":
			return
		case "LinphoneRegistrationFailed":
			t.Fatalf("linphone reported %s", state)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("linphone registration state %s after %s", state, phoneStep)
}

func (l *linphoneDaemon) Dial(t *testing.T, ext string) {
	t.Helper()
	l.command(t, "call "+l.acct.uri(ext))
	l.waitEvent(t, "LinphoneCallStreamsRunning", "LinphoneCallError", "LinphoneCallEnd")
}

func (l *linphoneDaemon) WaitAnswered(t *testing.T) {
	t.Helper()
	l.waitEvent(t, "LinphoneCallStreamsRunning", "LinphoneCallError", "LinphoneCallEnd")
}

func (l *linphoneDaemon) Hangup(t *testing.T) {
	t.Helper()
	l.command(t, "terminate")
	l.waitEvent(t, "LinphoneCallEnd", "LinphoneCallError")
}

func (l *linphoneDaemon) WaitClosed(t *testing.T) {
	t.Helper()
	l.waitEvent(t, "LinphoneCallEnd", "LinphoneCallError")
}

func (l *linphoneDaemon) Trace() []traceMsg {
	data, _ := os.ReadFile(l.log)
	return linphoneTrace(string(data))
}

func (l *linphoneDaemon) Quit(t *testing.T) {
	t.Helper()
	io.WriteString(l.stdin, "quit\n")
	if _, ok := l.p.wait(phoneQuit); !ok {
		t.Logf("linphone-daemon did not leave within %s of quit (killed)", phoneQuit)
	}
}

func (l *linphoneDaemon) dump(t *testing.T) {
	t.Logf("linphone-daemon output:\n%s", l.out.String())
	t.Logf("linphone-daemon stderr (tail):\n%s", tailFile(l.p.stderr, logTail))
	t.Logf("linphone log (tail):\n%s", tailFile(l.log, logTail))
}
