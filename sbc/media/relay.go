package media

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/media/srtp"
)

const (
	rtp  = 0
	rtcp = 1
)

// peerState is where packets for one remote endpoint go. It is immutable:
// a change swaps the pointer, so the relay goroutines read it with one
// atomic load and no lock.
type peerState struct {
	dst     netip.AddrPort // invalid: not known yet (or refused), drop
	latched bool           // dst is the source of a packet; others are dropped
}

// sdpPeer is what the last SDP from one side said about one stream.
// Guarded by Manager.mu.
type sdpPeer struct {
	seen   bool
	off    bool              // port 0, or a stream we do not relay
	raw    [2]netip.AddrPort // RTP and RTCP as written, before the address policy
	secure bool              // SRTP profile, a=crypto or a=fingerprint: RTCP is SRTCP
	mux    bool              // a=rtcp-mux
}

// stream is the relay of one m= line: four sockets, read by a poller
// worker (poll_linux.go) or a goroutine each.
type stream struct {
	m    *Manager
	key  string
	port [2]int      // RTP port per side; RTCP is port+1
	sock [2][2]*sock // [side][rtp|rtcp]
	// peer[side][kind] is the remote endpoint on side: packets read on
	// sock[side][kind] must come from it, packets for it leave through
	// sock[side][kind].
	peer    [2][2]atomic.Pointer[peerState]
	stopped atomic.Bool
	// halt tells the readers to exit on the next error: Release sets it,
	// then puts the sockets' deadlines in the past to wake them.
	halt atomic.Bool
	sdp  [2]sdpPeer // guarded by Manager.mu
	wg   sync.WaitGroup
	// cname is the call's CNAME in RTCP toward the outside (rtcp.go);
	// secure and mux come from either side's SDP: secure RTCP is left
	// alone, and under mux RTCP is told from RTP on the RTP sockets.
	cname  []byte
	secure atomic.Bool
	// muxed[side]: that side's endpoint and the SBC agreed on rtcp-mux
	// (both SDPs of the last exchange with it said so).
	muxed [2]atomic.Bool
	// sent[side]: the last SDP the SBC sent toward side had rtcp-mux
	// for this stream. Guarded by Manager.mu.
	sentMux [2]bool
	// anyMux: either side's SDP, or one of ours, had rtcp-mux: RTCP is
	// looked for on the RTP sockets.
	anyMux atomic.Bool
	// sec[side]: the encryption the SBC terminates with that side's
	// endpoint (secure.go); nil: none (pass), packets copied as they are.
	sec [2]atomic.Pointer[secSide]
	// fast is the stream's routes in the kernel fast path (fastpath.go).
	fast fastState
	// rd is what reads the sockets (poll_linux.go); set by start.
	rd readers
}

// Drop reasons, as indexes of sock.drops.
const (
	dropUnlatched = iota
	dropNoPeer
	dropTooLarge
	dropStopped
	dropRefused
	dropError
	dropRTCP
	dropNoKey  // SRTP keys not agreed yet (DTLS handshake under way)
	dropCrypto // SRTP authentication or replay check failed
	nDrops
)

// sock is one relay socket and the counters of its reader. Each counter
// has a single writer (the reader goroutine), so there is no contention
// between sockets; the padding rounds the struct to 128 bytes, a size
// class whose objects never share a cache line.
type sock struct {
	conn    *net.UDPConn
	side    int
	kind    int
	packets atomic.Uint64 // relayed
	bytes   atomic.Uint64
	checks  atomic.Uint64 // ICE checks answered (not relayed)
	drops   [nDrops]atomic.Uint64
	_       [24]byte
}

// sent counts a datagram written for one read on s: media relayed to the
// other side, or the answer to an ICE check, which leaves by s itself
// (relayOne) and is not media: it counts apart, not in the relayed
// packets and bytes.
func (s *sock) sent(toSide, n int) {
	if toSide == s.side {
		s.checks.Add(1)
		return
	}
	s.packets.Add(1)
	s.bytes.Add(uint64(n))
}

// newStream takes the four sockets of a stream from the pools (warm or
// freshly bound). The caller holds m.mu.
func (m *Manager) newStream(key string, cname []byte, now time.Time) (*stream, error) {
	st := &stream{m: m, key: key, cname: cname}
	for side := range 2 {
		r, c, port, err := m.pools[side].alloc(now)
		if err != nil {
			st.recycle(now)
			return nil, err
		}
		st.port[side] = port
		st.sock[side][rtp] = &sock{conn: r, side: side, kind: rtp}
		st.sock[side][rtcp] = &sock{conn: c, side: side, kind: rtcp}
		for kind := range 2 {
			st.peer[side][kind].Store(&peerState{})
		}
	}
	return st, nil
}

