package sanity

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
)

type ruleCase struct {
	name      string
	start     string // request line; inviteLine when empty
	hdrs      []string
	body      string
	transport string // udp when empty
	want      string // verdict
	stage     string // prefix of the deciding stage
}

func (c ruleCase) run(t *testing.T) result {
	t.Helper()
	start := c.start
	if start == "" {
		start = inviteLine
	}
	tr := c.transport
	if tr == "" {
		tr = "udp"
	}
	r := receive(t, tr, build(start, c.hdrs, c.body))
	if r.verdict != c.want || !strings.HasPrefix(r.stage, c.stage) {
		t.Errorf("%s: %s by %s, want %s by %s", tr, r.verdict, r.stage, c.want, c.stage)
	}
	return r
}

func runCases(t *testing.T, cases []ruleCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t) })
	}
}

func TestValidINVITE(t *testing.T) {
	for _, tr := range []string{"udp", "tcp"} {
		ruleCase{name: "base", hdrs: baseHdrs, body: sdpBody, transport: tr, want: "accept", stage: "validate"}.run(t)
	}
}

// Every spelling of every single-value header is accepted once: long,
// compact, odd case, spaces before the colon.
func TestSingleValueSpellings(t *testing.T) {
	n := strconv.Itoa(len(sdpBody))
	spell := map[string][]string{
		"To":             {"To: <sip:bob@example.com>", "t: <sip:bob@example.com>", "tO  : <sip:bob@example.com>", "T:<sip:bob@example.com>"},
		"From":           {"From: <sip:alice@example.org>;tag=1", "f: <sip:alice@example.org>;tag=1", "FROM\t: <sip:alice@example.org>;tag=1"},
		"Call-ID":        {"Call-ID: abc@host", "i: abc@host", "call-id : abc@host", "I:abc@host"},
		"CSeq":           {"CSeq: 1 INVITE", "cseq: 1 INVITE", "CSEQ  :  1 INVITE"},
		"Max-Forwards":   {"Max-Forwards: 70", "max-forwards: 70", "MAX-FORWARDS : 70"},
		"Content-Type":   {"Content-Type: application/sdp", "c: application/sdp", "content-TYPE :application/sdp"},
		"Content-Length": {"Content-Length: " + n, "l: " + n, "CONTENT-LENGTH  : " + n, "L:" + n},
	}
	for name, forms := range spell {
		for _, f := range forms {
			for _, tr := range []string{"udp", "tcp"} {
				t.Run(tr+"/"+f, func(t *testing.T) {
					ruleCase{hdrs: edit(baseHdrs, name, f), body: sdpBody, transport: tr, want: "accept", stage: "validate"}.run(t)
				})
			}
		}
	}
}

// Any two spellings of one single-value header count as two.
func TestSingleValueTwice(t *testing.T) {
	cases := []struct {
		name   string
		first  string
		second string
		want   string
		stage  string
	}{
		{"To", "To: <sip:bob@example.com>", "t: <sip:mallory@example.com>;tag=x", "drop", "validate:duplicate-header"},
		{"To", "To: <sip:bob@example.com>", "TO : <sip:bob@example.com>", "drop", "validate:duplicate-header"},
		{"From", "From: <sip:alice@example.org>;tag=1", "f: <sip:eve@example.org>;tag=2", "drop", "validate:duplicate-header"},
		{"Call-ID", "Call-ID: one@host", "i: two@host", "drop", "validate:duplicate-header"},
		{"CSeq", "CSeq: 1 INVITE", "cseq: 2 INVITE", "drop", "validate:duplicate-header"},
		{"Max-Forwards", "Max-Forwards: 70", "max-forwards: 69", "reply 400", "validate:single-value"},
		{"Content-Type", "Content-Type: application/sdp", "c: application/sdp", "reply 400", "validate:single-value"},
		{"Expires", "Expires: 60", "expires: 3600", "reply 400", "validate:single-value"},
		{"Replaces", "Replaces: a@b;to-tag=1;from-tag=2", "Replaces: c@d;to-tag=3;from-tag=4", "reply 400", "validate:single-value"},
		{"Date", "Date: Sat, 13 Nov 2010 23:29:00 GMT", "Date: Sat, 13 Nov 2010 23:29:01 GMT", "reply 400", "validate:single-value"},
		{"Session-Expires", "Session-Expires: 1800", "x: 90", "reply 400", "validate:single-value"},
	}
	for _, c := range cases {
		for _, tr := range []string{"udp", "tcp"} {
			t.Run(tr+"/"+c.second, func(t *testing.T) {
				hdrs := plus(edit(baseHdrs, c.name, c.first), c.second)
				ruleCase{hdrs: hdrs, body: sdpBody, transport: tr, want: c.want, stage: c.stage}.run(t)
			})
		}
	}
	// Refer-To: sipgo parses the long form, leaves the compact r generic.
	refer := []string{
		"Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKr1", "Max-Forwards: 70", "To: <sip:bob@example.com>;tag=b",
		"From: <sip:alice@example.org>;tag=a", "Call-ID: r@h", "CSeq: 2 REFER", "Contact: <sip:alice@192.0.2.10>",
		"Refer-To: <sip:carol@example.com>", "r: <sip:mallory@example.com>",
	}
	ruleCase{name: "refer-to", start: "REFER sip:bob@example.com SIP/2.0", hdrs: refer, want: "reply 400", stage: "validate:single-value"}.run(t)
}

