package policy

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/sipwall/sipwall/sbc"
)

var t0 = time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC) // a Monday

func newEngine(t testing.TB, opt Options) *Engine {
	t.Helper()
	if opt.Now == nil {
		opt.Now = func() time.Time { return t0 }
	}
	e, err := New(opt)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

func TestDefaultBundle(t *testing.T) {
	e := newEngine(t, Options{})
	ext := func(f func(*Input)) *Input {
		in := &Input{Method: "INVITE", Side: "external", Dialog: "new",
			RequestURI: Party{User: "+442071234567", Host: "sbc.example.com"}}
		if f != nil {
			f(in)
		}
		return in
	}
	tests := []struct {
		name  string
		in    *Input
		allow bool
		rule  string
	}{
		{"unknown caller", ext(nil), false, "default-deny"},
		{"register unauthenticated", ext(func(i *Input) { i.Method = "REGISTER" }), false, "default-deny"},
		{"in-dialog", ext(func(i *Input) { i.Method = "BYE"; i.Dialog = "in-dialog" }), true, "in-dialog"},
		{"authenticated", ext(func(i *Input) { i.Identity = &Identity{User: "alice", Realm: "example.com"} }), true, "authenticated"},
		{"empty user is not authenticated", ext(func(i *Input) { i.Identity = &Identity{} }), false, "default-deny"},
		{"trusted peer", ext(func(i *Input) { i.Trusted = "carrier-a" }), true, "trusted-peer"},
		{"internal", ext(func(i *Input) { i.Side = "internal" }), true, "internal"},
		{"keepalive", ext(func(i *Input) { i.Method = "OPTIONS"; i.RequestURI.User = "" }), true, "keepalive"},
		{"options to a user", ext(func(i *Input) { i.Method = "OPTIONS" }), false, "default-deny"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := e.Decide(context.Background(), tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allow != tc.allow || d.Rule != tc.rule {
				t.Fatalf("got allow=%v rule=%q, want %v %q", d.Allow, d.Rule, tc.allow, tc.rule)
			}
			if !d.Allow && (d.Status != 403 || d.Reason != "Forbidden") {
				t.Fatalf("deny %d %q, want 403 Forbidden", d.Status, d.Reason)
			}
		})
	}
	st := e.Status()
	if st.Tests != 8 || st.Version == "" || st.Stats.Allows != 5 || st.Stats.Denies != 4 {
		t.Fatalf("status %+v", st)
	}
}

func TestDefaultBundleRegoTests(t *testing.T) {
	res, err := TestDir(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(res) < 7 {
		t.Fatalf("%d tests, want the bundle's 8", len(res))
	}
	for _, r := range res {
		if !r.Pass {
			t.Errorf("%s: %s", r.Name, r.Error)
		}
	}
}

const allowAll = `package sipwall
decision := {"allow": true, "rule": "all"}
`

const denyAll = `package sipwall
decision := {"allow": false, "status": 486, "rule": "busy"}
`

func TestReloadKeepsOldOnError(t *testing.T) {
	dir := writeDir(t, map[string]string{"p.rego": allowAll})
	e := newEngine(t, Options{Dir: dir})
	v1 := e.Status().Version
	decide := func() Decision {
		t.Helper()
		d, err := e.Decide(context.Background(), &Input{})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if !decide().Allow {
		t.Fatal("want allow")
	}
	writeFiles(t, dir, map[string]string{"p.rego": "package sipwall\ndecision := {\"allow\": true if {\n"})
	err := e.Reload()
	if err == nil {
		t.Fatal("reload of a broken policy succeeded")
	}
	st := e.Status()
	if st.Version != v1 || st.LastError == nil || st.Stats.ReloadsFailed != 1 {
		t.Fatalf("after failed reload: %+v", st)
	}
	if !decide().Allow {
		t.Fatal("old policy not kept")
	}
	writeFiles(t, dir, map[string]string{"p.rego": denyAll})
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	st = e.Status()
	if st.Version == v1 || st.LastError != nil || st.Stats.ReloadsOK != 1 {
		t.Fatalf("after good reload: %+v", st)
	}
	if d := decide(); d.Allow || d.Status != 486 || d.Reason != "Busy Here" {
		t.Fatalf("new policy not used: %+v", d)
	}
}

func TestRunReloadsOnChange(t *testing.T) {
	dir := writeDir(t, map[string]string{"p.rego": allowAll})
	e := newEngine(t, Options{Dir: dir})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx, 5*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()
	writeFiles(t, dir, map[string]string{"p.rego": denyAll + "\n# changed size\n"})
	deadline := time.Now().Add(5 * time.Second)
	for e.Status().Stats.ReloadsOK == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no reload within 5s")
		}
		time.Sleep(5 * time.Millisecond) // polling the file watcher, not rate logic
	}
	if d, _ := e.Decide(context.Background(), &Input{}); d.Allow {
		t.Fatal("reloaded policy not used")
	}
}

func TestFailingBundleTestRefused(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"p.rego": allowAll,
		"p_test.rego": `package sipwall_test
import data.sipwall
test_denies_strangers if { not sipwall.decision.allow }
`,
	})
	_, err := New(Options{Dir: dir})
	if !errors.Is(err, ErrTestsFailed) || !strings.Contains(err.Error(), "test_denies_strangers") {
		t.Fatalf("got %v, want ErrTestsFailed naming the test", err)
	}
}

