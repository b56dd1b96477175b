package sdp

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Bounds of Check: what a body from the outside may carry toward the
// inside. Parse's limits (MaxSize, MaxLines) apply too. See README.md
// ("Inbound checks") for why each value.
const (
	// MaxInboundMedia is the number of m= lines: audio, video, a second
	// video (slides), BFCP and T.38 stay far below.
	MaxInboundMedia = 8
	// MaxFormats is the number of formats on one m= line: the stock
	// limit of pjmedia (the SDP stack of Asterisk's chan_pjsip and of
	// many phones); SIP phones offer at most about 15.
	MaxFormats = 32
	// MaxAttributes is the number of a= lines at session level and in
	// each media section.
	MaxAttributes = 128
	// MaxBandwidths is the number of b= lines per level (pjmedia's
	// limit; CT, AS, TIAS, RS and RR are the types in use).
	MaxBandwidths = 4
	// MaxLineLength is the bytes of one line, terminator excluded: the
	// longest real lines (a=fingerprint:sha-512, a=fmtp of H.264 with
	// parameter sets, a=crypto with lifetime and MKI) stay under 300.
	MaxLineLength = 1024
	// MaxPortCount bounds the m= "/<count>" suffix (layered encoding,
	// RFC 8866 section 5.14), which nobody sends to a PBX.
	MaxPortCount = 8
	// MinPtime and MaxPtime bound a=ptime in milliseconds: RFC 3551
	// section 4.2 asks receivers to take packets of up to 200 ms, and no
	// audio format packs more; the shortest real interval is Opus' 2.5 ms.
	MinPtime, MaxPtime = 1, 200
	// MaxMaxptime bounds a=maxptime in milliseconds (3GPP MTSI clients
	// write 240; a second of audio per packet is no packetisation at all).
	MaxMaxptime = 1000
	// MaxBandwidthValue bounds a b= value (kb/s or b/s by type): it keeps
	// within the 32-bit signed integers some stacks parse it into.
	MaxBandwidthValue = 1_000_000_000
	// MaxClockRate bounds an rtpmap clock rate in Hz (video uses 90000,
	// the highest audio rates 192000).
	MaxClockRate = 1_000_000
	// MaxChannels bounds an rtpmap's audio channel count.
	MaxChannels = 255
)

// ErrRefused means Check found a body that must not be forwarded: the
// request is answered 488 Not Acceptable Here. The error is a
// *CheckError.
var ErrRefused = errors.New("sdp: refused")

// CheckError says why Check refused a body. Reason is made of the
// checker's own words and Line is a number: neither carries a byte of the
// body, so both may go into a Warning header and the decision log.
type CheckError struct {
	Line   int // 1-based; 0 for the body as a whole
	Reason string
}

func (e *CheckError) Error() string {
	return "sdp: refused: " + e.Warning()
}

// Unwrap makes errors.Is(err, ErrRefused) hold.
func (e *CheckError) Unwrap() error { return ErrRefused }

// Warning is the text of a Warning header (code 399) for the refusal.
func (e *CheckError) Warning() string {
	if e.Line == 0 {
		return "SDP " + e.Reason
	}
	return fmt.Sprintf("SDP line %d: %s", e.Line, e.Reason)
}

// Dropped is an attribute or bandwidth line that Check removed.
type Dropped struct {
	Line   int // 1-based, in the body given to Check
	Reason string
}

