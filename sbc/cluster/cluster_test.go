package cluster

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/sipwall/sipwall/sbc/cluster/redistest"
)

const testPrefix = "t"

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// newClient opens a client on addr, closed at the end of the test.
func newClient(t testing.TB, addr, node string, mod ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{Addrs: []string{addr}, Node: node, Prefix: testPrefix, Timeout: time.Second}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := Open(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// run runs c until the end of the test and waits for its first resync
// (which follows the subscription) when Redis is up.
func run(t testing.TB, c *Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		c.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		c.Close()
	})
	if c.Healthy() {
		waitFor(t, 5*time.Second, "first resync", func() bool { return c.Stats().Resyncs > 0 })
	}
}

func rawClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	r := redis.NewClient(&redis.Options{
		Addr: addr, Protocol: 2, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	t.Cleanup(func() { r.Close() })
	return r
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recorder keeps the events given to OnBan.
// runningPair is two running clients of srv, nodes "a" and "b", each
// recording the ban events it is given.
func runningPair(t testing.TB, srv *redistest.Server) (a, b *Client, ra, rb *recorder) {
	t.Helper()
	a = newClient(t, srv.Addr(), "a")
	b = newClient(t, srv.Addr(), "b")
	ra, rb = &recorder{}, &recorder{}
	a.OnBan(ra.add)
	b.OnBan(rb.add)
	run(t, a)
	run(t, b)
	return a, b, ra, rb
}

type recorder struct {
	mu  sync.Mutex
	evs []BanEvent
}

func (r *recorder) add(ev BanEvent) {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
}

func (r *recorder) find(p netip.Prefix, removed bool) (BanEvent, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.evs {
		if ev.Prefix == p && ev.Removed == removed {
			return ev, true
		}
	}
	return BanEvent{}, false
}

func (r *recorder) all() []BanEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]BanEvent(nil), r.evs...)
}

func deadAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestOpenValidates(t *testing.T) {
	bad := []Config{
		{},
		{Addrs: []string{"localhost"}},
		{Addrs: []string{"localhost:0"}},
		{Addrs: []string{":6379"}},
		{Addrs: []string{"a:6379", "b:6379"}},
		{Addrs: []string{"a:6379"}, Cluster: true, MasterName: "m"},
		{Addrs: []string{"a:6379"}, Cluster: true, DB: 1},
		{Addrs: []string{"a:6379"}, DB: -1},
		{Addrs: []string{"a:6379"}, Prefix: "a:b"},
		{Addrs: []string{"a:6379"}, Prefix: "a{b}"},
		{Addrs: []string{"a:6379"}, Timeout: -1},
		{Addrs: []string{"a:6379"}, Resync: -1},
	}
	for i, cfg := range bad {
		if c, err := Open(cfg, nil); err == nil {
			c.Close()
			t.Errorf("%d: Open(%+v) accepted", i, cfg)
		}
	}
	c, err := Open(Config{Addrs: []string{deadAddr(t)}}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.cfg.Prefix != DefaultPrefix || c.cfg.Timeout != DefaultTimeout || c.cfg.Resync != DefaultResync || c.cfg.Node == "" {
		t.Errorf("defaults not set: %+v", c.cfg)
	}
	if got := c.keys.ban(netip.MustParsePrefix("192.0.2.7/24")); got != "sipwall:ban:192.0.2.0/24" {
		t.Errorf("ban key %q", got)
	}
	if got := c.keys.counter("k", time.Unix(0, 42)); got != "sipwall:cnt:{k}:42" {
		t.Errorf("counter key %q", got)
	}
	// Nothing listens there: only loopback, no name to resolve.
	for _, addrs := range [][]string{{deadAddr(t), deadAddr(t)}} {
		if c, err := Open(Config{Addrs: addrs, Cluster: true, Timeout: 50 * time.Millisecond}, testLogger(t)); err != nil {
			t.Errorf("cluster config refused: %v", err)
		} else {
			c.Close()
		}
		if c, err := Open(Config{Addrs: addrs, MasterName: "m", Timeout: 50 * time.Millisecond}, testLogger(t)); err != nil {
			t.Errorf("sentinel config refused: %v", err)
		} else {
			c.Close()
		}
	}
}

// TestDegradedStart: Open does not fail when Redis is down; operations fail
// fast and bans are queued, bounded, newest per prefix.
func TestDegradedStart(t *testing.T) {
	c := newClient(t, deadAddr(t), "a")
	if c.Healthy() {
		t.Fatal("healthy with no server")
	}
	st := c.Stats()
	if st.Up || st.DownSince.IsZero() || st.Errors == 0 || st.LastError == "" {
		t.Errorf("stats %+v", st)
	}
	if _, _, err := c.GetRegistration("sip:a@x"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("GetRegistration: %v", err)
	}
	if _, _, err := c.AddCounter("k", time.Now(), time.Now().Add(time.Minute), time.Time{}, 1); !errors.Is(err, ErrUnavailable) {
		t.Errorf("AddCounter: %v", err)
	}
	until := time.Now().Add(time.Hour)
	p := netip.MustParsePrefix("198.51.100.0/24")
	for i := range 3 {
		if err := c.PublishBan(BanEvent{Prefix: p, Until: until, Level: i}); err != nil {
			t.Fatal(err)
		}
	}
	if st := c.Stats(); st.Queued != 1 || st.Dropped != 0 {
		t.Fatalf("same prefix: queued %d dropped %d", st.Queued, st.Dropped)
	}
	if c.queue[p].ev.Level != 2 {
		t.Errorf("queued level %d, want the newest", c.queue[p].ev.Level)
	}
	for i := range MaxQueue + 9 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if err := c.PublishBan(BanEvent{Prefix: netip.PrefixFrom(a, 32), Until: until}); err != nil {
			t.Fatal(err)
		}
	}
	if st := c.Stats(); st.Queued != MaxQueue || st.Dropped != 10 {
		t.Fatalf("bound: queued %d dropped %d", st.Queued, st.Dropped)
	}
	if _, ok := c.queue[p]; ok {
		t.Error("the oldest event was not the one dropped")
	}
	// An expired ban is not queued; an invalid prefix is refused.
	if err := c.PublishBan(BanEvent{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Until: time.Now().Add(-time.Second)}); err != nil {
		t.Error(err)
	}
	if err := c.PublishBan(BanEvent{}); err == nil {
		t.Error("invalid prefix accepted")
	}
}

