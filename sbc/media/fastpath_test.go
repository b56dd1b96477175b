package media

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/sipwall/sipwall/bpf"
	"github.com/sipwall/sipwall/sbc"
)

// fakeFast records the routes the relay installs; Stats returns what the
// test says the kernel forwarded. The packets themselves still go through
// the relay's sockets: these tests are about when routes come and go.
type fakeFast struct {
	mu      sync.Mutex
	routes  map[netip.AddrPort]bpf.MediaRoute
	stats   map[netip.AddrPort]bpf.MediaStats
	puts    int
	failPut error
}

func newFakeFast() *fakeFast {
	return &fakeFast{routes: map[netip.AddrPort]bpf.MediaRoute{}, stats: map[netip.AddrPort]bpf.MediaStats{}}
}

func (f *fakeFast) Put(local netip.AddrPort, r bpf.MediaRoute) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.puts++
	if f.failPut != nil {
		return f.failPut
	}
	f.routes[local] = r
	if _, ok := f.stats[local]; !ok {
		f.stats[local] = bpf.MediaStats{}
	}
	return nil
}

func (f *fakeFast) Delete(local netip.AddrPort) (bpf.MediaStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.stats[local]
	delete(f.routes, local)
	delete(f.stats, local)
	return s, nil
}

func (f *fakeFast) Stats(local netip.AddrPort) (bpf.MediaStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.stats[local]
	if !ok {
		return s, bpf.ErrMediaNoRoute
	}
	return s, nil
}

// forwarded makes the kernel have forwarded n packets of size bytes to
// local.
func (f *fakeFast) forwarded(local netip.AddrPort, n, size uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.stats[local]
	s.Packets += n
	s.Bytes += n * size
	f.stats[local] = s
}

func (f *fakeFast) snapshot() map[netip.AddrPort]bpf.MediaRoute {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[netip.AddrPort]bpf.MediaRoute, len(f.routes))
	for k, v := range f.routes {
		out[k] = v
	}
	return out
}

// exchange sends one RTP packet each way through the relay's sockets.
func (c *call) exchange(t *testing.T, seq uint16) {
	t.Helper()
	c.phone.send(c.toExt, rtpPacket(seq, 172))
	c.pbx.recv()
	c.pbx.send(c.toInt, rtpPacket(seq, 172))
	c.phone.recv()
}

// wantRoutes checks that exactly the two routes of c are installed, from
// the peers given.
func wantRoutes(t *testing.T, f *fakeFast, c *call, phone, pbx netip.AddrPort) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		got := f.snapshot()
		in, okIn := got[c.toExt]
		out, okOut := got[c.toInt]
		if len(got) == 2 && okIn && okOut && in.Peer == phone && out.Peer == pbx {
			if in.Src != c.toInt || in.Dst != pbx || out.Src != c.toExt || out.Dst != phone {
				t.Fatalf("routes %+v", got)
			}
			now := bpf.MonoNow()
			for _, r := range []bpf.MediaRoute{in, out} {
				if r.Expires <= now || r.Expires > now+uint64(fastLease) {
					t.Fatalf("lease ends in %v, want within %v", time.Duration(r.Expires-now), fastLease)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("routes %+v, want the call's two from %s and %s", got, phone, pbx)
		}
		time.Sleep(time.Millisecond)
	}
}

func wantNoRoutes(t *testing.T, f *fakeFast) {
	t.Helper()
	if got := f.snapshot(); len(got) != 0 {
		t.Fatalf("routes left: %+v", got)
	}
}

