// Package e2e runs the real sipwall binary between sipp processes on the
// loopback network and checks whole SIP calls through it.
//
// The topology of every test:
//
//	127.0.0.2  caller outside (sipp UAC)
//	127.0.0.1  sipwall (UDP and TCP listener on one free port)
//	127.0.0.3  the PBX, sipwall's upstream (sipp UAS, or the UAC of a call
//	           placed from the inside)
//	127.0.0.4  the carrier trunk, sipwall's outbound.uri (sipp UAS)
//
// This file is the harness; the tests are in e2e_test.go. Nothing here
// leaves 127.0.0.0/8, and every process started is bounded in time and
// killed by PID when its test ends.
package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc/auth"
)

// Loopback addresses of the parties.
const (
	SBCIP     = "127.0.0.1" // sipwall
	OutsideIP = "127.0.0.2" // a caller on the internet
	PBXIP     = "127.0.0.3" // the upstream PBX (inside)
	TrunkIP   = "127.0.0.4" // the outbound trunk (outside)
)

// Bounds. A passing call through loopback takes milliseconds; these only
// decide how long a broken run takes to fail.
const (
	readyTimeout   = 10 * time.Second // sipwall answering OPTIONS
	listenTimeout  = 5 * time.Second  // a sipp UAS binding its port
	recvTimeout    = 8 * time.Second  // sipp: one expected message
	defaultRunTime = 30 * time.Second // sipp: -timeout of one process
	uasGrace       = 5 * time.Second  // UAS finishing after the UAC did
	killGrace      = 5 * time.Second  // SIGTERM to SIGKILL
	logTail        = 24 << 10         // bytes of each log shown on failure
)

// Transport is one SIP transport variant of a test.
type Transport struct {
	Name string // "udp" or "tcp": the sipwall listener and URI parameter
	Sipp string // sipp's -t value: "u1" or "t1"
}

// Transports are the variants every call test runs over.
var Transports = []Transport{{Name: "udp", Sipp: "u1"}, {Name: "tcp", Sipp: "t1"}}

// URIParam is the URI parameter selecting the transport toward a peer.
func (tr Transport) URIParam() string {
	if tr.Name == "tcp" {
		return ";transport=tcp"
	}
	return ""
}

// ---------------------------------------------------------------------------
// Tools

// RequireSipp returns the path of sipp. When sipp is missing the test is
// skipped, or fails when CI is set or SIPWALL_E2E_REQUIRED=1, because there
// a missing tool must not turn into a silent green run.
func RequireSipp(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("sipp")
	if err == nil {
		return p
	}
	msg := "sipp not found in PATH: run `make test`, which installs it " +
		"(scripts/install-test-tools.sh, Debian package sip-tester)"
	if os.Getenv("CI") != "" || os.Getenv("SIPWALL_E2E_REQUIRED") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// SkipIfShort skips the calling test under -short.
func SkipIfShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: starts sipwall and sipp processes and takes seconds; skipped under -short")
	}
}

var moduleRoot struct {
	once sync.Once
	dir  string
	err  error
}

// ModuleRoot is the directory of the go.mod of this module, from
// `go env GOMOD` run in the test's working directory.
func ModuleRoot() (string, error) {
	moduleRoot.once.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			moduleRoot.err = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		gomod := strings.TrimSpace(string(out))
		if gomod == "" || gomod == os.DevNull {
			moduleRoot.err = errors.New("go env GOMOD: not inside a module")
			return
		}
		moduleRoot.dir = filepath.Dir(gomod)
	})
	return moduleRoot.dir, moduleRoot.err
}

// ScenarioDir is testdata/sipp of the module.
func ScenarioDir(t testing.TB) string {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "testdata", "sipp")
}

// ---------------------------------------------------------------------------
// Building sipwall once per test run

var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// raceEnabled reports whether this test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// buildRace tells whether sipwall is built with the race detector: as the
// test binary was, unless SIPWALL_E2E_RACE is 0 or 1.
func buildRace() bool {
	switch os.Getenv("SIPWALL_E2E_RACE") {
	case "0":
		return false
	case "1":
		return true
	}
	return raceEnabled()
}

