package b2bua_test

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc/b2bua"
	"github.com/sipwall/sipwall/sbc/siptest"
)

// TestFailover: an upstream that refuses or does not answer before any
// provisional response makes the call go to the next one.
func TestFailover(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// first is what the priority-1 upstream does with its INVITE.
		first func(pbx1 *siptest.Peer, inv *sip.Request)
		// minDelay is the least time the failover may take.
		minDelay time.Duration
	}{
		{name: "503", first: func(p *siptest.Peer, inv *sip.Request) {
			p.Reply(inv, 503, "Service Unavailable")
			p.ExpectRequest("ACK", wait)
		}},
		{name: "408", first: func(p *siptest.Peer, inv *sip.Request) {
			p.Reply(inv, 408, "Request Timeout")
			p.ExpectRequest("ACK", wait)
		}},
		{name: "silent until Timer B", first: func(*siptest.Peer, *sip.Request) {}, minDelay: 64 * testT1 * 9 / 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			caller := siptest.NewPeer(t, callerIP+":0")
			pbx1 := siptest.NewPeer(t, pbxIP+":0")
			pbx2 := siptest.NewPeer(t, pbx2IP+":0")
			// Listed second-first so priority, not order, decides.
			h := startSBC(t, withUpstream("pbx2", pbx2, 2), withUpstream("pbx1", pbx1, 1))

			a := caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
			start := time.Now()
			inv1 := pbx1.ExpectRequest("INVITE", wait)
			tt.first(pbx1, inv1)

			inv2 := pbx2.ExpectRequest("INVITE", 64*testT1+wait)
			if took := time.Since(start); took < tt.minDelay {
				t.Errorf("failover after %v, want at least %v", took, tt.minDelay)
			}
			if inv2.CallID().Value() == inv1.CallID().Value() || fromTag(inv2) == fromTag(inv1) {
				t.Errorf("the second attempt reuses the first's Call-ID or tag")
			}
			if string(inv2.Body()) != offerSDP(callerIP) {
				t.Errorf("second INVITE body %q", inv2.Body())
			}
			pbx2.ReplyBody(inv2, 200, "OK", offerSDP(pbx2IP))
			a200 := caller.ExpectResponse(200, wait)
			a.Learn(a200)
			a.Ack(nil, "")
			pbx2.ExpectRequest("ACK", wait)

			a.Send("BYE", nil, "")
			pbx2.Reply(pbx2.ExpectRequest("BYE", wait), 200, "OK")
			caller.ExpectResponse(200, wait)
			h.waitIdle(t)
			// Whatever reaches the first upstream now may only repeat its INVITE.
			pbx1.NoMessage(quiet)
			if n := h.B2B.Stats().Failovers.Load(); n != 1 {
				t.Errorf("Stats.Failovers = %d, want 1", n)
			}
		})
	}
}

// TestNoFailoverAfterProvisional: once an upstream rang, its failure is the
// call's answer.
func TestNoFailoverAfterProvisional(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx1 := siptest.NewPeer(t, pbxIP+":0")
	pbx2 := siptest.NewPeer(t, pbx2IP+":0")
	h := startSBC(t, withUpstream("pbx1", pbx1, 1), withUpstream("pbx2", pbx2, 2))

	a := caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
	inv := pbx1.ExpectRequest("INVITE", wait)
	pbx1.Reply(inv, 180, "Ringing")
	caller.ExpectResponse(180, wait)
	pbx1.Reply(inv, 503, "Service Unavailable", "Retry-After: 30")
	pbx1.ExpectRequest("ACK", wait)
	res := caller.ExpectResponse(503, wait)
	if header(res, "Retry-After") != "30" {
		t.Errorf("Retry-After %q, want the PBX's relayed", header(res, "Retry-After"))
	}
	a.AckFailure(res)
	pbx2.NoMessage(quiet)
	h.waitIdle(t)
}

