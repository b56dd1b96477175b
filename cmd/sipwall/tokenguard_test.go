package main

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func testGuard() (*tokenGuard, *time.Time) {
	g := newTokenGuard("the-admin-token-0123456789")
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	g.now = func() time.Time { return now }
	return g, &now
}

func TestTokenGuard(t *testing.T) {
	g, now := testGuard()
	a := netip.MustParseAddr("192.0.2.1")
	if ok, lim := g.check(a, "the-admin-token-0123456789"); !ok || lim {
		t.Fatalf("good token: ok %v limited %v", ok, lim)
	}
	if len(g.sources) != 0 {
		t.Fatalf("a good token left %d records", len(g.sources))
	}
	for i := range guardFailures {
		if ok, lim := g.check(a, "wrong"); ok || lim {
			t.Fatalf("wrong token %d: ok %v limited %v", i+1, ok, lim)
		}
	}
	if ok, lim := g.check(a, "the-admin-token-0123456789"); ok || !lim {
		t.Fatalf("good token after %d failures: ok %v limited %v, want limited", guardFailures, ok, lim)
	}
	// Another address is not limited by this one.
	if ok, lim := g.check(netip.MustParseAddr("192.0.2.2"), "the-admin-token-0123456789"); !ok || lim {
		t.Fatalf("other address: ok %v limited %v", ok, lim)
	}
	*now = now.Add(guardWindow)
	if ok, lim := g.check(a, "the-admin-token-0123456789"); !ok || lim {
		t.Fatalf("after the window: ok %v limited %v", ok, lim)
	}
	// A token shorter or longer than the real one is just wrong.
	for _, tok := range []string{"the-admin-token", "the-admin-token-0123456789-and-more"} {
		if ok, _ := g.check(netip.MustParseAddr("192.0.2.3"), tok); ok {
			t.Fatalf("token %q accepted", tok)
		}
	}
}

// The addresses of one IPv6 /64 count together.
func TestTokenGuardIPv6Per64(t *testing.T) {
	g, _ := testGuard()
	for i := range guardFailures {
		g.check(netip.MustParseAddr(fmt.Sprintf("2001:db8:1:2::%x", i+1)), "wrong")
	}
	if _, lim := g.check(netip.MustParseAddr("2001:db8:1:2:ffff::1"), "the-admin-token-0123456789"); !lim {
		t.Fatal("a new address in a /64 that guessed 5 times is not limited")
	}
	if ok, lim := g.check(netip.MustParseAddr("2001:db8:1:3::1"), "the-admin-token-0123456789"); !ok || lim {
		t.Fatalf("the next /64: ok %v limited %v", ok, lim)
	}
}

// Guesses spread over many addresses meet the global budget; a full table
// refuses new sources rather than letting them through untracked.
func TestTokenGuardGlobalAndFullTable(t *testing.T) {
	g, now := testGuard()
	for i := range guardGlobal {
		if _, lim := g.check(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), "wrong"); lim {
			t.Fatalf("guess %d limited before the global budget", i+1)
		}
	}
	if _, lim := g.check(netip.MustParseAddr("10.9.9.9"), "the-admin-token-0123456789"); !lim {
		t.Fatal("not limited after the global budget of wrong tokens")
	}
	*now = now.Add(guardWindow)
	if ok, _ := g.check(netip.MustParseAddr("10.9.9.9"), "the-admin-token-0123456789"); !ok {
		t.Fatal("still limited after the window")
	}

	g, _ = testGuard()
	for i := range guardSources {
		k := guardKey(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}))
		g.sources[k] = &guardRecord{fails: 1, first: g.now()}
	}
	if _, lim := g.check(netip.MustParseAddr("10.200.0.1"), "the-admin-token-0123456789"); !lim {
		t.Fatal("a new source was let through a full table")
	}
	if len(g.sources) > guardSources {
		t.Fatalf("table grew to %d", len(g.sources))
	}
}

// Without a configured token nothing matches, not even an empty one.
func TestTokenGuardWithoutToken(t *testing.T) {
	g := newTokenGuard("")
	if ok, _ := g.check(netip.MustParseAddr("127.0.0.1"), ""); ok {
		t.Fatal("empty token accepted by a guard without a token")
	}
}

// Asking without a token is refused but not counted as a guess.
func TestTokenGuardNoTokenIsNoGuess(t *testing.T) {
	g, _ := testGuard()
	a := netip.MustParseAddr("192.0.2.1")
	for range 3 * guardFailures {
		if ok, lim := g.check(a, ""); ok || lim {
			t.Fatalf("empty token: ok %v limited %v", ok, lim)
		}
	}
	if ok, lim := g.check(a, "the-admin-token-0123456789"); !ok || lim {
		t.Fatalf("good token after empty ones: ok %v limited %v", ok, lim)
	}
}
