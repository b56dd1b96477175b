//go:build linux

package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/sipwall/sipwall/bpf"
	"github.com/sipwall/sipwall/bpf/netlab"
	"github.com/sipwall/sipwall/sbc"
)

// needKernelLab skips a test that needs root and the ip command, saying
// why, or fails it when it must run (CI set, or SIPWALL_E2E_REQUIRED=1).
func needKernelLab(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root (BPF, TC, network namespaces)"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "needs the ip command (iproute2)"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" || os.Getenv("SIPWALL_E2E_REQUIRED") == "1" {
		t.Fatalf("media fast path lab %s, and CI (or SIPWALL_E2E_REQUIRED=1) requires it", why)
	}
	t.Skipf("media fast path lab %s; CI runs it as root", why)
}

// txChecksum turns a device's transmit checksum offload on or off (the
// legacy ETHTOOL_STXCSUM ioctl) from inside the lab's namespace. With it
// off a local sender's datagrams carry a full UDP checksum, as from a NIC.
func txChecksum(lab *netlab.Lab, dev string, on bool) error {
	return lab.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		v := struct{ cmd, data uint32 }{unix.ETHTOOL_STXCSUM, 0}
		if on {
			v.data = 1
		}
		var ifr struct {
			name [unix.IFNAMSIZ]byte
			data unsafe.Pointer
			_    [16]byte
		}
		copy(ifr.name[:], dev)
		ifr.data = unsafe.Pointer(&v)
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
		runtime.KeepAlive(&v)
		if e != 0 {
			return fmt.Errorf("ETHTOOL_STXCSUM %s: %w", dev, e)
		}
		return nil
	})
}

// capture reads every frame of a device inside a lab's namespace with a
// raw packet socket, until stop.
type capture struct {
	fd     int
	mu     sync.Mutex
	frames [][]byte
	done   chan struct{}
}

