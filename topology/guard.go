package topology

import (
	"bytes"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Scan looks through bytes about to leave toward the outside for an
// inside address or name, as they are and decoded (percent escapes and
// quoted pairs, up to three rounds, so "10%2E0%2E0%2E10" and
// "%252E" count): every substring that reads as an IPv4 address (a
// dotted quad glued to other digits or letters included) or an IPv6
// address is checked against InternalAddr, and every InternalName is
// searched case-insensitively anywhere. It returns the first leak found.
// It allocates only for bytes holding an escape, and for a leak.
func (p *Policy) Scan(b []byte) (string, bool) {
	if leak, ok := p.scanRaw(b); ok {
		return leak, true
	}
	if bytes.IndexByte(b, '%') < 0 && bytes.IndexByte(b, '\\') < 0 {
		return "", false
	}
	return p.scanRaw(decodeAll(b))
}

// scanRaw is Scan without decoding.
func (p *Policy) scanRaw(b []byte) (string, bool) {
	// IPv4: runs of digits and dots.
	for i := 0; i < len(b); {
		if !isDigitDot(b[i]) {
			i++
			continue
		}
		j := i
		for j < len(b) && isDigitDot(b[j]) {
			j++
		}
		if a, ok := p.scan4(b[i:j]); ok {
			return a.String(), true
		}
		i = j
	}
	// IPv6: runs of hex digits, colons and dots with two colons or more.
	for i := 0; i < len(b); {
		if !isAddrByte(b[i]) {
			i++
			continue
		}
		j, colons := i, 0
		for j < len(b) && isAddrByte(b[j]) {
			if b[j] == ':' {
				colons++
			}
			j++
		}
		if colons >= 2 {
			if a, ok := p.scan6(b[i:j]); ok {
				return a.String(), true
			}
		}
		i = j
	}
	for _, n := range p.names {
		if indexFold(b, n) >= 0 {
			return n, true
		}
	}
	return "", false
}

func isDigitDot(c byte) bool { return c >= '0' && c <= '9' || c == '.' }

// isAddrByte: the bytes an IP literal is made of (v6 with embedded v4).
func isAddrByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '.' || c == ':'
}

// scan4 finds an inside IPv4 address in a run of digits and dots: every
// four consecutive dot-separated groups; an outer group that is not an
// octet ("5123" in "10.0.0.5123") is also read by its last (first) one
// to three digits, a whole octet only whole (127.0.0.32 is not
// 127.0.0.3). Octets may have leading zeros.
func (p *Policy) scan4(run []byte) (netip.Addr, bool) {
	if bytes.Count(run, []byte(".")) < 3 {
		return netip.Addr{}, false
	}
	var groups [64][]byte
	n := 0
	for g := range bytes.SplitSeq(run, []byte(".")) {
		if n == len(groups) {
			break
		}
		groups[n] = g
		n++
	}
	for k := 0; k+4 <= n; k++ {
		g0, g1, g2, g3 := groups[k], groups[k+1], groups[k+2], groups[k+3]
		if len(g0) == 0 || len(g3) == 0 || len(g1) == 0 || len(g1) > 3 || len(g2) == 0 || len(g2) > 3 {
			continue
		}
		b1, ok1 := octet(g1)
		b2, ok2 := octet(g2)
		if !ok1 || !ok2 {
			continue
		}
		// Shorter readings of the outer groups are for an address glued
		// to other digits ("10.0.0.5123"); a group that is a whole octet
		// is read whole, so 127.0.0.32 is not read as 127.0.0.3.
		min0, min3 := 1, 1
		if _, whole := octet(g0); whole {
			min0 = len(g0)
		}
		if _, whole := octet(g3); whole {
			min3 = len(g3)
		}
		for l0 := min(3, len(g0)); l0 >= min0; l0-- {
			b0, ok := octet(g0[len(g0)-l0:])
			if !ok {
				continue
			}
			for l3 := min(3, len(g3)); l3 >= min3; l3-- {
				b3, ok := octet(g3[:l3])
				if !ok {
					continue
				}
				if a := netip.AddrFrom4([4]byte{b0, b1, b2, b3}); p.InternalAddr(a) {
					return a, true
				}
			}
		}
	}
	return netip.Addr{}, false
}

// octet reads 1-3 decimal digits up to 255.
func octet(d []byte) (byte, bool) {
	v := 0
	for _, c := range d {
		v = v*10 + int(c-'0')
	}
	return byte(v), len(d) > 0 && len(d) <= 3 && v <= 255
}

