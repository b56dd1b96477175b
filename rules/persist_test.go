package rules

import (
	"testing"
	"time"
)

func TestRestartKeepsCounters(t *testing.T) {
	dir := t.TempDir()
	clk := newClock(monday10)
	src := ruleFile(`
- {name: day, measure: calls_per_day, critical: 5, action: reject}
- {name: mins, measure: minutes_per_day, critical: 30, action: teardown}
- {name: nc, measure: new_country, warning: 1}
- {name: blk, match: {prefixes: ["53"]}, measure: calls_per_minute, critical: 1, action: block_account, block_for: 1h}
`)
	st := openStore(t, dir, clk)
	h := newHarness(t, src, st, clk)
	for i := 0; i < 3; i++ {
		v, c := h.check(to("+33142000000"))
		if !v.Allow {
			t.Fatalf("call %d: %+v", i, v)
		}
		h.e.Ended(c.ID, true, 5*time.Minute)
	}
	if v, _ := h.check(user("bob"), to("+5371234567")); v.Allow {
		t.Fatal("bob not blocked")
	}
	if len(h.alerts) != 3 { // new country FR and Cuba; block
		t.Fatalf("alerts %+v", h.alerts)
	}
	if err := h.e.Flush(); err != nil {
		t.Fatal(err)
	}
	st.Close()

	clk.advance(30 * time.Minute)
	st = openStore(t, dir, clk)
	defer st.Close()
	h = newHarness(t, src, st, clk)
	if v, _ := h.check(user("bob")); v.Allow || v.Reason != "Account Blocked" {
		t.Fatalf("bob after restart: %+v", v)
	}
	v, _ := h.check(to("+33142000000"))
	if !v.Allow || v.MaxDuration != 15*time.Minute {
		t.Fatalf("4th call after restart: %+v, want allowed with 15m left", v)
	}
	if len(h.alerts) != 0 {
		t.Fatalf("France is new again: %+v", h.alerts)
	}
	if v, _ := h.check(); v.Allow {
		t.Fatalf("5th call of the day allowed after restart")
	}
}

// TestDayBoundary checks that "day" is the calendar day in the rule
// file's zone, including the 23- and 25-hour days of the DST changes in
// London (last Sundays of March and October 2026).
func TestDayBoundary(t *testing.T) {
	utc := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		name   string
		first  string // two calls here
		second string // third call here
		reset  bool   // a new day: the third call is allowed
	}{
		{"winter evening, same day", "2026-01-05T00:10:00Z", "2026-01-05T23:59:59Z", false},
		{"winter midnight", "2026-01-05T23:59:00Z", "2026-01-06T00:00:00Z", true},
		{"summer 23:30 UTC is next day local", "2026-06-01T22:30:00Z", "2026-06-01T23:30:00Z", true},
		{"summer same local day across UTC midnight", "2026-06-01T23:10:00Z", "2026-06-02T22:50:00Z", false},
		{"march 23h day: same day", "2026-03-29T00:30:00Z", "2026-03-29T22:59:59Z", false},
		{"march 23h day: next midnight is 23:00 UTC", "2026-03-29T00:30:00Z", "2026-03-29T23:00:00Z", true},
		{"october 25h day: not reset after 24h", "2026-10-24T23:30:00Z", "2026-10-25T23:30:00Z", false},
		{"october 25h day: ends at 00:00 UTC", "2026-10-24T23:30:00Z", "2026-10-26T00:00:00Z", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock(utc(tt.first))
			st := openStore(t, t.TempDir(), clk)
			defer st.Close()
			src := ruleFile("- {name: day, measure: calls_per_day, critical: 3, action: reject}")
			h := newHarness(t, src, st, clk)
			h.check()
			h.check()
			h.e.Flush()
			clk.set(utc(tt.second))
			// Across a restart as well: the budget is in the store.
			h = newHarness(t, src, st, clk)
			if v, _ := h.check(); v.Allow != tt.reset {
				t.Fatalf("third call: %+v, want allow %v", v, tt.reset)
			}
		})
	}
}
