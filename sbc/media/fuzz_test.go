package media

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/media/sdp"
)

// checkNoLeak fails if a body sent toward a side names any address but
// our advertised one (or the unspecified address of a hold).
func checkNoLeak(t testing.TB, m *Manager, toward sbc.Side, out []byte) {
	t.Helper()
	s, err := sdp.Parse(out)
	if err != nil {
		t.Fatalf("rewritten body does not parse: %v\n%s", err, out)
	}
	for _, a := range s.Addrs() {
		if a != m.advertise(int(toward)) && !a.IsUnspecified() {
			t.Fatalf("body toward %s names %s:\n%s", toward, a, out)
		}
	}
}

// RFC 3665 section 3.7, "Session with re-INVITE (IP Address Change)": the
// SDP of F1, F6, F9 and F10 (from /work/shared/testdata/rfc3665, RTC
// flows as extracted by rtckit/php-sip, MIT). Alice is outside, Bob
// inside; Bob moves, then Alice answers with a new port.
var rfc3665Flow37 = []struct {
	name   string
	toward sbc.Side
	body   []byte
}{
	{"F1 INVITE", sbc.Internal, body("v=0", "o=alice 2890844526 2890844526 IN IP4 client.atlanta.example.com", "s=-",
		"c=IN IP4 192.0.2.101", "t=0 0", "m=audio 49172 RTP/AVP 0", "a=rtpmap:0 PCMU/8000")},
	{"F6 200 OK", sbc.External, body("v=0", "o=bob 2890844527 2890844527 IN IP4 client.biloxi.example.com", "s=-",
		"c=IN IP4 192.0.2.201", "t=0 0", "m=audio 3456 RTP/AVP 0", "a=rtpmap:0 PCMU/8000")},
	{"F9 re-INVITE", sbc.External, body("v=0", "o=bob 2890844527 2890844528 IN IP4 client.chicago.example.com", "s=-",
		"c=IN IP4 192.0.2.100", "t=0 0", "m=audio 47172 RTP/AVP 0", "a=rtpmap:0 PCMU/8000")},
	{"F10 200 OK", sbc.Internal, body("v=0", "o=alice 2890844526 2890844526 IN IP4 client.atlanta.example.com", "s=-",
		"c=IN IP4 192.0.2.101", "t=0 0", "m=audio 1000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000")},
}

func TestRFC3665ReinviteAddressChange(t *testing.T) {
	m := newTestManager(t, nil)
	var sent [2][]byte // last body toward each side
	for _, step := range rfc3665Flow37 {
		out := rewrite(t, m, "3.7", step.toward, step.body)
		checkNoLeak(t, m, step.toward, out)
		if prev := sent[step.toward]; prev != nil {
			// The moves are invisible to the other side: same ports,
			// same body, same o= version.
			if string(prev) != string(out) {
				t.Errorf("%s: body toward %s changed:\n%s\nthen\n%s", step.name, step.toward, prev, out)
			}
		}
		sent[step.toward] = out
	}
	m.mu.Lock()
	st := m.sessions["3.7"].streams[0]
	m.mu.Unlock()
	if got, want := st.peer[sbc.Internal][rtp].Load().dst, netip.MustParseAddrPort("192.0.2.100:47172"); got != want {
		t.Errorf("inside RTP peer %s after F9, want %s", got, want)
	}
	if got, want := st.peer[sbc.External][rtp].Load().dst, netip.MustParseAddrPort("192.0.2.101:1000"); got != want {
		t.Errorf("outside RTP peer %s after F10, want %s", got, want)
	}
	if got, want := st.peer[sbc.External][rtcp].Load().dst, netip.MustParseAddrPort("192.0.2.101:1001"); got != want {
		t.Errorf("outside RTCP peer %s after F10, want %s", got, want)
	}
}

// FuzzRewrite: whatever the body, Rewrite does not panic, and what it
// returns parses, keeps the number of streams, and names no address but
// ours. Each input is one call, released after.
func FuzzRewrite(f *testing.F) {
	for _, step := range rfc3665Flow37 {
		f.Add(step.body, false)
	}
	ap := netip.MustParseAddrPort("198.51.100.7:49170")
	f.Add(avSDP("alice", ap, 51372), true)
	f.Add(audioSDP("alice", 1, ap, "a=rtcp:53020 IN IP4 198.51.100.9", "a=rtcp-mux"), false)
	f.Add(audioSDP("alice", 1, netip.AddrPortFrom(netip.IPv4Unspecified(), 4000), "a=sendonly"), true)
	f.Add(body("v=0", "o=- 1 1 IN IP6 2001:db8::1", "s=-", "c=IN IP6 2001:db8::1", "t=0 0",
		"m=audio 4000 RTP/SAVP 0", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"), false)
	f.Add(body("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "t=0 0", "m=image 4000/2 udptl t38", "c=IN IP4 192.0.2.2",
		"m=application 9 TCP/BFCP *", "c=IN IP4 192.0.2.3"), false)
	m := newTestManager(f, withPairs(f, 2*sdp.MaxMedia))
	n := 0
	f.Fuzz(func(t *testing.T, b []byte, inside bool) {
		toward := sbc.External
		if inside {
			toward = sbc.Internal
		}
		key := fmt.Sprint("fuzz-", n)
		n++
		defer m.Release(key)
		out, err := m.Rewrite(key, toward, b)
		if err != nil {
			return
		}
		in, _ := sdp.Parse(b)
		s, err := sdp.Parse(out)
		if err != nil {
			t.Fatalf("output does not parse: %v\n%s", err, out)
		}
		if len(s.Media()) != len(in.Media()) {
			t.Fatalf("%d streams in, %d out", len(in.Media()), len(s.Media()))
		}
		checkNoLeak(t, m, toward, out)
		// Unless a port was 0 already, it is ours now.
		for i, md := range s.Media() {
			if was := in.Media()[i].Port; was != 0 && (md.Port < m.cfg.PortMin || md.Port > m.cfg.PortMax) {
				t.Fatalf("stream %d: port %d out of the relay range", i, md.Port)
			}
		}
	})
}
