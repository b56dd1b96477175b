package b2bua

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/sanity"
	"github.com/sipwall/sipwall/sbc/sanity/wire"
	"github.com/sipwall/sipwall/sbc/upstream"
)

type fixedEndpoint struct{ l *sbc.Listener }

func (e fixedEndpoint) Local(string, sbc.Side) (*sbc.Listener, bool) { return e.l, true }

// FuzzBuild drives whole messages through the path of a new call: the
// pre-parse filter, the parser, validation, then the B2BUA building both
// legs' messages. Whatever the SBC builds must serialise to a message that
// parses again: a request it accepted can never make it emit garbage.
func FuzzBuild(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "rfc4475", "*.dat"))
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nFrom: \"A\" <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.1>\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n"))
	ap := netip.MustParseAddrPort("127.0.0.1:5060")
	lis := &sbc.Listener{Spec: sbc.ListenerSpec{Transport: "udp"}, Bound: ap, Advertise: sip.Addr{IP: ap.Addr().AsSlice(), Port: 5060}}
	b := New(Config{Endpoint: fixedEndpoint{lis}})
	target, err := upstream.ParseTarget("pbx", "sip:127.0.0.3:5060", 1, 1)
	if err != nil {
		f.Fatal(err)
	}
	parser := sip.NewParser()
	f.Fuzz(func(t *testing.T, data []byte) {
		pre := wire.PreParse("udp", data, 65535)
		if pre.Action != wire.Accept || pre.Response {
			return
		}
		msg, err := parser.ParseSIP(pre.Data)
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok || !sanity.Validate(req, "udp").OK() {
			return
		}
		r := &sbc.Request{Request: req, Peer: netip.MustParseAddrPort("192.0.2.1:5060"), Transport: "udp"}
		a := legFromRequest(r, lis)
		bl, err := b.newLeg(r, target, sbc.Internal)
		if err != nil {
			t.Fatal(err)
		}
		out := b.newRequest(bl, req.Method, bl.nextCSeq(), "")
		out.AppendHeader(b.contact(bl, ""))
		b.copyFor(bl, req, out)
		requireFiltered(req, out)
		out.SetBody(req.Body())
		if _, err := parser.ParseSIP([]byte(out.String())); err != nil {
			t.Fatalf("built request does not parse: %v\n%s", err, out.String())
		}
		res := sip.NewResponseFromRequest(out, 180, "Ringing", nil)
		back := b.responseTo(nil, a, req, res, true)
		if _, err := parser.ParseSIP([]byte(back.String())); err != nil {
			t.Fatalf("built response does not parse: %v\n%s", err, back.String())
		}
	})
}
