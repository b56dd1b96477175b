package policy

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sipwall/sipwall/dialplan"
	"github.com/sipwall/sipwall/sbc"
)

var (
	planGB   = dialplan.MustNew(dialplan.Config{Country: "GB"})
	planNone = dialplan.MustNew(dialplan.Config{})
)

func TestNewInput(t *testing.T) {
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Skipf("no tzdata: %v", err)
	}
	now := time.Date(2026, 7, 3, 16, 5, 0, 0, time.UTC) // Friday, 17:05 BST

	t.Run("INVITE", func(t *testing.T) {
		r := parseReq(t, invite("sip:020%207946-0018@sbc.example.com;user=phone", ""), "[::ffff:203.0.113.5]:5070", sbc.External)
		r.Transport = "tcp"
		in := NewInput(r, now, london, planGB)
		want := Input{
			Method: "INVITE", Transport: "tcp", Peer: Peer{IP: "203.0.113.5", Port: 5070}, Side: "external",
			From: Party{User: "201", Host: "example.com"}, To: Party{User: "020%207946-0018", Host: "sbc.example.com"},
			RequestURI:  Party{User: "020%207946-0018", Host: "sbc.example.com"},
			Route:       "invite",
			Destination: Destination{Raw: "020%207946-0018", E164: "+442079460018", Valid: true, Class: "national", Features: []string{}},
			UserAgent:   "TestPhone/1.0",
			Time:        Time{UTC: "2026-07-03T16:05:00Z", Local: "2026-07-03T17:05:00+01:00", Weekday: "Friday", Hour: 17, Zone: "Europe/London"},
			Dialog:      "new",
		}
		if !reflect.DeepEqual(*in, want) {
			t.Fatalf("got\n%+v\nwant\n%+v", *in, want)
		}
	})

	t.Run("REGISTER authenticated", func(t *testing.T) {
		r := parseReq(t, msg(
			"REGISTER sip:example.com SIP/2.0",
			"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKnashds7",
			"To: <sip:201@example.com>",
			"From: <sip:201@example.com>;tag=456248",
			"Call-ID: 843817637684230@998sdasdh09",
			"CSeq: 1826 REGISTER",
			"Contact: <sip:201@198.51.100.7>",
			"Content-Length: 0",
		), "198.51.100.7:5060", sbc.External)
		r.Identity = &sbc.Identity{User: "201", Realm: "example.com"}
		in := NewInput(r, now, nil, planNone)
		if in.Method != "REGISTER" || in.Identity == nil || *in.Identity != (Identity{"201", "example.com"}) ||
			in.Trusted != "" || in.Dialog != "new" || in.Destination.Valid || in.Destination.Raw != "" || in.Route != "" ||
			in.UserAgent != "" || in.Time.Zone != "UTC" || in.Time.Hour != 16 || in.Counters != nil {
			t.Fatalf("%+v", in)
		}
	})

	t.Run("in-dialog from trusted peer", func(t *testing.T) {
		r := parseReq(t, invite("sip:201@10.0.0.5", "8321234356"), "192.0.2.10:5060", sbc.Internal)
		r.Identity = &sbc.Identity{Trusted: "pbx"}
		in := NewInput(r, now, nil, planGB)
		if in.Dialog != "in-dialog" || in.Side != "internal" || in.Trusted != "pbx" || in.Identity != nil ||
			in.Destination.Valid || in.Destination.Raw != "201" || in.Route != "" || in.Destination.Class != "extension" {
			t.Fatalf("%+v", in)
		}
	})

	t.Run("odd requests", func(t *testing.T) {
		in := NewInput(&sbc.Request{}, now, nil, planNone)
		if in.Method != "" || in.Peer.IP != "" || in.Dialog != "new" {
			t.Fatalf("%+v", in)
		}
		r := parseReq(t, invite("sip:\xff\xfe@sbc.example.com", ""), "203.0.113.5:5060", sbc.External)
		r.Peer = netip.AddrPort{}
		in = NewInput(r, now, nil, planNone)
		if in.Peer.IP != "" || in.RequestURI.User != "\uFFFD" {
			t.Fatalf("%+v", in)
		}
	})
}

// The route and destination: a new INVITE's Request-URI (tel: too), a
// REFER's Refer-To whether in a dialog or not, read by the dial plan.
func TestInputRoute(t *testing.T) {
	now := time.Date(2026, 7, 3, 16, 5, 0, 0, time.UTC)
	refer := func(referTo string) string {
		return strings.NewReplacer("INVITE sip", "REFER sip", "314159 INVITE", "314161 REFER",
			"Content-Length: 0", referTo+"Content-Length: 0").Replace(invite("sip:bob@sbc", ""))
	}
	for _, tc := range []struct {
		name, raw, route, class, e164 string
		features                      []string
	}{
		{"INVITE", invite("sip:*67+44%20909%20123%204567@sbc;user=phone", ""), "invite", "national", "+449091234567", []string{"*67"}},
		{"INVITE tel:", invite("tel:+44-(0)909-123-4567", ""), "invite", "national", "+449091234567", []string{}},
		{"INVITE extension", invite("sip:1000@sbc", ""), "invite", "extension", "", []string{}},
		{"re-INVITE", invite("sip:1000@sbc", "totag"), "", "extension", "", []string{}},
		{"REFER", refer("Refer-To: <sip:09091234567@sbc?Replaces=a%3Bto-tag%3D1%3Bfrom-tag%3D2>\r\n"), "refer", "national", "+449091234567", []string{}},
		{"REFER to a name", refer("Refer-To: <sip:carol@sbc>\r\n"), "refer", "name", "", []string{}},
		{"REFER without Refer-To", refer(""), "refer", "invalid", "", []string{}},
		{"REFER with two", refer("Refer-To: <sip:carol@sbc>\r\nRefer-To: <sip:1000@sbc>\r\n"), "refer", "invalid", "", []string{}},
	} {
		r := parseReq(t, tc.raw, "203.0.113.5:5060", sbc.External)
		in := NewInput(r, now, nil, planGB)
		d := in.Destination
		if in.Route != tc.route || d.Class != tc.class || d.E164 != tc.e164 || d.Valid != (tc.e164 != "") || !reflect.DeepEqual(d.Features, tc.features) {
			t.Errorf("%s: route %q, destination %+v; want %s %s %s %q", tc.name, in.Route, d, tc.route, tc.class, tc.e164, tc.features)
		}
	}
}
