// Package sdp is sipwall's strict, bounded SDP parser (RFC 8866, formerly
// RFC 4566) and the rewriter that hides one side's media topology from the
// other when the SBC relays media: addresses and ports become the relay's,
// ICE and identity lines go, everything else passes byte for byte.
//
// The body comes from an attacker: Parse refuses anything it does not fully
// understand (ErrMalformed) and anything bigger than MaxSize, MaxLines or
// MaxMedia (ErrTooLarge), so that what Rewrite writes is exactly what was
// checked. Check vets the values of a body from the outside (payload
// types, ports, ptime, counts) before anything inside sees it. See
// README.md for the rules.
package sdp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"unicode/utf8"
)

// Limits of a body. A real offer is a few hundred bytes and a few dozen
// lines; a WebRTC offer with simulcast and many candidates stays under 8 KiB.
const (
	MaxSize  = 32 << 10 // bytes of a body
	MaxLines = 1024
	MaxMedia = 16
)

// Sentinel errors; test with errors.Is. Parse errors name the line number,
// never the line's bytes.
var (
	ErrMalformed = errors.New("sdp: malformed")
	ErrTooLarge  = errors.New("sdp: too large")
	// ErrBadTarget means Rewrite was given an unusable Target: an invalid
	// or unspecified address, too few ports, a port out of range or an
	// origin field that cannot be written on an o= line.
	ErrBadTarget = errors.New("sdp: bad rewrite target")
	// ErrPlain: plain RTP offered where the configuration requires SRTP
	// (the media layer's verdict; the B2BUA answers 488 with a Warning).
	ErrPlain = errors.New("sdp: encrypted media required")
)

// Direction attributes (RFC 3264 section 5.1).
const (
	SendRecv = "sendrecv"
	SendOnly = "sendonly"
	RecvOnly = "recvonly"
	Inactive = "inactive"
)

// Media is one m= section as the relay needs it.
type Media struct {
	Type      string     // "audio", "video", "image", "application"...
	Port      int        // 0: disabled stream
	PortCount int        // the m= "/<count>" suffix (RFC 8866 section 5.14); 1 when absent
	Proto     string     // "RTP/AVP", "RTP/SAVP", "UDP/TLS/RTP/SAVPF", "udptl"...
	Addr      netip.Addr // effective connection address: media-level c= else session-level c=; zero Addr if none
	RTCPPort  int        // from a=rtcp:<port> [IN IP4 <addr>]; 0 if absent
	RTCPAddr  netip.Addr // the a=rtcp address if given
	RTCPMux   bool       // a=rtcp-mux present
	Direction string     // media-level, else session-level, else "sendrecv": sendrecv|sendonly|recvonly|inactive
	Crypto    bool       // a=crypto present (SDES), passed through untouched
	// Fingerprint: a=fingerprint at media or session level (DTLS-SRTP).
	Fingerprint bool
}

// Hold reports whether the stream is active but put on hold the RFC 2543
// way, with an unspecified connection address (0.0.0.0 or ::).
func (m Media) Hold() bool {
	return m.Port != 0 && m.Addr.IsValid() && m.Addr.IsUnspecified()
}

// Origin is the o= line. SessID and Version are kept as the decimal strings
// written, which may exceed 64 bits. Addr is the zero Addr when the o= line
// names a host instead of an address (RFC 3665's examples do).
type Origin struct {
	User            string
	SessID, Version string
	Addr            netip.Addr
}

// kind says what Rewrite does with a line.
type kind uint8

const (
	kindKeep   kind = iota // written byte for byte
	kindDrop               // identity, topology or ICE: never written
	kindOrigin             // o=: replaced
	kindName               // s=: value replaced by "-"
	kindConn               // c=: replaced (session) or dropped/kept unspecified (media)
	kindMedia              // m=: port replaced
	kindRTCP               // a=rtcp: port and address replaced
	kindAddrs              // dropped, and may carry addresses (a=candidate...): scanned by Addrs
)

type line struct {
	text  string
	kind  kind
	media int        // index in Session.media, -1 at session level
	addr  netip.Addr // c= and a=rtcp: the address written, if any
}

// section is one m= section: the public view plus what Rewrite needs.
type section struct {
	Media
	first, end         int // lines[first] is the m= line; end is one past the last
	portStart, portEnd int // the port's bytes in the m= line
	conn               netip.Addr
	hasConn            bool
	hasRTCP            bool
	dir                string
}

