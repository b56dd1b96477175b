package b2bua_test

import (
	"strconv"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc/siptest"
)

// checkOnALeg checks that req is in the caller's dialog with the SBC:
// its Call-ID and tags.
func checkOnALeg(t *testing.T, c *call, req *sip.Request) {
	t.Helper()
	if req.CallID().Value() != c.A.CallID || toTag(req) != c.A.LocalTag || fromTag(req) != c.A.RemoteTag {
		t.Errorf("%s not in the caller's dialog (Call-ID %q from %q to %q)", siptest.Describe(req), req.CallID().Value(), fromTag(req), toTag(req))
	}
}

// checkOnBLeg checks that req is in the PBX's dialog with the SBC.
func checkOnBLeg(t *testing.T, c *call, req *sip.Request) {
	t.Helper()
	if req.CallID().Value() != c.B.CallID || toTag(req) != c.B.LocalTag || fromTag(req) != c.B.RemoteTag {
		t.Errorf("%s not in the PBX's dialog (Call-ID %q from %q to %q)", siptest.Describe(req), req.CallID().Value(), fromTag(req), toTag(req))
	}
}

// TestReInvite: hold from either side, with the new SDP and the ACK relayed
// in the right dialog.
func TestReInvite(t *testing.T) {
	t.Parallel()
	t.Run("from the caller", func(t *testing.T) {
		t.Parallel()
		caller := siptest.NewPeer(t, callerIP+":0")
		pbx := siptest.NewPeer(t, pbxIP+":0")
		h := startSBC(t, withUpstream("pbx", pbx, 1))
		c := establish(t, h, caller, pbx)

		re := c.A.Send("INVITE", nil, holdSDP(callerIP))
		got := pbx.ExpectRequest("INVITE", wait)
		checkOnBLeg(t, c, got)
		if got.CSeq().SeqNo <= c.BInv.CSeq().SeqNo {
			t.Errorf("re-INVITE CSeq %d not above the initial %d", got.CSeq().SeqNo, c.BInv.CSeq().SeqNo)
		}
		if string(got.Body()) != holdSDP(callerIP) {
			t.Errorf("re-INVITE body %q", got.Body())
		}
		if ct := got.Contact(); ct == nil || ct.Address.Port != int(h.UDP.Port()) {
			t.Errorf("re-INVITE Contact %v, want the SBC", ct)
		}
		answer := holdSDP(pbxIP)
		pbx.ReplyBody(got, 200, "OK", answer)
		res := caller.ExpectResponse(200, wait)
		if res.CSeq().Value() != re.CSeq().Value() || toTag(res) != c.A.RemoteTag {
			t.Errorf("200 for re-INVITE: CSeq %q To tag %q", res.CSeq().Value(), toTag(res))
		}
		if string(res.Body()) != answer {
			t.Errorf("200 body %q, want %q", res.Body(), answer)
		}
		c.A.Ack(nil, "")
		ack := pbx.ExpectRequest("ACK", wait)
		checkOnBLeg(t, c, ack)
		if ack.CSeq().SeqNo != got.CSeq().SeqNo {
			t.Errorf("ACK CSeq %d, want the re-INVITE's %d", ack.CSeq().SeqNo, got.CSeq().SeqNo)
		}
		c.hangup(t)
		h.waitIdle(t)
	})
	t.Run("from the PBX", func(t *testing.T) {
		t.Parallel()
		caller := siptest.NewPeer(t, callerIP+":0")
		pbx := siptest.NewPeer(t, pbxIP+":0")
		h := startSBC(t, withUpstream("pbx", pbx, 1))
		c := establish(t, h, caller, pbx)

		re := c.B.Send("INVITE", nil, holdSDP(pbxIP))
		got := caller.ExpectRequest("INVITE", wait)
		checkOnALeg(t, c, got)
		if got.Recipient.User != caller.User || got.Recipient.Port != int(caller.Addr().Port()) {
			t.Errorf("re-INVITE Request-URI %s, want the caller's Contact", got.Recipient.String())
		}
		if string(got.Body()) != holdSDP(pbxIP) {
			t.Errorf("re-INVITE body %q", got.Body())
		}
		caller.ReplyBody(got, 200, "OK", holdSDP(callerIP))
		res := pbx.ExpectResponse(200, wait)
		if res.CSeq().Value() != re.CSeq().Value() || string(res.Body()) != holdSDP(callerIP) {
			t.Errorf("200 for re-INVITE: CSeq %q body %q", res.CSeq().Value(), res.Body())
		}
		c.B.Ack(nil, "")
		ack := caller.ExpectRequest("ACK", wait)
		checkOnALeg(t, c, ack)
		if ack.CSeq().SeqNo != got.CSeq().SeqNo {
			t.Errorf("ACK CSeq %d, want the re-INVITE's %d", ack.CSeq().SeqNo, got.CSeq().SeqNo)
		}
		c.hangup(t)
		h.waitIdle(t)
	})
	t.Run("crossing gets 491", func(t *testing.T) {
		t.Parallel()
		caller := siptest.NewPeer(t, callerIP+":0")
		pbx := siptest.NewPeer(t, pbxIP+":0")
		h := startSBC(t, withUpstream("pbx", pbx, 1))
		c := establish(t, h, caller, pbx)

		c.A.Send("INVITE", nil, holdSDP(callerIP))
		pending := pbx.ExpectRequest("INVITE", wait)
		// The PBX's own re-INVITE crosses the caller's.
		c.B.Send("INVITE", nil, holdSDP(pbxIP))
		r491 := pbx.ExpectResponse(491, wait)
		c.B.AckFailure(r491)
		caller.NoMessage(quiet)

		pbx.ReplyBody(pending, 200, "OK", holdSDP(pbxIP))
		caller.ExpectResponse(200, wait)
		c.A.Ack(nil, "")
		pbx.ExpectRequest("ACK", wait)

		// With no INVITE pending any more, a re-INVITE passes again.
		c.B.Send("INVITE", nil, offerSDP(pbxIP))
		got := caller.ExpectRequest("INVITE", wait)
		caller.ReplyBody(got, 200, "OK", offerSDP(callerIP))
		pbx.ExpectResponse(200, wait)
		c.B.Ack(nil, "")
		caller.ExpectRequest("ACK", wait)
		c.hangup(t)
		h.waitIdle(t)
	})
}

