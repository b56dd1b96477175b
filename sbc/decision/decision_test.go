package decision

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTest(size int) (*Log, *clock) {
	c := &clock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	return NewWithClock(size, c.now), c
}

func TestCoalescesRepeatsWithinTheWindow(t *testing.T) {
	l, c := newTest(8)
	src := netip.MustParseAddr("203.0.113.9")
	drop := Entry{Layer: "ban", Verdict: "dropped", Why: "banned (auth_failures)", Method: "INVITE", Source: src}
	for range 5 {
		l.Add(drop)
		c.t = c.t.Add(time.Second)
	}
	got := l.Search(Query{})
	if len(got) != 1 || got[0].Count != 5 || got[0].Last.Sub(got[0].Time) != 4*time.Second {
		t.Fatalf("five drops within the window: %+v, want one entry counted 5 spanning 4s", got)
	}
	// Past the window a new line starts; a different status is another kind.
	c.t = c.t.Add(Coalesce)
	l.Add(drop)
	l.Add(Entry{Layer: "ban", Verdict: "dropped", Why: "banned (auth_failures)", Method: "REGISTER", Source: src})
	if got := l.Search(Query{}); len(got) != 3 || got[0].Method != "REGISTER" || got[1].Count != 1 {
		t.Fatalf("after the window: %+v", got)
	}
	if l.Total() != 7 {
		t.Fatalf("Total %d, want 7", l.Total())
	}
}

func TestRingIsBounded(t *testing.T) {
	l, c := newTest(100)
	for i := range 1000 {
		c.t = c.t.Add(time.Millisecond)
		l.Add(Entry{Layer: "auth", Verdict: "rejected", Why: "bad_password", User: fmt.Sprintf("user%d", i)})
	}
	got := l.Search(Query{Limit: 1000})
	if len(got) != 100 {
		t.Fatalf("%d entries kept, want the ring's 100", len(got))
	}
	if got[0].User != "user999" || got[99].User != "user900" {
		t.Fatalf("newest first: got %s .. %s", got[0].User, got[99].User)
	}
	if len(l.last) > 100 {
		t.Fatalf("coalescing index holds %d keys for a ring of 100", len(l.last))
	}
	// An entry pushed out of the ring is not coalesced into its slot's
	// new occupant.
	l.Add(Entry{Layer: "auth", Verdict: "rejected", Why: "bad_password", User: "user0"})
	if got := l.Search(Query{Text: "user0", Limit: 5}); len(got) != 1 || got[0].Count != 1 {
		t.Fatalf("re-added evicted entry: %+v", got)
	}
}

