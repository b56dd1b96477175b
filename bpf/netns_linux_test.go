//go:build linux

package bpf

// End-to-end test of the prefilter on a veth pair; see TestXDPVeth.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sipwall/sipwall/bpf/netlab"
)

const (
	// vethQuiet is how long the receiver waits for one more datagram
	// before it decides that everything sent has arrived or was dropped;
	// vethMaxWait bounds a whole drain.
	vethQuiet   = 300 * time.Millisecond
	vethMaxWait = 3 * time.Second
)

// vethLab is a network namespace joined to the host by a veth pair (see
// package netlab), with sockets on both ends.
type vethLab struct {
	*netlab.Lab

	sipPort, otherPort uint16
	// Receivers on the host end: the SIP port (IPv4 and IPv6) and another
	// port (IPv4).
	sip4, sip6, other4 *net.UDPConn
	// Senders inside the namespace, bound to NSV4 and NSV6.
	send4, send6 *net.UDPConn
}

// newVethLab creates the lab and the sockets; everything is removed at
// cleanup. It skips without root or without the ip command.
func newVethLab(t *testing.T) *vethLab {
	t.Helper()
	l := &vethLab{Lab: netlab.New(t)}
	l.listen(t)
	l.warmUp(t)
	return l
}

// listen opens the host receivers on a free port (the same for IPv4 and
// IPv6) and the senders inside the namespace.
func (l *vethLab) listen(t *testing.T) {
	t.Helper()
	for range 20 {
		c4, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(l.HostV4, 0)))
		if err != nil {
			t.Fatalf("listen on %s: %v", l.HostV4, err)
		}
		port := uint16(c4.LocalAddr().(*net.UDPAddr).Port)
		c6, err := net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(l.HostV6, port)))
		if err != nil {
			c4.Close()
			continue
		}
		l.sip4, l.sip6, l.sipPort = c4, c6, port
		break
	}
	if l.sip4 == nil {
		t.Fatalf("no port free on both %s and %s", l.HostV4, l.HostV6)
	}
	t.Cleanup(func() { l.sip4.Close(); l.sip6.Close() })
	var err error
	l.other4, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(l.HostV4, 0)))
	if err != nil {
		t.Fatalf("listen on %s: %v", l.HostV4, err)
	}
	t.Cleanup(func() { l.other4.Close() })
	l.otherPort = uint16(l.other4.LocalAddr().(*net.UDPAddr).Port)

	err = l.Do(func() error {
		var err error
		if l.send4, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(l.NSV4, 0))); err != nil {
			return err
		}
		l.send6, err = net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(l.NSV6, 0)))
		return err
	})
	if l.send4 != nil {
		t.Cleanup(func() { l.send4.Close() })
	}
	if l.send6 != nil {
		t.Cleanup(func() { l.send6.Close() })
	}
	if err != nil {
		t.Fatalf("senders in namespace %s: %v", l.NS, err)
	}
}

// warmUp waits until a datagram from the namespace reaches the host on both
// address families (the links may take a moment to come up).
func (l *vethLab) warmUp(t *testing.T) {
	t.Helper()
	for _, c := range []struct {
		send *net.UDPConn
		dst  netip.Addr
		from netip.Addr
		recv *net.UDPConn
	}{{l.send4, l.HostV4, l.NSV4, l.sip4}, {l.send6, l.HostV6, l.NSV6, l.sip6}} {
		deadline := time.Now().Add(5 * time.Second)
		buf := make([]byte, 2048)
		for {
			if _, err := c.send.WriteToUDPAddrPort([]byte("warm-up"), netip.AddrPortFrom(c.dst, l.sipPort)); err != nil {
				t.Fatalf("warm-up send to %s: %v", c.dst, err)
			}
			c.recv.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			_, from, err := c.recv.ReadFromUDPAddrPort(buf)
			if err == nil && from.Addr().Unmap() == c.from {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no datagram from %s reached %s over the veth pair: %v", c.from, c.dst, err)
			}
		}
		// Swallow the other warm-up datagrams in flight.
		vethDrain(t, c.recv, c.from)
	}
}

