package sdp

import (
	"net/netip"
	"testing"
)

// benchOffer is a typical audio offer of about 300 bytes.
var benchOffer = []byte(crlf(
	"v=0",
	"o=- 1908257046 1908257046 IN IP4 10.20.0.5",
	"s=Asterisk",
	"c=IN IP4 10.20.0.5",
	"t=0 0",
	"m=audio 17844 RTP/AVP 0 8 9 101",
	"a=rtpmap:0 PCMU/8000",
	"a=rtpmap:8 PCMA/8000",
	"a=rtpmap:9 G722/8000",
	"a=rtpmap:101 telephone-event/8000",
	"a=fmtp:101 0-16",
	"a=ptime:20",
	"a=maxptime:150",
	"a=rtcp:17845 IN IP4 10.20.0.5",
	"a=sendrecv",
))

var benchTarget = Target{
	Addr:   netip.MustParseAddr("203.0.113.10"),
	Ports:  []PortPair{{RTP: 40000, RTCP: 40001}},
	Origin: Origin{User: "sipwall", SessID: "4242", Version: "1"},
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchOffer)))
	for b.Loop() {
		if _, err := Parse(benchOffer); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRewrite(b *testing.B) {
	s, err := Parse(benchOffer)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchOffer)))
	for b.Loop() {
		if _, err := s.Rewrite(benchTarget); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseRewrite is what the relay pays per body.
func BenchmarkParseRewrite(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchOffer)))
	for b.Loop() {
		s, err := Parse(benchOffer)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Rewrite(benchTarget); err != nil {
			b.Fatal(err)
		}
	}
}