// req.To() in sipgo returns the last To: the duplicate must never get that
// far, whichever spelling comes first.
func TestDuplicateToNeverReachesChain(t *testing.T) {
	hdrs := plus(edit(baseHdrs, "To", "t: <sip:bob@example.com>"), "To: <sip:bob@example.com>;tag=forged")
	for _, tr := range []string{"udp", "tcp"} {
		r := receive(t, tr, build(inviteLine, hdrs, sdpBody))
		if r.req == nil {
			t.Fatalf("%s: parser refused the message, the test proves nothing", tr)
		}
		if !r.req.To().Params.Has("tag") {
			t.Fatalf("%s: sipgo no longer returns the last To; revisit the comment in README", tr)
		}
		if r.verdict != "drop" {
			t.Errorf("%s: %s, want drop", tr, r.verdict)
		}
	}
}

func TestMandatoryHeaders(t *testing.T) {
	for _, name := range []string{"Via", "From", "To", "Call-ID", "CSeq"} {
		runCases(t, []ruleCase{
			{name: "no " + name, hdrs: edit(baseHdrs, name), body: sdpBody, want: "drop", stage: "validate:missing-header"},
			{name: "no " + name + "/tcp", hdrs: edit(baseHdrs, name), body: sdpBody, transport: "tcp", want: "drop", stage: "validate:missing-header"},
		})
	}
	runCases(t, []ruleCase{
		{name: "no Max-Forwards", hdrs: edit(baseHdrs, "Max-Forwards"), body: sdpBody, want: "reply 400", stage: "validate:max-forwards"},
		{name: "Max-Forwards 0", hdrs: edit(baseHdrs, "Max-Forwards", "Max-Forwards: 0"), body: sdpBody, want: "reply 483", stage: "validate:too-many-hops"},
		{name: "Max-Forwards 256", hdrs: edit(baseHdrs, "Max-Forwards", "Max-Forwards: 256"), body: sdpBody, want: "reply 400", stage: "validate:max-forwards"},
		{name: "Max-Forwards 255", hdrs: edit(baseHdrs, "Max-Forwards", "Max-Forwards: 255"), body: sdpBody, want: "accept", stage: "validate"},
		{name: "Max-Forwards 1", hdrs: edit(baseHdrs, "Max-Forwards", "Max-Forwards: 1"), body: sdpBody, want: "accept", stage: "validate"},
	})
}

func TestCSeq(t *testing.T) {
	runCases(t, []ruleCase{
		{name: "method mismatch", hdrs: edit(baseHdrs, "CSeq", "CSeq: 1 BYE"), body: sdpBody, want: "reply 400", stage: "validate:cseq-method"},
		{name: "method mismatch tcp", hdrs: edit(baseHdrs, "CSeq", "CSeq: 1 OPTIONS"), body: sdpBody, transport: "tcp", want: "reply 400", stage: "validate:cseq-method"},
		// sipgo upper-cases the request-line method: PreParse compares
		// the raw bytes.
		{name: "only case differs", start: "invite sip:bob@example.com SIP/2.0", hdrs: baseHdrs, body: sdpBody, want: "drop", stage: "pre:method-case"},
		{name: "lower case both", start: "invite sip:bob@example.com SIP/2.0", hdrs: edit(baseHdrs, "CSeq", "CSeq: 1 invite"), body: sdpBody, want: "reply 405", stage: "validate:method"},
		{name: "lower case both tcp", start: "invite sip:bob@example.com SIP/2.0", hdrs: edit(baseHdrs, "CSeq", "CSeq: 1 invite"), body: sdpBody, transport: "tcp", want: "reply 405", stage: "validate:method"},
		{name: "folded", hdrs: edit(baseHdrs, "CSeq", "CSeq: 1", "  INVITE"), body: sdpBody, want: "accept", stage: "validate"},
		{name: "largest", hdrs: edit(baseHdrs, "CSeq", "CSeq: 2147483647 INVITE"), body: sdpBody, want: "accept", stage: "validate"},
		{name: "too large", hdrs: edit(baseHdrs, "CSeq", "CSeq: 2147483648 INVITE"), body: sdpBody, want: "drop", stage: "parse"},
		{name: "zero", hdrs: edit(baseHdrs, "CSeq", "CSeq: 0 INVITE"), body: sdpBody, want: "accept", stage: "validate"},
	})
}

func TestVersion(t *testing.T) {
	runCases(t, []ruleCase{
		{name: "SIP/3.0", start: "INVITE sip:bob@example.com SIP/3.0", hdrs: baseHdrs, body: sdpBody, want: "reply 505", stage: "validate:version"},
		{name: "SIP/3.0 tcp", start: "INVITE sip:bob@example.com SIP/3.0", hdrs: baseHdrs, body: sdpBody, transport: "tcp", want: "reply 505", stage: "validate:version"},
		{name: "no version", start: "INVITE sip:bob@example.com", hdrs: baseHdrs, body: sdpBody, want: "drop", stage: "pre:start-line"},
		{name: "garbage version tcp", start: "INVITE sip:bob@example.com SIP/x.y", hdrs: baseHdrs, body: sdpBody, transport: "tcp", want: "drop", stage: "validate:version-syntax"},
		{name: "Via version", hdrs: edit(baseHdrs, "Via", "Via: SIP/3.0/UDP 192.0.2.10;branch=z9hG4bKv"), body: sdpBody, want: "reply 400", stage: "validate:via-protocol"},
	})
}