func TestShadowNeverEnforces(t *testing.T) {
	banned := 0
	e := newEngine(t, Options{Dir: writeDir(t, map[string]string{"p.rego": `package sipwall
decision := {"allow": false, "ban": "1h", "rule": "x"}
`}), Shadow: true, Ban: func(netip.Addr, time.Duration, string, string) { banned++ }})
	w := &recorder{}
	r := parseReq(t, invite("sip:+442071234567@sbc.example.com", ""), "203.0.113.5:5060", sbc.External)
	v, err := e.Layer().ServeSIP(context.Background(), w, r)
	if v != sbc.Continue || err != nil || w.Written() != 0 || banned != 0 {
		t.Fatalf("shadow enforced: %v %v %d ban=%d", v, err, w.Written(), banned)
	}
	if st := e.Status().Stats; st.ShadowDenies != 1 || st.Denies != 1 {
		t.Fatalf("counters %+v", st)
	}
}

func TestFailClosedOnRuntimeError(t *testing.T) {
	for _, fs := range []int{0, 403} {
		e := newEngine(t, Options{FailStatus: fs, Dir: writeDir(t, map[string]string{"p.rego": `package sipwall
decision := {"allow": true, "rule": to_number(input.user_agent)}
`})})
		d, err := e.Decide(context.Background(), &Input{UserAgent: "not a number"})
		want := fs
		if want == 0 {
			want = 500
		}
		if err == nil || d.Allow || d.Status != want || d.Rule != "fail-closed" {
			t.Fatalf("fail status %d: got %+v, %v", fs, d, err)
		}
		if e.Status().Stats.Errors != 1 {
			t.Fatal("error not counted")
		}
	}
}

func TestFailClosedOnMalformedAndUndefined(t *testing.T) {
	for name, src := range map[string]string{
		"undefined":      "package sipwall\ndecision := 1 if { false }\n",
		"not an object":  "package sipwall\ndecision := true\n",
		"no allow":       "package sipwall\ndecision := {\"status\": 403}\n",
		"allow string":   "package sipwall\ndecision := {\"allow\": \"yes\"}\n",
		"unknown key":    "package sipwall\ndecision := {\"allow\": true, \"alow\": true}\n",
		"status 200":     "package sipwall\ndecision := {\"allow\": false, \"status\": 200}\n",
		"crlf in reason": "package sipwall\ndecision := {\"allow\": false, \"reason\": \"x\\r\\nVia: evil\"}\n",
		"bad redirect":   "package sipwall\ndecision := {\"allow\": false, \"redirect\": \"not a uri\"}\n",
		"bad ban":        "package sipwall\ndecision := {\"allow\": false, \"ban\": \"forever\"}\n",
		"tag not string": "package sipwall\ndecision := {\"allow\": true, \"tags\": {\"a\": 1}}\n",
	} {
		t.Run(name, func(t *testing.T) {
			e := newEngine(t, Options{Dir: writeDir(t, map[string]string{"p.rego": src})})
			d, err := e.Decide(context.Background(), &Input{})
			if err == nil || d.Allow || d.Status != 500 || d.Rule != "fail-closed" {
				t.Fatalf("got %+v, %v", d, err)
			}
		})
	}
}

// slowPolicy evaluates for far longer than any test's deadline.
const slowPolicy = `package sipwall
decision := {"allow": n > 0} if {
	n := count([x | some x in numbers.range(1, 100000000); x % 7 == 3])
}
`

