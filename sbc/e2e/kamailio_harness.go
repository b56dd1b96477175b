package e2e

// Harness for the tests with Kamailio as the internal registrar and proxy
// behind sipwall (kamailio_test.go): starting and stopping Kamailio, and
// phones registered through sipwall.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// RequireKamailio returns the path of kamailio, skipping the test when it
// is missing, or failing it when CI is set or SIPWALL_E2E_REQUIRED=1.
func RequireKamailio(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("kamailio"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/kamailio", "/usr/local/sbin/kamailio"} {
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p
		}
	}
	msg := "kamailio not found: run `make test`, which installs it " +
		"(scripts/install-test-tools.sh, Debian package kamailio)"
	if os.Getenv("CI") != "" || os.Getenv("SIPWALL_E2E_REQUIRED") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// Kamailio is a running Kamailio with testdata/kamailio/registrar.cfg:
// the location service and proxy behind sipwall, trusting SBCIP only.
type Kamailio struct {
	IP   string
	Port int // UDP
	Dir  string
	p    *proc
}

// Addr is ip:port of Kamailio's UDP socket.
func (k *Kamailio) Addr() string { return net.JoinHostPort(k.IP, strconv.Itoa(k.Port)) }

// Log returns Kamailio's stderr so far (its log).
func (k *Kamailio) Log() string {
	data, _ := os.ReadFile(k.p.stderr)
	return string(data)
}

// StartKamailio starts Kamailio in the foreground on a free UDP port of
// ip (loopback), with little memory, and waits until it listens. It is
// stopped by its PID when the test ends (SIGTERM: the main process ends
// its children; SIGKILL to its own process group if it does not).
func StartKamailio(t testing.TB, ip string) *Kamailio {
	t.Helper()
	bin := RequireKamailio(t)
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(root, "testdata", "kamailio", "registrar.cfg")
	k := &Kamailio{IP: ip, Port: AllocPorts(t, ip), Dir: t.TempDir()}
	runDir := filepath.Join(k.Dir, "run")
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{
		"-DD", "-E", "-f", cfg, "-Y", runDir, "-w", k.Dir,
		"-m", "32", "-M", "4",
		"-A", fmt.Sprintf("LISTEN=udp:%s:%d", ip, k.Port),
		"-A", fmt.Sprintf("SBC_IP=%q", SBCIP),
	}
	p, err := startGroup(k.Dir, "kamailio", bin, args...)
	if err != nil {
		t.Fatalf("starting kamailio: %v", err)
	}
	k.p = p
	t.Cleanup(func() { k.stop(t) })
	if !waitListening("udp", ip, k.Port, readyTimeout) {
		k.stop(t)
		t.Fatalf("kamailio did not listen on udp %s within %s:\n%s", k.Addr(), readyTimeout, tailFile(p.stderr, logTail))
	}
	return k
}

// startGroup is startProc for a program that forks: the child gets a
// process group of its own, so that what it leaves behind can be ended
// with it.
func startGroup(dir, name, bin string, args ...string) (*proc, error) {
	return launch(dir, name, true, bin, args...)
}

// stop ends Kamailio: SIGTERM to its main process, which ends its
// children; if it is still there after killGrace, SIGKILL to the process
// group it was started in (itself and its children, all ours: the main
// process is not reaped yet, so the group id is still its).
func (k *Kamailio) stop(t testing.TB) {
	if k.p == nil {
		return
	}
	p := k.p
	k.p = nil
	if p.exited() {
		t.Errorf("kamailio exited during the test (%v); log (tail):\n%s", p.err, tailFile(p.stderr, logTail))
		return
	}
	if t.Failed() {
		t.Logf("kamailio log (tail):\n%s", tailFile(p.stderr, logTail))
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(killGrace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// startBound is Start that also waits, for a caller too, until sipp's
// socket is bound: phones here are called as well as calling.
func (s Sipp) startBound(t testing.TB) *SippProc {
	t.Helper()
	sp := s.Start(t)
	if s.Remote != "" && !waitListening("udp", sp.IP, sp.Port, listenTimeout) {
		sp.p.kill()
		sp.dump(t)
		t.Fatalf("sipp %s did not listen on udp %s within %s", sp.Name, sp.Addr(), listenTimeout)
	}
	return sp
}

// Phone is a sipp phone registered through sipwall: a user name and the
// address it registered from, where calls to it arrive.
type Phone struct {
	User string
	IP   string
	Port int
}

// NewPhone allocates a port for user on ip.
func NewPhone(t testing.TB, user, ip string) Phone {
	return Phone{User: user, IP: ip, Port: AllocPorts(t, ip)}
}

// Register registers the phone through sbc (uac_register.xml from its own
// port) and fails the test unless the registration succeeds.
func (ph Phone) Register(t testing.TB, sbc *SBC) {
	t.Helper()
	sp := Sipp{
		Name: "register-" + ph.User, Scenario: "uac_register.xml", IP: ph.IP, Port: ph.Port,
		Remote: sbc.Addr, Transport: Transports[0], Service: ph.User, Timeout: 15 * time.Second,
	}.Start(t)
	r := sp.Wait(25 * time.Second)
	if !r.Finished || r.ExitCode != 0 || r.Count("SuccessfulCall(C)") != 1 {
		sp.dump(t)
		t.Fatalf("%s: registration through sipwall failed (exit %d, finished %v)", ph.User, r.ExitCode, r.Finished)
	}
}

// checkSipp fails t unless sp ended by itself with exit 0, no failed call
// and want successful ones (-1: any number).
func checkSipp(t testing.TB, sp *SippProc, want int, within time.Duration) SippResult {
	t.Helper()
	r := sp.Wait(within)
	switch {
	case !r.Finished:
		t.Errorf("sipp %s (%s) did not finish in time and was killed", sp.Name, sp.Scenario)
	case r.ExitCode != 0:
		t.Errorf("sipp %s (%s) exit code %d", sp.Name, sp.Scenario, r.ExitCode)
	}
	ok, failed := r.Count("SuccessfulCall(C)"), r.Count("FailedCall(C)")
	if failed != 0 || (want >= 0 && ok != want) {
		t.Errorf("sipp %s (%s): %d successful, %d failed calls; want %d and 0", sp.Name, sp.Scenario, ok, failed, want)
	}
	return r
}
