// Package media is the media relay of sipwall: every call's RTP and RTCP
// flow through the SBC, so neither side learns the other's address. The
// B2BUA hands each SDP body that crosses from one leg to the other to
// Manager.Rewrite, which allocates relay sockets on both sides and writes
// our address and ports into the body. Relaying is symmetric RTP with
// latching; RTP is never looked into, RTCP leaving toward the outside is
// rewritten so that it names no one (rtcp.go). See README.md.
package media

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/media/sdp"
	"github.com/sipwall/sipwall/sbc/media/srtp"
)

// originUser is the o= user name we write: it says nothing about us.
const originUser = "-"

// Manager owns the relay sessions, one per call.
type Manager struct {
	cfg      Config
	log      *slog.Logger
	tick     time.Duration // inactivity check period; shortened by tests
	own      []netip.Addr  // our bind and advertised addresses, never a peer on a relay port
	loopback [2]bool       // side bound to loopback: loopback peers allowed
	v4       [2]bool       // side bound to IPv4

	mu       sync.Mutex
	pools    [2]*portPool // by side; the same pool twice when binds collide
	sessions map[string]*session
	closed   bool
	done     chan struct{} // closed by Close
	total    counters      // of released streams
	full     uint64        // Rewrites refused with ErrFull
	noPorts  uint64        // Rewrites refused with ErrNoPorts
	// rtcpSeen counts what RTCP rewriting changed, by item (relay
	// goroutines add to it; RTCP is a few packets a second per stream).
	rtcpSeen [nRTCPItems]atomic.Uint64
	// fastOK: Config.FastPath is set and usable with these binds;
	// fastErrors counts the routes it refused or did not remove.
	fastOK     bool
	fastErrors atomic.Uint64
	// cert is the DTLS-SRTP certificate (secure.go), made at the first
	// DTLS stream; dtlsFailed counts handshakes that did not complete.
	cert       *srtp.Certificate
	dtlsFailed atomic.Uint64
	// hints are what Leg said of calls without relay state yet.
	hints map[string]*[2]legHint
	// poll reads every stream's sockets (poll_linux.go); made at the
	// first stream, closed by Close.
	poll pollRef
}

// session is the relay state of one call. Guarded by Manager.mu.
type session struct {
	key     string
	cname   []byte     // CNAME of the call's RTCP toward the outside
	streams []*stream  // by m= line; nil: never relayed
	origin  [2]origin  // by the side the body goes toward
	legs    [2]legHint // by side: what the B2BUA said (Leg)
	// Inactivity: the relayed-packet count last sampled and when it last
	// changed (or the session was rewritten).
	lastCount uint64
	lastSeen  time.Time
	reported  bool
}

// origin is our o= line toward one side (RFC 3264 section 8).
type origin struct {
	id      string
	version uint64
	sent    bool
	last    [sha256.Size]byte // digest of the last body sent that way
}

