package b2bua_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc/siptest"
)

// TestBasicCall checks every message of a call through the SBC: the two
// legs share no Call-ID, tag, branch or CSeq, and bodies pass intact.
func TestBasicCall(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		offer     string // INVITE body
		answer    string // body of the PBX's 200
		ackBody   string // body of the caller's ACK
		wantBBody string // body the PBX must see in the ACK
	}{
		{name: "offer in INVITE", offer: offerSDP(callerIP), answer: offerSDP(pbxIP)},
		{name: "offer in 200, answer in ACK", answer: offerSDP(pbxIP), ackBody: offerSDP(callerIP), wantBBody: offerSDP(callerIP)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			caller := siptest.NewPeer(t, callerIP+":0")
			pbx := siptest.NewPeer(t, pbxIP+":0")
			h := startSBC(t, withUpstream("pbx", pbx, 1))

			a := caller.Invite(h.UDP, h.URI("bob"), []string{
				"Subject: lunch",
				"X-Internal-Secret: must-not-cross",
				"User-Agent: caller-phone/1.0",
			}, tt.offer)
			aInv := a.Invite

			bInv := pbx.ExpectRequest("INVITE", wait)
			if bInv.CallID().Value() == aInv.CallID().Value() {
				t.Errorf("inside INVITE reuses the caller's Call-ID %q", aInv.CallID().Value())
			}
			if fromTag(bInv) == fromTag(aInv) || fromTag(bInv) == "" {
				t.Errorf("inside From tag %q, want a new one (caller's %q)", fromTag(bInv), fromTag(aInv))
			}
			if toTag(bInv) != "" {
				t.Errorf("inside INVITE has a To tag %q", toTag(bInv))
			}
			if branchOf(bInv) == branchOf(aInv) {
				t.Errorf("inside INVITE reuses the caller's branch")
			}
			if vias := bInv.GetHeaders("Via"); len(vias) != 1 {
				t.Errorf("inside INVITE has %d Via headers, want only the SBC's", len(vias))
			}
			if v := bInv.Via(); v.Host != h.UDP.Addr().String() || v.Port != int(h.UDP.Port()) {
				t.Errorf("inside Via sent-by %s:%d, want the SBC %s", v.Host, v.Port, h.UDP)
			}
			if got := bInv.Source(); got != h.UDP.String() {
				t.Errorf("inside INVITE came from %s, want the SBC listener %s", got, h.UDP)
			}
			if bInv.Recipient.User != "bob" || bInv.Recipient.Host != pbxIP || bInv.Recipient.Port != int(pbx.Addr().Port()) {
				t.Errorf("inside Request-URI %s, want bob at the PBX", bInv.Recipient.String())
			}
			if ct := bInv.Contact(); ct == nil || ct.Address.Host != h.UDP.Addr().String() || ct.Address.Port != int(h.UDP.Port()) {
				t.Errorf("inside Contact %v, want the SBC", ct)
			}
			if mf := bInv.MaxForwards(); mf == nil || *mf != 69 {
				t.Errorf("inside Max-Forwards %v, want 69", mf)
			}
			if got := string(bInv.Body()); got != tt.offer {
				t.Errorf("inside INVITE body %q, want %q", got, tt.offer)
			}
			if header(bInv, "Subject") != "lunch" {
				t.Errorf("Subject not relayed: %q", header(bInv, "Subject"))
			}
			if header(bInv, "X-Internal-Secret") != "" || header(bInv, "User-Agent") == "caller-phone/1.0" {
				t.Errorf("caller headers leaked inside: X-Internal-Secret=%q User-Agent=%q",
					header(bInv, "X-Internal-Secret"), header(bInv, "User-Agent"))
			}

			pbx.Reply(bInv, 180, "Ringing")
			a180 := caller.ExpectResponse(180, wait)
			tagT := toTag(a180)
			if tagT == "" {
				t.Fatal("180 to the caller has no To tag")
			}
			if tagT == pbx.ToTag(bInv) {
				t.Errorf("caller sees the PBX's own tag %q", tagT)
			}
			if a180.CallID().Value() != aInv.CallID().Value() || fromTag(a180) != fromTag(aInv) {
				t.Errorf("180 Call-ID/From tag do not match the caller's INVITE")
			}
			if a180.CSeq().Value() != aInv.CSeq().Value() {
				t.Errorf("180 CSeq %q, want %q", a180.CSeq().Value(), aInv.CSeq().Value())
			}
			if vias := a180.GetHeaders("Via"); len(vias) != 1 || branchOf(a180) != branchOf(aInv) {
				t.Errorf("180 Via %v, want the caller's single Via", vias)
			}

			pbx.ReplyBody(bInv, 200, "OK", tt.answer, "X-Pbx-Internal: secret")
			a200 := caller.ExpectResponse(200, wait)
			if toTag(a200) != tagT {
				t.Errorf("200 To tag %q, want the 180's %q", toTag(a200), tagT)
			}
			if ct := a200.Contact(); ct == nil || ct.Address.Host != h.UDP.Addr().String() || ct.Address.Port != int(h.UDP.Port()) {
				t.Errorf("200 Contact %v, want the SBC %s", ct, h.UDP)
			}
			if got := string(a200.Body()); got != tt.answer {
				t.Errorf("200 body %q, want %q", got, tt.answer)
			}
			if header(a200, "X-Pbx-Internal") != "" {
				t.Errorf("PBX header leaked outside")
			}
			if h.B2B.Active() != 1 {
				t.Errorf("Active() = %d during the call, want 1", h.B2B.Active())
			}

			a.Learn(a200)
			a.Ack(nil, tt.ackBody)
			bAck := pbx.ExpectRequest("ACK", wait)
			if bAck.CSeq().SeqNo != bInv.CSeq().SeqNo || bAck.CSeq().MethodName != sip.ACK {
				t.Errorf("inside ACK CSeq %q, want %d ACK", bAck.CSeq().Value(), bInv.CSeq().SeqNo)
			}
			if bAck.CallID().Value() != bInv.CallID().Value() || fromTag(bAck) != fromTag(bInv) || toTag(bAck) != pbx.ToTag(bInv) {
				t.Errorf("inside ACK dialog ids wrong: %s", bAck)
			}
			if branchOf(bAck) == branchOf(bInv) {
				t.Errorf("ACK for 2xx reuses the INVITE branch")
			}
			if bAck.Recipient.User != pbx.User || bAck.Recipient.Port != int(pbx.Addr().Port()) {
				t.Errorf("inside ACK Request-URI %s, want the PBX's Contact", bAck.Recipient.String())
			}
			if got := string(bAck.Body()); got != tt.wantBBody {
				t.Errorf("inside ACK body %q, want %q", got, tt.wantBBody)
			}

			aBye := a.Send("BYE", nil, "")
			bBye := pbx.ExpectRequest("BYE", wait)
			if bBye.CallID().Value() != bInv.CallID().Value() || fromTag(bBye) != fromTag(bInv) || toTag(bBye) != pbx.ToTag(bInv) {
				t.Errorf("inside BYE dialog ids wrong: %s", bBye)
			}
			if bBye.CSeq().SeqNo <= bInv.CSeq().SeqNo {
				t.Errorf("inside BYE CSeq %d not above the INVITE's %d", bBye.CSeq().SeqNo, bInv.CSeq().SeqNo)
			}
			pbx.Reply(bBye, 200, "OK")
			aRes := caller.ExpectResponse(200, wait)
			if aRes.CSeq().Value() != aBye.CSeq().Value() || aRes.CallID().Value() != aInv.CallID().Value() {
				t.Errorf("caller's 200 for BYE: CSeq %q Call-ID %q", aRes.CSeq().Value(), aRes.CallID().Value())
			}
			h.waitIdle(t)
			pbx.NoMessage(quiet)
			if n := h.B2B.Stats().Answered.Load(); n != 1 {
				t.Errorf("Stats.Answered = %d, want 1", n)
			}
		})
	}
}