// Check vets a session description arriving from the outside before it is
// forwarded inside. Values that give the receiver no usable session, or
// that are shaped like an attack on its parser, refuse the whole body
// (*CheckError, wrapping ErrRefused). Optional lines that are only wrong
// (a codec attribute for a payload type the m= line does not list, an
// absurd ptime, a malformed b=) are removed: receivers ignore attributes
// they do not know (RFC 8866 section 5.13), so the session stays the one
// offered. The table of checks is in README.md.
//
// out is body itself when nothing was removed, else a new slice with the
// other lines byte for byte. Check does not need Parse: it also guards
// bodies that cross without the media relay.
func Check(body []byte) (out []byte, dropped []Dropped, err error) {
	if len(body) > MaxSize {
		return nil, nil, &CheckError{Reason: fmt.Sprintf("body larger than %d bytes", MaxSize)}
	}
	var ck checker
	text := string(body)
	no, blank := 0, 0
	var keep []bool // nil until a line is dropped; then one entry per line
	for pos := 0; pos < len(text); {
		end := strings.IndexByte(text[pos:], '\n')
		next := len(text)
		if end >= 0 {
			next = pos + end + 1
			end += pos
		} else {
			end = len(text)
		}
		ln := strings.TrimSuffix(text[pos:end], "\r")
		no++
		if no > MaxLines {
			return nil, nil, &CheckError{Reason: fmt.Sprintf("more than %d lines", MaxLines)}
		}
		if ln == "" {
			if blank == 0 {
				blank = no
			}
			pos = next
			if keep != nil {
				keep = append(keep, true)
			}
			continue
		}
		if blank != 0 {
			return nil, nil, &CheckError{Line: blank, Reason: "empty line inside the body"}
		}
		drop, err := ck.line(no, ln)
		if err != nil {
			return nil, nil, err
		}
		if drop != "" {
			dropped = append(dropped, Dropped{Line: no, Reason: drop})
			if keep == nil {
				keep = make([]bool, no-1, no+16)
				for i := range keep {
					keep[i] = true
				}
			}
		}
		if keep != nil {
			keep = append(keep, drop == "")
		}
		pos = next
	}
	if ck.lines == 0 {
		return nil, nil, &CheckError{Reason: "body empty"}
	}
	if keep == nil {
		return body, nil, nil
	}
	out = make([]byte, 0, len(body))
	i := 0
	for pos := 0; pos < len(text); i++ {
		next := len(text)
		if end := strings.IndexByte(text[pos:], '\n'); end >= 0 {
			next = pos + end + 1
		}
		if keep[i] {
			out = append(out, text[pos:next]...)
		}
		pos = next
	}
	return out, dropped, nil
}

// checker is Check's state while it walks the lines of one body.
type checker struct {
	lines   int // non-empty lines seen
	media   int // m= lines seen
	attrs   int // a= lines at the current level
	bws     int // b= lines at the current level
	rtp     bool
	pts     [128]bool // payload types on the current m= line (RTP profiles)
	mapped  [128]bool // payload types with an rtpmap in the current section
	formats []string  // formats on the current m= line (other profiles)
}

func refuse(no int, format string, args ...any) error {
	return &CheckError{Line: no, Reason: fmt.Sprintf(format, args...)}
}

// line checks one non-empty line without its terminator. It returns the
// reason to drop it ("" to keep it) or a refusal.
func (ck *checker) line(no int, ln string) (string, error) {
	if len(ln) > MaxLineLength {
		return "", refuse(no, "line longer than %d bytes", MaxLineLength)
	}
	for i := 0; i < len(ln); i++ {
		if ln[i] == 0 || ln[i] == '\r' {
			return "", refuse(no, "NUL or CR inside the line")
		}
	}
	if err := checkChars(ln); err != nil {
		return "", refuse(no, "%s", err.Error())
	}
	if len(ln) < 2 || ln[1] != '=' || ln[0] < 'a' || ln[0] > 'z' {
		return "", refuse(no, "not <type>=<value>")
	}
	ck.lines++
	if (ck.lines == 1) != (ln[0] == 'v') || (ln[0] == 'v' && ln[2:] != "0") {
		return "", refuse(no, "the first line, and only it, must be v=0")
	}
	val := ln[2:]
	switch ln[0] {
	case 'v', 'o', 's', 'i', 'u', 'e', 'p', 't', 'r', 'z', 'k':
		return "", nil
	case 'c':
		if err := checkConnection(val); err != nil {
			return "", refuse(no, "c= %s", err.Error())
		}
		return "", nil
	case 'b':
		ck.bws++
		if ck.bws > MaxBandwidths {
			return "", refuse(no, "more than %d b= lines at one level", MaxBandwidths)
		}
		if !validBandwidth(val) {
			return "b= not <type>:<number up to 10^9>", nil
		}
		return "", nil
	case 'm':
		return "", ck.mediaLine(no, val)
	case 'a':
		return ck.attribute(no, val)
	}
	return "", refuse(no, "unknown type %c=", ln[0])
}