// TestAllUpstreamsFail: when no upstream takes the call the caller gets 503.
func TestAllUpstreamsFail(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		upstreams int
	}{
		{name: "both refuse", upstreams: 2},
		{name: "none configured", upstreams: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			caller := siptest.NewPeer(t, callerIP+":0")
			pbx1 := siptest.NewPeer(t, pbxIP+":0")
			pbx2 := siptest.NewPeer(t, pbx2IP+":0")
			var opts []option
			if tt.upstreams > 0 {
				opts = append(opts, withUpstream("pbx1", pbx1, 1), withUpstream("pbx2", pbx2, 2))
			}
			h := startSBC(t, opts...)

			a := caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
			if tt.upstreams > 0 {
				inv1 := pbx1.ExpectRequest("INVITE", wait)
				pbx1.Reply(inv1, 503, "Service Unavailable")
				pbx1.ExpectRequest("ACK", wait)
				inv2 := pbx2.ExpectRequest("INVITE", wait)
				pbx2.Reply(inv2, 408, "Request Timeout")
				pbx2.ExpectRequest("ACK", wait)
			}
			res := caller.ExpectResponse(503, wait)
			if res.CallID().Value() != a.CallID || fromTag(res) != a.LocalTag || toTag(res) == "" {
				t.Errorf("503 not a response to the caller's INVITE: %s", res)
			}
			a.AckFailure(res)
			h.waitIdle(t)
			pbx1.NoMessage(quiet)
			pbx2.NoMessage(quiet)
		})
	}
}

// TestMaxDialogs: a call beyond the table's size is refused with 503 and
// never reaches the upstream.
func TestMaxDialogs(t *testing.T) {
	t.Parallel()
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1), withConfig(func(c *b2bua.Config) { c.MaxDialogs = 2 }))

	var callers []*siptest.Peer
	var dialogs []*siptest.Dialog
	var invs []*sip.Request
	for range 2 {
		p := siptest.NewPeer(t, callerIP+":0")
		callers = append(callers, p)
		dialogs = append(dialogs, p.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP)))
		inv := pbx.ExpectRequest("INVITE", wait)
		pbx.Reply(inv, 180, "Ringing")
		p.ExpectResponse(180, wait)
		invs = append(invs, inv)
	}
	if h.B2B.Active() != 2 {
		t.Fatalf("Active() = %d, want 2", h.B2B.Active())
	}
	third := siptest.NewPeer(t, caller2IP+":0")
	d3 := third.Invite(h.UDP, h.URI("bob"), nil, offerSDP(caller2IP))
	res := third.ExpectResponse(503, wait)
	if header(res, "Retry-After") == "" {
		t.Errorf("503 for a full table has no Retry-After")
	}
	d3.AckFailure(res)
	pbx.NoMessage(quiet)

	for i, inv := range invs {
		pbx.Reply(inv, 486, "Busy Here")
		pbx.ExpectRequest("ACK", wait)
		r := callers[i].ExpectResponse(486, wait)
		dialogs[i].AckFailure(r)
	}
	h.waitIdle(t)

	// Room again: a new call gets through.
	d4 := third.Invite(h.UDP, h.URI("bob"), nil, "")
	inv := pbx.ExpectRequest("INVITE", wait)
	pbx.Reply(inv, 486, "Busy Here")
	pbx.ExpectRequest("ACK", wait)
	d4.AckFailure(third.ExpectResponse(486, wait))
	h.waitIdle(t)
}