func TestBanPublishReceive(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a, b, ra, rb := runningPair(t, srv)

	p := netip.MustParsePrefix("203.0.113.9/24")
	until := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	sent := time.Now()
	if err := a.PublishBan(BanEvent{Prefix: p, Until: until, Reason: "scan", Evidence: "OPTIONS flood", Level: 2}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "ban at b", func() bool { _, ok := rb.find(p.Masked(), false); return ok })
	t.Logf("received after %v", time.Since(sent))
	ev, _ := rb.find(p.Masked(), false)
	if ev.Node != "a" || ev.Reason != "scan" || ev.Evidence != "OPTIONS flood" || ev.Level != 2 || !ev.Until.Equal(until) {
		t.Errorf("received %+v", ev)
	}

	raw := rawClient(t, srv.Addr())
	ctx := context.Background()
	key := "t:ban:203.0.113.0/24"
	if at, err := raw.PExpireTime(ctx, key).Result(); err != nil || at != time.Duration(until.UnixMilli())*time.Millisecond {
		t.Errorf("PEXPIRETIME %v %v, want %v", at, err, until.UnixMilli())
	}
	bans, err := b.Bans()
	if err != nil || len(bans) != 1 || bans[0].Prefix != p.Masked() {
		t.Errorf("Bans: %v %+v", err, bans)
	}

	if err := a.PublishBan(BanEvent{Prefix: p, Removed: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "removal at b", func() bool { _, ok := rb.find(p.Masked(), true); return ok })
	if n, _ := raw.Exists(ctx, key).Result(); n != 0 {
		t.Error("ban key still there after removal")
	}

	// b's own publish reaches a, not b.
	q := netip.MustParsePrefix("2001:db8::/48")
	if err := b.PublishBan(BanEvent{Prefix: q}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "ban at a", func() bool { _, ok := ra.find(q, false); return ok })
	if ttl, _ := raw.PTTL(ctx, "t:ban:2001:db8::/48").Result(); ttl != -1 {
		t.Errorf("ban without Until has ttl %v", ttl)
	}
	time.Sleep(200 * time.Millisecond)
	for _, ev := range ra.all() {
		if ev.Node == "a" {
			t.Errorf("a got its own event %+v", ev)
		}
	}
	for _, ev := range rb.all() {
		if ev.Node == "b" {
			t.Errorf("b got its own event %+v", ev)
		}
	}
	if st := a.Stats(); st.Published != 2 || st.Received != 1 {
		t.Errorf("a stats %+v", st)
	}
}

func TestResync(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := newClient(t, srv.Addr(), "a")
	b := newClient(t, srv.Addr(), "b", func(c *Config) { c.Resync = 200 * time.Millisecond })
	var rb recorder
	b.OnBan(rb.add)
	run(t, a)

	// Published while b is not subscribed: the first resync brings it.
	p := netip.MustParsePrefix("192.0.2.0/24")
	if err := a.PublishBan(BanEvent{Prefix: p, Until: time.Now().Add(time.Hour), Reason: "missed"}); err != nil {
		t.Fatal(err)
	}
	run(t, b)
	if ev, ok := rb.find(p, false); !ok || ev.Reason != "missed" {
		t.Fatalf("missed ban not delivered by the resync: %+v", rb.all())
	}

	// Deleted behind b's back: a resync delivers the removal.
	raw := rawClient(t, srv.Addr())
	if err := raw.Del(context.Background(), "t:ban:192.0.2.0/24").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "removal by resync", func() bool { _, ok := rb.find(p, true); return ok })

	// Written behind b's back: the periodic resync brings it too.
	q := netip.MustParsePrefix("198.51.100.7/32")
	if err := raw.Set(context.Background(), "t:ban:198.51.100.7/32", `{"prefix":"198.51.100.7/32","reason":"by hand"}`, 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "ban by resync", func() bool { _, ok := rb.find(q, false); return ok })

	// A removal is delivered once, not at every resync.
	n := 0
	for _, ev := range rb.all() {
		if ev.Removed {
			n++
		}
	}
	time.Sleep(500 * time.Millisecond)
	m := 0
	for _, ev := range rb.all() {
		if ev.Removed {
			m++
		}
	}
	if n != 1 || m != 1 {
		t.Errorf("removals %d then %d, want 1", n, m)
	}
	if err := b.Sync(context.Background()); err != nil {
		t.Errorf("Sync: %v", err)
	}
}

func TestQueuedBansPushedAfterRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a, _, ra, rb := runningPair(t, srv)

	srv.Stop()
	waitFor(t, 3*time.Second, "a down", func() bool { return !a.Healthy() })
	p := netip.MustParsePrefix("203.0.113.0/24")
	q := netip.MustParsePrefix("203.0.113.77/32")
	until := time.Now().Add(time.Hour)
	for _, ev := range []BanEvent{{Prefix: p, Until: until}, {Prefix: q, Until: until, Level: 1}, {Prefix: q, Until: until, Level: 3}} {
		if err := a.PublishBan(ev); err != nil {
			t.Fatalf("PublishBan while down: %v", err)
		}
	}
	if st := a.Stats(); st.Queued != 2 {
		t.Fatalf("queued %d, want 2", st.Queued)
	}
	srv.Restart()
	waitFor(t, 5*time.Second, "queued bans at b", func() bool {
		_, ok1 := rb.find(p, false)
		_, ok2 := rb.find(q, false)
		return ok1 && ok2
	})
	if ev, _ := rb.find(q, false); ev.Level != 3 {
		t.Errorf("level %d, want the newest event", ev.Level)
	}
	waitFor(t, 2*time.Second, "queue empty", func() bool { return a.Stats().Queued == 0 })
	bans, err := a.Bans()
	if err != nil || len(bans) != 2 {
		t.Errorf("Bans after restart: %v %+v", err, bans)
	}
	for _, ev := range ra.all() {
		if ev.Removed {
			t.Errorf("a delivered a removal: %+v", ev)
		}
	}
}

