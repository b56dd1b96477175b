package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// regSBC is a sipwall run with a registrar section added to the harness's
// configuration, on a port and store of the test's choosing, so that a
// second instance can take over both (a restart).
type regSBC struct {
	*SBC
	halted bool
}

// startRegSBC starts sipwall with cfg's configuration plus extra on port,
// keeping its state in storeDir.
func startRegSBC(t *testing.T, cfg SBCConfig, port int, storeDir, extra string) *regSBC {
	t.Helper()
	bin := SipwallBinary(t)
	dir := t.TempDir()
	s := &regSBC{SBC: &SBC{Port: port, Addr: net.JoinHostPort(SBCIP, strconv.Itoa(port)), Dir: dir}}
	cfgPath := filepath.Join(dir, "sipwall.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.YAML(port, storeDir)+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := startProc(t, "sipwall", dir, bin, "run", "-config", cfgPath)
	if err != nil {
		t.Fatalf("starting sipwall: %v", err)
	}
	s.p = p
	t.Cleanup(func() {
		if !s.halted {
			s.stop(t)
		}
	})
	if err := s.waitReady(readyTimeout); err != nil {
		t.Fatalf("sipwall not ready: %v\nconfig:\n%s", err, tailFile(cfgPath, logTail))
	}
	return s
}

// halt stops sipwall now (SIGTERM), with the usual checks of its stderr.
func (s *regSBC) halt(t *testing.T) {
	t.Helper()
	s.stop(t)
	s.halted = true
}

// mustSucceed waits for a sipp and fails the test unless all its calls
// succeeded.
func mustSucceed(t *testing.T, sp *SippProc, calls int) {
	t.Helper()
	r := sp.Wait(sp.Timeout + 10*time.Second)
	if r.ExitCode != 0 || r.Count("SuccessfulCall(C)") != calls || r.Count("FailedCall(C)") != 0 {
		t.Fatalf("sipp %s: exit %d, successful %d, failed %d (want %d successful)",
			sp.Name, r.ExitCode, r.Count("SuccessfulCall(C)"), r.Count("FailedCall(C)"), calls)
	}
}

// receivedRegisters counts the REGISTER requests in a sipp message log.
func receivedRegisters(log string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		if strings.HasPrefix(line, "REGISTER ") {
			n++
		}
	}
	return n
}

// tokenContact parses the Contact the PBX got from sipwall.
func tokenContact(t *testing.T, pbxLog string) (token string, expires string) {
	t.Helper()
	vs := MessageHeader(pbxLog, "REGISTER ", "Contact")
	if len(vs) != 1 {
		t.Fatalf("PBX REGISTER Contacts %q, want one", vs)
	}
	var ct sip.ContactHeader
	addr := strings.TrimSpace(vs[0])
	var params sip.HeaderParams
	if _, err := sip.ParseAddressValue(addr, &ct.Address, &params); err != nil {
		t.Fatalf("Contact %q: %v", addr, err)
	}
	exp, _ := params.Get("expires")
	return ct.Address.User, exp
}

// registerThroughRelay runs phone (uac_register_refresh: a REGISTER and
// four refreshes) through sipwall in relay mode to a sipp PBX and returns
// the token the PBX got. It checks the PBX saw exactly one REGISTER.
func registerThroughRelay(t *testing.T, tr Transport, phonePort int) (*regSBC, *SippProc, string) {
	t.Helper()
	pbx := Sipp{Name: "pbx-registrar", Scenario: "uas_register.xml", IP: PBXIP, Transport: tr, Timeout: 20 * time.Second}.Start(t)
	sbc := startRegSBC(t, SBCConfig{Transport: tr, PBXPort: pbx.Port}, AllocPorts(t, SBCIP), filepath.Join(t.TempDir(), "store"), "")
	phone := Sipp{Name: "phone-register", Scenario: "uac_register_refresh.xml", IP: OutsideIP, Port: phonePort,
		Remote: sbc.Addr, Transport: tr, Service: "alice", Timeout: 20 * time.Second}.Start(t)
	mustSucceed(t, phone, 1)
	mustSucceed(t, pbx, 1)

	pbxLog := pbx.Messages()
	if n := receivedRegisters(pbxLog); n != 1 {
		t.Errorf("the PBX received %d REGISTERs for 5 from the phone, want 1 (caching)", n)
	}
	token, exp := tokenContact(t, pbxLog)
	if !strings.HasPrefix(token, "sw-") || exp != "3600" {
		t.Errorf("PBX Contact token %q expires %q, want sw-... and 3600", token, exp)
	}
	if strings.Contains(pbxLog, OutsideIP) {
		t.Errorf("the phone's address reached the PBX:\n%s", pbxLog)
	}
	for _, ct := range MessageHeader(phone.Messages(), "SIP/2.0 200", "Contact") {
		if !strings.HasSuffix(ct, ";expires=60") {
			t.Errorf("phone's 200 Contact %q, want expires=60 (phone_expires)", ct)
		}
	}
	return sbc, phone, token
}