// SipwallBinary returns the sipwall binary under test, building it on first
// use with `go build -o TMP/sipwall ./cmd/sipwall` from the module root.
// SIPWALL_BIN names a prebuilt binary to use instead.
func SipwallBinary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		if p := os.Getenv("SIPWALL_BIN"); p != "" {
			build.bin, build.err = filepath.Abs(p)
			return
		}
		root, err := ModuleRoot()
		if err != nil {
			build.err = err
			return
		}
		build.dir, err = os.MkdirTemp("", "sipwall-e2e-bin-")
		if err != nil {
			build.err = err
			return
		}
		bin := filepath.Join(build.dir, "sipwall")
		args := []string{"build", "-o", bin}
		if buildRace() {
			args = append(args, "-race")
		}
		args = append(args, "./cmd/sipwall")
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			return
		}
		build.bin = bin
	})
	if build.err != nil {
		t.Fatalf("building sipwall: %v", build.err)
	}
	return build.bin
}

// CleanupBuild removes the directory of the built binary. TestMain calls it.
func CleanupBuild() {
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
}

// ---------------------------------------------------------------------------
// Ports

var ports struct {
	mu   sync.Mutex
	next int
}

// portBlock is the size of one allocation: SIP port, sipp's control port,
// and sipp's two media ports (base+2 and base+4).
const portBlock = 6

// AllocPorts returns the first of portBlock consecutive ports that are free
// on ip for UDP and TCP. Ports come from 20000-32000, below Linux's
// ephemeral range, and are never handed out twice by one test process.
func AllocPorts(t testing.TB, ip string) int {
	t.Helper()
	ports.mu.Lock()
	defer ports.mu.Unlock()
	const lo, hi = 20000, 32000
	if ports.next == 0 {
		ports.next = lo + rand.IntN((hi-lo)/portBlock/2)*portBlock
	}
	for tries := 0; tries < 200; tries++ {
		base := ports.next
		ports.next += portBlock
		if ports.next+portBlock > hi {
			ports.next = lo
		}
		if portsFree(ip, base, portBlock) {
			return base
		}
	}
	t.Fatalf("no free block of %d ports on %s", portBlock, ip)
	return 0
}

func portsFree(ip string, base, n int) bool {
	var closers []func() error
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	for p := base; p < base+n; p++ {
		addr := net.JoinHostPort(ip, strconv.Itoa(p))
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		closers = append(closers, u.Close)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		closers = append(closers, l.Close)
	}
	return true
}

// isListening reports whether some socket is bound to ip:port, reading
// /proc/net (no probe socket, so no race with the process binding it).
// For TCP only sockets in LISTEN state count.
func isListening(proto, ip string, port int) bool {
	a := net.ParseIP(ip).To4()
	if a == nil {
		return false
	}
	// /proc/net shows the address as the in-memory u32 (little-endian here).
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", a[3], a[2], a[1], a[0], port)
	data, err := os.ReadFile("/proc/net/" + proto)
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[1] != want {
			continue
		}
		if proto == "tcp" && f[3] != "0A" {
			continue
		}
		return true
	}
	return false
}