// startServe runs a reader goroutine per socket (where the sockets are
// not polled: poll_linux.go).
func (st *stream) startServe() {
	for side := range 2 {
		for kind := range 2 {
			st.wg.Add(1)
			go st.serve(st.sock[side][kind])
		}
	}
}

// past is a deadline that has passed: it wakes a blocked reader (or
// writer) at once.
var past = time.Unix(1, 0)

// stopServe makes the reader goroutines exit without closing the
// sockets; wg.Wait then waits for them.
func (st *stream) stopServe() {
	st.halt.Store(true)
	for side := range 2 {
		for kind := range 2 {
			if s := st.sock[side][kind]; s != nil {
				s.conn.SetDeadline(past)
			}
		}
	}
}

// recycle gives the stream's pairs back to the pools, to be kept warm or
// closed; the readers must have exited (or never started).
func (st *stream) recycle(now time.Time) {
	for side := range 2 {
		if st.port[side] != 0 {
			st.m.pools[side].put(st.sock[side][rtp].conn, st.sock[side][rtcp].conn, st.port[side], now)
			st.port[side] = 0
		}
	}
}

func (st *stream) closeSockets() {
	for side := range 2 {
		for kind := range 2 {
			if s := st.sock[side][kind]; s != nil {
				s.conn.Close()
			}
		}
	}
}

// freePorts returns the stream's pairs; the sockets must be closed.
func (st *stream) freePorts() {
	for side := range 2 {
		if st.port[side] != 0 {
			st.m.pools[side].free(st.port[side])
			st.port[side] = 0
		}
	}
}

// serve is a reader of its own for one socket, where there is no poller
// (poll_other.go): read, relayOne, write. No allocation, no lock, no map.
func (st *stream) serve(in *sock) {
	defer st.wg.Done()
	buf := make([]byte, MaxDatagram+1) // one more byte tells a datagram too large
	var sc scratch
	for {
		n, src, err := in.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if st.halt.Load() || errors.Is(err, net.ErrClosed) {
				return // released: the deadline in the past, or closed
			}
			// Not expected on an unconnected UDP socket; do not spin.
			in.drops[dropError].Add(1)
			time.Sleep(time.Millisecond)
			continue
		}
		if n > MaxDatagram {
			in.drops[dropTooLarge].Add(1)
			continue
		}
		pkt, dst, side, kind, ok := st.relayOne(in, buf[:n], src, &sc)
		if !ok {
			continue
		}
		if _, err := st.sock[side][kind].conn.WriteToUDPAddrPort(pkt, dst); err != nil {
			if st.halt.Load() {
				return // released while the packet was on its way
			}
			in.drops[dropError].Add(1)
			continue
		}
		in.sent(side, len(pkt))
	}
}

// scratch is a reader's own state for relayOne: the buffer RTCP toward
// the outside is rewritten into (allocated when the reader first sees
// RTCP) and what the rewrite changed.
type scratch struct {
	hidden []byte
	seen   [nRTCPItems]uint32
	// plain and sealed hold a packet decrypted from, or encrypted for,
	// an endpoint the SBC terminates SRTP with.
	plain, sealed []byte
}

