package b2bua_test

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc/b2bua"
	"github.com/sipwall/sipwall/sbc/siptest"
	"github.com/sipwall/sipwall/topology"
)

// withHiding gives the B2BUA a topology policy that knows the PBX's host
// name, and returns its leak report.
func withHiding(t *testing.T) (option, *topology.Report) {
	t.Helper()
	r := topology.NewReport(testLogger(), nil)
	p, err := topology.New(topology.Config{InternalNames: []string{"pbx.corp.local"}, Report: r}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return withConfig(func(c *b2bua.Config) { c.Topology = p }), r
}

// leaksIn fails the test for every inside word found in msg.
func leaksIn(t *testing.T, what string, msg sip.Message) {
	t.Helper()
	s := msg.String()
	for _, leak := range []string{"Asterisk", "asterisk", "pbx.corp.local"} {
		if strings.Contains(s, leak) {
			t.Errorf("%s holds %q:\n%s", what, leak, s)
		}
	}
}

// A PBX's own words in a final response: the caller gets the RFC phrase,
// the cause of the Reason header, no Warning.
func TestHidingFinalResponse(t *testing.T) {
	t.Parallel()
	hide, r := withHiding(t)
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1), hide)
	a := caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
	inv := pbx.ExpectRequest("INVITE", wait)
	pbx.Reply(inv, 486, "Busy Here (Asterisk PBX 18.2.1)",
		`Reason: SIP;cause=486;text="Asterisk PBX 18.2.1 on pbx.corp.local"`,
		`Warning: 399 pbx.corp.local "Asterisk"`)
	pbx.ExpectRequest("ACK", wait)
	res := caller.ExpectResponse(486, wait)
	a.AckFailure(res)
	if res.Reason != "Busy Here" {
		t.Errorf("reason phrase %q", res.Reason)
	}
	if got := header(res, "Reason"); got != "SIP;cause=486" {
		t.Errorf("Reason %q, want the cause only", got)
	}
	leaksIn(t, "the 486", res)
	if r.Count(topology.ItemReasonPhrase, topology.Rewritten) != 1 || r.Count("Reason", topology.Rewritten) != 1 {
		t.Errorf("leak report: reason-phrase %d, Reason %d", r.Count(topology.ItemReasonPhrase, topology.Rewritten), r.Count("Reason", topology.Rewritten))
	}
}

// An answered call, then the PBX's in-dialog requests: what reaches the
// caller names neither the PBX nor its product, and each transaction
// completes.
func TestHidingInDialog(t *testing.T) {
	t.Parallel()
	hide, _ := withHiding(t)
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1), hide)
	a := caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
	inv := pbx.ExpectRequest("INVITE", wait)
	answer := "v=0\r\no=asterisk 1 1 IN IP4 203.0.113.9\r\ns=Asterisk PBX 18.2.1\r\nc=IN IP4 203.0.113.9\r\nt=0 0\r\n" +
		"a=tool:Asterisk PBX 18.2.1\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
	pbx.ReplyBody(inv, 200, "OK (Asterisk)", answer, `P-Asserted-Identity: "Asterisk PBX" <sip:100@pbx.corp.local>`)
	b := pbx.DialogFrom(inv)
	ok := caller.ExpectResponse(200, wait)
	a.Learn(ok)
	a.Ack(nil, "")
	pbx.ExpectRequest("ACK", wait)
	leaksIn(t, "the 200", ok)
	if ok.Reason != "OK" || !strings.Contains(string(ok.Body()), "a=rtpmap:0 PCMU/8000") || strings.Contains(string(ok.Body()), "tool") {
		t.Errorf("200 toward the caller:\n%s", ok)
	}

	for _, tc := range []struct {
		method  string
		headers []string
		body    string
	}{
		{"REFER", []string{"Refer-To: <sip:2000@pbx.corp.local?X-Inside=pbx.corp.local>", `Referred-By: "Asterisk" <sip:100@pbx.corp.local>`}, ""},
		{"NOTIFY", []string{"Event: refer", "Subscription-State: active", "Content-Type: message/sipfrag"}, "SIP/2.0 180 Ringing (Asterisk)\r\nServer: Asterisk\r\n"},
		{"INFO", []string{"Subject: via Asterisk", "Content-Type: application/dtmf-relay"}, "Signal=1\r\nDuration=160\r\n"},
		{"OPTIONS", []string{`Reason: Q.850;cause=16;text="pbx.corp.local"`}, ""},
	} {
		b.Send(tc.method, tc.headers, tc.body)
		got := caller.ExpectRequest(tc.method, wait)
		leaksIn(t, tc.method, got)
		caller.Reply(got, 200, "OK")
		pbx.ExpectResponse(200, wait)
	}
	// A re-INVITE from the PBX with a leaky offer.
	b.Send("INVITE", nil, answer)
	re := caller.ExpectRequest("INVITE", wait)
	leaksIn(t, "the re-INVITE", re)
	caller.ReplyBody(re, 200, "OK", offerSDP(callerIP))
	pbx.ExpectResponse(200, wait)
	b.Ack(nil, "")
	caller.ExpectRequest("ACK", wait)
}

// A call the PBX places toward the trunk: its caller name crosses, a
// product in the display name or the user does not.
func TestHidingDisplayNamesFromInside(t *testing.T) {
	t.Parallel()
	hide, r := withHiding(t)
	pbx := siptest.NewPeer(t, pbxIP+":0")
	trunk := siptest.NewPeer(t, trunkIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1), withOutbound(trunk), hide)
	for _, tc := range []struct{ from, want string }{
		{`"Reception" <sip:100@pbx.corp.local>`, `"Reception" <sip:100@`},
		{`"Asterisk PBX" <sip:asterisk@pbx.corp.local>`, `<sip:anonymous@`},
	} {
		d := pbx.Invite(h.UDP, "sip:15551230000@"+h.UDP.String(), []string{"From: " + tc.from + ";tag=f" + strings.Repeat("1", 8)}, offerSDP("203.0.113.9"))
		inv := trunk.ExpectRequest("INVITE", wait)
		if from := inv.From().Value(); !strings.HasPrefix(from, tc.want) {
			t.Errorf("From toward the trunk %q, want it to start with %q", from, tc.want)
		}
		leaksIn(t, "the INVITE to the trunk", inv)
		trunk.Reply(inv, 486, "Busy Here")
		trunk.ExpectRequest("ACK", wait)
		d.AckFailure(pbx.ExpectResponse(486, wait))
	}
	if r.Count(topology.ItemDisplayName, topology.Removed) != 1 || r.Count(topology.ItemURIUser, topology.Rewritten) != 1 {
		t.Errorf("leak report: display names %d, users %d", r.Count(topology.ItemDisplayName, topology.Removed), r.Count(topology.ItemURIUser, topology.Rewritten))
	}
}
