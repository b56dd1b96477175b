package main

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/dialplan"
	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/auth"
	"github.com/sipwall/sipwall/sbc/ban"
	"github.com/sipwall/sipwall/sbc/decision"
)

// chainRequest parses a request as the listeners would and wraps it.
func chainRequest(t *testing.T, method, toTag string) *sbc.Request {
	t.Helper()
	to := "To: <sip:+4420123@sbc.example>"
	if toTag != "" {
		to += ";tag=" + toTag
	}
	raw := method + " sip:+4420123@sbc.example SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.5:5060;branch=z9hG4bK-1\r\n" +
		"From: <sip:bob@sbc.example>;tag=a1\r\n" + to + "\r\n" +
		"Call-ID: c1@192.0.2.5\r\nCSeq: 1 " + method + "\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return &sbc.Request{Request: msg.(*sip.Request), Peer: netip.MustParseAddrPort("192.0.2.5:5060"), Transport: "udp"}
}

// What the chain's verdicts put in the decision log, and what they leave
// out (challenges, in-dialog traffic, ACKs).
func TestChainDecisions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
		toTag  string
		set    func(r *sbc.Request)
		layer  string
		v      sbc.Verdict
		status int
		want   string // "" for nothing recorded; else layer|verdict|why|user
	}{
		{"plain challenge", "INVITE", "", nil, "auth", sbc.Rejected, 407, ""},
		{"bad password", "INVITE", "", func(r *sbc.Request) { r.Why, r.Claimed = "bad-password", "alice" }, "auth", sbc.Rejected, 407,
			"auth|rejected|bad-password|alice"},
		{"policy", "INVITE", "", func(r *sbc.Request) {
			r.Why, r.Identity = "rule premium", &sbc.Identity{User: "carol"}
		}, "policy", sbc.Rejected, 403, "policy|rejected|rule premium|carol"},
		{"no registration", "INVITE", "", nil, "registrar", sbc.Rejected, 480, "registrar|rejected|Temporarily Unavailable|bob"},
		{"trunk call", "INVITE", "", func(r *sbc.Request) { r.Identity = &sbc.Identity{Trusted: "carrier"} }, "b2bua", sbc.Forwarded, 200,
			"b2bua|forwarded||trusted:carrier"},
		{"shadow", "INVITE", "", func(r *sbc.Request) { r.Why = "would deny (shadow): rule x" }, "b2bua", sbc.Forwarded, 200,
			"b2bua|forwarded|would deny (shadow): rule x|bob"},
		{"register", "REGISTER", "", nil, "registrar", sbc.Forwarded, 200, "registrar|forwarded||bob"},
		{"in-dialog BYE", "BYE", "x9", nil, "b2bua", sbc.Forwarded, 200, ""},
		{"stray BYE", "BYE", "x9", nil, "b2bua", sbc.Rejected, 481, "b2bua|rejected|Call/Transaction Does Not Exist|bob"},
		{"re-INVITE", "INVITE", "x9", nil, "b2bua", sbc.Forwarded, 200, ""},
		{"keepalive", "OPTIONS", "", nil, "local", sbc.Answered, 200, ""},
		{"ACK", "ACK", "x9", nil, "b2bua", sbc.Dropped, 0, ""},
		{"no layer", "PUBLISH", "", func(r *sbc.Request) { r.Why = "method not served" }, "", sbc.Rejected, 501, "chain|rejected|method not served|bob"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := decision.New(10)
			r := chainRequest(t, tc.method, tc.toTag)
			if tc.set != nil {
				tc.set(r)
			}
			chainDecisions(l, dialplan.MustNew(dialplan.Config{}))(r, tc.layer, tc.v, tc.status)
			got := l.Search(decision.Query{})
			if tc.want == "" {
				if len(got) != 0 {
					t.Fatalf("recorded %+v, want nothing", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("recorded %d entries, want 1", len(got))
			}
			e := got[0]
			if s := strings.Join([]string{e.Layer, e.Verdict, e.Why, e.User}, "|"); s != tc.want {
				t.Fatalf("recorded %q, want %q", s, tc.want)
			}
			if e.Source != netip.MustParseAddr("192.0.2.5") || e.To != "+4420123" || e.Method != tc.method || e.Status != tc.status {
				t.Fatalf("entry %+v", e)
			}
		})
	}
}

