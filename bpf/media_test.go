package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

// A call relayed by 203.0.113.1 (outside) and 10.0.0.1 (inside): the
// phone at 198.51.100.7:4000 sends to the relay's outside RTP port 40000,
// the relay sends on from its inside port 40002 to the PBX at
// 10.0.0.9:20000, and the other way round. The same in IPv6.
var (
	mRelayOut  = netip.MustParseAddrPort("203.0.113.1:40000")
	mRelayIn   = netip.MustParseAddrPort("10.0.0.1:40002")
	mPhone     = netip.MustParseAddrPort("198.51.100.7:4000")
	mPBX       = netip.MustParseAddrPort("10.0.0.9:20000")
	mRelayOut6 = netip.MustParseAddrPort("[2001:db8:1::1]:40000")
	mRelayIn6  = netip.MustParseAddrPort("[fd00::1]:40002")
	mPhone6    = netip.MustParseAddrPort("[2001:db8:7::7]:4000")
	mPBX6      = netip.MustParseAddrPort("[fd00::9]:20000")
	// Loopback: both sides on 127.0.0.1, phone 127.0.0.5, PBX 127.0.0.6.
	mLoRelayOut = netip.MustParseAddrPort("127.0.0.1:40010")
	mLoRelayIn  = netip.MustParseAddrPort("127.0.0.1:40012")
	mLoPhone    = netip.MustParseAddrPort("127.0.0.5:30000")
	mLoPBX      = netip.MustParseAddrPort("127.0.0.6:30000")
)

// rtp is a frame carrying UDP from src to dst; build computes the IPv4
// header checksum and the UDP checksum from scratch unless told not to.
type rtp struct {
	src, dst netip.AddrPort
	payload  []byte // nil: a 172-byte G.711 RTP packet
	ttl      byte   // 0: 57
	ihl      int    // 0: 5 (IPv4)
	frag     uint16 // IPv4 flags and offset
	udpLen   int    // 0: computed
	totLen   int    // 0: computed (IPv4 total length or IPv6 payload length)
	noUDPSum bool   // UDP checksum 0
	badIPSum bool   // IPv4 header checksum off by one
	badUDP   bool   // UDP checksum off by one
	pad      int    // bytes after the IP packet (Ethernet padding)
	cut      int    // bytes cut from the end
}

func rtpPacket(pt byte, n int) []byte {
	p := make([]byte, n)
	if n >= 12 {
		p[0], p[1] = 0x80, pt
		binary.BigEndian.PutUint16(p[2:], 7)
		binary.BigEndian.PutUint32(p[4:], 1120)
		binary.BigEndian.PutUint32(p[8:], 0x51570001)
		for i := 12; i < n; i++ {
			p[i] = byte(i * 7)
		}
	}
	return p
}

// sum16 is the one's complement sum of b (odd length padded), folded.
func sum16(b []byte, s uint32) uint16 {
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
	return uint16(s)
}

func addrBytes(a netip.Addr) []byte {
	if a.Is4() {
		b := a.As4()
		return b[:]
	}
	b := a.As16()
	return b[:]
}

// udpSum computes a UDP checksum from scratch: pseudo-header and segment.
func udpSum(src, dst netip.Addr, seg []byte) uint16 {
	ph := append(append([]byte{}, addrBytes(src)...), addrBytes(dst)...)
	if src.Is4() {
		ph = append(ph, 0, 17, byte(len(seg)>>8), byte(len(seg)))
	} else {
		ph = binary.BigEndian.AppendUint32(ph, uint32(len(seg)))
		ph = append(ph, 0, 0, 0, 17)
	}
	s := ^sum16(seg, uint32(sum16(ph, 0)))
	if s == 0 {
		s = 0xffff
	}
	return s
}