// TestInDialogRequests relays UPDATE, INFO and MESSAGE both ways inside one
// call; each leg keeps its own rising CSeq.
func TestInDialogRequests(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1))
	c := establish(t, h, caller, pbx)

	tests := []struct {
		method  string
		fromPBX bool
		headers []string
		body    string
		ctype   string
	}{
		{method: "UPDATE", body: holdSDP(callerIP), ctype: "application/sdp"},
		{method: "INFO", headers: []string{"Content-Type: application/dtmf-relay"}, body: "Signal=5\r\nDuration=160\r\n", ctype: "application/dtmf-relay"},
		{method: "MESSAGE", headers: []string{"Content-Type: text/plain"}, body: "hello inside", ctype: "text/plain"},
		{method: "UPDATE", fromPBX: true, body: offerSDP(pbxIP), ctype: "application/sdp"},
		{method: "INFO", fromPBX: true, headers: []string{"Content-Type: application/dtmf-relay"}, body: "Signal=1\r\nDuration=100\r\n", ctype: "application/dtmf-relay"},
		{method: "MESSAGE", fromPBX: true, headers: []string{"Content-Type: text/plain"}, body: "hello outside", ctype: "text/plain"},
	}
	lastA, lastB := c.A200.CSeq().SeqNo, c.BInv.CSeq().SeqNo
	for i, tt := range tests {
		name := tt.method + " from caller"
		sender, receiver := c.A, c.B
		if tt.fromPBX {
			name = tt.method + " from PBX"
			sender, receiver = c.B, c.A
		}
		sent := sender.Send(tt.method, tt.headers, tt.body)
		got := receiver.Peer.ExpectRequest(tt.method, wait)
		if tt.fromPBX {
			checkOnALeg(t, c, got)
		} else {
			checkOnBLeg(t, c, got)
		}
		if string(got.Body()) != tt.body || header(got, "Content-Type") != tt.ctype {
			t.Errorf("%s: body %q type %q", name, got.Body(), header(got, "Content-Type"))
		}
		cs := got.CSeq().SeqNo
		if tt.fromPBX {
			// The SBC's requests to the caller count from the SBC's own start.
			if i > 3 && cs <= lastA {
				t.Errorf("%s: CSeq %d not above the previous %d on the caller's leg", name, cs, lastA)
			}
			lastA = cs
		} else {
			if cs <= lastB {
				t.Errorf("%s: CSeq %d not above the previous %d on the PBX's leg", name, cs, lastB)
			}
			lastB = cs
		}
		receiver.Peer.Reply(got, 200, "OK", "X-Seq: "+strconv.Itoa(i))
		res := sender.Peer.ExpectResponse(200, wait)
		if res.CSeq().Value() != sent.CSeq().Value() {
			t.Errorf("%s: 200 CSeq %q, want %q", name, res.CSeq().Value(), sent.CSeq().Value())
		}
		if header(res, "X-Seq") != "" {
			t.Errorf("%s: unknown header of the answer leaked", name)
		}
	}
	c.hangup(t)
	h.waitIdle(t)
}

