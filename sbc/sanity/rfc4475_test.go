package sanity

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/sanity/wire"
)

// torture is the expected outcome of every RFC 4475 message (section 3;
// test.dat comes from the RFC's archive), over UDP (PreParse, parser,
// Validate) and over TCP (parser, Validate: no PreParse on streams).
// "rfc" is what RFC 4475 expects; where ours differs the note says why.
var torture = []struct {
	name, section string
	udp, stage    string // verdict and deciding stage (prefix) over UDP
	tcp           string // verdict over TCP
	rfc           string
}{
	// 3.1.1 valid messages
	{"wsinv", "3.1.1.1", "accept", "validate", "accept", "valid"},
	{"intmeth", "3.1.1.2", "drop", "pre:control-char", "drop", "valid (unknown method: 501/405); ours drops: BEL, NUL, DEL escaped in a display name would reach the PBX or be echoed"},
	{"esc01", "3.1.1.3", "accept", "validate", "accept", "valid"},
	{"escnull", "3.1.1.4", "accept", "validate", "accept", "valid"},
	{"esc02", "3.1.1.5", "reply 405", "validate:method", "reply 405", "valid, RE%47IST%45R is not REGISTER: 501/405"},
	{"lwsdisp", "3.1.1.6", "accept", "validate", "accept", "valid"},
	{"longreq", "3.1.1.7", "accept", "validate", "accept", "valid"},
	{"dblreq", "3.1.1.8", "accept", "validate", "accept", "valid, only the REGISTER is processed"},
	{"semiuri", "3.1.1.9", "accept", "validate", "accept", "valid"},
	{"transports", "3.1.1.10", "accept", "validate", "accept", "valid"},
	{"mpart01", "3.1.1.11", "accept", "validate", "accept", "valid"},
	{"unreason", "3.1.1.12", "accept", "response", "accept", "valid response"},
	{"noreason", "3.1.1.13", "accept", "response", "accept", "valid response"},
	// 3.1.2 invalid messages
	{"badinv01", "3.1.2.1", "drop", "parse", "drop", "400"},
	{"clerr", "3.1.2.2", "drop", "pre:truncated-body", "incomplete", "400 over UDP; a stream waits for the rest"},
	{"ncl", "3.1.2.3", "drop", "pre:content-length", "drop", "400"},
	{"scalar02", "3.1.2.4", "drop", "parse", "drop", "400"},
	{"scalarlg", "3.1.2.5", "drop", "parse", "drop", "drop the response"},
	{"quotbal", "3.1.2.6", "drop", "pre:address-syntax", "drop", "400"},
	{"ltgtruri", "3.1.2.7", "drop", "pre:start-line", "drop", "400"},
	{"lwsruri", "3.1.2.8", "drop", "pre:start-line", "drop", "400"},
	{"lwsstart", "3.1.2.9", "drop", "pre:start-line", "drop", "400"},
	{"trws", "3.1.2.10", "drop", "pre:start-line", "drop", "400"},
	{"escruri", "3.1.2.11", "reply 400", "validate:request-uri", "reply 400", "400"},
	{"baddate", "3.1.2.12", "reply 400", "validate:date", "reply 400", "400 (or tolerate)"},
	{"regbadct", "3.1.2.13", "drop", "pre:address-syntax", "accept", "400 (or infer the <>); sipgo keeps no trace of the missing <>, so over TCP it is inferred"},
	{"badaspec", "3.1.2.14", "drop", "parse", "drop", "400"},
	{"baddn", "3.1.2.15", "drop", "pre:address-syntax", "accept", "400; sipgo strips the quotes it never saw, so over TCP it passes"},
	{"badvers", "3.1.2.16", "reply 505", "validate:version", "reply 505", "505"},
	{"mismatch01", "3.1.2.17", "reply 400", "validate:cseq-method", "reply 400", "400"},
	{"mismatch02", "3.1.2.18", "reply 400", "validate:cseq-method", "reply 400", "501 or 400"},
	{"bigcode", "3.1.2.19", "drop", "pre:start-line", "drop", "drop the response"},
	// 3.2 transaction layer
	{"badbranch", "3.2.1", "accept", "validate", "accept", "valid"},
	// 3.3 application layer
	{"insuf", "3.3.1", "drop", "validate:missing-header", "drop", "400; no From/To/Call-ID to build one from"},
	{"unkscm", "3.3.2", "reply 416", "validate:uri-scheme", "reply 416", "416"},
	{"novelsc", "3.3.3", "drop", "parse", "drop", "416; sipgo refuses the '.' in soap.beep"},
	{"unksm2", "3.3.4", "reply 400", "validate:address-scheme", "reply 400", "registrar: 400"},
	{"bext01", "3.3.5", "reply 420", "validate:bad-extension", "reply 420", "420 + Unsupported"},
	{"invut", "3.3.6", "reply 415", "validate:media-type", "reply 415", "415 + Accept"},
	{"regaut01", "3.3.7", "accept", "validate", "accept", "valid; the auth layer answers 401"},
	{"multi01", "3.3.8", "drop", "validate:duplicate-header", "drop", "400"},
	{"mcl01", "3.3.9", "drop", "pre:dup-content-length", "drop", "400; framing is ambiguous"},
	{"bcast", "3.3.10", "drop", "response", "drop", "never send to the broadcast address"},
	{"zeromf", "3.3.11", "reply 483", "validate:too-many-hops", "reply 483", "483 at a proxy"},
	{"cparam01", "3.3.12", "accept", "validate", "accept", "valid"},
	{"cparam02", "3.3.13", "accept", "validate", "accept", "valid"},
	{"regescrt", "3.3.14", "accept", "validate", "accept", "valid"},
	{"sdp01", "3.3.15", "reply 406", "validate:not-acceptable", "reply 406", "406"},
	// 3.4 backward compatibility
	{"inv2543", "3.4", "reply 400", "validate:max-forwards", "drop", "RFC 2543 message, accepted by lenient elements; we require Max-Forwards (and streams Content-Length)"},
	// not in the RFC text, from its archive
	{"test", "archive", "drop", "pre:start-line", "drop", "invalid (no SIP version, header without colon)"},
}

