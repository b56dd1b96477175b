package b2bua_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/sipwall/sipwall/sbc/siptest"
)

// Attended transfer: a Replaces (RFC 3891) crossing the SBC names the
// same dialog on the other leg of its call (replaces.go).

// replacesOf is the decoded Replaces value in a Refer-To header.
func replacesOf(t *testing.T, referTo string) string {
	t.Helper()
	_, hs, ok := strings.Cut(strings.Trim(referTo, "<>"), "?")
	if !ok {
		t.Fatalf("Refer-To %q has no URI headers", referTo)
	}
	for _, h := range strings.Split(hs, "&") {
		name, v, _ := strings.Cut(h, "=")
		if strings.EqualFold(name, "Replaces") {
			dec, err := url.PathUnescape(v)
			if err != nil {
				t.Fatalf("Replaces in %q: %v", referTo, err)
			}
			return dec
		}
	}
	t.Fatalf("Refer-To %q has no Replaces", referTo)
	return ""
}

// referTo is a Refer-To naming dialog rp (unescaped) for a target at host.
func referTo(user, host, rp string) string {
	return "<sip:" + user + "@" + host + "?Replaces=" + url.QueryEscape(rp) + ">"
}

// TestAttendedTransferFromInside: the PBX, transferor, sends the caller
// (transferee) a REFER whose Replaces names the PBX's dialog of another
// call (the target's); the caller must see that call's outside dialog as
// its phone knows it, and the caller's INVITE with that Replaces must
// reach the PBX naming exactly what the PBX put in its REFER.
func TestAttendedTransferFromInside(t *testing.T) {
	t.Parallel()
	transferee := siptest.NewPeer(t, callerIP+":0")
	target := siptest.NewPeer(t, caller2IP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1))
	c1 := establish(t, h, transferee, pbx)
	c2 := establish(t, h, target, pbx)

	// The PBX names its dialog with the SBC for call 2, the SBC standing
	// where the target is: to-tag the SBC's, from-tag the PBX's.
	inside := c2.B.CallID + ";to-tag=" + c2.B.RemoteTag + ";from-tag=" + c2.B.LocalTag
	c1.B.Send("REFER", []string{"Refer-To: " + referTo("carol", pbxIP, inside), "Referred-By: <sip:pbx@" + pbxIP + ">"}, "")
	refer := transferee.ExpectRequest("REFER", wait)
	checkOnALeg(t, c1, refer)
	rt := header(refer, "Refer-To")
	// The target's view of its call: to-tag the target's own tag.
	want := c2.A.CallID + ";to-tag=" + c2.A.LocalTag + ";from-tag=" + c2.A.RemoteTag
	if got := replacesOf(t, rt); got != want {
		t.Errorf("Replaces toward the transferee %q, want the target's dialog %q", got, want)
	}
	if !strings.Contains(rt, "%3Bto-tag%3D") || strings.Contains(rt, ";to-tag") {
		t.Errorf("Refer-To %q: Replaces not percent-encoded", rt)
	}
	for _, secret := range []string{c2.B.CallID, url.QueryEscape(c2.B.CallID), c2.B.LocalTag} {
		if strings.Contains(refer.String(), secret) {
			t.Errorf("inside identifier %q leaked into the REFER toward the outside:\n%s", secret, refer)
		}
	}
	transferee.Reply(refer, 202, "Accepted")
	pbx.ExpectResponse(202, wait)

	// The transferee calls with the Replaces it was given.
	x := transferee.Invite(h.UDP, h.URI("carol"), []string{"Replaces: " + replacesOf(t, rt), "Require: replaces"}, offerSDP(callerIP))
	xInv := pbx.ExpectRequest("INVITE", wait)
	if got := header(xInv, "Replaces"); got != inside {
		t.Errorf("Replaces toward the PBX %q, want what its REFER named, %q", got, inside)
	}
	if got := header(xInv, "Require"); got != "replaces" {
		t.Errorf("Require %q, want replaces", got)
	}
	pbx.ReplyBody(xInv, 200, "OK", offerSDP(pbxIP))
	x.Learn(transferee.ExpectResponse(200, wait))
	x.Ack(nil, "")
	pbx.ExpectRequest("ACK", wait)
	xc := &call{A: x, B: pbx.DialogFrom(xInv), caller: transferee, pbx: pbx}
	for _, c := range []*call{c1, c2, xc} {
		c.hangup(t)
	}
	h.waitIdle(t)
}

