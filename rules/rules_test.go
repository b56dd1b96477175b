package rules

import (
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestBoundaries drives each measure up to N-1 (allowed) and then N
// (acted on). step makes the measure's value one larger and returns the
// verdict of the call that sees it.
func TestBoundaries(t *testing.T) {
	type stepper func(h *harness, i int) Verdict
	checkOnly := func(h *harness, i int) Verdict { v, _ := h.check(); return v }
	tests := []struct {
		name string
		rule string
		n    int // critical
		step stepper
	}{
		{"calls_per_minute", "- {name: r, measure: calls_per_minute, critical: 10, action: reject}", 10, checkOnly},
		{"calls_per_minute per source", "- {name: r, measure: calls_per_minute, per: source, critical: 4, action: reject}", 4,
			func(h *harness, i int) Verdict { v, _ := h.check(user(strings.Repeat("u", i+1))); return v }},
		{"calls_per_minute per prefix", "- {name: r, measure: calls_per_minute, per: prefix, critical: 4, action: reject}", 4,
			func(h *harness, i int) Verdict {
				v, _ := h.check(user(strings.Repeat("u", i+1)), from("192.0.2.9"), to("+4420794600"+string(rune('0'+i))+"0"))
				return v
			}},
		{"calls_per_day", "- {name: r, measure: calls_per_day, critical: 5, action: reject}", 5,
			func(h *harness, i int) Verdict { h.clk.advance(time.Hour); v, _ := h.check(); return v }},
		{"concurrent_calls", "- {name: r, measure: concurrent_calls, critical: 3, action: reject}", 3, checkOnly},
		{"short_calls", "- {name: r, measure: short_calls, short_seconds: 10, critical: 3, action: reject}", 3,
			func(h *harness, i int) Verdict {
				// i short calls have ended before this one is checked;
				// a long call in between does not count.
				v, c := h.check()
				if v.Allow {
					h.e.Answered(c.ID)
					h.e.Ended(c.ID, true, 9*time.Second)
					_, c2 := h.check()
					h.e.Ended(c2.ID, true, 10*time.Second)
				}
				h.clk.advance(time.Minute)
				return h.peekNext()
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, ruleFile(tt.rule), nil, nil)
			for i := 0; i < tt.n; i++ {
				v := tt.step(h, i)
				if i < tt.n-1 && !v.Allow {
					t.Fatalf("step %d of %d rejected: %+v", i+1, tt.n, v)
				}
				if i == tt.n-1 && (v.Allow || v.Status != 403 || v.Rule != "default/r") {
					t.Fatalf("step %d of %d: %+v, want 403 by default/r", i+1, tt.n, v)
				}
			}
		})
	}
}

// peekNext checks one more call and ends it at once unanswered-free: it
// is how measures fed by ended calls are observed.
func (h *harness) peekNext() Verdict {
	v, c := h.check()
	if v.Allow {
		// Not answered, not counted as short; drop it from in-progress.
		h.e.mu.Lock()
		if f, ok := h.e.calls[c.ID]; ok {
			h.e.release(f)
		}
		h.e.mu.Unlock()
	}
	return v
}