// TestByeFromPBX: a BYE from the inside reaches the caller in the caller's
// dialog, and its answer goes back.
func TestByeFromPBX(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1))
	c := establish(t, h, caller, pbx)

	bBye := c.B.Send("BYE", []string{"Reason: Q.850;cause=16"}, "")
	aBye := caller.ExpectRequest("BYE", wait)
	if aBye.CallID().Value() != c.AInv.CallID().Value() {
		t.Errorf("BYE Call-ID %q, want the caller's %q", aBye.CallID().Value(), c.AInv.CallID().Value())
	}
	if fromTag(aBye) != toTag(c.A200) || toTag(aBye) != fromTag(c.AInv) {
		t.Errorf("BYE tags from=%q to=%q, want from=%q to=%q", fromTag(aBye), toTag(aBye), toTag(c.A200), fromTag(c.AInv))
	}
	if aBye.Recipient.User != caller.User || aBye.Recipient.Port != int(caller.Addr().Port()) {
		t.Errorf("BYE Request-URI %s, want the caller's Contact", aBye.Recipient.String())
	}
	if header(aBye, "Reason") != "Q.850;cause=16" {
		t.Errorf("Reason = %q, want it relayed", header(aBye, "Reason"))
	}
	caller.Reply(aBye, 200, "OK")
	res := pbx.ExpectResponse(200, wait)
	if res.CSeq().Value() != bBye.CSeq().Value() || toTag(res) != toTag(bBye) {
		t.Errorf("PBX's 200 for BYE: CSeq %q To tag %q", res.CSeq().Value(), toTag(res))
	}
	h.waitIdle(t)
}