// Rewrite takes an SDP body that arrived from the side opposite to toward
// for the call key and returns it rewritten for toward: our address and
// relay ports, our o= line. The sender's media addresses become the
// initial peers on its side; new streams get relay ports on both sides,
// known streams keep theirs. A stream with port 0 stays 0 and its relay
// stops; one we cannot relay (TCP transport, a port count above 1) gets
// relay ports in the body, but its relay never forwards.
// A body that does not parse returns an error wrapping sdp.ErrMalformed.
func (m *Manager) Rewrite(key string, toward sbc.Side, body []byte) ([]byte, error) {
	if toward != sbc.External && toward != sbc.Internal {
		return nil, fmt.Errorf("media: bad side %d", toward)
	}
	parsed, err := sdp.Parse(body)
	if err != nil {
		if !errors.Is(err, sdp.ErrMalformed) {
			err = fmt.Errorf("%w: %w", sdp.ErrMalformed, err)
		}
		return nil, fmt.Errorf("media: %w", err)
	}
	media := parsed.Media() // at most sdp.MaxMedia
	to, from := int(toward), 1-int(toward)

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	s := m.sessions[key]
	isNew := s == nil
	if isNew {
		if len(m.sessions) >= m.cfg.MaxSessions {
			m.full++
			return nil, ErrFull
		}
		s = &session{key: key, cname: newCNAME()}
		if h := m.hints[key]; h != nil {
			s.legs = *h
		}
		s.origin[0].id = newSessID()
		s.origin[1].id = newSessID()
	}

	// Allocate first, so a failure leaves the session as it was.
	usable := make([]bool, len(media))
	ports := make([]sdp.PortPair, len(media))
	fresh := make(map[int]*stream)
	now := m.cfg.Now()
	rollback := func() {
		for _, st := range fresh {
			st.closeSec()
			st.recycle(now) // never started: nothing to stop
		}
	}
	for i, md := range media {
		if md.Port == 0 {
			continue // stays 0
		}
		usable[i] = md.PortCount == 1 && relayable(md.Proto)
		var st *stream
		if i < len(s.streams) {
			st = s.streams[i]
		}
		if st == nil {
			if st, err = m.newStream(key, s.cname, now); err != nil {
				rollback()
				if errors.Is(err, ErrNoPorts) {
					m.noPorts++
				}
				return nil, fmt.Errorf("media: stream %d: %w", i, err)
			}
			fresh[i] = st
		}
		// RTCP 0: the rewriter writes RTP+1 (our RTCP socket), or the
		// RTP port itself under rtcp-mux.
		ports[i] = sdp.PortPair{RTP: st.port[to]}
	}

	// The streams by m= line, fresh ones included, for the encryption of
	// each side (secure.go): what the sender speaks, then what we write
	// toward the receiver.
	all := make([]*stream, len(media))
	for i := range media {
		if st := fresh[i]; st != nil {
			all[i] = st
		} else if i < len(s.streams) {
			all[i] = s.streams[i]
		}
	}
	if err := m.fromSide(&s.legs, all, from, parsed, media); err != nil {
		rollback()
		return nil, fmt.Errorf("media: %w", err)
	}
	edits, err := m.towardSide(&s.legs, all, to, media, ports)
	if err != nil {
		rollback()
		return nil, fmt.Errorf("media: %w", err)
	}

	o := &s.origin[to]
	version := o.version
	if !o.sent {
		version = 1
	}
	t := sdp.Target{Addr: m.advertise(to), Ports: ports, Origin: sdp.Origin{
		User: originUser, SessID: o.id, Version: strconv.FormatUint(version, 10), Addr: m.advertise(to),
	}, Drop: edits.Drop, SessionAdd: edits.SessionAdd, Sections: edits.Sections}
	out, err := parsed.Rewrite(t)
	if err == nil && o.sent && sha256.Sum256(out) != o.last {
		version++
		t.Origin.Version = strconv.FormatUint(version, 10)
		out, err = parsed.Rewrite(t)
	}
	if err != nil {
		rollback()
		if errors.Is(err, sdp.ErrTooLarge) {
			// Our lines made it too big: unacceptable as well.
			return nil, fmt.Errorf("media: rewrite sdp: %w: %w", sdp.ErrMalformed, err)
		}
		return nil, fmt.Errorf("media: rewrite sdp: %w", err)
	}

	// Commit.
	for i, st := range fresh {
		for len(s.streams) <= i {
			s.streams = append(s.streams, nil)
		}
		s.streams[i] = st
		st.start()
	}
	for i, md := range media {
		if i >= len(s.streams) || s.streams[i] == nil {
			continue
		}
		st := s.streams[i]
		if md.Port == 0 || !usable[i] {
			st.setOff(from)
			continue
		}
		st.sentMux[to] = i < len(edits.Sections) && edits.Sections[i].Mux > 0 || md.RTCPMux && (i >= len(edits.Sections) || edits.Sections[i].Mux == 0)
		rtpAddr, rtcpAddr := peerAddrs(md)
		st.setPeer(from, rtpAddr, rtcpAddr, secure(md), md.RTCPMux)
	}
	o.version, o.last, o.sent = version, sha256.Sum256(out), true
	s.lastSeen = now
	s.reported = false
	if isNew {
		delete(m.hints, key)
		m.sessions[key] = s
		m.log.Debug("media session", "key", key, "streams", len(fresh))
	}
	return out, nil
}

// peerAddrs are the RTP and RTCP addresses an m= line announces: RTCP
// from a=rtcp, else on the next port (RFC 3550). rtcp-mux needs nothing:
// muxed RTCP travels on the RTP sockets, and the RTCP peer stays right if
// the answer declines mux.
func peerAddrs(md sdp.Media) (rtpAddr, rtcpAddr netip.AddrPort) {
	rtpAddr = netip.AddrPortFrom(md.Addr.Unmap(), uint16(md.Port))
	a, p := md.RTCPAddr, md.RTCPPort
	if !a.IsValid() {
		a = md.Addr
	}
	if p == 0 {
		p = md.Port + 1
	}
	if p > 65535 {
		return rtpAddr, netip.AddrPort{}
	}
	return rtpAddr, netip.AddrPortFrom(a.Unmap(), uint16(p))
}

