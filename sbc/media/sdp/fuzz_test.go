package sdp

import (
	"errors"
	"net/netip"
	"testing"
)

// FuzzParseRewrite: Parse never panics; what it accepts, Rewrite turns into
// a body that parses again with as many streams, shows only the target's
// address (or an unspecified one for hold) and is a fixed point of Rewrite.
// mode picks the target: bit 0 IPv6, bit 1 RTCP 0 (default), bit 2 RTCP
// not RTP+1.
func FuzzParseRewrite(f *testing.F) {
	for i, sm := range samples {
		f.Add([]byte(sm.body), uint8(i))
	}
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nm=audio 0 RTP/AVP 0\r\nc=IN IP4 0.0.0.0\r\na=rtcp:1 IN IP4 0.0.0.0\r\n"), uint8(4))
	f.Add([]byte("v=0\no=- 1 1 IN IP6 ::\ns=-\nc=IN IP6 ff15::1/2\nt=0 0\nm=video 9/3 TCP/RTP/AVP 96\na=rtcp-mux\n"), uint8(3))
	f.Add([]byte("v=0\r\ntesting=123\r\n"), uint8(0))
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nm =video 3227 RTP/AVP 31\r\n"), uint8(0))
	f.Fuzz(func(t *testing.T, body []byte, mode uint8) {
		s, err := Parse(body)
		if err != nil {
			if s != nil || !(errors.Is(err, ErrMalformed) || errors.Is(err, ErrTooLarge)) {
				t.Fatalf("Parse() = %v, %v", s, err)
			}
			return
		}
		addr := netip.MustParseAddr("203.0.113.10")
		if mode&1 != 0 {
			addr = netip.MustParseAddr("2001:db8::10")
		}
		tg := Target{Addr: addr, Origin: Origin{User: "sipwall", SessID: "1", Version: "2"}}
		for i := range s.Media() {
			p := PortPair{RTP: 40000 + 2*i, RTCP: 40001 + 2*i}
			switch {
			case mode&2 != 0:
				p.RTCP = 0
			case mode&4 != 0:
				p.RTCP = 41000 + i
			}
			tg.Ports = append(tg.Ports, p)
		}
		out, err := s.Rewrite(tg)
		if errors.Is(err, ErrTooLarge) {
			return
		}
		if err != nil {
			t.Fatalf("Rewrite() of a parsed body: %v", err)
		}
		s2, err := Parse(out)
		if err != nil {
			t.Fatalf("rewritten body does not parse: %v\n%q\nfrom\n%q", err, out, body)
		}
		if len(s2.Media()) != len(s.Media()) {
			t.Fatalf("%d media became %d", len(s.Media()), len(s2.Media()))
		}
		for _, a := range s2.Addrs() {
			if a != addr && !a.IsUnspecified() {
				t.Fatalf("rewritten body shows %v:\n%q", a, out)
			}
		}
		again, err := s2.Rewrite(tg)
		if err != nil || string(again) != string(out) {
			t.Fatalf("Rewrite is not a fixed point (%v):\n%q\n%q", err, out, again)
		}
	})
}
