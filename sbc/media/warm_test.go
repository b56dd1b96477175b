package media

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc"
)

// Warm pairs: released port pairs stay bound and are reused after the
// quarantine, drained, without a bind.

// newWarmManager has a range of pairs pairs per side and the fake clock.
func newWarmManager(t *testing.T, pairs int) (*Manager, *fakeClock) {
	t.Helper()
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	m := newTestManager(t, func(c *Config) { withPairs(t, pairs)(c); c.Now = clk.Now })
	return m, clk
}

// relayWorks checks one RTP packet each way through the call c.
func relayWorks(t *testing.T, c *call, seq uint16) {
	t.Helper()
	p := rtpPacket(seq, 172)
	c.phone.send(c.toExt, p)
	if got, _ := c.pbx.recv(); !bytes.Equal(got, p) {
		t.Fatalf("%s: PBX got another packet than the phone's", c.key)
	}
	c.pbx.send(c.toInt, p)
	if got, _ := c.phone.recv(); !bytes.Equal(got, p) {
		t.Fatalf("%s: phone got another packet than the PBX's", c.key)
	}
}

// bindable tells whether the test could bind port on ip, that is whether
// the relay holds no socket on it.
func bindable(ip netip.Addr, port int) bool {
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func noDrops(t *testing.T, st Stats) {
	t.Helper()
	for reason, n := range st.Dropped {
		if n != 0 {
			t.Errorf("%d dropped (%s): %+v", n, reason, st)
		}
	}
}

func TestWarmQuarantine(t *testing.T) {
	if !canDrain {
		t.Skip("no warm pairs on this platform")
	}
	m, clk := newWarmManager(t, 8)
	a := setupCall(t, m, "a")
	relayWorks(t, a, 1)
	m.Release("a")
	st := m.Stats()
	if st.PortsInUse != 0 || st.PortsWarm != 4 || st.Binds != 2 || st.Reused != 0 {
		t.Fatalf("after Release: %+v", st)
	}
	// Both sides' pairs stay bound.
	if bindable(extIP, int(a.toExt.Port())) || bindable(intIP, int(a.toInt.Port())) {
		t.Fatal("a warm port was closed")
	}

	// Within the quarantine: fresh pairs, next fit.
	clk.now = clk.now.Add(warmQuarantine - time.Millisecond)
	b := setupCall(t, m, "b")
	if b.toExt == a.toExt || b.toInt == a.toInt {
		t.Fatalf("pair reused %s after its release", warmQuarantine-time.Millisecond)
	}
	if st := m.Stats(); st.Binds != 4 || st.Reused != 0 || st.PortsWarm != 4 || st.PortsInUse != 4 {
		t.Fatalf("within the quarantine: %+v", st)
	}
	relayWorks(t, b, 2)

	// Once a's pairs have rested the quarantine, the next stream gets
	// them, bound all along: no bind.
	clk.now = clk.now.Add(time.Millisecond)
	c := setupCall(t, m, "c")
	if c.toExt != a.toExt || c.toInt != a.toInt {
		t.Fatalf("c got %s/%s, want a's warm pair %s/%s", c.toExt, c.toInt, a.toExt, a.toInt)
	}
	st = m.Stats()
	if st.Binds != 4 || st.Reused != 2 || st.PortsWarm != 0 || st.PortsInUse != 8 || st.Drained != 0 {
		t.Fatalf("after reuse: %+v", st)
	}
	// The reused sockets relay, RTCP too, from the same relay ports.
	relayWorks(t, c, 3)
	sr := []byte{0x80, 200, 0, 1, 1, 2, 3, 4}
	c.phoneC.send(relayAddr(t, c.ans, 0, true), sr)
	if got, from := c.pbxC.recv(); !bytes.Equal(got, sr) || from != relayAddr(t, c.offer, 0, true) {
		t.Fatalf("RTCP through a reused pair: %x from %s", got, from)
	}
	m.Release("b")
	m.Release("c")
	st = waitStat(t, m, "packets", func(s Stats) bool { return s.Packets == 7 })
	// The readers stopped by a deadline did not count it as an error.
	noDrops(t, st)
	if st.PortsWarm != 8 || st.PortsInUse != 0 {
		t.Fatalf("after the releases: %+v", st)
	}
}

func TestWarmFIFO(t *testing.T) {
	if !canDrain {
		t.Skip("no warm pairs on this platform")
	}
	// Warm pairs are reused oldest first, whatever their place in the
	// range.
	m, clk := newWarmManager(t, 8)
	var calls []*call
	for i := range 3 {
		calls = append(calls, setupCall(t, m, fmt.Sprint("c", i)))
	}
	for _, i := range []int{2, 0, 1} {
		m.Release(calls[i].key)
		clk.now = clk.now.Add(time.Second)
	}
	clk.now = clk.now.Add(warmQuarantine)
	for _, i := range []int{2, 0, 1} {
		c := setupCall(t, m, fmt.Sprint("again-", i))
		if c.toExt != calls[i].toExt || c.toInt != calls[i].toInt {
			t.Fatalf("got %s/%s, want the pair of c%d %s/%s", c.toExt, c.toInt, i, calls[i].toExt, calls[i].toInt)
		}
	}
	if st := m.Stats(); st.Binds != 6 || st.Reused != 6 {
		t.Fatalf("%+v", st)
	}
}

func TestWarmDrained(t *testing.T) {
	if !canDrain {
		t.Skip("no warm pairs on this platform")
	}
	// Late packets of a finished call, queued on its warm sockets, are
	// not relayed into the call that reuses them: they would latch the
	// new stream to the old peers, and reach the new ones.
	m, clk := newWarmManager(t, 4)
	old := setupCall(t, m, "old")
	relayWorks(t, old, 1)
	m.Release("old")
	const late = 5
	for i := range late {
		old.phone.send(old.toExt, rtpPacket(uint16(100+i), 172))
		old.pbx.send(old.toInt, rtpPacket(uint16(200+i), 172))
	}
	old.phoneC.send(relayAddr(t, old.ans, 0, true), []byte{0x80, 200, 0, 1, 0, 0, 0, 0})
	time.Sleep(50 * time.Millisecond) // delivered into the warm sockets' queues

	clk.now = clk.now.Add(warmQuarantine)
	c := setupCall(t, m, "new")
	if c.toExt != old.toExt || c.toInt != old.toInt {
		t.Fatalf("new call on %s/%s, want the warm pair %s/%s", c.toExt, c.toInt, old.toExt, old.toInt)
	}
	st := m.Stats()
	if st.Drained != 2*late+1 || st.Reused != 2 {
		t.Fatalf("drained %d datagrams, want %d: %+v", st.Drained, 2*late+1, st)
	}
	c.pbx.expectNothing(50 * time.Millisecond)
	c.phone.expectNothing(time.Millisecond)
	c.pbxC.expectNothing(time.Millisecond)
	// The new peers latch, not the old ones.
	relayWorks(t, c, 7)
	old.phone.send(c.toExt, rtpPacket(300, 172))
	c.pbx.expectNothing(50 * time.Millisecond)
	st = waitStat(t, m, "unlatched", func(s Stats) bool { return s.Dropped[DropUnlatched] == 1 })
	if st.Packets != 4 {
		t.Fatalf("%+v", st)
	}
}

func TestWarmBound(t *testing.T) {
	if !canDrain {
		t.Skip("no warm pairs on this platform")
	}
	m, _ := newWarmManager(t, 8)
	for _, p := range m.pools {
		p.maxWarm = 2
	}
	var calls []*call
	for i := range 4 {
		calls = append(calls, setupCall(t, m, fmt.Sprint("c", i)))
	}
	for _, c := range calls {
		m.Release(c.key)
	}
	st := m.Stats()
	if st.PortsWarm != 8 || st.PortsInUse != 0 {
		t.Fatalf("warm ports: %+v, want 2 pairs per pool", st)
	}
	// The first two released stay warm; beyond the bound, closed.
	for i, c := range calls {
		warm := i < 2
		for _, ap := range []netip.AddrPort{c.toExt, c.toInt} {
			for _, port := range []int{int(ap.Port()), int(ap.Port()) + 1} {
				if bindable(ap.Addr(), port) == warm {
					t.Errorf("call %d: port %s:%d warm %v, want %v", i, ap.Addr(), port, !warm, warm)
				}
			}
		}
	}
	noDrops(t, m.Stats())
}

func TestWarmCountsAsFree(t *testing.T) {
	if !canDrain {
		t.Skip("no warm pairs on this platform")
	}
	// One pair per side: a pair released a moment ago is reused at once
	// when nothing else is left (a fresh bind would take that port just
	// the same), drained.
	m, _ := newWarmManager(t, 1)
	a := setupCall(t, m, "a")
	if _, err := m.Rewrite("b", sbc.Internal, audioSDP("bob", 1, a.phone.addr())); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("%v, want ErrNoPorts", err)
	}
	m.Release("a")
	a.phone.send(a.toExt, rtpPacket(1, 172))
	time.Sleep(20 * time.Millisecond) // delivered
	b := setupCall(t, m, "b")
	if b.toExt != a.toExt {
		t.Fatalf("b on %s, want %s", b.toExt, a.toExt)
	}
	relayWorks(t, b, 2)
	st := m.Stats()
	if st.Binds != 2 || st.Reused != 2 || st.NoPorts != 1 || st.Drained != 1 {
		t.Fatalf("%+v", st)
	}
	// A failed Rewrite gives the pairs it took back, warm.
	m.Release("b")
	if _, err := m.Rewrite("c", sbc.Internal, avSDP("carol", a.phone.addr(), 4000)); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("%v, want ErrNoPorts", err)
	}
	if st := m.Stats(); st.PortsWarm != 4 || st.PortsInUse != 0 || st.Sessions != 0 || st.Reused != 4 {
		t.Fatalf("after a failed Rewrite: %+v", st)
	}
}