func TestConcurrentReleased(t *testing.T) {
	h := newHarness(t, ruleFile("- {name: r, measure: concurrent_calls, critical: 2, action: reject}"), nil, nil)
	v1, c1 := h.check()
	if v, _ := h.check(); !v1.Allow || v.Allow {
		t.Fatalf("first %+v second %+v: want allowed then rejected", v1, v)
	}
	if in, last := h.e.Counters("alice"); in != 1 || last != 2 {
		t.Fatalf("Counters = %d, %d, want 1 in progress, 2 in the last minute", in, last)
	}
	h.e.Ended(c1.ID, true, time.Minute)
	if v, _ := h.check(); !v.Allow {
		t.Fatalf("after Ended: %+v", v)
	}
	h.e.Ended("nope", false, 0)
	if s := h.e.Stats(); s.UnknownEnded != 1 || s.InProgress != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestFailedRatio(t *testing.T) {
	tests := []struct {
		answered, failed int
		allow            bool
	}{
		{0, 9, true},  // fewer than 10 calls: no ratio
		{6, 4, true},  // 40%
		{5, 5, false}, // 50%
		{1, 9, false},
	}
	for _, tt := range tests {
		h := newHarness(t, ruleFile("- {name: r, measure: failed_ratio, warning: 30, critical: 50, action: reject}"), nil, nil)
		for i := 0; i < tt.answered+tt.failed; i++ {
			_, c := h.check()
			h.e.Ended(c.ID, i < tt.answered, 30*time.Second)
		}
		if v, _ := h.check(); v.Allow != tt.allow {
			t.Errorf("%d answered %d failed: %+v, want allow %v", tt.answered, tt.failed, v, tt.allow)
		}
	}
}

func TestMinutesPerDay(t *testing.T) {
	h := newHarness(t, ruleFile("- {name: r, measure: minutes_per_day, critical: 10, action: reject}"), nil, nil)
	_, c := h.check()
	h.e.Ended(c.ID, true, 9*time.Minute+59*time.Second)
	if v, _ := h.check(); !v.Allow {
		t.Fatalf("9:59 used: %+v", v)
	}
	_, c = h.check()
	h.e.Ended(c.ID, false, 5*time.Minute) // unanswered: no minutes
	if v, _ := h.check(); !v.Allow {
		t.Fatalf("unanswered counted: %+v", v)
	}
	_, c = h.check()
	h.e.Ended(c.ID, true, time.Second)
	if v, _ := h.check(); v.Allow {
		t.Fatalf("10:00 used: allowed")
	}
}

func TestTeardown(t *testing.T) {
	h := newHarness(t, ruleFile(`
- {name: budget, measure: minutes_per_day, critical: 10, action: teardown}
- {name: long, measure: call_duration, warning: 180, critical: 3600, action: teardown}
`), nil, nil)
	v, c := h.check()
	if !v.Allow || v.MaxDuration != 10*time.Minute || v.Rule != "default/budget" {
		t.Fatalf("fresh: %+v, want 10m by budget", v)
	}
	h.e.Answered(c.ID)
	h.e.Ended(c.ID, true, 4*time.Minute)
	if v, _ := h.check(); !v.Allow || v.MaxDuration != 6*time.Minute || v.Action != ActTeardown {
		t.Fatalf("4 used: %+v, want 6m", v)
	}
	if len(h.alerts) != 1 || h.alerts[0].Rule != "default/long" || h.alerts[0].Level != "warning" {
		t.Fatalf("alerts %+v, want call_duration warning", h.alerts)
	}
	_, c = h.check()
	h.e.Ended(c.ID, true, 6*time.Minute)
	if v, _ := h.check(); v.Allow || v.Action != ActTeardown {
		t.Fatalf("budget spent: %+v, want rejected", v)
	}

	h = newHarness(t, ruleFile("- {name: long, measure: call_duration, critical: 3600, action: teardown}"), nil, nil)
	if v, _ := h.check(); !v.Allow || v.MaxDuration != time.Hour {
		t.Fatalf("call_duration: %+v, want 1h", v)
	}
}

func TestNewCountry(t *testing.T) {
	h := newHarness(t, ruleFile("- {name: nc, measure: new_country, critical: 1, action: alert}"), nil, nil)
	for i, tc := range []struct {
		dest  string
		alert bool
	}{
		{"+33142000000", true},
		{"+33612345678", false},
		{"+3531234567", true}, // 353, three digits
		{"+12125550100", true},
		{"+12125550199", false},
		{"+3531999999", false},
	} {
		before := len(h.alerts)
		v, _ := h.check(to(tc.dest))
		got := len(h.alerts) > before
		if !v.Allow || got != tc.alert {
			t.Errorf("%d %s: alert %v (%+v), want %v", i, tc.dest, got, v, tc.alert)
		}
	}
	if a := h.alerts[0]; a.Level != "critical" || a.Value != 1 || a.Measure != NewCountry {
		t.Errorf("alert %+v", a)
	}
	// A rejecting rule does not learn the country from the rejected call.
	h = newHarness(t, ruleFile("- {name: nc, measure: new_country, critical: 1, action: reject}"), nil, nil)
	for i := 0; i < 2; i++ {
		if v, _ := h.check(to("+33142000000")); v.Allow {
			t.Fatalf("attempt %d allowed", i)
		}
	}
}

func TestOutsideHours(t *testing.T) {
	h := newHarness(t, ruleFile(`- {name: oh, measure: outside_hours, critical: 1, action: reject, hours: {days: [mon, tue, wed, thu, fri], from: "08:00", to: "18:00"}}`), nil, nil)
	lon, _ := time.LoadLocation("Europe/London")
	for _, tc := range []struct {
		at    time.Time
		allow bool
	}{
		{time.Date(2026, 6, 1, 8, 0, 0, 0, lon), true},
		{time.Date(2026, 6, 1, 7, 59, 59, 0, lon), false},
		{time.Date(2026, 6, 1, 17, 59, 0, 0, lon), true},
		{time.Date(2026, 6, 1, 18, 0, 0, 0, lon), false},
		{time.Date(2026, 6, 6, 12, 0, 0, 0, lon), false}, // Saturday
		{time.Date(2026, 1, 5, 8, 30, 0, 0, lon), true},  // winter Monday, GMT
	} {
		h.clk.set(tc.at)
		if v, _ := h.check(); v.Allow != tc.allow {
			t.Errorf("%s: %+v, want allow %v", tc.at, v, tc.allow)
		}
	}
}

func TestNumberForms(t *testing.T) {
	h := newHarness(t, ruleFile(`
- {name: prem, match: {lists: [premium]}, measure: calls_per_minute, per: source, critical: 1, action: reject}
- {name: bad, match: {unnormalisable: true}, measure: calls_per_minute, per: prefix, critical: 1, action: reject, status: 404}
`), nil, nil)
	for _, d := range []string{"+44 909 123 4567", "+449091234567", "0044909 1234567", "00 44 (909) 123-4567", "%2B449091234567", "09091234567",
		"+44 (0)909 123 4567", "0044 0909 1234567", "*6709091234567", "#31#09091234567", "14109091234567", "09091234567;phone-context=+44", "909 123 4567;phone-context=+44"} {
		if v, _ := h.check(to(d)); v.Allow || v.Rule != "default/prem" {
			t.Errorf("%q: %+v, want rejected by premium", d, v)
		}
	}
	for _, d := range []string{"+44 20 7946 0000", "02079460000", "+33142000000", "abc", "123", "999", "*97"} {
		if v, _ := h.check(to(d)); !v.Allow {
			t.Errorf("%q: %+v, want allowed", d, v)
		}
	}
	for _, d := range []string{"+44909%ZZ", "", "０９０９１２３４５６７", "*72 09091234567", "a09091234567", "449091234567", "+44-909-123-4567;phone-context=x", "+449091234567;rn=+442079460000"} {
		v, _ := h.check(to(d))
		if v.Allow || v.Rule != "default/bad" || v.Status != 404 {
			t.Errorf("%q: %+v, want 404 by bad", d, v)
		}
	}
	last := h.alerts[len(h.alerts)-1]
	if last.Key != "invalid" {
		t.Errorf("unnormalisable key %q, want invalid", last.Key)
	}
}

func TestInternationalAndPrefixes(t *testing.T) {
	h := newHarness(t, ruleFile(`
- {name: intl, match: {international: true, prefixes: ["+4470"]}, measure: calls_per_minute, critical: 1, action: reject}
`), nil, nil)
	for _, tc := range []struct {
		d     string
		allow bool
	}{
		{"+442079460000", true},
		{"07000123456", false}, // 4470 prefix
		{"+33142000000", false},
		{"+4930123456", false},
	} {
		if v, _ := h.check(to(tc.d)); v.Allow != tc.allow {
			t.Errorf("%s: %+v, want allow %v", tc.d, v, tc.allow)
		}
	}
}

func TestAppliesTo(t *testing.T) {
	src := "rule_sets:\n  - name: s\n    applies_to: {users: [bob], trusted: [carrier-a]}\n    rules:\n      - {name: r, measure: calls_per_minute, critical: 1, action: reject}\n"
	h := newHarness(t, src, nil, nil)
	for _, tc := range []struct {
		mod   func(*Call)
		allow bool
	}{
		{user("alice"), true},
		{user("bob"), false},
		{peer("carrier-a"), false},
		{peer("carrier-b"), true},
	} {
		if v, _ := h.check(tc.mod); v.Allow != tc.allow {
			t.Errorf("%+v, want allow %v", v, tc.allow)
		}
	}
}

func TestBlockAccount(t *testing.T) {
	h := newHarness(t, ruleFile("- {name: r, measure: calls_per_minute, critical: 3, action: block_account, block_for: 2h}"), nil, nil)
	h.check()
	h.check()
	if v, _ := h.check(); v.Allow || v.Action != ActBlockAccount {
		t.Fatalf("3rd call: %+v", v)
	}
	h.clk.advance(10 * time.Minute)
	if v, _ := h.check(); v.Allow || v.Reason != "Account Blocked" || v.Status != 403 {
		t.Fatalf("blocked: %+v", v)
	}
	if v, _ := h.check(user("bob")); !v.Allow {
		t.Fatalf("bob: %+v", v)
	}
	b := h.e.Blocked()
	if len(b) != 1 || b[0].User != "alice" || !b[0].Until.Equal(monday10.Add(2*time.Hour)) {
		t.Fatalf("Blocked %+v", b)
	}
	if !h.e.Unblock("alice") || h.e.Unblock("alice") {
		t.Fatal("Unblock")
	}
	if v, _ := h.check(); !v.Allow {
		t.Fatalf("after Unblock: %+v", v)
	}
	// A block ends by itself.
	h.check()
	h.check()
	h.clk.advance(2*time.Hour + time.Second)
	if v, _ := h.check(); !v.Allow {
		t.Fatalf("after block_for: %+v", v)
	}
}

func TestBanSource(t *testing.T) {
	h := newHarness(t, ruleFile("- {name: r, measure: calls_per_minute, per: source, critical: 2, action: ban_source, block_for: 30m}"), nil, nil)
	h.check()
	if len(h.bans) != 0 {
		t.Fatal("banned early")
	}
	v, _ := h.check(from("::ffff:192.0.2.1"))
	if v.Allow || len(h.bans) != 1 || h.bans[0] != "192.0.2.1 30m0s fraud" {
		t.Fatalf("%+v bans %v", v, h.bans)
	}
}

func TestShadow(t *testing.T) {
	h := newHarness(t, ruleFile(`
- {name: r, measure: calls_per_minute, critical: 1, action: ban_source, shadow: true}
- {name: b, measure: calls_per_minute, critical: 1, action: block_account, shadow: true}
- {name: t, measure: call_duration, critical: 60, action: teardown, shadow: true}
`), nil, nil)
	for i := 0; i < 3; i++ {
		v, _ := h.check()
		if !v.Allow || !v.Shadow || v.MaxDuration != 0 || v.Rule != "default/r" {
			t.Fatalf("%+v", v)
		}
	}
	if len(h.bans) != 0 || len(h.e.Blocked()) != 0 {
		t.Fatalf("shadow acted: bans %v blocks %v", h.bans, h.e.Blocked())
	}
	if len(h.alerts) != 6 || !h.alerts[0].Shadow {
		t.Fatalf("alerts %+v", h.alerts)
	}
	if s := h.e.Stats(); s.Shadowed != 6 || s.Rejected != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestWarningOnly(t *testing.T) {
	h := newHarness(t, ruleFile("- {name: r, measure: calls_per_minute, warning: 2, critical: 3, action: reject}"), nil, nil)
	h.check()
	if len(h.alerts) != 0 {
		t.Fatal("alert below warning")
	}
	if v, _ := h.check(); !v.Allow || len(h.alerts) != 1 || h.alerts[0].Level != "warning" || h.alerts[0].Limit != 2 {
		t.Fatalf("%+v %+v", v, h.alerts)
	}
	if v, _ := h.check(); v.Allow || h.alerts[1].Level != "critical" {
		t.Fatalf("%+v %+v", v, h.alerts)
	}
}

func TestSlidingMinute(t *testing.T) {
	h := newHarness(t, ruleFile("- {name: r, measure: calls_per_minute, critical: 3, action: reject}"), nil, nil)
	h.clk.set(monday10.Add(59 * time.Second))
	h.check()
	h.check()
	// In the next fixed window the 2 earlier calls still weigh 59/60:
	// 2*59/60+1 < 3 is allowed, 2*59/60+2 >= 3 is not, where a plain
	// fixed window would have let a burst of 4 through.
	h.clk.set(monday10.Add(61 * time.Second))
	if v, _ := h.check(); !v.Allow {
		t.Fatalf("first in the new window: %+v", v)
	}
	if v, _ := h.check(); v.Allow {
		t.Fatalf("burst across the window edge allowed")
	}
	h.clk.set(monday10.Add(3 * time.Minute))
	if v, _ := h.check(); !v.Allow {
		t.Fatalf("after the window: %+v", v)
	}
}

func TestSwap(t *testing.T) {
	h := newHarness(t, ruleFile("- {name: r, measure: calls_per_minute, critical: 3, action: reject}"), nil, nil)
	h.check()
	h.check()
	h.e.Swap(mustParse(t, ruleFile("- {name: r, measure: calls_per_minute, critical: 5, action: reject}")))
	if v, _ := h.check(); !v.Allow {
		t.Fatalf("after swap to 5: %+v", v)
	}
	h.e.Swap(nil)
	for i := 0; i < 10; i++ {
		if v, _ := h.check(); !v.Allow {
			t.Fatalf("no rules: %+v", v)
		}
	}
}

func TestBoundedCalls(t *testing.T) {
	h := newHarness(t, ruleFile("- {name: r, measure: concurrent_calls, critical: 1000, action: reject}"), nil, nil)
	h.e.opt.MaxCalls = 3
	var ids []string
	for i := 0; i < 5; i++ {
		_, c := h.check()
		ids = append(ids, c.ID)
	}
	s := h.e.Stats()
	if s.InProgress != 3 || s.Evicted != 2 {
		t.Fatalf("stats %+v", s)
	}
	if in, _ := h.e.Counters("alice"); in != 3 {
		t.Fatalf("in progress %d, want 3", in)
	}
	h.e.Ended(ids[0], true, time.Second) // evicted: unknown
	h.e.Ended(ids[4], true, time.Second)
	if s := h.e.Stats(); s.InProgress != 2 || s.UnknownEnded != 1 {
		t.Fatalf("stats %+v", s)
	}
	if len(h.e.conc) != 2 { // the rule's key and the user's
		t.Fatalf("conc %v", h.e.conc)
	}
}

func TestLogRateLimited(t *testing.T) {
	var buf strings.Builder
	var mu sync.Mutex
	clk := newClock(monday10)
	e, err := New(Options{
		Rules:  mustParse(t, ruleFile("- {name: r, measure: calls_per_minute, critical: 1, action: reject}")),
		Now:    clk.now,
		Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		e.Check(Call{ID: "x", User: "mallory\r\nFAKE", Destination: "+33142000000"})
	}
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if n := strings.Count(out, "fraud alert"); n != 1 {
		t.Fatalf("%d alert lines, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "component=rules") || strings.Contains(out, "\nFAKE") {
		t.Fatalf("log:\n%s", out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
