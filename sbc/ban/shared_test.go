package ban

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// bus wires Managers together the way the cluster's pub/sub does: every
// event a node publishes is delivered, in order, to every node, the
// publisher included (so an echo reaches it). It is a channel drained by
// the test, so delivery is deterministic; the Managers on both ends are
// real ones.
type bus struct {
	ch    chan busEvent
	mu    sync.Mutex
	nodes []*Manager
	sent  int
	fail  error
}

type busEvent struct {
	from    int
	e       Entry
	removed bool
}

// port is one node's end of the bus: its Options.Shared.
type port struct {
	b    *bus
	node int
}

func (p port) Publish(e Entry, removed bool) error {
	p.b.mu.Lock()
	err := p.b.fail
	if err == nil {
		p.b.sent++
	}
	p.b.mu.Unlock()
	if err != nil {
		return err
	}
	p.b.ch <- busEvent{from: p.node, e: e, removed: removed}
	return nil
}

func newBus() *bus { return &bus{ch: make(chan busEvent, 1000)} }

// join builds a Manager on the bus.
func (b *bus) join(t *testing.T, opt Options) *Manager {
	t.Helper()
	opt.Shared = port{b: b, node: len(b.nodes)}
	m := newManager(t, opt)
	b.nodes = append(b.nodes, m)
	return m
}

// drain delivers the queued events to every node and returns how many it
// delivered. An event published while draining (an echo loop) is drained
// too; more than max of them fails the test.
func (b *bus) drain(t *testing.T) int {
	t.Helper()
	n := 0
	for {
		select {
		case ev := <-b.ch:
			n++
			if n > 100 {
				t.Fatal("events keep coming: echo loop")
			}
			for _, m := range b.nodes {
				if ev.removed {
					_, _ = m.RemoveRemote(ev.e.Prefix)
				} else {
					_ = m.ApplyRemote(ev.e)
				}
			}
		default:
			return n
		}
	}
}

func (b *bus) published() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sent
}

// TestSharedBanReachesPeer: a ban decided on A is in force on B (Banned,
// B's sink) with A's end and level; the echo back to A changes nothing and
// publishes nothing; an unban on A lifts it on B; an escalation on A
// arrives with its level, and a later local ban on B escalates from it.
func TestSharedBanReachesPeer(t *testing.T) {
	c := newClock()
	b := newBus()
	sa, sb := newSink(), newSink()
	ma := b.join(t, Options{Now: c.Now, Sink: sa})
	mb := b.join(t, Options{Now: c.Now, Sink: sb})

	fail(ma, addr("192.0.2.1"), "1000", 5)
	ea := mustBanned(t, ma, "192.0.2.1")
	mustNotBanned(t, mb, "192.0.2.1")
	if n := b.drain(t); n != 1 || b.published() != 1 {
		t.Fatalf("delivered %d, published %d; want 1 event", n, b.published())
	}
	eb := mustBanned(t, mb, "192.0.2.1")
	if eb.Prefix != ea.Prefix || !eb.Until.Equal(ea.Until) || eb.Reason != ReasonAuthFailures ||
		eb.Evidence != ea.Evidence || eb.Level != 0 {
		t.Fatalf("B holds %v, A %v", eb, ea)
	}
	if got := sb.prefixes(); !slices.Equal(got, []string{"192.0.2.1/32"}) {
		t.Fatalf("B's sink %v", got)
	}
	if until := sb.state[prefix("192.0.2.1/32")]; !until.Equal(ea.Until) {
		t.Fatalf("B's sink until %v, want %v", until, ea.Until)
	}
	if stA, stB := ma.Stats(), mb.Stats(); stA.Remote != 0 || stB.Remote != 1 || stB.Bans[ReasonAuthFailures] != 0 {
		t.Fatalf("A remote %d, B remote %d, B's own bans %v", stA.Remote, stB.Remote, stB.Bans)
	}
	if calls := sa.Calls(); len(calls) != 1 {
		t.Fatalf("A's sink calls %v: the echo must not touch it", calls)
	}

	if ok, err := ma.Unban(prefix("192.0.2.1/32")); !ok || err != nil {
		t.Fatalf("Unban: %v %v", ok, err)
	}
	b.drain(t)
	mustNotBanned(t, mb, "192.0.2.1")
	if got := sb.prefixes(); len(got) != 0 {
		t.Fatalf("B's sink after the unban: %v", got)
	}
	if b.published() != 2 {
		t.Fatalf("published %d, want 2 (ban, unban)", b.published())
	}

	// The level survives the unban on both: A's next ban is level 1 and
	// B takes it; B's own ban after that is level 2.
	e1, err := ma.Ban(prefix("192.0.2.1/32"), 0, "manual", "again")
	if err != nil || e1.Level != 1 {
		t.Fatalf("second ban: %v %v", e1, err)
	}
	b.drain(t)
	if e := mustBanned(t, mb, "192.0.2.1"); e.Level != 1 || !e.Until.Equal(e1.Until) || e.Reason != ReasonManual {
		t.Fatalf("B after the escalation: %v", e)
	}
	c.Add(3 * time.Hour) // both bans ended
	ma.Sweep()
	mb.Sweep()
	e2, err := mb.Ban(prefix("192.0.2.1/32"), 0, "", "")
	if err != nil || e2.Level != 2 || e2.Until.Sub(e2.Since) != 4*time.Hour {
		t.Fatalf("B's own ban after a remote level 1: %v %v", e2, err)
	}
	b.drain(t)
	if e := mustBanned(t, ma, "192.0.2.1"); e.Level != 2 || !e.Until.Equal(e2.Until) {
		t.Fatalf("A after B's ban: %v", e)
	}
	if b.published() != 4 {
		t.Fatalf("published %d, want 4", b.published())
	}
}

