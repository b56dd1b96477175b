package sanity

// Rule names one check of the sanity layer. Its String is the counter key.
type Rule uint8

// Rules, in the order they are checked. Up to RuleAddress a failure is
// silent (the request is dropped: a reply would echo garbage to a source
// that may be spoofed, or there is nothing valid to build a reply from);
// after it the request is well-formed but unacceptable and gets a reply.
const (
	RuleNone Rule = iota

	// Silent drop.
	RuleNil           // nil request
	RuleVersionSyntax // SIP-Version not "SIP/" 1*DIGIT "." 1*DIGIT
	RuleHeaderName    // header name not an RFC 3261 token
	RuleControlChar   // control character (also escaped in a quoted-pair) in the Request-URI or a header
	RuleMissing       // Via, From, To, Call-ID or CSeq missing
	RuleDuplicate     // From, To, Call-ID or CSeq more than once (in any spelling)
	RuleContentLength // Content-Length twice, not equal to the body, or missing on a stream
	RuleCSeq          // CSeq number above 2**31-1 or method not a token
	RuleVia           // a Via not "SIP/x.y/..." with a host; top Via: bad host or port, transport not a token, broadcast/multicast address
	RuleCallID        // Call-ID not word ["@" word]
	RuleAddress       // From or To not made of RFC 3261 parts (bad scheme, host, characters, quoted parameter)

	// Reply.
	RuleVersion        // 505: SIP version other than 2.0
	RuleMaxForwards    // 400: Max-Forwards missing, or above 255
	RuleSingleValue    // 400: a single-value header (Max-Forwards, Content-Type, Expires, ...) more than once
	RuleCSeqMethod     // 400: CSeq method differs from the request method
	RuleTooManyHops    // 483: Max-Forwards is 0
	RuleViaProtocol    // 400: top Via not SIP/2.0
	RuleScheme         // 416: Request-URI scheme not sip, sips or tel (nor tel with RefuseTel)
	RuleURITooLong     // 414: Request-URI longer than MaxURILen
	RuleRequestURI     // 400: Request-URI host invalid, URI headers in it, empty tel number
	RuleExtension      // 420: Require or Proxy-Require with an option tag not supported
	RuleMethod         // 405: method not in the allow-list
	RuleTooManyHeaders // 400: more than MaxHeaders header fields
	RuleHeaderTooLong  // 513: a header field longer than MaxHeaderLen
	RuleBodyTooLarge   // 413: body longer than MaxBody
	RuleContact        // 400: dialog-creating request without exactly one Contact
	RuleURIHeader      // 400: Route, Record-Route (sip or sips), Refer-To or Referred-By URI not made of its parts
	RuleContentType    // 400: body without Content-Type
	RuleMediaType      // 415: session body (INVITE, UPDATE, PRACK, ACK) not of a session type
	RuleNotAcceptable  // 406: INVITE whose Accept excludes every session type
	RuleAddressScheme  // 400: From or To URI scheme not sip, sips or tel (REGISTER To: sip or sips)
	RuleDate           // 400: Date not an RFC 1123 GMT date
	RuleExpires        // 400: Expires not delta-seconds
	numRules
)

// lastSilent is the last rule whose failure is a silent drop.
const lastSilent = RuleAddress

var ruleNames = [numRules]string{
	RuleNone:           "none",
	RuleNil:            "nil",
	RuleVersionSyntax:  "version-syntax",
	RuleHeaderName:     "header-name",
	RuleControlChar:    "control-char",
	RuleMissing:        "missing-header",
	RuleDuplicate:      "duplicate-header",
	RuleContentLength:  "content-length",
	RuleCSeq:           "cseq",
	RuleVia:            "via",
	RuleCallID:         "call-id",
	RuleAddress:        "address",
	RuleVersion:        "version",
	RuleMaxForwards:    "max-forwards",
	RuleSingleValue:    "single-value",
	RuleCSeqMethod:     "cseq-method",
	RuleTooManyHops:    "too-many-hops",
	RuleViaProtocol:    "via-protocol",
	RuleScheme:         "uri-scheme",
	RuleURITooLong:     "uri-too-long",
	RuleRequestURI:     "request-uri",
	RuleExtension:      "bad-extension",
	RuleMethod:         "method",
	RuleTooManyHeaders: "too-many-headers",
	RuleHeaderTooLong:  "header-too-long",
	RuleBodyTooLarge:   "body-too-large",
	RuleContact:        "contact",
	RuleURIHeader:      "uri-header",
	RuleContentType:    "content-type",
	RuleMediaType:      "media-type",
	RuleNotAcceptable:  "not-acceptable",
	RuleAddressScheme:  "address-scheme",
	RuleDate:           "date",
	RuleExpires:        "expires",
}

// String returns the counter key of r.
func (r Rule) String() string {
	if r < numRules {
		return ruleNames[r]
	}
	return "unknown"
}

// Silent tells whether a failure of r is dropped without a reply.
func (r Rule) Silent() bool { return r != RuleNone && r <= lastSilent }

// status and reason phrase of the reply for each reply-class rule.
var ruleStatus = [numRules]struct {
	code   int
	reason string
}{
	RuleVersion:        {505, "Version Not Supported"},
	RuleMaxForwards:    {400, "Bad Max-Forwards"},
	RuleSingleValue:    {400, "Repeated Single-Value Header"},
	RuleCSeqMethod:     {400, "CSeq Method Mismatch"},
	RuleTooManyHops:    {483, "Too Many Hops"},
	RuleViaProtocol:    {400, "Bad Via Protocol"},
	RuleScheme:         {416, "Unsupported URI Scheme"},
	RuleURITooLong:     {414, "Request-URI Too Long"},
	RuleRequestURI:     {400, "Bad Request-URI"},
	RuleExtension:      {420, "Bad Extension"},
	RuleMethod:         {405, "Method Not Allowed"},
	RuleTooManyHeaders: {400, "Too Many Headers"},
	RuleHeaderTooLong:  {513, "Message Too Large"},
	RuleBodyTooLarge:   {413, "Request Entity Too Large"},
	RuleContact:        {400, "Bad Contact"},
	RuleURIHeader:      {400, "Bad URI In Header"},
	RuleContentType:    {400, "Missing Content-Type"},
	RuleMediaType:      {415, "Unsupported Media Type"},
	RuleNotAcceptable:  {406, "Not Acceptable"},
	RuleAddressScheme:  {400, "Unsupported URI Scheme In From Or To"},
	RuleDate:           {400, "Bad Date"},
	RuleExpires:        {400, "Bad Expires"},
}

// Status returns the SIP status and reason phrase a reply for r carries; 0
// for RuleNone, and 400 "Bad Request" for silent rules (what the RFC would
// answer if we answered).
func (r Rule) Status() (int, string) {
	if r == RuleNone || r >= numRules {
		return 0, ""
	}
	if r.Silent() {
		return 400, "Bad Request"
	}
	s := ruleStatus[r]
	return s.code, s.reason
}
