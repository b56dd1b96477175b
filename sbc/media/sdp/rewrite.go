package sdp

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// PortPair is the relay's pair of ports for one stream. RTCP 0 stands for
// the default: RTP itself when the stream has a=rtcp-mux, RTP+1 otherwise.
type PortPair struct{ RTP, RTCP int }

// Target is what the other side must see.
type Target struct {
	// Addr is the SBC's media address, written in the one session-level
	// c= line, in o= and in a=rtcp lines that carry an address. An
	// IPv4-mapped IPv6 address is written as IPv4.
	Addr netip.Addr
	// Ports holds one pair per m= section, in order; the pairs of
	// disabled streams (port 0) are ignored and those streams keep port 0.
	Ports []PortPair
	// Origin is written as "o=<User> <SessID> <Version> IN IP4|IP6 <Addr>":
	// User "-" when empty, SessID and Version decimal digits, Origin.Addr
	// ignored. The caller keeps SessID stable and raises Version when the
	// body it sends changes (RFC 3264 section 8).
	Origin Origin

	// The media layer's edits where it terminates SRTP on one side (its
	// README): attributes not written (names, any case, at session and
	// media level), lines added at the end of the session part, and per
	// m= section a transport protocol, lines added at the end, and
	// whether a=rtcp-mux is written. All empty: the body as above.
	Drop       []string
	SessionAdd []string
	Sections   []SectionEdit
}

// SectionEdit changes one m= section (Target.Sections).
type SectionEdit struct {
	Proto string   // written instead of the sender's; "": kept
	Add   []string // whole lines ("a=crypto:..."), written last
	Mux   int8     // 0: a=rtcp-mux as sent; -1: removed; 1: written if absent
	// NotHold: an unspecified c= address is not an RFC 2543 hold (ICE
	// puts 0.0.0.0 there and the address in its candidates).
	NotHold bool
}

func (t *Target) edit(i int) SectionEdit {
	if i < len(t.Sections) {
		return t.Sections[i]
	}
	return SectionEdit{}
}

// dropped reports whether an a= line names an attribute of t.Drop.
func (t *Target) dropped(text string) bool {
	if len(t.Drop) == 0 || !strings.HasPrefix(text, "a=") {
		return false
	}
	name, _, _ := strings.Cut(text[2:], ":")
	for _, d := range t.Drop {
		if strings.EqualFold(name, d) {
			return true
		}
	}
	return false
}