func (f rtp) build() []byte {
	payload := f.payload
	if payload == nil {
		payload = rtpPacket(0, 172)
	}
	ttl := f.ttl
	if ttl == 0 {
		ttl = 57
	}
	seg := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(seg[0:], f.src.Port())
	binary.BigEndian.PutUint16(seg[2:], f.dst.Port())
	ulen := 8 + len(payload)
	if f.udpLen != 0 {
		ulen = f.udpLen
	}
	binary.BigEndian.PutUint16(seg[4:], uint16(ulen))
	seg = append(seg, payload...)
	if !f.noUDPSum {
		s := udpSum(f.src.Addr(), f.dst.Addr(), seg)
		if f.badUDP {
			s--
		}
		binary.BigEndian.PutUint16(seg[6:], s)
	}
	var l3 []byte
	eth := []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00}
	if f.src.Addr().Is4() {
		ihl := f.ihl
		if ihl == 0 {
			ihl = 5
		}
		h := make([]byte, ihl*4)
		h[0] = 0x40 | byte(ihl)
		h[1] = 0xb8 // DSCP EF, kept
		tot := len(h) + len(seg)
		if f.totLen != 0 {
			tot = f.totLen
		}
		binary.BigEndian.PutUint16(h[2:], uint16(tot))
		binary.BigEndian.PutUint16(h[4:], 0x1234)
		binary.BigEndian.PutUint16(h[6:], f.frag)
		h[8], h[9] = ttl, 17
		copy(h[12:], addrBytes(f.src.Addr()))
		copy(h[16:], addrBytes(f.dst.Addr()))
		for i := 20; i < len(h); i++ {
			h[i] = 1 // NOP options
		}
		s := ^sum16(h, 0)
		if f.badIPSum {
			s--
		}
		binary.BigEndian.PutUint16(h[10:], s)
		l3 = append(h, seg...)
	} else {
		eth[12], eth[13] = 0x86, 0xdd
		h := make([]byte, 40)
		h[0], h[1], h[2], h[3] = 0x6b, 0x80, 0x12, 0x34 // traffic class EF, a flow label, kept
		plen := len(seg)
		if f.totLen != 0 {
			plen = f.totLen
		}
		binary.BigEndian.PutUint16(h[4:], uint16(plen))
		h[6], h[7] = 17, ttl
		copy(h[8:], addrBytes(f.src.Addr()))
		copy(h[24:], addrBytes(f.dst.Addr()))
		l3 = append(h, seg...)
	}
	out := append(eth, l3...)
	out = append(out, make([]byte, f.pad)...)
	return out[:len(out)-f.cut]
}

// checkForwarded holds a forwarded frame to what the relay would have
// sent: the addresses and ports of the route, TTL 64, everything else as
// it came, and checksums that verify when computed from scratch.
func checkForwarded(t *testing.T, in, out []byte, from, to netip.AddrPort) {
	t.Helper()
	if len(out) != len(in) {
		t.Fatalf("length %d, want %d", len(out), len(in))
	}
	if !bytes.Equal(out[:14], in[:14]) {
		t.Errorf("link-layer header changed: % x", out[:14])
	}
	be := binary.BigEndian
	var l4 int
	var src, dst netip.Addr
	var seg []byte
	if from.Addr().Is4() {
		h := out[14:34]
		if h[8] != mediaRelayTTL {
			t.Errorf("TTL %d, want %d", h[8], mediaRelayTTL)
		}
		if sum16(h, 0) != 0xffff {
			t.Errorf("IPv4 header checksum %04x does not verify", be.Uint16(h[10:]))
		}
		for _, i := range []int{0, 1, 2, 3, 4, 5, 6, 7, 9} {
			if h[i] != in[14+i] {
				t.Errorf("IPv4 header byte %d changed: %02x, was %02x", i, h[i], in[14+i])
			}
		}
		src, dst = netip.AddrFrom4([4]byte(h[12:16])), netip.AddrFrom4([4]byte(h[16:20]))
		l4 = 34
		seg = out[l4 : 14+int(be.Uint16(h[2:]))]
	} else {
		h := out[14:54]
		if h[7] != mediaRelayTTL {
			t.Errorf("hop limit %d, want %d", h[7], mediaRelayTTL)
		}
		if !bytes.Equal(h[:7], in[14:21]) {
			t.Errorf("IPv6 header changed beyond addresses and hop limit: % x", h[:7])
		}
		src, dst = netip.AddrFrom16([16]byte(h[8:24])), netip.AddrFrom16([16]byte(h[24:40]))
		l4 = 54
		seg = out[l4 : 54+int(be.Uint16(h[4:]))]
	}
	if src != from.Addr() || dst != to.Addr() {
		t.Errorf("addresses %s -> %s, want %s -> %s", src, dst, from.Addr(), to.Addr())
	}
	if sp, dp := be.Uint16(out[l4:]), be.Uint16(out[l4+2:]); sp != from.Port() || dp != to.Port() {
		t.Errorf("ports %d -> %d, want %d -> %d", sp, dp, from.Port(), to.Port())
	}
	if !bytes.Equal(out[l4+4:l4+6], in[l4+4:l4+6]) || !bytes.Equal(out[l4+8:], in[l4+8:]) {
		t.Error("UDP length or payload changed")
	}
	got := be.Uint16(out[l4+6:])
	if in[l4+6] == 0 && in[l4+7] == 0 && from.Addr().Is4() {
		if got != 0 {
			t.Errorf("UDP checksum %04x, want 0 (none, as it came)", got)
		}
		return
	}
	c := slices16(seg)
	binary.BigEndian.PutUint16(c[6:], 0)
	if want := udpSum(src, dst, c); got != want {
		t.Errorf("UDP checksum %04x, want %04x", got, want)
	}
}