// The decision log's To is the destination the request names, read by
// the dial plan: a REFER's Refer-To, a tel: number, in E.164 whatever the
// form, so that one search finds every form of a number.
func TestChainDecisionsDestination(t *testing.T) {
	plan := dialplan.MustNew(dialplan.Config{Country: "GB"})
	for _, tc := range []struct{ ruri, extra, method, want string }{
		{"sip:*6709091234567@sbc", "", "INVITE", "+449091234567"},
		{"tel:+44-(0)909-123-4567", "", "INVITE", "+449091234567"},
		{"sip:bob@sbc", "Refer-To: <sip:0044%20909%20123%204567@sbc>\r\n", "REFER", "+449091234567"},
		{"sip:bob@sbc", "Refer-To: <sip:1000@sbc>\r\n", "REFER", "1000"},
		{"sip:bob@sbc", "", "INVITE", "bob"},
	} {
		raw := tc.method + " " + tc.ruri + " SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.5:5060;branch=z9hG4bK-1\r\n" +
			"From: <sip:bob@sbc.example>;tag=a1\r\nTo: <sip:bob@sbc.example>\r\nCall-ID: c1@192.0.2.5\r\nCSeq: 1 " + tc.method +
			"\r\nMax-Forwards: 70\r\n" + tc.extra + "Content-Length: 0\r\n\r\n"
		msg, err := sip.ParseMessage([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		r := &sbc.Request{Request: msg.(*sip.Request), Peer: netip.MustParseAddrPort("192.0.2.5:5060"), Why: "rule x"}
		l := decision.New(10)
		chainDecisions(l, plan)(r, "rules", sbc.Rejected, 403)
		if got := l.Search(decision.Query{}); len(got) != 1 || got[0].To != tc.want {
			t.Errorf("%s %s: recorded %+v, want To %q", tc.method, tc.ruri, got, tc.want)
		}
	}
}

func TestBanDecisions(t *testing.T) {
	l := decision.New(10)
	rec := banDecisions(l)
	until := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	rec(ban.Event{Kind: ban.EventBan, Entry: ban.Entry{Prefix: netip.MustParsePrefix("192.0.2.7/32"), Reason: "auth_failures",
		Evidence: "5 failures", Until: until}})
	rec(ban.Event{Kind: ban.EventBan, Remote: true, Entry: ban.Entry{Prefix: netip.MustParsePrefix("2001:db8::/64"), Reason: "scanner", Until: until}})
	rec(ban.Event{Kind: ban.EventUnban, Entry: ban.Entry{Prefix: netip.MustParsePrefix("192.0.2.7/32")}})
	rec(ban.Event{Kind: ban.EventLock, Lock: ban.UserLock{User: "alice", Until: until, Evidence: "20 failures"}})

	got := l.Search(decision.Query{Text: "192.0.2.7"})
	if len(got) != 2 || got[0].Verdict != "unbanned" || got[1].Verdict != "banned" || got[1].Detail != "5 failures" ||
		!strings.Contains(got[1].Why, "auth_failures, until 2030-01-01 12:00:00 UTC") {
		t.Fatalf("192.0.2.7: %+v", got)
	}
	if got := l.Search(decision.Query{Text: "2001:db8::42"}); len(got) != 1 || !strings.HasPrefix(got[0].Detail, "by another node") {
		t.Fatalf("address in a remote /64 ban: %+v", got)
	}
	if got := l.Search(decision.Query{Text: "alice"}); len(got) != 1 || got[0].Verdict != "locked" || got[0].Layer != "auth" {
		t.Fatalf("alice: %+v", got)
	}
}

// A phone that never answered its challenge is found by its address, with
// what it was offered and what it says it is.
func TestUnansweredDecision(t *testing.T) {
	l := decision.New(10)
	peer := netip.MustParseAddr("192.0.2.77")
	unansweredDecisions(l)(auth.Unanswered{
		Peer: peer, First: time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC), Count: 3, Method: "REGISTER",
		User: "1001", UserAgent: "baresip v1.1.0 (x86_64/linux)", Offered: []string{"MD5"}, ProfileFor: "baresip-1",
	})
	got := l.Search(decision.Query{Text: peer.String()})
	if len(got) != 1 {
		t.Fatalf("entries %+v", got)
	}
	e := got[0]
	if e.Layer != "auth" || e.Verdict != "unanswered" || e.Why != "challenge unanswered (offered MD5 by profile baresip-1)" ||
		e.User != "1001" || e.Method != "REGISTER" || !strings.Contains(e.Detail, "3 challenge(s)") || !strings.Contains(e.Detail, "baresip v1.1.0") {
		t.Fatalf("entry %+v", e)
	}
}

// A phone that was challenged and has not answered is explained by "why"
// at once, before the decision log records it as unanswered.
func TestWhyShowsPendingChallenge(t *testing.T) {
	a, _ := startDemo(t)
	c := loopbackSender(t, "127.0.0.41")
	from := c.LocalAddr().(*net.UDPAddr).AddrPort()
	dst := udpListener(t, a)
	reg := strings.Join([]string{
		"REGISTER sip:" + dst.String() + " SIP/2.0",
		"Via: SIP/2.0/UDP " + from.String() + ";rport;branch=z9hG4bK-pending1",
		"Max-Forwards: 70",
		"From: <sip:alice@" + dst.Addr().String() + ">;tag=p1",
		"To: <sip:alice@" + dst.Addr().String() + ">",
		"Call-ID: pending-1",
		"CSeq: 1 REGISTER",
		"Contact: <sip:alice@" + from.String() + ">",
		"User-Agent: baresip v1.0.0 (x86_64/linux)",
		"Content-Length: 0", "", "",
	}, "\r\n")
	if _, err := c.WriteToUDPAddrPort([]byte(reg), dst); err != nil {
		t.Fatal(err)
	}
	var got []decision.Entry
	for range 50 {
		apiJSON(t, a, "GET", "/api/why?q=127.0.0.41", "", nil, 200, &got)
		if len(got) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(got) == 0 || got[0].Verdict != "challenged" || got[0].User != "alice" ||
		!strings.Contains(got[0].Why, "offered MD5 by profile baresip-1") || !strings.Contains(got[0].Detail, "baresip v1.0.0") {
		t.Fatalf("why 127.0.0.41: %+v", got)
	}
}