// mediaLine checks "<media> <port>[/<count>] <proto> <fmt>..." and starts
// a new media section.
func (ck *checker) mediaLine(no int, val string) error {
	ck.media++
	if ck.media > MaxInboundMedia {
		return refuse(no, "more than %d m= lines", MaxInboundMedia)
	}
	ck.attrs, ck.bws = 0, 0
	ck.pts, ck.mapped = [128]bool{}, [128]bool{}
	ck.formats = ck.formats[:0]
	var f [3]string
	rest := val
	for k := range f {
		rest = strings.TrimLeft(rest, " ")
		i := strings.IndexByte(rest, ' ')
		if i < 0 {
			i = len(rest)
		}
		f[k], rest = rest[:i], rest[i:]
	}
	if !isToken(f[0]) {
		return refuse(no, "m= bad media type")
	}
	port, count, hasCount := strings.Cut(f[1], "/")
	p, ok := atoi(port)
	if !ok || p > 65535 {
		return refuse(no, "m= port not 0-65535")
	}
	ck.rtp = false
	for part := range strings.SplitSeq(f[2], "/") {
		if !isToken(part) {
			return refuse(no, "m= bad transport protocol")
		}
		if strings.EqualFold(part, "RTP") {
			ck.rtp = true
		}
	}
	if hasCount {
		n, ok := atoi(count)
		if !ok || n < 1 || n > MaxPortCount {
			return refuse(no, "m= port count not 1-%d", MaxPortCount)
		}
		// RTP takes a port pair per stream (RFC 8866 section 5.14).
		last := p + n - 1
		if ck.rtp {
			last = p + 2*n - 1
		}
		if last > 65535 {
			return refuse(no, "m= port range beyond 65535")
		}
	}
	n := 0
	for ft := range strings.SplitSeq(rest, " ") {
		if ft == "" {
			continue
		}
		n++
		if n > MaxFormats {
			return refuse(no, "m= more than %d formats", MaxFormats)
		}
		if !ck.rtp {
			if !isToken(ft) {
				return refuse(no, "m= bad format")
			}
			for _, seen := range ck.formats {
				if seen == ft {
					return refuse(no, "m= format listed twice")
				}
			}
			ck.formats = append(ck.formats, ft)
			continue
		}
		pt, ok := payloadType(ft)
		if !ok {
			return refuse(no, "m= payload type not 0-127")
		}
		if ck.pts[pt] {
			return refuse(no, "m= payload type listed twice")
		}
		ck.pts[pt] = true
	}
	if n == 0 {
		return refuse(no, "m= without a format")
	}
	return nil
}

// attribute checks "<name>[:<value>]". It returns the reason to drop the
// line, or a refusal.
func (ck *checker) attribute(no int, val string) (string, error) {
	ck.attrs++
	if ck.attrs > MaxAttributes {
		return "", refuse(no, "more than %d a= lines at one level", MaxAttributes)
	}
	name, v, _ := strings.Cut(val, ":")
	if !isToken(name) {
		return "", refuse(no, "bad attribute name")
	}
	media := ck.media > 0
	switch {
	case strings.EqualFold(name, "rtpmap"):
		if !media {
			return "rtpmap at session level", nil
		}
		if !ck.rtp {
			return "rtpmap in a media section that is not RTP", nil
		}
		pt, rest, ok := ck.listedPT(v)
		if !ok {
			return "rtpmap payload type not on its m= line", nil
		}
		if ck.mapped[pt] {
			return "rtpmap repeated for one payload type", nil
		}
		if !validEncoding(rest) {
			return "rtpmap not <name>/<clock rate>[/<channels>] in range", nil
		}
		ck.mapped[pt] = true
	case strings.EqualFold(name, "fmtp"), strings.EqualFold(name, "rtcp-fb"):
		if !media {
			return strings.ToLower(name) + " at session level", nil
		}
		fmtName := strings.ToLower(name)
		if fmtName == "rtcp-fb" && strings.HasPrefix(v, "* ") {
			return "", nil // every payload type of the line (RFC 4585 section 4.2)
		}
		if !ck.rtp {
			ft, _, _ := strings.Cut(v, " ")
			if !slicesContains(ck.formats, ft) {
				return fmtName + " format not on its m= line", nil
			}
			return "", nil
		}
		if _, _, ok := ck.listedPT(v); !ok {
			return fmtName + " payload type not on its m= line", nil
		}
	case strings.EqualFold(name, "ptime"):
		if ms, ok := millis(v); !ok || ms < MinPtime*1000 || ms > MaxPtime*1000 {
			return fmt.Sprintf("ptime not %d-%d ms", MinPtime, MaxPtime), nil
		}
	case strings.EqualFold(name, "maxptime"):
		if ms, ok := millis(v); !ok || ms < MinPtime*1000 || ms > MaxMaxptime*1000 {
			return fmt.Sprintf("maxptime not %d-%d ms", MinPtime, MaxMaxptime), nil
		}
	case strings.EqualFold(name, "rtcp"):
		if !media {
			return "rtcp at session level", nil
		}
		if _, _, err := parseRTCP(v); err != nil {
			return "rtcp not <port 0-65535> [IN IP4|IP6 <address>]", nil
		}
	}
	return "", nil
}

