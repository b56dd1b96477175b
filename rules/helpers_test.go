package rules

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc/store"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// monday10 is Monday 2026-06-01 10:00 in London (BST).
var monday10 = time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)

// ruleFile wraps rule YAML (indented as list items of rules:) in a file
// with country GB, zone London and one set for every user.
func ruleFile(rules string) string {
	return "country: GB\nzone: Europe/London\nrule_sets:\n  - name: default\n    applies_to: {users: [\"*\"], trusted: [\"carrier-a\"]}\n    rules:\n" + indent(rules, "      ")
}

func indent(s, pre string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pre + l
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

func mustParse(t testing.TB, src string) *RuleSet {
	t.Helper()
	rs, err := Parse([]byte(src), "rules.yaml")
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, src)
	}
	return rs
}

type harness struct {
	e      *Engine
	clk    *fakeClock
	alerts []Alert
	bans   []string
	mu     sync.Mutex
	n      int
}

func newHarness(t testing.TB, src string, st *store.Store, clk *fakeClock) *harness {
	t.Helper()
	h := &harness{clk: clk}
	if h.clk == nil {
		h.clk = newClock(monday10)
	}
	h.start(t, Options{Rules: mustParse(t, src), Store: st})
	return h
}

// start makes h's engine from o, with h's clock and h recording the
// alerts and bans.
func (h *harness) start(t testing.TB, o Options) {
	t.Helper()
	o.Now = h.clk.now
	o.OnAlert = func(a Alert) {
		h.mu.Lock()
		h.alerts = append(h.alerts, a)
		h.mu.Unlock()
	}
	o.Ban = func(ip netip.Addr, d time.Duration, reason, evidence string) {
		h.mu.Lock()
		h.bans = append(h.bans, fmt.Sprintf("%s %s %s", ip, d, reason))
		h.mu.Unlock()
	}
	e, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	h.e = e
}

var src1 = netip.MustParseAddr("192.0.2.1")

// call is a call from alice to a London number unless changed.
func (h *harness) call(mod ...func(*Call)) Call {
	h.n++
	c := Call{ID: fmt.Sprintf("call-%d", h.n), User: "alice", Source: src1, Destination: "+442079460000"}
	for _, m := range mod {
		m(&c)
	}
	return c
}

func (h *harness) check(mod ...func(*Call)) (Verdict, Call) {
	c := h.call(mod...)
	return h.e.Check(c), c
}

func to(d string) func(*Call)   { return func(c *Call) { c.Destination = d } }
func user(u string) func(*Call) { return func(c *Call) { c.User = u } }
func from(a string) func(*Call) { return func(c *Call) { c.Source = netip.MustParseAddr(a) } }
func peer(p string) func(*Call) { return func(c *Call) { c.User, c.Trusted = "", p } }

func openStore(t testing.TB, dir string, clk *fakeClock) *store.Store {
	t.Helper()
	st, err := store.Open(dir, store.WithNoSync(), store.WithClock(clk.now))
	if err != nil {
		t.Fatal(err)
	}
	return st
}
