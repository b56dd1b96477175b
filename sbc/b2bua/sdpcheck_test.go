package b2bua_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/sipwall/sipwall/sbc/siptest"
)

// sdpLines is a session description from lines joined by CRLF.
func sdpLines(lines ...string) string { return strings.Join(lines, "\r\n") + "\r\n" }

// payloadTypes is "0" to "n-1".
func payloadTypes(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.Itoa(i)
	}
	return out
}

// offerWith is offerSDP(ip) with its m= line and extra lines after it.
func offerWith(ip, mline string, extra ...string) string {
	return sdpLines(append([]string{"v=0", "o=- 1 1 IN IP4 " + ip, "s=-", "c=IN IP4 " + ip, "t=0 0", mline}, extra...)...)
}

// TestInboundSDPRefused: an offer from outside that breaks a bound gets
// 488 with a Warning that names the line and the problem in the SBC's own
// words; the PBX never sees it.
func TestInboundSDPRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body, warning string
	}{
		{"payload type 128", offerWith(callerIP, "m=audio 40000 RTP/AVP 0 128"), "SDP line 6: m= payload type not 0-127"},
		{"payload type 1000", offerWith(callerIP, "m=audio 40000 RTP/AVP 1000"), "SDP line 6: m= payload type not 0-127"},
		{"port 70000", offerWith(callerIP, "m=audio 70000 RTP/AVP 0"), "SDP line 6: m= port not 0-65535"},
		{"port count", offerWith(callerIP, "m=audio 40000/500 RTP/AVP 0"), "SDP line 6: m= port count not 1-8"},
		{"c= family", strings.Replace(offerSDP(callerIP), "c=IN IP4 "+callerIP, "c=IN IP6 "+callerIP, 1), "SDP line 4: c= address does not match its address type"},
		{"NUL", strings.Replace(offerSDP(callerIP), "s=-", "s=a\x00b", 1), "SDP line 3: NUL or CR inside the line"},
		{"33 formats", offerWith(callerIP, "m=audio 40000 RTP/AVP "+strings.Join(payloadTypes(33), " ")), "SDP line 6: m= more than 32 formats"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			caller := siptest.NewPeer(t, callerIP+":0")
			pbx := siptest.NewPeer(t, pbxIP+":0")
			h := startSBC(t, withUpstream("pbx", pbx, 1))
			a := caller.Invite(h.UDP, h.URI("bob"), nil, tc.body)
			res := caller.ExpectResponse(488, wait)
			a.AckFailure(res)
			if w, want := header(res, "Warning"), `399 `+h.UDP.String()+` "`+tc.warning+`"`; w != want {
				t.Errorf("Warning %q, want %q", w, want)
			}
			pbx.NoMessage(quiet)
			h.waitIdle(t)
			if n := h.B2B.SDPStats().Refused.Load(); n != 1 {
				t.Errorf("SDPStats.Refused = %d, want 1", n)
			}
		})
	}
}

// TestInboundSDPSanitised: optional lines that are only wrong are
// removed; the rest reaches the PBX byte for byte.
func TestInboundSDPSanitised(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1))
	keep := []string{"a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16", "a=maxptime:240"}
	bad := []string{"a=rtpmap:96 opus/48000/2", "a=fmtp:200 x", "a=ptime:65535", "b=AS:99999999999"}
	body := offerWith(callerIP, "m=audio 40000 RTP/AVP 0 101", append(keep, bad...)...)
	caller.Invite(h.UDP, h.URI("bob"), nil, body)
	inv := pbx.ExpectRequest("INVITE", wait)
	if got, want := string(inv.Body()), offerWith(callerIP, "m=audio 40000 RTP/AVP 0 101", keep...); got != want {
		t.Errorf("the PBX got\n%q\nwant\n%q", got, want)
	}
	pbx.Reply(inv, 480, "Temporarily Unavailable")
	caller.ExpectResponse(480, wait)
	s := h.B2B.SDPStats()
	if s.Sanitised.Load() != 1 || s.Lines.Load() != int64(len(bad)) || s.Refused.Load() != 0 {
		t.Errorf("SDPStats: sanitised %d, lines %d, refused %d", s.Sanitised.Load(), s.Lines.Load(), s.Refused.Load())
	}
}

