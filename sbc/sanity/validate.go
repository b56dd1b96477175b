package sanity

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc/sanity/wire"
)

// Problem is the outcome of Validate. The zero value (Rule == RuleNone)
// means the request is acceptable.
type Problem struct {
	Rule   Rule
	Status int    // SIP status of the reply; 0 when valid
	Reason string // reason phrase of the reply
	// Silent: drop without a reply (see Rule.Silent; also every ACK).
	Silent bool
	// Extra headers for the reply: Unsupported (420), Allow (405),
	// Accept (415, 406).
	Extra []sip.Header
}

// OK tells whether the request passed every check.
func (p Problem) OK() bool { return p.Rule == RuleNone }

func fail(r Rule, extra ...sip.Header) Problem {
	code, reason := r.Status()
	return Problem{Rule: r, Status: code, Reason: reason, Silent: r.Silent(), Extra: extra}
}

// kind classifies header fields by name, all spellings (long, compact, any
// case) together. sipgo already turns the spellings of the headers it
// parses into typed headers; the rest are matched by name here.
type kind uint8

const (
	kOther kind = iota
	kVia
	kFrom
	kTo
	kCallID
	kCSeq
	kMaxForwards
	kContentLength
	kContentType
	kContact
	kRequire
	kProxyRequire
	kAccept
	// Single-value headers sipgo does not parse; a second copy would be
	// ambiguous to whoever reads them next (the B2BUA relays several).
	kDate
	kExpires
	kReplaces
	kEvent
	kRAck
	kRSeq
	kSessionExpires
	kMinSE
	kReferTo
	kReferredBy
	kSubject
	numKinds
)

// firstExtraSingle..numKinds-1 are single-value headers checked for
// repetition in the reply class.
const firstExtraSingle = kDate

// kindOf classifies a header name without allocating.
func kindOf(name string) kind {
	var buf [24]byte
	if len(name) > len(buf) {
		return kOther
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	switch string(buf[:len(name)]) {
	case "via", "v":
		return kVia
	case "from", "f":
		return kFrom
	case "to", "t":
		return kTo
	case "call-id", "i":
		return kCallID
	case "cseq":
		return kCSeq
	case "max-forwards":
		return kMaxForwards
	case "content-length", "l":
		return kContentLength
	case "content-type", "c":
		return kContentType
	case "contact", "m":
		return kContact
	case "require":
		return kRequire
	case "proxy-require":
		return kProxyRequire
	case "accept":
		return kAccept
	case "date":
		return kDate
	case "expires":
		return kExpires
	case "replaces":
		return kReplaces
	case "event", "o":
		return kEvent
	case "rack":
		return kRAck
	case "rseq":
		return kRSeq
	case "session-expires", "x":
		return kSessionExpires
	case "min-se":
		return kMinSE
	case "refer-to", "r":
		return kReferTo
	case "referred-by", "b":
		return kReferredBy
	case "subject", "s":
		return kSubject
	}
	return kOther
}

// tally is what one walk over the headers learns.
type tally struct {
	n       int
	count   [numKinds]int
	longest int
	bad     Rule // first silent failure seen in the walk

	via    *sip.ViaHeader // top Via
	from   *sip.FromHeader
	to     *sip.ToHeader
	callID *sip.CallIDHeader
	cseq   *sip.CSeqHeader
	maxFwd *sip.MaxForwardsHeader
	cl     *sip.ContentLengthHeader
	ctype  *sip.ContentTypeHeader
	date   string
	exp    string
}

func (t *tally) flag(r Rule) {
	if t.bad == RuleNone {
		t.bad = r
	}
}

// text measures s and flags control characters: everything below 0x20 but
// HTAB, and DEL. sipgo keeps a quoted-pair's escaped byte as it is, so an
// escaped NUL in a display name shows up here too.
func (t *tally) text(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 0x20 && c != '\t') || c == 0x7f {
			t.flag(RuleControlChar)
			break
		}
	}
	return len(s)
}

func (t *tally) params(p sip.HeaderParams) int {
	n := 0
	for _, kv := range p {
		n += t.text(kv.K) + t.text(kv.V) + 2
	}
	return n
}

func (t *tally) uri(u *sip.Uri) int {
	return t.text(u.Scheme) + t.text(u.Raw()) + t.text(u.User) + t.text(u.Password) +
		t.text(u.Host) + t.params(u.UriParams) + t.params(u.Headers) + 8
}

