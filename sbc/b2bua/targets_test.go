package b2bua_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/dialplan"
	"github.com/sipwall/sipwall/policy"
	"github.com/sipwall/sipwall/rules"
	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/b2bua"
	"github.com/sipwall/sipwall/sbc/siptest"
)

// The destination check on every route a caller can make the PBX or a
// carrier dial a number by. Destinations named inside a call (a REFER's
// Refer-To, a 3xx Contact the B2BUA follows) go to Config.Targets, here
// the dial plan and the built-in fraud rules as cmd/sipwall wires them;
// those the chain judges (a REFER out of dialog, an INVITE with Replaces)
// go through the policy layer reading the same dial plan.

var planGB = dialplan.MustNew(dialplan.Config{Country: "GB"})

// premiumForms are written forms of the premium number +449091234567 (or
// of no number at all), as a URI user part: every one must be refused.
var premiumForms = []string{
	"+449091234567",
	"09091234567",
	"%2B44%20(0)909%20123%204567",
	"0044%200909%20123%204567",
	"*6709091234567",
	"%2A67%2B449091234567",
	"%2331%2309091234567",
	"14109091234567",
	"09091234567;phone-context=+44",
	"%EF%BC%90%EF%BC%99%EF%BC%90%EF%BC%99%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96%EF%BC%97", // full-width
	"%252B449091234567", // encoded twice
	"+449091234567;rn=+442079460000",
}

// allowedForms are an extension, a name and national and international
// numbers in several forms: every one must connect.
var allowedForms = []string{
	"1000",
	"*671000",
	"carol",
	"02079460000",
	"%2B44%20(0)20%207946%200000",
	"*6702079460000",
	"+33142000000",
	"0033%201%2042%2000%2000%2000",
}

// ruleTargets is Config.Targets on the built-in rules, reading with the
// GB plan; it records what it was asked. Its clock moves a minute a
// check, so the tables stay below the calls-per-minute limit.
type ruleTargets struct {
	e   *rules.Engine
	mu  sync.Mutex
	got []b2bua.TargetRequest
	now time.Time
}