// Session is a parsed body. It is immutable after Parse; its methods may be
// called from several goroutines.
type Session struct {
	lines    []line
	size     int // bytes of the body
	origin   Origin
	conn     netip.Addr // session-level c=
	hasConn  bool
	dir      string // session-level direction attribute
	hasName  bool
	hasOrig  bool
	finger   bool // session-level a=fingerprint
	sections []section
}

// Media returns the m= sections in order. The slice is the caller's.
func (s *Session) Media() []Media {
	out := make([]Media, len(s.sections))
	for i := range s.sections {
		out[i] = s.sections[i].Media
		out[i].Fingerprint = out[i].Fingerprint || s.finger
	}
	return out
}

// Attrs returns the values of the attribute name (any case) in m= section
// i, or at session level for i < 0, in order; "" for a flag attribute.
// ICE and other lines that Rewrite drops are there too: the media layer
// reads the peer's ice-ufrag, fingerprint and crypto lines with it.
func (s *Session) Attrs(i int, name string) []string {
	var out []string
	for _, ln := range s.lines {
		if ln.media != i || !strings.HasPrefix(ln.text, "a=") {
			continue
		}
		n, v, _ := strings.Cut(ln.text[2:], ":")
		if strings.EqualFold(n, name) {
			out = append(out, v)
		}
	}
	return out
}

// Origin returns the parsed o= line.
func (s *Session) Origin() Origin { return s.origin }

// Addrs returns every IP literal of the body that reveals where media or
// signalling lives: the o= and c= addresses, a=rtcp addresses, and the
// addresses of a=candidate, a=remote-candidates and a=altc lines (which
// Rewrite removes). Sorted, without duplicates. Names (FQDN, mDNS) are not
// addresses and are not reported.
func (s *Session) Addrs() []netip.Addr {
	var out []netip.Addr
	if s.origin.Addr.IsValid() {
		out = append(out, s.origin.Addr)
	}
	for _, ln := range s.lines {
		switch ln.kind {
		case kindConn, kindRTCP:
			if ln.addr.IsValid() {
				out = append(out, ln.addr)
			}
		case kindAddrs:
			out = appendAttrAddrs(out, ln.text)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// appendAttrAddrs appends the IP literals of an a=candidate (RFC 8839),
// a=remote-candidates or a=altc (RFC 6947) line.
func appendAttrAddrs(out []netip.Addr, text string) []netip.Addr {
	name, val, _ := strings.Cut(text[2:], ":")
	f := strings.Fields(val)
	add := func(s string) {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a.WithZone(""))
		}
	}
	switch {
	case strings.EqualFold(name, "candidate"):
		// foundation component transport priority address port typ type [raddr a rport p]...
		if len(f) > 4 {
			add(f[4])
		}
		for i := 6; i+1 < len(f); i++ {
			if strings.EqualFold(f[i], "raddr") {
				add(f[i+1])
			}
		}
	case strings.EqualFold(name, "remote-candidates"):
		// (component address port)...
		for i := 1; i < len(f); i += 3 {
			add(f[i])
		}
	case strings.EqualFold(name, "altc"):
		// id addrtype address port[/rtcp-port]
		if len(f) > 2 {
			add(f[2])
		}
	}
	return out
}

// Parse checks body and indexes it. Lines end in CRLF or LF; empty lines are
// tolerated only at the end. See README.md for what is refused.
func Parse(body []byte) (*Session, error) {
	if len(body) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(body), MaxSize)
	}
	n := 0
	for _, c := range body {
		if c == '\n' {
			n++
		}
	}
	if len(body) > 0 && body[len(body)-1] != '\n' {
		n++
	}
	if n > MaxLines {
		return nil, fmt.Errorf("%w: %d lines, limit %d", ErrTooLarge, n, MaxLines)
	}
	s := &Session{lines: make([]line, 0, n), size: len(body)}
	text := string(body)
	no, blank := 0, 0
	for rest := text; rest != ""; {
		var ln string
		ln, rest, _ = strings.Cut(rest, "\n")
		no++
		ln = strings.TrimSuffix(ln, "\r")
		if ln == "" {
			if blank == 0 {
				blank = no
			}
			continue
		}
		if blank != 0 {
			return nil, malformed(blank, "empty line")
		}
		if err := s.parseLine(no, ln); err != nil {
			return nil, err
		}
	}
	switch {
	case len(s.lines) == 0:
		return nil, fmt.Errorf("%w: empty body", ErrMalformed)
	case !s.hasOrig:
		return nil, fmt.Errorf("%w: no o= line", ErrMalformed)
	case !s.hasName:
		return nil, fmt.Errorf("%w: no s= line", ErrMalformed)
	}
	for i := range s.sections {
		m := &s.sections[i]
		if i+1 < len(s.sections) {
			m.end = s.sections[i+1].first
		} else {
			m.end = len(s.lines)
		}
		m.Addr = s.conn
		if m.hasConn {
			m.Addr = m.conn
		}
		m.Direction = SendRecv
		if m.dir != "" {
			m.Direction = m.dir
		} else if s.dir != "" {
			m.Direction = s.dir
		}
	}
	return s, nil
}