// TestInboundSDPInDialog: a re-INVITE or UPDATE from outside with a bad
// offer gets 488 and a Warning; the call goes on. One from the PBX is not
// checked: the check guards the inside.
func TestInboundSDPInDialog(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1))
	c := establish(t, h, caller, pbx)
	for _, method := range []string{"INVITE", "UPDATE"} {
		c.A.Send(method, nil, offerWith(callerIP, "m=audio 40000 RTP/AVP 0 255"))
		res := caller.ExpectResponse(488, wait)
		if w := header(res, "Warning"); !strings.Contains(w, `"SDP line 6: m= payload type not 0-127"`) {
			t.Errorf("%s: Warning %q", method, w)
		}
		if method == "INVITE" {
			c.A.Ack(nil, "")
		}
		pbx.NoMessage(quiet)
	}
	// The PBX's own odd lines reach the caller as they are.
	odd := offerWith(pbxIP, "m=audio 40000 RTP/AVP 0", "a=ptime:0", "a=rtpmap:96 opus/48000/2")
	c.B.Send("INVITE", nil, odd)
	re := caller.ExpectRequest("INVITE", wait)
	if string(re.Body()) != odd {
		t.Errorf("the caller got\n%q\nwant\n%q", re.Body(), odd)
	}
	caller.ReplyBody(re, 200, "OK", offerSDP(callerIP))
	pbx.ExpectResponse(200, wait)
	c.B.Ack(nil, "")
	caller.ExpectRequest("ACK", wait)
	c.hangup(t)
	h.waitIdle(t)
}

// TestInboundSDPLateAnswer: the caller's answer in an ACK is checked too;
// a refused one is not relayed (the ACK goes without it).
func TestInboundSDPLateAnswer(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1))
	a := caller.Invite(h.UDP, h.URI("bob"), nil, "")
	inv := pbx.ExpectRequest("INVITE", wait)
	pbx.ReplyBody(inv, 200, "OK", offerSDP(pbxIP))
	a.Learn(caller.ExpectResponse(200, wait))
	a.Ack(nil, offerWith(callerIP, "m=audio 99999 RTP/AVP 0"))
	ack := pbx.ExpectRequest("ACK", wait)
	if len(ack.Body()) != 0 || header(ack, "Content-Type") != "" {
		t.Errorf("ACK relayed with %q (%q)", ack.Body(), header(ack, "Content-Type"))
	}
	if n := h.B2B.SDPStats().Refused.Load(); n != 1 {
		t.Errorf("SDPStats.Refused = %d, want 1", n)
	}
}

// TestInboundSDPAnswerFromOutside: in a call from the inside, the answer
// of the outside party is checked on its way in: a line dropped from the
// 200, a refused 183 body not relayed.
func TestInboundSDPAnswerFromOutside(t *testing.T) {
	t.Parallel()
	pbx := siptest.NewPeer(t, pbxIP+":0")
	phone := siptest.NewPeer(t, pbxIP+":0")
	trunk := siptest.NewPeer(t, trunkIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1), withOutbound(trunk))
	a := phone.Invite(h.UDP, h.URI("+15551234"), nil, offerSDP(pbxIP))
	inv := trunk.ExpectRequest("INVITE", wait)
	trunk.ReplyBody(inv, 183, "Session Progress", offerWith(trunkIP, "m=audio 40000 RTP/AVP 0 300"))
	early := phone.ExpectResponse(183, wait)
	if len(early.Body()) != 0 {
		t.Errorf("refused early answer relayed: %q", early.Body())
	}
	trunk.ReplyBody(inv, 200, "OK", offerWith(trunkIP, "m=audio 40000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000", "a=ptime:0"))
	res := phone.ExpectResponse(200, wait)
	if got, want := string(res.Body()), offerWith(trunkIP, "m=audio 40000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000"); got != want {
		t.Errorf("the PBX got\n%q\nwant\n%q", got, want)
	}
	a.Learn(res)
	a.Ack(nil, "")
	trunk.ExpectRequest("ACK", wait)
	s := h.B2B.SDPStats()
	if s.Refused.Load() != 1 || s.Sanitised.Load() != 1 {
		t.Errorf("SDPStats: refused %d, sanitised %d", s.Refused.Load(), s.Sanitised.Load())
	}
}