// TestInsideCalls: an INVITE from an upstream's address goes to the
// outbound trunk, or is refused with 404 when there is none.
func TestInsideCalls(t *testing.T) {
	t.Parallel()
	t.Run("to the outbound trunk", func(t *testing.T) {
		t.Parallel()
		pbx := siptest.NewPeer(t, pbxIP+":0")
		// Another port on the PBX's host: the inside is known by IP only.
		phone := siptest.NewPeer(t, pbxIP+":0")
		trunk := siptest.NewPeer(t, trunkIP+":0")
		h := startSBC(t, withUpstream("pbx", pbx, 1), withOutbound(trunk))

		a := phone.Invite(h.UDP, h.URI("+15551234"), nil, offerSDP(pbxIP))
		inv := trunk.ExpectRequest("INVITE", wait)
		if inv.Recipient.User != "+15551234" || inv.Recipient.Host != trunkIP || inv.Recipient.Port != int(trunk.Addr().Port()) {
			t.Errorf("trunk Request-URI %s", inv.Recipient.String())
		}
		if inv.CallID().Value() == a.CallID || fromTag(inv) == a.LocalTag {
			t.Errorf("trunk leg reuses the inside Call-ID or tag")
		}
		trunk.ReplyBody(inv, 200, "OK", offerSDP(trunkIP))
		a.Learn(phone.ExpectResponse(200, wait))
		a.Ack(nil, "")
		trunk.ExpectRequest("ACK", wait)
		// The trunk hangs up this time.
		trunk.DialogFrom(inv).Send("BYE", nil, "")
		bye := phone.ExpectRequest("BYE", wait)
		phone.Reply(bye, 200, "OK")
		trunk.ExpectResponse(200, wait)
		h.waitIdle(t)
		pbx.NoMessage(quiet)
	})
	t.Run("no outbound", func(t *testing.T) {
		t.Parallel()
		pbx := siptest.NewPeer(t, pbxIP+":0")
		h := startSBC(t, withUpstream("pbx", pbx, 1))
		a := pbx.Invite(h.UDP, h.URI("+15551234"), nil, offerSDP(pbxIP))
		res := pbx.ExpectResponse(404, wait)
		a.AckFailure(res)
		pbx.NoMessage(quiet)
		h.waitIdle(t)
	})
}

// TestOutOfDialogMessage: a MESSAGE is relayed in a new transaction with
// inside identifiers, and its answer comes back.
func TestOutOfDialogMessage(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1))

	d := caller.NewDialog(h.UDP, h.URI("bob"))
	var insideCallID string
	for i := range 2 {
		sent := d.Send("MESSAGE", []string{"Content-Type: text/plain"}, "hello "+string(rune('0'+i)))
		got := pbx.ExpectRequest("MESSAGE", wait)
		if got.CallID().Value() == d.CallID || fromTag(got) == d.LocalTag || fromTag(got) == "" {
			t.Errorf("inside MESSAGE reuses outside identifiers: %s", got)
		}
		if i == 0 {
			insideCallID = got.CallID().Value()
		} else if got.CallID().Value() != insideCallID {
			// One outside Call-ID maps to one inside Call-ID.
			t.Errorf("second MESSAGE Call-ID %q, want %q", got.CallID().Value(), insideCallID)
		}
		if string(got.Body()) != string(sent.Body()) || header(got, "Content-Type") != "text/plain" {
			t.Errorf("MESSAGE body %q type %q", got.Body(), header(got, "Content-Type"))
		}
		if got.Recipient.User != "bob" || got.Recipient.Port != int(pbx.Addr().Port()) {
			t.Errorf("inside Request-URI %s", got.Recipient.String())
		}
		pbx.Reply(got, 202, "Accepted")
		res := caller.ExpectResponse(202, wait)
		if res.CSeq().Value() != sent.CSeq().Value() || res.CallID().Value() != d.CallID || toTag(res) == "" {
			t.Errorf("202 does not answer the caller's MESSAGE: %s", res)
		}
	}
	if h.B2B.Active() != 0 {
		t.Errorf("an out-of-dialog MESSAGE left %d calls", h.B2B.Active())
	}
}

// TestOptions: OPTIONS to the SBC itself is answered locally; OPTIONS to a
// user is relayed.
func TestOptions(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1))

	// What a phone sends: the answer has room for the capabilities.
	d := caller.NewDialog(h.UDP, h.URI(""))
	d.Send("OPTIONS", []string{caller.Contact(), "Accept: application/sdp", "User-Agent: Example-Phone/1.0 (test build of an ordinary desk phone)"}, "")
	res := caller.ExpectResponse(200, wait)
	allow := header(res, "Allow")
	for _, m := range []string{"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"} {
		if !strings.Contains(allow, m) {
			t.Errorf("Allow %q lacks %s", allow, m)
		}
	}
	pbx.NoMessage(quiet)
	// A bare probe from an unauthenticated source over UDP gets an answer
	// no larger than itself: the capability headers are cut.
	probe := caller.NewDialog(h.UDP, h.URI(""))
	sent := probe.Send("OPTIONS", nil, "")
	res = caller.ExpectResponse(200, wait)
	if header(res, "Allow") != "" || len(res.String()) > len(sent.String()) {
		t.Errorf("bare OPTIONS (%d bytes) answered with %d bytes, Allow %q", len(sent.String()), len(res.String()), header(res, "Allow"))
	}

	d2 := caller.NewDialog(h.UDP, h.URI("bob"))
	d2.Send("OPTIONS", nil, "")
	got := pbx.ExpectRequest("OPTIONS", wait)
	pbx.Reply(got, 200, "OK", "Allow: INVITE, ACK, BYE")
	res = caller.ExpectResponse(200, wait)
	if header(res, "Allow") != "INVITE, ACK, BYE" {
		t.Errorf("relayed OPTIONS answer Allow %q", header(res, "Allow"))
	}
}