// vethDrain counts the datagrams from src waiting on c, reading until none has
// come for vethQuiet (at most vethMaxWait in all).
func vethDrain(t *testing.T, c *net.UDPConn, src netip.Addr) int {
	t.Helper()
	n := 0
	buf := make([]byte, 2048)
	end := time.Now().Add(vethMaxWait)
	for time.Now().Before(end) {
		d := time.Now().Add(vethQuiet)
		if d.After(end) {
			d = end
		}
		c.SetReadDeadline(d)
		_, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return n
			}
			t.Fatalf("receive on %s: %v", c.LocalAddr(), err)
		}
		if from.Addr().Unmap() == src {
			n++
		}
	}
	return n
}

// send sends count datagrams with payload from the namespace to port on the
// host end, IPv4 or IPv6, as fast as it can.
func (l *vethLab) send(t *testing.T, v6 bool, port uint16, payload []byte, count int) {
	t.Helper()
	c, dst := l.send4, l.HostV4
	if v6 {
		c, dst = l.send6, l.HostV6
	}
	to := netip.AddrPortFrom(dst, port)
	for i := range count {
		if _, err := c.WriteToUDPAddrPort(payload, to); err != nil {
			t.Fatalf("send %d/%d to %s: %v", i+1, count, to, err)
		}
	}
}

// exchange sends count datagrams to the SIP port and returns how many the
// host socket received.
func (l *vethLab) exchange(t *testing.T, v6 bool, payload []byte, count int) int {
	t.Helper()
	l.send(t, v6, l.sipPort, payload, count)
	if v6 {
		return vethDrain(t, l.sip6, l.NSV6)
	}
	return vethDrain(t, l.sip4, l.NSV4)
}

func (l *vethLab) config() Config {
	return Config{UDPPorts: []uint16{l.sipPort}}
}

// open attaches a prefilter to the host end in native mode and closes it
// at the end of the test.
func (l *vethLab) open(t *testing.T, cfg Config, pinPath string) *Filter {
	t.Helper()
	f, err := Open(Options{Interfaces: []string{l.Host}, Generic: false, PinPath: pinPath, Config: cfg})
	if err != nil {
		t.Fatalf("attach the prefilter to %s in native mode: %v", l.Host, err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("close filter: %v", err)
		}
	})
	if a := f.Attachments(); len(a) != 1 || a[0] != (Attachment{Interface: l.Host, Mode: "native"}) {
		t.Fatalf("attachments %+v, want %s in native mode", a, l.Host)
	}
	return f
}

func readCounters(t *testing.T, f *Filter) Counters {
	t.Helper()
	c, err := f.Counters()
	if err != nil {
		t.Fatalf("read counters: %v", err)
	}
	return c
}

// vethDelta is the expected change of the counters over a step. Reasons not
// named must not move, except ReasonOther, which ARP, neighbour discovery
// and router solicitations on the link may move at any time: for it, the
// value is a minimum. Classes not named must not move.
type vethDelta struct {
	reasons         map[Reason]uint64
	passed, dropped map[Class]uint64
}

// vethStep runs do, then checks the counters moved as w says.
func vethStep(t *testing.T, f *Filter, what string, w vethDelta, do func()) {
	t.Helper()
	before := readCounters(t, f)
	do()
	checkVethDelta(t, what, before, readCounters(t, f), w)
}

