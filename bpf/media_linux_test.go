//go:build linux

package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/sipwall/sipwall/bpf/netlab"
)

const (
	tcActOK       = 0
	tcActShot     = 2
	tcActRedirect = 7
)

// needMedia loads the media fast path without attaching it, or skips when
// the test cannot load BPF programs (it needs root, or CAP_BPF with
// CAP_NET_ADMIN).
func needMedia(t testing.TB) *MediaPath {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loading the media fast path needs root (CAP_BPF, CAP_NET_ADMIN); CI runs this as root")
	}
	p, err := OpenMedia(MediaOptions{PortMin: mediaPortMin, PortMax: mediaPortMax, MaxRoutes: 64})
	if err != nil {
		t.Fatalf("load media fast path: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// skbCtx is a __sk_buff for BPF_PROG_TEST_RUN with the ingress device set
// (ingress_ifindex is the tenth 32-bit field).
func skbCtx(ingress uint32) []byte {
	b := make([]byte, 44)
	binary.NativeEndian.PutUint32(b[36:], ingress)
	return b
}

// runMedia runs the program once on frame, arrived on ingress, and
// returns its action and the frame as it left the program.
func (p *MediaPath) runMedia(t testing.TB, frame []byte, ingress uint32) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(frame)+256)
	opts := &ebpf.RunOptions{Data: frame, DataOut: out, Context: skbCtx(ingress)}
	ret, err := p.Program().Run(opts)
	if err != nil {
		t.Fatalf("BPF_PROG_TEST_RUN: %v", err)
	}
	return ret, opts.DataOut
}