// TestReAckRetransmitted2xx: a 2xx the PBX retransmits after our ACK was
// sent is ACKed again (RFC 3261 13.2.2.4), without bothering the caller.
func TestReAckRetransmitted2xx(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1))

	a := caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
	bInv := pbx.ExpectRequest("INVITE", wait)
	b200 := pbx.ReplyBody(bInv, 200, "OK", offerSDP(pbxIP))
	a.Learn(caller.ExpectResponse(200, wait))
	a.Ack(nil, "")
	ack1 := pbx.ExpectRequest("ACK", wait)

	for i := range 2 {
		pbx.SendRaw(h.UDP, []byte(b200.String()))
		ack := pbx.ExpectRequest("ACK", wait)
		if ack.CSeq().Value() != ack1.CSeq().Value() || ack.CallID().Value() != ack1.CallID().Value() || toTag(ack) != toTag(ack1) {
			t.Errorf("re-ACK %d differs from the first ACK: %s", i, ack)
		}
	}
	caller.NoMessage(quiet)
	a.Send("BYE", nil, "")
	pbx.Reply(pbx.ExpectRequest("BYE", wait), 200, "OK")
	caller.ExpectResponse(200, wait)
	h.waitIdle(t)
}

// TestNoAck: a caller that never ACKs gets the 2xx retransmitted over UDP,
// then after 64*T1 both legs are hung up and the call is gone.
func TestNoAck(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1))

	a := caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
	bInv := pbx.ExpectRequest("INVITE", wait)
	pbx.ReplyBody(bInv, 200, "OK", offerSDP(pbxIP))
	start := time.Now()
	first := caller.ExpectResponse(200, wait)

	// Count copies of the 200 until the SBC gives up and sends BYE.
	copies := 1
	var aBye *sip.Request
	for range 200 {
		msg, err := caller.Recv(64*testT1 + wait)
		if err != nil {
			t.Fatalf("waiting for 2xx retransmissions or BYE: %v", err)
		}
		if r, ok := msg.(*sip.Response); ok && r.StatusCode == 200 {
			if r.CSeq().Value() != first.CSeq().Value() || toTag(r) != toTag(first) {
				t.Fatalf("retransmission differs: %s", siptest.Describe(r))
			}
			copies++
			continue
		}
		if r, ok := msg.(*sip.Request); ok && r.Method == sip.BYE {
			aBye = r
			break
		}
		t.Fatalf("unexpected %s", siptest.Describe(msg))
	}
	if aBye == nil {
		t.Fatal("no BYE after the 2xx retransmissions")
	}
	if took := time.Since(start); took < 64*testT1*9/10 {
		t.Errorf("gave up after %v, before 64*T1 = %v", took, 64*testT1)
	}
	if copies < 3 {
		t.Errorf("the 200 was sent %d times, want retransmissions", copies)
	}
	if aBye.CallID().Value() != a.CallID || toTag(aBye) != a.LocalTag || fromTag(aBye) != toTag(first) {
		t.Errorf("caller's BYE not in the caller's dialog: %s", aBye)
	}
	caller.Reply(aBye, 200, "OK")

	// The PBX's 200 is ACKed before the BYE ends its dialog.
	bAck := pbx.ExpectRequest("ACK", wait)
	if bAck.CSeq().SeqNo != bInv.CSeq().SeqNo || toTag(bAck) != pbx.ToTag(bInv) || len(bAck.Body()) != 0 {
		t.Errorf("PBX's ACK: %s", bAck)
	}
	bBye := pbx.ExpectRequest("BYE", wait)
	if bBye.CallID().Value() != bInv.CallID().Value() || toTag(bBye) != pbx.ToTag(bInv) {
		t.Errorf("PBX's BYE not in the inside dialog: %s", bBye)
	}
	pbx.Reply(bBye, 200, "OK")
	h.waitIdle(t)
	if n := h.B2B.Stats().NoAck.Load(); n != 1 {
		t.Errorf("Stats.NoAck = %d, want 1", n)
	}
}