func newRuleTargets(t *testing.T) *ruleTargets {
	rt := &ruleTargets{now: time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)}
	clock := func() time.Time {
		rt.mu.Lock()
		defer rt.mu.Unlock()
		rt.now = rt.now.Add(time.Minute)
		return rt.now
	}
	e, err := rules.New(rules.Options{Rules: rules.BuiltinRules(), Plan: planGB, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	rt.e = e
	return rt
}

func (rt *ruleTargets) CheckTarget(_ context.Context, t b2bua.TargetRequest) b2bua.TargetVerdict {
	rt.mu.Lock()
	rt.got = append(rt.got, t)
	rt.mu.Unlock()
	n := planGB.ParseURI(t.URI)
	c := rules.Call{Source: t.Peer.Addr(), Destination: n.Raw, Number: &n, Route: t.Route}
	if t.Identity != nil {
		c.User, c.Trusted = t.Identity.User, t.Identity.Trusted
	}
	v := rt.e.Check(c)
	if v.Allow {
		return b2bua.TargetVerdict{Allow: true}
	}
	return b2bua.TargetVerdict{Status: v.Status, Reason: v.Reason, Why: t.Route + " to " + n.String() + ": rule " + v.Rule}
}

func (rt *ruleTargets) last() b2bua.TargetRequest {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.got[len(rt.got)-1]
}

// asAlice is a stand-in for the auth layer: every request from outside is
// alice's.
func asAlice() option {
	return withLayer("auth", sbc.HandlerFunc{N: "auth", F: func(_ context.Context, _ sbc.ResponseWriter, r *sbc.Request) (sbc.Verdict, error) {
		if r.Side == sbc.External {
			r.Identity = &sbc.Identity{User: "alice", Realm: "sipwall"}
		}
		return sbc.Continue, nil
	}})
}

// A REFER from the caller inside an allowed call: a premium or unreadable
// Refer-To never reaches the PBX, in any written form; extensions, names
// and ordinary numbers are relayed. The check is made with the caller's
// identity.
func TestReferTargetChecked(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	rt := newRuleTargets(t)
	h := startSBC(t, withUpstream("pbx", pbx, 1), asAlice(), withConfig(func(c *b2bua.Config) { c.Targets = rt }))
	c := establish(t, h, caller, pbx)
	for _, form := range premiumForms {
		c.A.Send("REFER", []string{"Refer-To: <sip:" + form + "@" + h.UDP.String() + ">"}, "")
		if res := caller.ExpectResponse(403, wait); res == nil {
			t.Fatalf("Refer-To %s: no 403", form)
		}
		pbx.NoMessage(quiet)
	}
	if got := rt.last(); got.Route != b2bua.RouteRefer || got.Identity == nil || got.Identity.User != "alice" || got.Side != sbc.External {
		t.Errorf("checked as %+v, want a refer by alice from outside", got)
	}
	for _, form := range append(allowedForms, "+44-20-7946-0000") {
		c.A.Send("REFER", []string{"Refer-To: <sip:" + form + "@" + h.UDP.String() + ">"}, "")
		refer := pbx.ExpectRequest("REFER", wait)
		pbx.Reply(refer, 202, "Accepted")
		caller.ExpectResponse(202, wait)
	}
	// A tel: Refer-To is read the same.
	c.A.Send("REFER", []string{"Refer-To: <tel:+44-909-123-4567>"}, "")
	caller.ExpectResponse(403, wait)
	pbx.NoMessage(quiet)
	// RFC 3515: exactly one Refer-To.
	c.A.Send("REFER", []string{"Refer-To: <sip:1000@x>", "Refer-To: <sip:1001@x>"}, "")
	caller.ExpectResponse(400, wait)
	pbx.NoMessage(quiet)
	c.hangup(t)
	h.waitIdle(t)
}

// The outside party of a call the inside placed (the PBX calling out
// through the trunk) has no identity of ours, and its REFER is judged
// all the same; a REFER from the inside is not judged.
func TestReferFromCalleeOfInsideCall(t *testing.T) {
	t.Parallel()
	pbx := siptest.NewPeer(t, pbxIP+":0")
	trunk := siptest.NewPeer(t, trunkIP+":0")
	rt := newRuleTargets(t)
	h := startSBC(t, withUpstream("pbx", pbx, 1), withOutbound(trunk), withConfig(func(c *b2bua.Config) { c.Targets = rt }))
	a := pbx.Invite(h.UDP, h.URI("+442079460000"), nil, offerSDP(pbxIP))
	inv := trunk.ExpectRequest("INVITE", wait)
	trunk.ReplyBody(inv, 200, "OK", offerSDP(trunkIP))
	a.Learn(pbx.ExpectResponse(200, wait))
	a.Ack(nil, "")
	trunk.ExpectRequest("ACK", wait)
	b := trunk.DialogFrom(inv)

	b.Send("REFER", []string{"Refer-To: <sip:*6709091234567@" + h.UDP.String() + ">"}, "")
	trunk.ExpectResponse(403, wait)
	pbx.NoMessage(quiet)
	if got := rt.last(); got.Identity != nil || got.Side != sbc.External {
		t.Errorf("checked as %+v, want no identity, from outside", got)
	}
	asked := len(rt.got)
	a.Send("REFER", []string{"Refer-To: <sip:09091234567@" + trunkIP + ">"}, "")
	refer := trunk.ExpectRequest("REFER", wait)
	trunk.Reply(refer, 202, "Accepted")
	pbx.ExpectResponse(202, wait)
	if len(rt.got) != asked {
		t.Error("a REFER from the inside was judged")
	}
	a.Send("BYE", nil, "")
	trunk.Reply(trunk.ExpectRequest("BYE", wait), 200, "OK")
	pbx.ExpectResponse(200, wait)
	h.waitIdle(t)
}

// A 3xx the B2BUA follows: a Contact naming a premium or unreadable
// destination is not followed and the caller gets 403; an allowed one is
// followed with its user.
func TestRedirectTargetChecked(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	pbx2 := siptest.NewPeer(t, pbx2IP+":0")
	rt := newRuleTargets(t)
	h := startSBC(t, withUpstream("pbx", pbx, 1), asAlice(), withConfig(func(c *b2bua.Config) { c.FollowRedirects = true; c.Targets = rt }))
	redirect := func(form string) {
		t.Helper()
		caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
		inv := pbx.ExpectRequest("INVITE", wait)
		pbx.Reply(inv, 302, "Moved Temporarily", "Contact: <sip:"+form+"@"+pbx2.Addr().String()+">")
		pbx.ExpectRequest("ACK", wait)
	}
	for _, form := range premiumForms {
		redirect(form)
		res := caller.ExpectResponse(403, wait)
		caller.SendMsg(h.UDP, "ACK "+h.URI("bob")+" SIP/2.0", ackFor(res), "")
		pbx2.NoMessage(quiet)
	}
	if got := rt.last(); got.Route != b2bua.RouteRedirect || got.Identity == nil || got.Identity.User != "alice" || got.Side != sbc.Internal || got.Peer != pbx.Addr() {
		t.Errorf("checked as %+v, want a redirect by the PBX for alice", got)
	}
	for _, form := range allowedForms {
		redirect(form)
		inv := pbx2.ExpectRequest("INVITE", wait)
		if inv.Recipient.User != form {
			t.Errorf("redirected to %q, want %q", inv.Recipient.User, form)
		}
		pbx2.Reply(inv, 486, "Busy Here")
		pbx2.ExpectRequest("ACK", wait)
		res := caller.ExpectResponse(486, wait)
		caller.SendMsg(h.UDP, "ACK "+h.URI("bob")+" SIP/2.0", ackFor(res), "")
	}
	h.waitIdle(t)
	if n := h.B2B.Stats().Redirects.Load(); n != int64(len(allowedForms)) {
		t.Errorf("Stats.Redirects = %d, want %d", n, len(allowedForms))
	}
}

// ackFor are the headers of the ACK for a final non-2xx response.
func ackFor(res *sip.Response) []string {
	return []string{
		res.Via().String(),
		"Max-Forwards: 70",
		res.From().String(),
		res.To().String(),
		res.CallID().String(),
		"CSeq: " + strings.Fields(res.CSeq().Value())[0] + " ACK",
	}
}

// targetPolicy refuses what the built-in rules refuse, for the routes the
// chain judges.
const targetPolicy = `package sipwall

default decision := {"allow": true, "rule": "ok"}

decision := {"allow": false, "status": 403, "rule": "premium"} if {
	startswith(input.destination.e164, "+44909")
}

decision := {"allow": false, "status": 403, "rule": "unreadable"} if {
	input.destination.class == "invalid"
}
`

func policyLayer(t *testing.T) option {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte(targetPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := policy.New(policy.Options{Dir: dir, Plan: planGB})
	if err != nil {
		t.Fatal(err)
	}
	return withLayer("policy", e.Layer())
}

// A REFER outside any dialog: the policy judges its Refer-To (403), and
// what it lets through the B2BUA answers 481 — never the PBX.
func TestReferOutOfDialog(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1), policyLayer(t))
	for _, tc := range []struct {
		forms  []string
		status int
	}{{premiumForms, 403}, {allowedForms, 481}} {
		for _, form := range tc.forms {
			d := caller.NewDialog(h.UDP, h.URI("bob"))
			d.Send("REFER", []string{"Refer-To: <sip:" + form + "@" + h.UDP.String() + ">"}, "")
			caller.ExpectResponse(tc.status, wait)
		}
	}
	pbx.NoMessage(quiet)
}

