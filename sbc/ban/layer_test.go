package ban

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/sipwall/sipwall/sbc"
)

func TestLayer(t *testing.T) {
	const (
		attacker = "198.51.100.66:5060"
		pbx      = "10.0.0.5:5060"
	)
	trusted := func(ip netip.Addr) (string, bool) { return "pbx", ip == addr("10.0.0.5") }
	for _, tc := range []struct {
		name    string
		agents  []string // nil: defaults
		peer    string
		side    sbc.Side
		headers []string
		want    sbc.Verdict
		banned  string // prefix banned afterwards, "" none
		evid    string
	}{
		{name: "scanner", peer: attacker, headers: []string{"User-Agent: friendly-scanner"},
			want: sbc.Dropped, banned: "198.51.100.66/32", evid: `User-Agent "friendly-scanner"`},
		{name: "upper case agent", peer: attacker, headers: []string{"User-Agent: FRIENDLY-SCANNER"},
			want: sbc.Dropped, banned: "198.51.100.66/32", evid: `User-Agent "FRIENDLY-SCANNER"`},
		{name: "lower case header name", peer: attacker, headers: []string{"user-agent: sipvicious 0.3.4"},
			want: sbc.Dropped, banned: "198.51.100.66/32", evid: `User-Agent "sipvicious 0.3.4"`},
		{name: "odd case header name, agent inside", peer: attacker, headers: []string{"USER-agent: Mozilla/5.0 SIPVicious"},
			want: sbc.Dropped, banned: "198.51.100.66/32"},
		{name: "second User-Agent header", peer: attacker, headers: []string{"User-Agent: Yealink SIP-T46S", "User-Agent: sipcli/v1.8"},
			want: sbc.Dropped, banned: "198.51.100.66/32"},
		{name: "long agent quoted and cut", peer: attacker, headers: []string{"User-Agent: pplsip " + strings.Repeat("z", 300)},
			want: sbc.Dropped, banned: "198.51.100.66/32", evid: `User-Agent "pplsip ` + strings.Repeat("z", 57) + `"...`},
		{name: "IPv6 peer banned as /128", peer: "[2001:db8::66]:5060", headers: []string{"User-Agent: VaxSIPUserAgent/3.1"},
			want: sbc.Dropped, banned: "2001:db8::66/128"},
		{name: "v4-mapped peer banned as /32", peer: "[::ffff:198.51.100.67]:5060", headers: []string{"User-Agent: sipsak 0.9.6"},
			want: sbc.Dropped, banned: "198.51.100.67/32"},
		{name: "phone", peer: attacker, headers: []string{"User-Agent: Yealink SIP-T46S 66.86.0.15"}, want: sbc.Continue},
		{name: "no agent", peer: attacker, want: sbc.Continue},
		{name: "scanner name in another header", peer: attacker, headers: []string{"Subject: friendly-scanner"}, want: sbc.Continue},
		{name: "internal side untouched", peer: attacker, side: sbc.Internal,
			headers: []string{"User-Agent: friendly-scanner"}, want: sbc.Continue},
		{name: "trusted peer untouched", peer: pbx, headers: []string{"User-Agent: sipvicious"}, want: sbc.Continue},
		{name: "check off", agents: []string{}, peer: attacker, headers: []string{"User-Agent: friendly-scanner"}, want: sbc.Continue},
		{name: "own agents", agents: []string{"EvilCorp"}, peer: attacker, headers: []string{"User-Agent: evilcorp dialer"},
			want: sbc.Dropped, banned: "198.51.100.66/32"},
		{name: "own agents replace defaults", agents: []string{"EvilCorp"}, peer: attacker, headers: []string{"User-Agent: friendly-scanner"},
			want: sbc.Continue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			sink := newSink()
			m := newManager(t, Options{Now: c.Now, Sink: sink, Trusted: trusted, ScannerAgents: tc.agents})
			l := m.Layer()
			if l.Name() != "ban" {
				t.Fatalf("name %q", l.Name())
			}
			r := request(t, netip.MustParseAddrPort(tc.peer), tc.side, tc.headers...)
			w := &recorder{}
			v, err := l.ServeSIP(context.Background(), w, r)
			if err != nil || v != tc.want || len(w.res) != 0 {
				t.Fatalf("verdict %v err %v responses %d, want %v and none", v, err, len(w.res), tc.want)
			}
			bans := m.Bans()
			if tc.banned == "" {
				if len(bans) != 0 {
					t.Fatalf("bans %v", bans)
				}
				return
			}
			if len(bans) != 1 || bans[0].Prefix.String() != tc.banned || bans[0].Reason != ReasonScanner ||
				(tc.evid != "" && bans[0].Evidence != tc.evid) {
				t.Fatalf("bans %v", bans)
			}
			if got := sink.prefixes(); len(got) != 1 || got[0] != tc.banned {
				t.Fatalf("sink %v", got)
			}
			// The next request, even with an honest agent, is dropped
			// silently and counted.
			r2 := request(t, netip.MustParseAddrPort(tc.peer), sbc.External, "User-Agent: Yealink")
			if v, _ := l.ServeSIP(context.Background(), w, r2); v != sbc.Dropped || len(w.res) != 0 {
				t.Fatalf("after the ban: %v, %d responses", v, len(w.res))
			}
			if st := m.Stats(); st.Drops != 1 || st.Bans[ReasonScanner] != 1 {
				t.Fatalf("stats %+v", st)
			}
			// The internal side is never dropped, banned or not.
			r3 := request(t, netip.MustParseAddrPort(tc.peer), sbc.Internal)
			if v, _ := l.ServeSIP(context.Background(), w, r3); v != sbc.Continue {
				t.Fatalf("internal after the ban: %v", v)
			}
		})
	}
}

func TestLayerDropsBannedNetwork(t *testing.T) {
	m := newManager(t, Options{Now: newClock().Now})
	if _, err := m.Ban(prefix("2001:db8:1::/64"), 0, "", ""); err != nil {
		t.Fatal(err)
	}
	l := m.Layer()
	for _, tc := range []struct {
		peer string
		want sbc.Verdict
	}{
		{"[2001:db8:1::1]:5060", sbc.Dropped},
		{"[2001:db8:1::ffff:9]:5070", sbc.Dropped},
		{"[2001:db8:2::1]:5060", sbc.Continue},
		{"192.0.2.1:5060", sbc.Continue},
	} {
		v, err := l.ServeSIP(context.Background(), &recorder{}, request(t, netip.MustParseAddrPort(tc.peer), sbc.External))
		if err != nil || v != tc.want {
			t.Errorf("%s: %v %v, want %v", tc.peer, v, err, tc.want)
		}
	}
	if st := m.Stats(); st.Drops != 2 {
		t.Fatalf("drops %d", st.Drops)
	}
}

func TestContainsFold(t *testing.T) {
	for _, tc := range []struct {
		s, sub string
		want   bool
	}{
		{"Friendly-Scanner", "friendly-scanner", true},
		{"x friendly-scanne", "friendly-scanner", false},
		{"SIPVICIOUS", "sipvicious", true},
		{"", "smap", false},
		{"SMAP", "smap", true},
		{"abc", "", true},
		{"iWar", "iwar", true},
	} {
		if got := containsFold(tc.s, tc.sub); got != tc.want {
			t.Errorf("containsFold(%q, %q) = %v", tc.s, tc.sub, got)
		}
	}
}