// walk visits every header once: counts by kind, measures, checks names and
// characters.
func (t *tally) walk(hdrs []sip.Header) {
	for _, h := range hdrs {
		t.n++
		size := 0
		k := kOther
		switch h := h.(type) {
		case *sip.ViaHeader:
			k = kVia
			if t.via == nil {
				t.via = h
			}
			size = t.text(h.ProtocolName) + t.text(h.ProtocolVersion) + t.text(h.Transport) + t.text(h.Host) + t.params(h.Params) + 16
			// Every Via is echoed in a reply.
			if !viaShape(h) {
				t.flag(RuleVia)
			}
		case *sip.FromHeader:
			k, t.from = kFrom, h
			size = t.text(h.DisplayName) + t.uri(&h.Address) + t.params(h.Params)
			if !addressShape(h.DisplayName, &h.Address, h.Params) {
				t.flag(RuleAddress)
			}
		case *sip.ToHeader:
			k, t.to = kTo, h
			size = t.text(h.DisplayName) + t.uri(&h.Address) + t.params(h.Params)
			if !addressShape(h.DisplayName, &h.Address, h.Params) {
				t.flag(RuleAddress)
			}
		case *sip.CallIDHeader:
			k, t.callID = kCallID, h
			size = t.text(string(*h))
		case *sip.CSeqHeader:
			k, t.cseq = kCSeq, h
			size = t.text(string(h.MethodName)) + 11
		case *sip.MaxForwardsHeader:
			k, t.maxFwd = kMaxForwards, h
		case *sip.ContentLengthHeader:
			k, t.cl = kContentLength, h
		case *sip.ContentTypeHeader:
			k, t.ctype = kContentType, h
			size = t.text(string(*h))
		case *sip.ContactHeader:
			k = kContact
			size = t.text(h.DisplayName) + t.uri(&h.Address) + t.params(h.Params)
		case *sip.RouteHeader:
			size = t.uri(&h.Address)
		case *sip.RecordRouteHeader:
			size = t.uri(&h.Address)
		case *sip.ReferToHeader:
			k = kReferTo
			size = t.uri(&h.Address)
		case *sip.ReferredByHeader:
			k = kReferredBy
			size = t.text(h.DisplayName) + t.uri(&h.Address) + t.params(h.Params)
		default:
			name := h.Name()
			if !isToken(name) {
				t.flag(RuleHeaderName)
			}
			v := h.Value()
			size = t.text(name) + t.text(v)
			k = kindOf(name)
			switch k {
			case kDate:
				t.date = v
			case kExpires:
				t.exp = v
			case kVia, kFrom, kTo, kCallID, kCSeq, kMaxForwards, kContentLength, kContentType:
				// A hand-built generic header with a name sipgo would
				// have parsed: nothing to check it with, so refuse it.
				t.flag(RuleHeaderName)
			}
		}
		t.count[k]++
		if size > t.longest {
			t.longest = size
		}
	}
}

// Validate checks a parsed request with the default options (see Options)
// and reports the first problem found: silent rules first (those seen while
// walking the headers in header order), then the reply rules in the order
// of the Rule constants. transport is "udp", "tcp", ...: stream transports
// must carry Content-Length.
//
// Validate first trims, in place, the white space sipgo leaves in
// parameter names and values, Via transports and URI hosts (see
// normalize); it changes nothing else.
func Validate(req *sip.Request, transport string) Problem {
	return defaultSanity.Validate(req, transport)
}

// Validate checks a parsed request; see the package function Validate.
func (s *Sanity) Validate(req *sip.Request, transport string) Problem {
	if req == nil {
		return fail(RuleNil)
	}
	normalize(req)
	p := s.validate(req, transport)
	if !p.OK() && req.IsAck() {
		// An ACK is never answered (RFC 3261 17.2.1: it has no response).
		p.Silent = true
	}
	return p
}

