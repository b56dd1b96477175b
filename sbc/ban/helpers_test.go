package ban

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/store"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// clock is an injected, manually advanced clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// fakeSink records calls and keeps the resulting state.
type fakeSink struct {
	mu    sync.Mutex
	calls []string
	state map[netip.Prefix]time.Time
	fail  bool
}

func newSink() *fakeSink { return &fakeSink{state: map[netip.Prefix]time.Time{}} }

var errSink = errors.New("sink down")

func (s *fakeSink) Ban(p netip.Prefix, until time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "ban "+p.String())
	if s.fail {
		return errSink
	}
	s.state[p] = until
	return nil
}

func (s *fakeSink) Unban(p netip.Prefix) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "unban "+p.String())
	if s.fail {
		return errSink
	}
	delete(s.state, p)
	return nil
}

func (s *fakeSink) Calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// prefixes is the sorted list of banned prefixes in the sink.
func (s *fakeSink) prefixes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for p := range s.state {
		out = append(out, p.String())
	}
	slices.Sort(out)
	return out
}

func entryPrefixes(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Prefix.String())
	}
	slices.Sort(out)
	return out
}

// openStore opens a throwaway store on the test clock.
func openStore(t testing.TB, c *clock) *store.Store {
	t.Helper()
	s, cleanup, err := store.OpenTemp(store.WithClock(c.Now), store.WithNoSync())
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(cleanup)
	return s
}

// reopen closes s and opens its directory again, as a restart would.
func reopen(t testing.TB, s *store.Store, c *clock) *store.Store {
	t.Helper()
	dir := s.Dir()
	if err := s.Close(); err != nil {
		t.Fatalf("close store: %v", err)
	}
	s2, err := store.Open(dir, store.WithClock(c.Now), store.WithNoSync())
	if err != nil {
		t.Fatalf("reopen store: %v", err)
	}
	t.Cleanup(func() { _ = s2.Close() })
	return s2
}

func newManager(t testing.TB, opt Options) *Manager {
	t.Helper()
	m, err := New(opt)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

func addr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func prefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// nthAddr returns distinct addresses: 198.51.x.y for v4, or one per /64
// (2001:db8:hi:lo::1) when perNet, else inside 2001:db8::/64.
func nthV4(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)})
}

func nthV6(i int, perNet bool) netip.Addr {
	var b [16]byte
	b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
	if perNet {
		b[4], b[5], b[6], b[7] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		b[15] = 1
	} else {
		b[12], b[13], b[14], b[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
	}
	return netip.AddrFrom16(b)
}

// bansBucket reads the persisted bans directly.
func bansBucket(t testing.TB, s *store.Store) *store.Bucket[Entry] {
	t.Helper()
	b, err := store.NewBucket[Entry](s, "bans")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func levelBucket(t testing.TB, s *store.Store) *store.Bucket[levelState] {
	t.Helper()
	b, err := store.NewBucket[levelState](s, "ban-level")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recorder is an sbc.ResponseWriter that keeps what was sent.
type recorder struct{ res []*sip.Response }

func (w *recorder) Respond(res *sip.Response) error { w.res = append(w.res, res); return nil }
func (w *recorder) Tx() sip.ServerTransaction       { return nil }
func (w *recorder) Written() int {
	if len(w.res) == 0 {
		return 0
	}
	return int(w.res[len(w.res)-1].StatusCode)
}

var _ sbc.ResponseWriter = (*recorder)(nil)

// request builds an OPTIONS request from peer with extra header lines,
// joined by CRLF.
func request(t testing.TB, peer netip.AddrPort, side sbc.Side, extra ...string) *sbc.Request {
	t.Helper()
	lines := []string{
		"OPTIONS sip:100@sip.example.test SIP/2.0",
		"Via: SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bK-1",
		"Max-Forwards: 70",
		"From: <sip:100@sip.example.test>;tag=f1",
		"To: <sip:100@sip.example.test>",
		"Call-ID: c1@192.0.2.99",
		"CSeq: 1 OPTIONS",
	}
	lines = append(lines, extra...)
	lines = append(lines, "Content-Length: 0", "", "")
	msg, err := sip.ParseMessage([]byte(strings.Join(lines, "\r\n")))
	if err != nil {
		t.Fatalf("parse request: %v", err)
	}
	return &sbc.Request{Request: msg.(*sip.Request), Peer: peer, Side: side, Transport: "udp"}
}

func fail(m *Manager, ip netip.Addr, user string, n int) {
	for range n {
		m.Failure(ip, user, "bad-password")
	}
}

func mustBanned(t testing.TB, m *Manager, ip string) Entry {
	t.Helper()
	e, ok := m.Banned(addr(ip))
	if !ok {
		t.Fatalf("%s not banned; bans: %v", ip, m.Bans())
	}
	return e
}

func mustNotBanned(t testing.TB, m *Manager, ip string) {
	t.Helper()
	if e, ok := m.Banned(addr(ip)); ok {
		t.Fatalf("%s banned: %+v", ip, e)
	}
}

func (e Entry) String() string {
	return fmt.Sprintf("%s %s %q level %d %s..%s", e.Prefix, e.Reason, e.Evidence, e.Level, e.Since.Format(time.TimeOnly), e.Until.Format(time.TimeOnly))
}

// tableLens reports the sizes of the in-memory tables, for tests.
func (m *Manager) tableLens() (addrs, nets, users, good, levels, bans, locks int) {
	m.cmu.Lock()
	addrs, nets, users, good, levels = m.addrs.len(), m.nets.len(), m.users.len(), m.good.len(), m.levels.len()
	m.cmu.Unlock()
	m.mu.RLock()
	bans, locks = m.bans.len(), m.locks.len()
	m.mu.RUnlock()
	return
}