func slices16(b []byte) []byte { return append([]byte(nil), b...) }

// mediaCase is one frame through the fast path, with the routes in place.
type mediaCase struct {
	name    string
	routes  func(put func(local netip.AddrPort, r MediaRoute, e MediaEgress))
	frame   rtp
	ingress uint32
	want    MediaReason
	// from and to are the relay's socket and the peer the forwarded
	// frame must name.
	from, to netip.AddrPort
}

var (
	egressOut = MediaEgress{Ifindex: 7, Nexthop: netip.MustParseAddr("203.0.113.254"), MTU: 1500}
	egressIn  = MediaEgress{Ifindex: 8, Nexthop: mPBX.Addr(), MTU: 1500}
	egress6   = MediaEgress{Ifindex: 8, Nexthop: mPBX6.Addr(), MTU: 1500}
	egressLo  = MediaEgress{Local: true}
)

// callRoutes installs the routes of a call latched on both sides.
func callRoutes(expires uint64) func(put func(netip.AddrPort, MediaRoute, MediaEgress)) {
	return func(put func(netip.AddrPort, MediaRoute, MediaEgress)) {
		put(mRelayOut, MediaRoute{Peer: mPhone, Src: mRelayIn, Dst: mPBX, Expires: expires}, egressIn)
		put(mRelayIn, MediaRoute{Peer: mPBX, Src: mRelayOut, Dst: mPhone, Expires: expires}, egressOut)
		put(mRelayOut6, MediaRoute{Peer: mPhone6, Src: mRelayIn6, Dst: mPBX6, Expires: expires}, egress6)
		put(mLoRelayOut, MediaRoute{Peer: mLoPhone, Src: mLoRelayIn, Dst: mLoPBX, Expires: expires}, egressLo)
		put(mLoRelayIn, MediaRoute{Peer: mLoPBX, Src: mLoRelayOut, Dst: mLoPhone, Expires: expires}, egressLo)
	}
}

