package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// premiumPolicy bars one number range with its own status, tags the rest
// and bans whoever dials the honeypot number; tested by its own Rego test,
// which sipwall runs before taking it.
const premiumPolicy = `package sipwall

default decision := {"allow": false, "status": 403, "reason": "Forbidden", "rule": "default-deny"}

decision := {"allow": false, "status": 603, "reason": "Premium Barred", "rule": "premium"} if {
	startswith(input.destination.e164, "+44909")
} else := {"allow": false, "status": 403, "reason": "Forbidden", "ban": "1h", "rule": "honeypot"} if {
	input.request_uri.user == "666"
} else := {"allow": true, "rule": "in-dialog"} if {
	input.dialog == "in-dialog"
} else := {"allow": true, "rule": "authenticated", "tags": {"route": "pbx"}} if {
	input.identity.user != ""
}
`

const premiumPolicyTest = `package sipwall_test

import data.sipwall

test_premium_denied if {
	d := sipwall.decision with input as {"dialog": "new", "identity": {"user": "alice"}, "destination": {"e164": "+449091234567"}, "request_uri": {"user": "09091234567"}}
	d.status == 603
}

test_other_allowed if {
	d := sipwall.decision with input as {"dialog": "new", "identity": {"user": "alice"}, "destination": {"e164": "+442071234567"}, "request_uri": {"user": "02071234567"}}
	d.allow
}
`

// TestPolicyDeniesCall: an authenticated caller dials a premium number
// (national form, normalised with policy.country GB) and gets the status
// the policy chose, the PBX never sees the INVITE; an ordinary number goes
// through; dialling the honeypot bans the caller's address.
func TestPolicyDeniesCall(t *testing.T) {
	SkipIfShort(t)
	RequireSipp(t)
	dir := t.TempDir()
	for name, body := range map[string]string{"premium.rego": premiumPolicy, "premium_test.rego": premiumPolicyTest} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pbx := Sipp{Name: "pbx", Scenario: "uas_answer.xml", IP: PBXIP, Transport: Transports[0], Timeout: 30 * time.Second}.Start(t)
	sbc := StartSBC(t, SBCConfig{Transport: Transports[0], PBXPort: pbx.Port, Users: demoUsers, Auth: "algorithms: [MD5]",
		Extra: "policy: {dir: \"" + dir + "\", country: GB}\n"})

	call := func(service string) *SippProc {
		sp := Sipp{Name: "caller-" + service, Scenario: "uac_auth_call.xml", IP: OutsideIP, Remote: sbc.Addr,
			Transport: Transports[0], Service: service, AuthUser: "alice", AuthPass: demoUsers["alice"],
			AuthURI: service + "@" + sbc.Addr, Timeout: 10 * time.Second}.Start(t)
		sp.Wait(20 * time.Second)
		return sp
	}
	barred := call("09091234567")
	if msgs := barred.Messages(); !strings.Contains(msgs, "SIP/2.0 603 Premium Barred") {
		t.Errorf("premium call not answered 603 Premium Barred:\n%s", tailString(msgs, 3000))
	}
	if strings.Contains(pbx.Messages(), "INVITE sip:09091234567") {
		t.Error("the PBX saw the barred INVITE")
	}
	ok := call("02071234567")
	if r := ok.Wait(time.Second); r.ExitCode != 0 {
		t.Errorf("ordinary call failed (sipp exit %d)", r.ExitCode)
	}
	if !strings.Contains(pbx.Messages(), "INVITE sip:02071234567") {
		t.Error("the PBX did not get the ordinary call")
	}
	call("666")
	if log := sbc.Log(); !strings.Contains(log, "reason=policy") {
		t.Errorf("no policy ban logged:\n%s", tailString(log, 3000))
	}
}

func tailString(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// TestPolicyReloadOnSIGHUP: SIGHUP makes sipwall re-read its configuration
// and policy at once; a broken policy is refused and everything stays.
func TestPolicyReloadOnSIGHUP(t *testing.T) {
	SkipIfShort(t)
	dir := t.TempDir()
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("package sipwall\n\ndecision := {\"allow\": true, \"rule\": \"v1\"}\n")
	sbc := StartSBC(t, SBCConfig{Transport: Transports[0], PBXPort: AllocPorts(t, PBXIP), Users: demoUsers,
		Extra: "policy: {dir: \"" + dir + "\"}\n"})
	waitLog := func(what string) bool {
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if strings.Contains(sbc.Log(), what) {
				return true
			}
			time.Sleep(50 * time.Millisecond)
		}
		return false
	}
	write("package sipwall\n\ndecision := {\"allow\": true, \"rule\": \"v2\"}\n")
	if err := syscall.Kill(sbc.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !waitLog("msg=reloaded component=reload config=reloaded policy=\"reloaded ") {
		t.Fatalf("no reload after SIGHUP:\n%s", tailString(sbc.Log(), 3000))
	}
	write("package sipwall\n\ndecision := {\"allow\": true,\n") // does not compile
	if err := syscall.Kill(sbc.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !waitLog("msg=\"reload refused; everything stays as it was\" component=reload error=\"policy: ") {
		t.Fatalf("a broken policy was not refused:\n%s", tailString(sbc.Log(), 3000))
	}
	if !sbc.Alive() {
		t.Fatal("sipwall died on a broken policy")
	}
}
