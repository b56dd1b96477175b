package b2bua_test

import (
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc/b2bua"
	"github.com/sipwall/sipwall/sbc/siptest"
)

// endEvent waits for the event that ends a call.
func endEvent(t *testing.T, evs <-chan b2bua.CallEvent) b2bua.CallEvent {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case e := <-evs:
			if e.Ended {
				return e
			}
		case <-deadline:
			t.Fatal("no end event")
			return b2bua.CallEvent{}
		}
	}
}

// A call the SBC gives up on at the ring timeout ends with the reason
// ring-timeout and counts as a timeout; one the caller cancels ends with
// cancelled and counts as cancelled. The log and the fraud counters tell
// them apart by the reason.
func TestEndReasonRingTimeoutAndCancel(t *testing.T) {
	t.Parallel()
	t.Run("ring timeout", func(t *testing.T) {
		t.Parallel()
		evs := make(chan b2bua.CallEvent, 8)
		caller := siptest.NewPeer(t, callerIP+":0")
		pbx := siptest.NewPeer(t, pbxIP+":0")
		h := startSBC(t, withUpstream("pbx", pbx, 1), withConfig(func(c *b2bua.Config) {
			c.RingTimeout = 300 * time.Millisecond
			c.Events = func(e b2bua.CallEvent) { evs <- e }
		}))
		a := caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
		inv := pbx.ExpectRequest("INVITE", wait)
		pbx.Reply(inv, 180, "Ringing")
		caller.ExpectResponse(180, wait)
		a.AckFailure(caller.ExpectResponse(408, wait))
		cancel := pbx.ExpectRequest("CANCEL", wait)
		pbx.Reply(cancel, 200, "OK")
		pbx.Reply(inv, 487, "Request Terminated")
		pbx.ExpectRequest("ACK", wait)
		e := endEvent(t, evs)
		if e.Reason != "ring-timeout" { // the documented value, not just the constant
			t.Errorf("end reason %q, want %q", e.Reason, "ring-timeout")
		}
		if e.Info == nil || e.Info.User != "" || e.Info.Claimed != a.Invite.From().Address.User {
			t.Errorf("call info %+v: want no user (nothing authenticated it) and the From user %q as claimed", e.Info, a.Invite.From().Address.User)
		}
		h.waitIdle(t)
		st := h.B2B.Stats()
		if st.Timeouts.Load() != 1 || st.Cancelled.Load() != 0 {
			t.Errorf("Timeouts %d, Cancelled %d; want 1 and 0", st.Timeouts.Load(), st.Cancelled.Load())
		}
	})
	t.Run("caller cancels", func(t *testing.T) {
		t.Parallel()
		evs := make(chan b2bua.CallEvent, 8)
		caller := siptest.NewPeer(t, callerIP+":0")
		pbx := siptest.NewPeer(t, pbxIP+":0")
		h := startSBC(t, withUpstream("pbx", pbx, 1), withConfig(func(c *b2bua.Config) {
			c.Events = func(e b2bua.CallEvent) { evs <- e }
		}))
		a := caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
		inv := pbx.ExpectRequest("INVITE", wait)
		pbx.Reply(inv, 180, "Ringing")
		caller.ExpectResponse(180, wait)
		a.Cancel()
		caller.ExpectResponse(200, wait)
		a.AckFailure(caller.ExpectResponse(487, wait))
		cancel := pbx.ExpectRequest("CANCEL", wait)
		pbx.Reply(cancel, 200, "OK")
		pbx.Reply(inv, 487, "Request Terminated")
		pbx.ExpectRequest("ACK", wait)
		if e := endEvent(t, evs); e.Reason != "cancelled" {
			t.Errorf("end reason %q, want cancelled", e.Reason)
		}
		h.waitIdle(t)
		st := h.B2B.Stats()
		if st.Timeouts.Load() != 0 || st.Cancelled.Load() != 1 {
			t.Errorf("Timeouts %d, Cancelled %d; want 0 and 1", st.Timeouts.Load(), st.Cancelled.Load())
		}
	})
}