func malformed(no int, what string) error {
	return fmt.Errorf("%w: line %d: %s", ErrMalformed, no, what)
}

// parseLine checks one non-empty line (terminator removed) and appends it.
func (s *Session) parseLine(no int, text string) error {
	if err := checkChars(text); err != nil {
		return malformed(no, err.Error())
	}
	if len(text) < 2 || text[1] != '=' || text[0] < 'a' || text[0] > 'z' {
		return malformed(no, "not <letter>=<value>")
	}
	first := len(s.lines) == 0
	if first != (text[0] == 'v') {
		return malformed(no, "v= must be the first line, and only it")
	}
	ln := line{text: text, media: len(s.sections) - 1}
	inMedia := ln.media >= 0
	val := text[2:]
	switch text[0] {
	case 'v':
		if val != "0" {
			return malformed(no, "version is not 0")
		}
	case 'o':
		if inMedia || s.hasOrig {
			return malformed(no, "o= repeated or inside a media section")
		}
		o, err := parseOrigin(val)
		if err != nil {
			return malformed(no, err.Error())
		}
		s.origin, s.hasOrig, ln.kind = o, true, kindOrigin
	case 's':
		if inMedia || s.hasName {
			return malformed(no, "s= repeated or inside a media section")
		}
		s.hasName, ln.kind = true, kindName
	case 'i':
		// Session information is free text that often names the PBX; a
		// media title (media level) is kept for the endpoints that show it.
		if !inMedia {
			ln.kind = kindDrop
		}
	case 'u', 'e', 'p':
		// A URI, an e-mail address, a phone number: identity and topology.
		if inMedia {
			return malformed(no, "session-level line inside a media section")
		}
		ln.kind = kindDrop
	case 't', 'r', 'z':
		if inMedia {
			return malformed(no, "session-level line inside a media section")
		}
	case 'b', 'k':
	case 'c':
		a, err := parseConn(val)
		if err != nil {
			return malformed(no, err.Error())
		}
		ln.kind, ln.addr = kindConn, a
		if inMedia {
			m := &s.sections[ln.media]
			if m.hasConn {
				return malformed(no, "c= repeated")
			}
			m.conn, m.hasConn = a, true
		} else {
			if s.hasConn {
				return malformed(no, "c= repeated")
			}
			s.conn, s.hasConn = a, true
		}
	case 'm':
		if len(s.sections) == MaxMedia {
			return fmt.Errorf("%w: line %d: more than %d media", ErrTooLarge, no, MaxMedia)
		}
		m, err := parseMedia(val)
		if err != nil {
			return malformed(no, err.Error())
		}
		m.first = len(s.lines)
		s.sections = append(s.sections, m)
		ln.kind, ln.media = kindMedia, len(s.sections)-1
	case 'a':
		if err := s.parseAttr(&ln); err != nil {
			return malformed(no, err.Error())
		}
	default:
		// RFC 8866 section 5: a parser must ignore or reject the whole
		// description when it meets a type it does not know. We reject.
		return malformed(no, fmt.Sprintf("unknown type %c=", text[0]))
	}
	s.lines = append(s.lines, ln)
	return nil
}

// checkChars refuses control characters other than tab (CR and LF included:
// line ends were removed) and invalid UTF-8.
func checkChars(text string) error {
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			if (c < 0x20 && c != '\t') || c == 0x7f {
				return errors.New("control character")
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(text[i:])
		if r == utf8.RuneError && size == 1 {
			return errors.New("invalid UTF-8")
		}
		if r >= 0x80 && r <= 0x9f {
			return errors.New("control character")
		}
		i += size
	}
	return nil
}