// TestSharedTrusted: a node never applies a ban of one of its trusted
// addresses, whoever decided it; under a wider ban (applied, its ends
// are not trusted) Banned still never reports the trusted address, as for
// local bans.
func TestSharedTrusted(t *testing.T) {
	c := newClock()
	b := newBus()
	sb := newSink()
	trusted := func(ip netip.Addr) (string, bool) { return "pbx", ip == addr("192.0.2.50") }
	ma := b.join(t, Options{Now: c.Now})
	mb := b.join(t, Options{Now: c.Now, Sink: sb, Trusted: trusted})

	fail(ma, addr("192.0.2.50"), "x", 5) // A does not trust it
	mustBanned(t, ma, "192.0.2.50")
	b.drain(t)
	mustNotBanned(t, mb, "192.0.2.50")
	if len(sb.Calls()) != 0 || len(mb.Bans()) != 0 {
		t.Fatalf("B applied a ban of its trusted address: sink %v, bans %v", sb.Calls(), mb.Bans())
	}
	err := mb.ApplyRemote(Entry{Prefix: prefix("192.0.2.50/32"), Reason: "manual", Until: c.Now().Add(time.Hour)})
	if !errors.Is(err, ErrTrusted) {
		t.Fatalf("ApplyRemote of a trusted address: %v", err)
	}
	if err := mb.ApplyRemote(Entry{Prefix: prefix("10.0.0.0/8"), Until: c.Now().Add(time.Hour)}); !errors.Is(err, ErrBadPrefix) {
		t.Fatalf("ApplyRemote of a /8: %v", err)
	}

	if _, err := ma.Ban(prefix("192.0.2.0/24"), 0, "", ""); err != nil {
		t.Fatal(err)
	}
	b.drain(t)
	mustNotBanned(t, mb, "192.0.2.50")
	mustBanned(t, mb, "192.0.2.51")
}