func TestWarmClose(t *testing.T) {
	m, _ := newWarmManager(t, 6)
	base := settledGoroutines() - relayGoroutines(m, 0)
	var calls []*call
	for i := range 4 {
		c := setupCall(t, m, fmt.Sprint("c", i))
		relayWorks(t, c, uint16(i))
		calls = append(calls, c)
	}
	m.Release("c0")
	m.Release("c1")
	checkGoroutines(t, "with two calls released", base+relayGoroutines(m, 2))
	m.Close()
	checkGoroutines(t, "after Close", base)
	st := m.Stats()
	if st.PortsWarm != 0 || st.PortsInUse != 0 {
		t.Fatalf("after Close: %+v", st)
	}
	if !rangeFree(m.cfg.PortMin, m.cfg.PortMax) {
		t.Fatal("a relay socket is still bound after Close")
	}
	noDrops(t, st)
}

func TestReleaseUnderTraffic(t *testing.T) {
	// Calls released while both sides send: the readers stop on the
	// deadline without counting an error, the next call gets the pair
	// drained, and nothing of the old call reaches it. One pair per
	// side, so every call reuses it.
	m, _ := newWarmManager(t, 1)
	for i := range 20 {
		c := setupCall(t, m, fmt.Sprint("c", i))
		relayWorks(t, c, 1)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, ep := range []struct {
			from *endpoint
			to   netip.AddrPort
		}{{c.phone, c.toExt}, {c.pbx, c.toInt}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := rtpPacket(2, 172)
				for {
					select {
					case <-stop:
						return
					default:
					}
					ep.from.conn.WriteToUDPAddrPort(p, ep.to)
					time.Sleep(10 * time.Microsecond) // a fast phone, not a flood
				}
			}()
		}
		time.Sleep(5 * time.Millisecond)
		m.Release(c.key)
		time.Sleep(2 * time.Millisecond)
		close(stop)
		wg.Wait()
		time.Sleep(20 * time.Millisecond) // the last datagrams delivered, before the next call drains
	}
	st := m.Stats()
	if st.Binds != 2 || st.Reused != 38 {
		t.Fatalf("%+v", st)
	}
	if st.Dropped[DropError] != 0 {
		t.Fatalf("release counted as an error: %+v", st)
	}
	if st.Drained == 0 {
		t.Errorf("nothing drained: %+v", st)
	}
}