func TestRequestURI(t *testing.T) {
	long := "INVITE sip:" + strings.Repeat("a", 5000) + "@example.com SIP/2.0"
	runCases(t, []ruleCase{
		{name: "sips", start: "INVITE sips:bob@example.com SIP/2.0", hdrs: baseHdrs, body: sdpBody, want: "accept", stage: "validate"},
		{name: "tel", start: "INVITE tel:+15551234567 SIP/2.0", hdrs: baseHdrs, body: sdpBody, want: "accept", stage: "validate"},
		{name: "ipv6", start: "INVITE sip:bob@[2001:db8::1]:5060 SIP/2.0", hdrs: baseHdrs, body: sdpBody, want: "accept", stage: "validate"},
		{name: "http", start: "INVITE http://example.com/ SIP/2.0", hdrs: baseHdrs, body: sdpBody, want: "reply 416", stage: "validate:uri-scheme"},
		{name: "urn", start: "INVITE urn:service:sos SIP/2.0", hdrs: baseHdrs, body: sdpBody, want: "reply 416", stage: "validate:uri-scheme"},
		{name: "headers", start: "INVITE sip:bob@example.com?Route=%3Csip:evil%3E SIP/2.0", hdrs: baseHdrs, body: sdpBody, want: "reply 400", stage: "validate:request-uri"},
		{name: "bad host", start: "INVITE sip:bob@exa_mple.com SIP/2.0", hdrs: baseHdrs, body: sdpBody, want: "reply 400", stage: "validate:request-uri"},
		{name: "no host", start: "INVITE sip:bob@ SIP/2.0", hdrs: baseHdrs, body: sdpBody, want: "reply 400", stage: "validate:request-uri"},
		{name: "too long", start: long, hdrs: baseHdrs, body: sdpBody, want: "reply 414", stage: "validate:uri-too-long"},
		{name: "angle brackets", start: "INVITE <sip:bob@example.com> SIP/2.0", hdrs: baseHdrs, body: sdpBody, want: "drop", stage: "pre:start-line"},
		{name: "two spaces", start: "INVITE  sip:bob@example.com SIP/2.0", hdrs: baseHdrs, body: sdpBody, want: "drop", stage: "pre:start-line"},
		{name: "trailing space", start: "INVITE sip:bob@example.com SIP/2.0 ", hdrs: baseHdrs, body: sdpBody, want: "drop", stage: "pre:start-line"},
		{name: "quote", start: "INVITE sip:b\"ob@example.com SIP/2.0", hdrs: baseHdrs, body: sdpBody, want: "drop", stage: "pre:start-line"},
		{name: "parameter twice", start: "INVITE sip:bob@example.com;lr;maddr=192.0.2.1;LR SIP/2.0", hdrs: baseHdrs, body: sdpBody, want: "drop", stage: "pre:start-line"},
	})
}

func TestRequire(t *testing.T) {
	runCases(t, []ruleCase{
		{name: "supported", hdrs: plus(baseHdrs, "Require: 100rel, timer", "Proxy-Require: replaces"), body: sdpBody, want: "accept", stage: "validate"},
		{name: "case", hdrs: plus(baseHdrs, "require: 100REL"), body: sdpBody, want: "accept", stage: "validate"},
		{name: "unknown", hdrs: plus(baseHdrs, "Require: 100rel, foo"), body: sdpBody, want: "reply 420", stage: "validate:bad-extension"},
		{name: "proxy unknown", hdrs: plus(baseHdrs, "PROXY-REQUIRE: sec-agree"), body: sdpBody, want: "reply 420", stage: "validate:bad-extension"},
		{name: "empty items", hdrs: plus(baseHdrs, "Require: ,, timer ,"), body: sdpBody, want: "accept", stage: "validate"},
	})
	// RFC 3261 8.2.2.3: ignored in CANCEL.
	cancel := edit(edit(baseHdrs, "CSeq", "CSeq: 314159 CANCEL"), "Content-Type")
	ruleCase{name: "cancel", start: "CANCEL sip:bob@example.com SIP/2.0", hdrs: plus(cancel, "Require: foo"), want: "accept", stage: "validate"}.run(t)

	r := ruleCase{hdrs: plus(baseHdrs, "Require: foo, 100rel", "Proxy-Require: bar, foo"), body: sdpBody, want: "reply 420", stage: "validate"}.run(t)
	if len(r.problem.Extra) != 1 || r.problem.Extra[0].Name() != "Unsupported" || r.problem.Extra[0].Value() != "foo, bar" {
		t.Errorf("420 extra headers %v, want Unsupported: foo, bar", r.problem.Extra)
	}
}

func TestMethods(t *testing.T) {
	sub := edit(edit(baseHdrs, "CSeq", "CSeq: 1 SUBSCRIBE"), "Content-Type")
	r := ruleCase{start: "SUBSCRIBE sip:bob@example.com SIP/2.0", hdrs: plus(sub, "Event: presence"), want: "reply 405", stage: "validate:method"}.run(t)
	if len(r.problem.Extra) != 1 || r.problem.Extra[0].Name() != "Allow" || !strings.Contains(r.problem.Extra[0].Value(), "REGISTER") {
		t.Errorf("405 extra headers %v, want Allow", r.problem.Extra)
	}
	for _, m := range sbc.AllowedMethods {
		hdrs := edit(baseHdrs, "CSeq", "CSeq: 1 "+m)
		body := ""
		if m == "INVITE" || m == "UPDATE" || m == "PRACK" || m == "ACK" {
			body = sdpBody
		} else {
			hdrs = edit(hdrs, "Content-Type")
		}
		ruleCase{name: m, start: m + " sip:bob@example.com SIP/2.0", hdrs: hdrs, body: body, want: "accept", stage: "validate"}.run(t)
	}
}

