// Package wire checks raw SIP bytes before they reach sipgo's parser.
//
// It is a leaf package (it imports nothing of sipwall) so that the server in
// package sbc can call it from its read filter without an import cycle: the
// sanity chain layer imports sbc, so sbc cannot import sanity.
//
// PreParse is a pure function: no allocation, no error, on any input. It
// rejects what sipgo would accept although RFC 3261 forbids it and what
// cannot be checked any more once parsed (sipgo keeps no raw bytes):
// control characters, framing lies in Content-Length, a CSeq method that only
// differs in case (sipgo upper-cases the request method), unquoted display
// names with separators, URI headers outside angle brackets.
package wire

import "bytes"

// DefaultMaxSize is the size cap used when PreParse is given maxSize <= 0:
// the largest UDP payload, and sipgo's own ParseMaxMessageLength.
const DefaultMaxSize = 65535

// Action is what the caller does with the bytes.
type Action uint8

const (
	// Accept: hand Result.Data (not the input) to the parser.
	Accept Action = iota
	// Drop: discard silently; count Result.Reason.
	Drop
	// Keepalive: a CRLF keepalive (RFC 5626 3.5.1); answer "\r\n" when
	// Result.Pong, otherwise ignore.
	Keepalive
)

func (a Action) String() string {
	switch a {
	case Accept:
		return "accept"
	case Drop:
		return "drop"
	case Keepalive:
		return "keepalive"
	}
	return "unknown"
}

// Reason says why PreParse dropped a message. Its String is the counter key.
type Reason uint8

// Reasons for a drop. The zero value is "none" (accepted or keepalive).
const (
	ReasonNone             Reason = iota
	ReasonEmpty                   // no bytes, or only line breaks that are no keepalive
	ReasonTooLarge                // larger than the size cap
	ReasonStartLine               // first line is neither a request line nor SIP/2.0 status line
	ReasonLineEnding              // CR without LF, LF without CR
	ReasonControlChar             // NUL, DEL or another control character (except HTAB) in the header section
	ReasonHeaderSyntax            // header line without colon, header name not a token, continuation without header
	ReasonNoHeaderEnd             // header section not terminated by an empty line
	ReasonContentLength           // Content-Length not 1*DIGIT
	ReasonDupContentLength        // Content-Length (or l) more than once
	ReasonMissingLength           // stream transport without Content-Length (RFC 3261 18.3)
	ReasonTruncatedBody           // Content-Length larger than the bytes after the header section
	ReasonMethodCase              // CSeq method equals the request method only ignoring case
	ReasonAddressSyntax           // From/To/Contact: unquoted display name not tokens, unbalanced quote or '<', '?' outside <>
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonNone:             "none",
	ReasonEmpty:            "empty",
	ReasonTooLarge:         "too-large",
	ReasonStartLine:        "start-line",
	ReasonLineEnding:       "line-ending",
	ReasonControlChar:      "control-char",
	ReasonHeaderSyntax:     "header-syntax",
	ReasonNoHeaderEnd:      "no-header-end",
	ReasonContentLength:    "content-length",
	ReasonDupContentLength: "dup-content-length",
	ReasonMissingLength:    "missing-content-length",
	ReasonTruncatedBody:    "truncated-body",
	ReasonMethodCase:       "method-case",
	ReasonAddressSyntax:    "address-syntax",
}

// String returns the counter key of r.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Reasons lists every reason except ReasonNone, for registering counters.
func Reasons() []Reason {
	out := make([]Reason, 0, numReasons-1)
	for r := ReasonNone + 1; r < numReasons; r++ {
		out = append(out, r)
	}
	return out
}