// Rewrite returns a new body (CRLF line ends) for the other side of the
// relay:
//   - o= becomes Target.Origin at Target.Addr; s= becomes "s=-";
//   - one session-level c= with Target.Addr; media-level c= lines go,
//     except for a stream on hold with an unspecified address (RFC 2543
//     style), which keeps a media-level c= with the unspecified address of
//     Target.Addr's family;
//   - the m= port of each active stream becomes Ports[i].RTP (a port count
//     suffix is kept); a=rtcp becomes "a=rtcp:<RTCP>", plus
//     " IN IP4|IP6 <address>" when it had an address; an RTP stream without
//     a=rtcp and without a=rtcp-mux whose RTCP port is not RTP+1 gets one;
//     disabled streams lose their c= and a=rtcp lines;
//   - removed: session-level i=, u=, e=, p=; a=candidate,
//     a=remote-candidates, a=end-of-candidates, every a=ice-* and a=altc
//     (ICE is not relayed, and they carry inside addresses);
//   - every other line is written byte for byte.
//
// It fails with ErrBadTarget for an unusable Target, and with ErrTooLarge if
// the result would exceed MaxSize or MaxLines (so Parse accepts it).
func (s *Session) Rewrite(t Target) ([]byte, error) {
	addr := t.Addr.Unmap()
	if !addr.IsValid() || addr.IsUnspecified() || addr.Zone() != "" {
		return nil, fmt.Errorf("%w: address %q", ErrBadTarget, t.Addr)
	}
	if len(t.Ports) < len(s.sections) {
		return nil, fmt.Errorf("%w: %d port pairs for %d media", ErrBadTarget, len(t.Ports), len(s.sections))
	}
	user := t.Origin.User
	if user == "" {
		user = "-"
	}
	if !isVisibleASCII(user) || !isDigits(t.Origin.SessID) || !isDigits(t.Origin.Version) {
		return nil, fmt.Errorf("%w: origin user, session id or version", ErrBadTarget)
	}
	rtcp := make([]int, len(s.sections))
	for i, m := range s.sections {
		if m.Port == 0 {
			continue
		}
		p := t.Ports[i]
		r := p.RTCP
		if r == 0 {
			r = p.RTP + 1
			if muxed(&s.sections[i], t.edit(i)) {
				r = p.RTP
			}
		}
		if p.RTP < 1 || p.RTP > 65535 || p.RTCP < 0 || r > 65535 {
			return nil, fmt.Errorf("%w: ports %d/%d for media %d", ErrBadTarget, p.RTP, p.RTCP, i)
		}
		rtcp[i] = r
	}

	fam, unspec := "IP4", netip.IPv4Unspecified()
	if addr.Is6() {
		fam, unspec = "IP6", netip.IPv6Unspecified()
	}
	w := writer{buf: make([]byte, 0, s.size+64+len(s.sections)*48)}
	sessConn := func() { w.conn(fam, addr) }
	connDone := false
	firstMedia := len(s.lines)
	if len(s.sections) > 0 {
		firstMedia = s.sections[0].first
	}
	for _, ln := range s.lines[:firstMedia] {
		if !connDone && (ln.kind == kindConn || !strings.ContainsRune("vosiuep", rune(ln.text[0]))) {
			// The session c= goes where the input had one, else before
			// the first line that RFC 8866 orders after c= (b=, t=...).
			sessConn()
			connDone = true
			if ln.kind == kindConn {
				continue
			}
		}
		if t.dropped(ln.text) {
			continue
		}
		switch ln.kind {
		case kindOrigin:
			w.str("o=")
			w.str(user)
			w.str(" ")
			w.str(t.Origin.SessID)
			w.str(" ")
			w.str(t.Origin.Version)
			w.str(" IN ")
			w.str(fam)
			w.str(" ")
			w.addr(addr)
			w.end()
		case kindName:
			w.line("s=-")
		case kindConn, kindDrop, kindAddrs:
			// kindConn: a c= after t= (out of order); ours is written.
		default:
			w.line(ln.text)
		}
	}
	if !connDone {
		sessConn()
	}
	for _, l := range t.SessionAdd {
		w.line(l)
	}

	for i := range s.sections {
		m := &s.sections[i]
		active := m.Port != 0
		ed := t.edit(i)
		hold := m.Hold() && !ed.NotHold
		connAddr := addr
		if hold {
			connAddr = unspec
		}
		// A hold stream that took its unspecified address from the
		// session needs its own c=, after m= and i= (RFC 8866 order).
		pendingHold := hold && !m.hasConn
		mux := muxed(m, ed)
		for j := m.first; j < m.end; j++ {
			ln := s.lines[j]
			if pendingHold && j > m.first && ln.text[0] != 'i' {
				w.conn(fam, unspec)
				pendingHold = false
			}
			if t.dropped(ln.text) || (ed.Mux < 0 && isMuxLine(ln.text)) {
				continue
			}
			switch ln.kind {
			case kindMedia:
				if !active {
					w.line(ln.text)
					continue
				}
				w.str(ln.text[:m.portStart])
				w.int(t.Ports[i].RTP)
				rest := ln.text[m.portEnd:]
				if ed.Proto != "" {
					// " <proto> <fmt>...": the protocol is the first field.
					f := strings.TrimPrefix(rest, " ")
					if k := strings.IndexByte(f, ' '); k > 0 {
						rest = " " + ed.Proto + f[k:]
					}
				}
				w.str(rest)
				w.end()
			case kindConn:
				if hold {
					w.conn(fam, unspec)
				}
			case kindRTCP:
				if !active {
					continue
				}
				w.str("a=rtcp:")
				w.int(rtcp[i])
				if ln.addr.IsValid() {
					w.str(" IN ")
					w.str(fam)
					w.str(" ")
					w.addr(connAddr)
				}
				w.end()
			case kindDrop, kindAddrs:
			default:
				w.line(ln.text)
			}
		}
		if pendingHold {
			w.conn(fam, unspec)
		}
		if active && !m.hasRTCP && !mux && rtcp[i] != t.Ports[i].RTP+1 && isRTP(m.Proto) {
			w.str("a=rtcp:")
			w.int(rtcp[i])
			w.end()
		}
		if active && ed.Mux > 0 && !m.RTCPMux {
			w.line("a=rtcp-mux")
		}
		if active {
			for _, l := range ed.Add {
				w.line(l)
			}
		}
	}
	if len(w.buf) > MaxSize || w.lines > MaxLines {
		return nil, fmt.Errorf("%w: rewritten body has %d bytes, %d lines", ErrTooLarge, len(w.buf), w.lines)
	}
	return w.buf, nil
}

// muxed tells whether the written section has a=rtcp-mux.
func muxed(m *section, ed SectionEdit) bool {
	return ed.Mux > 0 || (m.RTCPMux && ed.Mux == 0)
}

func isMuxLine(text string) bool { return strings.EqualFold(text, "a=rtcp-mux") }

// isRTP reports an RTP profile (RTP/AVP, RTP/SAVPF, UDP/TLS/RTP/SAVPF,
// TCP/RTP/AVP...): only those have an RTCP port to announce.
func isRTP(proto string) bool {
	for part := range strings.SplitSeq(proto, "/") {
		if strings.EqualFold(part, "RTP") {
			return true
		}
	}
	return false
}

func isVisibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return s != ""
}

// writer appends CRLF-terminated lines to buf and counts them.
type writer struct {
	buf   []byte
	lines int
}

func (w *writer) str(s string)      { w.buf = append(w.buf, s...) }
func (w *writer) int(n int)         { w.buf = strconv.AppendInt(w.buf, int64(n), 10) }
func (w *writer) addr(a netip.Addr) { w.buf = a.AppendTo(w.buf) }
func (w *writer) end()              { w.buf = append(w.buf, '\r', '\n'); w.lines++ }
func (w *writer) line(s string)     { w.str(s); w.end() }
func (w *writer) conn(fam string, a netip.Addr) {
	w.str("c=IN ")
	w.str(fam)
	w.str(" ")
	w.addr(a)
	w.end()
}