// An INVITE with Replaces (the transferee's, or a forged one): its
// Request-URI is judged like any new call's.
func TestReplacesInviteChecked(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1), policyLayer(t))
	rp := "unknown-call@" + callerIP + ";to-tag=a1;from-tag=b2"
	hdrs := []string{"Replaces: " + rp, "Require: replaces", "Referred-By: <sip:alice@" + callerIP + ">"}
	for _, form := range premiumForms {
		caller.Invite(h.UDP, h.URI(form), hdrs, offerSDP(callerIP))
		res := caller.ExpectResponse(403, wait)
		caller.SendMsg(h.UDP, "ACK "+h.URI(form)+" SIP/2.0", ackFor(res), "")
	}
	pbx.NoMessage(quiet)
	for _, form := range allowedForms {
		caller.Invite(h.UDP, h.URI(form), hdrs, offerSDP(callerIP))
		inv := pbx.ExpectRequest("INVITE", wait)
		if got, want := inv.Recipient.User, form; got != want {
			t.Errorf("PBX got user %q, want %q", got, want)
		}
		pbx.Reply(inv, 481, "Call/Transaction Does Not Exist")
		pbx.ExpectRequest("ACK", wait)
		res := caller.ExpectResponse(481, wait)
		caller.SendMsg(h.UDP, "ACK "+h.URI(form)+" SIP/2.0", ackFor(res), "")
	}
	h.waitIdle(t)
}