// clearMedia empties the route, stats and counter maps between cases.
func (p *MediaPath) clearMedia(t *testing.T) {
	t.Helper()
	for _, m := range []*ebpf.Map{p.objs.MediaRoutes, p.objs.MediaStats} {
		var keys []mediaSwMediaKey
		var k mediaSwMediaKey
		v := make([]byte, m.ValueSize())
		it := m.Iterate()
		for it.Next(&k, &v) {
			keys = append(keys, k)
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if err := m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				t.Fatal(err)
			}
		}
	}
	zero := make([]uint64, ebpf.MustPossibleCPU())
	for r := range NumMediaReasons {
		if err := p.objs.MediaCounters.Update(uint32(r), zero, ebpf.UpdateAny); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMediaProgramDecisions runs the kernel program (BPF_PROG_TEST_RUN)
// over every case of mediaCases and holds it both to the expected reason
// and to the Go model: the same reason counted, the same bytes out, the
// same stream counters.
func TestMediaProgramDecisions(t *testing.T) {
	p := needMedia(t)
	for _, tc := range mediaCases() {
		t.Run(tc.name, func(t *testing.T) {
			p.clearMedia(t)
			m := NewMediaModel(mediaPortMin, mediaPortMax)
			tc.routes(func(local netip.AddrPort, r MediaRoute, e MediaEgress) {
				if err := p.put(local, r, e); err != nil {
					t.Fatal(err)
				}
				m.Egress = func(netip.Addr, netip.Addr) (MediaEgress, error) { return e, nil }
				if err := m.Put(local, r); err != nil {
					t.Fatal(err)
				}
			})
			in := tc.frame.build()
			ret, out := p.runMedia(t, in, tc.ingress)
			mr, mout := m.Decide(in, tc.ingress, MonoNow())
			if mr != tc.want {
				t.Fatalf("model: %s, want %s", mr, tc.want)
			}
			kc, err := p.Counters()
			if err != nil {
				t.Fatal(err)
			}
			mc, _ := m.Counters()
			if kc != mc {
				t.Fatalf("kernel counted %v, model %v", kc, mc)
			}
			wantRet := uint32(tcActOK)
			if tc.want == MediaForward && tc.ingress != loopbackIfindex {
				wantRet = tcActRedirect
			}
			if ret != wantRet {
				t.Fatalf("kernel returned %d, want %d", ret, wantRet)
			}
			if tc.want != MediaForward {
				if !bytes.Equal(out, in) {
					t.Fatalf("passed up but changed:\n got % x\nwant % x", out, in)
				}
				return
			}
			if !bytes.Equal(out, mout) {
				t.Fatalf("kernel and model rewrote differently:\nkernel % x\n model % x", out, mout)
			}
			if !tc.frame.badUDP {
				checkForwarded(t, in, out, tc.from, tc.to)
			}
			ks, err := p.Stats(tc.frame.dst)
			if err != nil {
				t.Fatal(err)
			}
			ms, _ := m.Stats(tc.frame.dst)
			if ks.Packets != ms.Packets || ks.Bytes != ms.Bytes || ks.LastSeen == 0 {
				t.Fatalf("kernel stats %+v, model %+v", ks, ms)
			}
		})
	}
}

var (
	fuzzMediaOnce  sync.Once
	fuzzMediaPath  *MediaPath
	fuzzMediaModel *MediaModel
	fuzzMediaErr   error
)

// FuzzMediaModel feeds arbitrary frames to the Go model and, when BPF can
// be loaded (root), to the kernel program too, with the routes of a
// latched call in place: both must reach the same reason, the same bytes
// and the same return code.
func FuzzMediaModel(f *testing.F) {
	for _, tc := range mediaCases() {
		f.Add(tc.frame.build(), tc.ingress == loopbackIfindex)
	}
	f.Fuzz(func(t *testing.T, data []byte, lo bool) {
		if len(data) > 1600 {
			return
		}
		fuzzMediaOnce.Do(func() {
			fuzzMediaModel = NewMediaModel(mediaPortMin, mediaPortMax)
			if os.Geteuid() == 0 {
				fuzzMediaPath, fuzzMediaErr = OpenMedia(MediaOptions{PortMin: mediaPortMin, PortMax: mediaPortMax, MaxRoutes: 64})
			}
			callRoutes(0)(func(local netip.AddrPort, r MediaRoute, e MediaEgress) {
				fuzzMediaModel.Egress = func(netip.Addr, netip.Addr) (MediaEgress, error) { return e, nil }
				if err := fuzzMediaModel.Put(local, r); err != nil {
					panic(err)
				}
				if fuzzMediaPath != nil {
					if err := fuzzMediaPath.put(local, r, e); err != nil {
						panic(err)
					}
				}
			})
		})
		if fuzzMediaErr != nil {
			t.Fatal(fuzzMediaErr)
		}
		ingress := uint32(3)
		if lo {
			ingress = loopbackIfindex
		}
		mr, mout := fuzzMediaModel.Decide(data, ingress, MonoNow())
		// The kernel refuses test frames shorter than an Ethernet header,
		// and IP frames shorter than their IP header after it.
		if len(data) < 14 || len(data) < 34 && data[12] == 8 && data[13] == 0 ||
			len(data) < 54 && data[12] == 0x86 && data[13] == 0xdd {
			if mr != MediaNone {
				t.Fatalf("model judged a %d-byte frame: %s", len(data), mr)
			}
			return
		}
		if fuzzMediaPath == nil {
			return
		}
		before, _ := fuzzMediaPath.Counters()
		ret, out := fuzzMediaPath.runMedia(t, data, ingress)
		after, _ := fuzzMediaPath.Counters()
		kr := MediaNone
		for r := range NumMediaReasons {
			if after[r] != before[r] {
				kr = r
			}
		}
		if kr != mr {
			t.Fatalf("frame %x: kernel %s, model %s", data, kr, mr)
		}
		if mr == MediaForward {
			if !bytes.Equal(out, mout) {
				t.Fatalf("frame %x: kernel % x, model % x", data, out, mout)
			}
			if want := uint32(tcActRedirect); ingress != loopbackIfindex && ret != want {
				t.Fatalf("frame %x: forwarded with return %d", data, ret)
			}
		} else if ret != tcActOK || !bytes.Equal(out, data) {
			t.Fatalf("frame %x: passed up with return %d, changed %v", data, ret, !bytes.Equal(out, data))
		}
	})
}

// BenchmarkMediaProgram measures the program per packet with
// BPF_PROG_TEST_RUN: RTP forwarded (IPv4, IPv6), RTP from another source
// (passed up) and a datagram to no relay port.
func BenchmarkMediaProgram(b *testing.B) {
	p := needMedia(b)
	callRoutes(0)(func(local netip.AddrPort, r MediaRoute, e MediaEgress) {
		if err := p.put(local, r, e); err != nil {
			b.Fatal(err)
		}
	})
	// The test run keeps the rewritten packet for the next round: a route
	// onto itself forwards every round, checksums and counters included.
	self := netip.MustParseAddrPort("203.0.113.1:40100")
	self6 := netip.MustParseAddrPort("[2001:db8:1::1]:40100")
	for local, peer := range map[netip.AddrPort]netip.AddrPort{self: mPhone, self6: mPhone6} {
		e := MediaEgress{Ifindex: 7, Nexthop: peer.Addr(), MTU: 1500}
		if err := p.put(local, MediaRoute{Peer: peer, Src: peer, Dst: local}, e); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name  string
		frame []byte
	}{
		{"forward", rtp{src: mPhone, dst: self}.build()},
		{"forward-ipv6", rtp{src: mPhone6, dst: self6}.build()},
		{"wrong-source", rtp{src: netip.MustParseAddrPort("198.51.100.8:4000"), dst: mRelayOut}.build()},
		{"other-port", rtp{src: mPhone, dst: netip.MustParseAddrPort("203.0.113.1:5060")}.build()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			_, d, err := p.Program().Benchmark(bc.frame, b.N, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(d.Nanoseconds()), "ns/packet")
		})
	}
}