// relayable tells whether an m= line's transport runs over UDP, the only
// one the relay carries: RTP/AVP, RTP/SAVP(F), UDP/TLS/RTP/SAVP(F), udptl
// (T.38), UDP. Other streams (TCP: BFCP, MSRP, TCP/RTP) still get relay
// ports in the body, so the peer's address does not leak, but the relay
// stays stopped: the rewriter cannot set an active stream's port to 0.
func relayable(proto string) bool {
	p := strings.ToUpper(proto)
	return strings.HasPrefix(p, "RTP/") || p == "UDP" || strings.HasPrefix(p, "UDP/") || p == "UDPTL"
}

// secure tells an SRTP stream: its RTCP is SRTCP, encrypted and
// authenticated, and crosses untouched.
func secure(md sdp.Media) bool {
	return md.Crypto || md.Fingerprint || strings.Contains(strings.ToUpper(md.Proto), "SAVP")
}

func (m *Manager) advertise(side int) netip.Addr {
	if side == int(sbc.Internal) {
		return m.cfg.AdvertiseInternal
	}
	return m.cfg.AdvertiseExternal
}

// newSessID is a random o= session id: it must not count calls or tell
// one leg from the other.
func newSessID() string {
	return strconv.FormatUint(rand.Uint64()>>2+1, 10)
}

// Release stops the relay of the call key and gives its ports back: the
// relay goroutines have exited when it returns, and its port pairs are
// kept warm for reuse after a quarantine (or closed, beyond the warm
// bound). Idempotent.
func (m *Manager) Release(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.hints, key)
	s := m.sessions[key]
	if s == nil {
		return
	}
	delete(m.sessions, key)
	m.release(s.streams, false)
	m.log.Debug("media released", "key", key)
}

// release stops streams, all readers woken first so that they wind down
// together: by a deadline in the past, the pairs then going warm, or by
// closing the sockets (closing true: the Manager is closed). The caller
// holds m.mu.
func (m *Manager) release(streams []*stream, closing bool) {
	for _, st := range streams {
		if st == nil {
			continue
		}
		st.stop() // before any close: a polled descriptor must not be reused
		if closing {
			st.closeSockets()
		}
	}
	now := m.cfg.Now()
	for _, st := range streams {
		if st == nil {
			continue
		}
		st.wg.Wait()
		st.closeSec() // DTLS associations end with the call
		st.fastStop()
		st.counters(&m.total)
		if closing {
			st.freePorts()
		} else {
			st.recycle(now)
		}
	}
}

// Run reports sessions that relayed no packet for Config.Inactivity, once
// per idle period, until ctx ends or the Manager is closed. onInactive is
// called without locks held: it may call Release. A Rewrite counts as
// activity, so a call is not reported while it is being set up; the
// B2BUA should still ignore reports for calls not yet answered.
// With a fast path, Run also renews the leases of the kernel's routes:
// call it even without Inactivity.
func (m *Manager) Run(ctx context.Context, onInactive func(key string)) {
	if m.cfg.Inactivity <= 0 && m.cfg.FastPath == nil {
		select {
		case <-ctx.Done():
		case <-m.done:
		}
		return
	}
	t := time.NewTicker(m.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.done:
			return
		case <-t.C:
		}
		for _, key := range m.inactive(m.cfg.Now()) {
			onInactive(key)
		}
	}
}

// inactive samples every session's relayed-packet count and returns the
// keys idle for Config.Inactivity and not reported yet. It renews the
// leases of kernel routes on the way.
func (m *Manager) inactive(now time.Time) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keys []string
	for _, s := range m.sessions {
		for _, st := range s.streams {
			if st != nil {
				st.fastSync(true)
			}
		}
		if m.cfg.Inactivity <= 0 {
			continue
		}
		var n uint64
		for _, st := range s.streams {
			if st != nil {
				n += st.activity()
			}
		}
		if n != s.lastCount {
			s.lastCount, s.lastSeen, s.reported = n, now, false
			continue
		}
		if !s.reported && now.Sub(s.lastSeen) >= m.cfg.Inactivity {
			s.reported = true
			keys = append(keys, s.key)
		}
	}
	return keys
}

// Close releases every session and closes every socket, warm ones
// included; later Rewrites fail with ErrClosed and Run returns.
// Idempotent.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.closed = true
	var all []*stream
	for key, s := range m.sessions {
		all = append(all, s.streams...)
		delete(m.sessions, key)
	}
	m.release(all, true)
	m.closePoller()
	m.pools[0].closeWarm()
	m.pools[1].closeWarm() // the same pool again when shared: a no-op
	close(m.done)
}