func startCapture(t *testing.T, lab *netlab.Lab, dev string) *capture {
	t.Helper()
	c := &capture{fd: -1, done: make(chan struct{})}
	err := lab.Do(func() error {
		ifc, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		proto := uint16(unix.ETH_P_ALL)<<8 | uint16(unix.ETH_P_ALL)>>8 // network order
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return err
		}
		c.fd = fd
		tv := unix.NsecToTimeval(int64(20 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		// Room for every frame of the test, however late the reader.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifc.Index})
	})
	if err != nil {
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
		t.Fatalf("capture on %s in %s: %v", dev, lab.NS, err)
	}
	stop := make(chan struct{})
	go func() {
		defer close(c.done)
		buf := make([]byte, 4096)
		for range 100000 {
			select {
			case <-stop:
				return
			default:
			}
			n, _, err := unix.Recvfrom(c.fd, buf, 0)
			if err != nil {
				continue // the 20 ms timeout: look at stop again
			}
			c.mu.Lock()
			c.frames = append(c.frames, append([]byte(nil), buf[:n]...))
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() { close(stop); <-c.done; unix.Close(c.fd) })
	return c
}

// udpFrames returns the captured UDP datagrams from src to dst, once
// there are at least n of them or waitFor has passed.
func (c *capture) udpFrames(src, dst netip.AddrPort, n int) [][]byte {
	deadline := time.Now().Add(waitFor)
	for {
		c.mu.Lock()
		var out [][]byte
		for _, f := range c.frames {
			if s, d, ok := udpEnds(f); ok && s == src && d == dst {
				out = append(out, f)
			}
		}
		c.mu.Unlock()
		if len(out) >= n || time.Now().After(deadline) {
			return out
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func udpEnds(f []byte) (src, dst netip.AddrPort, ok bool) {
	be := binary.BigEndian
	if len(f) < 14 {
		return src, dst, false
	}
	switch be.Uint16(f[12:]) {
	case 0x0800:
		if len(f) < 42 || f[23] != 17 || f[14]&0xf != 5 {
			return src, dst, false
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(f[26:30])), be.Uint16(f[34:])),
			netip.AddrPortFrom(netip.AddrFrom4([4]byte(f[30:34])), be.Uint16(f[36:])), true
	case 0x86dd:
		if len(f) < 62 || f[20] != 17 {
			return src, dst, false
		}
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(f[22:38])), be.Uint16(f[54:])),
			netip.AddrPortFrom(netip.AddrFrom16([16]byte(f[38:54])), be.Uint16(f[56:])), true
	}
	return src, dst, false
}

// onesSum is the folded one's complement sum of b, from s.
func onesSum(b []byte, s uint32) uint32 {
	for i := 0; i < len(b); i += 2 {
		w := uint32(b[i]) << 8
		if i+1 < len(b) {
			w |= uint32(b[i+1])
		}
		s += w
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return s
}

// checkSums verifies a captured frame's checksums from scratch: the IPv4
// header's, and the UDP checksum, either complete (it verifies over the
// pseudo-header and the whole datagram) or, with partial set, left for
// the device to complete (it holds the pseudo-header's sum: what a
// sender with checksum offload writes, for the addresses on the wire).
func checkSums(f []byte, partial bool) error {
	be := binary.BigEndian
	var ph, seg []byte
	if be.Uint16(f[12:]) == 0x0800 {
		h := f[14:34]
		if onesSum(h, 0) != 0xffff {
			return fmt.Errorf("IPv4 header checksum %04x does not verify", be.Uint16(h[10:]))
		}
		if h[8] != 64 {
			return fmt.Errorf("TTL %d, want 64", h[8])
		}
		seg = f[34 : 14+int(be.Uint16(h[2:]))]
		ph = append(append([]byte{}, h[12:20]...), 0, 17, byte(len(seg)>>8), byte(len(seg)))
	} else {
		h := f[14:54]
		if h[7] != 64 {
			return fmt.Errorf("hop limit %d, want 64", h[7])
		}
		seg = f[54 : 54+int(be.Uint16(h[4:]))]
		ph = append(append([]byte{}, h[8:40]...), 0, 0, byte(len(seg)>>8), byte(len(seg)), 0, 0, 0, 17)
	}
	field := be.Uint16(seg[6:])
	if partial {
		if want := uint16(onesSum(ph, 0)); field != want {
			return fmt.Errorf("partial UDP checksum %04x, want the pseudo-header's %04x", field, want)
		}
		return nil
	}
	if field == 0 || onesSum(seg, onesSum(ph, 0)) != 0xffff {
		return fmt.Errorf("UDP checksum %04x does not verify", field)
	}
	return nil
}

// labPeer is a UDP socket inside a lab namespace: a phone or a PBX.
type labPeer struct {
	t    *testing.T
	conn *net.UDPConn
}

func newLabPeer(t *testing.T, lab *netlab.Lab, a netip.Addr) *labPeer {
	t.Helper()
	var c *net.UDPConn
	err := lab.Do(func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
		return err
	})
	if err != nil {
		t.Fatalf("peer socket on %s in %s: %v", a, lab.NS, err)
	}
	t.Cleanup(func() { c.Close() })
	return &labPeer{t: t, conn: c}
}

func (p *labPeer) addr() netip.AddrPort {
	ap := p.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func (p *labPeer) send(to netip.AddrPort, b []byte) {
	p.t.Helper()
	if _, err := p.conn.WriteToUDPAddrPort(b, to); err != nil {
		p.t.Fatal(err)
	}
}

// expect reads the next datagram: it must be b, from from.
func (p *labPeer) expect(b []byte, from netip.AddrPort) {
	p.t.Helper()
	buf := make([]byte, 4096)
	p.conn.SetReadDeadline(time.Now().Add(waitFor))
	n, src, err := p.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		p.t.Fatalf("%s: %v", p.addr(), err)
	}
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	if !bytes.Equal(buf[:n], b) || src != from {
		p.t.Fatalf("%s: got %d bytes from %s, want %d from %s", p.addr(), n, src, len(b), from)
	}
}

func (p *labPeer) expectNothing(d time.Duration) {
	p.t.Helper()
	buf := make([]byte, 4096)
	p.conn.SetReadDeadline(time.Now().Add(d))
	if n, src, err := p.conn.ReadFromUDPAddrPort(buf); err == nil {
		p.t.Fatalf("%s: unexpected %d bytes from %s", p.addr(), n, src)
	} else if !errors.Is(err, os.ErrDeadlineExceeded) {
		p.t.Fatal(err)
	}
}

func labSDP(user string, version int, ap netip.AddrPort) []byte {
	fam := "IP4"
	if ap.Addr().Is6() {
		fam = "IP6"
	}
	return body(
		"v=0",
		fmt.Sprintf("o=%s 1 %d IN %s %s", user, version, fam, ap.Addr()),
		"s=call",
		fmt.Sprintf("c=IN %s %s", fam, ap.Addr()),
		"t=0 0",
		fmt.Sprintf("m=audio %d RTP/AVP 0 101", ap.Port()),
		"a=rtpmap:0 PCMU/8000",
		"a=rtpmap:101 telephone-event/8000",
	)
}

// waitFast waits until the kernel forwards the stream (or stops).
func waitFast(t *testing.T, m *Manager, streams int) {
	t.Helper()
	waitStat(t, m, fmt.Sprintf("%d streams in the kernel", streams), func(s Stats) bool { return s.FastPathStreams == streams })
}

// TestFastPathVeth carries a call's RTP through the kernel fast path on
// veth pairs, both ways, IPv4 and IPv6:
//
//	phone (namespace out) --veth-- relay (this namespace) --veth-- PBX (namespace in)
//
// The first packet each way latches in userspace; then the TC program
// forwards, and the relay's sockets see nothing more. Raw captures in the
// peers' namespaces show the addresses, ports, TTL and checksums on the
// wire. A re-INVITE with a new source re-latches, and the routes follow.
func TestFastPathVeth(t *testing.T) {
	needKernelLab(t)
	out, in := netlab.New(t), netlab.New(t)
	fp, err := bpf.OpenMedia(bpf.MediaOptions{Interfaces: []string{out.Host, in.Host}, PortMin: 24000, PortMax: 24199})
	if err != nil {
		t.Fatalf("media fast path: %v", err)
	}
	t.Cleanup(func() { fp.Close() })
	if got := fp.Interfaces(); len(got) != 2 {
		t.Fatalf("attached to %v", got)
	}
	for _, fam := range []struct {
		name      string
		ext, int  netip.Addr
		phone, pb netip.Addr
		ports     [2]int
	}{
		{"ipv4", out.HostV4, in.HostV4, out.NSV4, in.NSV4, [2]int{24000, 24099}},
		{"ipv6", out.HostV6, in.HostV6, out.NSV6, in.NSV6, [2]int{24100, 24199}},
	} {
		t.Run(fam.name, func(t *testing.T) {
			m, err := New(Config{External: fam.ext, Internal: fam.int, PortMin: fam.ports[0], PortMax: fam.ports[1], FastPath: fp})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			phone, pbx := newLabPeer(t, out, fam.phone), newLabPeer(t, in, fam.pb)
			offer, err := m.Rewrite("call", sbc.Internal, labSDP("phone", 1, phone.addr()))
			if err != nil {
				t.Fatal(err)
			}
			answer, err := m.Rewrite("call", sbc.External, labSDP("pbx", 1, pbx.addr()))
			if err != nil {
				t.Fatal(err)
			}
			toInt, toExt := relayAddr(t, offer, 0, false), relayAddr(t, answer, 0, false)
			capOut, capIn := startCapture(t, out, out.Peer), startCapture(t, in, in.Peer)
			before, _ := fp.Counters()

			// Latching, in userspace.
			phone.send(toExt, rtpPacket(1, 172))
			pbx.expect(rtpPacket(1, 172), toInt)
			pbx.send(toInt, rtpPacket(2, 172))
			phone.expect(rtpPacket(2, 172), toExt)
			waitFast(t, m, 1)
			userspace := waitStat(t, m, "2 packets latched", func(s Stats) bool { return s.Packets == 2 }).Packets

			// Full checksums from the senders (as from a NIC), then the
			// partial ones a local sender leaves to the device.
			const n = 40
			for _, partial := range []bool{false, true} {
				for _, lab := range []*netlab.Lab{out, in} {
					if err := txChecksum(lab, lab.Peer, partial); err != nil {
						t.Fatal(err)
					}
				}
				for i := range n {
					seq := uint16(100 + i)
					if partial {
						seq += 1000
					}
					phone.send(toExt, rtpPacket(seq, 172))
					pbx.expect(rtpPacket(seq, 172), toInt)
					pbx.send(toInt, rtpPacket(seq, 160))
					phone.expect(rtpPacket(seq, 160), toExt)
				}
			}
			s := m.Stats()
			if s.Packets-s.FastPathPackets != userspace || s.FastPathPackets != 4*n {
				t.Fatalf("stats %+v: want %d packets in the kernel and still %d in userspace", s, 4*n, userspace)
			}
			after, _ := fp.Counters()
			if d := after[bpf.MediaForward] - before[bpf.MediaForward]; d != 4*n {
				t.Fatalf("kernel forwarded %d, want %d", d, 4*n)
			}

			// On the wire: the relay's addresses and ports only, TTL
			// 64, checksums right.
			for _, c := range []struct {
				cap      *capture
				src, dst netip.AddrPort
			}{{capIn, toInt, pbx.addr()}, {capOut, toExt, phone.addr()}} {
				frames := c.cap.udpFrames(c.src, c.dst, 2*n+1)
				if len(frames) < 2*n+1 {
					t.Fatalf("captured %d datagrams %s -> %s, want %d", len(frames), c.src, c.dst, 2*n+1)
				}
				for i, f := range frames[1:] { // the first: the userspace relay's
					if err := checkSums(f, i >= n); err != nil {
						t.Fatalf("%s -> %s, datagram %d: %v", c.src, c.dst, i+1, err)
					}
				}
			}

			// The phone moves (a re-INVITE from a new port): the routes
			// go, the new source latches in userspace, the routes come
			// back from it; the old source is passed up and dropped.
			moved := newLabPeer(t, out, fam.phone)
			if _, err := m.Rewrite("call", sbc.Internal, labSDP("phone", 2, moved.addr())); err != nil {
				t.Fatal(err)
			}
			waitFast(t, m, 0)
			pbx.send(toInt, rtpPacket(3, 172))
			moved.expect(rtpPacket(3, 172), toExt)
			moved.send(toExt, rtpPacket(4, 172))
			pbx.expect(rtpPacket(4, 172), toInt)
			waitFast(t, m, 1)
			before, _ = fp.Counters()
			for i := range 10 {
				moved.send(toExt, rtpPacket(uint16(200+i), 172))
				pbx.expect(rtpPacket(uint16(200+i), 172), toInt)
				pbx.send(toInt, rtpPacket(uint16(300+i), 172))
				moved.expect(rtpPacket(uint16(300+i), 172), toExt)
			}
			phone.send(toExt, rtpPacket(5, 172))
			pbx.expectNothing(100 * time.Millisecond)
			after, _ = fp.Counters()
			if f, src := after[bpf.MediaForward]-before[bpf.MediaForward], after[bpf.MediaSource]-before[bpf.MediaSource]; f != 20 || src != 1 {
				t.Fatalf("after the move: kernel forwarded %d (want 20), passed %d from another source (want 1)", f, src)
			}
			waitStat(t, m, "old source dropped", func(s Stats) bool { return s.Dropped[DropUnlatched] == 1 })

			// RTCP on the RTP port (rtcp-mux) comes up to the relay.
			sr := []byte{0x80, 200, 0, 6, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24}
			before, _ = fp.Counters()
			moved.send(toExt, sr)
			pbx.expect(sr, toInt)
			after, _ = fp.Counters()
			if after[bpf.MediaRTCP]-before[bpf.MediaRTCP] != 1 {
				t.Fatalf("RTCP on the RTP port not passed up: %v", after)
			}

			// The call ends: no route, nothing forwarded.
			m.Release("call")
			if s := m.Stats(); s.FastPathStreams != 0 || s.FastPathPackets != 4*n+20 {
				t.Fatalf("after Release: %+v", s)
			}
			before, _ = fp.Counters()
			moved.send(toExt, rtpPacket(6, 172))
			pbx.expectNothing(100 * time.Millisecond)
			if after, _ := fp.Counters(); after != before {
				t.Fatalf("counted after Release: %v -> %v", before, after)
			}
		})
	}
}

// TestFastPathAttachFails: an interface that cannot take the program
// fails OpenMedia as a whole, and leaves no program behind.
func TestFastPathAttachFails(t *testing.T) {
	needKernelLab(t)
	lab := netlab.New(t)
	_, err := bpf.OpenMedia(bpf.MediaOptions{Interfaces: []string{lab.Host, "sw-no-such-if"}, PortMin: 24000, PortMax: 24099})
	if err == nil || !strings.Contains(err.Error(), "sw-no-such-if") {
		t.Fatalf("OpenMedia: %v, want an error naming the interface", err)
	}
	ifc, err := net.InterfaceByName(lab.Host)
	if err != nil {
		t.Fatal(err)
	}
	q, err := link.QueryPrograms(link.QueryOptions{Target: ifc.Index, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Programs) != 0 {
		t.Fatalf("%d programs left on %s", len(q.Programs), lab.Host)
	}
}