// TestRouteEgress asks the kernel's routing table as Put does: loopback
// is local, a neighbour on a veth leaves through the veth with its MTU,
// a gateway is the next hop, and an address with no route is an error.
func TestRouteEgress(t *testing.T) {
	e, err := routeEgress(netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.6"))
	if err != nil || !e.Local {
		t.Fatalf("loopback: %+v %v", e, err)
	}
	lab := netlab.New(t)
	host, err := net.InterfaceByName(lab.Host)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ src, dst netip.Addr }{{lab.HostV4, lab.NSV4}, {lab.HostV6, lab.NSV6}} {
		e, err := routeEgress(c.src, c.dst)
		if err != nil {
			t.Fatalf("%s: %v", c.dst, err)
		}
		if e.Local || e.Ifindex != uint32(host.Index) || e.Nexthop != c.dst || e.MTU != host.MTU {
			t.Fatalf("%s: %+v, want device %d, next hop itself, MTU %d", c.dst, e, host.Index, host.MTU)
		}
	}
	// Inside the lab: a default route through the host end, and nothing
	// for IPv6 beyond the link.
	if out, err := exec.Command("ip", "-n", lab.NS, "route", "add", "default", "via", lab.HostV4.String()).CombinedOutput(); err != nil {
		t.Fatalf("ip route add: %v\n%s", err, out)
	}
	err = lab.Do(func() error {
		e, err := routeEgress(lab.NSV4, netip.MustParseAddr("192.0.2.1"))
		if err != nil {
			return err
		}
		if e.Nexthop != lab.HostV4 {
			return fmt.Errorf("through a gateway: %+v, want next hop %s", e, lab.HostV4)
		}
		if _, err := routeEgress(lab.NSV6, netip.MustParseAddr("2001:db8::1")); err == nil {
			return errors.New("no IPv6 route, yet an answer")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestMediaLoopbackInPlace runs the program on the loopback device of a
// namespace with real sockets: RTP from the phone to the relay's socket
// is rewritten in place and delivered to the PBX's socket, from the
// relay's other socket, which never sees it; other sources still reach
// the relay's socket. IPv4 and IPv6.
func TestMediaLoopbackInPlace(t *testing.T) {
	lab := netlab.New(t)
	var p *MediaPath
	if err := lab.Do(func() (err error) {
		p, err = OpenMedia(MediaOptions{Interfaces: []string{"lo"}, PortMin: 40000, PortMax: 40099})
		return err
	}); err != nil {
		t.Fatalf("media fast path on lo in %s: %v", lab.NS, err)
	}
	defer p.Close()
	for _, c := range []struct {
		name                          string
		relayOut, relayIn, phone, pbx netip.AddrPort
	}{
		{"ipv4", mLoRelayOut, mLoRelayIn, mLoPhone, mLoPBX},
		{"ipv6", netip.MustParseAddrPort("[::1]:40020"), netip.MustParseAddrPort("[::1]:40022"),
			netip.MustParseAddrPort("[::1]:30000"), netip.MustParseAddrPort("[::1]:30002")},
	} {
		t.Run(c.name, func(t *testing.T) {
			socks := map[netip.AddrPort]*net.UDPConn{}
			if err := lab.Do(func() error {
				for _, ap := range []netip.AddrPort{c.relayOut, c.relayIn, c.phone, c.pbx} {
					s, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
					if err != nil {
						return err
					}
					socks[ap] = s
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			defer func() {
				for _, s := range socks {
					s.Close()
				}
			}()
			for local, r := range map[netip.AddrPort]MediaRoute{
				c.relayOut: {Peer: c.phone, Src: c.relayIn, Dst: c.pbx},
				c.relayIn:  {Peer: c.pbx, Src: c.relayOut, Dst: c.phone},
			} {
				if err := p.put(local, r, MediaEgress{Local: true}); err != nil {
					t.Fatal(err)
				}
			}
			defer p.Delete(c.relayOut)
			defer p.Delete(c.relayIn)
			recv := func(s *net.UDPConn) ([]byte, netip.AddrPort, error) {
				buf := make([]byte, 2048)
				s.SetReadDeadline(time.Now().Add(time.Second))
				n, from, err := s.ReadFromUDPAddrPort(buf)
				return buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), err
			}
			for i, d := range []struct{ from, to, via, src netip.AddrPort }{
				{c.phone, c.pbx, c.relayOut, c.relayIn},
				{c.pbx, c.phone, c.relayIn, c.relayOut},
			} {
				pkt := rtpPacket(byte(i), 172)
				if _, err := socks[d.from].WriteToUDPAddrPort(pkt, d.via); err != nil {
					t.Fatal(err)
				}
				got, from, err := recv(socks[d.to])
				if err != nil || !bytes.Equal(got, pkt) || from != d.src {
					t.Fatalf("%s -> %s: %d bytes from %s (%v), want %d from %s", d.from, d.to, len(got), from, err, len(pkt), d.src)
				}
			}
			if st, _ := p.Stats(c.relayOut); st.Packets != 1 || st.Bytes != 172 {
				t.Fatalf("stats %+v, want 1 packet of 172 bytes", st)
			}
			// Another source is passed up: the relay's socket reads it.
			if _, err := socks[c.pbx].WriteToUDPAddrPort(rtpPacket(9, 40), c.relayOut); err != nil {
				t.Fatal(err)
			}
			if got, from, err := recv(socks[c.relayOut]); err != nil || from != c.pbx || len(got) != 40 {
				t.Fatalf("relay socket: %d bytes from %s (%v), want the PBX's 40", len(got), from, err)
			}
		})
	}
}