func TestRFC4475TableCoversEveryFile(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(torturePath, "*.dat"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 50 {
		t.Fatalf("found %d torture files, want 50", len(files))
	}
	inTable := map[string]bool{}
	for _, tc := range torture {
		if inTable[tc.name] {
			t.Errorf("%s listed twice", tc.name)
		}
		inTable[tc.name] = true
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".dat")
		if !inTable[name] {
			t.Errorf("%s has no expected outcome", name)
		}
		delete(inTable, name)
	}
	for name := range inTable {
		t.Errorf("%s in the table but not in %s", name, torturePath)
	}
}

func TestRFC4475(t *testing.T) {
	for _, tc := range torture {
		t.Run(tc.name, func(t *testing.T) {
			data := readTorture(t, tc.name)
			u := receive(t, "udp", data)
			if u.verdict != tc.udp || !strings.HasPrefix(u.stage, tc.stage) {
				t.Errorf("udp: %s by %s, want %s by %s (RFC 4475 %s: %s)", u.verdict, u.stage, tc.udp, tc.stage, tc.section, tc.rfc)
			}
			s := receive(t, "tcp", data)
			if s.verdict != tc.tcp {
				t.Errorf("tcp: %s by %s, want %s", s.verdict, s.stage, tc.tcp)
			}
		})
	}
}

// TestRFC4475Layer runs every torture request that reaches the chain
// through the layer: only the valid ones continue (nothing invalid is
// forwarded), a reply carries the expected status, a drop sends nothing.
func TestRFC4475Layer(t *testing.T) {
	layer := New(Options{})
	for _, tc := range torture {
		data := readTorture(t, tc.name)
		pre := wire.PreParse("udp", data, 0)
		if pre.Action != wire.Accept {
			continue
		}
		msg, err := sip.ParseMessage(pre.Data)
		if err != nil {
			continue
		}
		req, ok := msg.(*sip.Request)
		if !ok {
			continue
		}
		req.SetTransport("UDP")
		req.SetSource("192.0.2.1:5060")
		w := &recorder{}
		v, err := layer.ServeSIP(context.Background(), w, &sbc.Request{Request: req, Transport: "udp"})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		switch {
		case tc.udp == "accept":
			if v != sbc.Continue || len(w.sent) != 0 {
				t.Errorf("%s: verdict %v, %d sent; want continue", tc.name, v, len(w.sent))
			}
		case tc.udp == "drop":
			if v != sbc.Dropped || len(w.sent) != 0 {
				t.Errorf("%s: verdict %v, %d sent; want a silent drop", tc.name, v, len(w.sent))
			}
		default:
			want := strings.TrimPrefix(tc.udp, "reply ")
			if v != sbc.Rejected || len(w.sent) != 1 || fmt.Sprint(w.sent[0].StatusCode) != want {
				t.Errorf("%s: verdict %v, sent %v; want %s", tc.name, v, w.sent, tc.udp)
			}
		}
	}
	st := layer.Stats()
	if st.Checked != st.Passed+st.Rejected+st.Dropped {
		t.Errorf("stats do not add up: %+v", st)
	}
}