// TestReferNotify: a REFER goes in, the NOTIFY about it comes back out.
func TestReferNotify(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1))
	c := establish(t, h, caller, pbx)

	referTo := "<sip:carol@" + callerIP + ">"
	c.A.Send("REFER", []string{"Refer-To: " + referTo, "Referred-By: <" + caller.URI() + ">"}, "")
	refer := pbx.ExpectRequest("REFER", wait)
	checkOnBLeg(t, c, refer)
	if header(refer, "Refer-To") != referTo {
		t.Errorf("Refer-To %q, want %q", header(refer, "Refer-To"), referTo)
	}
	if ct := refer.Contact(); ct == nil || ct.Address.Port != int(h.UDP.Port()) {
		t.Errorf("REFER Contact %v, want the SBC", ct)
	}
	pbx.Reply(refer, 202, "Accepted")
	caller.ExpectResponse(202, wait)

	frag := "SIP/2.0 200 OK\r\n"
	c.B.Send("NOTIFY", []string{
		"Event: refer",
		"Subscription-State: terminated;reason=noresource",
		"Content-Type: message/sipfrag;version=2.0",
	}, frag)
	notify := caller.ExpectRequest("NOTIFY", wait)
	checkOnALeg(t, c, notify)
	if header(notify, "Event") != "refer" || header(notify, "Subscription-State") != "terminated;reason=noresource" {
		t.Errorf("NOTIFY Event %q Subscription-State %q", header(notify, "Event"), header(notify, "Subscription-State"))
	}
	if string(notify.Body()) != frag || header(notify, "Content-Type") != "message/sipfrag;version=2.0" {
		t.Errorf("NOTIFY body %q type %q", notify.Body(), header(notify, "Content-Type"))
	}
	caller.Reply(notify, 200, "OK")
	pbx.ExpectResponse(200, wait)
	c.hangup(t)
	h.waitIdle(t)
}