// TestRedirect: a 3xx from the inside is relayed to the caller by default,
// and followed (to the Contact, with its user) when follow_redirects is on.
func TestRedirect(t *testing.T) {
	t.Parallel()
	t.Run("relayed", func(t *testing.T) {
		t.Parallel()
		caller := siptest.NewPeer(t, callerIP+":0")
		pbx := siptest.NewPeer(t, pbxIP+":0")
		h := startSBC(t, withUpstream("pbx", pbx, 1))
		caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
		inv := pbx.ExpectRequest("INVITE", wait)
		pbx.Reply(inv, 302, "Moved Temporarily", "Contact: <sip:carol@"+pbx2IP+":5070>")
		pbx.ExpectRequest("ACK", wait)
		res := caller.ExpectResponse(302, wait)
		if res.Contact() == nil {
			t.Fatal("302 relayed without its Contact")
		}
		h.waitIdle(t)
	})
	t.Run("followed", func(t *testing.T) {
		t.Parallel()
		caller := siptest.NewPeer(t, callerIP+":0")
		pbx := siptest.NewPeer(t, pbxIP+":0")
		pbx2 := siptest.NewPeer(t, pbx2IP+":0")
		h := startSBC(t, withUpstream("pbx", pbx, 1), withConfig(func(c *b2bua.Config) { c.FollowRedirects = true }))
		a := caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
		inv := pbx.ExpectRequest("INVITE", wait)
		pbx.Reply(inv, 302, "Moved Temporarily", "Contact: <sip:carol@"+pbx2.Addr().String()+">")
		pbx.ExpectRequest("ACK", wait)
		inv2 := pbx2.ExpectRequest("INVITE", wait)
		if inv2.Recipient.User != "carol" {
			t.Fatalf("redirected INVITE to %s, want user carol", inv2.Recipient.String())
		}
		pbx2.ReplyBody(inv2, 200, "OK", offerSDP(pbx2IP))
		a.Learn(caller.ExpectResponse(200, wait))
		a.Ack(nil, "")
		pbx2.ExpectRequest("ACK", wait)
		a.Send("BYE", nil, "")
		pbx2.Reply(pbx2.ExpectRequest("BYE", wait), 200, "OK")
		caller.ExpectResponse(200, wait)
		h.waitIdle(t)
		if n := h.B2B.Stats().Redirects.Load(); n != 1 {
			t.Errorf("Stats.Redirects = %d, want 1", n)
		}
	})
	t.Run("loop bounded", func(t *testing.T) {
		t.Parallel()
		caller := siptest.NewPeer(t, callerIP+":0")
		pbx := siptest.NewPeer(t, pbxIP+":0")
		h := startSBC(t, withUpstream("pbx", pbx, 1), withConfig(func(c *b2bua.Config) { c.FollowRedirects = true }))
		caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
		// The PBX redirects to itself every time.
		for i := 0; i <= 3; i++ {
			inv := pbx.ExpectRequest("INVITE", wait)
			pbx.Reply(inv, 302, "Moved Temporarily", "Contact: <sip:bob@"+pbx.Addr().String()+">")
			pbx.ExpectRequest("ACK", wait)
		}
		caller.ExpectResponse(302, wait)
		pbx.NoMessage(quiet)
		h.waitIdle(t)
	})
}
