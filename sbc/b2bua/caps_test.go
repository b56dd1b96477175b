package b2bua_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/b2bua"
	"github.com/sipwall/sipwall/sbc/siptest"
)

// identify stands in for the auth layer: it gives requests from a peer
// address the identity listed for it.
type identify map[string]*sbc.Identity

func (identify) Name() string { return "auth" }

func (m identify) ServeSIP(_ context.Context, _ sbc.ResponseWriter, r *sbc.Request) (sbc.Verdict, error) {
	if id, ok := m[r.Peer.String()]; ok {
		r.Identity = id
	}
	return sbc.Continue, nil
}

// ring places a call from caller that the PBX lets ring.
func ring(t *testing.T, h *harness, caller, pbx *siptest.Peer) (*siptest.Dialog, *sip.Request) {
	t.Helper()
	a := caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
	inv := pbx.ExpectRequest("INVITE", wait)
	pbx.Reply(inv, 180, "Ringing")
	caller.ExpectResponse(180, wait)
	return a, inv
}

// expectCapped: a call from caller gets 486 with a Warning naming the cap
// (what), and the PBX sees nothing of it.
func expectCapped(t *testing.T, h *harness, caller, pbx *siptest.Peer, what string) {
	t.Helper()
	a := caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
	res := caller.ExpectResponse(486, wait)
	a.AckFailure(res)
	want := `399 ` + h.UDP.String() + ` "Too many calls in progress for this ` + what + `"`
	if w := header(res, "Warning"); w != want {
		t.Errorf("Warning %q, want %q", w, want)
	}
	pbx.NoMessage(quiet)
}

// expectAdmitted: a call from caller reaches the PBX, which refuses it.
func expectAdmitted(t *testing.T, h *harness, caller, pbx *siptest.Peer) {
	t.Helper()
	a := caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
	inv := pbx.ExpectRequest("INVITE", wait)
	pbx.Reply(inv, 480, "Temporarily Unavailable")
	a.AckFailure(caller.ExpectResponse(480, wait))
	pbx.ExpectRequest("ACK", wait)
}

// answer has the PBX answer a ringing call and the caller ACK it.
func answer(t *testing.T, caller, pbx *siptest.Peer, a *siptest.Dialog, inv *sip.Request) *call {
	t.Helper()
	pbx.ReplyBody(inv, 200, "OK", offerSDP(pbxIP))
	res := caller.ExpectResponse(200, wait)
	a.Learn(res)
	a.Ack(nil, "")
	pbx.ExpectRequest("ACK", wait)
	return &call{A: a, B: pbx.DialogFrom(inv), AInv: a.Invite, BInv: inv, A200: res, caller: caller, pbx: pbx}
}