// TestReliableProvisional: the SBC PRACKs the PBX's reliable 183 itself and
// offers reliability to the caller only if the caller supports it.
func TestReliableProvisional(t *testing.T) {
	t.Parallel()
	for _, callerSupports := range []bool{false, true} {
		t.Run("caller supports 100rel "+strconv.FormatBool(callerSupports), func(t *testing.T) {
			t.Parallel()
			caller := siptest.NewPeer(t, callerIP+":0")
			pbx := siptest.NewPeer(t, pbxIP+":0")
			h := startSBC(t, withUpstream("pbx", pbx, 1))

			var hs []string
			if callerSupports {
				hs = []string{"Supported: 100rel"}
			}
			a := caller.Invite(h.UDP, h.URI("bob"), hs, offerSDP(callerIP))
			inv := pbx.ExpectRequest("INVITE", wait)
			early := offerSDP(pbxIP)
			pbx.ReplyBody(inv, 183, "Session Progress", early, "Require: 100rel", "RSeq: 7")

			prack := pbx.ExpectRequest("PRACK", wait)
			if want := "7 " + strconv.FormatUint(uint64(inv.CSeq().SeqNo), 10) + " INVITE"; header(prack, "RAck") != want {
				t.Errorf("RAck %q, want %q", header(prack, "RAck"), want)
			}
			if prack.CallID().Value() != inv.CallID().Value() || fromTag(prack) != fromTag(inv) || toTag(prack) != pbx.ToTag(inv) {
				t.Errorf("PRACK not in the early dialog: %s", prack)
			}
			if prack.CSeq().SeqNo <= inv.CSeq().SeqNo {
				t.Errorf("PRACK CSeq %d not above the INVITE's %d", prack.CSeq().SeqNo, inv.CSeq().SeqNo)
			}
			if prack.Recipient.Port != int(pbx.Addr().Port()) {
				t.Errorf("PRACK Request-URI %s, want the PBX's Contact", prack.Recipient.String())
			}
			pbx.Reply(prack, 200, "OK")

			r183 := caller.ExpectResponse(183, wait)
			if string(r183.Body()) != early {
				t.Errorf("183 body %q", r183.Body())
			}
			if callerSupports {
				if header(r183, "Require") != "100rel" || header(r183, "RSeq") == "" {
					t.Errorf("183 Require %q RSeq %q, want reliable", header(r183, "Require"), header(r183, "RSeq"))
				}
				a.Learn(r183)
				a.Send("PRACK", []string{"RAck: " + header(r183, "RSeq") + " " + strconv.FormatUint(uint64(a.Invite.CSeq().SeqNo), 10) + " INVITE"}, "")
				res := caller.ExpectResponse(200, wait)
				if res.CSeq().MethodName != sip.PRACK {
					t.Errorf("200 for %q, want PRACK", res.CSeq().Value())
				}
			} else if header(r183, "Require") != "" || header(r183, "RSeq") != "" {
				t.Errorf("183 to a caller without 100rel has Require %q RSeq %q", header(r183, "Require"), header(r183, "RSeq"))
			}
			// The caller's PRACK is answered at the SBC, not relayed.
			pbx.NoMessage(quiet)

			pbx.ReplyBody(inv, 200, "OK", early)
			a.Learn(caller.ExpectResponse(200, wait))
			a.Ack(nil, "")
			ack := pbx.ExpectRequest("ACK", wait)
			if ack.CSeq().SeqNo != inv.CSeq().SeqNo {
				t.Errorf("ACK CSeq %d, want the INVITE's %d", ack.CSeq().SeqNo, inv.CSeq().SeqNo)
			}
			a.Send("BYE", nil, "")
			pbx.Reply(pbx.ExpectRequest("BYE", wait), 200, "OK")
			caller.ExpectResponse(200, wait)
			h.waitIdle(t)
		})
	}
}