// TestCancelBeforeAnswer: the caller's CANCEL is answered at once, the
// inside INVITE is cancelled in its own transaction, and the SBC ACKs the
// PBX's 487.
func TestCancelBeforeAnswer(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1))

	a := caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
	bInv := pbx.ExpectRequest("INVITE", wait)
	pbx.Reply(bInv, 180, "Ringing")
	a180 := caller.ExpectResponse(180, wait)

	aCancel := a.Cancel()
	aCancel200 := caller.ExpectResponse(200, wait)
	if aCancel200.CSeq().MethodName != sip.CANCEL || aCancel200.CSeq().SeqNo != aCancel.CSeq().SeqNo {
		t.Errorf("200 CSeq %q, want the CANCEL's", aCancel200.CSeq().Value())
	}
	a487 := caller.ExpectResponse(487, wait)
	if a487.CSeq().MethodName != sip.INVITE || a487.CallID().Value() != a.CallID {
		t.Errorf("487 CSeq %q Call-ID %q, want the caller's INVITE", a487.CSeq().Value(), a487.CallID().Value())
	}
	if toTag(a487) != toTag(a180) {
		// RFC 3261 8.2.6.2: one tag for all responses to a request.
		t.Logf("note: 487 To tag %q differs from the 180's %q", toTag(a487), toTag(a180))
	}
	a.AckFailure(a487)

	bCancel := pbx.ExpectRequest("CANCEL", wait)
	if branchOf(bCancel) != branchOf(bInv) {
		t.Errorf("inside CANCEL branch %q, want the INVITE's %q", branchOf(bCancel), branchOf(bInv))
	}
	if bCancel.CSeq().SeqNo != bInv.CSeq().SeqNo || bCancel.CSeq().MethodName != sip.CANCEL {
		t.Errorf("inside CANCEL CSeq %q, want %d CANCEL", bCancel.CSeq().Value(), bInv.CSeq().SeqNo)
	}
	if bCancel.CallID().Value() != bInv.CallID().Value() || fromTag(bCancel) != fromTag(bInv) || toTag(bCancel) != "" {
		t.Errorf("inside CANCEL ids differ from the INVITE's: %s", bCancel)
	}
	if bCancel.Recipient.String() != bInv.Recipient.String() {
		t.Errorf("inside CANCEL Request-URI %s, want %s", bCancel.Recipient.String(), bInv.Recipient.String())
	}
	pbx.Reply(bCancel, 200, "OK")
	pbx.Reply(bInv, 487, "Request Terminated")
	bAck := pbx.ExpectRequest("ACK", wait)
	if branchOf(bAck) != branchOf(bInv) || bAck.CSeq().SeqNo != bInv.CSeq().SeqNo {
		t.Errorf("ACK for 487: branch %q CSeq %q, want the INVITE's", branchOf(bAck), bAck.CSeq().Value())
	}
	h.waitIdle(t)
	pbx.NoMessage(quiet)
	caller.NoMessage(quiet)
	if n := h.B2B.Stats().Cancelled.Load(); n != 1 {
		t.Errorf("Stats.Cancelled = %d, want 1", n)
	}
}