// TestCapReleasedOnEveryEnd: a source at its cap (one call) is refused a
// second call; once the first ends, whichever way, the next is admitted.
func TestCapReleasedOnEveryEnd(t *testing.T) {
	t.Parallel()
	ends := []struct {
		name   string
		silent bool // the PBX sends nothing at all, not even 180
		cfg    func(*b2bua.Config)
		// end ends the call ringing as (a, inv) on h.
		end func(t *testing.T, h *harness, caller, pbx *siptest.Peer, a *siptest.Dialog, inv *sip.Request)
	}{
		{"cancel", false, nil, func(t *testing.T, h *harness, caller, pbx *siptest.Peer, a *siptest.Dialog, inv *sip.Request) {
			a.Cancel()
			caller.ExpectResponse(200, wait)
			a.AckFailure(caller.ExpectResponse(487, wait))
			cancel := pbx.ExpectRequest("CANCEL", wait)
			pbx.Reply(cancel, 200, "OK")
			pbx.Reply(inv, 487, "Request Terminated")
			pbx.ExpectRequest("ACK", wait)
		}},
		{"ring timeout", false, func(c *b2bua.Config) { c.RingTimeout = 1500 * time.Millisecond },
			func(t *testing.T, h *harness, caller, pbx *siptest.Peer, a *siptest.Dialog, inv *sip.Request) {
				a.AckFailure(caller.ExpectResponse(408, wait))
				cancel := pbx.ExpectRequest("CANCEL", wait)
				pbx.Reply(cancel, 200, "OK")
				pbx.Reply(inv, 487, "Request Terminated")
				pbx.ExpectRequest("ACK", wait)
			}},
		{"refused by the PBX", false, nil, func(t *testing.T, h *harness, caller, pbx *siptest.Peer, a *siptest.Dialog, inv *sip.Request) {
			pbx.Reply(inv, 603, "Decline")
			a.AckFailure(caller.ExpectResponse(603, wait))
			pbx.ExpectRequest("ACK", wait)
		}},
		{"no answer at all", true, nil, func(t *testing.T, h *harness, caller, pbx *siptest.Peer, a *siptest.Dialog, inv *sip.Request) {
			// Timer B (64×T1), no other upstream: the caller gets 503.
			a.AckFailure(caller.ExpectResponse(503, 64*testT1+wait))
		}},
		{"bye from the caller", false, nil, func(t *testing.T, h *harness, caller, pbx *siptest.Peer, a *siptest.Dialog, inv *sip.Request) {
			answer(t, caller, pbx, a, inv).hangup(t)
		}},
		{"bye from the PBX", false, nil, func(t *testing.T, h *harness, caller, pbx *siptest.Peer, a *siptest.Dialog, inv *sip.Request) {
			c := answer(t, caller, pbx, a, inv)
			c.B.Send("BYE", nil, "")
			caller.Reply(caller.ExpectRequest("BYE", wait), 200, "OK")
			pbx.ExpectResponse(200, wait)
		}},
		{"no ACK", false, nil, func(t *testing.T, h *harness, caller, pbx *siptest.Peer, a *siptest.Dialog, inv *sip.Request) {
			pbx.ReplyBody(inv, 200, "OK", offerSDP(pbxIP))
			caller.ExpectResponse(200, wait)
			// No ACK: after 64×T1 the SBC ACKs the PBX and ends both
			// legs; the caller sees the 2xx again until then.
			pbx.ExpectRequest("ACK", 64*testT1+wait)
			deadline := time.Now().Add(64*testT1 + wait)
			for i := 0; ; i++ {
				if i == 50 {
					t.Fatal("no BYE to the caller among 50 messages")
				}
				msg, err := caller.Recv(time.Until(deadline))
				if err != nil {
					t.Fatalf("no BYE to the caller: %v", err)
				}
				if req, ok := msg.(*sip.Request); ok && req.Method == sip.BYE {
					caller.Reply(req, 200, "OK")
					break
				}
			}
			pbx.Reply(pbx.ExpectRequest("BYE", wait), 200, "OK")
		}},
		{"hang-up", false, nil, func(t *testing.T, h *harness, caller, pbx *siptest.Peer, a *siptest.Dialog, inv *sip.Request) {
			answer(t, caller, pbx, a, inv)
			calls := h.B2B.Calls()
			if len(calls) != 1 || !h.B2B.HangUp(calls[0].ID, "admin") {
				t.Fatalf("hang-up of %+v failed", calls)
			}
			caller.Reply(caller.ExpectRequest("BYE", wait), 200, "OK")
			pbx.Reply(pbx.ExpectRequest("BYE", wait), 200, "OK")
		}},
		{"draining", false, nil, func(t *testing.T, h *harness, caller, pbx *siptest.Peer, a *siptest.Dialog, inv *sip.Request) {
			// Refused while draining (503): not counted, nothing held.
			h.B2B.SetDraining(true)
			other := siptest.NewPeer(t, callerIP+":0")
			b := other.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
			b.AckFailure(other.ExpectResponse(503, wait))
			c := answer(t, caller, pbx, a, inv)
			c.hangup(t)
			h.B2B.SetDraining(false)
		}},
	}
	for _, e := range ends {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			caller := siptest.NewPeer(t, callerIP+":0")
			// Another port of the same address: the same source.
			second := siptest.NewPeer(t, callerIP+":0")
			pbx := siptest.NewPeer(t, pbxIP+":0")
			h := startSBC(t, withUpstream("pbx", pbx, 1), withConfig(func(c *b2bua.Config) {
				c.Caps = b2bua.Caps{PerSource: 1}
				if e.cfg != nil {
					e.cfg(c)
				}
			}))
			var a *siptest.Dialog
			var inv *sip.Request
			if e.silent {
				a = caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
				inv = pbx.ExpectRequest("INVITE", wait)
			} else {
				a, inv = ring(t, h, caller, pbx)
			}
			expectCapped(t, h, second, pbx, "address")
			e.end(t, h, caller, pbx, a, inv)
			h.waitIdle(t)
			if n := h.B2B.CappedCalls(); n != 0 {
				t.Fatalf("%d calls still counted after the end", n)
			}
			expectAdmitted(t, h, second, pbx)
			if s := h.B2B.CapStats(); s != (b2bua.CapStats{Source: 1}) {
				t.Errorf("CapStats = %+v, want one refusal per source", s)
			}
		})
	}
}

