package policy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc"
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
		in := NewInput(r, now, london, "GB")
		want := Input{
			Method: "INVITE", Transport: "tcp", Peer: Peer{IP: "203.0.113.5", Port: 5070}, Side: "external",
			From: Party{User: "201", Host: "example.com"}, To: Party{User: "020%207946-0018", Host: "sbc.example.com"},
			RequestURI:  Party{User: "020%207946-0018", Host: "sbc.example.com"},
			Destination: Destination{Raw: "020%207946-0018", E164: "+442079460018", Valid: true},
			UserAgent:   "TestPhone/1.0",
			Time:        Time{UTC: "2026-07-03T16:05:00Z", Local: "2026-07-03T17:05:00+01:00", Weekday: "Friday", Hour: 17, Zone: "Europe/London"},
			Dialog:      "new",
		}
		if *in != want {
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
		in := NewInput(r, now, nil, "")
		if in.Method != "REGISTER" || in.Identity == nil || *in.Identity != (Identity{"201", "example.com"}) ||
			in.Trusted != "" || in.Dialog != "new" || in.Destination.Valid || in.Destination.Raw != "" ||
			in.UserAgent != "" || in.Time.Zone != "UTC" || in.Time.Hour != 16 || in.Counters != nil {
			t.Fatalf("%+v", in)
		}
	})

	t.Run("in-dialog from trusted peer", func(t *testing.T) {
		r := parseReq(t, invite("sip:201@10.0.0.5", "8321234356"), "192.0.2.10:5060", sbc.Internal)
		r.Identity = &sbc.Identity{Trusted: "pbx"}
		in := NewInput(r, now, nil, "GB")
		if in.Dialog != "in-dialog" || in.Side != "internal" || in.Trusted != "pbx" || in.Identity != nil ||
			in.Destination.Valid || in.Destination.Raw != "201" {
			t.Fatalf("%+v", in)
		}
	})

	t.Run("odd requests", func(t *testing.T) {
		in := NewInput(&sbc.Request{}, now, nil, "")
		if in.Method != "" || in.Peer.IP != "" || in.Dialog != "new" {
			t.Fatalf("%+v", in)
		}
		r := parseReq(t, invite("sip:\xff\xfe@sbc.example.com", ""), "203.0.113.5:5060", sbc.External)
		r.Peer = netip.AddrPort{}
		in = NewInput(r, now, nil, "")
		if in.Peer.IP != "" || in.RequestURI.User != "\uFFFD" {
			t.Fatalf("%+v", in)
		}
	})
}

func TestNormalizeE164(t *testing.T) {
	tests := []struct {
		raw, country, want string
	}{
		{"+442071234567", "", "+442071234567"},
		{"00442071234567", "", "+442071234567"},
		{"011442071234567", "US", "+442071234567"},
		{"011442071234567", "", "+442071234567"},
		{"02071234567", "GB", "+442071234567"},
		{"01132345678", "GB", "+441132345678"}, // Leeds, not NANP 011
		{"02071234567", "", ""},                // national without a country
		{"030 1234567", "DE", "+49301234567"},
		{"+44 (20) 7123-4567", "", "+442071234567"},
		{"+44.20.7123.4567", "", "+442071234567"},
		{"%2B44%2020%207123%204567", "", "+442071234567"},
		{" +442071234567 ", "", "+442071234567"},
		{"+33;phone-context=x", "", ""},
		{"+442071234567;ext=12", "", "+442071234567"},
		{"2125551234", "US", "+12125551234"},
		{"12125551234", "US", "+12125551234"},
		{"2125551234", "GB", ""}, // bare digits
		{"201", "GB", ""},        // extension
		{"+1234567", "", ""},     // 7 digits: too short
		{"+12345678", "", "+12345678"},
		{"+123456789012345", "", "+123456789012345"},
		{"+1234567890123456", "", ""}, // 16 digits: too long
		{"+44207abc4567", "", ""},
		{"alice", "", ""},
		{"++442071234567", "", ""},
		{"44+2071234567", "", ""},
		{"+0442071234567", "", ""},
		{"%zz", "", ""},
		{"", "", ""},
	}
	for _, tc := range tests {
		got, ok := NormalizeE164(tc.raw, tc.country)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("NormalizeE164(%q, %q) = %q, %v; want %q", tc.raw, tc.country, got, ok, tc.want)
		}
	}
}

func FuzzNormalizeE164(f *testing.F) {
	for _, s := range []string{"+442071234567", "00 44 (20)", "%2B1", "011", "0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		for _, c := range []string{"", "GB", "US"} {
			e, ok := NormalizeE164(raw, c)
			if ok != (e != "") || (ok && (e[0] != '+' || len(e) < 9 || len(e) > 16)) {
				t.Fatalf("%q %q: %q %v", raw, c, e, ok)
			}
		}
	})
}
