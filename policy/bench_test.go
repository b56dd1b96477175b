package policy

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc"
)

// prefixPolicy allows a destination when one of 1,000 prefixes of data.json
// starts it.
func prefixPolicy(tb testing.TB) string {
	var p []string
	for i := range 1000 {
		p = append(p, fmt.Sprintf("%q", fmt.Sprintf("+44%d", 1000+i)))
	}
	return writeDir(tb, map[string]string{
		"p.rego": `package sipwall
default decision := {"allow": false, "rule": "default-deny"}
decision := {"allow": true, "rule": "prefix"} if {
	some p in data.prefixes
	startswith(input.destination.e164, p)
}
`,
		"data.json": `{"prefixes": [` + strings.Join(p, ",") + `]}`,
	})
}

// indexedPolicy has the same 1,000 prefixes as an object and looks up the
// destination's leading 3..8 characters: a handful of lookups instead of a
// scan.
func indexedPolicy(tb testing.TB) string {
	var p []string
	for i := range 1000 {
		p = append(p, fmt.Sprintf("%q: true", fmt.Sprintf("+44%d", 1000+i)))
	}
	return writeDir(tb, map[string]string{
		"p.rego": `package sipwall
default decision := {"allow": false, "rule": "default-deny"}
decision := {"allow": true, "rule": "prefix"} if {
	some n in numbers.range(3, 8)
	data.prefixes[substring(input.destination.e164, 0, n)]
}
`,
		"data.json": `{"prefixes": {` + strings.Join(p, ",") + `}}`,
	})
}

func benchDecide(b *testing.B, dir string) {
	e := newEngine(b, Options{Dir: dir, Country: "GB", Timeout: time.Second})
	r := parseReq(b, invite("sip:+441999123456@sbc.example.com", ""), "203.0.113.5:5060", sbc.External)
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		in := NewInput(r, t0, time.UTC, e.opt.Plan)
		if _, err := e.Decide(ctx, in); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
	}
}

func BenchmarkDecideDefault(b *testing.B)             { benchDecide(b, "") }
func BenchmarkDecide1000Prefixes(b *testing.B)        { benchDecide(b, prefixPolicy(b)) }
func BenchmarkDecide1000PrefixesIndexed(b *testing.B) { benchDecide(b, indexedPolicy(b)) }