func waitListening(proto, ip string, port int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if isListening(proto, ip, port) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// ---------------------------------------------------------------------------
// Processes

// proc is a started child process and the files it writes to.
type proc struct {
	name   string
	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's result, valid after done
	stdout string
	stderr string
}

func startProc(t testing.TB, name, dir string, bin string, args ...string) (*proc, error) {
	t.Helper()
	return launch(dir, name, false, bin, args...)
}

// launch starts bin in dir with its output in dir/name.stdout and .stderr;
// group puts it in a process group of its own (for programs that fork).
func launch(dir, name string, group bool, bin string, args ...string) (*proc, error) {
	p := &proc{
		name:   name,
		done:   make(chan struct{}),
		stdout: filepath.Join(dir, name+".stdout"),
		stderr: filepath.Join(dir, name+".stderr"),
	}
	so, err := os.Create(p.stdout)
	if err != nil {
		return nil, err
	}
	se, err := os.Create(p.stderr)
	if err != nil {
		so.Close()
		return nil, err
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Stdout = so
	p.cmd.Stderr = se
	p.cmd.Stdin = nil
	if group {
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if err := p.cmd.Start(); err != nil {
		so.Close()
		se.Close()
		return nil, err
	}
	go func() {
		p.err = p.cmd.Wait()
		so.Close()
		se.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the process to exit by itself and returns its exit
// code; on timeout it kills it and reports false.
func (p *proc) wait(d time.Duration) (code int, ok bool) {
	select {
	case <-p.done:
	case <-time.After(d):
		p.kill()
		return -1, false
	}
	return p.cmd.ProcessState.ExitCode(), true
}

// kill ends the process by its PID: SIGTERM, then SIGKILL after killGrace.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(killGrace):
	}
	p.cmd.Process.Kill()
	<-p.done
}

// excerpt returns up to n bytes of data from the start of the line that
// holds offset i.
func excerpt(data []byte, i, n int) string {
	start := bytes.LastIndexByte(data[:i], '\n') + 1
	end := min(start+n, len(data))
	return string(data[start:end])
}

// tailFile returns the last n bytes of a file, or a note why it can't.
func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	if len(data) > n {
		data = append([]byte("...\n"), data[len(data)-n:]...)
	}
	if len(data) == 0 {
		return "(empty)"
	}
	return string(data)
}

// ---------------------------------------------------------------------------
// sipwall

// SBCConfig is what a test chooses of sipwall's configuration.
type SBCConfig struct {
	// Transport toward the PBX and the trunk (";transport=tcp" in their
	// URIs for TCP). sipwall always listens on UDP and TCP.
	Transport Transport
	// PBXPort is the port of the upstream on PBXIP.
	PBXPort int
	// TrunkPort is the port of outbound.uri on TrunkIP; 0 leaves outbound out.
	TrunkPort int
	// RingTimeout is calls.ring_timeout; default 30s.
	RingTimeout time.Duration
	// LogLevel is log.level; default debug.
	LogLevel string
	// Users turns digest authentication on: user name → password, written
	// as a users file for realm "sipwall". Nil: auth.mode off, so that the
	// call tests need no credentials.
	Users map[string]string
	// Auth holds more keys of the auth section in YAML flow style without
	// braces, e.g. `algorithms: [MD5]`; only with Users.
	Auth string
	// Bans is the bans section in YAML flow style without braces.
	Bans string
	// Calls holds more keys of the calls section in YAML flow style
	// without braces, e.g. `max_per_source: 0`.
	Calls string
	// Extra is appended to the configuration as it is (whole sections).
	Extra string
}

// SBC is a running sipwall.
type SBC struct {
	Port int    // UDP and TCP port on SBCIP
	Addr string // SBCIP:Port, the remote for sipp
	Dir  string // config, store and logs
	p    *proc
}

// YAML renders the configuration file for listeners on port and a store in
// storeDir.
func (c SBCConfig) YAML(port int, storeDir string) string {
	ring := c.RingTimeout
	if ring == 0 {
		ring = 30 * time.Second
	}
	level := c.LogLevel
	if level == "" {
		level = "debug"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# generated by the sipwall e2e harness\n")
	fmt.Fprintf(&b, "listen:\n")
	fmt.Fprintf(&b, "  - {transport: udp, addr: \"%s:%d\"}\n", SBCIP, port)
	fmt.Fprintf(&b, "  - {transport: tcp, addr: \"%s:%d\"}\n", SBCIP, port)
	fmt.Fprintf(&b, "upstreams:\n")
	fmt.Fprintf(&b, "  - {name: pbx, uri: \"sip:%s:%d%s\"}\n", PBXIP, c.PBXPort, c.Transport.URIParam())
	if c.TrunkPort != 0 {
		fmt.Fprintf(&b, "outbound: {uri: \"sip:%s:%d%s\"}\n", TrunkIP, c.TrunkPort, c.Transport.URIParam())
	}
	fmt.Fprintf(&b, "health: {interval: 0s}\n")
	calls := ""
	if c.Calls != "" {
		calls = ", " + c.Calls
	}
	fmt.Fprintf(&b, "calls: {ring_timeout: %s%s}\n", ring, calls)
	if c.Users != nil {
		extra := ""
		if c.Auth != "" {
			extra = ", " + c.Auth
		}
		fmt.Fprintf(&b, "auth: {mode: digest, realm: sipwall, users_file: %q%s}\n", filepath.Join(filepath.Dir(storeDir), "users.yaml"), extra)
	} else {
		// Without auth the built-in policy would refuse everyone; the call
		// tests are about the B2BUA, so the policy layer is off too unless
		// the test brings a policy of its own.
		fmt.Fprintf(&b, "auth: {mode: \"off\"}\n")
		if !strings.Contains(c.Extra, "policy:") {
			fmt.Fprintf(&b, "policy: {mode: \"off\"}\n")
		}
	}
	if c.Bans != "" {
		fmt.Fprintf(&b, "bans: {%s}\n", c.Bans)
	}
	fmt.Fprintf(&b, "store: {path: %q}\n", storeDir)
	if !strings.Contains(c.Extra, "admin:") {
		// Tests run side by side: each its own admin port.
		fmt.Fprintf(&b, "admin: {addr: \"127.0.0.1:0\"}\n")
	}
	b.WriteString(c.Extra)
	fmt.Fprintf(&b, "log: {level: %s}\n", level)
	return b.String()
}

// StartSBC writes a configuration, starts `sipwall run -config FILE` and
// waits until it answers OPTIONS over UDP and accepts TCP connections.
// At the end of the test it checks sipwall is still running and did not
// panic or race, then kills it.
func StartSBC(t testing.TB, cfg SBCConfig) *SBC {
	t.Helper()
	bin := SipwallBinary(t)
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	if err := os.MkdirAll(store, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &SBC{Port: AllocPorts(t, SBCIP), Dir: dir}
	s.Addr = net.JoinHostPort(SBCIP, strconv.Itoa(s.Port))
	if cfg.Users != nil {
		if err := WriteUsers(filepath.Join(dir, "users.yaml"), "sipwall", cfg.Users); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "sipwall.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.YAML(s.Port, store)), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := startProc(t, "sipwall", dir, bin, "run", "-config", cfgPath)
	if err != nil {
		t.Fatalf("starting sipwall: %v", err)
	}
	s.p = p
	t.Cleanup(func() { s.stop(t) })
	if err := s.waitReady(readyTimeout); err != nil {
		t.Fatalf("sipwall not ready: %v\nconfig:\n%s", err, tailFile(cfgPath, logTail))
	}
	return s
}

// authURI is the digest uri of a sipp INVITE scenario: its Request-URI,
// sip:<service>@<remote>, given without "sip:" (sipp adds it).
func authURI(user, service, remote string) string {
	if user == "" {
		return ""
	}
	if service == "" {
		service = "service"
	}
	return service + "@" + remote
}

// WriteUsers writes a users file with HA1 values of every algorithm for
// the given passwords.
func WriteUsers(path, realm string, users map[string]string) error {
	names := make([]string, 0, len(users))
	for u := range users {
		names = append(names, u)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString("users:\n")
	for _, u := range names {
		fmt.Fprintf(&b, "  - name: %q\n    ha1:\n", u)
		for _, alg := range []string{auth.SHA256, auth.SHA512256, auth.MD5} {
			fmt.Fprintf(&b, "      %s: %q\n", alg, auth.HashPassword(u, realm, users[u], alg))
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// Log returns sipwall's stderr so far.
func (s *SBC) Log() string {
	data, _ := os.ReadFile(s.p.stderr)
	return string(data)
}

// PID is the process id of the running sipwall.
func (s *SBC) PID() int { return s.p.cmd.Process.Pid }

// Alive reports whether sipwall is still running.
func (s *SBC) Alive() bool { return !s.p.exited() }

// RSS is sipwall's resident set size in bytes, VmRSS of /proc/PID/status
// (Linux only; the error says why it could not be read).
func (s *SBC) RSS() (int64, error) { return procStatusBytes(s.PID(), "VmRSS") }

// PeakRSS is sipwall's peak resident set size in bytes (VmHWM).
func (s *SBC) PeakRSS() (int64, error) { return procStatusBytes(s.PID(), "VmHWM") }

// procStatusBytes reads a "Key:   N kB" line of /proc/PID/status.
func procStatusBytes(pid int, key string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != key {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("/proc/%d/status: %s: unexpected value %q", pid, key, v)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/status: %s: %v", pid, key, err)
		}
		return n << 10, nil
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s line", pid, key)
}

// waitReady sends OPTIONS over UDP until a 200 comes back, then checks the
// TCP listener accepts a connection.
func (s *SBC) waitReady(d time.Duration) error {
	deadline := time.Now().Add(d)
	c, err := net.ListenPacket("udp", net.JoinHostPort(SBCIP, "0"))
	if err != nil {
		return err
	}
	defer c.Close()
	dst, err := net.ResolveUDPAddr("udp", s.Addr)
	if err != nil {
		return err
	}
	local := c.LocalAddr().(*net.UDPAddr)
	buf := make([]byte, 8192)
	var last string
	udpOK := false
	for n := 1; time.Now().Before(deadline); n++ {
		if s.p.exited() {
			return fmt.Errorf("sipwall exited (%v) before it was ready", s.p.err)
		}
		if !udpOK {
			msg := OptionsRequest(s.Addr, local.Port, n)
			if _, err := c.WriteTo([]byte(msg), dst); err != nil {
				last = err.Error()
			}
			c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
			m, _, err := c.ReadFrom(buf)
			if err != nil {
				last = err.Error()
				continue
			}
			resp := string(buf[:m])
			if !strings.HasPrefix(resp, "SIP/2.0 200") {
				last, _, _ = strings.Cut(resp, "\r\n")
				time.Sleep(100 * time.Millisecond)
				continue
			}
			udpOK = true
		}
		tc, err := net.DialTimeout("tcp", s.Addr, 250*time.Millisecond)
		if err != nil {
			last = err.Error()
			time.Sleep(100 * time.Millisecond)
			continue
		}
		tc.Close()
		return nil
	}
	return fmt.Errorf("no answer within %s (last: %s)", d, last)
}

// OptionsRequest is an out-of-dialog OPTIONS to sipwall at addr, sent from
// SBCIP:localPort; seq makes branch and CSeq unique.
func OptionsRequest(addr string, localPort, seq int) string {
	from := net.JoinHostPort(SBCIP, strconv.Itoa(localPort))
	lines := []string{
		"OPTIONS sip:" + addr + " SIP/2.0",
		fmt.Sprintf("Via: SIP/2.0/UDP %s;rport;branch=z9hG4bK-e2eready-%d-%d", from, os.Getpid(), seq),
		"Max-Forwards: 70",
		fmt.Sprintf("From: <sip:e2e@%s>;tag=e2e%d", from, os.Getpid()),
		"To: <sip:" + addr + ">",
		fmt.Sprintf("Call-ID: e2e-ready-%d-%d@%s", os.Getpid(), localPort, SBCIP),
		fmt.Sprintf("CSeq: %d OPTIONS", seq),
		"Contact: <sip:e2e@" + from + ">",
		"Accept: application/sdp",
		"User-Agent: sipwall-e2e",
		"Content-Length: 0",
		"", "",
	}
	return strings.Join(lines, "\r\n")
}

// stop checks sipwall survived the test, kills it and looks for panics and
// data races in its stderr.
func (s *SBC) stop(t testing.TB) {
	if s.p.exited() {
		t.Errorf("sipwall exited during the test (%v)", s.p.err)
	}
	s.p.kill()
	stderr, _ := os.ReadFile(s.p.stderr)
	if i := bytes.Index(stderr, []byte("panic")); i >= 0 {
		t.Errorf("sipwall stderr mentions a panic:\n%s", excerpt(stderr, i, 8<<10))
	}
	if i := bytes.Index(stderr, []byte("WARNING: DATA RACE")); i >= 0 {
		t.Errorf("sipwall stderr reports a data race:\n%s", excerpt(stderr, i, 8<<10))
	}
	if t.Failed() {
		t.Logf("sipwall stderr (tail):\n%s", tailFile(s.p.stderr, logTail))
		t.Logf("sipwall stdout (tail):\n%s", tailFile(s.p.stdout, logTail))
	}
}

// ---------------------------------------------------------------------------
// sipp

// Sipp describes one sipp process.
type Sipp struct {
	Name      string    // label in logs and file names, e.g. "caller"
	Scenario  string    // file name in testdata/sipp
	IP        string    // -i, also the media and control address
	Port      int       // -p; 0 allocates one
	Remote    string    // host:port to call; empty for a UAS
	Transport Transport // -t
	Calls     int       // -m; default 1
	Limit     int       // -l; 0 leaves sipp's default
	Rate      int       // -r calls per second; 0 leaves sipp's default
	// Pause is -d, the length of <pause/> in the scenario.
	Pause time.Duration
	// Service is -s, the user part of the Request-URI; default "service".
	Service string
	// Timeout is -timeout, sipp's bound on its whole run; default 30s.
	Timeout time.Duration
	// NoTraceMsg turns off the message log (kept small for load tests).
	NoTraceMsg bool
	// AuthUser and AuthPass are -au and -ap, the digest credentials.
	AuthUser, AuthPass string
	// RTPEcho is -rtp_echo: RTP received on the media port (-mp, base+2)
	// is sent back to its source.
	RTPEcho bool
	// AuthURI is -auth_uri, the digest uri without "sip:". sipp's default is
	// sip:<remote> without the user, which the SBC refuses for requests
	// whose Request-URI has one (the uri must be the Request-URI).
	AuthURI string
	// Args are more sipp options, appended as they are.
	Args []string
}

// SippProc is a running sipp.
type SippProc struct {
	Sipp
	dir    string
	p      *proc
	errLog string
	msgLog string
	stat   string
	screen string
	result *SippResult
}

// SippResult is how a sipp run ended.
type SippResult struct {
	ExitCode int               // 0: every call succeeded
	Finished bool              // false: killed by the harness
	Stats    map[string]string // last row of the statistics file
}

// Count returns an integer statistic such as "SuccessfulCall(C)".
func (r SippResult) Count(key string) int {
	n, err := strconv.Atoi(strings.TrimSpace(r.Stats[key]))
	if err != nil {
		return -1
	}
	return n
}

// Start starts sipp and, for a UAS, waits until it listens.
func (s Sipp) Start(t testing.TB) *SippProc {
	t.Helper()
	sippBin := RequireSipp(t)
	if s.Calls == 0 {
		s.Calls = 1
	}
	if s.Timeout == 0 {
		s.Timeout = defaultRunTime
	}
	if s.Name == "" {
		s.Name = strings.TrimSuffix(s.Scenario, ".xml")
	}
	base := AllocPorts(t, s.IP)
	if s.Port == 0 {
		s.Port = base
	}
	sp := &SippProc{Sipp: s, dir: t.TempDir()}
	sp.errLog = filepath.Join(sp.dir, s.Name+"_errors.log")
	sp.msgLog = filepath.Join(sp.dir, s.Name+"_messages.log")
	sp.stat = filepath.Join(sp.dir, s.Name+"_stat.csv")
	sp.screen = filepath.Join(sp.dir, s.Name+"_screen.log")

	var args []string
	if s.Remote != "" {
		args = append(args, s.Remote)
	}
	args = append(args,
		"-sf", filepath.Join(ScenarioDir(t), s.Scenario),
		"-t", s.Transport.Sipp,
		"-i", s.IP, "-p", strconv.Itoa(s.Port),
		"-ci", s.IP, "-cp", strconv.Itoa(base+1),
		"-mi", s.IP, "-mp", strconv.Itoa(base+2),
		"-m", strconv.Itoa(s.Calls),
		"-d", strconv.FormatInt(s.Pause.Milliseconds(), 10),
		"-nostdin",
		"-timeout", fmt.Sprintf("%ds", int(s.Timeout.Seconds())), "-timeout_error",
		"-recv_timeout", strconv.FormatInt(recvTimeout.Milliseconds(), 10),
		// A starved sipp (busy CI machine) warns, but must not abort.
		"-watchdog_minor_maxtriggers", "100000", "-watchdog_major_maxtriggers", "100000",
		"-trace_err", "-error_file", sp.errLog,
		"-trace_stat", "-stf", sp.stat, "-fd", "1",
		"-trace_screen", "-screen_file", sp.screen,
	)
	if s.Limit > 0 {
		args = append(args, "-l", strconv.Itoa(s.Limit))
	}
	if s.Rate > 0 {
		args = append(args, "-r", strconv.Itoa(s.Rate))
	}
	if s.Service != "" {
		args = append(args, "-s", s.Service)
	}
	if s.RTPEcho {
		args = append(args, "-rtp_echo")
	}
	if s.AuthUser != "" {
		args = append(args, "-au", s.AuthUser, "-ap", s.AuthPass)
		if s.AuthURI != "" {
			args = append(args, "-auth_uri", s.AuthURI)
		}
	}
	if !s.NoTraceMsg {
		args = append(args, "-trace_msg", "-message_file", sp.msgLog)
	}
	args = append(args, s.Args...)
	p, err := startProc(t, s.Name, sp.dir, sippBin, args...)
	if err != nil {
		t.Fatalf("starting sipp %s: %v", s.Name, err)
	}
	sp.p = p
	t.Cleanup(func() { sp.stop(t) })
	if s.Remote == "" {
		proto := "udp"
		if s.Transport.Name == "tcp" {
			proto = "tcp"
		}
		if !waitListening(proto, s.IP, s.Port, listenTimeout) {
			sp.p.kill()
			sp.dump(t)
			t.Fatalf("sipp %s did not listen on %s %s:%d within %s", s.Name, proto, s.IP, s.Port, listenTimeout)
		}
	}
	return sp
}

// Addr is the SIP address sipp is bound to.
func (sp *SippProc) Addr() string { return net.JoinHostPort(sp.IP, strconv.Itoa(sp.Port)) }

// Wait waits up to d for sipp to exit by itself (killing it after that)
// and reads its statistics.
func (sp *SippProc) Wait(d time.Duration) SippResult {
	if sp.result != nil {
		return *sp.result
	}
	code, ok := sp.p.wait(d)
	r := SippResult{ExitCode: code, Finished: ok, Stats: readStats(sp.stat)}
	sp.result = &r
	return r
}

// Messages is the message log (empty with NoTraceMsg).
func (sp *SippProc) Messages() string {
	data, _ := os.ReadFile(sp.msgLog)
	return string(data)
}

func (sp *SippProc) stop(t testing.TB) {
	sp.p.kill()
	if t.Failed() {
		sp.dump(t)
	}
}

func (sp *SippProc) dump(t testing.TB) {
	t.Logf("sipp %s (%s, %s:%d, remote %q) exit: %v", sp.Name, sp.Scenario, sp.IP, sp.Port, sp.Remote, sp.p.err)
	t.Logf("sipp %s stderr:\n%s", sp.Name, tailFile(sp.p.stderr, logTail))
	t.Logf("sipp %s errors:\n%s", sp.Name, tailFile(sp.errLog, logTail))
	t.Logf("sipp %s screen:\n%s", sp.Name, tailFile(sp.screen, logTail))
	if !sp.NoTraceMsg {
		t.Logf("sipp %s messages (tail):\n%s", sp.Name, tailFile(sp.msgLog, logTail))
	}
}

// MessageHeader finds, in a sipp message log, the first message whose start
// line begins with start (e.g. "INVITE ", "SIP/2.0 200") and returns the
// values of its header name, in order. Compact header forms are not mapped.
func MessageHeader(log, start, name string) []string {
	var vals []string
	in := false
	for _, line := range strings.Split(log, "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.HasPrefix(line, "-----------------------------------------------"):
			if in {
				return vals
			}
		case !in && strings.HasPrefix(line, start):
			in = true
		case in && line == "":
			if len(vals) > 0 {
				return vals
			}
		case in:
			k, v, ok := strings.Cut(line, ":")
			if ok && strings.EqualFold(strings.TrimSpace(k), name) {
				vals = append(vals, strings.TrimSpace(v))
			}
		}
	}
	return vals
}

// readStats returns the last row of sipp's ';'-separated statistics file
// keyed by the header row.
func readStats(path string) map[string]string {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var rows []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(l) != "" {
			rows = append(rows, l)
		}
	}
	if len(rows) < 2 {
		return nil
	}
	head := strings.Split(rows[0], ";")
	last := strings.Split(rows[len(rows)-1], ";")
	m := make(map[string]string, len(head))
	for i, h := range head {
		if i < len(last) {
			m[h] = last[i]
		}
	}
	return m
}

// ---------------------------------------------------------------------------
// A whole call test

// Call is one call test: a sipp UAS (callee), sipwall, and a sipp UAC
// (caller) placing Calls calls through sipwall.
type Call struct {
	UAC, UAS string // scenario files
	// FromInside: the caller is the PBX (UAC on PBXIP at the upstream's
	// port) and the callee the trunk (UAS on TrunkIP = outbound.uri).
	// Otherwise the caller is outside (OutsideIP) and the callee the PBX.
	FromInside  bool
	Calls       int           // default 1
	Limit, Rate int           // sipp -l and -r of the caller
	UACPause    time.Duration // caller's -d
	UASPause    time.Duration // callee's -d
	Service     string        // caller's -s
	RingTimeout time.Duration // sipwall calls.ring_timeout
	Timeout     time.Duration // sipp -timeout of both; default 30s
	NoTraceMsg  bool
	// CallerIP replaces OutsideIP as the caller's address (calls from
	// outside only).
	CallerIP string
	// Extra is SBCConfig.Extra.
	Extra string
	// CallsConfig is SBCConfig.Calls (keys of the calls section).
	CallsConfig string
	// Users and Auth are SBCConfig's (digest on when Users is set);
	// AuthUser and AuthPass the caller's -au and -ap.
	Users              map[string]string
	Auth               string
	AuthUser, AuthPass string
}

// CallResult holds both sipp processes after the run.
type CallResult struct {
	SBC            *SBC
	Caller, Callee *SippProc
	UAC, UAS       SippResult
}

// Run runs the call test over tr and fails t unless both sipp processes
// exit 0 with every call successful.
func (c Call) Run(t testing.TB, tr Transport) CallResult {
	t.Helper()
	SkipIfShort(t)
	RequireSipp(t)
	if c.Calls == 0 {
		c.Calls = 1
	}
	if c.Timeout == 0 {
		c.Timeout = defaultRunTime
	}
	calleeIP, callerIP := PBXIP, OutsideIP
	if c.CallerIP != "" {
		callerIP = c.CallerIP
	}
	if c.FromInside {
		calleeIP, callerIP = TrunkIP, PBXIP
	}
	callee := Sipp{
		Name: "callee", Scenario: c.UAS, IP: calleeIP, Transport: tr,
		Calls: c.Calls, Pause: c.UASPause, Timeout: c.Timeout, NoTraceMsg: c.NoTraceMsg,
	}.Start(t)

	cfg := SBCConfig{Transport: tr, RingTimeout: c.RingTimeout, Users: c.Users, Auth: c.Auth, Extra: c.Extra, Calls: c.CallsConfig}
	callerPort := 0
	if c.FromInside {
		// The caller is the PBX: same address and port as the upstream.
		callerPort = AllocPorts(t, PBXIP)
		cfg.PBXPort = callerPort
		cfg.TrunkPort = callee.Port
	} else {
		cfg.PBXPort = callee.Port
	}
	sbc := StartSBC(t, cfg)

	caller := Sipp{
		Name: "caller", Scenario: c.UAC, IP: callerIP, Port: callerPort,
		Remote: sbc.Addr, Transport: tr, Calls: c.Calls, Limit: c.Limit,
		Rate: c.Rate, Pause: c.UACPause, Service: c.Service, Timeout: c.Timeout,
		NoTraceMsg: c.NoTraceMsg, AuthUser: c.AuthUser, AuthPass: c.AuthPass,
		AuthURI: authURI(c.AuthUser, c.Service, sbc.Addr),
	}.Start(t)

	res := CallResult{SBC: sbc, Caller: caller, Callee: callee}
	res.UAC = caller.Wait(c.Timeout + 10*time.Second)
	res.UAS = callee.Wait(uasGrace)

	check := func(who string, r SippResult) {
		t.Helper()
		switch {
		case !r.Finished:
			t.Errorf("%s sipp did not finish in time and was killed", who)
		case r.ExitCode != 0:
			t.Errorf("%s sipp exit code %d (0 = all calls succeeded, 1 = some failed)", who, r.ExitCode)
		}
		if r.Stats == nil {
			t.Errorf("%s sipp wrote no statistics", who)
			return
		}
		if ok, failed := r.Count("SuccessfulCall(C)"), r.Count("FailedCall(C)"); ok != c.Calls || failed != 0 {
			t.Errorf("%s sipp: %d successful, %d failed calls; want %d and 0", who, ok, failed, c.Calls)
		}
	}
	check("caller ("+c.UAC+")", res.UAC)
	check("callee ("+c.UAS+")", res.UAS)
	return res
}