// relayOne is the hot path for one datagram read on in from src: check
// the source against the latch (latching the first), decrypt what an
// endpoint the SBC terminates SRTP with sent (secure.go), rewrite RTCP
// leaving toward the outside (rtcp.go), encrypt for an endpoint the SBC
// terminates SRTP with, and return what to send to which peer from which
// socket (side, kind). ICE checks and DTLS records are answered or taken
// here and never relayed. ok false: nothing to send (dropped and
// counted, or taken). No lock, no map, no allocation for RTP and RTCP.
func (st *stream) relayOne(in *sock, pkt []byte, src netip.AddrPort, sc *scratch) (out []byte, dst netip.AddrPort, toSide, toKind int, ok bool) {
	if st.stopped.Load() {
		in.drops[dropStopped].Add(1)
		return nil, dst, 0, 0, false
	}
	other := 1 - in.side
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	inSec := st.sec[in.side].Load()
	if inSec != nil && inSec.kind == secDTLS {
		if k := srtp.Classify(pkt); k != srtp.KindRTP {
			if reply := st.control(in, inSec, pkt, src, k); reply != nil {
				return reply, src, in.side, rtp, true
			}
			return nil, dst, 0, 0, false
		}
	}
	// What the packet is: RTCP on its own socket, or told from RTP on an
	// RTP socket where either side's SDP spoke of rtcp-mux (RFC 5761;
	// also when the mux was not agreed: RTCP a PBX sends there anyway is
	// still hidden before it leaves).
	kind := in.kind
	if kind == rtp && st.anyMux.Load() && isRTCP(pkt) {
		kind = rtcp
	}
	secureIn := inSec != nil && inSec.kind != secPlain
	from := &st.peer[in.side][in.kind]
	p := from.Load()
	if !p.latched {
		if !st.m.sourceAllowed(in.side, src) {
			in.drops[dropRefused].Add(1)
			return nil, dst, 0, 0, false
		}
	} else if p.dst != src {
		in.drops[dropUnlatched].Add(1)
		return nil, dst, 0, 0, false
	} else if in.kind == rtp && st.fastDue() {
		st.fastSync(true) // came up as the kernel route's lease runs out
	}
	plain := true // what pkt holds now can be read
	if secureIn {
		// SRTP the SBC terminates: authenticated before anything else,
		// latching included, so a stranger's datagram cannot take the
		// stream (the SBC holds the key).
		sess := inSec.keys.sess[in.kind].Load()
		if sess == nil {
			in.drops[dropNoKey].Add(1)
			return nil, dst, 0, 0, false
		}
		if sc.plain == nil {
			sc.plain = make([]byte, 0, 2*MaxDatagram)
		}
		dec, err := decrypt(sess, kind, sc.plain[:0], pkt)
		if err != nil && inSec.prev != nil && !inSec.keys.prevDone.Load() && errors.Is(err, srtp.ErrAuth) {
			// Still the key before the last offer (refused, perhaps).
			dec, err = decrypt(inSec.prev, kind, sc.plain[:0], pkt)
		} else if err == nil && inSec.prev != nil {
			inSec.keys.prevDone.Store(true) // the new key is in use
		}
		if err != nil {
			in.drops[dropCrypto].Add(1)
			return nil, dst, 0, 0, false
		}
		pkt = dec
	} else if inSec == nil && st.secure.Load() {
		plain = false // SRTP end to end: SRTCP crosses untouched
	}
	if !p.latched {
		if !from.CompareAndSwap(p, &peerState{dst: src, latched: true}) {
			// Re-armed by a new SDP meanwhile; the next packet latches.
			in.drops[dropUnlatched].Add(1)
			return nil, dst, 0, 0, false
		}
		st.m.log.Debug("media latched", "key", st.key, "side", sbc.Side(in.side), "kind", kindName(in.kind), "peer", src)
		if in.kind == rtp {
			st.fastSync(false) // both sides latched: into the kernel
		}
	}
	toKind = kind
	if st.muxed[other].Load() {
		toKind = rtp
	}
	dst = st.peer[other][toKind].Load().dst
	if !dst.IsValid() {
		in.drops[dropNoPeer].Add(1)
		return nil, dst, 0, 0, false
	}
	outSec := st.sec[other].Load()
	if other == int(sbc.External) && plain && kind == rtcp {
		if sc.hidden == nil {
			sc.hidden = make([]byte, 2*MaxDatagram)
		}
		k, ok := hideRTCP(sc.hidden, pkt, st.cname, &sc.seen)
		st.m.noteRTCP(&sc.seen)
		if ok && st.m.cfg.GuardRTCP != nil && !st.m.cfg.GuardRTCP(sc.hidden[:k]) {
			ok = false
		}
		if !ok {
			in.drops[dropRTCP].Add(1)
			return nil, dst, 0, 0, false
		}
		pkt = sc.hidden[:k]
	}
	if outSec != nil && outSec.kind != secPlain {
		sess := outSec.keys.sess[toKind].Load()
		if sess == nil {
			in.drops[dropNoKey].Add(1)
			return nil, dst, 0, 0, false
		}
		if sc.sealed == nil {
			sc.sealed = make([]byte, 0, 2*MaxDatagram)
		}
		var err error
		if kind == rtcp {
			pkt, err = sess.EncryptRTCP(sc.sealed[:0], pkt)
		} else {
			pkt, err = sess.EncryptRTP(sc.sealed[:0], pkt)
		}
		if err != nil {
			in.drops[dropCrypto].Add(1)
			return nil, dst, 0, 0, false
		}
	}
	return pkt, dst, other, toKind, true
}

func decrypt(sess *srtp.Session, kind int, dst, pkt []byte) ([]byte, error) {
	if kind == rtcp {
		return sess.DecryptRTCP(dst, pkt)
	}
	return sess.DecryptRTP(dst, pkt)
}

// noteRTCP adds what one RTCP packet had changed to the counters, tells
// Config.OnRTCP, and clears seen.
func (m *Manager) noteRTCP(seen *[nRTCPItems]uint32) {
	for i, v := range seen {
		if v == 0 {
			continue
		}
		m.rtcpSeen[i].Add(uint64(v))
		if m.cfg.OnRTCP != nil {
			m.cfg.OnRTCP(RTCPItems[i], int(v))
		}
		seen[i] = 0
	}
}

