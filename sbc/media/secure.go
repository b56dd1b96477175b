package media

import (
	"bytes"
	"errors"
	"fmt"
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

// Encryption modes of one side (Config.Encryption, README "Encrypted
// media"): what the SBC speaks with the endpoints of that side.
const (
	// EncPass: SDP security lines cross unchanged and the relay copies
	// packets; the two endpoints agree (or not) between themselves. Both
	// sides pass, or neither.
	EncPass = "pass"
	// EncOff: plain RTP on this side.
	EncOff = "off"
	// EncSDES: SDES-SRTP (RFC 4568) on this side.
	EncSDES = "sdes"
	// EncDTLS: DTLS-SRTP (RFC 5763/5764) with ICE-lite and rtcp-mux on
	// this side, as WebRTC needs.
	EncDTLS = "dtls"
	// EncAuto: what the endpoint offers (DTLS-SRTP, SDES-SRTP or plain);
	// an offer of ours toward this side is plain.
	EncAuto = "auto"
)

// Encryption is the media encryption per side. The zero value is pass on
// both sides (the relay of old); sipwall's configuration defaults to
// auto outside and off inside.
type Encryption struct {
	Outside, Inside string
	// Require refuses media from outside that is not encrypted: an offer
	// or answer from outside without SDES or DTLS fails Rewrite with
	// ErrPlainRefused (the B2BUA answers 488).
	Require bool
	// Peers are the modes of trusted peers outside (by the name Leg is
	// given), instead of Outside. Require does not apply to them.
	Peers map[string]string
}

// legHint is what the B2BUA said of one side's endpoint (Leg).
type legHint struct {
	transport string // "udp", "tcp", "tls", "ws", "wss"
	peer      string // a trusted peer's name, or ""
}

// Leg tells the relay who the endpoint of one side of a call is, before
// the call's SDP crosses: the transport its signalling uses (an auto side
// reached over ws or wss is a browser: the SBC's offers toward it are
// DTLS-SRTP) and, for a trusted peer, its name (Encryption.Peers). Kept
// until Release.
func (m *Manager) Leg(key string, side sbc.Side, transport, peer string) {
	if side != sbc.External && side != sbc.Internal {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	h := legHint{transport: strings.ToLower(transport), peer: peer}
	if s := m.sessions[key]; s != nil {
		if s.legs[side] != h {
			// Another endpoint on that side (the next target of a
			// failover): our offer to the last one is not this one's.
			for _, st := range s.streams {
				if st != nil && !st.sdp[side].seen && st.sec[side].Load() != nil {
					st.sec[side].Load().close()
					st.sec[side].Store(&secSide{kind: secPending, keys: newKeys(nil)})
				}
			}
		}
		s.legs[side] = h
		return
	}
	if m.hints == nil {
		m.hints = make(map[string]*[2]legHint)
	}
	lh := m.hints[key]
	if lh == nil {
		if len(m.hints) >= m.cfg.MaxSessions {
			return // bounded: the configured modes apply
		}
		lh = new([2]legHint)
		m.hints[key] = lh
	}
	lh[side] = h
}

// sideMode is the mode of side for the call: a trusted peer's own, else
// the configured one.
func (m *Manager) sideMode(legs *[2]legHint, side int) string {
	if side == int(sbc.External) && legs[side].peer != "" {
		if mode, ok := m.cfg.Encryption.Peers[legs[side].peer]; ok && mode != "" {
			return mode
		}
	}
	return m.cfg.Encryption.mode(side)
}

// required: plain media from side is refused (outside, not a trusted
// peer with a mode of its own).
func (m *Manager) required(legs *[2]legHint, side int) bool {
	if side != int(sbc.External) || !m.cfg.Encryption.Require {
		return false
	}
	_, own := m.cfg.Encryption.Peers[legs[side].peer]
	return legs[side].peer == "" || !own
}

// offerMode is the mode of the SBC's own offers toward side: auto offers
// plain, except to a browser (signalling over ws or wss), which gets
// DTLS-SRTP, and where plain media is refused, where it offers SDES.
func (m *Manager) offerMode(legs *[2]legHint, side int) string {
	mode := m.sideMode(legs, side)
	switch {
	case mode == EncAuto && (legs[side].transport == "ws" || legs[side].transport == "wss"):
		return EncDTLS
	case mode == EncAuto && m.required(legs, side):
		return EncSDES // a plain answer would be refused
	}
	return mode
}

// ErrPlainRefused: Encryption.Require and a plain body from outside (the
// B2BUA answers 488 with a Warning saying so).
var ErrPlainRefused = sdp.ErrPlain

func (e Encryption) mode(side int) string {
	m := e.Outside
	if side == int(sbc.Internal) {
		m = e.Inside
	}
	if m == "" {
		return EncPass
	}
	return m
}

// Validate checks the modes.
func (e Encryption) Validate() error {
	for _, m := range []string{e.mode(0), e.mode(1)} {
		switch m {
		case EncPass, EncOff, EncSDES, EncDTLS, EncAuto:
		default:
			return fmt.Errorf("media: encryption mode %q: want pass, off, sdes, dtls or auto", m)
		}
	}
	if (e.mode(0) == EncPass) != (e.mode(1) == EncPass) {
		return errors.New("media: encryption pass on one side only: pass needs both sides")
	}
	for name, m := range e.Peers {
		switch m {
		case EncOff, EncSDES, EncDTLS, EncAuto:
		default:
			return fmt.Errorf("media: encryption mode %q of peer %q: want off, sdes, dtls or auto", m, name)
		}
		if e.mode(int(sbc.Internal)) == EncPass {
			return fmt.Errorf("media: peer %q has an encryption mode of its own: inside must not be pass", name)
		}
	}
	if e.Require && e.mode(int(sbc.External)) == EncPass {
		return errors.New("media: encryption required from outside needs a terminating mode outside (auto, sdes or dtls), not pass")
	}
	return nil
}

// What one side of a stream speaks with the SBC.
const (
	secPlain = iota
	secSDES
	secDTLS
	// secPending: the endpoint of that side changed (a failover) and the
	// SBC's offer to it is still to be written: nothing is sent or taken
	// there meanwhile (no keys).
	secPending
)

// secSide is the encryption of one side of a stream. The relay reads it
// through an atomic pointer and it is never changed once stored: a change
// stores a new version (Manager.mu held), which shares the keys and the
// DTLS associations of the one before when they go on.
type secSide struct {
	kind   int
	local  srtp.Crypto // SDES: our key, in the SDP toward this side
	remote srtp.Crypto // SDES: the endpoint's key
	keys   *secKeys
	// prev (SDES) is the session before the endpoint's last new key:
	// tried when the current one fails, for the offer that brought the
	// key may have been refused by the other side, and the endpoint then
	// keeps its old key (RFC 4568 section 7.1.4).
	prev       *srtp.Session
	prevRemote srtp.Crypto // the endpoint's key of prev

	// DTLS-SRTP with ICE-lite.
	ice     *srtp.ICELite
	dtls    bool               // keys.assoc is the DTLS-SRTP association's
	mux     bool               // the endpoint's SDP had rtcp-mux
	fingers []srtp.Fingerprint // the endpoint's
	setup   string             // the endpoint's last a=setup
	mid     string             // the endpoint's a=mid, echoed
	bundle  bool               // the endpoint's SDP had a=group:BUNDLE
	role    srtp.Role
	proto   string // the endpoint's m= protocol, echoed in our answers
}

// secKeys are the SRTP sessions in force, by the socket the packets use
// (rtp, rtcp): one session for both with SDES or rtcp-mux; without mux,
// DTLS-SRTP keys RTCP by a handshake of its own on the RTCP port (RFC
// 5764 section 4.1). The DTLS handshake sets them when it completes.
type secKeys struct {
	sess [2]atomic.Pointer[srtp.Session]
	// prevDone: the current session has authenticated a packet, so the
	// one before a rekey (secSide.prev) is no longer tried.
	prevDone atomic.Bool

	// The DTLS-SRTP associations by socket kind (rtp; rtcp without mux),
	// made when they are due (dtlsFor): as the server at the endpoint's
	// first record, as the client once its address is known; a failed
	// one is replaced by the next attempt of the endpoint's.
	mu     sync.Mutex
	assoc  [2]*srtp.DTLS
	failed [2]bool
	closed bool
	mk     func(kind int) (*srtp.DTLS, error)
}

func newKeys(sess *srtp.Session) *secKeys {
	k := &secKeys{}
	if sess != nil {
		k.sess[rtp].Store(sess)
		k.sess[rtcp].Store(sess)
	}
	return k
}

// dtlsFor returns the association for kind, started, making it (or a new
// one in place of a failed one) when needed. Nil once closed, or when it
// cannot be made. Safe from the relay's readers: it takes no lock of the
// Manager's.
func (k *secKeys) dtlsFor(kind int) *srtp.DTLS {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed || k.mk == nil {
		return nil
	}
	if d := k.assoc[kind]; d != nil && !k.failed[kind] {
		return d
	}
	if d := k.assoc[kind]; d != nil {
		d.Close()
	}
	d, err := k.mk(kind)
	if err != nil {
		return nil
	}
	k.assoc[kind], k.failed[kind] = d, false
	d.Start()
	return d
}

// fail marks kind's association d failed (if it is still the one).
func (k *secKeys) fail(kind int, d *srtp.DTLS) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.assoc[kind] == d {
		k.failed[kind] = true
	}
}

// close ends the associations; none is made after.
func (k *secKeys) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = true
	for i, d := range k.assoc {
		if d != nil {
			d.Close()
			k.assoc[i] = nil
		}
	}
}