// TestSharedApplyRules: remote bans respect MaxBans, never shorten a ban
// in force, skip ended bans, and clean up odd reasons.
func TestSharedApplyRules(t *testing.T) {
	c := newClock()
	s := newSink()
	m := newManager(t, Options{Now: c.Now, Sink: s, MaxBans: 2})
	now := c.Now()
	for i, d := range []time.Duration{3 * time.Hour, time.Hour, 2 * time.Hour} {
		ip := nthV4(i + 1)
		if err := m.ApplyRemote(Entry{Prefix: hostPrefix(ip), Reason: "scanner", Until: now.Add(d)}); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := entryPrefixes(m.Bans()), []string{"100.0.0.1/32", "100.0.0.3/32"}; !slices.Equal(got, want) {
		t.Fatalf("bans %v, want %v (the one ending first evicted)", got, want)
	}
	if got := s.prefixes(); !slices.Equal(got, []string{"100.0.0.1/32", "100.0.0.3/32"}) {
		t.Fatalf("sink %v", got)
	}
	if st := m.Stats(); st.Evicted != 1 || st.Remote != 3 || st.Active != 2 {
		t.Fatalf("stats %+v", st)
	}

	p := hostPrefix(nthV4(1))
	if err := m.ApplyRemote(Entry{Prefix: p, Reason: "manual", Until: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if e, _ := m.Banned(nthV4(1)); !e.Until.Equal(now.Add(3*time.Hour)) || e.Reason != "scanner" {
		t.Fatalf("a shorter remote ban replaced a longer one: %v", e)
	}
	if err := m.ApplyRemote(Entry{Prefix: p, Reason: "Bad Reason!", Until: now.Add(5 * time.Hour), Level: 99}); err != nil {
		t.Fatal(err)
	}
	if e, _ := m.Banned(nthV4(1)); !e.Until.Equal(now.Add(5*time.Hour)) || e.Reason != ReasonOther || e.Level != m.maxLevel {
		t.Fatalf("a longer remote ban: %v", e)
	}
	if err := m.ApplyRemote(Entry{Prefix: hostPrefix(nthV4(9)), Until: now}); err != nil {
		t.Fatal(err)
	}
	mustNotBanned(t, m, nthV4(9).String())

	if ok, err := m.RemoveRemote(p); !ok || err != nil {
		t.Fatalf("RemoveRemote: %v %v", ok, err)
	}
	mustNotBanned(t, m, nthV4(1).String())
	if ok, _ := m.RemoveRemote(p); ok {
		t.Fatal("RemoveRemote of a prefix not banned reported a ban")
	}
}

// TestSharedUnbanElsewhere: an operator's unban on a node that does not
// hold the ban (evicted there, say) still lifts it on the others.
func TestSharedUnbanElsewhere(t *testing.T) {
	c := newClock()
	b := newBus()
	ma := b.join(t, Options{Now: c.Now})
	mb := b.join(t, Options{Now: c.Now})
	if _, err := mb.Ban(prefix("2001:db8::/64"), 0, "", ""); err != nil {
		t.Fatal(err)
	}
	b.drain(t)
	ma.RemoveRemote(prefix("2001:db8::/64")) // A lost it
	if ok, err := ma.Unban(prefix("2001:db8::/64")); ok || err != nil {
		t.Fatalf("Unban on A: %v %v", ok, err)
	}
	b.drain(t)
	mustNotBanned(t, mb, "2001:db8::1")
}

// TestSharedPublishError: a failed publish is counted and returned, and
// the ban holds locally all the same.
func TestSharedPublishError(t *testing.T) {
	c := newClock()
	b := newBus()
	b.fail = errors.New("redis down")
	m := b.join(t, Options{Now: c.Now})
	_, err := m.Ban(prefix("192.0.2.7/32"), 0, "", "")
	if err == nil || !errors.Is(err, b.fail) {
		t.Fatalf("Ban: %v", err)
	}
	mustBanned(t, m, "192.0.2.7")
	fail(m, addr("192.0.2.8"), "u", 5)
	mustBanned(t, m, "192.0.2.8")
	if _, err := m.Unban(prefix("192.0.2.7/32")); !errors.Is(err, b.fail) {
		t.Fatalf("Unban: %v", err)
	}
	if st := m.Stats(); st.SharedErrors != 3 {
		t.Fatalf("SharedErrors %d, want 3", st.SharedErrors)
	}
}

// TestSharedPersist: a remote ban is written to the store like a local
// one, so a restart keeps it.
func TestSharedPersist(t *testing.T) {
	c := newClock()
	st := openStore(t, c)
	m := newManager(t, Options{Now: c.Now, Store: st})
	until := c.Now().Add(2 * time.Hour)
	if err := m.ApplyRemote(Entry{Prefix: prefix("198.51.100.9/32"), Reason: "scanner", Evidence: "e", Until: until, Level: 1}); err != nil {
		t.Fatal(err)
	}
	st = reopen(t, st, c)
	s := newSink()
	m2 := newManager(t, Options{Now: c.Now, Store: st, Sink: s})
	e := mustBanned(t, m2, "198.51.100.9")
	if !e.Until.Equal(until) || e.Level != 1 || e.Reason != "scanner" {
		t.Fatalf("reloaded %v", e)
	}
	if got := s.prefixes(); !slices.Equal(got, []string{"198.51.100.9/32"}) {
		t.Fatalf("sink after restart %v", got)
	}
}

// TestSharedConcurrent bans and unbans the same prefixes on two nodes
// while events are delivered concurrently (run with -race).
func TestSharedConcurrent(t *testing.T) {
	c := newClock()
	b := newBus()
	ma := b.join(t, Options{Now: c.Now, Sink: newSink()})
	mb := b.join(t, Options{Now: c.Now, Sink: newSink()})
	stop := make(chan struct{})
	delivered := make(chan struct{})
	go func() {
		defer close(delivered)
		for {
			select {
			case ev := <-b.ch:
				for i, m := range b.nodes {
					if i == ev.from {
						continue // what an adapter filtering its own Node does
					}
					if ev.removed {
						_, _ = m.RemoveRemote(ev.e.Prefix)
					} else {
						_ = m.ApplyRemote(ev.e)
					}
				}
			case <-stop:
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for w, m := range []*Manager{ma, mb, ma, mb} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				p := hostPrefix(nthV4(i % 10))
				if (i+w)%3 == 0 {
					_, _ = m.Unban(p)
				} else {
					_, _ = m.Ban(p, 0, "", "")
				}
				m.Banned(p.Addr())
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-delivered
}