func TestHealthTransitions(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newClient(t, srv.Addr(), "a")
	var mu sync.Mutex
	var got []bool
	c.OnHealth(func(up bool) {
		mu.Lock()
		got = append(got, up)
		mu.Unlock()
	})
	transitions := func() []bool {
		mu.Lock()
		defer mu.Unlock()
		return append([]bool(nil), got...)
	}
	if !c.Healthy() {
		t.Fatal("not healthy at start")
	}
	run(t, c)

	srv.Stop()
	waitFor(t, 3*time.Second, "OnHealth(false)", func() bool { return len(transitions()) == 1 })
	if c.Healthy() || transitions()[0] {
		t.Fatalf("after stop: healthy %v, transitions %v", c.Healthy(), transitions())
	}
	if st := c.Stats(); st.Up || st.DownSince.IsZero() {
		t.Errorf("stats while down %+v", st)
	}
	if err := c.PutRegistration("sip:a@x", []byte("v"), time.Minute); !errors.Is(err, ErrUnavailable) {
		t.Errorf("PutRegistration while down: %v", err)
	}
	time.Sleep(1500 * time.Millisecond) // more failed pings: still one transition
	if n := len(transitions()); n != 1 {
		t.Errorf("%d transitions while down", n)
	}

	srv.Restart()
	waitFor(t, 5*time.Second, "OnHealth(true)", func() bool { return len(transitions()) == 2 })
	if !c.Healthy() || !transitions()[1] {
		t.Fatalf("after restart: healthy %v, transitions %v", c.Healthy(), transitions())
	}
	if err := c.PutRegistration("sip:a@x", []byte("v"), time.Minute); err != nil {
		t.Errorf("PutRegistration after restart: %v", err)
	}
	if st := c.Stats(); !st.Up || !st.DownSince.IsZero() {
		t.Errorf("stats after restart %+v", st)
	}
}

// A command that fails with a connection error marks the client down at
// once; the next good PING brings it back.
func TestCommandErrorMarksDown(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newClient(t, srv.Addr(), "a")
	srv.Stop()
	if err := c.PutRegistration("sip:a@x", []byte("v"), time.Minute); err == nil || errors.Is(err, ErrUnavailable) {
		t.Fatalf("PutRegistration with the server gone: %v", err)
	}
	if c.Healthy() {
		t.Fatal("still healthy after a connection error")
	}
	srv.Restart()
	run(t, c)
	waitFor(t, 5*time.Second, "healthy again", c.Healthy)
	// A refused command (not a connection error) keeps it healthy.
	raw := rawClient(t, srv.Addr())
	raw.SAdd(context.Background(), "t:reg:sip:wrongtype@x", "m")
	if _, _, err := c.GetRegistration("sip:wrongtype@x"); err == nil {
		t.Error("GET of a set succeeded")
	}
	if !c.Healthy() {
		t.Error("a WRONGTYPE reply marked the client down")
	}
}

