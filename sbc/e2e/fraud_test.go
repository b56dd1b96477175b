package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fraudRules: calls from the trusted carrier are limited to 2 s each (the
// call is torn down at the limit), and a third call to the premium list
// in a day is refused. (calls_per_day counts a calendar day exactly;
// calls_per_minute is a two-window estimate, which a test crossing a
// minute boundary would see lower.)
const fraudRules = `country: GB
zone: Europe/London
rule_sets:
  - name: carrier
    applies_to: {trusted: [carrier]}
    rules:
      - name: short-calls-only
        measure: call_duration
        per: source
        critical: 2
        action: teardown
      - name: premium-burst
        match: {lists: [premium]}
        measure: calls_per_day
        per: source
        warning: 1
        critical: 3
        action: reject
        status: 403
`

// TestFraudTeardownAtDurationLimit: a live call is torn down by sipwall
// (BYE on both legs) when it reaches the duration the rules allow; the
// third premium call of the day is refused and the PBX never sees it.
func TestFraudTeardownAtDurationLimit(t *testing.T) {
	SkipIfShort(t)
	RequireSipp(t)
	file := filepath.Join(t.TempDir(), "fraud.yaml")
	if err := os.WriteFile(file, []byte(fraudRules), 0o644); err != nil {
		t.Fatal(err)
	}
	pbx := Sipp{Name: "pbx", Scenario: "uas_answer.xml", IP: PBXIP, Transport: Transports[0], Calls: 3, Timeout: 40 * time.Second}.Start(t)
	sbc := StartSBC(t, SBCConfig{Transport: Transports[0], PBXPort: pbx.Port, Users: map[string]string{},
		Auth:  "trusted: [{name: carrier, cidrs: [" + OutsideIP + "]}]",
		Extra: "rules: {file: \"" + file + "\"}\n"})

	start := time.Now()
	call := Sipp{Name: "long", Scenario: "uac_remote_bye.xml", IP: OutsideIP, Remote: sbc.Addr,
		Transport: Transports[0], Service: "02071234567", Timeout: 20 * time.Second}.Start(t)
	res := call.Wait(30 * time.Second)
	took := time.Since(start)
	if res.ExitCode != 0 {
		t.Fatalf("call not ended by sipwall with a BYE (sipp exit %d)", res.ExitCode)
	}
	if took < 2*time.Second || took > 8*time.Second {
		t.Errorf("call lasted %s, want about the 2 s limit", took)
	}
	if !strings.Contains(sbc.Log(), "duration limit (rules)") && !strings.Contains(pbx.Messages(), "duration limit (rules)") {
		t.Errorf("teardown reason not found in sipwall's log or the PBX's BYE")
	}

	for i, want := range []string{"SIP/2.0 200", "SIP/2.0 200", "SIP/2.0 403"} {
		c := Sipp{Name: "premium", Scenario: "uac_remote_bye.xml", IP: OutsideIP, Remote: sbc.Addr,
			Transport: Transports[0], Service: "09091234567", Timeout: 10 * time.Second}.Start(t)
		c.Wait(20 * time.Second)
		if !strings.Contains(c.Messages(), want) {
			t.Errorf("premium call %d: no %q\n%s", i+1, want, tailString(c.Messages(), 2000))
		}
	}
	if n := strings.Count(pbx.Messages(), "INVITE sip:09091234567"); n != 2 {
		t.Errorf("the PBX saw %d premium INVITEs, want 2", n)
	}
	if !strings.Contains(sbc.Log(), "fraud alert") {
		t.Errorf("no fraud alert logged")
	}
}