// setPeer records what a new SDP from side says about the stream and
// re-arms latching when the address changed. The caller holds m.mu.
func (st *stream) setPeer(side int, rtpAddr, rtcpAddr netip.AddrPort, secure, mux bool) {
	old := st.sdp[side]
	raw := [2]netip.AddrPort{rtpAddr, rtcpAddr}
	st.sdp[side] = sdpPeer{seen: true, raw: raw, secure: secure, mux: mux}
	for kind := range 2 {
		if old.seen && !old.off && old.raw[kind] == raw[kind] {
			continue // same address: keep the latch (hold, resume, session refresh)
		}
		dst := raw[kind]
		if !st.m.allowed(side, dst) {
			dst = netip.AddrPort{} // wait for latching
		}
		st.peer[side][kind].Store(&peerState{dst: dst})
	}
	st.updateStopped()
	st.fastSync(false)
}

// setOff records a port-0 (or not relayed) m= line from side.
func (st *stream) setOff(side int) {
	st.sdp[side] = sdpPeer{seen: true, off: true}
	st.updateStopped()
	st.fastSync(false)
}

func (st *stream) updateStopped() {
	st.stopped.Store(st.sdp[0].off || st.sdp[1].off)
	st.secure.Store(st.sdp[0].secure || st.sdp[1].secure)
	for side := range 2 {
		st.muxed[side].Store(st.sdp[side].mux && st.sentMux[side])
	}
	st.anyMux.Store(st.sdp[0].mux || st.sdp[1].mux || st.sentMux[0] || st.sentMux[1])
}

// counters adds the stream's socket and kernel counters to c.
func (st *stream) counters(c *counters) {
	p, b, on := st.fastCounters()
	c.packets += p
	c.bytes += b
	c.fastPackets += p
	if on {
		c.fastStreams++
	}
	for side := range 2 {
		for kind := range 2 {
			s := st.sock[side][kind]
			c.packets += s.packets.Load()
			c.bytes += s.bytes.Load()
			c.checks += s.checks.Load()
			for i := range c.drops {
				c.drops[i] += s.drops[i].Load()
			}
		}
	}
}

// activity is the number of packets the stream relayed so far, in
// userspace and in the kernel, and of ICE checks it answered: a browser
// that sends no media (on hold) still proves every few seconds that it
// is there (consent freshness, RFC 7675), and its call is not idle.
func (st *stream) activity() uint64 {
	n, _, _ := st.fastCounters()
	for side := range 2 {
		for kind := range 2 {
			n += st.sock[side][kind].packets.Load() + st.sock[side][kind].checks.Load()
		}
	}
	return n
}

// allowed tells whether ap may be a peer on side: a destination from SDP
// or a source to latch to. Refused: our own relay ports (a loop between
// two relay sockets would spin at line rate), loopback unless the side is
// bound to loopback, unspecified (hold), multicast, and the other address
// family.
func (m *Manager) allowed(side int, ap netip.AddrPort) bool {
	if !m.usable(side, ap) {
		return false
	}
	if p := int(ap.Port()); p >= m.cfg.PortMin && p <= m.cfg.PortMax {
		for _, o := range m.own {
			if ap.Addr() == o {
				return false
			}
		}
	}
	return true
}

// usable: an address the socket of side can send to, from a peer.
func (m *Manager) usable(side int, ap netip.AddrPort) bool {
	a := ap.Addr()
	if !ap.IsValid() || ap.Port() == 0 || a.IsUnspecified() || a.IsMulticast() {
		return false
	}
	if a.Is4() != m.v4[side] {
		return false // the socket of that side could not send there
	}
	if a.IsLoopback() && !m.loopback[side] {
		return false
	}
	return true
}

// sourceAllowed is allowed for the source of a datagram, which is where
// it really came from: refused only when it is a relay socket of ours
// (a loop), so that a peer on the relay's own host whose port falls in
// the relay's range (an ephemeral port: a browser beside sipwall) can
// latch. An address written in SDP gets the stricter allowed: a port of
// the range not bound now may be bound by the relay later.
func (m *Manager) sourceAllowed(side int, ap netip.AddrPort) bool {
	if !m.usable(side, ap) {
		return false
	}
	for _, pool := range m.pools {
		if !pool.held(int(ap.Port())) {
			continue
		}
		if pool.addr == ap.Addr() {
			return false
		}
		if pool.addr.IsUnspecified() && slices.Contains(m.own, ap.Addr()) {
			return false // a wildcard bind: any address of ours
		}
	}
	return true
}

func kindName(kind int) string {
	if kind == rtcp {
		return "rtcp"
	}
	return "rtp"
}