// TestBadRequests: requests that match no dialog or may not be forwarded.
func TestBadRequests(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// send sends the request; c is an established call when withCall.
		withCall bool
		send     func(h *harness, caller *siptest.Peer, c *call) *siptest.Dialog
		want     int // 0: no answer at all
	}{
		{name: "BYE for an unknown dialog", want: 481, send: func(h *harness, caller *siptest.Peer, _ *call) *siptest.Dialog {
			d := caller.NewDialog(h.UDP, h.URI("bob"))
			d.RemoteTag = "nosuchtag"
			d.Send("BYE", nil, "")
			return d
		}},
		{name: "ACK for an unknown dialog", want: 0, send: func(h *harness, caller *siptest.Peer, _ *call) *siptest.Dialog {
			d := caller.NewDialog(h.UDP, h.URI("bob"))
			d.RemoteTag = "nosuchtag"
			d.Send("ACK", nil, "")
			return d
		}},
		{name: "ACK without a To tag", want: 0, send: func(h *harness, caller *siptest.Peer, _ *call) *siptest.Dialog {
			d := caller.NewDialog(h.UDP, h.URI("bob"))
			d.Send("ACK", nil, offerSDP(callerIP))
			return d
		}},
		{name: "INVITE with Max-Forwards 0", want: 483, send: func(h *harness, caller *siptest.Peer, _ *call) *siptest.Dialog {
			return caller.Invite(h.UDP, h.URI("bob"), []string{"Max-Forwards: 0"}, offerSDP(callerIP))
		}},
		{name: "MESSAGE with Max-Forwards 0", want: 483, send: func(h *harness, caller *siptest.Peer, _ *call) *siptest.Dialog {
			d := caller.NewDialog(h.UDP, h.URI("bob"))
			d.Send("MESSAGE", []string{"Max-Forwards: 0", "Content-Type: text/plain"}, "hi")
			return d
		}},
		{name: "in-dialog INFO with Max-Forwards 0", withCall: true, want: 483, send: func(_ *harness, _ *siptest.Peer, c *call) *siptest.Dialog {
			c.A.Send("INFO", []string{"Max-Forwards: 0"}, "")
			return c.A
		}},
		{name: "known To tag, wrong From tag", withCall: true, want: 481, send: func(_ *harness, _ *siptest.Peer, c *call) *siptest.Dialog {
			bad := *c.A
			bad.LocalTag = "forged"
			bad.Send("INFO", nil, "")
			return &bad
		}},
		{name: "known To tag, wrong Call-ID", withCall: true, want: 481, send: func(_ *harness, _ *siptest.Peer, c *call) *siptest.Dialog {
			bad := *c.A
			bad.CallID = "other@" + callerIP
			bad.Send("INFO", nil, "")
			return &bad
		}},
		{name: "CANCEL matching no transaction", want: 481, send: func(h *harness, caller *siptest.Peer, _ *call) *siptest.Dialog {
			d := caller.NewDialog(h.UDP, h.URI("bob"))
			d.Send("CANCEL", nil, "")
			return d
		}},
		{name: "SUBSCRIBE is not served", want: 405, send: func(h *harness, caller *siptest.Peer, _ *call) *siptest.Dialog {
			d := caller.NewDialog(h.UDP, h.URI("bob"))
			d.Send("SUBSCRIBE", []string{"Event: presence"}, "")
			return d
		}},
		{name: "in-dialog CSeq going back", withCall: true, want: 500, send: func(_ *harness, _ *siptest.Peer, c *call) *siptest.Dialog {
			c.A.Send("INFO", nil, "")
			c.pbx.Reply(c.pbx.ExpectRequest("INFO", wait), 200, "OK")
			c.caller.ExpectResponse(200, wait)
			old := *c.A
			old.CSeq = 0 // the next request reuses CSeq 1, the INVITE's
			old.Send("INFO", nil, "")
			return &old
		}},
		{name: "PBX's tag used from outside", withCall: true, want: 481, send: func(_ *harness, _ *siptest.Peer, c *call) *siptest.Dialog {
			// The inside dialog's identifiers, sent by the caller.
			bad := *c.A
			bad.CallID, bad.LocalTag, bad.RemoteTag = c.B.CallID, c.B.LocalTag, c.B.RemoteTag
			bad.Send("BYE", nil, "")
			return &bad
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			caller := siptest.NewPeer(t, callerIP+":0")
			pbx := siptest.NewPeer(t, pbxIP+":0")
			h := startSBC(t, withUpstream("pbx", pbx, 1))
			var c *call
			if tt.withCall {
				c = establish(t, h, caller, pbx)
			}
			d := tt.send(h, caller, c)
			if tt.want == 0 {
				caller.NoMessage(quiet)
			} else {
				res := caller.ExpectResponse(tt.want, wait)
				if res.CallID().Value() != d.CallID {
					t.Errorf("%d for Call-ID %q, want %q", tt.want, res.CallID().Value(), d.CallID)
				}
				if res.CSeq().MethodName == sip.INVITE {
					d.AckFailure(res)
				}
			}
			pbx.NoMessage(quiet)
			if c != nil {
				// The real dialog is untouched.
				c.hangup(t)
			}
			h.waitIdle(t)
		})
	}
}

