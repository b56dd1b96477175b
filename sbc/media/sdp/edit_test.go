package sdp

import (
	"testing"
)

// The media layer's edits where it terminates SRTP: a WebRTC offer
// becomes a plain one (security and WebRTC lines dropped, protocol and
// rtcp-mux changed), and a plain answer becomes a DTLS-SRTP one (lines
// added at session and media level).
func TestRewriteEdits(t *testing.T) {
	webrtc := crlf(
		"v=0",
		"o=- 4611731400430051336 2 IN IP4 127.0.0.1",
		"s=-",
		"t=0 0",
		"a=group:BUNDLE 0",
		"a=msid-semantic: WMS",
		"m=audio 9 UDP/TLS/RTP/SAVPF 111 0",
		"c=IN IP4 0.0.0.0",
		"a=rtcp:9 IN IP4 0.0.0.0",
		"a=candidate:1 1 udp 2122260223 192.0.2.7 50000 typ host",
		"a=ice-ufrag:Ab12",
		"a=ice-pwd:abcdefghijklmnopqrstuvwx",
		"a=fingerprint:sha-256 AA:BB",
		"a=setup:actpass",
		"a=mid:0",
		"a=sendrecv",
		"a=rtcp-mux",
		"a=rtpmap:111 opus/48000/2",
		"a=rtcp-fb:111 transport-cc",
		"a=rtpmap:0 PCMU/8000",
		"a=ssrc:1 cname:x",
	)
	s, err := Parse([]byte(webrtc))
	if err != nil {
		t.Fatal(err)
	}
	if v := s.Attrs(0, "fingerprint"); len(v) != 1 || v[0] != "sha-256 AA:BB" {
		t.Errorf("Attrs(0, fingerprint) = %q", v)
	}
	if v := s.Attrs(0, "ICE-UFRAG"); len(v) != 1 || v[0] != "Ab12" {
		t.Errorf("Attrs(0, ICE-UFRAG) = %q (dropped lines are read too, any case)", v)
	}
	if v := s.Attrs(-1, "group"); len(v) != 1 || v[0] != "BUNDLE 0" {
		t.Errorf("Attrs(-1, group) = %q", v)
	}
	tg := target(sbc4, 40000, 0)
	tg.Drop = []string{"fingerprint", "setup", "mid", "group", "msid-semantic", "rtcp-fb", "ssrc"}
	tg.Sections = []SectionEdit{{Proto: "RTP/AVP", Mux: -1, NotHold: true}}
	out, err := s.Rewrite(tg)
	if err != nil {
		t.Fatal(err)
	}
	want := crlf(
		"v=0",
		"o=sipwall 4242 1 IN IP4 203.0.113.10",
		"s=-",
		"c=IN IP4 203.0.113.10",
		"t=0 0",
		"m=audio 40000 RTP/AVP 111 0",
		"a=rtcp:40001 IN IP4 203.0.113.10",
		"a=sendrecv",
		"a=rtpmap:111 opus/48000/2",
		"a=rtpmap:0 PCMU/8000",
	)
	if string(out) != want {
		t.Errorf("toward a plain endpoint:\n%s\nwant\n%s", out, want)
	}

	plain, err := Parse([]byte(crlf(
		"v=0",
		"o=pbx 1 1 IN IP4 10.0.0.5",
		"s=pbx",
		"c=IN IP4 10.0.0.5",
		"t=0 0",
		"m=audio 10000 RTP/AVP 0",
		"a=rtpmap:0 PCMU/8000",
	)))
	if err != nil {
		t.Fatal(err)
	}
	tg = target(sbc4, 40000, 0)
	tg.SessionAdd = []string{"a=ice-lite", "a=group:BUNDLE 0"}
	tg.Sections = []SectionEdit{{Proto: "UDP/TLS/RTP/SAVPF", Mux: 1, Add: []string{"a=mid:0", "a=setup:passive"}}}
	out, err = plain.Rewrite(tg)
	if err != nil {
		t.Fatal(err)
	}
	want = crlf(
		"v=0",
		"o=sipwall 4242 1 IN IP4 203.0.113.10",
		"s=-",
		"c=IN IP4 203.0.113.10",
		"t=0 0",
		"a=ice-lite",
		"a=group:BUNDLE 0",
		"m=audio 40000 UDP/TLS/RTP/SAVPF 0",
		"a=rtpmap:0 PCMU/8000",
		"a=rtcp-mux",
		"a=mid:0",
		"a=setup:passive",
	)
	if string(out) != want {
		t.Errorf("toward a DTLS-SRTP endpoint:\n%s\nwant\n%s", out, want)
	}
	if _, err := Parse(out); err != nil {
		t.Errorf("the edited body does not parse: %v", err)
	}
}