func TestFastPathLifecycle(t *testing.T) {
	f := newFakeFast()
	m := newTestManager(t, func(c *Config) { c.FastPath = f })
	c := setupCall(t, m, "call-1")

	// One side latched is not enough.
	c.phone.send(c.toExt, rtpPacket(1, 172))
	c.pbx.recv()
	if got := f.snapshot(); len(got) != 0 {
		t.Fatalf("routes before the inside latched: %+v", got)
	}
	c.pbx.send(c.toInt, rtpPacket(1, 172))
	c.phone.recv()
	wantRoutes(t, f, c, c.phone.addr(), c.pbx.addr())
	if s := m.Stats(); s.FastPathStreams != 1 {
		t.Fatalf("FastPathStreams %d, want 1", s.FastPathStreams)
	}

	// RTCP stays in userspace: no route for the RTCP sockets, and it
	// still flows.
	rtcpExt, rtcpInt := relayAddr(t, c.ans, 0, true), relayAddr(t, c.offer, 0, true)
	sr := []byte{0x80, 200, 0, 6, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24}
	c.phoneC.send(rtcpExt, sr)
	c.pbxC.recv()
	c.pbxC.send(rtcpInt, sr)
	c.phoneC.recv()
	if got := f.snapshot(); len(got) != 2 {
		t.Fatalf("%d routes after RTCP, want 2", len(got))
	}

	// What the kernel forwarded counts as relayed.
	before := m.Stats()
	f.forwarded(c.toExt, 100, 160)
	f.forwarded(c.toInt, 50, 160)
	s := m.Stats()
	if s.Packets != before.Packets+150 || s.Bytes != before.Bytes+150*160 || s.FastPathPackets != 150 {
		t.Fatalf("stats %+v after 150 kernel packets (before %+v)", s, before)
	}

	// A re-INVITE with a new address for the phone: the routes go, the
	// relay re-latches in userspace, then the routes come back from the
	// new peer. The counters of the old routes are kept.
	moved, _ := rtpPair(t, phoneIP)
	rewrite(t, m, "call-1", sbc.Internal, audioSDP("alice", 2, moved.addr()))
	wantNoRoutes(t, f)
	if s := m.Stats(); s.FastPathPackets != 150 || s.FastPathStreams != 0 {
		t.Fatalf("after re-arm: %+v", s)
	}
	c.pbx.send(c.toInt, rtpPacket(2, 172))
	if got, _ := moved.recv(); len(got) != 172 {
		t.Fatal("not sent to the new SDP address")
	}
	wantNoRoutes(t, f) // the phone's side is not latched yet
	moved.send(c.toExt, rtpPacket(3, 172))
	c.pbx.recv()
	wantRoutes(t, f, c, moved.addr(), c.pbx.addr())

	// The same SDP again (a session refresh) keeps the routes.
	puts := f.puts
	rewrite(t, m, "call-1", sbc.Internal, audioSDP("alice", 2, moved.addr()))
	wantRoutes(t, f, c, moved.addr(), c.pbx.addr())
	if f.puts != puts {
		t.Fatalf("a refresh installed routes again (%d puts, was %d)", f.puts, puts)
	}

	// Port 0 stops the stream: no routes.
	rewrite(t, m, "call-1", sbc.External, body("v=0", "o=pbx 1 2 IN IP4 127.0.0.4", "s=-", "c=IN IP4 127.0.0.4", "t=0 0", "m=audio 0 RTP/AVP 0"))
	wantNoRoutes(t, f)

	// Back on, and the call ends: routes gone, counters kept.
	rewrite(t, m, "call-1", sbc.External, audioSDP("pbx", 3, c.pbx.addr()))
	c.pbx.send(c.toInt, rtpPacket(4, 172))
	moved.recv()
	c.pbx.send(c.toInt, rtpPacket(5, 172))
	moved.recv()
	wantRoutes(t, f, c, moved.addr(), c.pbx.addr())
	f.forwarded(c.toInt, 10, 100)
	m.Release("call-1")
	wantNoRoutes(t, f)
	if s := m.Stats(); s.FastPathPackets != 160 || s.FastPathStreams != 0 || s.Sessions != 0 {
		t.Fatalf("after Release: %+v", s)
	}
}

func TestFastPathRefused(t *testing.T) {
	f := newFakeFast()
	f.failPut = bpf.ErrMediaRoute
	m := newTestManager(t, func(c *Config) { c.FastPath = f })
	c := setupCall(t, m, "k")
	for i := range 3 {
		c.exchange(t, uint16(i)) // relayed in userspace all the same
	}
	s := waitStat(t, m, "6 packets", func(s Stats) bool { return s.Packets == 6 })
	if s.FastPathErrors != 1 || s.FastPathStreams != 0 {
		t.Fatalf("stats %+v, want one refusal, 6 packets in userspace", s)
	}
	if f.puts != 1 {
		t.Fatalf("%d Put calls: a refused route was tried again", f.puts)
	}
	// A new latch tries again.
	f.mu.Lock()
	f.failPut = nil
	f.mu.Unlock()
	moved := newEndpoint(t, phoneIP)
	rewrite(t, m, "k", sbc.Internal, audioSDP("alice", 2, moved.addr()))
	moved.send(c.toExt, rtpPacket(9, 172))
	c.pbx.recv()
	wantRoutes(t, f, c, moved.addr(), c.pbx.addr())
}