// scan6 finds an inside IPv6 address in a run of hex digits, colons and
// dots: candidates start at every group (and inside the first, for hex
// glued in front) and end at every group (and inside the last, for hex
// glued behind or a port), with "::" or eight groups, at most 45 bytes.
func (p *Policy) scan6(run []byte) (netip.Addr, bool) {
	var starts, ends [96]int
	ns, ne := 0, 0
	first := bytes.IndexByte(run, ':')
	for s := 0; s < first && ns < len(starts); s++ {
		starts[ns] = s // the first group, glued hex trimmed
		ns++
	}
	for i := first; i < len(run) && ns < len(starts); i++ {
		if run[i] == ':' && (i+1 == len(run) || run[i+1] != ':') {
			starts[ns] = i + 1
			ns++
		} else if run[i] == ':' && i+1 < len(run) && run[i+1] == ':' {
			starts[ns] = i // "::x"
			ns++
		}
	}
	last := bytes.LastIndexByte(run, ':')
	for i := 0; i <= last && ne < len(ends); i++ {
		switch {
		case run[i] != ':' || i == 0:
		case run[i-1] != ':':
			ends[ne] = i
			ne++
		default:
			ends[ne] = i + 1 // "x::"
			ne++
		}
	}
	for e := len(run); e > last && ne < len(ends); e-- {
		ends[ne] = e // the last group, glued hex or a port trimmed
		ne++
	}
	// Longest first: "fd00::5" rather than the "fd00::" inside it.
	slices.Sort(ends[:ne])
	slices.Reverse(ends[:ne])
	var buf [45]byte
	for _, s := range starts[:ns] {
		for _, e := range ends[:ne] {
			if e-s < 2 || e-s > len(buf) {
				continue
			}
			c := run[s:e]
			if !bytes.Contains(c, []byte("::")) && bytes.Count(c, []byte(":")) != 7 {
				continue
			}
			k := copy(buf[:], c)
			if a, err := netip.ParseAddr(string(buf[:k])); err == nil && p.InternalAddr(a) {
				return a.Unmap(), true
			}
		}
	}
	return netip.Addr{}, false
}

// decodeAll undoes percent escapes and quoted pairs, up to three rounds
// (double encoding).
func decodeAll(b []byte) []byte {
	cur := b
	for range 3 {
		if bytes.IndexByte(cur, '%') < 0 && bytes.IndexByte(cur, '\\') < 0 {
			break
		}
		next := make([]byte, 0, len(cur))
		for i := 0; i < len(cur); i++ {
			c := cur[i]
			switch {
			case c == '%' && i+2 < len(cur):
				hi, ok1 := unhex(cur[i+1])
				lo, ok2 := unhex(cur[i+2])
				if ok1 && ok2 {
					next = append(next, hi<<4|lo)
					i += 2
					continue
				}
			case c == '\\' && i+1 < len(cur):
				next = append(next, cur[i+1])
				i++
				continue
			}
			next = append(next, c)
		}
		if len(next) == len(cur) {
			break // nothing decoded
		}
		cur = next
	}
	return cur
}

// indexFold is a case-insensitive bytes.Index for an ASCII lower-case
// needle.
func indexFold(b []byte, lower string) int {
	n := len(lower)
	for i := 0; i+n <= len(b); i++ {
		match := true
		for k := 0; k < n; k++ {
			c := b[i+k]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != lower[k] {
				match = false
				break
			}
		}
		if match {
			return i
		}
	}
	return -1
}

// Outbound is the guard, the last step of a message leaving toward the
// outside (the server's Options.Outbound): it scans the message (Scan).
// The sanitisers ran where the message was built (the B2BUA, the
// registrar), so a finding is a gap in them; reason phrases the SBC
// writes itself (a policy's, the fraud layer's) are the operator's and
// are not touched unless they name the inside. Nothing found: the
// message goes. With guard: log
// every finding is reported and the message goes as it is. With guard:
// block the guard keeps the transaction whole where it can:
//
//   - a leak in a part that can go (a header the transaction does not
//     need, an SDP line that is not an address, a sipfrag's words, a
//     response's reason phrase) is removed and the rest is sent;
//   - otherwise a final response is replaced by a 500 without text (its
//     Via, From, To, Call-ID and CSeq only), and a provisional response
//     or a request is not sent.
//
// In a response, Via, From, To, Call-ID, CSeq and Record-Route are the
// request's, written by the peer the response goes to: they are not
// leaks. Every finding is counted by item (the header, "request-uri",
// an SDP line, "body") in the Report. out is the bytes to send
// (possibly msg itself); send false: nothing.
func (p *Policy) Outbound(msg []byte) (out []byte, send bool) {
	if p.cfg.Guard == GuardOff {
		return msg, true
	}
	if _, found := p.Scan(msg); !found {
		return msg, true
	}
	m, ok := splitWire(msg)
	if !ok {
		leak, _ := p.Scan(msg)
		return p.unfixable(nil, []finding{{item: ItemOther, leak: leak}}, msg)
	}
	fs := p.findings(m)
	if len(fs) == 0 {
		return msg, true // only in what the peer itself wrote
	}
	if p.cfg.Guard != GuardBlock {
		for _, f := range fs {
			p.note(f.item, GuardLogged, f.leak)
		}
		return msg, true
	}
	if stripped, ok := p.strip(m, fs); ok {
		if m2, ok := splitWire(stripped); ok && len(p.findings(m2)) == 0 {
			for _, f := range fs {
				p.note(f.item, GuardStripped, f.leak)
			}
			return stripped, true
		}
	}
	return p.unfixable(m, fs, msg)
}

