package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
)

// The media fast path: latched RTP forwarded in the kernel by a TC ingress
// program (media.c, loaded by OpenMedia), and the same decision in Go
// (MediaModel) that the tests hold the program to.

// MediaReason is what the fast path did with a datagram sent to a relay
// RTP socket that has a route. Every reason but MediaForward passes the
// datagram to the stack, where the userspace relay reads it as before.
type MediaReason uint8

// The reasons, numbered as in media.c.
const (
	MediaForward MediaReason = iota // rewritten and sent on
	MediaSource                     // not from the latched peer
	MediaExpired                    // the route's lease ended
	MediaShape                      // IP options, first fragment, lengths, IPv4 header checksum, zero IPv6 UDP checksum
	MediaNotRTP                     // not RTP version 2 (STUN, DTLS, ZRTP), or shorter than an RTP header
	MediaRTCP                       // RTCP: second byte 192-223 (RFC 5761)
	MediaLocal                      // local destination, but arrived on another device than loopback
	MediaMTU                        // larger than the egress device takes
	MediaError                      // a kernel helper failed during the rewrite: dropped (never in the model)
	NumMediaReasons
	// MediaNone is a packet that is none of the fast path's business (not
	// UDP to a socket with a route); it is not counted.
	MediaNone MediaReason = 255
)

var mediaReasonNames = [NumMediaReasons]string{"forward", "source", "expired", "shape", "not-rtp", "rtcp", "local", "mtu", "error"}

func (r MediaReason) String() string {
	if r < NumMediaReasons {
		return mediaReasonNames[r]
	}
	if r == MediaNone {
		return "none"
	}
	return fmt.Sprintf("media-reason(%d)", uint8(r))
}

// MediaCounters counts decisions by reason.
type MediaCounters [NumMediaReasons]uint64

// MediaRoute is the forwarding of one relay RTP socket (the key, local):
// a datagram to it from Peer leaves from Src toward Dst. Peer and local
// are one side's addresses, Src and Dst the other side's; the two sides
// must be of one family (the fast path does not translate between IPv4
// and IPv6: such a stream stays in userspace).
type MediaRoute struct {
	Peer, Src, Dst netip.AddrPort
	// Expires ends the route (MonoNow's clock, nanoseconds); 0 = never.
	// Packets that reach an expired route go to userspace.
	Expires uint64
}

// MediaEgress is how a route's packets leave. OpenMedia's routes find it
// with a route lookup (as `ip route get DST from SRC`); the model is given
// it.
type MediaEgress struct {
	// Local: Dst is an address of this host. Such packets are delivered
	// in place, and only when they came through loopback.
	Local   bool
	Ifindex uint32     // egress device
	Nexthop netip.Addr // the gateway toward Dst, or Dst itself on link
	MTU     int        // largest IP packet the device sends
}

// MediaStats are a route's counters: datagrams forwarded, their UDP
// payload bytes, and when the last one was (MonoNow's clock).
type MediaStats struct {
	Packets, Bytes, LastSeen uint64
}

// Errors of the media fast path.
var (
	// ErrMediaRoute: a route that cannot be forwarded in the kernel
	// (invalid address or port, or two families).
	ErrMediaRoute = errors.New("media fast path: route not forwardable in the kernel")
	// ErrMediaNoRoute: no route for that socket.
	ErrMediaNoRoute = errors.New("media fast path: no such route")
)

// Kernel constants shared with media.c.
const (
	mediaRouteLocal  = 1
	mediaRelayTTL    = 64
	mediaRTPHeader   = 12
	loopbackIfindex  = 1
	mediaMinFrame    = 14
	mediaMaxIPHeader = 60
)

func checkMediaRoute(local netip.AddrPort, r MediaRoute) error {
	for _, ap := range []netip.AddrPort{local, r.Peer, r.Src, r.Dst} {
		if !ap.IsValid() || ap.Port() == 0 || ap.Addr().Unmap().IsUnspecified() {
			return fmt.Errorf("%w: %s", ErrMediaRoute, ap)
		}
	}
	v4 := local.Addr().Unmap().Is4()
	for _, ap := range []netip.AddrPort{r.Peer, r.Src, r.Dst} {
		if ap.Addr().Unmap().Is4() != v4 {
			return fmt.Errorf("%w: %s and %s are of two families", ErrMediaRoute, local, ap)
		}
	}
	return nil
}

