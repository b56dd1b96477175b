package sanity

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc/sanity/wire"
)

// Fuzz targets. `make test` runs their seeds (and `scripts/fuzz.sh`, via
// `make fuzz`, fuzzes each for FUZZTIME). Seeds are the RFC 4475 messages.

func addTortureSeeds(f *testing.F) [][]byte {
	files, err := filepath.Glob(filepath.Join(torturePath, "*.dat"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no torture files: %v", err)
	}
	var out [][]byte
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// headerValues returns the values of the headers named in names (any
// case, any spelling listed) in the torture messages, for header seeds.
func headerValues(msgs [][]byte, names ...string) []string {
	var out []string
	for _, m := range msgs {
		head, _, _ := bytes.Cut(m, []byte("\r\n\r\n"))
		for _, line := range bytes.Split(head, []byte("\r\n")) {
			n, v, ok := bytes.Cut(line, []byte(":"))
			if !ok {
				continue
			}
			for _, want := range names {
				if bytes.EqualFold(bytes.TrimSpace(n), []byte(want)) {
					out = append(out, string(bytes.TrimSpace(v)))
				}
			}
		}
	}
	return out
}

// FuzzMessage: bytes → PreParse → sipgo → Validate (UDP), or bytes →
// sipgo's stream parser → Validate (TCP, where Validate stands alone),
// never panics. A request Validate accepts must survive being built again:
// serialised as it is, and rebuilt field by field the way the B2BUA builds
// a leg; both must parse and validate. A reply it gets must parse.
func FuzzMessage(f *testing.F) {
	for _, s := range addTortureSeeds(f) {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Add(build(inviteLine, baseHdrs, sdpBody), false)
	f.Fuzz(messageProperty)
}

func messageProperty(t *testing.T, data []byte, stream bool) {
	{
		var msg sip.Message
		if stream {
			ps := sip.NewParser().NewSIPStream()
			defer ps.Close()
			_ = ps.ParseSIPStream(data, func(m sip.Message) {
				if msg == nil {
					msg = m
				}
			})
			if msg == nil {
				return
			}
		} else {
			pre := wire.PreParse("udp", data, 0)
			if pre.Action != wire.Accept {
				return
			}
			m, err := sip.ParseMessage(pre.Data)
			if err != nil {
				return
			}
			msg = m
		}
		res, ok := msg.(*sip.Response)
		if ok {
			ValidateResponse(res)
			return
		}
		req := msg.(*sip.Request)
		tr := "udp"
		if stream {
			tr = "tcp"
		}
		req.SetTransport(strings.ToUpper(tr))
		req.SetSource("192.0.2.1:5060")
		p := Validate(req, tr)
		if !p.OK() {
			if !p.Silent {
				// The reply the layer would send.
				reply := sip.NewResponseFromRequest(req, p.Status, p.Reason, nil)
				reply.SipVersion = "SIP/2.0"
				for _, h := range p.Extra {
					reply.AppendHeader(h)
				}
				if _, err := sip.ParseMessage([]byte(reply.String())); err != nil {
					t.Fatalf("reply %d to an accepted-for-reply request does not parse: %v\n%s", p.Status, err, reply.String())
				}
			}
			return
		}
		// Over TCP Validate cannot see what PreParse catches on raw
		// bytes; the rebuilt request is checked against Validate alone.
		again := []byte(req.String())
		if r := receive(t, tr, again); r.verdict != "accept" {
			t.Fatalf("accepted request, serialised again: %s by %s\n%s", r.verdict, r.stage, again)
		}
		if r := receive(t, tr, rebuild(req)); r.verdict != "accept" {
			t.Fatalf("accepted request, rebuilt: %s by %s\n%s", r.verdict, r.stage, rebuild(req))
		}
	}
}

// rebuild makes a new request from the fields of req as the B2BUA does for
// a leg: same method, Request-URI, From/To identities, Call-ID, CSeq; its
// own Via, Max-Forwards, Contact; the body.
func rebuild(req *sip.Request) []byte {
	out := sip.NewRequest(req.Method, *req.Recipient.Clone())
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "192.0.2.99", Port: 5060, Params: sip.NewParams()}
	via.Params.Add("branch", "z9hG4bKrebuilt")
	out.AppendHeader(via)
	mf := sip.MaxForwardsHeader(70)
	out.AppendHeader(&mf)
	from := req.From()
	out.AppendHeader(&sip.FromHeader{DisplayName: from.DisplayName, Address: *from.Address.Clone(), Params: from.Params.Clone()})
	to := req.To()
	out.AppendHeader(&sip.ToHeader{DisplayName: to.DisplayName, Address: *to.Address.Clone(), Params: to.Params.Clone()})
	out.AppendHeader(sip.HeaderClone(req.CallID()))
	out.AppendHeader(sip.HeaderClone(req.CSeq()))
	out.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: "192.0.2.99", Port: 5060}})
	for _, name := range []string{"Content-Type", "Require", "Accept", "Expires", "Date"} {
		for _, h := range req.GetHeaders(name) {
			out.AppendHeader(sip.NewHeader(h.Name(), h.Value()))
		}
	}
	out.SetBody(req.Body())
	return []byte(out.String())
}

