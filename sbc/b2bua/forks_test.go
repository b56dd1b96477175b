package b2bua_test

import (
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc/siptest"
)

// A forking proxy inside answers the call from two phones: the caller
// gets one 200 (the first dialog), and the second dialog's 2xx is ACKed
// and ended with BYE (RFC 3261 13.2.2.4); its retransmission is ACKed
// again without a second BYE.
func TestForked2xxAckedAndEnded(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1))

	a := caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
	bInv := pbx.ExpectRequest("INVITE", wait)
	pbx.ReplyBody(bInv, 200, "OK", offerSDP(pbxIP))
	a200 := caller.ExpectResponse(200, wait)
	a.Learn(a200)
	a.Ack(nil, "")
	if ack := pbx.ExpectRequest("ACK", wait); toTag(ack) != pbx.ToTag(bInv) {
		t.Fatalf("kept dialog's ACK To tag %q", toTag(ack))
	}

	// The second phone's 2xx: another To tag.
	fork := bInv.Clone()
	fork.To().Params.Add("tag", "second-phone")
	pbx.ReplyBody(fork, 200, "OK", offerSDP(pbxIP))
	fAck := pbx.ExpectRequest("ACK", wait)
	bye := pbx.ExpectRequest("BYE", wait)
	for _, r := range []*sip.Request{fAck, bye} {
		if toTag(r) != "second-phone" || r.CallID().Value() != bInv.CallID().Value() || fromTag(r) != fromTag(bInv) {
			t.Fatalf("%s not in the forked dialog: %s", r.Method, r)
		}
	}
	if fAck.CSeq().SeqNo != bInv.CSeq().SeqNo || bye.CSeq().SeqNo <= bInv.CSeq().SeqNo {
		t.Fatalf("CSeq: ACK %d, BYE %d, INVITE %d", fAck.CSeq().SeqNo, bye.CSeq().SeqNo, bInv.CSeq().SeqNo)
	}
	pbx.Reply(bye, 200, "OK")
	// Retransmitted: ACK again, no second BYE.
	pbx.ReplyBody(fork, 200, "OK", offerSDP(pbxIP))
	if ack := pbx.ExpectRequest("ACK", wait); toTag(ack) != "second-phone" {
		t.Fatalf("retransmitted fork 2xx: ACK To tag %q", toTag(ack))
	}
	pbx.NoMessage(quiet)
	// The caller saw none of it, and its call goes on.
	caller.NoMessage(quiet)
	if h.B2B.Active() != 1 || h.B2B.Stats().Forks.Load() != 1 {
		t.Fatalf("active %d, forks %d", h.B2B.Active(), h.B2B.Stats().Forks.Load())
	}
}