func unmapAP(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// MediaModel is the fast path's decision in Go: the parsing, the checks,
// the rewrite and the counters of media.c over a whole Ethernet frame, as
// the program sees it. The routing step is given (Egress). Safe for
// concurrent use.
type MediaModel struct {
	// Egress tells how a route's packets leave; nil: a loopback
	// destination is local, anything else leaves through device 0 with
	// an MTU of 1500. Read by Put.
	Egress func(src, dst netip.Addr) (MediaEgress, error)

	mu       sync.Mutex
	min, max uint16
	routes   map[netip.AddrPort]modelRoute
	stats    map[netip.AddrPort]*MediaStats
	counters MediaCounters
}

type modelRoute struct {
	MediaRoute
	egress MediaEgress
}

// NewMediaModel returns a model that judges datagrams to ports from
// portMin to portMax.
func NewMediaModel(portMin, portMax uint16) *MediaModel {
	return &MediaModel{min: portMin, max: portMax, routes: map[netip.AddrPort]modelRoute{}, stats: map[netip.AddrPort]*MediaStats{}}
}

func defaultEgress(_, dst netip.Addr) (MediaEgress, error) {
	if dst.IsLoopback() {
		return MediaEgress{Local: true}, nil
	}
	return MediaEgress{Nexthop: dst, MTU: 1500}, nil
}

// Put installs or replaces the route of the socket local. A new route's
// counters start at zero; a replaced route keeps them.
func (m *MediaModel) Put(local netip.AddrPort, r MediaRoute) error {
	if err := checkMediaRoute(local, r); err != nil {
		return err
	}
	local, r.Peer, r.Src, r.Dst = unmapAP(local), unmapAP(r.Peer), unmapAP(r.Src), unmapAP(r.Dst)
	eg := m.Egress
	if eg == nil {
		eg = defaultEgress
	}
	e, err := eg(r.Src.Addr(), r.Dst.Addr())
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.routes[local] = modelRoute{MediaRoute: r, egress: e}
	if m.stats[local] == nil {
		m.stats[local] = &MediaStats{}
	}
	return nil
}

// Delete removes the route of local and returns its last counters;
// removing one that is not there is no error.
func (m *MediaModel) Delete(local netip.AddrPort) (MediaStats, error) {
	local = unmapAP(local)
	m.mu.Lock()
	defer m.mu.Unlock()
	var s MediaStats
	if p := m.stats[local]; p != nil {
		s = *p
	}
	delete(m.routes, local)
	delete(m.stats, local)
	return s, nil
}

// Stats returns the counters of local's route.
func (m *MediaModel) Stats(local netip.AddrPort) (MediaStats, error) {
	local = unmapAP(local)
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.stats[local]
	if s == nil {
		return MediaStats{}, ErrMediaNoRoute
	}
	return *s, nil
}

// Routes is the number of routes installed.
func (m *MediaModel) Routes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.routes)
}

// Counters returns the decisions so far.
func (m *MediaModel) Counters() (MediaCounters, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counters, nil
}

// Decide judges one frame that arrived on the device ingress at now
// (MonoNow's clock), as the program does, and returns the reason (counted
// unless MediaNone) and, when forwarded, the rewritten frame (a copy; the
// link-layer header is the kernel's business on the way out).
func (m *MediaModel) Decide(frame []byte, ingress uint32, now uint64) (MediaReason, []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, out := m.decide(frame, ingress, now)
	if r < NumMediaReasons {
		m.counters[r]++
	}
	return r, out
}

