package e2e

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Kamailio as the internal registrar and proxy behind sipwall (what many
// users run as their "internal proxy"), testdata/kamailio/registrar.cfg:
//
//	127.0.0.2, .5, .6  phones (sipp), outside
//	127.0.0.1          sipwall, registrar in relay mode, Kamailio its upstream
//	127.0.0.3          Kamailio: location service (usrloc in memory) and
//	                   proxy (tm, rr), trusting sipwall's address only
//
// A phone's REGISTER goes through sipwall, which hands Kamailio a Contact
// of its own (a token at sipwall's address); a call between two phones
// goes phone -> sipwall -> Kamailio (location lookup: the token) ->
// sipwall (the token's binding) -> phone: two B2BUA calls, each with two
// dialogs, and Kamailio record-routing both.

// Phones' addresses besides OutsideIP.
const (
	Phone2IP = "127.0.0.5"
	Phone3IP = "127.0.0.6"
)

// kamailioSBC starts Kamailio and sipwall with Kamailio as its upstream
// and the registrar relaying REGISTER to it.
func kamailioSBC(t *testing.T) (*Kamailio, *SBC) {
	t.Helper()
	SkipIfShort(t)
	RequireSipp(t)
	kam := StartKamailio(t, PBXIP)
	sbc := StartSBC(t, SBCConfig{
		Transport: Transports[0],
		PBXPort:   kam.Port,
		Extra:     "registrar: {mode: relay}\n",
	})
	return kam, sbc
}

// relayedBy reports whether Kamailio's log shows a request of method for
// user found in its location table and relayed to a Contact sipwall
// registered for it (a token at sipwall's address).
func relayedBy(kam *Kamailio, method, user string, sbc *SBC) bool {
	re := regexp.MustCompile(regexp.QuoteMeta(method) + ` \S+ for ` + regexp.QuoteMeta(user) +
		` relayed to sip:[^@\s]+@` + regexp.QuoteMeta(sbc.Addr))
	return re.MatchString(kam.Log())
}

// TestKamailioRegistrarCalls: two phones register through sipwall into
// Kamailio's location service and call each other, both ways, through
// sipwall and Kamailio; BYE and its 200 cross both B2BUA calls.
func TestKamailioRegistrarCalls(t *testing.T) {
	kam, sbc := kamailioSBC(t)
	alice := NewPhone(t, "alice", OutsideIP)
	bob := NewPhone(t, "bob", Phone2IP)
	alice.Register(t, sbc)
	bob.Register(t, sbc)

	for _, dir := range []struct{ from, to Phone }{{alice, bob}, {bob, alice}} {
		t.Run(dir.from.User+" calls "+dir.to.User, func(t *testing.T) {
			callee := Sipp{
				Name: dir.to.User, Scenario: "uas_answer.xml", IP: dir.to.IP, Port: dir.to.Port,
				Transport: Transports[0],
			}.Start(t)
			caller := Sipp{
				Name: dir.from.User, Scenario: "uac_basic.xml", IP: dir.from.IP, Port: dir.from.Port,
				Remote: sbc.Addr, Transport: Transports[0], Service: dir.to.User, Pause: 300 * time.Millisecond,
			}.Start(t)
			checkSipp(t, caller, 1, defaultRunTime+10*time.Second)
			checkSipp(t, callee, 1, uasGrace)
			if !relayedBy(kam, "INVITE", dir.to.User, sbc) {
				t.Errorf("Kamailio's log shows no INVITE for %s relayed to its binding at sipwall:\n%s", dir.to.User, tailFile(kam.p.stderr, logTail))
			}
			// The callee's INVITE came from sipwall, in a dialog of its own.
			msgs := callee.Messages()
			if cid := MessageHeader(msgs, "INVITE ", "Call-ID"); len(cid) != 1 || strings.Contains(caller.Messages(), "Call-ID: "+cid[0]) {
				t.Errorf("callee's INVITE Call-ID %v: want one, unknown to the caller", cid)
			}
		})
	}
}

// TestKamailioAttendedTransfer: alice calls bob, bob calls carol, bob
// refers alice to carol with Replaces naming his call with carol; alice's
// INVITE with that Replaces reaches carol, who accepts it only if it names
// carol's own dialog with bob (xfer_target.xml checks Call-ID and both
// tags) and then ends that dialog with BYE. Every hop is a B2BUA call of
// sipwall's, so the Replaces crosses four legs and two calls through
// Kamailio before it reaches carol: each one must map it.
func TestKamailioAttendedTransfer(t *testing.T) {
	kam, sbc := kamailioSBC(t)
	alice := NewPhone(t, "alice", OutsideIP)
	bob := NewPhone(t, "bob", Phone2IP)
	carol := NewPhone(t, "carol", Phone3IP)
	for _, ph := range []Phone{alice, bob, carol} {
		ph.Register(t, sbc)
	}

	// The phones' own logs (<log> actions): carol's says what she was
	// asked to replace.
	logs := t.TempDir()
	logArgs := func(name string) []string {
		return []string{"-trace_logs", "-log_file", filepath.Join(logs, name+".log")}
	}
	target := Sipp{
		Name: "carol", Scenario: "xfer_target.xml", IP: carol.IP, Port: carol.Port,
		Transport: Transports[0], Calls: 2, Args: logArgs("carol"),
	}.startBound(t)
	transferor := Sipp{
		Name: "bob", Scenario: "xfer_transferor.xml", IP: bob.IP, Port: bob.Port,
		Remote: sbc.Addr, Transport: Transports[0], Service: carol.User, Calls: 1,
		Args: append(logArgs("bob"), "-oocsf", filepath.Join(ScenarioDir(t), "xfer_transferor_ooc.xml"),
			// A Call-ID without '@': bob writes his own into the
			// Refer-To URI, where an '@' would have to be escaped
			// (sipp cannot).
			"-cid_str", "%u-%p-bob"),
	}.startBound(t)
	transferee := Sipp{
		Name: "alice", Scenario: "xfer_transferee.xml", IP: alice.IP, Port: alice.Port,
		Remote: sbc.Addr, Transport: Transports[0], Calls: 2, Limit: 2, Pause: 300 * time.Millisecond,
		Args: logArgs("alice"),
	}.startBound(t)

	checkSipp(t, transferee, 2, defaultRunTime+10*time.Second)
	checkSipp(t, transferor, -1, uasGrace)
	checkSipp(t, target, 2, uasGrace)
	for _, user := range []string{"bob", "carol"} {
		if !relayedBy(kam, "INVITE", user, sbc) {
			t.Errorf("Kamailio's log shows no INVITE for %s relayed to its binding at sipwall", user)
		}
	}
	if t.Failed() {
		for _, name := range []string{"alice", "bob", "carol"} {
			t.Logf("%s's log:\n%s", name, tailFile(filepath.Join(logs, name+".log"), logTail))
		}
	}
}