func TestLimits(t *testing.T) {
	many := append([]string(nil), baseHdrs...)
	for len(many) < DefaultMaxHeaders+1 {
		many = append(many, "X-Pad: 1")
	}
	big := strings.Repeat("a", DefaultMaxBody+1)
	runCases(t, []ruleCase{
		{name: "headers at limit", hdrs: many[:DefaultMaxHeaders-1], body: sdpBody, want: "accept", stage: "validate"},
		{name: "too many headers", hdrs: many, body: sdpBody, want: "reply 400", stage: "validate:too-many-headers"},
		{name: "long header", hdrs: plus(baseHdrs, "X-Long: "+strings.Repeat("b", DefaultMaxHeaderLen)), body: sdpBody, want: "reply 513", stage: "validate:header-too-long"},
		{name: "long To", hdrs: edit(baseHdrs, "To", "To: <sip:"+strings.Repeat("b", DefaultMaxHeaderLen)+"@example.com>"), body: sdpBody, want: "reply 513", stage: "validate:header-too-long"},
		{name: "big body", hdrs: edit(edit(baseHdrs, "CSeq", "CSeq: 1 MESSAGE"), "Content-Type", "Content-Type: text/plain"), start: "MESSAGE sip:bob@example.com SIP/2.0", body: big, transport: "tcp", want: "reply 413", stage: "validate:body-too-large"},
	})
}

func TestControlCharacters(t *testing.T) {
	runCases(t, []ruleCase{
		{name: "NUL in value", hdrs: plus(baseHdrs, "Subject: a\x00b"), body: sdpBody, want: "drop", stage: "pre:control-char"},
		{name: "NUL in value tcp", hdrs: plus(baseHdrs, "Subject: a\x00b"), body: sdpBody, transport: "tcp", want: "drop", stage: "validate:control-char"},
		{name: "BEL in name", hdrs: plus(baseHdrs, "X-\aBell: 1"), body: sdpBody, want: "drop", stage: "pre:control-char"},
		{name: "BEL in name tcp", hdrs: plus(baseHdrs, "X-\aBell: 1"), body: sdpBody, transport: "tcp", want: "drop", stage: "validate:header-name"},
		{name: "DEL in value", hdrs: plus(baseHdrs, "Subject: a\x7fb"), body: sdpBody, want: "drop", stage: "pre:control-char"},
		{name: "ESC in To tcp", hdrs: edit(baseHdrs, "To", "To: \"\x1b[2J\" <sip:bob@example.com>"), body: sdpBody, transport: "tcp", want: "drop", stage: "validate:control-char"},
		{name: "escaped NUL in display name", hdrs: edit(baseHdrs, "From", "From: \"a\\\x00b\" <sip:alice@example.org>;tag=1"), body: sdpBody, want: "drop", stage: "pre:control-char"},
		{name: "escaped NUL in display name tcp", hdrs: edit(baseHdrs, "From", "From: \"a\\\x00b\" <sip:alice@example.org>;tag=1"), body: sdpBody, transport: "tcp", want: "drop", stage: "validate:control-char"},
		{name: "bare LF", hdrs: plus(baseHdrs, "Subject: a\nInjected: b"), body: sdpBody, want: "drop", stage: "pre:line-ending"},
		{name: "bare CR", hdrs: plus(baseHdrs, "Subject: a\rInjected: b"), body: sdpBody, want: "drop", stage: "pre:line-ending"},
		{name: "HTAB is fine", hdrs: plus(baseHdrs, "Subject:\ta\tb"), body: sdpBody, want: "accept", stage: "validate"},
		{name: "UTF-8 is fine", hdrs: plus(baseHdrs, "Subject: caf\xc3\xa9"), body: sdpBody, want: "accept", stage: "validate"},
		{name: "controls in body are fine", hdrs: edit(baseHdrs, "Content-Type", "Content-Type: application/sdp"), body: sdpBody[:len(sdpBody)-2] + "\x00\x01", want: "accept", stage: "validate"},
	})
}

