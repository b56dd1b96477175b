package e2e

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// metrics reads sipwall's /metrics from the admin address its log names.
func metrics(t *testing.T, s *SBC) string {
	t.Helper()
	m := regexp.MustCompile(`admin API listening.* addr=(127\.0\.0\.1:[0-9]+)`).FindStringSubmatch(s.Log())
	if m == nil {
		t.Fatalf("sipwall's log names no admin address")
	}
	c := &http.Client{Timeout: 5 * time.Second}
	res, err := c.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", res.StatusCode, err)
	}
	return string(body)
}

// hasLine reports whether text (a sipp message log) has a line equal to
// line once CR and surrounding spaces are trimmed.
func hasLine(text, line string) bool {
	for l := range strings.SplitSeq(text, "\n") {
		if strings.TrimSpace(l) == line {
			return true
		}
	}
	return false
}

// TestBadOfferNeverReachesThePBX: an offer with payload type 128 gets 488
// with a Warning saying so, and the PBX never sees it; an offer with
// lines that are only wrong (an rtpmap for a payload type the m= line
// does not list, a=ptime:0, an absurd maxptime and b=) is connected, and
// the PBX gets it without those lines.
func TestBadOfferNeverReachesThePBX(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr Transport) {
		pbx := Sipp{Name: "pbx", Scenario: "uas_answer.xml", IP: PBXIP, Transport: tr, Calls: 1}.Start(t)
		sbc := StartSBC(t, SBCConfig{Transport: tr, PBXPort: pbx.Port})

		bad := Sipp{Name: "bad", Scenario: "uac_bad_offer.xml", IP: OutsideIP, Remote: sbc.Addr, Transport: tr,
			Timeout: 15 * time.Second}.Start(t)
		if r := bad.Wait(25 * time.Second); r.ExitCode != 0 || r.Count("SuccessfulCall(C)") != 1 {
			t.Fatalf("bad offer: sipp exit %d, stats %v: want the 488 it expects\n%s", r.ExitCode, r.Stats, tailString(bad.Messages(), 3000))
		}
		want := `"SDP line 6: m= payload type not 0-127"`
		if w := MessageHeader(bad.Messages(), "SIP/2.0 488", "Warning"); len(w) != 1 || !strings.HasPrefix(w[0], "399 ") || !strings.HasSuffix(w[0], want) {
			t.Errorf("488 Warning %q, want 399 ... %s", w, want)
		}

		odd := Sipp{Name: "odd", Scenario: "uac_odd_offer.xml", IP: OutsideIP, Remote: sbc.Addr, Transport: tr,
			Timeout: 15 * time.Second}.Start(t)
		if r := odd.Wait(25 * time.Second); r.ExitCode != 0 || r.Count("SuccessfulCall(C)") != 1 {
			t.Fatalf("odd offer: sipp exit %d, stats %v\n%s", r.ExitCode, r.Stats, tailString(odd.Messages(), 3000))
		}
		if r := pbx.Wait(uasGrace); r.ExitCode != 0 || r.Count("SuccessfulCall(C)") != 1 {
			t.Errorf("PBX: sipp exit %d, stats %v", r.ExitCode, r.Stats)
		}
		log := pbx.Messages()
		if n := strings.Count(log, "INVITE sip:"); n != 1 {
			t.Errorf("the PBX saw %d INVITEs, want only the odd offer's", n)
		}
		if strings.Contains(log, "Subject: bad offer") || strings.Contains(log, " 128\r") || strings.Contains(log, " 128\n") {
			t.Errorf("the bad offer reached the PBX:\n%s", tailString(log, 3000))
		}
		for _, gone := range []string{"a=rtpmap:96 opus/48000/2", "a=fmtp:96 useinbandfec=1", "a=ptime:0", "a=maxptime:99999", "b=AS:99999999999"} {
			if hasLine(log, gone) {
				t.Errorf("the PBX got %q", gone)
			}
		}
		if !strings.Contains(log, "Subject: odd offer") || !hasLine(log, "a=rtpmap:8 PCMA/8000") {
			t.Errorf("the odd offer did not reach the PBX with its good lines:\n%s", tailString(log, 3000))
		}
		m := metrics(t, sbc)
		for _, line := range []string{`sipwall_sdp_inbound_total{result="refused"} 1`, `sipwall_sdp_inbound_total{result="sanitised"} 1`,
			`sipwall_sdp_inbound_lines_dropped_total 5`} {
			if !strings.Contains(m, line+"\n") {
				t.Errorf("metrics lack %q", line)
			}
		}
	})
}