// GuardRTCP is the guard of RTCP leaving toward the outside (the media
// relay's Config.GuardRTCP), after its rewrite: a packet that names the
// inside is dropped (guard: block) or reported (log).
func (p *Policy) GuardRTCP(pkt []byte) bool {
	if p.cfg.Guard == GuardOff {
		return true
	}
	leak, found := p.Scan(pkt)
	if !found {
		return true
	}
	if p.cfg.Guard != GuardBlock {
		p.note(ItemRTCPPacket, GuardLogged, leak)
		return true
	}
	p.note(ItemRTCPPacket, GuardBlocked, leak)
	return false
}

// unfixable replaces a final response by a bare 500, or stops the
// message.
func (p *Policy) unfixable(m *wireMsg, fs []finding, msg []byte) ([]byte, bool) {
	if p.cfg.Guard != GuardBlock {
		for _, f := range fs {
			p.note(f.item, GuardLogged, f.leak)
		}
		return msg, true
	}
	if m != nil && m.code >= 200 {
		var b []byte
		b = append(b, "SIP/2.0 500 Server Internal Error\r\n"...)
		for _, h := range m.headers {
			if echoed[h.name] {
				b = append(append(b, h.raw...), '\r', '\n')
			}
		}
		b = append(b, "Content-Length: 0\r\n\r\n"...)
		for _, f := range fs {
			p.note(f.item, GuardReplaced, f.leak)
		}
		return b, true
	}
	for _, f := range fs {
		p.note(f.item, GuardBlocked, f.leak)
	}
	return nil, false
}

// wireMsg is a serialized message cut into its parts.
type wireMsg struct {
	start   string
	code    int // 0: a request
	headers []wireHeader
	body    []byte
	ct      string // Content-Type, lower-case, without parameters
}

type wireHeader struct {
	name string // lower-case, long form
	raw  string // the whole line, folded lines joined by CRLF
}

// compact are the compact header forms (RFC 3261 7.3.3 and later).
var compact = map[string]string{
	"i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
	"c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to",
	"v": "via", "o": "event", "r": "refer-to", "b": "referred-by", "u": "allow-events",
	"x": "session-expires", "y": "identity", "a": "accept-contact", "j": "reject-contact",
	"d": "request-disposition",
}

// echoed are the headers of a response copied from the request.
var echoed = map[string]bool{"via": true, "from": true, "to": true, "call-id": true, "cseq": true, "record-route": true}

// essential are the headers a message cannot do without (routing,
// dialogs, transactions, bodies, authentication, subscriptions, REFER).
var essential = map[string]bool{
	"via": true, "from": true, "to": true, "call-id": true, "cseq": true, "max-forwards": true,
	"contact": true, "route": true, "record-route": true, "content-type": true,
	"content-length": true, "content-encoding": true, "event": true, "subscription-state": true,
	"refer-to": true, "rseq": true, "rack": true, "require": true, "replaces": true,
	"www-authenticate": true, "proxy-authenticate": true, "authorization": true,
	"proxy-authorization": true,
}

// splitWire cuts a serialized SIP message; false for anything else.
func splitWire(msg []byte) (*wireMsg, bool) {
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	sep := 4
	if end < 0 {
		return nil, false
	}
	m := &wireMsg{body: msg[end+sep:]}
	lines := strings.Split(string(msg[:end]), "\r\n")
	if len(lines) > 512 {
		return nil, false
	}
	m.start = lines[0]
	if strings.HasPrefix(m.start, "SIP/2.0 ") {
		if len(m.start) < 11 {
			return nil, false
		}
		c, err := strconv.Atoi(m.start[8:11])
		if err != nil || c < 100 || c > 699 {
			return nil, false
		}
		m.code = c
	} else if !strings.HasSuffix(m.start, " SIP/2.0") {
		return nil, false
	}
	for _, ln := range lines[1:] {
		if ln != "" && (ln[0] == ' ' || ln[0] == '\t') && len(m.headers) > 0 {
			m.headers[len(m.headers)-1].raw += "\r\n" + ln
			continue
		}
		name, val, ok := strings.Cut(ln, ":")
		if !ok {
			return nil, false
		}
		n := strings.ToLower(strings.TrimSpace(name))
		if long, ok := compact[n]; ok {
			n = long
		}
		m.headers = append(m.headers, wireHeader{name: n, raw: ln})
		if n == "content-type" {
			ct, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(val)), ";")
			m.ct = strings.TrimSpace(ct)
		}
	}
	return m, true
}

