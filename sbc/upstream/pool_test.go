package upstream

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
)

func mustTarget(t *testing.T, name, uri string, priority, weight int) Target {
	t.Helper()
	tg, err := ParseTarget(name, uri, priority, weight)
	if err != nil {
		t.Fatalf("ParseTarget(%q): %v", uri, err)
	}
	return tg
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// seeded returns a deterministic, non-thread-safe source; the pool must
// serialize its use.
func seeded() func(int) int { return rand.New(rand.NewPCG(1, 2)).IntN }

// cycling returns 0, 1, 2, ... modulo n: over a multiple of the total weight
// it yields each value exactly equally often, so shares come out exact.
func cycling() func(int) int {
	i := 0
	return func(n int) int { v := i % n; i++; return v }
}

func names(ts []Target) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Name
	}
	return out
}

func TestCandidatesPriorityOrder(t *testing.T) {
	p := New([]Target{
		mustTarget(t, "a", "sip:127.0.0.1:5001", 2, 1),
		mustTarget(t, "b", "sip:127.0.0.1:5002", 1, 1),
		mustTarget(t, "c", "sip:127.0.0.1:5003", 3, 1),
		mustTarget(t, "d", "sip:127.0.0.1:5004", 1, 5),
	}, Options{Rand: seeded(), Logger: quietLogger()})

	seenFirst := map[string]int{}
	for range 200 {
		got := names(p.Candidates())
		if len(got) != 4 {
			t.Fatalf("Candidates() = %v, want 4 targets", got)
		}
		first := map[string]bool{got[0]: true, got[1]: true}
		if !first["b"] || !first["d"] || got[2] != "a" || got[3] != "c" {
			t.Fatalf("Candidates() = %v, want {b,d} then a then c", got)
		}
		seenFirst[got[0]]++
	}
	// Both priority-1 targets must lead sometimes: the order is random.
	if seenFirst["b"] == 0 || seenFirst["d"] == 0 {
		t.Errorf("first picks %v: weighted order not random", seenFirst)
	}
}

func TestCandidatesWeightedExact(t *testing.T) {
	p := New([]Target{
		mustTarget(t, "heavy", "sip:127.0.0.1:5001", 1, 3),
		mustTarget(t, "light", "sip:127.0.0.1:5002", 1, 1),
	}, Options{Rand: cycling(), Logger: quietLogger()})

	first := map[string]int{}
	for range 4000 {
		c := p.Candidates()
		if len(c) != 2 || c[0].Name == c[1].Name {
			t.Fatalf("Candidates() = %v, want both targets once", names(c))
		}
		first[c[0].Name]++
	}
	if first["heavy"] != 3000 || first["light"] != 1000 {
		t.Errorf("first picks %v, want heavy 3000 light 1000", first)
	}
}

func TestCandidatesWeightedDistribution(t *testing.T) {
	p := New([]Target{
		mustTarget(t, "heavy", "sip:127.0.0.1:5001", 1, 3),
		mustTarget(t, "light", "sip:127.0.0.1:5002", 1, 1),
		mustTarget(t, "backup", "sip:127.0.0.1:5003", 9, 100),
	}, Options{Rand: seeded(), Logger: quietLogger()})

	const draws = 4000
	first := map[string]int{}
	for range draws {
		c := p.Candidates()
		if c[2].Name != "backup" {
			t.Fatalf("Candidates() = %v: backup priority must come last whatever its weight", names(c))
		}
		first[c[0].Name]++
	}
	// Expected 3000; the seed is fixed so this is deterministic, the 5%
	// tolerance only guards against an unlucky seed choice.
	if h := first["heavy"]; h < 2850 || h > 3150 {
		t.Errorf("heavy first %d of %d, want about 3000", h, draws)
	}
}

func TestCandidatesThreeWeights(t *testing.T) {
	p := New([]Target{
		mustTarget(t, "a", "sip:127.0.0.1:5001", 1, 1),
		mustTarget(t, "b", "sip:127.0.0.1:5002", 1, 1),
		mustTarget(t, "c", "sip:127.0.0.1:5003", 1, 2),
	}, Options{Rand: seeded(), Logger: quietLogger()})
	first := map[string]int{}
	for range 4000 {
		first[p.Candidates()[0].Name]++
	}
	// Shares 1:1:2 of 4000 → 1000, 1000, 2000.
	for name, want := range map[string]int{"a": 1000, "b": 1000, "c": 2000} {
		if got := first[name]; got < want-150 || got > want+150 {
			t.Errorf("%s first %d times, want about %d", name, got, want)
		}
	}
}

func TestCandidatesSkipDownAndFallback(t *testing.T) {
	p := New([]Target{
		mustTarget(t, "a", "sip:127.0.0.1:5001", 1, 1),
		mustTarget(t, "b", "sip:127.0.0.1:5002", 2, 1),
		mustTarget(t, "c", "sip:127.0.0.1:5003", 3, 1),
	}, Options{Failures: 1, Successes: 1, Rand: seeded(), Logger: quietLogger()})

	p.Mark("a", false)
	if got := names(p.Candidates()); fmt.Sprint(got) != "[b c]" {
		t.Errorf("with a down: Candidates() = %v, want [b c]", got)
	}
	p.Mark("c", false)
	if got := names(p.Candidates()); fmt.Sprint(got) != "[b]" {
		t.Errorf("with a, c down: Candidates() = %v, want [b]", got)
	}
	p.Mark("b", false)
	if got := names(p.Candidates()); fmt.Sprint(got) != "[a b c]" {
		t.Errorf("all down: Candidates() = %v, want every target by priority [a b c]", got)
	}
	p.Mark("c", true)
	if got := names(p.Candidates()); fmt.Sprint(got) != "[c]" {
		t.Errorf("c back up: Candidates() = %v, want [c]", got)
	}
}