// with is a new version of s, changed by f, sharing its keys and DTLS.
func (s *secSide) with(f func(*secSide)) *secSide {
	c := *s
	f(&c)
	return &c
}

func (s *secSide) close() {
	if s != nil && s.keys != nil {
		s.keys.close()
	}
}

// securityAttrs are the lines of an endpoint's media security: toward
// the other side the SBC writes its own, or none.
var securityAttrs = []string{"crypto", "fingerprint", "setup", "tls-id"}

// webrtcAttrs are the attributes of a WebRTC (or SRTP) section that mean
// nothing to a plain RTP endpoint, or to an SBC that terminates them:
// dropped toward a side whose security the SBC writes itself.
var webrtcAttrs = []string{
	"crypto", "fingerprint", "setup", "tls-id", "ice-ufrag", "ice-pwd", "ice-options", "ice-lite",
	"candidate", "end-of-candidates", "remote-candidates", "rtcp-fb", "extmap", "extmap-allow-mixed",
	"msid", "msid-semantic", "ssrc", "ssrc-group", "mid", "group", "rtcp-rsize", "identity",
}

// fromSide reads what the body from side says about the security of each
// of the call's streams (by m= position, nil where there is none), and
// makes or updates their secSide. The caller holds m.mu.
func (m *Manager) fromSide(legs *[2]legHint, streams []*stream, side int, parsed *sdp.Session, media []sdp.Media) error {
	mode := m.sideMode(legs, side)
	if mode == EncPass {
		return nil
	}
	for i, md := range media {
		st := streams[i]
		if md.Port == 0 || st == nil {
			continue
		}
		old := st.sec[side].Load()
		if old != nil && old.kind == secPending {
			old = nil
		}
		want := secPlain
		switch {
		case mode == EncOff:
		case md.Fingerprint && (mode == EncDTLS || mode == EncAuto):
			want = secDTLS
		case md.Crypto && (mode == EncSDES || mode == EncAuto):
			want = secSDES
		}
		if want == secPlain && m.required(legs, side) {
			return ErrPlainRefused
		}
		switch want {
		case secPlain:
			if old == nil || old.kind != secPlain {
				old.close()
				st.sec[side].Store(&secSide{kind: secPlain, keys: newKeys(nil)})
			}
		case secSDES:
			remote, err := srtp.Choose(parsed.Attrs(i, "crypto"))
			if err != nil {
				return fmt.Errorf("%w: a=crypto: %w", sdp.ErrMalformed, err)
			}
			ns, err := m.fromSDES(old, remote)
			if err != nil {
				return err
			}
			if ns.proto != md.Proto {
				p := md.Proto
				if ns == old {
					ns = old.with(func(c *secSide) { c.proto = p })
				} else {
					ns.proto = p
				}
			}
			if ns != old {
				if old == nil || old.kind != secSDES {
					old.close()
				}
				st.sec[side].Store(ns)
			}
		case secDTLS:
			if err := m.fromDTLS(st, side, i, parsed, old, md.RTCPMux, md.Proto); err != nil {
				return err
			}
		}
	}
	return nil
}

