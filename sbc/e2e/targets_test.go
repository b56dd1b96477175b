package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Written forms of the premium number +449091234567 (or of no number a
// PBX may still dial) and forms that must connect, as URI user parts for
// sipp's -inf file (no ';', its field separator).
var (
	premiumDests = []string{
		"+449091234567",
		"%2B44%20(0)909%20123%204567",
		"0044%200909%20123%204567",
		"*6709091234567",
		"14109091234567",
		"%2331%2309091234567",
		"%EF%BC%90%EF%BC%99%EF%BC%90%EF%BC%99%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96%EF%BC%97",
	}
	allowedDests = []string{"1000", "02079460000", "+33142000000", "%2B44%20(0)20%207946%200000", "*6702079460000", "alice", "999"}
)

// writeInf writes a sipp -inf file: one call per line, in order.
func writeInf(t *testing.T, lines []string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "dests.csv")
	if err := os.WriteFile(p, []byte("SEQUENTIAL\n"+strings.Join(lines, ";\n")+";\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDestinationCheck: through the running binary, with the default
// configuration but dialplan.country GB (and auth off, so the callers are
// anonymous: the built-in rules judge them too), every written form of a
// premium number is refused with 403 before the PBX, as the Request-URI
// of an INVITE and as the Refer-To of a REFER inside an answered call;
// extensions, names, emergency, national and international numbers reach
// the PBX, which records what it receives.
func TestDestinationCheck(t *testing.T) {
	SkipIfShort(t)
	RequireSipp(t)
	tr := Transports[0]
	all := append(append([]string(nil), premiumDests...), allowedDests...)
	pbx := Sipp{Name: "pbx", Scenario: "uas_refer.xml", IP: PBXIP, Transport: tr, Calls: 2 * len(all), Timeout: 50 * time.Second}.Start(t)
	sbc := StartSBC(t, SBCConfig{Transport: tr, PBXPort: pbx.Port, Extra: "dialplan: {country: GB}\n"})
	uac := func(name, scenario string) *SippProc {
		sp := Sipp{Name: name, Scenario: scenario, IP: OutsideIP, Remote: sbc.Addr, Transport: tr, Service: "1000",
			Calls: len(all), Limit: 1, Timeout: 20 * time.Second, Args: []string{"-inf", writeInf(t, all)}}.Start(t)
		if r := sp.Wait(25 * time.Second); r.ExitCode != 0 || r.Count("SuccessfulCall(C)") != len(all) {
			t.Fatalf("sipp %s: exit %d, %d of %d calls as expected", name, r.ExitCode, r.Count("SuccessfulCall(C)"), len(all))
		}
		return sp
	}

	invites := uac("invite", "uac_dest.xml")
	if n := strings.Count(invites.Messages(), "SIP/2.0 403 Forbidden"); n != len(premiumDests) {
		t.Errorf("INVITE: %d refused with 403, want %d", n, len(premiumDests))
	}
	seen := pbx.Messages()
	for _, d := range premiumDests {
		if strings.Contains(seen, "INVITE sip:"+d+"@") {
			t.Errorf("INVITE to %s reached the PBX", d)
		}
	}
	for _, d := range allowedDests {
		if !strings.Contains(seen, "INVITE sip:"+d+"@") {
			t.Errorf("INVITE to %s did not reach the PBX", d)
		}
	}

	refers := uac("refer", "uac_refer_dest.xml")
	if n := strings.Count(refers.Messages(), "SIP/2.0 403 Forbidden"); n != len(premiumDests) {
		t.Errorf("REFER: %d refused with 403, want %d", n, len(premiumDests))
	}
	if n := strings.Count(refers.Messages(), "SIP/2.0 202 Accepted"); n != len(allowedDests) {
		t.Errorf("REFER: %d accepted, want %d", n, len(allowedDests))
	}
	seen = pbx.Messages()
	if n := strings.Count(seen, "\nREFER sip:"); n != len(allowedDests) {
		t.Errorf("the PBX got %d REFERs, want %d", n, len(allowedDests))
	}
	for _, d := range premiumDests {
		if strings.Contains(seen, "<sip:"+d+"@") {
			t.Errorf("REFER to %s reached the PBX", d)
		}
	}
	for _, d := range allowedDests {
		if !strings.Contains(seen, "<sip:"+d+"@") {
			t.Errorf("REFER to %s did not reach the PBX", d)
		}
	}
}