// TestRFC4475Replies checks what goes with each reply.
func TestRFC4475Replies(t *testing.T) {
	reply := func(name string) *sip.Response {
		t.Helper()
		r := receive(t, "udp", readTorture(t, name))
		if r.req == nil {
			t.Fatalf("%s: no request reached the layer", name)
		}
		r.req.SetSource("192.0.2.1:5060")
		w := &recorder{}
		if _, err := New(Options{}).ServeSIP(context.Background(), w, &sbc.Request{Request: r.req, Transport: "udp"}); err != nil {
			t.Fatal(err)
		}
		if len(w.sent) != 1 {
			t.Fatalf("%s: %d responses sent", name, len(w.sent))
		}
		return w.sent[0]
	}

	res := reply("bext01")
	got := res.GetHeader("Unsupported")
	if got == nil {
		t.Fatal("bext01: 420 without Unsupported")
	}
	for _, tag := range []string{"nothingSupportsThis", "nothingSupportsThisEither", "noProxiesSupportThis", "norDoAnyProxiesSupportThis"} {
		if !strings.Contains(got.Value(), tag) {
			t.Errorf("bext01: Unsupported %q misses %s", got.Value(), tag)
		}
	}

	res = reply("badvers")
	if res.StatusCode != 505 || res.SipVersion != "SIP/2.0" {
		t.Errorf("badvers: %d %s, want 505 in SIP/2.0", res.StatusCode, res.SipVersion)
	}

	res = reply("esc02")
	if h := res.GetHeader("Allow"); h == nil || !strings.Contains(h.Value(), "INVITE") {
		t.Errorf("esc02: 405 without a proper Allow: %v", h)
	}

	for _, name := range []string{"invut", "sdp01"} {
		res = reply(name)
		if h := res.GetHeader("Accept"); h == nil || h.Value() != "application/sdp" {
			t.Errorf("%s: %d without Accept: application/sdp: %v", name, res.StatusCode, h)
		}
	}
}

// TestRFC4475DoubleRequest: the INVITE after the REGISTER in one datagram
// is never processed (RFC 4475 3.1.1.8): PreParse cuts it off, so the
// parser sees exactly one message.
func TestRFC4475DoubleRequest(t *testing.T) {
	data := readTorture(t, "dblreq")
	pre := wire.PreParse("udp", data, 0)
	if pre.Action != wire.Accept {
		t.Fatalf("dblreq: %v %v", pre.Action, pre.Reason)
	}
	if bytes.Contains(pre.Data, []byte("INVITE")) {
		t.Fatal("dblreq: the trailing INVITE was passed on")
	}
	handled := 0
	ps := sip.NewParser().NewSIPStream()
	defer ps.Close()
	err := ps.ParseSIPStream(pre.Data, func(m sip.Message) {
		handled++
		if req, ok := m.(*sip.Request); !ok || req.Method != sip.REGISTER {
			t.Errorf("dblreq: handled %s", m.String())
		}
	})
	if err != nil || handled != 1 {
		t.Fatalf("dblreq: %d messages handled, err %v; want the REGISTER once", handled, err)
	}
}

// TestRFC4475Summary logs the table as it is implemented (go test -v).
func TestRFC4475Summary(t *testing.T) {
	if !testing.Verbose() {
		t.Skip("only with -v")
	}
	for _, tc := range torture {
		t.Logf("%-9s %-10s %-10s %-30s %-10s %s", tc.section, tc.name, tc.udp, tc.stage, tc.tcp, tc.rfc)
	}
}

// TestRFC4475Whitespace: after Validate, the LWS of wsinv no longer hides
// its tags and transports from later layers (sipgo alone reads the To tag
// as the parameter "   tag    ").
func TestRFC4475Whitespace(t *testing.T) {
	r := receive(t, "udp", readTorture(t, "wsinv"))
	if r.verdict != "accept" {
		t.Fatalf("wsinv: %s by %s", r.verdict, r.stage)
	}
	if tag, _ := r.req.To().Params.Get("tag"); tag != "1918181833n" {
		t.Errorf("To tag %q", tag)
	}
	if tag, _ := r.req.From().Params.Get("tag"); tag != "98asjd8" {
		t.Errorf("From tag %q", tag)
	}
	vias := r.req.GetHeaders("Via")
	if len(vias) != 3 {
		t.Fatalf("%d Vias", len(vias))
	}
	want := []string{
		"SIP/2.0/UDP 192.0.2.2;branch=390skdjuw",
		"SIP/2.0/TCP spindle.example.com;branch=z9hG4bK9ikj8",
		"SIP/2.0/UDP 192.168.255.111;branch=z9hG4bK30239",
	}
	for i, v := range vias {
		if v.Value() != want[i] {
			t.Errorf("Via %d: %q, want %q", i, v.Value(), want[i])
		}
	}
}
