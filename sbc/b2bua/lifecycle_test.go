package b2bua_test

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc/b2bua"
	"github.com/sipwall/sipwall/sbc/siptest"
)

// expectByeBoth answers the BYE the SBC sends each leg when it ends a call
// itself, and checks each is in that leg's dialog.
func expectByeBoth(t *testing.T, c *call, within time.Duration) {
	t.Helper()
	aBye := c.caller.ExpectRequest("BYE", within)
	checkOnALeg(t, c, aBye)
	c.caller.Reply(aBye, 200, "OK")
	bBye := c.pbx.ExpectRequest("BYE", within)
	checkOnBLeg(t, c, bBye)
	c.pbx.Reply(bBye, 200, "OK")
}

// TestCallLimits: calls the SBC ends on its own.
func TestCallLimits(t *testing.T) {
	t.Parallel()
	t.Run("max duration", func(t *testing.T) {
		t.Parallel()
		caller := siptest.NewPeer(t, callerIP+":0")
		pbx := siptest.NewPeer(t, pbxIP+":0")
		h := startSBC(t, withUpstream("pbx", pbx, 1), withConfig(func(c *b2bua.Config) { c.MaxDuration = 300 * time.Millisecond }))
		start := time.Now() // before the answer, so before the limit's timer starts
		c := establish(t, h, caller, pbx)
		expectByeBoth(t, c, wait)
		if took := time.Since(start); took < 300*time.Millisecond {
			t.Errorf("hung up after %v, before the 300ms limit", took)
		}
		h.waitIdle(t)
	})
	t.Run("session timeout", func(t *testing.T) {
		t.Parallel()
		caller := siptest.NewPeer(t, callerIP+":0")
		pbx := siptest.NewPeer(t, pbxIP+":0")
		h := startSBC(t, withUpstream("pbx", pbx, 1), withConfig(func(c *b2bua.Config) { c.SessionTimeout = 400 * time.Millisecond }))
		c := establish(t, h, caller, pbx)
		expectByeBoth(t, c, wait)
		h.waitIdle(t)
	})
	t.Run("ring timeout", func(t *testing.T) {
		t.Parallel()
		caller := siptest.NewPeer(t, callerIP+":0")
		pbx := siptest.NewPeer(t, pbxIP+":0")
		h := startSBC(t, withUpstream("pbx", pbx, 1), withConfig(func(c *b2bua.Config) { c.RingTimeout = 300 * time.Millisecond }))
		a := caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
		inv := pbx.ExpectRequest("INVITE", wait)
		pbx.Reply(inv, 180, "Ringing")
		caller.ExpectResponse(180, wait)
		res := caller.ExpectResponse(408, wait)
		a.AckFailure(res)
		cancel := pbx.ExpectRequest("CANCEL", wait)
		if branchOf(cancel) != branchOf(inv) {
			t.Errorf("CANCEL branch differs from the INVITE's")
		}
		pbx.Reply(cancel, 200, "OK")
		pbx.Reply(inv, 487, "Request Terminated")
		pbx.ExpectRequest("ACK", wait)
		h.waitIdle(t)
	})
}