// parseAttr classifies an a= line and records what the relay needs.
func (s *Session) parseAttr(ln *line) error {
	name, val, hasVal := strings.Cut(ln.text[2:], ":")
	if !isToken(name) {
		return errors.New("bad attribute name")
	}
	var m *section
	if ln.media >= 0 {
		m = &s.sections[ln.media]
	}
	switch {
	case strings.EqualFold(name, "candidate"), strings.EqualFold(name, "remote-candidates"),
		strings.EqualFold(name, "altc"):
		ln.kind = kindAddrs
	case strings.EqualFold(name, "end-of-candidates"), hasPrefixFold(name, "ice-"):
		ln.kind = kindDrop
	case strings.EqualFold(name, "rtcp"):
		if m == nil {
			return errors.New("a=rtcp at session level")
		}
		if m.hasRTCP {
			return errors.New("a=rtcp repeated")
		}
		port, addr, err := parseRTCP(val)
		if err != nil {
			return err
		}
		m.hasRTCP, m.RTCPPort, m.RTCPAddr = true, port, addr
		ln.kind, ln.addr = kindRTCP, addr
	case strings.EqualFold(name, "rtcp-mux"):
		if m != nil {
			m.RTCPMux = true
		}
	case strings.EqualFold(name, "crypto"):
		if m != nil {
			m.Crypto = true
		}
	case strings.EqualFold(name, "fingerprint"):
		if m != nil {
			m.Fingerprint = true
		} else {
			s.finger = true
		}
	case !hasVal && isDirection(name):
		dir := &s.dir
		if m != nil {
			dir = &m.dir
		}
		if *dir != "" {
			return errors.New("two direction attributes")
		}
		*dir = strings.ToLower(name)
	}
	return nil
}

func isDirection(name string) bool {
	for _, d := range [...]string{SendRecv, SendOnly, RecvOnly, Inactive} {
		if strings.EqualFold(name, d) {
			return true
		}
	}
	return false
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// parseOrigin reads "<user> <sess-id> <sess-version> IN IP4|IP6 <address>".
// The address may be a host name: o= is replaced anyway, and RFC 3665's
// examples use names.
func parseOrigin(val string) (Origin, error) {
	var f [6]string
	if fields(val, f[:]) != len(f) {
		return Origin{}, errors.New("o= needs 6 fields")
	}
	if !isDigits(f[1]) || !isDigits(f[2]) {
		return Origin{}, errors.New("o= session id or version is not a number")
	}
	ip6, err := addrType(f[3], f[4])
	if err != nil {
		return Origin{}, err
	}
	o := Origin{User: f[0], SessID: f[1], Version: f[2]}
	if a, err := netip.ParseAddr(f[5]); err == nil {
		if err := family(a, ip6); err != nil {
			return Origin{}, err
		}
		o.Addr = a
	} else if !isHostName(f[5]) {
		return Origin{}, errors.New("o= address is neither an IP address nor a host name")
	}
	return o, nil
}

// parseConn reads "IN IP4|IP6 <address>[/<ttl>][/<count>]". The address
// must be an IP literal. A suffix is only legal on a multicast address
// (IPv4: TTL then an optional count; IPv6: a count).
func parseConn(val string) (netip.Addr, error) {
	var f [3]string
	if fields(val, f[:]) != len(f) {
		return netip.Addr{}, errors.New("c= needs 3 fields")
	}
	ip6, err := addrType(f[0], f[1])
	if err != nil {
		return netip.Addr{}, err
	}
	host, suffix, hasSuffix := strings.Cut(f[2], "/")
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, errors.New("c= address is not an IP address (host names are not supported)")
	}
	if err := family(a, ip6); err != nil {
		return netip.Addr{}, err
	}
	if hasSuffix {
		if !a.IsMulticast() {
			return netip.Addr{}, errors.New("c= TTL or count on a unicast address")
		}
		parts := strings.Split(suffix, "/")
		if len(parts) > 2 || (ip6 && len(parts) > 1) {
			return netip.Addr{}, errors.New("c= bad multicast suffix")
		}
		for _, p := range parts {
			if n, ok := atoi(p); !ok || n > 65535 {
				return netip.Addr{}, errors.New("c= bad multicast suffix")
			}
		}
		if ttl, _ := atoi(parts[0]); !ip6 && ttl > 255 {
			return netip.Addr{}, errors.New("c= TTL above 255")
		}
	}
	return a, nil
}