func mediaCases() []mediaCase {
	latched := callRoutes(0)
	in := rtp{src: mPhone, dst: mRelayOut}
	in6 := rtp{src: mPhone6, dst: mRelayOut6}
	fwd := func(name string, f rtp, ingress uint32, from, to netip.AddrPort) mediaCase {
		return mediaCase{name: name, routes: latched, frame: f, ingress: ingress, want: MediaForward, from: from, to: to}
	}
	up := func(name string, f rtp, r MediaReason) mediaCase {
		return mediaCase{name: name, routes: latched, frame: f, ingress: 3, want: r}
	}
	with := func(f rtp, mod func(*rtp)) rtp { mod(&f); return f }
	ahead := MonoNow() + 3600e9
	return []mediaCase{
		fwd("outside to inside", in, 3, mRelayIn, mPBX),
		fwd("inside to outside", rtp{src: mPBX, dst: mRelayIn}, 4, mRelayOut, mPhone),
		fwd("ipv6", in6, 3, mRelayIn6, mPBX6),
		fwd("no UDP checksum over IPv4 stays none", with(in, func(f *rtp) { f.noUDPSum = true }), 3, mRelayIn, mPBX),
		fwd("marker bit and dynamic payload type", with(in, func(f *rtp) { f.payload = rtpPacket(0x80|111, 60) }), 3, mRelayIn, mPBX),
		fwd("payload type 127 with marker is RTP", with(in, func(f *rtp) { f.payload = rtpPacket(0xff, 60) }), 3, mRelayIn, mPBX),
		fwd("shortest RTP", with(in, func(f *rtp) { f.payload = rtpPacket(8, 12) }), 3, mRelayIn, mPBX),
		fwd("ethernet padding after the packet", with(in, func(f *rtp) { f.payload = rtpPacket(0, 12); f.pad = 6 }), 3, mRelayIn, mPBX),
		fwd("TTL 1 arrives, leaves with 64", with(in, func(f *rtp) { f.ttl = 1 }), 3, mRelayIn, mPBX),
		fwd("loopback: delivered in place", rtp{src: mLoPhone, dst: mLoRelayOut}, loopbackIfindex, mLoRelayIn, mLoPBX),
		fwd("loopback back", rtp{src: mLoPBX, dst: mLoRelayIn}, loopbackIfindex, mLoRelayOut, mLoPhone),
		{name: "lease running", routes: callRoutes(ahead), frame: in, ingress: 3, want: MediaForward, from: mRelayIn, to: mPBX},
		{name: "expired", routes: callRoutes(expired), frame: in, ingress: 3, want: MediaExpired},
		{name: "not latched: no route", routes: func(func(netip.AddrPort, MediaRoute, MediaEgress)) {}, frame: in, ingress: 3, want: MediaNone},
		up("wrong source address", with(in, func(f *rtp) { f.src = netip.MustParseAddrPort("198.51.100.8:4000") }), MediaSource),
		up("wrong source port", with(in, func(f *rtp) { f.src = netip.MustParseAddrPort("198.51.100.7:4002") }), MediaSource),
		up("ipv6 wrong source", with(in6, func(f *rtp) { f.src = netip.MustParseAddrPort("[2001:db8:7::8]:4000") }), MediaSource),
		up("RTCP sender report (200)", with(in, func(f *rtp) { f.payload = rtpPacket(200, 28) }), MediaRTCP),
		up("RTCP receiver report (201)", with(in, func(f *rtp) { f.payload = rtpPacket(201, 32) }), MediaRTCP),
		up("RTCP range low end (192)", with(in, func(f *rtp) { f.payload = rtpPacket(192, 16) }), MediaRTCP),
		up("RTCP range high end (223)", with(in, func(f *rtp) { f.payload = rtpPacket(223, 16) }), MediaRTCP),
		up("STUN", with(in, func(f *rtp) { p := rtpPacket(1, 20); p[0] = 0; f.payload = p }), MediaNotRTP),
		up("DTLS", with(in, func(f *rtp) { p := rtpPacket(0xfe, 40); p[0] = 22; f.payload = p }), MediaNotRTP),
		up("ZRTP (version 0)", with(in, func(f *rtp) { p := rtpPacket(0, 40); p[0] = 0x10; f.payload = p }), MediaNotRTP),
		up("shorter than an RTP header", with(in, func(f *rtp) { f.payload = rtpPacket(0, 11); f.payload[0] = 0x80 }), MediaNotRTP),
		up("empty datagram", with(in, func(f *rtp) { f.payload = []byte{} }), MediaNotRTP),
		up("IPv4 options", with(in, func(f *rtp) { f.ihl = 6 }), MediaShape),
		up("first fragment", with(in, func(f *rtp) { f.frag = 0x2000 }), MediaShape),
		up("bad IPv4 header checksum", with(in, func(f *rtp) { f.badIPSum = true }), MediaShape),
		up("UDP length short of the packet", with(in, func(f *rtp) { f.udpLen = 8 + 100 }), MediaShape),
		up("UDP length beyond the packet", with(in, func(f *rtp) { f.udpLen = 8 + 200 }), MediaShape),
		up("IPv4 total length beyond the frame", with(in, func(f *rtp) { f.totLen = 20 + 8 + 172 + 10 }), MediaShape),
		up("truncated frame", with(in, func(f *rtp) { f.cut = 10 }), MediaShape),
		up("ipv6 payload length beyond the frame", with(in6, func(f *rtp) { f.totLen = 8 + 172 + 4 }), MediaShape),
		up("ipv6 zero UDP checksum", with(in6, func(f *rtp) { f.noUDPSum = true }), MediaShape),
		up("local destination from another device", rtp{src: mLoPhone, dst: mLoRelayOut}, MediaLocal),
		up("too big for the egress device", with(in, func(f *rtp) { f.payload = rtpPacket(0, 1500) }), MediaMTU),
		{name: "non-first fragment: no UDP header", routes: latched, frame: with(in, func(f *rtp) { f.frag = 0x0010 }), ingress: 3, want: MediaNone},
		{name: "another port", routes: latched, frame: rtp{src: mPhone, dst: netip.MustParseAddrPort("203.0.113.1:40004")}, ingress: 3, want: MediaNone},
		{name: "outside the port range", routes: latched, frame: rtp{src: mPhone, dst: netip.MustParseAddrPort("203.0.113.1:5060")}, ingress: 3, want: MediaNone},
		{name: "another address, same port", routes: latched, frame: rtp{src: mPhone, dst: netip.MustParseAddrPort("203.0.113.2:40000")}, ingress: 3, want: MediaNone},
		{name: "RTCP port: no route", routes: latched, frame: rtp{src: netip.MustParseAddrPort("198.51.100.7:4001"), dst: netip.MustParseAddrPort("203.0.113.1:40001"), payload: rtpPacket(200, 28)}, ingress: 3, want: MediaNone},
		{name: "bad UDP checksum is carried as it is", routes: latched, frame: with(in, func(f *rtp) { f.badUDP = true }), ingress: 3, want: MediaForward, from: mRelayIn, to: mPBX},
	}
}