func TestHeaderSyntax(t *testing.T) {
	runCases(t, []ruleCase{
		{name: "no colon", hdrs: plus(baseHdrs, "Foobar roobar"), body: sdpBody, want: "drop", stage: "pre:header-syntax"},
		{name: "name not a token", hdrs: plus(baseHdrs, "X(y): 1"), body: sdpBody, want: "drop", stage: "pre:header-syntax"},
		{name: "name not a token tcp", hdrs: plus(baseHdrs, "X(y): 1"), body: sdpBody, transport: "tcp", want: "drop", stage: "validate:header-name"},
		{name: "space in name tcp", hdrs: plus(baseHdrs, "X y: 1"), body: sdpBody, transport: "tcp", want: "drop", stage: "validate:header-name"},
		{name: "continuation first", hdrs: append([]string{" folded: 1"}, baseHdrs...), body: sdpBody, want: "drop", stage: "pre:header-syntax"},
		{name: "folding", hdrs: plus(baseHdrs, "Subject: one", "\ttwo"), body: sdpBody, want: "accept", stage: "validate"},
		{name: "Call-ID with space tcp", hdrs: edit(baseHdrs, "Call-ID", "Call-ID: a b"), body: sdpBody, transport: "tcp", want: "drop", stage: "validate:call-id"},
		{name: "unquoted display name with comma", hdrs: edit(baseHdrs, "From", "From: Bell, Alexander <sip:alice@example.org>;tag=1"), body: sdpBody, want: "drop", stage: "pre:address-syntax"},
		{name: "unterminated quote", hdrs: edit(baseHdrs, "To", "To: \"Bob <sip:bob@example.com>"), body: sdpBody, want: "drop", stage: "pre:address-syntax"},
		{name: "unclosed angle", hdrs: edit(baseHdrs, "To", "To: <sip:bob@example.com"), body: sdpBody, want: "drop", stage: "pre:address-syntax"},
		{name: "URI headers without <>", hdrs: edit(baseHdrs, "Contact", "Contact: sip:alice@192.0.2.10?Route=%3Csip:x%3E"), body: sdpBody, want: "drop", stage: "pre:address-syntax"},
		{name: "URI headers in <>", hdrs: edit(baseHdrs, "Contact", "Contact: <sip:alice@192.0.2.10?Subject=hi>"), body: sdpBody, want: "accept", stage: "validate"},
		{name: "question mark quoted", hdrs: edit(baseHdrs, "Contact", "Contact: sip:alice@192.0.2.10;x=\"?\""), body: sdpBody, want: "accept", stage: "validate"},
		{name: "two tags", hdrs: edit(baseHdrs, "From", "From: <sip:alice@example.org>;tag=1;TAG=2"), body: sdpBody, want: "drop", stage: "pre:address-syntax"},
		// sipgo keeps only the last of two parameters: over a stream the
		// second tag silently wins (see README, stream gaps).
		{name: "two tags tcp", hdrs: edit(baseHdrs, "From", "From: <sip:alice@example.org>;tag=1;tag=2"), body: sdpBody, transport: "tcp", want: "accept", stage: "validate"},
		{name: "two transports in Contact URI", hdrs: edit(baseHdrs, "Contact", "Contact: <sip:a@192.0.2.10;transport=udp;transport=tcp>"), body: sdpBody, want: "drop", stage: "pre:address-syntax"},
		{name: "semicolon in user is no parameter", hdrs: edit(baseHdrs, "To", "To: <sip:user;tag=x@example.com>;tag=y"), body: sdpBody, want: "accept", stage: "validate"},
		{name: "empty scheme", hdrs: edit(baseHdrs, "To", "To: <:bob@example.com>"), body: sdpBody, transport: "tcp", want: "drop", stage: "validate:address"},
		{name: "URI headers in To", hdrs: edit(baseHdrs, "To", "To: <sip:bob@example.com?Subject=x>"), body: sdpBody, want: "drop", stage: "validate:address"},
		{name: "quoted From param", hdrs: edit(baseHdrs, "From", "From: <sip:alice@example.org>;tag=1;x=\"q\""), body: sdpBody, want: "accept", stage: "validate"},
		{name: "quoted From param with blank", hdrs: edit(baseHdrs, "From", "From: <sip:alice@example.org>;tag=1;x=\"q r\""), body: sdpBody, want: "drop", stage: "validate:address"},
		{name: "Contact instance", hdrs: edit(baseHdrs, "Contact", "Contact: <sip:alice@192.0.2.10>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\";reg-id=1"), body: sdpBody, want: "accept", stage: "validate"},
		{name: "Route not SIP", hdrs: plus(baseHdrs, "Route: <urn:service:sos>"), body: sdpBody, want: "reply 400", stage: "validate:uri-header"},
		{name: "Record-Route", hdrs: plus(baseHdrs, "Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>"), body: sdpBody, want: "accept", stage: "validate"},
		{name: "Route garbage", hdrs: plus(baseHdrs, "Route: A:>"), body: sdpBody, want: "reply 400", stage: "validate:uri-header"},
		{name: "Record-Route tel", hdrs: plus(baseHdrs, "Record-Route: <tel:+1555>"), body: sdpBody, want: "reply 400", stage: "validate:uri-header"},
		{name: "Contact bad URI", hdrs: edit(baseHdrs, "Contact", "Contact: <::A0>"), body: sdpBody, transport: "tcp", want: "reply 400", stage: "validate:contact"},
		{name: "token display name", hdrs: edit(baseHdrs, "From", "From: Alice Liddell <sip:alice@example.org>;tag=1"), body: sdpBody, want: "accept", stage: "validate"},
	})
}

func TestVia(t *testing.T) {
	runCases(t, []ruleCase{
		{name: "broadcast", hdrs: edit(baseHdrs, "Via", "Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bKb"), body: sdpBody, want: "drop", stage: "validate:via"},
		{name: "multicast received", hdrs: edit(baseHdrs, "Via", "Via: SIP/2.0/UDP h.example.com;branch=z9hG4bKb;received=224.0.0.1"), body: sdpBody, want: "drop", stage: "validate:via"},
		{name: "unspecified maddr", hdrs: edit(baseHdrs, "Via", "Via: SIP/2.0/UDP h.example.com;branch=z9hG4bKb;maddr=0.0.0.0"), body: sdpBody, want: "drop", stage: "validate:via"},
		{name: "port out of range", hdrs: edit(baseHdrs, "Via", "Via: SIP/2.0/UDP 192.0.2.1:70000;branch=z9hG4bKb"), body: sdpBody, want: "drop", stage: "validate:via"},
		{name: "host garbage", hdrs: edit(baseHdrs, "Via", "Via: SIP/2.0/UDP a*b;branch=z9hG4bKb"), body: sdpBody, want: "drop", stage: "validate:via"},
		{name: "ipv6", hdrs: edit(baseHdrs, "Via", "Via: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKb"), body: sdpBody, want: "accept", stage: "validate"},
		{name: "compact and folded", hdrs: edit(baseHdrs, "Via", "v: SIP/2.0/UDP 192.0.2.1", " ;branch=z9hG4bKb"), body: sdpBody, want: "accept", stage: "validate"},
		{name: "two branches", hdrs: edit(baseHdrs, "Via", "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa;BRANCH=z9hG4bKb"), body: sdpBody, want: "drop", stage: "validate:via"},
		{name: "quoted param", hdrs: edit(baseHdrs, "Via", "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa;x=\"y\""), body: sdpBody, want: "drop", stage: "validate:via"},
		{name: "lower transport, LWS", hdrs: edit(baseHdrs, "Via", "Via: SIP / 2.0 / udp 192.0.2.1 ; branch = z9hG4bKa"), body: sdpBody, want: "accept", stage: "validate"},
	})
}