func (s *Sanity) validate(req *sip.Request, transport string) Problem {
	var t tally
	t.walk(req.Headers())
	ruri := &req.Recipient
	uriLen := t.uri(ruri)

	// Silent class.
	if !versionShape(req.SipVersion) {
		return fail(RuleVersionSyntax)
	}
	if t.bad != RuleNone {
		return fail(t.bad)
	}
	if t.count[kVia] == 0 || t.count[kFrom] == 0 || t.count[kTo] == 0 || t.count[kCallID] == 0 || t.count[kCSeq] == 0 {
		return fail(RuleMissing)
	}
	if t.count[kFrom] > 1 || t.count[kTo] > 1 || t.count[kCallID] > 1 || t.count[kCSeq] > 1 {
		return fail(RuleDuplicate)
	}
	if t.count[kContentLength] > 1 ||
		(t.cl != nil && int64(*t.cl) != int64(len(req.Body()))) ||
		(t.cl == nil && wire.IsStream(transport)) {
		return fail(RuleContentLength)
	}
	if t.cseq.SeqNo > 1<<31-1 || !isToken(string(t.cseq.MethodName)) {
		return fail(RuleCSeq)
	}
	if !viaRoutable(t.via) {
		return fail(RuleVia)
	}
	if !isCallID(string(*t.callID)) {
		return fail(RuleCallID)
	}

	// Reply class.
	if !strings.EqualFold(req.SipVersion, "SIP/2.0") {
		return fail(RuleVersion)
	}
	if t.count[kMaxForwards] == 0 {
		return fail(RuleMaxForwards)
	}
	if t.count[kMaxForwards] > 1 || t.count[kContentType] > 1 {
		return fail(RuleSingleValue)
	}
	for k := firstExtraSingle; k < numKinds; k++ {
		if t.count[k] > 1 {
			return fail(RuleSingleValue)
		}
	}
	// sipgo upper-cases the request-line method and keeps the CSeq one as
	// sent; wire.PreParse drops a pair that differs only in case, so here
	// the CSeq method stands for what was on the request line.
	cseqMethod := string(t.cseq.MethodName)
	if !strings.EqualFold(cseqMethod, string(req.Method)) {
		return fail(RuleCSeqMethod)
	}
	if *t.maxFwd == 0 {
		return fail(RuleTooManyHops)
	}
	if *t.maxFwd > 255 {
		return fail(RuleMaxForwards)
	}
	if !strings.EqualFold(t.via.ProtocolName, "SIP") || t.via.ProtocolVersion != "2.0" {
		return fail(RuleViaProtocol)
	}
	if r := s.requestURI(ruri, uriLen); r != RuleNone {
		return fail(r)
	}
	if req.Method != sip.ACK && req.Method != sip.CANCEL {
		// RFC 3261 8.2.2.3: Require is ignored in CANCEL and ACK.
		if bad := s.unsupported(req.Headers(), &t); bad != "" {
			return fail(RuleExtension, sip.NewHeader("Unsupported", bad))
		}
	}
	if !s.methods[cseqMethod] {
		return fail(RuleMethod, sip.NewHeader("Allow", s.allow))
	}
	if t.n > s.opts.MaxHeaders {
		return fail(RuleTooManyHeaders)
	}
	if t.longest > s.opts.MaxHeaderLen {
		return fail(RuleHeaderTooLong)
	}
	if len(req.Body()) > s.opts.MaxBody {
		return fail(RuleBodyTooLarge)
	}
	if (dialogCreating(req.Method) && t.count[kContact] != 1) || !contactsShape(req.Headers(), req.Method == sip.REGISTER) {
		return fail(RuleContact)
	}
	if !uriHeadersShape(req.Headers()) {
		return fail(RuleURIHeader)
	}
	switch r := s.body(req, &t); r {
	case RuleNone:
	case RuleMediaType, RuleNotAcceptable:
		return fail(r, sip.NewHeader("Accept", s.accept))
	default:
		return fail(r)
	}
	if !addressScheme(t.from.Address.Scheme, true) || !addressScheme(t.to.Address.Scheme, req.Method != sip.REGISTER) {
		return fail(RuleAddressScheme)
	}
	if t.date != "" && !validDate(t.date) {
		return fail(RuleDate)
	}
	if t.count[kExpires] == 1 && !deltaSeconds(t.exp) {
		return fail(RuleExpires)
	}
	return Problem{}
}

// requestURI: scheme (416), length (414), then what a SIP URI may not hold
// in a Request-URI (RFC 3261 19.1.1 table 1: no headers; RFC 4475 escruri).
func (s *Sanity) requestURI(u *sip.Uri, n int) Rule {
	switch u.Scheme {
	case "sip", "sips":
	case "tel":
		if s.opts.RefuseTel {
			return RuleScheme
		}
	default:
		return RuleScheme
	}
	if n > s.opts.MaxURILen {
		return RuleURITooLong
	}
	if len(u.Headers) > 0 || !uriShape(u) {
		return RuleRequestURI
	}
	return RuleNone
}