// TestAttendedTransferFromOutside: a phone (transferor) with two calls
// through the SBC refers the first to the second; the PBX must see its
// own dialog of the second call, named as the target sees it (to-tag the
// PBX's), and an INVITE from the inside with that Replaces must reach the
// phone's side naming the phone's dialog again.
func TestAttendedTransferFromOutside(t *testing.T) {
	t.Parallel()
	phone := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	trunk := siptest.NewPeer(t, trunkIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1), withOutbound(trunk))
	c1 := establish(t, h, phone, pbx)
	c2 := establish(t, h, phone, pbx)

	// The phone names its second call as the target would: to-tag the
	// SBC's (the target's stand-in), from-tag its own; from-tag first.
	// (The SIP stack keeps only the URI of a Refer-To: display name and
	// header parameters do not cross.)
	outside := c2.A.CallID + ";from-tag=" + c2.A.LocalTag + ";to-tag=" + c2.A.RemoteTag
	c1.A.Send("REFER", []string{"Refer-To: \"Carol <x>\" " + referTo("carol", h.UDP.String(), outside) + ";method=INVITE"}, "")
	refer := pbx.ExpectRequest("REFER", wait)
	checkOnBLeg(t, c1, refer)
	rt := header(refer, "Refer-To")
	want := c2.B.CallID + ";from-tag=" + c2.B.RemoteTag + ";to-tag=" + c2.B.LocalTag
	if got := replacesOf(t, rt); got != want {
		t.Errorf("Replaces toward the PBX %q, want its dialog as the target sees it %q", got, want)
	}
	pbx.Reply(refer, 202, "Accepted")
	phone.ExpectResponse(202, wait)

	// Inverse: the PBX side sends an INVITE out with what it was given.
	x := pbx.Invite(h.UDP, h.URI("carol"), []string{"Replaces: " + want}, offerSDP(pbxIP))
	xInv := trunk.ExpectRequest("INVITE", wait)
	if got := header(xInv, "Replaces"); got != outside {
		t.Errorf("Replaces toward the outside %q, want the phone's own %q", got, outside)
	}
	trunk.Reply(xInv, 486, "Busy Here")
	x.AckFailure(pbx.ExpectResponse(486, wait))
	trunk.ExpectRequest("ACK", wait)
	c1.hangup(t)
	c2.hangup(t)
	h.waitIdle(t)
}

// TestReplacesEarlyDialog: a call pickup names a ringing call's early
// dialog with early-only; the PBX gets its own early dialog of that call,
// flag kept.
func TestReplacesEarlyDialog(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	picker := siptest.NewPeer(t, caller2IP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1))

	a := caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
	bInv := pbx.ExpectRequest("INVITE", wait)
	pbx.Reply(bInv, 180, "Ringing")
	a180 := caller.ExpectResponse(180, wait)

	// The callee's view of the ringing call (the SBC stands there).
	early := a.CallID + ";to-tag=" + toTag(a180) + ";from-tag=" + a.LocalTag + ";early-only"
	p := picker.Invite(h.UDP, h.URI("bob"), []string{"Replaces: " + early}, offerSDP(caller2IP))
	pInv := pbx.ExpectRequest("INVITE", wait)
	want := bInv.CallID().Value() + ";to-tag=" + pbx.ToTag(bInv) + ";from-tag=" + fromTag(bInv) + ";early-only"
	if got := header(pInv, "Replaces"); got != want {
		t.Errorf("Replaces toward the PBX %q, want its early dialog %q", got, want)
	}
	pbx.Reply(pInv, 481, "Call/Transaction Does Not Exist")
	p.AckFailure(picker.ExpectResponse(481, wait))
	pbx.ExpectRequest("ACK", wait)
	pbx.Reply(bInv, 480, "Temporarily Unavailable")
	a.AckFailure(caller.ExpectResponse(480, wait))
	pbx.ExpectRequest("ACK", wait)
	h.waitIdle(t)
}