func TestContentLength(t *testing.T) {
	n := strconv.Itoa(len(sdpBody))
	runCases(t, []ruleCase{
		{name: "larger than datagram", hdrs: plus(baseHdrs, "Content-Length: 500"), body: sdpBody, want: "drop", stage: "pre:truncated-body"},
		{name: "smaller: rest ignored", hdrs: plus(baseHdrs, "Content-Length: 3"), body: sdpBody, want: "accept", stage: "validate"},
		{name: "two", hdrs: plus(baseHdrs, "Content-Length: "+n, "l: "+n), body: sdpBody, want: "drop", stage: "pre:dup-content-length"},
		{name: "two tcp", hdrs: plus(baseHdrs, "Content-Length: "+n, "l: "+n), body: sdpBody, transport: "tcp", want: "drop", stage: "validate:content-length"},
		{name: "negative", hdrs: plus(baseHdrs, "Content-Length: -1"), body: sdpBody, want: "drop", stage: "pre:content-length"},
		{name: "hex", hdrs: plus(baseHdrs, "Content-Length: 0x97"), body: sdpBody, want: "drop", stage: "pre:content-length"},
		{name: "empty", hdrs: plus(baseHdrs, "Content-Length:"), body: sdpBody, want: "drop", stage: "pre:content-length"},
		{name: "leading zeros", hdrs: plus(baseHdrs, "Content-Length: 000"+n), body: sdpBody, want: "accept", stage: "validate"},
		{name: "none on udp", hdrs: plus(baseHdrs, "X: y"), body: sdpBody, want: "accept", stage: "validate"},
	})
	// A shorter Content-Length cuts the datagram: the rest is never seen.
	short := receive(t, "udp", build(inviteLine, plus(baseHdrs, "Content-Length: 3"), sdpBody))
	if short.req == nil || string(short.req.Body()) != "v=0" {
		t.Errorf("short Content-Length: body %q", short.req.Body())
	}
	// Without Content-Length a datagram's body is the rest (RFC 3261 18.3).
	data := []byte(strings.Replace(string(build(inviteLine, baseHdrs, sdpBody)), "Content-Length: "+n+"\r\n", "", 1))
	if r := receive(t, "udp", data); r.verdict != "accept" {
		t.Errorf("udp without Content-Length: %s by %s", r.verdict, r.stage)
	}
	// Hand-built request with a lying Content-Length over a stream.
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "bob", Host: "example.com"})
	for _, h := range []string{"Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKx", "From: <sip:a@example.org>;tag=1", "To: <sip:bob@example.com>", "Call-ID: x@y", "CSeq: 1 INVITE", "Max-Forwards: 70", "Contact: <sip:a@192.0.2.1>", "Content-Type: application/sdp"} {
		hs, err := sip.HeadersParser(sip.DefaultHeadersParser()).ParseHeader(nil, []byte(h))
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range hs {
			req.AppendHeader(x)
		}
	}
	cl := sip.ContentLengthHeader(9)
	req.AppendHeader(&cl)
	if p := Validate(req, "tcp"); p.Rule != RuleContentLength || !p.Silent {
		t.Errorf("lying Content-Length: %+v", p)
	}
	req.RemoveHeader("Content-Length")
	if p := Validate(req, "tcp"); p.Rule != RuleContentLength {
		t.Errorf("no Content-Length on tcp: %+v", p)
	}
	if p := Validate(req, "udp"); !p.OK() {
		t.Errorf("no Content-Length on udp: %+v", p)
	}
}

func TestBodies(t *testing.T) {
	runCases(t, []ruleCase{
		{name: "no Content-Type", hdrs: edit(baseHdrs, "Content-Type"), body: sdpBody, want: "reply 400", stage: "validate:content-type"},
		{name: "text/plain INVITE", hdrs: edit(baseHdrs, "Content-Type", "Content-Type: text/plain"), body: sdpBody, want: "reply 415", stage: "validate:media-type"},
		{name: "sdp with params", hdrs: edit(baseHdrs, "Content-Type", "Content-Type: Application/SDP ; charset=utf-8"), body: sdpBody, want: "accept", stage: "validate"},
		{name: "no body", hdrs: edit(baseHdrs, "Content-Type"), want: "accept", stage: "validate"},
		{name: "accept text", hdrs: plus(baseHdrs, "Accept: text/plain"), body: sdpBody, want: "reply 406", stage: "validate:not-acceptable"},
		{name: "accept empty", hdrs: plus(baseHdrs, "Accept:"), body: sdpBody, want: "reply 406", stage: "validate:not-acceptable"},
		{name: "accept wildcard", hdrs: plus(baseHdrs, "Accept: text/plain, application/*;q=0.5"), body: sdpBody, want: "accept", stage: "validate"},
		{name: "accept any", hdrs: plus(baseHdrs, "Accept: */*"), body: sdpBody, want: "accept", stage: "validate"},
		{name: "accept second header", hdrs: plus(baseHdrs, "Accept: text/plain", "Accept: application/sdp"), body: sdpBody, want: "accept", stage: "validate"},
	})
	msg := edit(edit(baseHdrs, "CSeq", "CSeq: 1 MESSAGE"), "Content-Type", "Content-Type: text/plain")
	ruleCase{name: "MESSAGE text", start: "MESSAGE sip:bob@example.com SIP/2.0", hdrs: msg, body: "hello", want: "accept", stage: "validate"}.run(t)
}