// TestCallCapPerSource: with calls.max_per_source 1, a second call from
// the address of a call still ringing gets 486 with a Warning and never
// reaches the PBX; once the first has ended (ring timeout), the next one
// goes through.
func TestCallCapPerSource(t *testing.T) {
	SkipIfShort(t)
	RequireSipp(t)
	tr := Transports[0]
	pbx := Sipp{Name: "pbx", Scenario: "uas_noanswer.xml", IP: PBXIP, Transport: tr, Calls: 2, Timeout: 40 * time.Second}.Start(t)
	sbc := StartSBC(t, SBCConfig{Transport: tr, PBXPort: pbx.Port, RingTimeout: 6 * time.Second, Calls: "max_per_source: 1"})

	first := Sipp{Name: "first", Scenario: "uac_expect_timeout.xml", IP: OutsideIP, Remote: sbc.Addr, Transport: tr,
		Timeout: 20 * time.Second}.Start(t)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(pbx.Messages(), "INVITE sip:") {
		if time.Now().After(deadline) {
			t.Fatalf("the first call did not reach the PBX")
		}
		time.Sleep(50 * time.Millisecond) // polling a log file
	}
	second := Sipp{Name: "second", Scenario: "uac_expect_busy.xml", IP: OutsideIP, Remote: sbc.Addr, Transport: tr,
		Timeout: 15 * time.Second}.Start(t)
	if r := second.Wait(25 * time.Second); r.ExitCode != 0 || r.Count("SuccessfulCall(C)") != 1 {
		t.Fatalf("second call: sipp exit %d, stats %v: want 486\n%s", r.ExitCode, r.Stats, tailString(second.Messages(), 3000))
	}
	want := `"Too many calls in progress for this address"`
	if w := MessageHeader(second.Messages(), "SIP/2.0 486", "Warning"); len(w) != 1 || !strings.HasSuffix(w[0], want) {
		t.Errorf("486 Warning %q, want ... %s", w, want)
	}
	if r := first.Wait(25 * time.Second); r.ExitCode != 0 {
		t.Fatalf("first call: sipp exit %d: want 408 after the ring timeout", r.ExitCode)
	}
	if n := strings.Count(pbx.Messages(), "INVITE sip:"); n != 1 {
		t.Errorf("the PBX saw %d INVITEs while the first call rang, want 1", n)
	}

	third := Sipp{Name: "third", Scenario: "uac_expect_timeout.xml", IP: OutsideIP, Remote: sbc.Addr, Transport: tr,
		Timeout: 20 * time.Second}.Start(t)
	if r := third.Wait(30 * time.Second); r.ExitCode != 0 {
		t.Fatalf("third call: sipp exit %d: want it through to the PBX, then 408\n%s", r.ExitCode, tailString(third.Messages(), 3000))
	}
	if r := pbx.Wait(uasGrace); r.ExitCode != 0 || r.Count("SuccessfulCall(C)") != 2 {
		t.Errorf("PBX: sipp exit %d, stats %v: want 2 calls", r.ExitCode, r.Stats)
	}
	if m := metrics(t, sbc); !strings.Contains(m, `sipwall_calls_limited_total{cap="source"} 1`+"\n") {
		t.Errorf("metrics lack sipwall_calls_limited_total{cap=\"source\"} 1")
	}
	if !strings.Contains(sbc.Log(), "call limit (source)") {
		t.Errorf("sipwall's log does not name the call limit")
	}
}
