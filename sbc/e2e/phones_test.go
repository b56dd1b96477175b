package e2e

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc/config"
)

// The account every phone registers, written by `sipwall passwd`.
const (
	phoneUser     = "alice"
	phonePassword = "s3cret-phone-4711"
)

// phoneClient is one softphone under test. Its three runs (udp, tcp, tls)
// use the addresses firstIP, firstIP+1 and firstIP+2 of 127.0.0.0/8.
type phoneClient struct {
	name    string
	firstIP int
	start   func(*testing.T, phoneAccount) softphone
}

var phoneClients = []phoneClient{
	{name: "baresip", firstIP: 21, start: func(t *testing.T, a phoneAccount) softphone { return startBaresip(t, a) }},
	{name: "linphone", firstIP: 31, start: func(t *testing.T, a phoneAccount) softphone { return startLinphone(t, a) }},
}

var phoneTransports = []string{"udp", "tcp", "tls"}

// TestPhones: real softphones (baresip and linphone as Debian ships them)
// register through sipwall with its default configuration over UDP, TCP
// and TLS, call the PBX and hang up, then are called by the PBX on the
// flow they registered from and see the PBX hang up. sipwall's TLS
// certificate comes from a test CA that both clients are given (baresip:
// sip_cafile; linphone: root_ca with verify_server_certs and
// verify_server_cn on).
func TestPhones(t *testing.T) {
	SkipIfShort(t)
	RequireSipp(t)
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	users := filepath.Join(dir, "users.yaml")
	t.Log(passwdUser(t, users, config.Default().Auth.Realm, phoneUser, phonePassword))
	for _, c := range phoneClients {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for i, tr := range phoneTransports {
				t.Run(tr, func(t *testing.T) {
					t.Parallel()
					runPhone(t, c, tr, fmt.Sprintf("127.0.0.%d", c.firstIP+i), users, pki)
				})
			}
		})
	}
}

// runPhone is one client over one transport: registration, a call to the
// PBX hung up by the phone, a call from the PBX hung up by the PBX.
func runPhone(t *testing.T, c phoneClient, tr, ip, users string, pki testPKI) {
	// -deadcall_wait 0: sipwall keeps one Call-ID per registration toward
	// the PBX, and sipp would drop a refresh or the final un-REGISTER as a
	// message of a finished call for 33 s.
	pbx := Sipp{Name: "pbx", Scenario: "uas_pbx.xml", IP: PBXIP, Transport: Transports[0],
		Calls: 100, Timeout: 60 * time.Second, Args: []string{"-deadcall_wait", "0"}}.Start(t)
	sbc := startDefaultSBC(t, pbx.Port, users, pki)
	acct := phoneAccount{IP: ip, Transport: tr, Registrar: sbc.ListenAddr(tr), User: phoneUser,
		Password: phonePassword, CAFile: pki.CAFile}
	ph := c.start(t, acct)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sipwall configuration:\n%s", sbc.Config)
		}
	})

	// Registration: the client says so, and the PBX got the REGISTER
	// with sipwall's token Contact.
	ph.Register(t)
	waitPBX(t, pbx, "the PBX answered a REGISTER", func(m []traceMsg) bool {
		_, i := findMsg(m, 0, func(m traceMsg) bool { return !m.Sent && m.IsRequest("REGISTER") })
		_, j := findMsg(m, i, func(m traceMsg) bool { return m.Sent && m.IsResponse(200, "REGISTER") })
		return i >= 0 && j >= 0
	})
	token, _ := tokenContact(t, pbx.Messages())

	// The phone calls the PBX; once the PBX has the ACK, the phone hangs
	// up and the PBX answers the BYE.
	ph.Dial(t, "1000")
	waitPBX(t, pbx, "the PBX got the ACK of its 200", func(m []traceMsg) bool {
		_, i := findMsg(m, 0, func(m traceMsg) bool { return !m.Sent && m.IsRequest("INVITE") })
		_, j := findMsg(m, i, func(m traceMsg) bool { return !m.Sent && m.IsRequest("ACK") })
		return i >= 0 && j >= 0
	})
	ph.Hangup(t)
	waitPBX(t, pbx, "the PBX got the phone's BYE and answered 200", func(m []traceMsg) bool {
		_, i := findMsg(m, 0, func(m traceMsg) bool { return !m.Sent && m.IsRequest("BYE") })
		_, j := findMsg(m, i, func(m traceMsg) bool { return m.Sent && m.IsResponse(200, "BYE") })
		return i >= 0 && j >= 0
	})

	// The PBX calls the token it was given; sipwall reaches the phone on
	// its registration, the phone answers by itself, the PBX hangs up.
	caller := Sipp{Name: "pbx-caller", Scenario: "uac_basic.xml", IP: PBXIP, Remote: sbc.Addr,
		Transport: Transports[0], Service: token, Pause: 500 * time.Millisecond, Timeout: 20 * time.Second}.Start(t)
	ph.WaitAnswered(t)
	ph.WaitClosed(t)
	mustSucceed(t, caller, 1)

	checkPhoneTrace(t, c.name, tr, ph.Trace())
	ph.Quit(t)
}

