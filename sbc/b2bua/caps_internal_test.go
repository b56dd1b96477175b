package b2bua

import (
	"net/netip"
	"testing"

	"github.com/sipwall/sipwall/sbc"
)

func TestCapKeys(t *testing.T) {
	all := Caps{PerUser: 1, PerSource: 1, PerTrusted: 1}
	src := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
	tests := []struct {
		name string
		caps Caps
		side sbc.Side
		peer string
		id   *sbc.Identity
		want capKey
		ok   bool
	}{
		{"user and source", all, sbc.External, "127.0.0.5:5060", &sbc.Identity{User: "alice"}, capKey{user: "alice", source: src("127.0.0.5/32")}, true},
		{"no identity", all, sbc.External, "127.0.0.5:5060", nil, capKey{source: src("127.0.0.5/32")}, true},
		{"IPv6 /64", all, sbc.External, "[2001:db8:1:2:aaaa::1]:5060", nil, capKey{source: src("2001:db8:1:2::/64")}, true},
		{"IPv4-mapped", all, sbc.External, "[::ffff:127.0.0.5]:5060", nil, capKey{source: src("127.0.0.5/32")}, true},
		{"trusted by name only", all, sbc.External, "127.0.0.9:5060", &sbc.Identity{Trusted: "carrier"}, capKey{trusted: "carrier"}, true},
		{"trusted without its cap", Caps{PerUser: 1, PerSource: 1}, sbc.External, "127.0.0.9:5060", &sbc.Identity{Trusted: "carrier"}, capKey{trusted: "carrier"}, false},
		{"inside", all, sbc.Internal, "127.0.0.6:5060", &sbc.Identity{User: "alice"}, capKey{}, false},
		{"user cap only", Caps{PerUser: 1}, sbc.External, "127.0.0.5:5060", &sbc.Identity{User: "alice"}, capKey{user: "alice"}, true},
		{"user cap only, no user", Caps{PerUser: 1}, sbc.External, "127.0.0.5:5060", nil, capKey{}, false},
		{"no caps", Caps{}, sbc.External, "127.0.0.5:5060", &sbc.Identity{User: "alice"}, capKey{user: "alice"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &sbc.Request{Side: tc.side, Peer: netip.MustParseAddrPort(tc.peer), Identity: tc.id}
			got, ok := newCaps(tc.caps).keyOf(r)
			if ok != tc.ok || (ok && got != tc.want) {
				t.Errorf("keyOf = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestCapCounting: admit counts up to the cap, release gives back exactly
// what admit took (twice is harmless), and the maps empty.
func TestCapCounting(t *testing.T) {
	k := newCaps(Caps{PerUser: 2, PerSource: 3})
	alice := capKey{user: "alice", source: netip.MustParsePrefix("127.0.0.5/32")}
	bob := capKey{user: "bob", source: alice.source}
	calls := make([]*call, 5)
	for i := range calls {
		calls[i] = &call{id: uint64(i)}
	}
	for i, step := range []struct {
		key  capKey
		want string
	}{{alice, ""}, {alice, ""}, {alice, CapUser}, {bob, ""}, {bob, CapSource}} {
		if got := k.admit(calls[i], step.key); got != step.want {
			t.Fatalf("admit %d = %q, want %q", i, got, step.want)
		}
	}
	if k.counted() != 3 || k.refusedUser.Load() != 1 || k.refusedSource.Load() != 1 {
		t.Fatalf("counted %d, refused %d/%d", k.counted(), k.refusedUser.Load(), k.refusedSource.Load())
	}
	k.release(calls[2]) // refused: never counted
	k.release(calls[0])
	k.release(calls[0])
	if got := k.admit(calls[0], alice); got != "" {
		t.Fatalf("after a release: %q", got)
	}
	for _, c := range calls {
		k.release(c)
	}
	if len(k.held) != 0 || len(k.users) != 0 || len(k.sources) != 0 || len(k.trusted) != 0 {
		t.Errorf("maps not empty: %v %v %v %v", k.held, k.users, k.sources, k.trusted)
	}
	// A user whose cap is off is not counted per user, only per source.
	k = newCaps(Caps{PerSource: 1})
	if got := k.admit(calls[0], capKey{user: "alice", source: alice.source}); got != "" || len(k.users) != 0 {
		t.Errorf("admit = %q, users %v", got, k.users)
	}
}