// fromSDES is the new version of a side's SDES state for the endpoint's
// chosen a=crypto remote (old itself when nothing changed). Our key is
// made once and kept: a new key from the endpoint rekeys what it sends,
// what we send goes on under the same contexts.
func (m *Manager) fromSDES(old *secSide, remote srtp.Crypto) (*secSide, error) {
	if old == nil || old.kind != secSDES || old.local.Suite != remote.Suite {
		// First SDES with this endpoint (or another suite): our key, with
		// its tag and suite.
		local, err := srtp.NewCrypto(remote.Tag, remote.Suite)
		if err != nil {
			return nil, err
		}
		sess, err := srtp.SessionFromSDES(local, remote)
		if err != nil {
			return nil, fmt.Errorf("%w: a=crypto: %w", sdp.ErrMalformed, err)
		}
		return &secSide{kind: secSDES, local: local, remote: remote, keys: newKeys(sess)}, nil
	}
	local := old.local
	local.Tag = remote.Tag // the answer's tag is the chosen offer's
	cur := old.keys.sess[rtp].Load()
	switch {
	case cur == nil:
		// The answer to our offer: its key completes the session.
		sess, err := srtp.SessionFromSDES(local, remote)
		if err != nil {
			return nil, fmt.Errorf("%w: a=crypto: %w", sdp.ErrMalformed, err)
		}
		return &secSide{kind: secSDES, local: local, remote: remote, keys: newKeys(sess)}, nil
	case bytes.Equal(old.remote.Key, remote.Key):
		if old.remote.Tag == remote.Tag {
			return old, nil
		}
		return old.with(func(c *secSide) { c.local, c.remote = local, remote }), nil
	}
	if old.prev != nil && bytes.Equal(old.prevRemote.Key, remote.Key) {
		// The key before the last rekey comes back (that re-INVITE was
		// refused): its contexts, with their rollover counts and replay
		// windows, serve again.
		return &secSide{kind: secSDES, local: local, remote: remote, keys: newKeys(old.prev), prev: cur, prevRemote: old.remote}, nil
	}
	sess, err := cur.Rekeyed(remote)
	if err != nil {
		return nil, fmt.Errorf("%w: a=crypto: %w", sdp.ErrMalformed, err)
	}
	return &secSide{kind: secSDES, local: local, remote: remote, keys: newKeys(sess), prev: cur, prevRemote: old.remote}, nil
}