// FuzzURI: sipgo's URI parser and our Request-URI rules never panic; a
// URI we accept prints to a URI that parses to the same thing and is
// accepted again.
func FuzzURI(f *testing.F) {
	for _, s := range []string{
		"sip:bob@example.com", "sips:bob@[2001:db8::1]:5061;transport=tcp", "tel:+15551234567",
		"sip:user;par=u%40example.net@example.com", "sip:sips%3Auser%40example.com@example.net",
		"sip:bob@example.com?Route=%3Csip:example.com%3E", "soap.beep://192.0.2.103:3002",
		"nobodyKnowsThisScheme:totallyopaquecontent", "sip:*", "sip:a:b@c:5;x=y?h=v&i=w",
	} {
		f.Add(s)
	}
	s := New(Options{})
	f.Fuzz(func(t *testing.T, in string) {
		var u sip.Uri
		if sip.ParseUri(in, &u) != nil {
			return
		}
		var tl tally
		n := tl.uri(&u)
		if tl.bad != RuleNone || s.requestURI(&u, n) != RuleNone {
			return
		}
		out := u.String()
		var v sip.Uri
		if err := sip.ParseUri(out, &v); err != nil {
			t.Fatalf("%q accepted, prints %q which does not parse: %v", in, out, err)
		}
		var tl2 tally
		if r := s.requestURI(&v, tl2.uri(&v)); r != RuleNone || tl2.bad != RuleNone {
			t.Fatalf("%q accepted, %q refused: %v %v", in, out, r, tl2.bad)
		}
		if v.Scheme != u.Scheme || v.Host != u.Host || v.User != u.User || v.Port != u.Port || v.Raw() != u.Raw() {
			t.Fatalf("%q → %q: %+v became %+v", in, out, u, v)
		}
	})
}

// FuzzNameAddr: a From header value through the whole path (PreParse's
// address rules, sipgo's name-addr parser, Validate) never panics; an
// accepted From comes back with the same URI and tag after printing.
func FuzzNameAddr(f *testing.F) {
	for _, v := range headerValues(addTortureSeeds(f), "From", "f", "To", "t", "Contact", "m") {
		f.Add(v)
	}
	f.Add(`"Alice \"A\" Liddell" <sip:alice@example.org;transport=tcp>;tag=1;x="y z"`)
	f.Fuzz(func(t *testing.T, value string) {
		var u sip.Uri
		var params sip.HeaderParams
		_, _ = sip.ParseAddressValue(value, &u, &params)

		data := build(inviteLine, edit(baseHdrs, "From", "From: "+value), sdpBody)
		r := receive(t, "udp", data)
		if r.verdict != "accept" {
			return
		}
		from := r.req.From()
		printed := from.Value()
		var u2 sip.Uri
		var p2 sip.HeaderParams
		if _, err := sip.ParseAddressValue(printed, &u2, &p2); err != nil {
			t.Fatalf("From %q accepted, prints %q which does not parse: %v", value, printed, err)
		}
		tag, _ := from.Params.Get("tag")
		tag2, _ := p2.Get("tag")
		if u2.Scheme != from.Address.Scheme || u2.Host != from.Address.Host || u2.User != from.Address.User || tag != tag2 {
			t.Fatalf("From %q → %q: %+v tag %q became %+v tag %q", value, printed, from.Address, tag, u2, tag2)
		}
	})
}

// FuzzVia: a top Via value through the whole path never panics; an
// accepted Via prints to one that routes the reply to the same place.
func FuzzVia(f *testing.F) {
	for _, v := range headerValues(addTortureSeeds(f), "Via", "v") {
		f.Add(v)
	}
	f.Add("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKx;rport;received=192.0.2.1")
	hp := sip.HeadersParser(sip.DefaultHeadersParser())
	f.Fuzz(func(t *testing.T, value string) {
		_, _ = hp.ParseHeader(nil, []byte("Via: "+value))

		data := build(inviteLine, edit(baseHdrs, "Via", "Via: "+value), sdpBody)
		r := receive(t, "udp", data)
		if r.verdict != "accept" {
			return
		}
		via := r.req.Via()
		hs, err := hp.ParseHeader(nil, []byte("Via: "+via.Value()))
		if err != nil || len(hs) == 0 {
			t.Fatalf("Via %q accepted, prints %q which does not parse: %v", value, via.Value(), err)
		}
		v2, ok := hs[0].(*sip.ViaHeader)
		if !ok || !viaRoutable(v2) || v2.Host != via.Host || v2.Port != via.Port || v2.Transport != via.Transport {
			t.Fatalf("Via %q → %q: %+v became %+v", value, via.Value(), via, hs[0])
		}
		b1, _ := via.Params.Get("branch")
		b2, _ := v2.Params.Get("branch")
		if b1 != b2 {
			t.Fatalf("Via %q: branch %q became %q", value, b1, b2)
		}
	})
}