// waitPBX polls a sipp's message log until ok holds, for up to phoneStep.
func waitPBX(t *testing.T, sp *SippProc, what string, ok func([]traceMsg) bool) {
	t.Helper()
	deadline := time.Now().Add(phoneStep)
	for {
		if ok(sippTrace(sp.Messages())) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, phoneStep)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkPhoneTrace checks, on the SIP trace the client itself logged, that
// both calls ended with BYE and 200 on its side and that the PBX's call
// came in on the flow its REGISTER went out on; it logs what the client
// claimed and answered (User-Agent, digest algorithms).
func checkPhoneTrace(t *testing.T, client, tr string, msgs []traceMsg) {
	t.Helper()
	if len(msgs) == 0 {
		t.Fatalf("%s logged no SIP messages", client)
	}
	for _, m := range msgs {
		if !strings.HasPrefix(m.Flow, strings.ToUpper(tr)+" ") {
			t.Errorf("%s: %s, not over %s", client, m, tr)
		}
	}
	var offered []string
	for _, m := range msgs {
		if !m.Sent && m.IsResponse(401, "REGISTER") {
			for _, v := range m.Headers["www-authenticate"] {
				offered = append(offered, digestParam(v, "algorithm"))
			}
			break
		}
	}
	isReg := func(m traceMsg) bool { return m.Sent && m.IsRequest("REGISTER") && m.Header("Authorization") != "" }
	reg, _ := findMsg(msgs, 0, isReg)
	if reg.Start == "" {
		t.Fatalf("%s sent no REGISTER with credentials; trace: %v", client, msgs)
	}
	inv, _ := findMsg(msgs, 0, func(m traceMsg) bool {
		return m.Sent && m.IsRequest("INVITE") && m.Header("Proxy-Authorization") != ""
	})
	if inv.Start == "" {
		t.Errorf("%s sent no INVITE with credentials", client)
	}
	t.Logf("%s over %s: User-Agent %q; REGISTER challenged with %v, answered with %s; INVITE answered with %s",
		client, tr, reg.Header("User-Agent"), offered,
		answeredAlg(reg.Header("Authorization")), answeredAlg(inv.Header("Proxy-Authorization")))

	// The phone's own call: it sent BYE and got 200.
	_, bye := findMsg(msgs, 0, func(m traceMsg) bool { return m.Sent && m.IsRequest("BYE") })
	_, ok := findMsg(msgs, bye, func(m traceMsg) bool { return !m.Sent && m.IsResponse(200, "BYE") })
	if bye < 0 || ok < 0 {
		t.Errorf("%s: no BYE sent and 200 received for its own call", client)
	}
	// The PBX's call: on the flow of the last REGISTER sent before it,
	// then the PBX's BYE answered 200.
	in, at := findMsg(msgs, 0, func(m traceMsg) bool { return !m.Sent && m.IsRequest("INVITE") })
	if at < 0 {
		t.Fatalf("%s: no INVITE received", client)
	}
	var flows, contacts []string
	for _, m := range msgs[:at] {
		if isReg(m) {
			flows = append(flows, m.Flow)
			for _, c := range m.Headers["contact"] {
				contacts = append(contacts, uriKey(c))
			}
		}
	}
	if !slices.Contains(flows, in.Flow) {
		t.Errorf("%s: the PBX's INVITE came in on %s, not on a flow it registered from (%v)", client, in.Flow, flows)
	}
	if f := strings.Fields(in.Start); len(f) != 3 || !slices.Contains(contacts, uriKey(f[1])) {
		t.Errorf("%s: the PBX's INVITE is %q, not to a Contact it registered (%v)", client, in.Start, contacts)
	}
	_, bye = findMsg(msgs, at, func(m traceMsg) bool { return !m.Sent && m.IsRequest("BYE") })
	_, ok = findMsg(msgs, bye, func(m traceMsg) bool { return m.Sent && m.IsResponse(200, "BYE") })
	if bye < 0 || ok < 0 {
		t.Errorf("%s: no BYE received and 200 sent for the PBX's call", client)
	}
}

// answeredAlg is the algorithm of a Digest credential; RFC 2617 makes an
// absent one MD5.
func answeredAlg(credential string) string {
	if credential == "" {
		return "(none)"
	}
	if alg := digestParam(credential, "algorithm"); alg != "" {
		return alg
	}
	return "MD5 (no algorithm parameter)"
}

// uriKey is the user@host:port of a SIP URI or Contact value, without
// scheme, brackets and parameters.
func uriKey(v string) string {
	if i := strings.IndexByte(v, '<'); i >= 0 {
		v = v[i+1:]
		if j := strings.IndexByte(v, '>'); j >= 0 {
			v = v[:j]
		}
	}
	v = strings.TrimPrefix(strings.TrimPrefix(v, "sips:"), "sip:")
	if i := strings.IndexAny(v, ";?"); i >= 0 {
		v = v[:i]
	}
	return v
}