func (m *MediaModel) decide(f []byte, ingress uint32, now uint64) (MediaReason, []byte) {
	const l3 = mediaMinFrame
	if len(f) < l3 || m.max == 0 {
		return MediaNone, nil
	}
	be := binary.BigEndian
	var (
		key, src     netip.Addr
		l4, l3len    int
		v4, shapeBad bool
	)
	switch be.Uint16(f[12:]) {
	case 0x0800:
		if len(f) < l3+20 || f[l3]>>4 != 4 || f[l3+9] != 17 {
			return MediaNone, nil
		}
		frag := be.Uint16(f[l3+6:])
		if frag&0x1fff != 0 {
			return MediaNone, nil
		}
		hl := int(f[l3]&0xf) * 4
		if hl < 20 {
			return MediaNone, nil
		}
		l4, l3len, v4 = l3+hl, int(be.Uint16(f[l3+2:])), true
		key = netip.AddrFrom4([4]byte(f[l3+16 : l3+20]))
		src = netip.AddrFrom4([4]byte(f[l3+12 : l3+16]))
		shapeBad = hl != 20 || frag&0x2000 != 0 || !ipHeaderSumOK(f[l3:l3+20])
	case 0x86dd:
		if len(f) < l3+40 || f[l3]>>4 != 6 || f[l3+6] != 17 {
			return MediaNone, nil
		}
		l4, l3len = l3+40, 40+int(be.Uint16(f[l3+4:]))
		key = netip.AddrFrom16([16]byte(f[l3+24 : l3+40]))
		src = netip.AddrFrom16([16]byte(f[l3+8 : l3+24]))
	default:
		return MediaNone, nil
	}
	if l4 > l3+mediaMaxIPHeader || len(f) < l4+8 {
		return MediaNone, nil
	}
	dport := be.Uint16(f[l4+2:])
	if dport < m.min || dport > m.max {
		return MediaNone, nil
	}
	k := netip.AddrPortFrom(key, dport)
	r, ok := m.routes[k]
	if !ok {
		return MediaNone, nil
	}
	if r.Expires != 0 && r.Expires <= now {
		return MediaExpired, nil
	}
	if netip.AddrPortFrom(src, be.Uint16(f[l4:])) != r.Peer {
		return MediaSource, nil
	}
	ulen := int(be.Uint16(f[l4+4:]))
	if shapeBad || l3+l3len > len(f) || ulen != l3len-(l4-l3) {
		return MediaShape, nil
	}
	if !v4 && be.Uint16(f[l4+6:]) == 0 {
		return MediaShape, nil
	}
	p := l4 + 8
	if len(f) < p+2 || ulen < 8+mediaRTPHeader || f[p]&0xc0 != 0x80 {
		return MediaNotRTP, nil
	}
	if f[p+1] >= 192 && f[p+1] <= 223 {
		return MediaRTCP, nil
	}
	if r.egress.Local {
		if ingress != loopbackIfindex {
			return MediaLocal, nil
		}
	} else if l3len > r.egress.MTU {
		return MediaMTU, nil
	}

	out := slices.Clone(f)
	csum := out[l4+6 : l4+8]
	var ports [4]byte
	be.PutUint16(ports[0:], r.Src.Port())
	be.PutUint16(ports[2:], r.Dst.Port())
	if v4 {
		s4, d4 := r.Src.Addr().As4(), r.Dst.Addr().As4()
		addrs := slices.Concat(s4[:], d4[:])
		csumReplace(csum, out[l3+12:l3+20], addrs, true)
		ipsum := out[l3+10 : l3+12]
		csumReplace(ipsum, out[l3+12:l3+20], addrs, false)
		ttl := []byte{mediaRelayTTL, out[l3+9]}
		csumReplace(ipsum, out[l3+8:l3+10], ttl, false)
		out[l3+8] = mediaRelayTTL
		copy(out[l3+12:], addrs)
	} else {
		s16, d16 := r.Src.Addr().As16(), r.Dst.Addr().As16()
		addrs := slices.Concat(s16[:], d16[:])
		csumReplace(csum, out[l3+8:l3+40], addrs, false)
		out[l3+7] = mediaRelayTTL
		copy(out[l3+8:], addrs)
	}
	csumReplace(csum, out[l4:l4+4], ports[:], v4)
	copy(out[l4:], ports[:])

	st := m.stats[k]
	st.Packets++
	st.Bytes += uint64(ulen - 8)
	st.LastSeen = now
	return MediaForward, out
}

// ipHeaderSumOK checks an IPv4 header's checksum.
func ipHeaderSumOK(h []byte) bool {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	return foldSum(s) == 0xffff
}

func foldSum(s uint32) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// csumReplace updates the checksum at field for from (even length)
// becoming to, incrementally (RFC 1624, HC' = ~(~HC + ~m + m')), as the
// kernel's checksum helpers do for a checksum that is complete in the
// packet. With mangled (a UDP checksum over IPv4) a zero checksum means
// none and stays zero, and a result of zero is written 0xffff.
func csumReplace(field, from, to []byte, mangled bool) {
	old := binary.BigEndian.Uint16(field)
	if mangled && old == 0 {
		return
	}
	// 0xffff is zero to one's complement arithmetic; it keeps the sum
	// from being zero, as the kernel's 32-bit complement of the old
	// checksum does.
	s := uint32(^old) + 0xffff
	for i := 0; i+1 < len(from); i += 2 {
		s += uint32(^binary.BigEndian.Uint16(from[i:]))
		s += uint32(binary.BigEndian.Uint16(to[i:]))
		s = s&0xffff + s>>16
	}
	sum := ^foldSum(s)
	if mangled && sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(field, sum)
}