// Port range of the cases.
const mediaPortMin, mediaPortMax = 40000, 44999

func TestMediaModelCases(t *testing.T) {
	for _, tc := range mediaCases() {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMediaModel(mediaPortMin, mediaPortMax)
			tc.routes(func(local netip.AddrPort, r MediaRoute, e MediaEgress) {
				m.Egress = func(netip.Addr, netip.Addr) (MediaEgress, error) { return e, nil }
				if err := m.Put(local, r); err != nil {
					t.Fatal(err)
				}
			})
			in := tc.frame.build()
			r, out := m.Decide(in, tc.ingress, MonoNow())
			if r != tc.want {
				t.Fatalf("reason %s, want %s", r, tc.want)
			}
			c, _ := m.Counters()
			var total uint64
			for _, v := range c {
				total += v
			}
			if tc.want == MediaNone {
				if total != 0 || out != nil {
					t.Fatalf("counted %v or rewrote a frame that is none of its business", c)
				}
				return
			}
			if total != 1 || c[tc.want] != 1 {
				t.Fatalf("counters %v, want one %s", c, tc.want)
			}
			st, err := m.Stats(tc.frame.dst)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != MediaForward {
				if out != nil || st.Packets != 0 {
					t.Fatalf("passed up but rewritten or counted: %v", st)
				}
				return
			}
			if tc.frame.badUDP {
				// Carried with its checksum still off by one: the
				// receiver drops it, as the relay's socket would have.
				good := tc.frame
				good.badUDP = false
				_, want := NewMediaModelWith(t, tc).Decide(good.build(), tc.ingress, MonoNow())
				if s1, s2 := binary.BigEndian.Uint16(out[40:]), binary.BigEndian.Uint16(want[40:]); s1 != s2-1 {
					t.Fatalf("bad checksum became %04x, the good one %04x", s1, s2)
				}
				return
			}
			checkForwarded(t, in, out, tc.from, tc.to)
			ulen := binary.BigEndian.Uint16(in[map[bool]int{true: 38, false: 58}[tc.from.Addr().Is4()]:])
			if st.Packets != 1 || st.Bytes != uint64(ulen-8) || st.LastSeen == 0 {
				t.Fatalf("stats %+v, want 1 packet of %d bytes", st, ulen-8)
			}
		})
	}
}