// TestCapRefusedOfferReleases: a call refused for its SDP (488) leaves its
// place free.
func TestCapRefusedOfferReleases(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1), withConfig(func(c *b2bua.Config) { c.Caps = b2bua.Caps{PerSource: 1} }))
	for range 3 {
		a := caller.Invite(h.UDP, h.URI("bob"), nil, strings.Replace(offerSDP(callerIP), "RTP/AVP 0", "RTP/AVP 0 200", 1))
		a.AckFailure(caller.ExpectResponse(488, wait))
	}
	pbx.NoMessage(quiet)
	h.waitIdle(t)
	expectAdmitted(t, h, caller, pbx)
	if s := h.B2B.CapStats(); s != (b2bua.CapStats{}) {
		t.Errorf("CapStats = %+v, want no refusal", s)
	}
}

// TestCapPerUser: one user is counted across addresses; each user and
// each address on its own; the first cap reached refuses.
func TestCapPerUser(t *testing.T) {
	t.Parallel()
	const otherIP = caller2IP
	alice := siptest.NewPeer(t, callerIP+":0")
	aliceElsewhere := siptest.NewPeer(t, otherIP+":0")
	bob := siptest.NewPeer(t, otherIP+":0")
	carol := siptest.NewPeer(t, otherIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	ids := identify{
		alice.Addr().String():          {User: "alice"},
		aliceElsewhere.Addr().String(): {User: "alice"},
		bob.Addr().String():            {User: "bob"},
		carol.Addr().String():          {User: "carol"},
	}
	h := startSBC(t, withUpstream("pbx", pbx, 1), withLayer("auth", ids),
		withConfig(func(c *b2bua.Config) { c.Caps = b2bua.Caps{PerUser: 2, PerSource: 3} }))

	ring(t, h, alice, pbx)
	ring(t, h, aliceElsewhere, pbx)
	expectCapped(t, h, aliceElsewhere, pbx, "user") // alice's third, from either address
	expectCapped(t, h, alice, pbx, "user")
	ring(t, h, bob, pbx)   // otherIP's second call
	ring(t, h, carol, pbx) // and third
	expectCapped(t, h, carol, pbx, "address")
	if s := h.B2B.CapStats(); s != (b2bua.CapStats{User: 2, Source: 1}) {
		t.Errorf("CapStats = %+v, want 2 refusals per user and 1 per address", s)
	}
}

// TestCapTrusted: a trusted peer is not counted per address; it has a cap
// of its own when one is set.
func TestCapTrusted(t *testing.T) {
	t.Parallel()
	for _, perTrusted := range []int{0, 2} {
		t.Run(fmt.Sprint("max_per_trusted ", perTrusted), func(t *testing.T) {
			t.Parallel()
			trunk := siptest.NewPeer(t, caller2IP+":0")
			pbx := siptest.NewPeer(t, pbxIP+":0")
			h := startSBC(t, withUpstream("pbx", pbx, 1), withLayer("auth", identify{trunk.Addr().String(): {Trusted: "carrier"}}),
				withConfig(func(c *b2bua.Config) { c.Caps = b2bua.Caps{PerUser: 1, PerSource: 1, PerTrusted: perTrusted} }))
			ring(t, h, trunk, pbx)
			ring(t, h, trunk, pbx)
			if perTrusted == 2 {
				expectCapped(t, h, trunk, pbx, "trusted peer")
				if s := h.B2B.CapStats(); s != (b2bua.CapStats{Trusted: 1}) {
					t.Errorf("CapStats = %+v", s)
				}
				return
			}
			ring(t, h, trunk, pbx)
			if n := h.B2B.CappedCalls(); n != 0 {
				t.Errorf("%d trusted calls counted without max_per_trusted", n)
			}
		})
	}
}

// TestCapInsideNotCounted: calls from the inside are never capped.
func TestCapInsideNotCounted(t *testing.T) {
	t.Parallel()
	pbx := siptest.NewPeer(t, pbxIP+":0")
	trunk := siptest.NewPeer(t, trunkIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1), withOutbound(trunk),
		withConfig(func(c *b2bua.Config) { c.Caps = b2bua.Caps{PerUser: 1, PerSource: 1, PerTrusted: 1} }))
	for range 3 {
		pbx.Invite(h.UDP, h.URI("+15551234"), nil, offerSDP(pbxIP))
		inv := trunk.ExpectRequest("INVITE", wait)
		trunk.Reply(inv, 180, "Ringing")
		pbx.ExpectResponse(180, wait)
	}
	if n, s := h.B2B.CappedCalls(), h.B2B.CapStats(); n != 0 || s != (b2bua.CapStats{}) {
		t.Errorf("inside calls counted: %d, %+v", n, s)
	}
}