// TestCancelBeforeProvisional: a CANCEL that arrives before the PBX sent
// any provisional response must still cancel the inside INVITE once one
// comes (RFC 3261 9.1), not leave the PBX ringing.
func TestCancelBeforeProvisional(t *testing.T) {
	t.Parallel()
	for _, trying := range []bool{false, true} {
		t.Run("100 Trying "+strconv.FormatBool(trying), func(t *testing.T) {
			t.Parallel()
			caller := siptest.NewPeer(t, callerIP+":0")
			pbx := siptest.NewPeer(t, pbxIP+":0")
			h := startSBC(t, withUpstream("pbx", pbx, 1))

			a := caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
			bInv := pbx.ExpectRequest("INVITE", wait)
			if trying {
				pbx.Reply(bInv, 100, "Trying")
				// Let the 100 reach the SBC before the CANCEL does.
				eventually(t, wait, "INVITE retransmissions stop", func() bool {
					return pbx.Drain(3*testT1) == 0
				})
			}
			a.Cancel()
			caller.ExpectResponse(200, wait)
			a.AckFailure(caller.ExpectResponse(487, wait))

			if !trying {
				// No CANCEL may go before a provisional response.
				pbx.NoMessage(quiet)
				pbx.Reply(bInv, 180, "Ringing")
			}
			bCancel := pbx.ExpectRequest("CANCEL", wait)
			if branchOf(bCancel) != branchOf(bInv) {
				t.Errorf("CANCEL branch differs from the INVITE's")
			}
			pbx.Reply(bCancel, 200, "OK")
			pbx.Reply(bInv, 487, "Request Terminated")
			pbx.ExpectRequest("ACK", wait)
			h.waitIdle(t)
			caller.NoMessage(quiet)
		})
	}
}

// TestCancelCrossing200: the PBX answers while the CANCEL is on its way;
// the SBC ACKs and hangs up the inside call (RFC 3261 9.1 / 15).
func TestCancelCrossing200(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1))

	a := caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
	bInv := pbx.ExpectRequest("INVITE", wait)
	pbx.Reply(bInv, 180, "Ringing")
	caller.ExpectResponse(180, wait)
	a.Cancel()
	caller.ExpectResponse(200, wait)
	a.AckFailure(caller.ExpectResponse(487, wait))

	bCancel := pbx.ExpectRequest("CANCEL", wait)
	// The PBX answered before it saw the CANCEL.
	pbx.ReplyBody(bInv, 200, "OK", offerSDP(pbxIP))
	pbx.Reply(bCancel, 200, "OK")
	ack := pbx.ExpectRequest("ACK", wait)
	if toTag(ack) != pbx.ToTag(bInv) || ack.CSeq().SeqNo != bInv.CSeq().SeqNo {
		t.Errorf("ACK for the crossing 200: %s", ack)
	}
	bye := pbx.ExpectRequest("BYE", wait)
	if toTag(bye) != pbx.ToTag(bInv) || bye.CallID().Value() != bInv.CallID().Value() {
		t.Errorf("BYE for the crossing 200: %s", bye)
	}
	pbx.Reply(bye, 200, "OK")
	h.waitIdle(t)
	caller.NoMessage(quiet)
}