// The shape checks below hold what every reply repeats (Via, From, To) and
// what later layers route on (Request-URI) to the RFC 3261 25.1 character
// sets, so that it prints as something that parses back the same.

// viaShape: "SIP" "/" version "/" transport SP host [":" port] params.
func viaShape(v *sip.ViaHeader) bool {
	return strings.EqualFold(v.ProtocolName, "SIP") && versionNumber(v.ProtocolVersion) &&
		isToken(v.Transport) && validHost(v.Host) && v.Port >= 0 && v.Port <= 65535 &&
		headerParamsShape(v.Params)
}

// addressShape: a From or To value. URI headers are not allowed there
// (RFC 3261 19.1.1, table 1).
func addressShape(display string, u *sip.Uri, params sip.HeaderParams) bool {
	if !displayShape(display) || len(u.Headers) > 0 || !uriShape(u) || !uniqueKeys(params) {
		return false
	}
	for _, kv := range params {
		if !isToken(kv.K) || !(charsIn(kv.V, genValueChar) || quotedShape(kv.V)) {
			return false
		}
	}
	return true
}

// quotedShape: a quoted parameter value as sipgo keeps it for From, To and
// Contact (quotes included). It splits parameters at every ';', quoted or
// not, and prints a value holding a blank inside another pair of quotes:
// both would change the value, so neither is allowed.
func quotedShape(v string) bool {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return false
	}
	for i := 1; i < len(v)-1; i++ {
		switch c := v[i]; {
		case c <= ' ' || c == 0x7f || c == '"' || c == '\\' || c == ';':
			return false
		}
	}
	return true
}

// uriHeadersShape: the URIs later layers route on or relay: Route and
// Record-Route (the route set, SIP or SIPS only, RFC 3261 12.1.1, 16.12),
// Refer-To and Referred-By.
func uriHeadersShape(hdrs []sip.Header) bool {
	for _, h := range hdrs {
		switch h := h.(type) {
		case *sip.RouteHeader:
			if !routeShape(&h.Address) {
				return false
			}
		case *sip.RecordRouteHeader:
			if !routeShape(&h.Address) {
				return false
			}
		case *sip.ReferToHeader:
			if !uriShape(&h.Address) {
				return false
			}
		case *sip.ReferredByHeader:
			if !displayShape(h.DisplayName) || !uriShape(&h.Address) {
				return false
			}
		}
	}
	return true
}

func routeShape(u *sip.Uri) bool {
	return (u.Scheme == "sip" || u.Scheme == "sips") && len(u.Headers) == 0 && uriShape(u)
}

// contactsShape: every Contact a URI made of its parts ("*" only in
// REGISTER) with a printable display name: registrars store it and later
// send requests to it.
func contactsShape(hdrs []sip.Header, register bool) bool {
	for _, h := range hdrs {
		c, ok := h.(*sip.ContactHeader)
		if !ok {
			continue
		}
		if c.Address.Wildcard && register {
			continue
		}
		if !displayShape(c.DisplayName) || !uriShape(&c.Address) {
			return false
		}
	}
	return true
}

// displayShape: the display name sipgo keeps (quotes removed, escapes
// kept) prints inside quotes again: no bare '"', no dangling '\'.
func displayShape(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
			if i == len(s) {
				return false
			}
		case '"':
			return false
		}
	}
	return true
}

// uriShape: a SIP or SIPS URI made of its RFC 3261 parts, or another
// scheme's opaque part without blanks, quotes or angle brackets.
func uriShape(u *sip.Uri) bool {
	if !isScheme(u.Scheme) || u.Wildcard {
		return false
	}
	if u.Scheme != "sip" && u.Scheme != "sips" {
		return u.Raw() != "" && charsIn(u.Raw(), rawChar)
	}
	if !charsIn(u.User, userChar) || !charsIn(u.Password, passwordChar) || !validHost(u.Host) || u.Port < 0 || u.Port > 65535 {
		return false
	}
	if !uniqueKeys(u.UriParams) {
		return false
	}
	for _, kv := range u.UriParams {
		if kv.K == "" || !charsIn(kv.K, paramChar) || !charsIn(kv.V, paramChar) {
			return false
		}
	}
	for _, kv := range u.Headers {
		if kv.K == "" || !charsIn(kv.K, hnvChar) || !charsIn(kv.V, hnvChar) {
			return false
		}
	}
	return true
}