func TestContact(t *testing.T) {
	runCases(t, []ruleCase{
		{name: "INVITE without", hdrs: edit(baseHdrs, "Contact"), body: sdpBody, want: "reply 400", stage: "validate:contact"},
		{name: "INVITE with two", hdrs: plus(baseHdrs, "m: <sip:alice@192.0.2.11>"), body: sdpBody, want: "reply 400", stage: "validate:contact"},
		{name: "INVITE with two in one", hdrs: edit(baseHdrs, "Contact", "Contact: <sip:a@192.0.2.10>, <sip:b@192.0.2.11>"), body: sdpBody, want: "reply 400", stage: "validate:contact"},
	})
}

func TestAddressesAndValues(t *testing.T) {
	reg := []string{
		"Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKreg", "Max-Forwards: 70", "To: <sip:alice@example.org>",
		"From: <sip:alice@example.org>;tag=r1", "Call-ID: reg@h", "CSeq: 1 REGISTER", "Contact: <sip:alice@192.0.2.10>",
	}
	regLine := "REGISTER sip:example.org SIP/2.0"
	runCases(t, []ruleCase{
		{name: "From http", hdrs: edit(baseHdrs, "From", "From: <http://example.org/>;tag=1"), body: sdpBody, want: "reply 400", stage: "validate:address-scheme"},
		{name: "To tel", hdrs: edit(baseHdrs, "To", "To: <tel:+15551234567>"), body: sdpBody, want: "accept", stage: "validate"},
		{name: "REGISTER To tel", start: regLine, hdrs: edit(reg, "To", "To: <tel:+15551234567>"), want: "reply 400", stage: "validate:address-scheme"},
		{name: "REGISTER", start: regLine, hdrs: reg, want: "accept", stage: "validate"},
		{name: "REGISTER Expires", start: regLine, hdrs: plus(reg, "Expires: 3600"), want: "accept", stage: "validate"},
		{name: "REGISTER Expires garbage", start: regLine, hdrs: plus(reg, "Expires: soon"), want: "reply 400", stage: "validate:expires"},
		{name: "REGISTER Expires huge", start: regLine, hdrs: plus(reg, "Expires: 4294967296"), want: "reply 400", stage: "validate:expires"},
		{name: "Date GMT", hdrs: plus(baseHdrs, "Date: Sat, 13 Nov 2010 23:29:00 GMT"), body: sdpBody, want: "accept", stage: "validate"},
		{name: "Date EST", hdrs: plus(baseHdrs, "Date: Sat, 13 Nov 2010 23:29:00 EST"), body: sdpBody, want: "reply 400", stage: "validate:date"},
	})
}

// A failing ACK is never answered.
func TestAckNeverAnswered(t *testing.T) {
	ack := edit(edit(baseHdrs, "CSeq", "CSeq: 314159 ACK"), "Max-Forwards", "Max-Forwards: 0")
	r := ruleCase{start: "ACK sip:bob@example.com SIP/2.0", hdrs: ack, body: sdpBody, want: "drop", stage: "validate:too-many-hops"}.run(t)
	if r.req == nil {
		t.Fatal("no request")
	}
	r.req.SetSource("192.0.2.1:5060")
	w := &recorder{}
	v, err := New(Options{}).ServeSIP(context.Background(), w, &sbc.Request{Request: r.req, Transport: "udp"})
	if err != nil || v != sbc.Dropped || len(w.sent) != 0 {
		t.Errorf("ACK: verdict %v err %v sent %d", v, err, len(w.sent))
	}
}

func TestLayer(t *testing.T) {
	parse := func(hdrs []string, start string) *sip.Request {
		t.Helper()
		if start == "" {
			start = inviteLine
		}
		m, err := sip.ParseMessage(build(start, hdrs, sdpBody))
		if err != nil {
			t.Fatal(err)
		}
		req := m.(*sip.Request)
		req.SetTransport("UDP")
		req.SetSource("192.0.2.1:5060")
		return req
	}
	s := New(Options{QuietExternal: false})
	w := &recorder{}
	if v, err := s.ServeSIP(context.Background(), w, &sbc.Request{Request: parse(baseHdrs, ""), Transport: "udp"}); v != sbc.Continue || err != nil {
		t.Fatalf("valid: %v %v", v, err)
	}
	bad := edit(baseHdrs, "Max-Forwards", "Max-Forwards: 0")
	if v, _ := s.ServeSIP(context.Background(), w, &sbc.Request{Request: parse(bad, ""), Transport: "udp", Side: sbc.External}); v != sbc.Rejected || w.Written() != 483 {
		t.Fatalf("483: %v %d", v, w.Written())
	}
	if v, _ := s.ServeSIP(context.Background(), w, &sbc.Request{Request: parse(edit(baseHdrs, "Call-ID"), ""), Transport: "udp"}); v != sbc.Dropped || len(w.sent) != 1 {
		t.Fatalf("missing Call-ID: %v, %d sent", v, len(w.sent))
	}
	if v, _ := s.ServeSIP(context.Background(), w, nil); v != sbc.Dropped {
		t.Fatalf("nil request: %v", v)
	}

	quiet := New(Options{QuietExternal: true})
	w = &recorder{}
	if v, _ := quiet.ServeSIP(context.Background(), w, &sbc.Request{Request: parse(bad, ""), Transport: "udp", Side: sbc.External}); v != sbc.Dropped || len(w.sent) != 0 {
		t.Fatalf("quiet external: %v, %d sent", v, len(w.sent))
	}
	if v, _ := quiet.ServeSIP(context.Background(), w, &sbc.Request{Request: parse(bad, ""), Transport: "udp", Side: sbc.Internal}); v != sbc.Rejected || len(w.sent) != 1 {
		t.Fatalf("quiet internal: %v, %d sent", v, len(w.sent))
	}

	// A failing Respond is an error of the layer.
	w = &recorder{err: errTest}
	if _, err := s.ServeSIP(context.Background(), w, &sbc.Request{Request: parse(bad, ""), Transport: "udp"}); err == nil {
		t.Fatal("respond error not reported")
	}

	st := s.Stats()
	if st.Checked != 5 || st.Passed != 1 || st.Rejected != 2 || st.Dropped != 2 {
		t.Errorf("stats %+v", st)
	}
	if st.ByRule["too-many-hops"] != 2 || st.ByRule["missing-header"] != 1 || st.ByRule["nil"] != 1 {
		t.Errorf("by rule %v", st.ByRule)
	}
	if s.Name() != "sanity" {
		t.Errorf("name %q", s.Name())
	}
	if _, err := sbc.BuildChain(map[string]sbc.Handler{"sanity": s}); err != nil {
		t.Errorf("not accepted by BuildChain: %v", err)
	}
}

