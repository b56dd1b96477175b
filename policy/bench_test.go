package policy

import (
	"context"
	"fmt"
	"runtime"
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
	benchRequests(b, e, []*sbc.Request{r})
}

// benchRequests decides rs in turn, NewInput included, and reports the
// 50th and 99th percentiles of one decision's time, the share of
// decisions over 50 µs and the collections during the loop.
func benchRequests(b *testing.B, e *Engine, rs []*sbc.Request) {
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gcs := ms.NumGC
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		start := time.Now()
		in := NewInput(rs[i%len(rs)], t0, time.UTC, e.opt.Plan)
		if _, err := e.Decide(ctx, in); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		i++
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
		over := len(lat) - sort.Search(len(lat), func(i int) bool { return lat[i] > 50*time.Microsecond })
		b.ReportMetric(100*float64(over)/float64(len(lat)), "%over50us")
		b.ReportMetric(float64(ms.NumGC-gcs), "GCs")
	}
}

// BenchmarkDecideVaried decides 256 different INVITEs in turn (callers,
// numbers, peers and user agents differ) with the default bundle: the
// strings of the input are new to the document that holds it, unlike
// BenchmarkDecideDefault's one request.
func BenchmarkDecideVaried(b *testing.B) {
	e := newEngine(b, Options{Country: "GB", Timeout: time.Second})
	var rs []*sbc.Request
	for i := range 256 {
		raw := strings.NewReplacer("sip:201@", fmt.Sprintf("sip:%d@", 200+i), "TestPhone/1.0", fmt.Sprintf("Phone/%d", i%8)).
			Replace(invite(fmt.Sprintf("sip:+44199912%04d@sbc.example.com", i), ""))
		rs = append(rs, parseReq(b, raw, fmt.Sprintf("203.0.113.%d:5060", i%64+1), sbc.External))
	}
	benchRequests(b, e, rs)
}

func BenchmarkDecideDefault(b *testing.B)             { benchDecide(b, "") }
func BenchmarkDecide1000Prefixes(b *testing.B)        { benchDecide(b, prefixPolicy(b)) }
func BenchmarkDecide1000PrefixesIndexed(b *testing.B) { benchDecide(b, indexedPolicy(b)) }
