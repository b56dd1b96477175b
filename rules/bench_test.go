package rules

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// BenchmarkCheck evaluates a call against 50 rules (list, prefix and
// catch-all matches, every measure that Check computes), memory only.
func BenchmarkCheck(b *testing.B) {
	var sb strings.Builder
	ms := []string{"calls_per_minute", "calls_per_day", "concurrent_calls", "short_calls", "failed_ratio", "minutes_per_day", "new_country"}
	for i := 0; i < 50; i++ {
		match := ""
		switch i % 3 {
		case 0:
			match = "match: {lists: [premium, irsf]}, "
		case 1:
			match = "match: {international: true, unnormalisable: true}, "
		}
		m, limit, action := ms[i%len(ms)], "1000000", "reject"
		switch m {
		case "failed_ratio":
			limit = "100"
		case "new_country":
			limit, action = "1", "alert"
		}
		fmt.Fprintf(&sb, "- {name: r%d, %smeasure: %s, per: %s, critical: %s, action: %s}\n",
			i, match, m, []string{"user", "source", "prefix"}[i%3], limit, action)
	}
	h := newHarness(b, ruleFile(sb.String()), nil, nil)
	dests := []string{"+449091234567", "+33142000000", "02079460000", "abc"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := Call{ID: "c", User: "alice", Source: netip.MustParseAddr("192.0.2.1"), Destination: dests[i%len(dests)]}
		h.e.Check(c)
		h.e.Ended("c", true, 0)
	}
}