// NewMediaModelWith is a model with tc's routes in place.
func NewMediaModelWith(t *testing.T, tc mediaCase) *MediaModel {
	m := NewMediaModel(mediaPortMin, mediaPortMax)
	tc.routes(func(local netip.AddrPort, r MediaRoute, e MediaEgress) {
		m.Egress = func(netip.Addr, netip.Addr) (MediaEgress, error) { return e, nil }
		if err := m.Put(local, r); err != nil {
			t.Fatal(err)
		}
	})
	return m
}

func TestMediaRouteChecks(t *testing.T) {
	m := NewMediaModel(mediaPortMin, mediaPortMax)
	ok := MediaRoute{Peer: mPhone, Src: mRelayIn, Dst: mPBX}
	if err := m.Put(mRelayOut, ok); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]MediaRoute{
		"two families":   {Peer: mPhone, Src: mRelayIn6, Dst: mPBX6},
		"zero port":      {Peer: netip.AddrPortFrom(mPhone.Addr(), 0), Src: mRelayIn, Dst: mPBX},
		"unspecified":    {Peer: mPhone, Src: netip.MustParseAddrPort("0.0.0.0:40002"), Dst: mPBX},
		"no destination": {Peer: mPhone, Src: mRelayIn},
	} {
		if err := m.Put(mRelayOut, r); !errors.Is(err, ErrMediaRoute) {
			t.Errorf("%s: %v, want ErrMediaRoute", name, err)
		}
	}
	// Mapped addresses are the same sockets.
	if err := m.Put(netip.MustParseAddrPort("[::ffff:203.0.113.1]:40000"), ok); err != nil {
		t.Fatal(err)
	}
	if m.Routes() != 1 {
		t.Fatalf("%d routes, want 1", m.Routes())
	}
	// Replacing keeps the counters; Delete returns them.
	if r, _ := m.Decide(rtp{src: mPhone, dst: mRelayOut}.build(), 3, MonoNow()); r != MediaForward {
		t.Fatal(r)
	}
	if err := m.Put(mRelayOut, ok); err != nil {
		t.Fatal(err)
	}
	st, err := m.Delete(mRelayOut)
	if err != nil || st.Packets != 1 {
		t.Fatalf("Delete: %+v %v", st, err)
	}
	if _, err := m.Stats(mRelayOut); !errors.Is(err, ErrMediaNoRoute) {
		t.Fatalf("Stats after Delete: %v", err)
	}
	if _, err := m.Delete(mRelayOut); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
}

func TestCsumReplaceMatchesRecompute(t *testing.T) {
	// Incremental updates of a valid checksum equal a recomputation,
	// whatever the values (RFC 1624's corner cases included).
	for i := range 2000 {
		seg := rtpPacket(byte(i), 20+i%50)
		src := netip.AddrFrom4([4]byte{byte(i), byte(i >> 8), 0xff, 1})
		dst := netip.AddrFrom4([4]byte{10, byte(i * 3), 0, byte(i)})
		nsrc := netip.AddrFrom4([4]byte{0xff, 0xff, byte(i), byte(i * 5)})
		ndst := netip.AddrFrom4([4]byte{0, 0, byte(i >> 3), 0})
		u := append(make([]byte, 8), seg...)
		binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
		binary.BigEndian.PutUint16(u[6:], udpSum(src, dst, u))
		from := append(addrBytes(src), addrBytes(dst)...)
		to := append(addrBytes(nsrc), addrBytes(ndst)...)
		csumReplace(u[6:8], from, to, true)
		got := binary.BigEndian.Uint16(u[6:])
		binary.BigEndian.PutUint16(u[6:], 0)
		if want := udpSum(nsrc, ndst, u); got != want {
			t.Fatalf("case %d: incremental %04x, recomputed %04x", i, got, want)
		}
	}
}