// A tel: Request-URI reaches the PBX with its number as the user part
// (user=phone), never a Request-URI without one.
func TestTelRequestURICarried(t *testing.T) {
	t.Parallel()
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1))
	for _, tc := range []struct{ tel, user string }{
		{"tel:+44-20-7946-0000", "+44-20-7946-0000"},
		{"tel:7946-0000;phone-context=+44-20", "7946-0000;phone-context=+44-20"},
		{"tel:%2B442079460000", "%2B442079460000"},
	} {
		a := caller.Invite(h.UDP, tc.tel, nil, offerSDP(callerIP))
		inv := pbx.ExpectRequest("INVITE", wait)
		if inv.Recipient.Scheme != "sip" || inv.Recipient.User != tc.user || inv.Recipient.UriParams.GetOr("user", "") != "phone" {
			t.Errorf("%s reached the PBX as %s, want user %q and user=phone", tc.tel, inv.Recipient.String(), tc.user)
		}
		calls := h.B2B.Calls()
		if len(calls) != 1 || calls[0].To != strings.TrimPrefix(tc.tel, "tel:") {
			t.Errorf("call record %+v, want the tel: number as destination", calls)
		}
		pbx.Reply(inv, 486, "Busy Here")
		pbx.ExpectRequest("ACK", wait)
		a.AckFailure(caller.ExpectResponse(486, wait))
		h.waitIdle(t)
	}
	// A '#' (CLIR) stays escaped in the SIP user part and reads the same.
	a := caller.Invite(h.UDP, "tel:%2331%23+442079460000;phone-context=example.com", nil, offerSDP(callerIP))
	inv := pbx.ExpectRequest("INVITE", wait)
	if u, _ := url.PathUnescape(inv.Recipient.User); u != "#31#+442079460000;phone-context=example.com" || strings.Contains(inv.Recipient.User, "#") {
		t.Errorf("tel: with # reached the PBX as user %q", inv.Recipient.User)
	}
	if n := planGB.ParseURI(&inv.Recipient); n.E164 != "+442079460000" {
		t.Errorf("the inside user reads as %+v", n)
	}
	pbx.Reply(inv, 486, "Busy Here")
	pbx.ExpectRequest("ACK", wait)
	a.AckFailure(caller.ExpectResponse(486, wait))
	h.waitIdle(t)
}