// listedPT reads the payload type that starts an rtpmap, fmtp or rtcp-fb
// value and reports whether the current m= line lists it.
func (ck *checker) listedPT(v string) (int, string, bool) {
	ft, rest, _ := strings.Cut(v, " ")
	pt, ok := payloadType(ft)
	if !ok || !ck.pts[pt] {
		return 0, "", false
	}
	return pt, rest, true
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// payloadType reads an RTP payload type: 1 to 3 digits, 0-127.
func payloadType(s string) (int, bool) {
	if len(s) > 3 {
		return 0, false
	}
	n, ok := atoi(s)
	return n, ok && n <= 127
}

// validEncoding checks "<encoding name>/<clock rate>[/<channels>]".
func validEncoding(s string) bool {
	name, rest, ok := strings.Cut(s, "/")
	if !ok || !isToken(name) {
		return false
	}
	clock, chans, hasChans := strings.Cut(rest, "/")
	if c, ok := atoi7(clock); !ok || c < 1 || c > MaxClockRate {
		return false
	}
	if hasChans {
		if n, ok := atoi(chans); !ok || n < 1 || n > MaxChannels {
			return false
		}
	}
	return true
}

// atoi7 reads 1 to 7 decimal digits.
func atoi7(s string) (int, bool) {
	if len(s) == 0 || len(s) > 7 || !isDigits(s) {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

// millis reads a ptime value, "<digits>[.<digits>]" (RFC 8866 allows a
// fraction: Opus' 2.5 ms), in thousandths of a millisecond.
func millis(s string) (int, bool) {
	whole, frac, hasFrac := strings.Cut(s, ".")
	if len(whole) == 0 || len(whole) > 4 || !isDigits(whole) {
		return 0, false
	}
	if hasFrac && (len(frac) == 0 || len(frac) > 3 || !isDigits(frac)) {
		return 0, false
	}
	n := 0
	for i := 0; i < len(whole); i++ {
		n = n*10 + int(whole[i]-'0')
	}
	n *= 1000
	scale := 100
	for i := 0; i < len(frac); i++ {
		n += int(frac[i]-'0') * scale
		scale /= 10
	}
	return n, true
}

// validBandwidth checks "<bwtype>:<bandwidth>" with a number up to
// MaxBandwidthValue.
func validBandwidth(val string) bool {
	typ, bw, ok := strings.Cut(val, ":")
	if !ok || !isToken(typ) || len(bw) == 0 || len(bw) > 10 || !isDigits(bw) {
		return false
	}
	n := 0
	for i := 0; i < len(bw); i++ {
		n = n*10 + int(bw[i]-'0')
	}
	return n <= MaxBandwidthValue
}

// checkConnection checks "IN IP4|IP6 <address>[/<ttl>][/<count>]". Unlike
// the relay's parser it takes a host name (RFC 8866 allows it; the relay
// refuses it on its own).
func checkConnection(val string) error {
	if _, err := parseConn(val); err == nil {
		return nil
	}
	var f [3]string
	if fields(val, f[:]) != len(f) {
		return errors.New("not IN IP4|IP6 <address>")
	}
	ip6, err := addrType(f[0], f[1])
	if err != nil {
		return err
	}
	host, _, _ := strings.Cut(f[2], "/")
	if a, err := netip.ParseAddr(host); err == nil {
		if err := family(a, ip6); err != nil {
			return err
		}
		return errors.New("bad TTL or count")
	}
	if strings.Contains(f[2], "/") || !isHostName(host) || isDigitsDots(host) {
		return errors.New("address neither an IP address of its type nor a host name")
	}
	return nil
}

// isDigitsDots reports a name made of digits and dots only: an IPv4
// address gone wrong (999.1.1.1), not a host name.
func isDigitsDots(s string) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '.' {
			return false
		}
	}
	return true
}