// checkVethDelta fails unless the counters moved from before to after as w
// says.
func checkVethDelta(t *testing.T, what string, before, after Counters, w vethDelta) {
	t.Helper()
	for r := range NumReasons {
		d := after.Reasons[r] - before.Reasons[r]
		if r == ReasonOther {
			if d < w.reasons[r] {
				t.Errorf("%s: %s counted %d times, want at least %d", what, r, d, w.reasons[r])
			}
			continue
		}
		if d != w.reasons[r] {
			t.Errorf("%s: %s counted %d times, want %d", what, r, d, w.reasons[r])
		}
	}
	for c := range NumClasses {
		if d := after.Passed[c] - before.Passed[c]; d != w.passed[c] {
			t.Errorf("%s: %d %s packets counted passed, want %d", what, d, c, w.passed[c])
		}
		if d := after.Dropped[c] - before.Dropped[c]; d != w.dropped[c] {
			t.Errorf("%s: %d %s packets counted dropped, want %d", what, d, c, w.dropped[c])
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// expectGot fails unless the receiver got exactly n.
func expectGot(t *testing.T, what string, got, n int) {
	t.Helper()
	if got != n {
		t.Fatalf("%s: host socket received %d datagrams, want %d", what, got, n)
	}
}

var (
	vethRequest   = []byte("OPTIONS sip:x@host SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nCall-ID: xdp-veth\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
	vethKeepalive = []byte("\r\n\r\n")
	vethJunk      = []byte("\x00\x01 this is no SIP")
)

// TestXDPVeth proves the prefilter end to end on a real interface: the
// program is attached in native mode to the host end of a veth pair whose
// other end lives in a fresh network namespace, real UDP datagrams are sent
// from the namespace to real sockets on the host end, and what the sockets
// receive is held against the program's counters. It covers the pass path,
// runtime bans and unbans (IPv4 host, IPv6 /64), the per-source rate limit,
// ports left untouched, the allow and deny lists, keepalives and junk, a
// configuration change on the running program, and bans kept in pinned maps
// across a close and re-open.
func TestXDPVeth(t *testing.T) {
	l := newVethLab(t)
	t.Logf("namespace %s, veth %s <-> %s, %s/%s <- %s/%s, SIP port %d",
		l.NS, l.Host, l.Peer, l.HostV4, l.HostV6, l.NSV4, l.NSV6, l.sipPort)

	t.Run("Pass", func(t *testing.T) {
		f := l.open(t, l.config(), "")
		vethStep(t, f, "OPTIONS within budget",
			vethDelta{reasons: map[Reason]uint64{ReasonPass: 6}, passed: map[Class]uint64{ClassRequest: 6}},
			func() {
				expectGot(t, "IPv4 OPTIONS", l.exchange(t, false, vethRequest, 3), 3)
				expectGot(t, "IPv6 OPTIONS", l.exchange(t, true, vethRequest, 3), 3)
			})
	})

	t.Run("BanUnban", func(t *testing.T) {
		f := l.open(t, l.config(), "")
		host := netip.PrefixFrom(l.NSV4, 32)
		if err := f.Ban(host, time.Now().Add(time.Hour)); err != nil {
			t.Fatalf("ban %s: %v", host, err)
		}
		vethStep(t, f, "IPv4 banned",
			vethDelta{reasons: map[Reason]uint64{ReasonBan: 5}},
			func() { expectGot(t, "from banned "+host.String(), l.exchange(t, false, vethRequest, 5), 0) })
		if err := f.Unban(host); err != nil {
			t.Fatalf("unban %s: %v", host, err)
		}
		vethStep(t, f, "IPv4 unbanned",
			vethDelta{reasons: map[Reason]uint64{ReasonPass: 5}, passed: map[Class]uint64{ClassRequest: 5}},
			func() { expectGot(t, "after unban of "+host.String(), l.exchange(t, false, vethRequest, 5), 5) })

		net64 := netip.PrefixFrom(l.NSV6, 64)
		if err := f.Ban(net64, time.Now().Add(time.Hour)); err != nil {
			t.Fatalf("ban %s: %v", net64, err)
		}
		vethStep(t, f, "IPv6 /64 banned, IPv4 not",
			vethDelta{reasons: map[Reason]uint64{ReasonBan: 5, ReasonPass: 2}, passed: map[Class]uint64{ClassRequest: 2}},
			func() {
				expectGot(t, "from banned "+net64.Masked().String(), l.exchange(t, true, vethRequest, 5), 0)
				expectGot(t, "IPv4 during the IPv6 ban", l.exchange(t, false, vethRequest, 2), 2)
			})
		if err := f.Unban(net64); err != nil {
			t.Fatalf("unban %s: %v", net64, err)
		}
		vethStep(t, f, "IPv6 unbanned",
			vethDelta{reasons: map[Reason]uint64{ReasonPass: 5}, passed: map[Class]uint64{ClassRequest: 5}},
			func() {
				expectGot(t, "after unban of "+net64.Masked().String(), l.exchange(t, true, vethRequest, 5), 5)
			})
	})

	t.Run("RateLimit", func(t *testing.T) {
		cfg := l.config()
		cfg.Source[ClassRequest] = Limit{Rate: 1, Burst: 5}
		f := l.open(t, cfg, "")
		for _, v6 := range []bool{false, true} {
			before := readCounters(t, f)
			got := l.exchange(t, v6, vethRequest, 50)
			after := readCounters(t, f)
			// Five in the burst, one more if a second passed while sending.
			if got < 5 || got > 6 {
				t.Fatalf("IPv6=%v: %d of 50 requests received, want 5 or 6 (burst 5)", v6, got)
			}
			checkVethDelta(t, fmt.Sprintf("50 requests (IPv6=%v)", v6), before, after, vethDelta{
				reasons: map[Reason]uint64{ReasonPass: uint64(got), ReasonRate: uint64(50 - got)},
				passed:  map[Class]uint64{ClassRequest: uint64(got)},
				dropped: map[Class]uint64{ClassRequest: uint64(50 - got)},
			})
		}
		vethStep(t, f, "other port from a limited source",
			vethDelta{reasons: map[Reason]uint64{ReasonOther: 10}},
			func() {
				l.send(t, false, l.otherPort, vethRequest, 10)
				expectGot(t, "to the other port", vethDrain(t, l.other4, l.NSV4), 10)
			})
	})

	t.Run("AllowList", func(t *testing.T) {
		cfg := l.config()
		cfg.Source[ClassRequest] = Limit{Rate: 1, Burst: 5}
		f := l.open(t, cfg, "")
		id := programID(t, f)
		if got := l.exchange(t, false, vethRequest, 50); got < 5 || got > 6 {
			t.Fatalf("before the allow-list: %d of 50 requests received, want 5 or 6", got)
		}
		cfg.Allow = []netip.Prefix{netip.PrefixFrom(l.NSV4, 32)}
		if err := f.Configure(cfg); err != nil {
			t.Fatalf("configure allow-list: %v", err)
		}
		vethStep(t, f, "allow-listed source",
			vethDelta{reasons: map[Reason]uint64{ReasonAllow: 50}},
			func() { expectGot(t, "from allow-listed "+l.NSV4.String(), l.exchange(t, false, vethRequest, 50), 50) })
		if programID(t, f) != id {
			t.Fatal("Configure reloaded the program")
		}
	})

	t.Run("DenyList", func(t *testing.T) {
		cfg := l.config()
		cfg.Deny = []netip.Prefix{l.Net4, l.Net6}
		f := l.open(t, cfg, "")
		vethStep(t, f, "denied networks",
			vethDelta{reasons: map[Reason]uint64{ReasonDeny: 10}},
			func() {
				expectGot(t, "from denied "+l.Net4.String(), l.exchange(t, false, vethRequest, 5), 0)
				expectGot(t, "from denied "+l.Net6.String(), l.exchange(t, true, vethRequest, 5), 0)
			})
	})

	t.Run("KeepaliveJunk", func(t *testing.T) {
		cfg := l.config()
		cfg.Source[ClassJunk] = Limit{Rate: 1, Burst: 1}
		f := l.open(t, cfg, "")
		vethStep(t, f, "CRLF keepalives",
			vethDelta{reasons: map[Reason]uint64{ReasonPass: 5}, passed: map[Class]uint64{ClassKeepalive: 5}},
			func() { expectGot(t, "keepalives", l.exchange(t, false, vethKeepalive, 5), 5) })
		before := readCounters(t, f)
		got := l.exchange(t, false, vethJunk, 20)
		if got < 1 || got > 2 {
			t.Fatalf("%d of 20 junk datagrams received, want 1 or 2 (burst 1)", got)
		}
		checkVethDelta(t, "20 junk datagrams", before, readCounters(t, f), vethDelta{
			reasons: map[Reason]uint64{ReasonPass: uint64(got), ReasonRate: uint64(20 - got)},
			passed:  map[Class]uint64{ClassJunk: uint64(got)},
			dropped: map[Class]uint64{ClassJunk: uint64(20 - got)},
		})
	})

	t.Run("PinnedBans", func(t *testing.T) {
		dir := t.TempDir()
		// Open mounts a bpf filesystem on dir; take it away before the
		// temporary directory is removed.
		t.Cleanup(func() {
			if err := Unpin(dir); err != nil {
				t.Errorf("unpin %s: %v", dir, err)
			}
			var st unix.Statfs_t
			if unix.Statfs(dir, &st) == nil && st.Type == unix.BPF_FS_MAGIC {
				if err := unix.Unmount(dir, 0); err != nil {
					t.Errorf("unmount bpf filesystem on %s: %v", dir, err)
				}
			}
		})
		host := netip.PrefixFrom(l.NSV4, 32)
		f := l.open(t, l.config(), dir)
		if err := f.Ban(host, time.Now().Add(time.Hour)); err != nil {
			t.Fatalf("ban %s: %v", host, err)
		}
		vethStep(t, f, "banned before close",
			vethDelta{reasons: map[Reason]uint64{ReasonBan: 3}},
			func() { expectGot(t, "from banned "+host.String(), l.exchange(t, false, vethRequest, 3), 0) })
		if err := f.Close(); err != nil {
			t.Fatalf("close pinned filter: %v", err)
		}
		expectGot(t, "with no program attached", l.exchange(t, false, vethRequest, 3), 3)

		f = l.open(t, l.config(), dir)
		bans, err := f.Bans()
		if err != nil {
			t.Fatalf("list bans after re-open: %v", err)
		}
		if exp, ok := bans[host]; !ok || exp <= MonoNow() {
			t.Fatalf("after re-open with pin path %s: bans %v, want %s until about an hour from now", dir, bans, host)
		}
		vethStep(t, f, "banned after re-open",
			vethDelta{reasons: map[Reason]uint64{ReasonBan: 3}},
			func() {
				expectGot(t, "from banned "+host.String()+" after re-open", l.exchange(t, false, vethRequest, 3), 0)
			})
		if err := f.Close(); err != nil {
			t.Fatalf("close pinned filter: %v", err)
		}
		if err := Unpin(dir); err != nil {
			t.Fatalf("unpin %s: %v", dir, err)
		}
		f = l.open(t, l.config(), dir)
		if bans, err := f.Bans(); err != nil || len(bans) != 0 {
			t.Fatalf("after Unpin and re-open: bans %v, %v; want none", bans, err)
		}
		vethStep(t, f, "unpinned state is gone",
			vethDelta{reasons: map[Reason]uint64{ReasonPass: 3}, passed: map[Class]uint64{ClassRequest: 3}},
			func() { expectGot(t, "after Unpin", l.exchange(t, false, vethRequest, 3), 3) })
	})
}

func programID(t *testing.T, f *Filter) uint32 {
	t.Helper()
	info, err := f.Program().Info()
	if err != nil {
		t.Fatalf("program info: %v", err)
	}
	id, ok := info.ID()
	if !ok {
		t.Fatal("program info has no ID")
	}
	return uint32(id)
}