// TestRegistrarRelay: a phone registers through sipwall (relay mode, the
// default) over UDP and TCP; its refreshes are cached. Over UDP the PBX
// then calls the token it was given and the phone, at its registered
// address, answers.
func TestRegistrarRelay(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr Transport) {
		phonePort := AllocPorts(t, OutsideIP)
		sbc, _, token := registerThroughRelay(t, tr, phonePort)
		if tr.Name != "udp" {
			return // the sipp phone's TCP connection ended with its process
		}
		phone := Sipp{Name: "phone-answer", Scenario: "uas_answer.xml", IP: OutsideIP, Port: phonePort, Transport: tr, Timeout: 20 * time.Second}.Start(t)
		caller := Sipp{Name: "pbx-caller", Scenario: "uac_basic.xml", IP: PBXIP, Remote: sbc.Addr, Transport: tr,
			Service: token, Pause: 200 * time.Millisecond, Timeout: 20 * time.Second}.Start(t)
		mustSucceed(t, caller, 1)
		mustSucceed(t, phone, 1)
		want := "INVITE sip:alice@" + OutsideIP + ":" + strconv.Itoa(phonePort)
		if !strings.Contains(phone.Messages(), want) {
			t.Errorf("the phone's INVITE does not start %q", want)
		}
	})
}

// TestRegistrarRestart: a binding survives a restart of sipwall on the
// same store; the PBX's call to the token reaches the phone afterwards.
func TestRegistrarRestart(t *testing.T) {
	SkipIfShort(t)
	tr := Transports[0]
	phonePort := AllocPorts(t, OutsideIP)
	pbx := Sipp{Name: "pbx-registrar", Scenario: "uas_register.xml", IP: PBXIP, Transport: tr, Timeout: 20 * time.Second}.Start(t)
	cfg := SBCConfig{Transport: tr, PBXPort: pbx.Port}
	port := AllocPorts(t, SBCIP)
	storeDir := filepath.Join(t.TempDir(), "store")
	first := startRegSBC(t, cfg, port, storeDir, "")
	reg := Sipp{Name: "phone-register", Scenario: "uac_register.xml", IP: OutsideIP, Port: phonePort,
		Remote: first.Addr, Transport: tr, Service: "alice", Timeout: 20 * time.Second}.Start(t)
	mustSucceed(t, reg, 1)
	mustSucceed(t, pbx, 1)
	token, _ := tokenContact(t, pbx.Messages())

	first.halt(t)
	second := startRegSBC(t, cfg, port, storeDir, "")
	phone := Sipp{Name: "phone-answer", Scenario: "uas_answer.xml", IP: OutsideIP, Port: phonePort, Transport: tr, Timeout: 20 * time.Second}.Start(t)
	caller := Sipp{Name: "pbx-caller", Scenario: "uac_basic.xml", IP: PBXIP, Remote: second.Addr, Transport: tr,
		Service: token, Pause: 200 * time.Millisecond, Timeout: 20 * time.Second}.Start(t)
	mustSucceed(t, caller, 1)
	mustSucceed(t, phone, 1)
}

// localYAML is local mode for users alice and bob at the SBC's address.
const localYAML = "registrar: {mode: local, domains: [\"" + SBCIP + "\"], users: [alice, bob]"

// registerLocal registers user from port through sipwall in local mode.
func registerLocal(t *testing.T, sbc *regSBC, user string, port int) {
	t.Helper()
	sp := Sipp{Name: "register-" + user, Scenario: "uac_register.xml", IP: OutsideIP, Port: port,
		Remote: sbc.Addr, Transport: Transports[0], Service: user, Timeout: 20 * time.Second}.Start(t)
	mustSucceed(t, sp, 1)
}

// TestRegistrarLocalCall: in local mode two phones register with sipwall
// itself and one calls the other through it; no PBX takes part.
func TestRegistrarLocalCall(t *testing.T) {
	SkipIfShort(t)
	tr := Transports[0]
	// An upstream is required by `sipwall run`; nothing listens there.
	sbc := startRegSBC(t, SBCConfig{Transport: tr, PBXPort: AllocPorts(t, PBXIP)}, AllocPorts(t, SBCIP),
		filepath.Join(t.TempDir(), "store"), localYAML+"}\n")
	alicePort, bobPort := AllocPorts(t, OutsideIP), AllocPorts(t, OutsideIP)
	registerLocal(t, sbc, "alice", alicePort)
	registerLocal(t, sbc, "bob", bobPort)

	bob := Sipp{Name: "bob", Scenario: "uas_answer.xml", IP: OutsideIP, Port: bobPort, Transport: tr, Timeout: 20 * time.Second}.Start(t)
	alice := Sipp{Name: "alice", Scenario: "uac_basic.xml", IP: OutsideIP, Port: alicePort, Remote: sbc.Addr, Transport: tr,
		Service: "bob", Pause: 200 * time.Millisecond, Timeout: 20 * time.Second}.Start(t)
	mustSucceed(t, alice, 1)
	mustSucceed(t, bob, 1)
}

// TestRegistrarRedirect: with registrar.redirect, a call to a registered
// user is answered 302 with the user's Contact.
func TestRegistrarRedirect(t *testing.T) {
	SkipIfShort(t)
	tr := Transports[0]
	sbc := startRegSBC(t, SBCConfig{Transport: tr, PBXPort: AllocPorts(t, PBXIP)}, AllocPorts(t, SBCIP),
		filepath.Join(t.TempDir(), "store"), localYAML+", redirect: true}\n")
	bobPort := AllocPorts(t, OutsideIP)
	registerLocal(t, sbc, "bob", bobPort)
	alice := Sipp{Name: "alice", Scenario: "uac_expect_redirect.xml", IP: OutsideIP, Remote: sbc.Addr, Transport: tr,
		Service: "bob", Timeout: 20 * time.Second}.Start(t)
	mustSucceed(t, alice, 1)
	want := "<sip:bob@" + OutsideIP + ":" + strconv.Itoa(bobPort) + ";transport=UDP>"
	if got := MessageHeader(alice.Messages(), "SIP/2.0 302", "Contact"); len(got) != 1 || got[0] != want {
		t.Errorf("302 Contact %q, want %q", got, want)
	}
}