type testError string

func (e testError) Error() string { return string(e) }

const errTest = testError("respond failed")

func TestResponses(t *testing.T) {
	ok := []string{
		"Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKr", "From: <sip:a@example.org>;tag=1",
		"To: <sip:b@example.com>;tag=2", "Call-ID: c@h", "CSeq: 1 INVITE",
	}
	cases := []struct {
		name  string
		start string
		hdrs  []string
		want  bool
	}{
		{"ok", "SIP/2.0 200 OK", ok, true},
		{"empty reason", "SIP/2.0 180 ", ok, true},
		{"code 700", "SIP/2.0 700 Nope", ok, false},
		{"code 099", "SIP/2.0 099 Nope", ok, false},
		{"two To", "SIP/2.0 200 OK", plus(ok, "t: <sip:x@example.com>;tag=3"), false},
		{"no CSeq", "SIP/2.0 200 OK", edit(ok, "CSeq"), false},
		{"no Via", "SIP/2.0 200 OK", edit(ok, "Via"), false},
		{"broadcast Via", "SIP/2.0 200 OK", plus(ok, "Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bKx"), false},
		{"multicast received", "SIP/2.0 200 OK", plus(ok, "Via: SIP/2.0/UDP h;branch=z9hG4bKx;received=239.1.1.1"), false},
		{"version", "SIP/3.0 200 OK", ok, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := false
			for _, tr := range []string{"udp", "tcp"} {
				r := receive(t, tr, build(c.start, c.hdrs, ""))
				got = r.verdict == "accept"
				if got != c.want {
					t.Errorf("%s: %s by %s, want accepted=%v", tr, r.verdict, r.stage, c.want)
				}
			}
		})
	}
	s := New(Options{})
	if s.AllowResponse(nil) {
		t.Error("nil response allowed")
	}
	m, err := sip.ParseMessage(build("SIP/2.0 200 OK", ok, ""))
	if err != nil {
		t.Fatal(err)
	}
	if !s.AllowResponse(m.(*sip.Response)) {
		t.Error("valid response refused")
	}
	if st := s.Stats(); st.Responses != 2 || st.BadResponses != 1 {
		t.Errorf("response stats %+v", st)
	}
}

func TestRuleTable(t *testing.T) {
	for r := RuleNone + 1; r < numRules; r++ {
		code, reason := r.Status()
		if code < 400 || code > 599 || reason == "" || r.String() == "" || r.String() == "unknown" {
			t.Errorf("rule %d: %q %d %q", r, r.String(), code, reason)
		}
		if r.Silent() != (r <= lastSilent) {
			t.Errorf("rule %s: silent %v", r, r.Silent())
		}
	}
	if RuleNone.Silent() || Rule(200).String() != "unknown" {
		t.Error("edge rules")
	}
}

// Validate may run while the transaction layer reads the same request: on
// a request with nothing to normalize it must only read (go test -race).
func TestValidateOnlyReadsCleanRequests(t *testing.T) {
	m, err := sip.ParseMessage(build(inviteLine, plus(baseHdrs, "Route: <sip:p.example.com;lr>"), sdpBody))
	if err != nil {
		t.Fatal(err)
	}
	req := m.(*sip.Request)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			_ = req.Via().Host + req.Via().Transport + req.To().Address.Host + req.Recipient.Host
			_, _ = req.From().Params.Get("tag")
			_ = len(req.Via().Params) + len(req.Recipient.UriParams)
		}
	}()
	for i := 0; i < 200; i++ {
		if p := Validate(req, "udp"); !p.OK() {
			t.Fatal(p)
		}
	}
	<-done
}

// dialplan.tel_uri: refuse answers a tel: Request-URI 416, as an unknown
// scheme; by default it passes.
func TestRefuseTel(t *testing.T) {
	m, err := sip.ParseMessage(build("INVITE tel:+15551234567 SIP/2.0", baseHdrs, sdpBody))
	if err != nil {
		t.Fatal(err)
	}
	req := m.(*sip.Request)
	req.SetTransport("UDP")
	req.SetSource("192.0.2.1:5060")
	for _, tc := range []struct {
		refuse bool
		want   sbc.Verdict
		status int
	}{{false, sbc.Continue, 0}, {true, sbc.Rejected, 416}} {
		w := &recorder{}
		v, err := New(Options{RefuseTel: tc.refuse}).ServeSIP(context.Background(), w, &sbc.Request{Request: req, Transport: "udp", Side: sbc.External})
		if err != nil || v != tc.want || w.Written() != tc.status {
			t.Errorf("RefuseTel %v: verdict %v, status %d, err %v; want %v %d", tc.refuse, v, w.Written(), err, tc.want, tc.status)
		}
	}
}
