package ban

import (
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestPersistAcrossRestart(t *testing.T) {
	c := newClock()
	s := openStore(t, c)
	sink1 := newSink()
	m1 := newManager(t, Options{Now: c.Now, Store: s, Sink: sink1})
	fail(m1, addr("192.0.2.1"), "1000", 5)
	if _, err := m1.Ban(prefix("203.0.113.0/24"), 3*time.Hour, "policy", "fraud pattern"); err != nil {
		t.Fatal(err)
	}
	if _, err := m1.Ban(prefix("2001:db8:5::/64"), 10*time.Minute, "", "short"); err != nil {
		t.Fatal(err)
	}
	before := m1.Bans()
	stored, ok, err := bansBucket(t, s).Get("192.0.2.1/32")
	if err != nil || !ok || stored.Reason != ReasonAuthFailures || !stored.Until.Equal(before[1].Until) {
		t.Fatalf("stored %v %v %v; bans %v", stored, ok, err, before)
	}

	// Restart 20 minutes later: the /64 ban has ended and is not loaded.
	c.Add(20 * time.Minute)
	s = reopen(t, s, c)
	sink2 := newSink()
	m2 := newManager(t, Options{Now: c.Now, Store: s, Sink: sink2})
	after := m2.Bans()
	if len(after) != 2 {
		t.Fatalf("loaded %v", after)
	}
	for i, e := range after {
		b := before[i+1]
		if e.Prefix != b.Prefix || e.Reason != b.Reason || e.Evidence != b.Evidence || e.Level != b.Level ||
			!e.Since.Equal(b.Since) || !e.Until.Equal(b.Until) {
			t.Fatalf("loaded %v, was %v", e, b)
		}
	}
	mustBanned(t, m2, "192.0.2.1")
	mustBanned(t, m2, "203.0.113.77")
	mustNotBanned(t, m2, "2001:db8:5::1")
	if got := sink2.prefixes(); !slices.Equal(got, []string{"192.0.2.1/32", "203.0.113.0/24"}) {
		t.Fatalf("sink after load %v", got)
	}
	if n, _ := bansBucket(t, s).Len(); n != 2 {
		t.Fatalf("store holds %d live bans", n)
	}

	// After the first ban ended, another restart still remembers its
	// level: the next ban of 192.0.2.1 lasts twice as long.
	c.Set(before[1].Until.Add(time.Minute))
	s = reopen(t, s, c)
	m3 := newManager(t, Options{Now: c.Now, Store: s})
	mustNotBanned(t, m3, "192.0.2.1")
	fail(m3, addr("192.0.2.1"), "1000", 5)
	if e := mustBanned(t, m3, "192.0.2.1"); e.Level != 1 || e.Until.Sub(e.Since) != 2*time.Hour {
		t.Fatalf("ban after restart %v", e)
	}
	// The manual ban with a duration raised the /24's level too.
	if _, err := m3.Ban(prefix("203.0.113.0/24"), 0, "", ""); err != nil {
		t.Fatal(err)
	}
	if e := mustBanned(t, m3, "203.0.113.1"); e.Level != 1 {
		t.Fatalf("level of the /24 %v", e)
	}

	// Past Forget, a restart has forgotten the level.
	c.Add(2*time.Hour + 24*time.Hour + time.Second)
	s = reopen(t, s, c)
	m4 := newManager(t, Options{Now: c.Now, Store: s})
	if len(m4.Bans()) != 0 {
		t.Fatalf("bans after everything ended %v", m4.Bans())
	}
	fail(m4, addr("192.0.2.1"), "1000", 5)
	if e := mustBanned(t, m4, "192.0.2.1"); e.Level != 0 || e.Until.Sub(e.Since) != time.Hour {
		t.Fatalf("ban after Forget %v", e)
	}
}

func TestLoadSkipsTrustedAndBadEntries(t *testing.T) {
	c := newClock()
	s := openStore(t, c)
	m1 := newManager(t, Options{Now: c.Now, Store: s})
	for _, p := range []string{"192.0.2.1/32", "192.0.2.2/32"} {
		if _, err := m1.Ban(prefix(p), 0, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	b := bansBucket(t, s)
	// Keys persist never writes: not a prefix, not canonical, too wide.
	for _, k := range []string{"junk", "192.0.2.3/24", "0.0.0.0/0"} {
		if err := b.PutTTL(k, Entry{Prefix: prefix("192.0.2.9/32"), Until: c.Now().Add(time.Hour)}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	// 192.0.2.2 became a trusted peer since.
	sink := newSink()
	m2 := newManager(t, Options{Now: c.Now, Store: s, Sink: sink,
		Trusted: func(ip netip.Addr) (string, bool) { return "trunk", ip == addr("192.0.2.2") }})
	if got := entryPrefixes(m2.Bans()); !slices.Equal(got, []string{"192.0.2.1/32"}) {
		t.Fatalf("loaded %v", got)
	}
	if got := sink.prefixes(); !slices.Equal(got, []string{"192.0.2.1/32"}) {
		t.Fatalf("sink %v", got)
	}
	var keys []string
	_ = b.ForEach(func(k string, _ Entry, _ time.Time) error { keys = append(keys, k); return nil })
	if !slices.Equal(keys, []string{"192.0.2.1/32"}) {
		t.Fatalf("store keys after load %v", keys)
	}
}

func TestLoadBoundedByMaxBans(t *testing.T) {
	c := newClock()
	s := openStore(t, c)
	m1 := newManager(t, Options{Now: c.Now, Store: s})
	for i := range 10 {
		// Longer bans for higher i.
		if _, err := m1.Ban(netip.PrefixFrom(nthV4(i), 32), time.Duration(i+1)*time.Hour, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	sink := newSink()
	m2 := newManager(t, Options{Now: c.Now, Store: s, Sink: sink, MaxBans: 4})
	want := []string{"100.0.0.6/32", "100.0.0.7/32", "100.0.0.8/32", "100.0.0.9/32"}
	if got := entryPrefixes(m2.Bans()); !slices.Equal(got, want) {
		t.Fatalf("loaded %v, want the 4 that end last", got)
	}
	if got := sink.prefixes(); !slices.Equal(got, want) {
		t.Fatalf("sink %v", got)
	}
	if n, _ := bansBucket(t, s).Len(); n != 4 {
		t.Fatalf("store keeps %d bans", n)
	}
}

// blockingSink holds its first Ban until released.
type blockingSink struct {
	*fakeSink
	once             sync.Once
	entered, release chan struct{}
}

func (s *blockingSink) Ban(p netip.Prefix, until time.Time) error {
	first := false
	s.once.Do(func() { first = true })
	if first {
		close(s.entered)
		<-s.release
	}
	return s.fakeSink.Ban(p, until)
}

// TestUnbanDuringSlowBan: an Unban that overtakes a Ban still being
// written must not leave the sink or the store with the ban.
func TestUnbanDuringSlowBan(t *testing.T) {
	c := newClock()
	s := openStore(t, c)
	sink := &blockingSink{fakeSink: newSink(), entered: make(chan struct{}), release: make(chan struct{})}
	m := newManager(t, Options{Now: c.Now, Store: s, Sink: sink})
	p := prefix("192.0.2.1/32")
	banDone := make(chan error)
	go func() { _, err := m.Ban(p, 0, "", ""); banDone <- err }()
	<-sink.entered
	unbanDone := make(chan error)
	go func() { _, err := m.Unban(p); unbanDone <- err }()
	// Give the Unban every chance to overtake (bounded, no sleeping on
	// ban logic): wait until it changed memory and, if it can, reached
	// the sink.
	deadline := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(deadline) {
		if _, ok := m.Banned(p.Addr()); !ok && slices.Contains(sink.Calls(), "unban "+p.String()) {
			break
		}
		runtime.Gosched()
	}
	close(sink.release)
	if err := <-banDone; err != nil {
		t.Fatal(err)
	}
	if err := <-unbanDone; err != nil {
		t.Fatal(err)
	}
	mustNotBanned(t, m, "192.0.2.1")
	if got := sink.prefixes(); len(got) != 0 {
		t.Fatalf("sink kept %v after the unban; calls %v", got, sink.Calls())
	}
	if _, ok, _ := bansBucket(t, s).Get(p.String()); ok {
		t.Fatal("store kept the ban after the unban")
	}
}