func TestFailClosedOnTimeout(t *testing.T) {
	e := newEngine(t, Options{Timeout: time.Millisecond, Dir: writeDir(t, map[string]string{"p.rego": slowPolicy})})
	start := time.Now()
	d, err := e.Decide(context.Background(), &Input{})
	if !errors.Is(err, ErrTimeout) || d.Allow || d.Rule != "fail-closed" {
		t.Fatalf("got %+v, %v", d, err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("evaluation took %s after a 1ms deadline", el)
	}
	if e.Status().Stats.Timeouts != 1 {
		t.Fatal("timeout not counted")
	}
}

// The caller's context ends an evaluation too, before Options.Timeout.
func TestFailClosedOnCancel(t *testing.T) {
	e := newEngine(t, Options{Timeout: time.Hour, Dir: writeDir(t, map[string]string{"p.rego": slowPolicy})})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d, err := e.Decide(ctx, &Input{})
	if !errors.Is(err, ErrTimeout) || d.Allow || d.Rule != "fail-closed" {
		t.Fatalf("got %+v, %v", d, err)
	}
}

func TestRestrictedBuiltins(t *testing.T) {
	for _, call := range []string{
		`http.send({"method": "get", "url": "http://127.0.0.1/"})`,
		`net.lookup_ip_addr("example.com")`,
		`opa.runtime()`,
		`rand.intn("x", 10)`,
	} {
		dir := writeDir(t, map[string]string{"p.rego": "package sipwall\ndecision := {\"allow\": true, \"x\": " + call + "}\n"})
		_, err := New(Options{Dir: dir})
		if err == nil || !strings.Contains(err.Error(), "undefined function") {
			t.Errorf("%s: got %v, want a compile error", call, err)
		}
	}
}

func TestDataFiles(t *testing.T) {
	e := newEngine(t, Options{Dir: writeDir(t, map[string]string{
		"p.rego": `package sipwall
decision := {"allow": input.destination.e164 in data.allowed, "rule": data.lists.name}
`,
		"data.json":       `{"allowed": ["+442071234567"]}`,
		"lists/data.yaml": "name: from-yaml\n",
	})})
	d, err := e.Decide(context.Background(), &Input{Destination: Destination{E164: "+442071234567"}})
	if err != nil || !d.Allow || d.Rule != "from-yaml" {
		t.Fatalf("got %+v, %v", d, err)
	}
}

func TestNewOptions(t *testing.T) {
	if _, err := New(Options{FailStatus: 200}); err == nil {
		t.Error("fail status 200 accepted")
	}
	if _, err := New(Options{Country: "XX"}); err == nil {
		t.Error("country XX accepted")
	}
	if _, err := New(Options{Dir: t.TempDir()}); !errors.Is(err, ErrNoPolicy) {
		t.Errorf("empty dir: %v", err)
	}
}

// TestInputValueMatchesJSON keeps the hand-built OPA value equal to the
// JSON encoding of Input (which the schema and CLI use).
func TestInputValueMatchesJSON(t *testing.T) {
	for _, in := range []*Input{
		{},
		{Method: "INVITE", Peer: Peer{IP: "203.0.113.5", Port: 5060}, Identity: &Identity{User: "a", Realm: "r"},
			Counters: &Counters{CallsInProgress: 2, CallsLastMinute: 9}, Destination: Destination{Raw: "x", E164: "+1", Valid: true},
			Time: Time{Hour: 23}},
		{Method: "REFER", Route: "refer", Destination: Destination{Raw: "*67x", E164: "+449091234567", Valid: true, Class: "national", Features: []string{"*67"}}},
		{Route: "invite", Destination: Destination{Class: "extension", Features: []string{}}},
	} {
		js, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		want, err := ast.ValueFromReader(strings.NewReader(string(js)))
		if err != nil {
			t.Fatal(err)
		}
		if got := in.value(); got.Compare(want) != 0 {
			t.Fatalf("value\n%v\nJSON\n%v", got, want)
		}
	}
}

// Every decision lands in the latency histogram, and its quantiles come
// from the bucket bounds.
func TestDecisionLatencyCounted(t *testing.T) {
	e := newEngine(t, Options{})
	const n = 50
	for range n {
		in := &Input{Method: "INVITE", Side: "external", Dialog: "new", RequestURI: Party{User: "+442071234567", Host: "sbc.example.com"}}
		if _, err := e.Decide(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
	l := e.Status().Stats.Latency
	var total uint64
	for _, c := range l.Counts {
		total += c
	}
	if total != n {
		t.Fatalf("histogram holds %d decisions, want %d", total, n)
	}
	if l.Sum <= 0 {
		t.Errorf("sum of decision times %v, want above 0", l.Sum)
	}
	p50, p99 := l.Quantile(0.5), l.Quantile(0.99)
	if p50 <= 0 || p99 < p50 || p99 > LatencyBounds[len(LatencyBounds)-1] {
		t.Errorf("p50 %v, p99 %v: want 0 < p50 <= p99 <= the last bound", p50, p99)
	}
	var h Latency
	h.Counts[0], h.Counts[4], h.Counts[len(h.Counts)-1] = 98, 1, 1
	if got := h.Quantile(0.5); got != LatencyBounds[0] {
		t.Errorf("Quantile(0.5) = %v, want %v", got, LatencyBounds[0])
	}
	if got := h.Quantile(0.99); got != LatencyBounds[4] {
		t.Errorf("Quantile(0.99) = %v, want %v", got, LatencyBounds[4])
	}
	if got := (Latency{}).Quantile(0.99); got != 0 {
		t.Errorf("empty Quantile = %v, want 0", got)
	}
}