// attr is a section's attribute, else the session's.
func attr(parsed *sdp.Session, i int, name string) []string {
	if v := parsed.Attrs(i, name); len(v) > 0 {
		return v
	}
	return parsed.Attrs(-1, name)
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return strings.TrimSpace(v[0])
}

// fromDTLS takes a DTLS-SRTP section from side: the endpoint's
// fingerprints, setup role and ICE credentials. Same fingerprint and ICE
// credentials: the association goes on; else a new one (an ICE restart,
// a new certificate).
func (m *Manager) fromDTLS(st *stream, side, i int, parsed *sdp.Session, old *secSide, mux bool, proto string) error {
	var fingers []srtp.Fingerprint
	for _, v := range attr(parsed, i, "fingerprint") {
		f, err := srtp.ParseFingerprint(v)
		if err != nil {
			return fmt.Errorf("%w: a=fingerprint: %w", sdp.ErrMalformed, err)
		}
		fingers = append(fingers, f)
	}
	setup := strings.ToLower(first(attr(parsed, i, "setup")))
	if setup == "" {
		setup = "active" // RFC 4145: the default of an offer; answers must say
	}
	ufrag := first(attr(parsed, i, "ice-ufrag"))
	mid := first(parsed.Attrs(i, "mid"))
	bundle := len(parsed.Attrs(-1, "group")) > 0
	if old != nil && old.kind == secDTLS && old.dtls && sameFingers(old.fingers, fingers) && old.mux == mux &&
		!(setup == "passive" && old.role == srtp.Server && old.keys.sess[rtp].Load() == nil) {
		// The association goes on: the same certificate, the same roles.
		// An ICE restart (a new ufrag) only renews the ICE credentials.
		ice := old.ice
		if ufrag != old.ice.RemoteUfrag {
			lu, lp := srtp.NewICECredentials()
			ice = &srtp.ICELite{LocalUfrag: lu, LocalPwd: lp, RemoteUfrag: ufrag}
		}
		st.sec[side].Store(old.with(func(c *secSide) { c.ice, c.setup, c.mid, c.bundle, c.proto = ice, setup, mid, bundle, proto }))
		return nil
	}
	// A new association: the first, the answer to our offer, a new
	// certificate, or the endpoint wants to be the server after all (we
	// start as the client).
	if err := m.restartDTLS(st, side, old, fingers, setup, mid, bundle, ufrag, mux); err != nil {
		return err
	}
	st.sec[side].Store(st.sec[side].Load().with(func(c *secSide) { c.proto = proto }))
	return nil
}