func TestRegistrations(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := newClient(t, srv.Addr(), "a")
	b := newClient(t, srv.Addr(), "b")
	aors := []string{"sip:alice@example.com", "sip:bob@example.com:5060;transport=tcp", "sip:carol@example.com"}
	for i, aor := range aors {
		if err := a.PutRegistration(aor, []byte(`{"n":`+strconv.Itoa(i)+`}`), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	v, ok, err := b.GetRegistration(aors[1])
	if err != nil || !ok || string(v) != `{"n":1}` {
		t.Errorf("Get: %q %v %v", v, ok, err)
	}
	if _, ok, err := b.GetRegistration("sip:nobody@example.com"); ok || err != nil {
		t.Errorf("Get of a missing AOR: %v %v", ok, err)
	}
	raw := rawClient(t, srv.Addr())
	ctx := context.Background()
	if ttl, _ := raw.PTTL(ctx, "t:reg:"+aors[0]).Result(); ttl <= 50*time.Second || ttl > time.Minute {
		t.Errorf("ttl %v", ttl)
	}
	// An oversized value and one of the wrong type are skipped, and counted.
	raw.Set(ctx, "t:reg:sip:huge@example.com", make([]byte, MaxValue+1), 0)
	raw.SAdd(ctx, "t:reg:sip:set@example.com", "x")
	var seen []string
	err = b.ForEachRegistration(func(aor string, v []byte) error {
		seen = append(seen, aor)
		return nil
	})
	if err != nil || len(seen) != 3 || seen[0] != aors[0] || seen[1] != aors[1] || seen[2] != aors[2] {
		t.Errorf("ForEach: %v %v", seen, err)
	}
	if st := b.Stats(); st.Invalid != 2 {
		t.Errorf("invalid %d, want 2", st.Invalid)
	}
	if _, _, err := b.GetRegistration("sip:huge@example.com"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized Get: %v", err)
	}
	if err := a.PutRegistration("sip:x@y", make([]byte, MaxValue+1), time.Minute); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized Put: %v", err)
	}
	stop := errors.New("stop")
	n := 0
	if err := b.ForEachRegistration(func(string, []byte) error { n++; return stop }); err != stop || n != 1 {
		t.Errorf("ForEach stop: %v after %d", err, n)
	}

	if err := a.DeleteRegistration(aors[0]); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteRegistration(aors[0]); err != nil {
		t.Errorf("second delete: %v", err)
	}
	if _, ok, _ := b.GetRegistration(aors[0]); ok {
		t.Error("deleted registration still there")
	}
	if err := a.PutRegistration("sip:short@example.com", []byte("v"), 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "expiry", func() bool {
		_, ok, err := b.GetRegistration("sip:short@example.com")
		return !ok && err == nil
	})
	if err := a.PutRegistration("sip:x@y", nil, 0); err == nil {
		t.Error("registration without ttl accepted")
	}
}

func TestKeysAndLock(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := newClient(t, srv.Addr(), "a")
	b := newClient(t, srv.Addr(), "b")
	now := time.Now().UTC().Truncate(time.Second)
	k1 := Key{ID: "k1", Seq: 1, Secret: []byte("secret-one"), Created: now}
	k2 := Key{ID: "k2", Seq: 2, Secret: []byte("secret-two"), Created: now}
	for _, tc := range []struct {
		c    *Client
		k    Key
		want bool
	}{{a, k2, true}, {b, k1, true}, {b, k2, false}, {a, Key{ID: "k1", Seq: 9, Secret: []byte("other")}, false}} {
		added, err := tc.c.AddKey(tc.k)
		if err != nil || added != tc.want {
			t.Errorf("AddKey(%s): %v %v, want %v", tc.k.ID, added, err, tc.want)
		}
	}
	raw := rawClient(t, srv.Addr())
	raw.HSet(context.Background(), "t:auth-keys", "bad", "{not json", "k3", `{"id":"other","secret":"AA=="}`)
	keys, err := a.Keys()
	if err != nil || len(keys) != 2 || keys[0].ID != "k1" || keys[1].ID != "k2" ||
		string(keys[0].Secret) != "secret-one" || !keys[0].Created.Equal(now) || keys[1].Seq != 2 {
		t.Errorf("Keys: %v %+v", err, keys)
	}
	if st := a.Stats(); st.Invalid != 2 {
		t.Errorf("invalid %d", st.Invalid)
	}
	if err := a.DeleteKey("k1"); err != nil {
		t.Fatal(err)
	}
	if keys, _ := b.Keys(); len(keys) != 1 || keys[0].ID != "k2" {
		t.Errorf("after delete: %+v", keys)
	}
	if _, err := a.AddKey(Key{ID: "k9"}); err == nil {
		t.Error("key without secret accepted")
	}

	ok, err := a.TryLock("rotate", 300*time.Millisecond)
	if err != nil || !ok {
		t.Fatalf("a TryLock: %v %v", ok, err)
	}
	if ok, err := b.TryLock("rotate", time.Second); err != nil || ok {
		t.Errorf("b TryLock while a holds it: %v %v", ok, err)
	}
	if ok, err := b.Unlock("rotate"); err != nil || ok {
		t.Errorf("b Unlock of a's lock: %v %v", ok, err)
	}
	waitFor(t, 2*time.Second, "lock expiry", func() bool { ok, _ := b.TryLock("rotate", time.Minute); return ok })
	if ok, err := b.Unlock("rotate"); err != nil || !ok {
		t.Errorf("b Unlock: %v %v", ok, err)
	}
	if ok, _ := a.TryLock("rotate", time.Minute); !ok {
		t.Error("lock not free after Unlock")
	}
}

func TestCounters(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := newClient(t, srv.Addr(), "a", func(c *Config) { c.Timeout = 5 * time.Second })
	b := newClient(t, srv.Addr(), "b", func(c *Config) { c.Timeout = 5 * time.Second })
	start := time.Now().Truncate(time.Minute)
	end := start.Add(time.Minute)
	prevStart := start.Add(-time.Minute)

	// The previous window.
	if _, _, err := a.AddCounter("calls:alice", prevStart, start, time.Time{}, 2.5); err != nil {
		t.Fatal(err)
	}

	const per = 500
	var wg sync.WaitGroup
	errs := make(chan error, 2*per)
	for _, c := range []*Client{a, b} {
		for range per {
			wg.Go(func() {
				if _, _, err := c.AddCounter("calls:alice", start, end, prevStart, 1); err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("AddCounter: %v", err)
	}
	cur, prev, err := b.AddCounter("calls:alice", start, end, prevStart, 0)
	if err != nil || cur != 2*per || prev != 2.5 {
		t.Errorf("read: cur %v prev %v err %v", cur, prev, err)
	}
	cur, _, err = a.AddCounter("calls:alice", start, end, prevStart, 0.25)
	if err != nil || cur != 2*per+0.25 {
		t.Errorf("fraction: %v %v", cur, err)
	}
	raw := rawClient(t, srv.Addr())
	key := "t:cnt:{calls:alice}:" + strconv.FormatInt(start.UnixNano(), 10)
	want := end.Add(end.Sub(start)).UnixMilli()
	if at, err := raw.PExpireTime(context.Background(), key).Result(); err != nil || at.Milliseconds() != want {
		t.Errorf("expiry %v %v, want %v", at.Milliseconds(), err, want)
	}
	// Reading a window that does not exist writes nothing.
	cur, prev, err = a.AddCounter("calls:bob", start, end, prevStart, 0)
	if err != nil || cur != 0 || prev != 0 {
		t.Errorf("empty read: %v %v %v", cur, prev, err)
	}
	if n, _ := raw.Exists(context.Background(), "t:cnt:{calls:bob}:"+strconv.FormatInt(start.UnixNano(), 10)).Result(); n != 0 {
		t.Error("a read created the key")
	}
	// Bad data: skipped, counted, no panic.
	raw.Set(context.Background(), "t:cnt:{calls:carol}:"+strconv.FormatInt(prevStart.UnixNano(), 10), "zzz", 0)
	if _, prev, err := a.AddCounter("calls:carol", start, end, prevStart, 1); err != nil || prev != 0 {
		t.Errorf("bad previous window: %v %v", prev, err)
	}
	if _, _, err := a.AddCounter("calls:alice", end, start, prevStart, 1); err == nil {
		t.Error("reversed window accepted")
	}
}

func TestGauge(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := newClient(t, srv.Addr(), "a")
	b := newClient(t, srv.Addr(), "b")
	var wg sync.WaitGroup
	for _, c := range []*Client{a, b} {
		for range 50 {
			wg.Go(func() {
				if _, err := c.AddGauge("calls:alice", 1, time.Minute); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	if v, err := a.AddGauge("calls:alice", -1, time.Minute); err != nil || v != 99 {
		t.Errorf("gauge %v %v", v, err)
	}
	if v, err := b.AddGauge("calls:alice", 0, 500*time.Millisecond); err != nil || v != 99 {
		t.Errorf("gauge read %v %v", v, err)
	}
	raw := rawClient(t, srv.Addr())
	if ttl, _ := raw.PTTL(context.Background(), "t:gauge:calls:alice").Result(); ttl <= 0 || ttl > 500*time.Millisecond {
		t.Errorf("ttl %v", ttl)
	}
}

func TestBlocks(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := newClient(t, srv.Addr(), "a")
	b := newClient(t, srv.Addr(), "b")
	if err := a.PutBlock("alice", []byte(`{"why":"fraud"}`), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := a.PutBlock("bob", []byte(`{}`), time.Time{}); err != nil {
		t.Fatal(err)
	}
	v, ok, err := b.GetBlock("alice")
	if err != nil || !ok || string(v) != `{"why":"fraud"}` {
		t.Errorf("GetBlock %q %v %v", v, ok, err)
	}
	raw := rawClient(t, srv.Addr())
	if ttl, _ := raw.PTTL(context.Background(), "t:block:alice").Result(); ttl < 59*time.Minute {
		t.Errorf("ttl %v", ttl)
	}
	if ttl, _ := raw.PTTL(context.Background(), "t:block:bob").Result(); ttl != -1 {
		t.Errorf("ttl of a block without end %v", ttl)
	}
	var users []string
	if err := b.ForEachBlock(func(u string, _ []byte) error { users = append(users, u); return nil }); err != nil || len(users) != 2 || users[0] != "alice" {
		t.Errorf("ForEachBlock %v %v", users, err)
	}
	if err := b.DeleteBlock("alice"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := a.GetBlock("alice"); ok {
		t.Error("deleted block still there")
	}
	// A block that has already ended removes the block.
	if err := a.PutBlock("bob", []byte(`{}`), time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := a.GetBlock("bob"); ok {
		t.Error("ended block still there")
	}
}

func TestCountries(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := newClient(t, srv.Addr(), "a")
	b := newClient(t, srv.Addr(), "b")
	for _, tc := range []struct {
		c    *Client
		cc   string
		want bool
	}{{a, "FR", true}, {b, "FR", false}, {b, "DE", true}, {a, "DE", false}} {
		isNew, err := tc.c.AddCountry("alice", tc.cc, time.Hour)
		if err != nil || isNew != tc.want {
			t.Errorf("AddCountry(%s) %v %v, want %v", tc.cc, isNew, err, tc.want)
		}
	}
	raw := rawClient(t, srv.Addr())
	if ttl, _ := raw.PTTL(context.Background(), "t:cc:alice").Result(); ttl < 59*time.Minute {
		t.Errorf("ttl %v", ttl)
	}
}

// Bad data in Redis, in keys or on the channel, is skipped and counted.
func TestBadBanDataSkipped(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	b := newClient(t, srv.Addr(), "b")
	var rb recorder
	b.OnBan(rb.add)
	run(t, b)
	raw := rawClient(t, srv.Addr())
	ctx := context.Background()
	raw.Set(ctx, "t:ban:192.0.2.0/24", "{garbage", 0)
	raw.Set(ctx, "t:ban:192.0.2.1/32", `{"prefix":"10.0.0.0/8"}`, 0) // key and value disagree
	raw.Set(ctx, "t:ban:not-a-prefix", `{"prefix":"10.0.0.0/8"}`, 0)
	raw.Set(ctx, "t:ban:192.0.2.2/32", `{"prefix":"192.0.2.2/32","until":"yesterday"}`, 0)
	raw.SAdd(ctx, "t:ban:192.0.2.3/32", "x")
	raw.Set(ctx, "t:ban:192.0.2.4/32", `{"prefix":"192.0.2.4/32","level":1}`, 0)
	bans, err := b.Bans()
	if err != nil || len(bans) != 1 || bans[0].Prefix != netip.MustParsePrefix("192.0.2.4/32") {
		t.Errorf("Bans %v %+v", err, bans)
	}
	if st := b.Stats(); st.Invalid != 5 {
		t.Errorf("invalid %d, want 5", st.Invalid)
	}
	before := b.Stats().Invalid
	for _, msg := range []string{"", "{", `{"prefix":""}`, `[]`, `{"prefix":"192.0.2.9/32","level":"x"}`} {
		raw.Publish(ctx, "t:bans", msg)
	}
	raw.Publish(ctx, "t:bans", `{"prefix":"192.0.2.10/32","node":"z"}`)
	waitFor(t, time.Second, "good message after bad ones", func() bool {
		_, ok := rb.find(netip.MustParsePrefix("192.0.2.10/32"), false)
		return ok
	})
	if st := b.Stats(); st.Invalid-before != 5 || st.Received != 1 {
		t.Errorf("after messages: invalid +%d received %d", st.Invalid-before, st.Received)
	}
	if !b.Healthy() {
		t.Error("bad data marked the client down")
	}
}

// A batch does what AddCounter and AddGauge do, one result per operation,
// in one round trip; an invalid operation fails alone.
func TestBatch(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := newClient(t, srv.Addr(), "a", func(c *Config) { c.Timeout = 5 * time.Second })
	start := time.Now().Truncate(time.Minute)
	end := start.Add(time.Minute)
	prevStart := start.Add(-time.Minute)
	if _, _, err := a.AddCounter("calls:alice", prevStart, start, time.Time{}, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddGauge("conc:alice", 2, time.Minute); err != nil {
		t.Fatal(err)
	}
	ops := []Op{
		{Key: "calls:alice", Start: start, End: end, PrevStart: prevStart, Delta: 1},
		{Key: "calls:bob", Start: start, End: end, PrevStart: prevStart}, // read, none yet
		{Key: "conc:alice", Delta: 1, TTL: time.Minute},
		{Key: "conc:bob", Delta: -1, TTL: 500 * time.Millisecond},
		{Key: "", Delta: 1, TTL: time.Minute},                           // invalid
		{Key: "calls:carol", Start: end, End: start, Delta: 1},          // window backwards
		{Key: "calls:alice", Start: start, End: end, Delta: math.NaN()}, // not a number
	}
	before := a.Stats().RoundTrips
	if err := a.Batch(ops); err != nil {
		t.Fatal(err)
	}
	if n := a.Stats().RoundTrips - before; n != 1 {
		t.Errorf("%d round trips, want 1", n)
	}
	type res struct {
		cur, prev float64
		failed    bool
	}
	want := []res{{1, 3, false}, {0, 0, false}, {3, 0, false}, {-1, 0, false}, {0, 0, true}, {0, 0, true}, {0, 0, true}}
	for i, w := range want {
		o := ops[i]
		if o.Cur != w.cur || o.Prev != w.prev || (o.Err != nil) != w.failed {
			t.Errorf("op %d (%q): cur %v prev %v err %v, want %+v", i, o.Key, o.Cur, o.Prev, o.Err, w)
		}
	}
	raw := rawClient(t, srv.Addr())
	key := "t:cnt:{calls:alice}:" + strconv.FormatInt(start.UnixNano(), 10)
	if at, err := raw.PExpireTime(context.Background(), key).Result(); err != nil || at.Milliseconds() != end.Add(end.Sub(start)).UnixMilli() {
		t.Errorf("counter expiry %v %v", at, err)
	}
	if n, _ := raw.Exists(context.Background(), "t:cnt:{calls:bob}:"+strconv.FormatInt(start.UnixNano(), 10)).Result(); n != 0 {
		t.Error("a read created the window")
	}
	if ttl, _ := raw.PTTL(context.Background(), "t:gauge:conc:bob").Result(); ttl <= 0 || ttl > 500*time.Millisecond {
		t.Errorf("gauge ttl %v", ttl)
	}
	// Redis away: every operation gets the error.
	srv.Stop()
	ops = []Op{{Key: "conc:alice", Delta: 1, TTL: time.Minute}, {Key: "calls:alice", Start: start, End: end, Delta: 1}}
	if err := a.Batch(ops); err == nil || ops[0].Err == nil || ops[1].Err == nil {
		t.Errorf("with Redis down: %v, %v, %v", err, ops[0].Err, ops[1].Err)
	}
}
