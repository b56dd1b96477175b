package policy

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc"
)

const layerPolicy = `package sipwall

default decision := {"allow": false, "rule": "default-deny"}

decision := {"allow": true, "tags": {"route": "uk"}, "rule": "uk"} if {
	startswith(input.destination.e164, "+44")
} else := {"allow": false, "redirect": "sip:voicemail@10.0.0.9", "rule": "vm"} if {
	input.request_uri.user == "vm"
} else := {"allow": false, "status": 404, "ban": "1h", "rule": "scan"} if {
	input.request_uri.user == "100"
}
`

type banCall struct {
	ip       netip.Addr
	d        time.Duration
	reason   string
	evidence string
}

func TestLayer(t *testing.T) {
	var bans []banCall
	var logs bytes.Buffer
	e := newEngine(t, Options{
		Dir:     writeDir(t, map[string]string{"p.rego": layerPolicy}),
		Country: "GB",
		Ban:     func(ip netip.Addr, d time.Duration, r, ev string) { bans = append(bans, banCall{ip, d, r, ev}) },
		Logger:  slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	l := e.Layer()
	if l.Name() != "policy" {
		t.Fatal(l.Name())
	}
	tests := []struct {
		name    string
		ruri    string
		side    sbc.Side
		ack     bool
		verdict sbc.Verdict
		status  int
		contact string
		tags    map[string]string
		ban     bool
	}{
		{name: "allow with tags", ruri: "sip:02071234567@sbc", verdict: sbc.Continue, tags: map[string]string{"route": "uk"}},
		{name: "deny default 403", ruri: "sip:+33123456789@sbc", verdict: sbc.Rejected, status: 403},
		{name: "redirect", ruri: "sip:vm@sbc", verdict: sbc.Rejected, status: 302, contact: "<sip:voicemail@10.0.0.9>"},
		{name: "deny status and ban", ruri: "sip:100@sbc", verdict: sbc.Rejected, status: 404, ban: true},
		{name: "internal passes", ruri: "sip:+33123456789@sbc", side: sbc.Internal, verdict: sbc.Continue},
		{name: "ACK passes", ruri: "sip:+33123456789@sbc", ack: true, verdict: sbc.Continue},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bans = nil
			raw := invite(tc.ruri, "")
			if tc.ack {
				raw = strings.Replace(strings.Replace(raw, "INVITE", "ACK", 2), "CSeq: 314159 INVITE", "CSeq: 314159 ACK", 1)
			}
			r := parseReq(t, raw, "203.0.113.5:5060", tc.side)
			w := &recorder{}
			v, err := l.ServeSIP(context.Background(), w, r)
			if err != nil || v != tc.verdict || w.Written() != tc.status {
				t.Fatalf("got %v %v %d, want %v %d", v, err, w.Written(), tc.verdict, tc.status)
			}
			if tc.contact != "" {
				if h := w.res[0].GetHeader("Contact"); h == nil || h.Value() != tc.contact {
					t.Fatalf("contact %v", h)
				}
			}
			if fmt.Sprint(r.Tags) != fmt.Sprint(tc.tags) && !(len(r.Tags) == 0 && len(tc.tags) == 0) {
				t.Fatalf("tags %v, want %v", r.Tags, tc.tags)
			}
			if tc.ban != (len(bans) == 1) {
				t.Fatalf("bans %v", bans)
			}
			if tc.ban && (bans[0].ip != netip.MustParseAddr("203.0.113.5") || bans[0].d != time.Hour || bans[0].reason != "policy" || !strings.Contains(bans[0].evidence, "scan")) {
				t.Fatalf("ban %+v", bans[0])
			}
		})
	}
	st := e.Status().Stats
	if st.Redirects != 1 || st.Bans != 1 || st.Allows != 1 || st.Denies != 3 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(logs.String(), "rule=scan") || !strings.Contains(logs.String(), "component=policy") {
		t.Fatalf("decision log:\n%s", logs.String())
	}
}

func TestLayerFailClosed(t *testing.T) {
	e := newEngine(t, Options{FailStatus: 403, Dir: writeDir(t, map[string]string{"p.rego": "package sipwall\ndecision := {\"allow\": true, \"rule\": to_number(input.user_agent)}\n"})})
	w := &recorder{}
	v, err := e.Layer().ServeSIP(context.Background(), w, parseReq(t, invite("sip:+442071234567@sbc", ""), "203.0.113.5:5060", sbc.External))
	if v != sbc.Rejected || err != nil || w.Written() != 403 {
		t.Fatalf("got %v %v %d", v, err, w.Written())
	}
}