// TestInDialogFailures: what the far side's failure to answer, or its
// refusal, does to a call.
func TestInDialogFailures(t *testing.T) {
	t.Parallel()
	t.Run("re-INVITE refused keeps the call", func(t *testing.T) {
		t.Parallel()
		caller := siptest.NewPeer(t, callerIP+":0")
		pbx := siptest.NewPeer(t, pbxIP+":0")
		h := startSBC(t, withUpstream("pbx", pbx, 1))
		c := establish(t, h, caller, pbx)

		// Several rounds: the next re-INVITE goes out the moment the
		// answer to the last one is in, which is when a stale "INVITE
		// pending" state would show as a 491.
		for range 10 {
			c.A.Send("INVITE", nil, holdSDP(callerIP))
			got := pbx.ExpectRequest("INVITE", wait)
			pbx.Reply(got, 488, "Not Acceptable Here")
			ack := pbx.ExpectRequest("ACK", wait)
			if branchOf(ack) != branchOf(got) {
				t.Errorf("ACK for 488 must reuse the re-INVITE's branch")
			}
			res := caller.ExpectResponse(488, wait)
			if toTag(res) != c.A.RemoteTag {
				t.Errorf("488 To tag %q, want the dialog's %q", toTag(res), c.A.RemoteTag)
			}
			c.A.AckFailure(res)
			if h.B2B.Active() != 1 {
				t.Fatalf("Active() = %d after a refused re-INVITE, want 1", h.B2B.Active())
			}
			c.A.Send("INVITE", nil, offerSDP(callerIP))
			got = pbx.ExpectRequest("INVITE", wait)
			pbx.ReplyBody(got, 200, "OK", offerSDP(pbxIP))
			caller.ExpectResponse(200, wait)
			c.A.Ack(nil, "")
			pbx.ExpectRequest("ACK", wait)
		}
		c.hangup(t)
		h.waitIdle(t)
	})
	t.Run("unanswered INFO gets 408", func(t *testing.T) {
		t.Parallel()
		caller := siptest.NewPeer(t, callerIP+":0")
		pbx := siptest.NewPeer(t, pbxIP+":0")
		h := startSBC(t, withUpstream("pbx", pbx, 1))
		c := establish(t, h, caller, pbx)

		c.A.Send("INFO", nil, "")
		pbx.ExpectRequest("INFO", wait)
		caller.ExpectResponse(408, 64*testT1+wait)
		if h.B2B.Active() != 1 {
			t.Errorf("Active() = %d after an unanswered INFO, want 1", h.B2B.Active())
		}
		c.hangup(t)
		h.waitIdle(t)
	})
	t.Run("unanswered BYE still ends the call", func(t *testing.T) {
		t.Parallel()
		caller := siptest.NewPeer(t, callerIP+":0")
		pbx := siptest.NewPeer(t, pbxIP+":0")
		h := startSBC(t, withUpstream("pbx", pbx, 1))
		c := establish(t, h, caller, pbx)

		c.A.Send("BYE", nil, "")
		pbx.ExpectRequest("BYE", wait)
		caller.ExpectResponse(200, 64*testT1+wait)
		h.waitIdle(t)
	})
	t.Run("481 from the far side ends the call", func(t *testing.T) {
		t.Parallel()
		caller := siptest.NewPeer(t, callerIP+":0")
		pbx := siptest.NewPeer(t, pbxIP+":0")
		h := startSBC(t, withUpstream("pbx", pbx, 1))
		c := establish(t, h, caller, pbx)

		c.A.Send("INFO", nil, "")
		pbx.Reply(pbx.ExpectRequest("INFO", wait), 481, "Call/Transaction Does Not Exist")
		caller.ExpectResponse(481, wait)
		// The caller's dialog is ended too; the inside one may get a BYE.
		aBye := caller.ExpectRequest("BYE", wait)
		checkOnALeg(t, c, aBye)
		caller.Reply(aBye, 200, "OK")
		pbx.Drain(quiet)
		h.waitIdle(t)
	})
}

// TestRetransmissions: retransmitted requests are absorbed, never relayed
// as new ones.
func TestRetransmissions(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1))

	a := caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
	inv := pbx.ExpectRequest("INVITE", wait)
	caller.SendRaw(h.UDP, []byte(a.Invite.String()))
	pbx.Reply(inv, 180, "Ringing")
	caller.ExpectResponse(180, wait)
	caller.SendRaw(h.UDP, []byte(a.Invite.String()))
	// The server transaction answers a retransmission with the last 180
	// (a 100 Trying may come first if the 180 took long).
	for range 3 {
		msg, err := caller.Recv(wait)
		if err != nil {
			t.Fatalf("no answer to the retransmitted INVITE: %v", err)
		}
		if r, ok := msg.(*sip.Response); ok && r.StatusCode == 100 {
			continue
		}
		if r, ok := msg.(*sip.Response); !ok || r.StatusCode != 180 {
			t.Errorf("retransmitted INVITE answered with %s, want the 180 again", siptest.Describe(msg))
		}
		break
	}
	pbx.NoMessage(quiet)

	pbx.ReplyBody(inv, 200, "OK", offerSDP(pbxIP))
	a.Learn(caller.ExpectResponse(200, wait))
	a.Ack(nil, "")
	pbx.ExpectRequest("ACK", wait)

	bye := a.Send("BYE", nil, "")
	got := pbx.ExpectRequest("BYE", wait)
	caller.SendRaw(h.UDP, []byte(bye.String()))
	pbx.NoMessage(quiet)
	pbx.Reply(got, 200, "OK")
	caller.ExpectResponse(200, wait)
	h.waitIdle(t)
}