func TestFastPathLease(t *testing.T) {
	// Restored after the Manager is closed (cleanups run last first):
	// its readers read the lease.
	old := fastLease
	t.Cleanup(func() { fastLease = old })
	fastLease = 400 * time.Millisecond
	f := newFakeFast()
	m := newTestManager(t, func(c *Config) { c.FastPath = f })
	m.tick = 20 * time.Millisecond
	c := setupCall(t, m, "k")
	c.exchange(t, 1)
	wantRoutes(t, f, c, c.phone.addr(), c.pbx.addr())
	first := f.snapshot()[c.toExt].Expires

	// A packet that comes up once the lease is past half-time renews it.
	time.Sleep(fastLease/2 + 20*time.Millisecond)
	c.exchange(t, 2)
	if got := f.snapshot()[c.toExt].Expires; got <= first {
		t.Fatalf("lease not renewed by a packet: %d, was %d", got, first)
	}

	// Run renews it without any packet (Inactivity 0: Run ticks for the
	// fast path alone).
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx, func(string) {}) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(3 * fastLease)
	for {
		r := f.snapshot()[c.toExt]
		if r.Expires > bpf.MonoNow()+uint64(fastLease)/2 && r.Expires > first+uint64(fastLease) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not renew the lease")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFastPathInactivity(t *testing.T) {
	f := newFakeFast()
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	m := newTestManager(t, func(c *Config) { c.FastPath = f; c.Now = clk.Now; c.Inactivity = 30 * time.Second })
	c := setupCall(t, m, "k")
	c.exchange(t, 1)
	wantRoutes(t, f, c, c.phone.addr(), c.pbx.addr())
	// The relay's sockets see nothing more; the kernel forwards.
	for i := range 5 {
		f.forwarded(c.toExt, 500, 160)
		clk.now = clk.now.Add(20 * time.Second)
		if got := m.inactive(clk.now); len(got) != 0 {
			t.Fatalf("step %d: reported %v while the kernel forwards", i, got)
		}
	}
	clk.now = clk.now.Add(20 * time.Second)
	m.inactive(clk.now)
	clk.now = clk.now.Add(20 * time.Second)
	if got := m.inactive(clk.now); len(got) != 1 {
		t.Fatalf("silent for 40s: %v, want [k]", got)
	}
}

func TestFastPathUnusable(t *testing.T) {
	// The kernel matches a socket by its address and does not translate
	// between families: a wildcard bind, or sides of two families, stay
	// in userspace.
	for name, mod := range map[string]func(*Config){
		"wildcard":     func(c *Config) { c.Internal = netip.IPv4Unspecified(); c.AdvertiseInternal = intIP },
		"two families": func(c *Config) { c.Internal = netip.IPv6Loopback() },
	} {
		f := newFakeFast()
		m := newTestManager(t, func(c *Config) { c.FastPath = f; mod(c) })
		if m.fastOK {
			t.Errorf("%s: fast path in use", name)
		}
	}
	f := newFakeFast()
	if m := newTestManager(t, func(c *Config) { c.FastPath = f }); !m.fastOK {
		t.Error("two loopback binds: fast path not in use")
	}
}

func TestFastPathWithModel(t *testing.T) {
	// The model validates what the relay installs as the kernel would.
	fp := bpf.NewMediaModel(1, 65535)
	m := newTestManager(t, func(c *Config) { c.FastPath = fp })
	c := setupCall(t, m, "k")
	c.exchange(t, 1)
	deadline := time.Now().Add(waitFor)
	for fp.Routes() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d routes in the model, want 2 (errors %d)", fp.Routes(), m.Stats().FastPathErrors)
		}
		time.Sleep(time.Millisecond)
	}
	m.Release("k")
	if fp.Routes() != 0 {
		t.Fatalf("%d routes after Release", fp.Routes())
	}
	if _, err := fp.Stats(c.toExt); !errors.Is(err, bpf.ErrMediaNoRoute) {
		t.Fatal(err)
	}
}