// finding is one leak: where (start line, header index, SDP line), its
// report item and what was found.
type finding struct {
	item    string
	leak    string
	header  int // index in headers, -1: none
	sdpLine int // index of the body line, -1: none
	start   bool
	fixable bool
}

// findings lists the leaks of a message, part by part.
func (p *Policy) findings(m *wireMsg) []finding {
	var fs []finding
	if leak, ok := p.Scan([]byte(m.start)); ok {
		item := ItemStartLine
		if m.code != 0 {
			item = ItemReasonPhrase
		}
		fs = append(fs, finding{item: item, leak: leak, header: -1, sdpLine: -1, start: true, fixable: m.code != 0})
	}
	for i, h := range m.headers {
		if m.code != 0 && echoed[h.name] {
			continue
		}
		if leak, ok := p.Scan([]byte(h.raw)); ok {
			fs = append(fs, finding{item: HeaderItem(h.name), leak: leak, header: i, sdpLine: -1, fixable: !essential[h.name]})
		}
	}
	if _, ok := p.Scan(m.body); !ok {
		return fs
	}
	switch m.ct {
	case "application/sdp":
		for i, ln := range sdpLines(m.body) {
			if leak, ok := p.Scan([]byte(ln)); ok {
				item := ItemBody
				if len(ln) >= 2 && ln[1] == '=' {
					item = SDPItem(ln[:1])
					if ln[0] == 'a' {
						name, _, _ := strings.Cut(ln[2:], ":")
						item = SDPItem(name)
					}
				}
				fixable := len(ln) >= 2 && ln[1] == '=' && strings.IndexByte("aiuepks", ln[0]) >= 0
				fs = append(fs, finding{item: item, leak: leak, header: -1, sdpLine: i, fixable: fixable})
			}
		}
	case "message/sipfrag":
		leak, _ := p.Scan(m.body)
		fs = append(fs, finding{item: ItemSipfrag, leak: leak, header: -1, sdpLine: -1, fixable: true})
	default:
		leak, _ := p.Scan(m.body)
		fs = append(fs, finding{item: ItemBody, leak: leak, header: -1, sdpLine: -1})
	}
	return fs
}

// sdpLines splits a body into lines without their ends.
func sdpLines(body []byte) []string {
	s := strings.ReplaceAll(string(body), "\r\n", "\n")
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// strip removes the fixable findings; false when one is not.
func (p *Policy) strip(m *wireMsg, fs []finding) ([]byte, bool) {
	dropHeader := map[int]bool{}
	dropLine := map[int]bool{}
	start, body := m.start, m.body
	for _, f := range fs {
		switch {
		case !f.fixable:
			return nil, false
		case f.start:
			start = "SIP/2.0 " + strconv.Itoa(m.code) + " " + Phrase(m.code)
		case f.header >= 0:
			dropHeader[f.header] = true
		case f.sdpLine >= 0:
			dropLine[f.sdpLine] = true
		case f.item == ItemSipfrag:
			body = sipfragLine(body)
		}
	}
	if len(dropLine) > 0 {
		var nb []byte
		for i, ln := range sdpLines(body) {
			if dropLine[i] {
				if strings.HasPrefix(ln, "s=") {
					nb = append(nb, "s=-\r\n"...)
				}
				continue
			}
			nb = append(append(nb, ln...), '\r', '\n')
		}
		body = nb
	}
	out := append([]byte(start), '\r', '\n')
	for i, h := range m.headers {
		switch {
		case dropHeader[i]:
		case h.name == "content-length":
			out = append(out, "Content-Length: "+strconv.Itoa(len(body))+"\r\n"...)
		default:
			out = append(append(out, h.raw...), '\r', '\n')
		}
	}
	out = append(out, '\r', '\n')
	return append(out, body...), true
}

// sipfragLine is a sipfrag body reduced to its status line with the RFC
// phrase (a 500 when it has none).
func sipfragLine(body []byte) []byte {
	line, _, _ := strings.Cut(string(body), "\n")
	line = strings.TrimSuffix(line, "\r")
	if !isStatusLine(line) {
		return []byte("SIP/2.0 500 Server Internal Error\r\n")
	}
	code, _ := strconv.Atoi(line[8:11])
	return []byte("SIP/2.0 " + line[8:11] + " " + Phrase(code) + "\r\n")
}