// headerParamsShape: Via parameters, generic-param = token [ "=" ( token /
// host ) ]; quoted values are refused: sipgo's parameter parser makes the
// key swallow the rest of the value.
func headerParamsShape(p sip.HeaderParams) bool {
	if !uniqueKeys(p) {
		return false
	}
	for _, kv := range p {
		if !isToken(kv.K) || !charsIn(kv.V, genValueChar) {
			return false
		}
	}
	return true
}

// maxParams bounds the parameters of one header or URI; real ones carry a
// handful, and the duplicate check below is quadratic.
const maxParams = 32

// uniqueKeys: no parameter twice (names compare ignoring case, RFC 3261
// 7.3.1). sipgo keeps the first of two for Get but its printer and
// parser then disagree, and two tags are the kind of ambiguity an edge
// must not pass on.
func uniqueKeys(p sip.HeaderParams) bool {
	if len(p) > maxParams {
		return false
	}
	for i := range p {
		for j := 0; j < i; j++ {
			if strings.EqualFold(p[i].K, p[j].K) {
				return false
			}
		}
	}
	return true
}

// isScheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
func isScheme(s string) bool {
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func charsIn(s string, set *[256]bool) bool {
	for i := 0; i < len(s); i++ {
		if !set[s[i]] {
			return false
		}
	}
	return true
}

// unsupported returns the option tags of Require and Proxy-Require that
// are not supported, comma separated, or "" when all are.
func (s *Sanity) unsupported(hdrs []sip.Header, t *tally) string {
	if t.count[kRequire] == 0 && t.count[kProxyRequire] == 0 {
		return ""
	}
	var bad []string
	for _, h := range hdrs {
		if k := kindOf(h.Name()); k != kRequire && k != kProxyRequire {
			continue
		}
		for rest := h.Value(); rest != ""; {
			var tag string
			tag, rest, _ = strings.Cut(rest, ",")
			tag = strings.TrimSpace(tag)
			if tag == "" || s.isSupported(tag) {
				continue
			}
			dup := false
			for _, b := range bad {
				dup = dup || strings.EqualFold(b, tag)
			}
			if !dup {
				bad = append(bad, tag)
			}
		}
	}
	return strings.Join(bad, ", ")
}

// body checks Content-Type (RFC 3261 20.15: required with a body), the type
// of session bodies the B2BUA has to understand, and whether an INVITE's
// Accept leaves room for the SDP answer.
func (s *Sanity) body(req *sip.Request, t *tally) Rule {
	session := req.Method == sip.INVITE || req.Method == sip.UPDATE || req.Method == sip.PRACK || req.Method == sip.ACK
	if len(req.Body()) > 0 {
		if t.ctype == nil {
			return RuleContentType
		}
		if session && !s.sessionType(mediaType(string(*t.ctype))) {
			return RuleMediaType
		}
	}
	if req.Method == sip.INVITE && t.count[kAccept] > 0 && !s.acceptsSession(req.Headers()) {
		return RuleNotAcceptable
	}
	return RuleNone
}

func (s *Sanity) isSupported(tag string) bool {
	for _, t := range s.opts.Supported {
		if strings.EqualFold(t, tag) {
			return true
		}
	}
	return false
}

func (s *Sanity) sessionType(mt string) bool {
	for _, st := range s.opts.SessionTypes {
		if strings.EqualFold(mt, st) {
			return true
		}
	}
	return false
}

// acceptsSession: some media-range of the Accept headers covers a session
// type. An empty Accept accepts nothing (RFC 3261 20.1).
func (s *Sanity) acceptsSession(hdrs []sip.Header) bool {
	for _, h := range hdrs {
		if kindOf(h.Name()) != kAccept {
			continue
		}
		for rest := h.Value(); rest != ""; {
			var r string
			r, rest, _ = strings.Cut(rest, ",")
			r = mediaType(r)
			if r == "*/*" {
				return true
			}
			for _, st := range s.opts.SessionTypes {
				main, _, _ := strings.Cut(st, "/")
				if strings.EqualFold(r, st) || strings.EqualFold(r, main+"/*") {
					return true
				}
			}
		}
	}
	return false
}

// mediaType is type "/" subtype without parameters or white space.
func mediaType(v string) string {
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	return strings.TrimSpace(v)
}

// dialogCreating requests must carry exactly one Contact (RFC 3261
// 8.1.1.8; RFC 6665 for SUBSCRIBE, RFC 3515 for REFER).
func dialogCreating(m sip.RequestMethod) bool {
	return m == sip.INVITE || m == sip.SUBSCRIBE || m == sip.REFER
}

func addressScheme(scheme string, telOK bool) bool {
	return scheme == "sip" || scheme == "sips" || (telOK && scheme == "tel")
}

// validDate: SIP-date is rfc1123-date, always GMT (RFC 3261 20.17; RFC 4475
// baddate).
func validDate(v string) bool {
	_, err := time.Parse("Mon, 02 Jan 2006 15:04:05 GMT", strings.TrimSpace(v))
	return err == nil
}

// deltaSeconds: 1*DIGIT that fits 32 bits (RFC 3261 20.19).
func deltaSeconds(v string) bool {
	v = strings.TrimSpace(v)
	if v == "" || v[0] < '0' || v[0] > '9' {
		return false
	}
	_, err := strconv.ParseUint(v, 10, 32)
	return err == nil
}

// versionShape: "SIP/" 1*DIGIT "." 1*DIGIT (any case of "SIP", which ABNF
// literals allow).
func versionShape(v string) bool {
	return len(v) >= 7 && strings.EqualFold(v[:4], "SIP/") && versionNumber(v[4:])
}

// versionNumber: 1*DIGIT "." 1*DIGIT, up to three digits each.
func versionNumber(v string) bool {
	dot := strings.IndexByte(v, '.')
	return dot >= 1 && dot <= 3 && allDigits(v[:dot]) && len(v)-dot-1 <= 3 && allDigits(v[dot+1:])
}

// viaRoutable checks what the transaction layer uses of the top Via to send
// the reply: a host that is a name or an address, a port, a transport.
// Broadcast, multicast and unspecified addresses in sent-by, received or
// maddr are refused so no reply is ever aimed at them (RFC 4475 bcast).
func viaRoutable(v *sip.ViaHeader) bool {
	return v != nil && isToken(v.Transport) && v.Port >= 0 && v.Port <= 65535 && validHost(v.Host) && !viaBadAddr(v)
}

// viaBadAddr: sent-by, received or maddr is an address no message may be
// sent to.
func viaBadAddr(v *sip.ViaHeader) bool {
	if badAddr(v.Host) {
		return true
	}
	for _, p := range [...]string{"received", "maddr"} {
		if a, ok := v.Params.Get(p); ok && badAddr(a) {
			return true
		}
	}
	return false
}

// badAddr: an IP literal that must never be a destination.
func badAddr(host string) bool {
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	return ip.IsMulticast() || ip.IsUnspecified() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// validHost: hostname (RFC 3261 25.1: alphanumerics, '-', '.'), IPv4, or
// IPv6 with or without brackets (sipgo keeps them in URIs, strips them in
// Via).
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	if strings.IndexByte(h, ':') >= 0 {
		if h[0] == '[' {
			if h[len(h)-1] != ']' {
				return false
			}
			h = h[1 : len(h)-1]
		}
		ip, err := netip.ParseAddr(h)
		return err == nil && ip.Is6() && ip.Zone() == ""
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !isAlnum(c) && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// isCallID: word ["@" word] (RFC 3261 25.1).
func isCallID(s string) bool {
	w, rest, found := strings.Cut(s, "@")
	return isWord(w) && (!found || isWord(rest))
}

func isWord(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !wordChar[s[i]] {
			return false
		}
	}
	return true
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenChar[s[i]] {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// Character sets of RFC 3261 25.1.
var (
	tokenChar    = charSet("-.!%*_+`'~")
	wordChar     = charSet("-.!%*_+`'~()<>:\\\"/[]?{}")
	userChar     = charSet("-_.!~*'()%&=+$,;?/")      // unreserved, escaped, user-unreserved
	passwordChar = charSet("-_.!~*'()%&=+$,")         // unreserved, escaped, "&=+$,"
	paramChar    = charSet("-_.!~*'()%[]/:&+$")       // paramchar
	hnvChar      = charSet("-_.!~*'()%[]/?:+$")       // hname, hvalue
	genValueChar = charSet("-.!%*_+`'~:[]")           // token or host
	rawChar      = charSet("-_.!~*'()%;/?:@&=+$,[]#") // uric, for opaque parts of other schemes
)

// charSet is the alphanumerics plus extra.
func charSet(extra string) *[256]bool {
	var t [256]bool
	for c := 0; c < 256; c++ {
		t[c] = isAlnum(byte(c))
	}
	for i := 0; i < len(extra); i++ {
		t[extra[i]] = true
	}
	return &t
}
