package b2bua_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/b2bua"
	"github.com/sipwall/sipwall/sbc/siptest"
)

// Owns is true only for requests of a live dialog the B2BUA created, seen
// from the leg's own side with the leg's tags: a To tag alone proves
// nothing.
func TestOwns(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1))
	c := establish(t, h, caller, pbx)

	req := func(callID, from, to string, side sbc.Side) *sbc.Request {
		r := sip.NewRequest(sip.BYE, sip.Uri{Scheme: "sip", Host: "127.0.0.1"})
		fp, tp := sip.NewParams(), sip.NewParams()
		fp.Add("tag", from)
		if to != "" {
			tp.Add("tag", to)
		}
		r.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", Host: "x"}, Params: fp})
		r.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", Host: "y"}, Params: tp})
		cid := sip.CallIDHeader(callID)
		r.AppendHeader(&cid)
		return &sbc.Request{Request: r, Peer: netip.MustParseAddrPort(callerIP + ":5060"), Side: side}
	}
	aCID, aFrom, aTo := c.AInv.CallID().Value(), fromTag(c.AInv), toTag(c.A200)
	if !h.B2B.Owns(req(aCID, aFrom, aTo, sbc.External)) {
		t.Fatal("the caller's own dialog is not owned")
	}
	for name, r := range map[string]*sbc.Request{
		"forged To tag":   req(aCID, aFrom, "forged", sbc.External),
		"other From tag":  req(aCID, "other", aTo, sbc.External),
		"other Call-ID":   req("nope", aFrom, aTo, sbc.External),
		"from the inside": req(aCID, aFrom, aTo, sbc.Internal),
		"no To tag":       req(aCID, aFrom, "", sbc.External),
	} {
		if h.B2B.Owns(r) {
			t.Errorf("%s: owned", name)
		}
	}
	c.hangup(t)
	if h.B2B.Owns(req(aCID, aFrom, aTo, sbc.External)) {
		t.Error("an ended dialog is still owned")
	}
}

// An INVITE retransmitted after its transaction ended on the 2xx (the
// caller missed the 200) is not a second call; the same Call-ID and From
// tag with another branch is a merged request and gets 482.
func TestRepeatedInvite(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1))
	c := establish(t, h, caller, pbx)

	// sipgo's transaction layer may still absorb it; if it reaches the
	// B2BUA it is counted and dropped. Either way: no second call.
	raw := []byte(c.AInv.String())
	caller.SendRaw(h.UDP, raw)
	pbx.NoMessage(300 * time.Millisecond)
	if n := h.B2B.Active(); n != 1 {
		t.Errorf("%d calls after the retransmission, want 1", n)
	}

	merged := c.AInv.Clone()
	via := merged.Via()
	via.Params.Remove("branch")
	via.Params.Add("branch", "z9hG4bK-merged-1")
	caller.SendRaw(h.UDP, []byte(merged.String()))
	res := caller.ExpectResponse(482, wait)
	pbx.NoMessage(200 * time.Millisecond)
	c.A.AckFailure(res)
	c.hangup(t)
}

// A BYE that overtakes the ACK of the 2xx (sent right after it, handled on
// another goroutine) waits for that ACK: the PBX sees ACK, then BYE.
func TestByeWaitsForPendingAck(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1))
	a := caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
	bInv := pbx.ExpectRequest("INVITE", wait)
	pbx.ReplyBody(bInv, 200, "OK", offerSDP(pbxIP))
	a200 := caller.ExpectResponse(200, wait)
	a.Learn(a200)
	a.Send("BYE", nil, "")
	time.Sleep(100 * time.Millisecond)
	a.Ack(nil, "")
	pbx.ExpectRequest("ACK", wait)
	bye := pbx.ExpectRequest("BYE", wait)
	pbx.Reply(bye, 200, "OK")
	// The 2xx of the INVITE may still be retransmitted once before the
	// BYE's 200 arrives.
	for i := 0; ; i++ {
		res := caller.ExpectResponse(200, wait)
		if res.CSeq().MethodName == sip.BYE {
			break
		}
		if i == 3 {
			t.Fatal("no 200 to the BYE")
		}
	}
}

// Events hears of the answer and of the end of a call, keyed like
// OriginKey of the caller's INVITE.
func TestCallEvents(t *testing.T) {
	t.Parallel()
	evs := make(chan b2bua.CallEvent, 4)
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1), withConfig(func(c *b2bua.Config) {
		c.Events = func(e b2bua.CallEvent) { evs <- e }
	}))
	c := establish(t, h, caller, pbx)
	want := b2bua.OriginKey(&sbc.Request{Request: c.AInv})
	time.Sleep(50 * time.Millisecond)
	c.hangup(t)
	var got []b2bua.CallEvent
	for len(got) < 2 {
		select {
		case e := <-evs:
			got = append(got, e)
		case <-time.After(2 * time.Second):
			t.Fatalf("events %+v, want answered and ended", got)
		}
	}
	if got[0].Key != want || !got[0].Answered || got[0].Ended {
		t.Errorf("first event %+v, want answered for %q", got[0], want)
	}
	if got[1].Key != want || !got[1].Ended || !got[1].Answered || got[1].Duration < 50*time.Millisecond {
		t.Errorf("second event %+v, want ended after at least 50ms", got[1])
	}
}

// An INVITE retransmission still on its way when its call ends (a fast
// caller: 200, ACK and BYE while the copy waited in a queue) is dropped
// as well, for 64×T1 after the end: it does not become a second call
// that no one would ACK or hang up.
func TestInviteRetransmissionAfterTheCallEnded(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1))
	c := establish(t, h, caller, pbx)
	// Past Timer L the transaction layer no longer absorbs a copy of the
	// INVITE: the B2BUA has to know it.
	time.Sleep(64*testT1 + 200*time.Millisecond)
	c.hangup(t)
	h.waitIdle(t)
	before := h.B2B.Stats().Retransmissions.Load()

	caller.SendRaw(h.UDP, []byte(c.AInv.String()))
	pbx.NoMessage(300 * time.Millisecond)
	if n := h.B2B.Active(); n != 0 {
		t.Fatalf("%d calls after the late retransmission, want 0", n)
	}
	if got := h.B2B.Stats().Retransmissions.Load(); got != before+1 {
		t.Fatalf("retransmissions counted %d, want %d", got, before+1)
	}
	// A new INVITE (another branch) with the same Call-ID and From tag
	// after the call ended is a new call, not a retransmission.
	again := c.AInv.Clone()
	via := again.Via()
	via.Params.Remove("branch")
	via.Params.Add("branch", "z9hG4bK-again-1")
	caller.SendRaw(h.UDP, []byte(again.String()))
	inv := pbx.ExpectRequest("INVITE", wait)
	pbx.Reply(inv, 486, "Busy Here")
	pbx.ExpectRequest("ACK", wait)
	res := caller.ExpectResponse(486, wait)
	c.A.AckFailure(res)
	h.waitIdle(t)
}