func (m *Manager) restartDTLS(st *stream, side int, old *secSide, fingers []srtp.Fingerprint, setup, mid string, bundle bool, ufrag string, mux bool) error {
	cert, err := m.certificate()
	if err != nil {
		return err
	}
	ns := &secSide{kind: secDTLS, dtls: true, fingers: fingers, setup: setup, mid: mid, bundle: bundle, role: srtp.Server, keys: newKeys(nil)}
	if setup == "passive" {
		ns.role = srtp.Client
	}
	lu, lp := srtp.NewICECredentials()
	if old != nil && old.kind == secDTLS && (old.ice.RemoteUfrag == "" || old.ice.RemoteUfrag == ufrag) {
		// The answer to our offer, or no ICE restart: our credentials stay.
		lu, lp = old.ice.LocalUfrag, old.ice.LocalPwd
	}
	ns.ice = &srtp.ICELite{LocalUfrag: lu, LocalPwd: lp, RemoteUfrag: ufrag}
	ns.mux = mux
	keys := ns.keys
	keys.mk = func(kind int) (*srtp.DTLS, error) {
		var d *srtp.DTLS
		d, err := srtp.NewDTLS(srtp.DTLSConfig{
			Cert:   cert,
			Role:   ns.role,
			Remote: fingers,
			Send:   func(pkt []byte) error { return st.sendTo(side, kind, pkt) },
			OnReady: func(sess *srtp.Session, err error) {
				if err != nil {
					if !errors.Is(err, srtp.ErrClosed) {
						m.log.Debug("media: DTLS-SRTP handshake failed", "key", st.key, "side", sbc.Side(side), "kind", kindName(kind), "error", err)
						m.dtlsFailed.Add(1)
						keys.fail(kind, d)
						if ufrag == "" {
							st.peer[side][kind].Store(&peerState{})
						}
					}
					return
				}
				keys.sess[kind].Store(sess)
				if mux {
					keys.sess[rtcp].Store(sess)
				}
				m.log.Debug("media: DTLS-SRTP keyed", "key", st.key, "side", sbc.Side(side), "kind", kindName(kind))
			},
		})
		return d, err
	}
	old.close()
	st.sec[side].Store(ns)
	if ns.role == srtp.Client && ufrag == "" {
		// The client of an endpoint without ICE: now, toward its SDP
		// address (flights before the address is known are dropped, and
		// repeated by the handshake). With ICE, at its first check.
		keys.dtlsFor(rtp)
		if !mux {
			keys.dtlsFor(rtcp)
		}
	}
	return nil
}