// TestReplacesUnknown: a dialog the SBC does not have is passed inward as
// it came, for the far end to reject, and never sent outward (an inside
// identifier must not leak): 481 for an INVITE, 403 for a REFER.
func TestReplacesUnknown(t *testing.T) {
	t.Parallel()
	const unknown = "nosuchcall@10.0.0.9;to-tag=t1;from-tag=f1"
	t.Run("INVITE inward", func(t *testing.T) {
		t.Parallel()
		caller := siptest.NewPeer(t, callerIP+":0")
		pbx := siptest.NewPeer(t, pbxIP+":0")
		h := startSBC(t, withUpstream("pbx", pbx, 1))
		a := caller.Invite(h.UDP, h.URI("bob"), []string{"Replaces: " + unknown}, offerSDP(callerIP))
		inv := pbx.ExpectRequest("INVITE", wait)
		if got := header(inv, "Replaces"); got != unknown {
			t.Errorf("Replaces %q, want it as it came %q", got, unknown)
		}
		pbx.Reply(inv, 481, "Call/Transaction Does Not Exist")
		a.AckFailure(caller.ExpectResponse(481, wait))
		pbx.ExpectRequest("ACK", wait)
		h.waitIdle(t)
	})
	t.Run("INVITE outward", func(t *testing.T) {
		t.Parallel()
		pbx := siptest.NewPeer(t, pbxIP+":0")
		trunk := siptest.NewPeer(t, trunkIP+":0")
		h := startSBC(t, withUpstream("pbx", pbx, 1), withOutbound(trunk))
		a := pbx.Invite(h.UDP, h.URI("+15551234"), []string{"Replaces: " + unknown}, offerSDP(pbxIP))
		a.AckFailure(pbx.ExpectResponse(481, wait))
		trunk.NoMessage(quiet)
		h.waitIdle(t)
	})
	t.Run("REFER outward", func(t *testing.T) {
		t.Parallel()
		caller := siptest.NewPeer(t, callerIP+":0")
		pbx := siptest.NewPeer(t, pbxIP+":0")
		h := startSBC(t, withUpstream("pbx", pbx, 1))
		c := establish(t, h, caller, pbx)
		c.B.Send("REFER", []string{"Refer-To: " + referTo("carol", pbxIP, unknown)}, "")
		pbx.ExpectResponse(403, wait)
		caller.NoMessage(quiet)
		c.hangup(t)
		h.waitIdle(t)
	})
	t.Run("REFER inward", func(t *testing.T) {
		t.Parallel()
		caller := siptest.NewPeer(t, callerIP+":0")
		pbx := siptest.NewPeer(t, pbxIP+":0")
		h := startSBC(t, withUpstream("pbx", pbx, 1))
		c := establish(t, h, caller, pbx)
		c.A.Send("REFER", []string{"Refer-To: " + referTo("carol", h.UDP.String(), unknown)}, "")
		refer := pbx.ExpectRequest("REFER", wait)
		if got := replacesOf(t, header(refer, "Refer-To")); got != unknown {
			t.Errorf("Replaces %q, want it as it came %q", got, unknown)
		}
		pbx.Reply(refer, 202, "Accepted")
		caller.ExpectResponse(202, wait)
		c.hangup(t)
		h.waitIdle(t)
	})
}

// TestReplacesMalformed: a Replaces that cannot be read is a 400, and
// nothing is relayed.
func TestReplacesMalformed(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1))
	for _, hs := range [][]string{
		{"Replaces: abc;to-tag=x"},                                               // no from-tag
		{"Replaces: abc;to-tag=x;from-tag=y;to-tag=z"},                           // two to-tags
		{"Replaces: abc;to-tag=x;from-tag=y", "Replaces: d;to-tag=x;from-tag=y"}, // two headers
	} {
		a := caller.Invite(h.UDP, h.URI("bob"), hs, offerSDP(callerIP))
		a.AckFailure(caller.ExpectResponse(400, wait))
	}
	c := establish(t, h, caller, pbx)
	c.A.Send("REFER", []string{"Refer-To: <sip:carol@" + pbxIP + "?Replaces=abc%3Bto-tag%3Dx%3Bfrom-tag%3Dy%2>"}, "")
	caller.ExpectResponse(400, wait)
	pbx.NoMessage(quiet)
	c.hangup(t)
	h.waitIdle(t)
}