// parseRTCP reads "<port> [IN IP4|IP6 <address>]" (RFC 3605).
func parseRTCP(val string) (int, netip.Addr, error) {
	var f [4]string
	n := fields(val, f[:])
	if n != 1 && n != 4 {
		return 0, netip.Addr{}, errors.New("a=rtcp needs a port and an optional address")
	}
	port, ok := atoi(f[0])
	if !ok || port > 65535 {
		return 0, netip.Addr{}, errors.New("a=rtcp port out of range")
	}
	if n == 1 {
		return port, netip.Addr{}, nil
	}
	ip6, err := addrType(f[1], f[2])
	if err != nil {
		return 0, netip.Addr{}, err
	}
	a, err := netip.ParseAddr(f[3])
	if err != nil {
		return 0, netip.Addr{}, errors.New("a=rtcp address is not an IP address")
	}
	if err := family(a, ip6); err != nil {
		return 0, netip.Addr{}, err
	}
	return port, a, nil
}

// parseMedia reads "<media> <port>[/<count>] <proto> <fmt> ...".
func parseMedia(val string) (section, error) {
	var m section
	var f [3]string
	i := 0
	for k := range f {
		for i < len(val) && val[i] == ' ' {
			i++
		}
		start := i
		for i < len(val) && val[i] != ' ' {
			i++
		}
		f[k] = val[start:i]
		if k == 1 {
			m.portStart, m.portEnd = 2+start, 2+i
		}
	}
	nfmt := 0
	for ft := range strings.SplitSeq(val[i:], " ") {
		if ft == "" {
			continue // the separator and trailing spaces
		}
		if !isToken(ft) {
			return m, errors.New("m= bad format")
		}
		nfmt++
	}
	if nfmt == 0 {
		return m, errors.New("m= needs <media> <port> <proto> <fmt>...")
	}
	if !isToken(f[0]) {
		return m, errors.New("m= bad media type")
	}
	port, count, hasCount := strings.Cut(f[1], "/")
	p, ok := atoi(port)
	if !ok || p > 65535 {
		return m, errors.New("m= port out of range")
	}
	m.Port, m.PortCount = p, 1
	if hasCount {
		// The count stays in the m= line; bound it like a port.
		if c, ok := atoi(count); ok && c >= 1 && c <= 65535 {
			m.PortCount = c
		} else {
			return m, errors.New("m= bad port count")
		}
		m.portEnd = m.portStart + len(port)
	}
	for part := range strings.SplitSeq(f[2], "/") {
		if !isToken(part) {
			return m, errors.New("m= bad proto")
		}
	}
	m.Type, m.Proto = f[0], f[2]
	return m, nil
}

// addrType checks "IN" and "IP4"/"IP6" and reports IPv6.
func addrType(nettype, addrtype string) (bool, error) {
	if !strings.EqualFold(nettype, "IN") {
		return false, errors.New("network type is not IN")
	}
	switch {
	case strings.EqualFold(addrtype, "IP4"):
		return false, nil
	case strings.EqualFold(addrtype, "IP6"):
		return true, nil
	}
	return false, errors.New("address type is not IP4 or IP6")
}

// family checks that a matches the declared address type and has no zone.
func family(a netip.Addr, ip6 bool) error {
	if a.Zone() != "" {
		return errors.New("address with a zone")
	}
	if a.Is6() != ip6 {
		return errors.New("address does not match its address type")
	}
	return nil
}

// fields splits s at runs of spaces and tabs into dst without allocating.
// It returns the number of fields, len(dst)+1 when there are more.
func fields(s string, dst []string) int {
	n := 0
	for i := 0; i < len(s); {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i == len(s) {
			break
		}
		start := i
		for i < len(s) && s[i] != ' ' && s[i] != '\t' {
			i++
		}
		if n == len(dst) {
			return n + 1
		}
		dst[n] = s[start:i]
		n++
	}
	return n
}

// atoi reads 1 to 5 decimal digits, no sign.
func atoi(s string) (int, bool) {
	if len(s) == 0 || len(s) > 5 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isToken reports a non-empty RFC 8866 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0x21, c >= 0x23 && c <= 0x27, c == 0x2a, c == 0x2b, c == 0x2d, c == 0x2e,
			c >= '0' && c <= '9', c >= 'A' && c <= 'Z', c >= 0x5e && c <= 0x7e:
		default:
			return false
		}
	}
	return true
}

// isHostName accepts the letters, digits, dots and hyphens of a DNS name.
func isHostName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}