func TestCandidatesEmptyPool(t *testing.T) {
	p := New(nil, Options{Logger: quietLogger()})
	if c := p.Candidates(); c != nil {
		t.Errorf("Candidates() on empty pool = %v, want nil", c)
	}
}

func TestCandidatesReturnsCopies(t *testing.T) {
	p := New([]Target{mustTarget(t, "a", "sip:127.0.0.1:5001;transport=udp", 1, 1)},
		Options{Logger: quietLogger()})
	c := p.Candidates()
	c[0].URI.UriParams[0].V = "tcp"
	c[0].Name = "changed"
	again := p.Candidates()
	if again[0].Name != "a" || again[0].URI.UriParams[0].V != "udp" {
		t.Errorf("caller modification leaked into the pool: %+v", again[0])
	}
}

func TestMarkThresholds(t *testing.T) {
	p := New([]Target{mustTarget(t, "a", "sip:127.0.0.1:5001", 1, 1)},
		Options{Failures: 3, Successes: 2, Logger: quietLogger()})
	up := func() bool { return p.Status()[0].Up }

	p.Mark("a", false)
	p.Mark("a", false)
	if !up() {
		t.Fatal("down after 2 failures, want 3")
	}
	p.Mark("a", true) // a success in between resets the run
	p.Mark("a", false)
	p.Mark("a", false)
	if !up() {
		t.Fatal("down although the failures were not consecutive")
	}
	p.Mark("a", false)
	if up() {
		t.Fatal("still up after 3 consecutive failures")
	}
	if s := p.Status()[0]; s.ConsecutiveFails != 3 {
		t.Errorf("ConsecutiveFails = %d, want 3", s.ConsecutiveFails)
	}
	p.Mark("a", true)
	if up() {
		t.Fatal("up after 1 success, want 2")
	}
	p.Mark("a", true)
	if !up() {
		t.Fatal("still down after 2 consecutive successes")
	}
	p.Mark("nope", false) // unknown names are ignored

	st := p.Stats()
	if st.ChecksTotal != 0 || st.FailuresTotal != 5 || st.StateChangesTotal != 2 {
		t.Errorf("Stats() = %+v, want 0 checks, 5 failures, 2 changes", st)
	}
}

func TestLookup(t *testing.T) {
	p := New([]Target{
		mustTarget(t, "v4", "sip:127.0.0.10:5060", 1, 1),
		mustTarget(t, "v4b", "sip:127.0.0.10:5070", 2, 1), // same host: first wins
		mustTarget(t, "v6", "sip:[::1]:5060", 1, 1),
	}, Options{Logger: quietLogger()})

	tests := []struct {
		addr string
		want string
	}{
		{"127.0.0.10", "v4"},
		{"::ffff:127.0.0.10", "v4"},
		{"::1", "v6"},
		{"127.0.0.11", ""},
		{"::2", ""},
	}
	for _, tc := range tests {
		got, ok := p.Lookup(netip.MustParseAddr(tc.addr))
		if ok != (tc.want != "") || got.Name != tc.want {
			t.Errorf("Lookup(%s) = %q, %v; want %q", tc.addr, got.Name, ok, tc.want)
		}
	}
	if _, ok := p.Lookup(netip.Addr{}); ok {
		t.Error("Lookup(zero addr) matched")
	}
}

func TestNewNormalizes(t *testing.T) {
	a := mustTarget(t, "a", "sip:127.0.0.1:5001", 1, 1)
	dup := mustTarget(t, "a", "sip:127.0.0.2:5001", 1, 1)
	raw := Target{Name: "raw", Addr: netip.MustParseAddrPort("127.0.0.3:5060")}
	p := New([]Target{a, dup, raw}, Options{Logger: quietLogger()})

	st := p.Status()
	if len(st) != 2 || st[0].Name != "a" || st[0].Addr != a.Addr || st[1].Name != "raw" {
		t.Fatalf("Status() = %+v, want a (first) and raw", st)
	}
	for _, c := range p.Candidates() {
		if c.Weight != 1 || c.Transport != "udp" {
			t.Errorf("target %s: weight %d transport %q, want 1 udp", c.Name, c.Weight, c.Transport)
		}
	}
	if _, ok := p.Lookup(netip.MustParseAddr("127.0.0.2")); ok {
		t.Error("ignored duplicate is reachable by Lookup")
	}
}

// TestConcurrentUse runs selection, marks and snapshots together under -race
// with a Rand that is not itself safe for concurrent use.
func TestConcurrentUse(t *testing.T) {
	p := New([]Target{
		mustTarget(t, "a", "sip:127.0.0.1:5001", 1, 2),
		mustTarget(t, "b", "sip:127.0.0.1:5002", 1, 1),
		mustTarget(t, "c", "sip:127.0.0.1:5003", 2, 1),
	}, Options{Failures: 2, Successes: 2, Rand: seeded(), Logger: quietLogger()})

	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 300 {
				switch (g + i) % 4 {
				case 0:
					if len(p.Candidates()) == 0 {
						t.Error("no candidates")
						return
					}
				case 1:
					p.Mark([]string{"a", "b", "c"}[i%3], i%5 != 0)
				case 2:
					_ = p.Status()
				case 3:
					_ = p.Stats()
				}
			}
		})
	}
	wg.Wait()
}