// TestEarlyUpdate: UPDATE works in the early dialog, both ways, before the
// call is answered (RFC 3311).
func TestEarlyUpdate(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1))

	a := caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
	inv := pbx.ExpectRequest("INVITE", wait)
	pbx.ReplyBody(inv, 183, "Session Progress", offerSDP(pbxIP))
	a.Learn(caller.ExpectResponse(183, wait))
	b := pbx.DialogFrom(inv)
	c := &call{A: a, B: b, caller: caller, pbx: pbx}

	b.Send("UPDATE", nil, holdSDP(pbxIP))
	up := caller.ExpectRequest("UPDATE", wait)
	checkOnALeg(t, c, up)
	if string(up.Body()) != holdSDP(pbxIP) {
		t.Errorf("UPDATE body %q", up.Body())
	}
	caller.ReplyBody(up, 200, "OK", holdSDP(callerIP))
	if res := pbx.ExpectResponse(200, wait); string(res.Body()) != holdSDP(callerIP) {
		t.Errorf("200 for UPDATE body %q", res.Body())
	}

	a.Send("UPDATE", nil, offerSDP(callerIP))
	up = pbx.ExpectRequest("UPDATE", wait)
	checkOnBLeg(t, c, up)
	pbx.ReplyBody(up, 200, "OK", offerSDP(pbxIP))
	caller.ExpectResponse(200, wait)

	pbx.Reply(inv, 200, "OK")
	a.Learn(caller.ExpectResponse(200, wait))
	a.Ack(nil, "")
	pbx.ExpectRequest("ACK", wait)
	a.Send("BYE", nil, "")
	pbx.Reply(pbx.ExpectRequest("BYE", wait), 200, "OK")
	caller.ExpectResponse(200, wait)
	h.waitIdle(t)
}

// TestReliableProvisionalRetransmitted: a reliable 183 the PBX repeats (as
// RFC 3262 has it do until the PRACK arrives) is PRACKed and relayed once.
func TestReliableProvisionalRetransmitted(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1))

	a := caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
	inv := pbx.ExpectRequest("INVITE", wait)
	r183 := pbx.ReplyBody(inv, 183, "Session Progress", offerSDP(pbxIP), "Require: 100rel", "RSeq: 1")
	prack := pbx.ExpectRequest("PRACK", wait)
	pbx.SendRaw(h.UDP, []byte(r183.String()))
	caller.ExpectResponse(183, wait)
	pbx.NoMessage(quiet)
	caller.NoMessage(quiet)
	pbx.Reply(prack, 200, "OK")

	pbx.Reply(inv, 200, "OK")
	a.Learn(caller.ExpectResponse(200, wait))
	a.Ack(nil, "")
	pbx.ExpectRequest("ACK", wait)
	a.Send("BYE", nil, "")
	pbx.Reply(pbx.ExpectRequest("BYE", wait), 200, "OK")
	caller.ExpectResponse(200, wait)
	h.waitIdle(t)
}