// Result of PreParse.
type Result struct {
	Action Action
	Reason Reason
	// Pong is set for a Keepalive on a stream transport that was a ping
	// ("\r\n\r\n"): answer with "\r\n" (RFC 5626 3.5.1). UDP keepalives are
	// only ignored (RFC 5626 uses STUN there; nothing is answered).
	Pong bool
	// Response is set when the start line is a status line.
	Response bool
	// Data is the first message only, a sub-slice of the input: bytes after
	// the Content-Length body of a datagram are cut (RFC 4475 dblreq: a
	// trailing second message is never processed). Nil unless Accept.
	Data []byte
}

// IsStream tells whether transport is a byte stream (TCP, TLS, SCTP) as
// opposed to message-framed (UDP, and WebSocket where one frame is one
// message, RFC 7118).
func IsStream(transport string) bool {
	return equalFold(transport, "tcp") || equalFold(transport, "tls") || equalFold(transport, "sctp") || equalFold(transport, "tls-sctp")
}

// PreParse checks one whole message (a datagram, a WebSocket message) before
// parsing.
//
// On stream transports it expects one complete framed message too: it must
// NOT be given raw TCP reads (sipgo's read filter sees arbitrary segments on
// streams), where only the sanity layer after parsing applies. For streams,
// leading CRLFs are skipped (RFC 3261 7.5) and Content-Length is required.
func PreParse(transport string, data []byte, maxSize int) Result {
	stream := IsStream(transport)
	if len(data) == 0 {
		return drop(ReasonEmpty)
	}
	if isKeepalive(data) {
		return Result{Action: Keepalive, Pong: stream && len(data) == 4}
	}
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if len(data) > maxSize {
		return drop(ReasonTooLarge)
	}
	start := 0
	if stream {
		for start+1 < len(data) && data[start] == '\r' && data[start+1] == '\n' {
			start += 2
		}
	}
	msg := data[start:]
	if len(msg) == 0 {
		return drop(ReasonEmpty)
	}

	eol := bytes.IndexByte(msg, '\n')
	if eol < 1 || msg[eol-1] != '\r' {
		if eol < 0 {
			return drop(ReasonStartLine)
		}
		return drop(ReasonLineEnding)
	}
	line := msg[:eol-1]
	if r := scanText(line); r != ReasonNone {
		return drop(r)
	}
	var method []byte
	resp := false
	switch {
	case isStatusLine(line):
		resp = true
	default:
		m, ok := requestLine(line)
		if !ok {
			return drop(ReasonStartLine)
		}
		method = m
	}

	h := headerScan{data: msg, pos: eol + 1}
	if r := h.run(); r != ReasonNone {
		return drop(r)
	}
	if method != nil && h.cseqMethod != nil && !bytes.Equal(h.cseqMethod, method) && bytes.EqualFold(h.cseqMethod, method) {
		return drop(ReasonMethodCase)
	}

	rest := len(msg) - h.end
	end := len(msg)
	switch {
	case h.clCount == 1:
		if h.contentLength > uint64(rest) {
			return drop(ReasonTruncatedBody)
		}
		end = h.end + int(h.contentLength)
	case stream:
		return drop(ReasonMissingLength)
	}
	return Result{Action: Accept, Response: resp, Data: msg[:end]}
}

func drop(r Reason) Result { return Result{Action: Drop, Reason: r} }

// isKeepalive reports a CRLF ping or pong: "\r\n" or "\r\n\r\n".
func isKeepalive(data []byte) bool {
	switch len(data) {
	case 2:
		return data[0] == '\r' && data[1] == '\n'
	case 4:
		return data[0] == '\r' && data[1] == '\n' && data[2] == '\r' && data[3] == '\n'
	}
	return false
}

// scanText finds bytes that never belong in a SIP header section line:
// control characters except HTAB, and lone CR/LF (the caller passes lines
// without their CRLF).
func scanText(b []byte) Reason {
	for _, c := range b {
		if c == '\r' || c == '\n' {
			return ReasonLineEnding
		}
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return ReasonControlChar
		}
	}
	return ReasonNone
}