func TestSearch(t *testing.T) {
	l, c := newTest(64)
	add := func(e Entry) { c.t = c.t.Add(time.Second); l.Add(e) }
	add(Entry{Layer: "auth", Verdict: "rejected", Status: 401, Why: "bad_password", Method: "REGISTER",
		Source: netip.MustParseAddr("198.51.100.7"), User: "alice", To: "alice"})
	add(Entry{Layer: "policy", Verdict: "rejected", Status: 403, Why: "rule premium_numbers", Method: "INVITE",
		Source: netip.MustParseAddr("198.51.100.8"), User: "bob", To: "+4490012345"})
	add(Entry{Layer: "ban", Verdict: "banned", Why: "auth_failures", Prefix: netip.MustParsePrefix("2001:db8:1:2::/64"),
		Detail: "5 failures"})
	add(Entry{Layer: "rules", Verdict: "rejected", Status: 403, Why: "rule intl/burst (reject)", Method: "INVITE",
		Source: netip.MustParseAddr("2001:db8:1:2::99"), User: "carol", To: "0044123"})

	for _, tc := range []struct {
		q    string
		want []string // layers, newest first
	}{
		{"198.51.100.7", []string{"auth"}},
		{"198.51.100.0/24", []string{"policy", "auth"}},
		{"2001:db8:1:2::99", []string{"rules", "ban"}}, // its own request and the /64 ban covering it
		{"2001:db8:1::/48", []string{"rules", "ban"}},
		{"ALICE", []string{"auth"}},
		{"900123", []string{"policy"}},  // part of a number
		{"premium", []string{"policy"}}, // a rule name
		{"::ffff:198.51.100.8", []string{"policy"}},
		{"nobody", nil},
		{"", []string{"rules", "ban", "policy", "auth"}},
	} {
		var got []string
		for _, e := range l.Search(Query{Text: tc.q}) {
			got = append(got, e.Layer)
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("search %q: %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := l.Search(Query{Limit: 2}); len(got) != 2 {
		t.Errorf("limit 2: %d entries", len(got))
	}
}

func TestTextIsCutCleanedAndCopied(t *testing.T) {
	l, _ := newTest(4)
	buf := []byte("evil\r\nInjected: yes\x00" + strings.Repeat("é", 100))
	user := string(buf[:len(buf)-1]) // ends inside a rune once cut
	l.Add(Entry{Layer: "auth", Verdict: "rejected", User: user, To: "ok"})
	got := l.Search(Query{})[0]
	if len(got.User) > MaxText || strings.ContainsAny(got.User, "\r\n\x00") {
		t.Fatalf("user kept as %q (%d bytes)", got.User, len(got.User))
	}
	if !strings.HasPrefix(got.User, "evil??Injected: yes?é") {
		t.Fatalf("user cleaned to %q", got.User)
	}
	if !strings.HasSuffix(got.User, "é") {
		t.Fatalf("cut inside a rune: %q", got.User)
	}
}

func TestConcurrentUse(t *testing.T) {
	l := New(256)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				l.Add(Entry{Layer: "auth", Verdict: "rejected", User: fmt.Sprintf("u%d-%d", g, i%300)})
				if i%100 == 0 {
					l.Search(Query{Text: "u1", Limit: 10})
				}
			}
		})
	}
	wg.Wait()
	if n := len(l.Search(Query{Limit: 1000})); n != 256 {
		t.Fatalf("%d entries after 8000 adds to a ring of 256", n)
	}
	if l.Total() != 8000 {
		t.Fatalf("Total %d, want 8000", l.Total())
	}
}

func TestNilLogIgnoresAdds(t *testing.T) {
	var l *Log
	l.Add(Entry{Layer: "x"}) // must not panic: the app may run without a log
}

// One bad byte in a long text costs that byte, not the whole field; bidi
// controls that could make a row read differently are replaced.
func TestCleanKeepsTextAroundBadBytes(t *testing.T) {
	if got := clean("\xff" + strings.Repeat("a", 100)); got != "?"+strings.Repeat("a", MaxText-1) {
		t.Fatalf("clean of a bad byte and 100 a: %q", got)
	}
	if got := clean("alice\u202egnp.exe"); got != "alice?gnp.exe" {
		t.Fatalf("clean of a right-to-left override: %q", got)
	}
}

// Entries that differ only in their detail (two calls hung up) stay two.
func TestDetailIsPartOfTheKind(t *testing.T) {
	l, _ := newTest(8)
	l.Add(Entry{Layer: "admin", Verdict: "hung up", Detail: "call 1"})
	l.Add(Entry{Layer: "admin", Verdict: "hung up", Detail: "call 2"})
	if got := l.Search(Query{}); len(got) != 2 {
		t.Fatalf("%+v, want two entries", got)
	}
}

// A search longer than one chunk sees every entry once, newest first.
func TestSearchAcrossChunks(t *testing.T) {
	l, c := newTest(3*searchChunk + 17)
	n := 3*searchChunk + 17 + 500 // wrapped
	for i := range n {
		c.t = c.t.Add(time.Millisecond)
		l.Add(Entry{Layer: "auth", Verdict: "rejected", User: fmt.Sprintf("u%d", i)})
	}
	got := l.Search(Query{Limit: n})
	if len(got) != l.Size() {
		t.Fatalf("%d entries, want the ring's %d", len(got), l.Size())
	}
	for i, e := range got {
		if want := fmt.Sprintf("u%d", n-1-i); e.User != want {
			t.Fatalf("entry %d is %s, want %s", i, e.User, want)
		}
	}
}