func TestDenyLogRateLimited(t *testing.T) {
	clk := &fixedClock{t: t0}
	var logs bytes.Buffer
	e := newEngine(t, Options{Now: clk.Now, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	l := e.Layer()
	r := parseReq(t, invite("sip:+442071234567@sbc", ""), "203.0.113.5:5060", sbc.External)
	for range 25 {
		if v, _ := l.ServeSIP(context.Background(), &recorder{}, r); v != sbc.Rejected {
			t.Fatal(v)
		}
	}
	if n := strings.Count(logs.String(), "policy deny"); n != denyLogsPerSecond {
		t.Fatalf("%d deny lines in one second, want %d", n, denyLogsPerSecond)
	}
	if e.Status().Stats.LogsDropped != 15 {
		t.Fatalf("dropped %d", e.Status().Stats.LogsDropped)
	}
	clk.Add(time.Second)
	_, _ = l.ServeSIP(context.Background(), &recorder{}, r)
	if n := strings.Count(logs.String(), "policy deny"); n != denyLogsPerSecond+1 {
		t.Fatalf("%d deny lines after a second", n)
	}
}

// Inside an accepted dialog nothing is decided by the layer: a deny-all
// policy never refuses a BYE or a re-INVITE, and a transfer's target is
// judged by the B2BUA (Judge), which knows the call's identity. A REFER
// outside any dialog and a new INVITE are decided here.
func TestLayerInDialogLeftToB2BUA(t *testing.T) {
	e := newEngine(t, Options{Dir: writeDir(t, map[string]string{"p.rego": "package sipwall\ndecision := {\"allow\": false, \"status\": 403, \"rule\": \"deny-all\"}\n"})})
	reinvite := invite("sip:bob@sbc", "totag1")
	bye := strings.NewReplacer("INVITE sip", "BYE sip", "314159 INVITE", "314160 BYE").Replace(reinvite)
	refer := strings.NewReplacer("INVITE sip", "REFER sip", "314159 INVITE", "314161 REFER", "Content-Length: 0", "Refer-To: <sip:+449091234567@sbc>\r\nContent-Length: 0").Replace(reinvite)
	oodRefer := strings.NewReplacer(";tag=totag1", "").Replace(refer)
	for _, tc := range []struct {
		name, raw string
		want      sbc.Verdict
	}{
		{"bye", bye, sbc.Continue},
		{"re-invite", reinvite, sbc.Continue},
		{"refer in a dialog", refer, sbc.Continue},
		{"refer out of dialog", oodRefer, sbc.Rejected},
		{"new invite", invite("sip:bob@sbc", ""), sbc.Rejected},
	} {
		w := &recorder{}
		v, err := e.Layer().ServeSIP(context.Background(), w, parseReq(t, tc.raw, "203.0.113.5:5060", sbc.External))
		if err != nil || v != tc.want {
			t.Errorf("%s: verdict %v, err %v; want %v", tc.name, v, err, tc.want)
		}
	}
}

// Judge enforces a decision on a target the way the layer does: deny with
// the policy's status, a redirect refuses, shadow mode lets it pass with
// the rule named, a failing policy fails closed.
func TestJudge(t *testing.T) {
	pol := `package sipwall
default decision := {"allow": true, "rule": "ok"}
decision := {"allow": false, "status": 603, "reason": "Premium Barred", "rule": "premium"} if {
	input.route == "refer"
	startswith(input.destination.e164, "+44909")
}
decision := {"allow": true, "redirect": "sip:vm@10.0.0.9", "rule": "to-vm"} if input.route == "redirect"
decision := {"allow": true, "rule": "broken"} if input.destination.class == "emergency"
decision := {"allow": false, "rule": "broken"} if input.destination.class == "emergency"
`
	dir := writeDir(t, map[string]string{"p.rego": pol})
	in := func(route, e164, class string) *Input {
		return &Input{Route: route, Dialog: "in-dialog", Destination: Destination{E164: e164, Valid: e164 != "", Class: class}}
	}
	peer := netip.MustParseAddr("203.0.113.5")
	e := newEngine(t, Options{Dir: dir})
	if j := e.Judge(context.Background(), in("refer", "+449091234567", "national"), peer); j.Allow || j.Status != 603 || j.Reason != "Premium Barred" || j.Why != "rule premium" {
		t.Errorf("premium refer: %+v", j)
	}
	if j := e.Judge(context.Background(), in("refer", "+442079460000", "national"), peer); !j.Allow {
		t.Errorf("ordinary refer: %+v", j)
	}
	if j := e.Judge(context.Background(), in("redirect", "+442079460000", "national"), peer); j.Allow || j.Status != 403 {
		t.Errorf("a redirect decision: %+v, want 403", j)
	}
	if j := e.Judge(context.Background(), in("refer", "", "emergency"), peer); j.Allow || j.Why != "evaluation failed" {
		t.Errorf("conflicting decisions: %+v, want fail closed", j)
	}
	sh := newEngine(t, Options{Dir: dir, Shadow: true})
	if j := sh.Judge(context.Background(), in("refer", "+449091234567", "national"), peer); !j.Allow || j.Why != "would deny (shadow): rule premium" {
		t.Errorf("shadow: %+v", j)
	}
}