// isStatusLine: "SIP/2.0" SP 3DIGIT SP Reason-Phrase. Only version 2.0 is
// accepted here: a response of another version cannot match anything we sent.
func isStatusLine(line []byte) bool {
	const prefix = "SIP/2.0 "
	if len(line) < len(prefix)+4 || string(line[:len(prefix)]) != prefix {
		return false
	}
	code := line[len(prefix):]
	if code[0] < '1' || code[0] > '6' || !isDigit(code[1]) || !isDigit(code[2]) || code[3] != ' ' {
		return false
	}
	// The reason phrase may be empty (RFC 4475 noreason) and may hold
	// UTF-8; control characters were refused by scanText.
	return true
}

// requestLine checks Method SP Request-URI SP SIP-Version with exactly one
// SP each (RFC 3261 25.1; RFC 4475 lwsstart, lwsruri, trws) and returns the
// method.
func requestLine(line []byte) ([]byte, bool) {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 < 1 {
		return nil, false
	}
	method := line[:sp1]
	if !isToken(method) {
		return nil, false
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 < 1 {
		return nil, false
	}
	if !isRequestURI(rest[:sp2]) || !uriParamsUnique(rest[:sp2]) || !isVersion(rest[sp2+1:]) {
		return nil, false
	}
	return method, true
}

// isVersion: "SIP/" 1*DIGIT "." 1*DIGIT, any digits: a wrong version is a
// well-formed request that earns a 505 from the sanity layer, not a drop.
// Digits are bounded to keep "version" from being a place to hide data.
func isVersion(v []byte) bool {
	if len(v) < 7 || string(v[:4]) != "SIP/" {
		return false
	}
	v = v[4:]
	dot := bytes.IndexByte(v, '.')
	return dot >= 1 && dot <= 3 && allDigits(v[:dot]) && len(v)-dot-1 >= 1 && len(v)-dot-1 <= 3 && allDigits(v[dot+1:])
}

// isRequestURI: scheme ":" then URI characters only (RFC 3261 25.1 SIP-URI
// and RFC 2396 absoluteURI). Excludes "<>" (RFC 4475 ltgtruri), quotes,
// backslash and non-ASCII, which no Request-URI contains unescaped.
func isRequestURI(u []byte) bool {
	colon := bytes.IndexByte(u, ':')
	if colon < 1 || colon+1 >= len(u) || !isAlpha(u[0]) {
		return false
	}
	for _, c := range u[1:colon] {
		if !isAlpha(c) && !isDigit(c) && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	for _, c := range u[colon+1:] {
		if !uriChar[c] {
			return false
		}
	}
	return true
}

// headerScan walks the header section once.
type headerScan struct {
	data []byte
	pos  int // start of the next header line
	end  int // index just past the empty line

	clCount       int
	contentLength uint64
	cseqMethod    []byte
}

// run scans header fields until the empty line. Each field is its first line
// plus continuation lines (starting with SP or HTAB, RFC 3261 7.3.1).
func (h *headerScan) run() Reason {
	d := h.data
	first := true
	for {
		if h.pos >= len(d) {
			return ReasonNoHeaderEnd
		}
		if d[h.pos] == '\r' {
			if h.pos+1 < len(d) && d[h.pos+1] == '\n' {
				h.end = h.pos + 2
				return ReasonNone
			}
			return ReasonLineEnding
		}
		if d[h.pos] == ' ' || d[h.pos] == '\t' {
			// A continuation line with no field before it (one right
			// after the start line).
			if first {
				return ReasonHeaderSyntax
			}
		}
		first = false
		fieldStart := h.pos
		lend, r := lineEnd(d, h.pos)
		if r != ReasonNone {
			return r
		}
		colon := bytes.IndexByte(d[fieldStart:lend], ':')
		if colon < 0 {
			return ReasonHeaderSyntax
		}
		colon += fieldStart
		fieldEnd := lend
		next := lend + 2
		for next < len(d) && (d[next] == ' ' || d[next] == '\t') {
			e, r := lineEnd(d, next)
			if r != ReasonNone {
				return r
			}
			fieldEnd = e
			next = e + 2
		}
		name := trimRight(d[fieldStart:colon])
		if !isToken(name) {
			return ReasonHeaderSyntax
		}
		if r := h.field(name, d[colon+1:fieldEnd]); r != ReasonNone {
			return r
		}
		h.pos = next
	}
}

// lineEnd returns the index of the CR ending the line starting at i,
// refusing control characters and lone CR or LF on the way.
func lineEnd(d []byte, i int) (int, Reason) {
	for j := i; j < len(d); j++ {
		c := d[j]
		switch {
		case c == '\r':
			if j+1 < len(d) && d[j+1] == '\n' {
				return j, ReasonNone
			}
			if j+1 == len(d) {
				return 0, ReasonNoHeaderEnd
			}
			return 0, ReasonLineEnding
		case c == '\n':
			return 0, ReasonLineEnding
		case (c < 0x20 && c != '\t') || c == 0x7f:
			return 0, ReasonControlChar
		}
	}
	return 0, ReasonNoHeaderEnd
}

// field looks at the few headers whose raw form matters. value may span
// folded lines; CR and LF in it are folding and count as white space.
func (h *headerScan) field(name, value []byte) Reason {
	switch {
	case equalFoldB(name, "content-length") || equalFoldB(name, "l"):
		h.clCount++
		if h.clCount > 1 {
			return ReasonDupContentLength
		}
		v := trimLWS(value)
		if len(v) == 0 {
			return ReasonContentLength
		}
		var n uint64
		for _, c := range v {
			if !isDigit(c) {
				return ReasonContentLength
			}
			// Saturate instead of overflowing: any value this large is
			// beyond every datagram and stream limit anyway.
			if n < 1<<40 {
				n = n*10 + uint64(c-'0')
			}
		}
		h.contentLength = n
	case equalFoldB(name, "cseq"):
		v := trimLWS(value)
		i := 0
		for i < len(v) && isDigit(v[i]) {
			i++
		}
		h.cseqMethod = trimLWS(v[i:])
	case equalFoldB(name, "from") || equalFoldB(name, "f") || equalFoldB(name, "to") || equalFoldB(name, "t"):
		if !addressOK(trimLWS(value), false) {
			return ReasonAddressSyntax
		}
	case equalFoldB(name, "contact") || equalFoldB(name, "m"):
		if !addressOK(trimLWS(value), true) {
			return ReasonAddressSyntax
		}
	}
	return ReasonNone
}

// addressOK checks the parts of name-addr / addr-spec that sipgo cannot be
// asked about after parsing (RFC 3261 20.10, 25.1):
//   - an unquoted display name is tokens and white space only (RFC 4475
//     baddn: "Bell, Alexander <sip:...>"), a quoted one is terminated
//     (quotbal);
//   - an addr-spec without <> has no '?' (URI headers need the brackets,
//     RFC 4475 regbadct);
//   - every '<' is closed.
//
// With list set (Contact), values are separated by commas outside quotes
// and brackets.
func addressOK(v []byte, list bool) bool {
	i := 0
	for {
		// One value: [display-name] then <uri> or a bare addr-spec,
		// then header parameters.
		for i < len(v) && isLWS(v[i]) {
			i++
		}
		displayTokens := true
		bracket := false
		question := false
		params := -1 // start of the header parameters
	value:
		for i < len(v) {
			c := v[i]
			switch {
			case c == '"':
				j, ok := skipQuoted(v, i)
				if !ok {
					return false
				}
				i = j
				continue
			case c == '<' && !bracket:
				if !displayTokens {
					return false
				}
				end := bytes.IndexByte(v[i:], '>')
				if end < 0 || !uriParamsUnique(v[i+1:i+end]) {
					return false
				}
				i += end + 1
				bracket = true
				params = i
				continue
			case c == ',' && list:
				break value
			case c == '?' && !bracket:
				question = true
			case c == ';' && params < 0:
				// addr-spec without <>: every ';' parameter is a header
				// parameter (RFC 3261 20.10), as sipgo reads it too.
				params = i
			case !bracket && !isLWS(c) && !tokenChar[c]:
				// Seen before any '<': not a token display name. Fine
				// for an addr-spec, which has no '<' after it.
				displayTokens = false
			}
			i++
		}
		if !bracket && question {
			return false
		}
		if params >= 0 && !paramsUnique(v[params:i]) {
			return false
		}
		if i >= len(v) {
			return true
		}
		// v[i] == ',' for a Contact list.
		i++
	}
}

// maxParams bounds the parameters of one URI or header value; real ones
// carry a handful, and finding duplicates is quadratic.
const maxParams = 32

// paramsUnique: no parameter name twice in ";name[=value]..." (names
// compare ignoring case). sipgo keeps only the last of two while others
// take the first: two tags must not mean two things.
func paramsUnique(p []byte) bool {
	var names [maxParams][]byte
	n := 0
	for len(p) > 0 {
		end := 1
		for end < len(p) && p[end] != ';' {
			if p[end] == '"' {
				j, ok := skipQuoted(p, end)
				if !ok {
					return false
				}
				end = j
				continue
			}
			end++
		}
		seg := p[:end]
		p = p[end:]
		if seg[0] == ';' {
			seg = seg[1:]
		}
		name, _, _ := bytes.Cut(seg, []byte("="))
		name = trimLWS(name)
		if len(name) == 0 {
			continue
		}
		for _, prev := range names[:n] {
			if bytes.EqualFold(prev, name) {
				return false
			}
		}
		if n == maxParams {
			return false
		}
		names[n] = name
		n++
	}
	return true
}

// uriParamsUnique applies paramsUnique to the parameters of a URI: after
// the host (the user part may hold ';', RFC 4475 semiuri), before '?'.
func uriParamsUnique(u []byte) bool {
	if q := bytes.IndexByte(u, '?'); q >= 0 {
		u = u[:q]
	}
	if at := bytes.IndexByte(u, '@'); at >= 0 {
		u = u[at+1:]
	}
	if semi := bytes.IndexByte(u, ';'); semi >= 0 {
		return paramsUnique(u[semi:])
	}
	return true
}

// skipQuoted returns the index after the quoted-string starting at v[i].
func skipQuoted(v []byte, i int) (int, bool) {
	for j := i + 1; j < len(v); j++ {
		switch v[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return 0, false
}

func trimRight(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func trimLWS(b []byte) []byte {
	for len(b) > 0 && isLWS(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isLWS(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func isLWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

func allDigits(b []byte) bool {
	for _, c := range b {
		if !isDigit(c) {
			return false
		}
	}
	return len(b) > 0
}

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChar[c] {
			return false
		}
	}
	return true
}

// EqualFoldLower compares b to an ASCII lower-case literal without
// allocating (header names on raw bytes).
func EqualFoldLower(b []byte, lower string) bool { return equalFoldB(b, lower) }

// equalFoldB compares b to an ASCII lower-case literal without allocating.
func equalFoldB(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func equalFold(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// tokenChar: RFC 3261 25.1 token = 1*(alphanum / "-" / "." / "!" / "%" /
// "*" / "_" / "+" / "`" / "'" / "~").
var tokenChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "-.!%*_+`'~" {
		t[c] = true
	}
	return t
}()

// uriChar: characters of a Request-URI after the scheme: unreserved,
// reserved and "%" for escapes (RFC 3261 25.1, RFC 2396 uric), and "[]"
// for IPv6 references.
var uriChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "-_.!~*'()%;/?:@&=+$,[]" {
		t[c] = true
	}
	return t
}()