func sameFingers(a, b []srtp.Fingerprint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !strings.EqualFold(a[i].Hash, b[i].Hash) || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

// certificate is the SBC's DTLS certificate, made at the first use. The
// caller holds m.mu.
func (m *Manager) certificate() (*srtp.Certificate, error) {
	// Renewed a day before it expires; the calls that have its
	// fingerprint in their SDP keep using it.
	if m.cert == nil || time.Until(m.cert.Expires()) < 24*time.Hour {
		c, err := srtp.NewCertificate()
		if err != nil {
			return nil, fmt.Errorf("media: DTLS certificate: %w", err)
		}
		m.cert = c
	}
	return m.cert, nil
}

// towardSide returns the edits of the body for side to: its security
// lines as the SBC speaks with that side. from is the side the body came
// from. A section the SBC has not negotiated with side to yet gets the
// configured mode's offer (auto: plain). The caller holds m.mu.
func (m *Manager) towardSide(legs *[2]legHint, streams []*stream, to int, media []sdp.Media, ports []sdp.PortPair) (sdp.Target, error) {
	var t sdp.Target
	mode := m.sideMode(legs, to)
	if mode == EncPass {
		return t, nil
	}
	t.Sections = make([]sdp.SectionEdit, len(media))
	bundle, dtlsSections := "", 0
	for i, md := range media {
		st := streams[i]
		if md.Port == 0 || st == nil {
			continue
		}
		sec := st.sec[to].Load()
		offer := m.offerMode(legs, to)
		if sec == nil || sec.kind == secPending {
			// Not negotiated with this side yet: our offer. (An endpoint
			// that sent its own SDP is answered in kind: fromSide refused
			// what the mode does not allow.)
			var err error
			if sec, err = m.offerSec(st, to, offer); err != nil {
				return t, err
			}
		}
		ed := &t.Sections[i]
		src := st.sec[1-to].Load()
		if src != nil && src.kind == secDTLS {
			ed.NotHold = true // ICE's c=0.0.0.0: the address is in the candidates
		}
		// The SBC writes this side's security itself: the sender's lines
		// of it never cross (a PBX's optimistic a=crypto included), nor,
		// when one side is terminated SRTP, WebRTC's other lines.
		t.Drop = securityAttrs
		if sec.kind != secPlain || src != nil && src.kind != secPlain || isSecureProto(md.Proto) {
			t.Drop = webrtcAttrs
		}
		switch sec.kind {
		case secPlain:
			if isSecureProto(md.Proto) {
				ed.Proto = "RTP/AVP"
			}
			if src != nil && src.kind == secDTLS {
				ed.Mux = -1 // RTCP on its own port: what every plain endpoint takes
			}
		case secSDES:
			ed.Proto = "RTP/SAVP"
			if strings.HasSuffix(strings.ToUpper(md.Proto), "AVPF") {
				ed.Proto = "RTP/SAVPF"
			}
			if sec.proto != "" {
				ed.Proto = sec.proto // our answer keeps the offer's (RTP/AVP with a=crypto too)
			}
			ed.Add = []string{"a=crypto:" + sec.local.String()}
			if src != nil && src.kind == secDTLS {
				ed.Mux = -1
			}
		case secDTLS:
			cert, err := m.certificate()
			if err != nil {
				return t, err
			}
			ed.Proto = "UDP/TLS/RTP/SAVPF"
			if sec.proto != "" {
				ed.Proto = sec.proto // our answer keeps the offer's
			}
			if sec.mux || sec.setup == "" {
				// rtcp-mux in our offers, and in answers to offers with it
				// (RFC 5761: an answer cannot add it).
				ed.Mux = 1
			} else {
				ed.Mux = -1
			}
			established := sec.keys.sess[rtp].Load() != nil
			setup := "actpass" // our offers (RFC 8842)
			switch {
			case sec.setup == "actpass" && established && sec.role == srtp.Client:
				setup = "active" // an answer keeps the association's roles
			case sec.setup == "actpass":
				setup = "passive" // our answer: the endpoint connects
			case !established && sec.setup == "active":
				setup = "passive" // an answer to a legacy offer
			case !established && sec.setup == "passive":
				setup = "active"
			}
			mid := sec.mid
			if mid == "" {
				mid = strconv.Itoa(i)
			}
			dtlsSections++
			if sec.bundle || sec.setup == "" {
				bundle += " " + mid
			}
			addr := m.advertise(to)
			ed.Add = []string{
				"a=mid:" + mid,
				"a=ice-ufrag:" + sec.ice.LocalUfrag,
				"a=ice-pwd:" + sec.ice.LocalPwd,
				"a=fingerprint:" + cert.Fingerprint(),
				"a=setup:" + setup,
				"a=candidate:1 1 udp 2130706431 " + addr.String() + " " + strconv.Itoa(ports[i].RTP) + " typ host",
				"a=end-of-candidates",
			}
		}
	}
	if dtlsSections > 0 {
		t.SessionAdd = []string{"a=ice-lite"}
	}
	// BUNDLE only for one section: each of ours has a transport of its own
	// (no demultiplexing of bundled media), and an endpoint that bundles
	// two would send both on the first.
	if dtlsSections == 1 && bundle != "" {
		t.SessionAdd = append(t.SessionAdd, "a=group:BUNDLE"+bundle)
	}
	return t, nil
}

// offerSec is the security of our offer toward side to, in mode: kept
// until the endpoint's answer says more (fromSide).
func (m *Manager) offerSec(st *stream, to int, mode string) (*secSide, error) {
	switch mode {
	case EncSDES:
		local, err := srtp.NewCrypto(1, srtp.AES_CM_128_HMAC_SHA1_80)
		if err != nil {
			return nil, err
		}
		// The endpoint's key comes with its answer; until then nothing
		// can be decrypted, nor sent.
		ns := &secSide{kind: secSDES, local: local, keys: newKeys(nil)}
		st.sec[to].Store(ns)
		return ns, nil
	case EncDTLS:
		lu, lp := srtp.NewICECredentials()
		ns := &secSide{kind: secDTLS, ice: &srtp.ICELite{LocalUfrag: lu, LocalPwd: lp}, role: srtp.Server, keys: newKeys(nil)}
		st.sec[to].Store(ns)
		return ns, nil
	}
	ns := &secSide{kind: secPlain, keys: newKeys(nil)}
	st.sec[to].Store(ns)
	return ns, nil
}

func isSecureProto(proto string) bool {
	p := strings.ToUpper(proto)
	return strings.Contains(p, "SAVP") || strings.HasPrefix(p, "UDP/TLS/")
}

// sendTo writes a datagram of the SBC's own (a DTLS flight) to the
// endpoint of side, from the stream's socket of kind.
func (st *stream) sendTo(side, kind int, pkt []byte) error {
	dst := st.peer[side][kind].Load().dst
	if !dst.IsValid() {
		// No address yet: dropped, as a lost datagram; the handshake
		// repeats its flight (an error would end it).
		return nil
	}
	_, _ = st.sock[side][kind].conn.WriteToUDPAddrPort(pkt, dst)
	return nil
}

// closeSec ends the stream's DTLS associations.
func (st *stream) closeSec() {
	for side := range 2 {
		st.sec[side].Load().close()
	}
}

// control handles a datagram that is not media on a side the SBC
// terminates with DTLS: ICE connectivity checks are answered (and the
// nominated or first valid pair latched), DTLS records go to the
// handshake. It returns a reply for src, if any.
//
// With ICE (the endpoint gave an ice-ufrag), only a check that passes
// MESSAGE-INTEGRITY with our password latches: DTLS records, like media,
// are taken from the latched address alone, so nobody without the
// password can take the stream or end its handshake with a forged alert.
// Without ICE, the first DTLS record's source latches, and a failed
// handshake re-arms the latch.
func (st *stream) control(in *sock, sec *secSide, pkt []byte, src netip.AddrPort, kind srtp.Kind) (reply []byte) {
	switch kind {
	case srtp.KindSTUN:
		if in.kind != rtp {
			in.drops[dropRefused].Add(1)
			return nil
		}
		resp, nominated, err := sec.ice.Answer(pkt, src)
		if err != nil {
			in.drops[dropRefused].Add(1)
			return nil
		}
		from := &st.peer[in.side][rtp]
		if p := from.Load(); (!p.latched || nominated && p.dst != src) && st.m.sourceAllowed(in.side, src) {
			from.Store(&peerState{dst: src, latched: true})
			st.m.log.Debug("media latched (ICE)", "key", st.key, "side", sbc.Side(in.side), "peer", src, "nominated", nominated)
		}
		if sec.role == srtp.Client {
			// We connect once the endpoint's address is known.
			sec.keys.dtlsFor(rtp)
			if !sec.mux {
				sec.keys.dtlsFor(rtcp)
			}
		}
		return resp
	case srtp.KindDTLS:
		from := &st.peer[in.side][in.kind]
		p := from.Load()
		switch {
		case p.latched && p.dst == src:
		case p.latched:
			in.drops[dropUnlatched].Add(1)
			return nil
		case sec.ice.RemoteUfrag != "" && in.kind == rtp:
			in.drops[dropUnlatched].Add(1) // not before a valid ICE check
			return nil
		case sec.ice.RemoteUfrag != "":
			// The RTCP component of an ICE endpoint without mux: from the
			// address its RTP component was checked from.
			if r := st.peer[in.side][rtp].Load(); !r.latched || r.dst.Addr() != src.Addr() {
				in.drops[dropUnlatched].Add(1)
				return nil
			}
			from.Store(&peerState{dst: src, latched: true})
		case !st.m.sourceAllowed(in.side, src):
			in.drops[dropRefused].Add(1)
			return nil
		default:
			// Without ICE the first record's source latches (an endpoint
			// behind NAT is not where its SDP says); a handshake that
			// fails (a stranger's record, a wrong certificate) re-arms
			// the latch for the next source.
			from.Store(&peerState{dst: src, latched: true})
		}
		if d := sec.keys.dtlsFor(in.kind); d != nil {
			d.Feed(pkt)
		}
		return nil
	}
	in.drops[dropRefused].Add(1)
	return nil
}
