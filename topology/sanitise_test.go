package topology

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// leaky is a policy with inside networks and names and a report.
func leaky(t *testing.T, c Config) (*Policy, *Report) {
	t.Helper()
	r := NewReport(nil, func() time.Time { return time.Unix(0, 0) })
	c.Report = r
	if c.InternalNets == nil {
		c.InternalNets = []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("fd00::/8")}
	}
	if c.InternalNames == nil {
		c.InternalNames = []string{"pbx.corp.local"}
	}
	return policy(t, c), r
}

func TestReasonPhrase(t *testing.T) {
	for _, tc := range []struct {
		name   string
		keep   []int
		dir    Direction
		code   int
		phrase string
		want   string
	}{
		{"brand in a busy", nil, ToOutside, 486, "Busy Here (Asterisk PBX 18.2.1)", "Busy Here"},
		{"registered phrase kept", nil, ToOutside, 200, "OK", "OK"},
		{"own words for a 200", nil, ToOutside, 200, "Answered by FreeSWITCH", "OK"},
		{"unregistered code: its class", nil, ToOutside, 299, "Whatever", "Successful"},
		{"unregistered 4xx", nil, ToOutside, 499, "x", "Request Failure"},
		{"keep-list keeps the operator's words", []int{480}, ToOutside, 480, "Out to lunch", "Out to lunch"},
		{"keep-list does not keep a product", []int{486}, ToOutside, 486, "Busy (Asterisk)", "Busy Here"},
		{"keep-list does not keep an address", []int{480}, ToOutside, 480, "Away at 10.0.0.10", "Temporarily Unavailable"},
		{"keep-list does not keep a name", []int{480}, ToOutside, 480, "pbx.corp.local says no", "Temporarily Unavailable"},
		{"toward the inside unchanged", nil, ToInside, 486, "Busy Here (Asterisk)", "Busy Here (Asterisk)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, r := leaky(t, Config{KeepReasons: tc.keep})
			if got := p.Reason(tc.dir, tc.code, tc.phrase); got != tc.want {
				t.Errorf("Reason(%d, %q) = %q, want %q", tc.code, tc.phrase, got, tc.want)
			}
			wantCount := int64(0)
			if tc.want != tc.phrase {
				wantCount = 1
			}
			if n := r.Count(ItemReasonPhrase, Rewritten); n != wantCount {
				t.Errorf("reason-phrase rewritten counted %d, want %d", n, wantCount)
			}
		})
	}
}

func TestNewRejectsSanitiserConfig(t *testing.T) {
	for _, c := range []Config{
		{KeepReasons: []int{99}},
		{KeepReasons: []int{700}},
		{Text: map[string]string{"reason": "maybe"}},
		{Text: map[string]string{"contact": "drop"}},
		{DisplayNames: "rewrite"},
		{SDPAttributes: []string{"*"}},
		{SDPAttributes: []string{" "}},
		{ProductWords: []string{"a\nb"}},
	} {
		if _, err := New(c, nil); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

// copyOut copies the headers of a message toward the outside and returns
// the result's serialization.
func copyOut(t *testing.T, p *Policy, lines ...string) string {
	t.Helper()
	in := parse(t, append([]string{
		"NOTIFY sip:a@sbc SIP/2.0",
		"Via: SIP/2.0/UDP 10.0.0.10:5060;branch=z9hG4bK1",
		"From: <sip:a@x>;tag=1", "To: <sip:b@y>;tag=2", "Call-ID: c", "CSeq: 2 NOTIFY", "Max-Forwards: 70",
	}, append(lines, "Content-Length: 0")...)...)
	out := sip.NewRequest(sip.NOTIFY, sip.Uri{Scheme: "sip", Host: "198.51.100.7"})
	p.CopyHeaders(ToOutside, in, out, "203.0.113.1", 5060)
	return out.String()
}

func TestFreeTextHeaders(t *testing.T) {
	const agent = "203.0.113.1:5060"
	for _, tc := range []struct {
		name string
		text map[string]string
		in   string
		want string // "" : the header does not cross
	}{
		{"Reason scrubbed to its causes", nil,
			`Reason: SIP;cause=486;text="Busy (Asterisk PBX 18.2.1)", Q.850;cause=17;text="User busy"`,
			"Reason: SIP;cause=486, Q.850;cause=17"},
		{"Reason without cause keeps its protocol", nil, `Reason: SIP;text="Asterisk"`, "Reason: SIP"},
		{"Reason kept", map[string]string{"reason": TextKeep}, `Reason: SIP;cause=200;text="Call completed elsewhere"`,
			`Reason: SIP;cause=200;text="Call completed elsewhere"`},
		{"Reason kept but naming the inside", map[string]string{"reason": TextKeep}, `Reason: SIP;cause=486;text="pbx.corp.local"`, ""},
		{"Reason dropped", map[string]string{"reason": TextDrop}, `Reason: SIP;cause=486`, ""},
		{"Warning scrubbed: the SBC is the agent", nil, `Warning: 399 pbx.corp.local "Asterisk 18 at 10.0.0.10", 305 x "codec"`,
			`Warning: 399 ` + agent + ` "Miscellaneous warning", 305 ` + agent + ` "Incompatible media format"`},
		{"Subject scrubbed: a product", nil, "Subject: Call via Asterisk PBX", ""},
		{"Subject scrubbed: the inside", nil, "Subject: from 192.168.1.5", ""},
		{"Subject scrubbed: plain text crosses", nil, "Subject: Quarterly review", "Subject: Quarterly review"},
		{"Subject kept: a product crosses", map[string]string{"subject": TextKeep}, "Subject: Call via Asterisk", "Subject: Call via Asterisk"},
		{"Subject dropped", map[string]string{"subject": TextDrop}, "Subject: Quarterly review", ""},
		{"Organization scrubbed", nil, "Organization: FreePBX Inc", ""},
		{"In-Reply-To never crosses", nil, "In-Reply-To: 70710@pbx", ""},
		{"Retry-After loses its comment", nil, "Retry-After: 5 (Asterisk restart);duration=60", "Retry-After: 5;duration=60"},
		{"Retry-After without seconds", nil, "Retry-After: soon", ""},
		{"any other value naming the inside", nil, "Allow-Events: talk, x10.0.0.10", ""},
		{"percent-encoded", nil, "Date: 192%2E168%2E1%2E1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, r := leaky(t, Config{Text: tc.text, ToOutside: []string{"Warning", "Organization"}})
			s := copyOut(t, p, tc.in)
			name, _, _ := strings.Cut(tc.in, ":")
			if tc.want == "" {
				if strings.Contains(s, name+":") {
					t.Errorf("%s crossed:\n%s", name, s)
				}
				if r.Count(HeaderItem(name), Removed) != 1 {
					t.Errorf("%s removed counted %d, want 1", name, r.Count(HeaderItem(name), Removed))
				}
				return
			}
			if !strings.Contains(s, tc.want+"\r\n") {
				t.Errorf("want %q in:\n%s", tc.want, s)
			}
		})
	}
}

func TestIdentityHeadersSanitised(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		item           string // counted as removed or rewritten
	}{
		{"display name naming a product", `P-Asserted-Identity: "Asterisk PBX" <sip:100@10.0.0.10>`,
			`P-Asserted-Identity: <sip:100@203.0.113.1:5060>`, ItemDisplayName},
		{"caller name crosses", `P-Asserted-Identity: "Reception" <sip:100@10.0.0.10>`,
			`P-Asserted-Identity: "Reception" <sip:100@203.0.113.1:5060>`, ""},
		{"display name naming the inside", `Referred-By: "pbx.corp.local" <sip:100@pbx.corp.local>`,
			`Referred-By: <sip:100@203.0.113.1:5060>`, ItemDisplayName},
		{"display name with a quoted pair", `Referred-By: "10\.0.0.10" <sip:100@10.0.0.10>`,
			`Referred-By: <sip:100@203.0.113.1:5060>`, ItemDisplayName},
		{"user naming a product", `Diversion: <sip:asterisk@10.0.0.10>;reason=unconditional`,
			`Diversion: <sip:anonymous@203.0.113.1:5060>;reason=unconditional`, ItemURIUser},
		{"user naming the inside, percent-encoded", `Diversion: <sip:100%4010.0.0.10@10.0.0.10>;reason=busy`,
			`Diversion: <sip:anonymous@203.0.113.1:5060>;reason=busy`, ItemURIUser},
		{"URI parameter naming the inside", `Referred-By: <sip:100@10.0.0.10;x-pbx=192.168.4.4;user=phone>`,
			`Referred-By: <sip:100@203.0.113.1:5060;user=phone>`, ItemURIParam},
		{"header parameter naming the inside", `Diversion: <sip:200@10.0.0.10>;reason=busy;x-from=pbx.corp.local`,
			`Diversion: <sip:200@203.0.113.1:5060>;reason=busy`, ItemHeaderParam},
		{"URI headers: Replaces kept for the B2BUA, Require kept, others go",
			`Refer-To: <sip:2000@10.0.0.10:5060?Replaces=abc%40pbx.corp.local%3Bto-tag%3D1%3Bfrom-tag%3D2&X-Inside=10%2E0%2E0%2E10&Require=replaces>`,
			`Refer-To: <sip:2000@203.0.113.1:5060?Replaces=abc%40pbx.corp.local%3Bto-tag%3D1%3Bfrom-tag%3D2&Require=replaces>`, ItemURIHeader},
		{"Reason in a History-Info URI scrubbed",
			`History-Info: <sip:bob@10.0.0.10?Reason=SIP%3Bcause%3D486%3Btext%3D%22Asterisk%22>;index=1`,
			`History-Info: <sip:bob@203.0.113.1:5060?Reason=SIP%3Bcause%3D486>;index=1`, ""},
		{"Replaces outside a Refer-To goes", `P-Asserted-Identity: <sip:100@10.0.0.10?Replaces=x%3Bto-tag%3D1%3Bfrom-tag%3D2>`,
			`P-Asserted-Identity: <sip:100@203.0.113.1:5060>`, ItemURIHeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, r := leaky(t, Config{})
			s := copyOut(t, p, tc.in)
			if !strings.Contains(s, tc.want+"\r\n") {
				t.Errorf("want\n%s\nin:\n%s", tc.want, s)
			}
			if tc.item != "" && r.Count(tc.item, Removed)+r.Count(tc.item, Rewritten) == 0 {
				t.Errorf("%s not counted", tc.item)
			}
		})
	}
}

func TestDisplayNamesDropped(t *testing.T) {
	p, _ := leaky(t, Config{DisplayNames: DisplayDrop})
	if got := p.DisplayName(ToOutside, "Reception"); got != "" {
		t.Errorf("drop mode kept %q", got)
	}
	if got := p.DisplayName(ToInside, "Reception"); got != "Reception" {
		t.Errorf("toward the inside: %q", got)
	}
	s := copyOut(t, p, `P-Asserted-Identity: "Reception" <sip:100@10.0.0.10>`)
	if strings.Contains(s, "Reception") {
		t.Errorf("display name crossed:\n%s", s)
	}
	p, _ = leaky(t, Config{})
	for name, want := range map[string]string{"Alice": "Alice", "FreeSWITCH": "", "pbx.corp.local": "", "x192.168.0.9": "", "": ""} {
		if got := p.DisplayName(ToOutside, name); got != want {
			t.Errorf("DisplayName(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestTwoReferTosDropped(t *testing.T) {
	p, _ := leaky(t, Config{})
	s := copyOut(t, p, "Refer-To: <sip:1@203.0.113.9?Replaces=a%3Bto-tag%3D1%3Bfrom-tag%3D2>", "Refer-To: <sip:2@203.0.113.9>")
	if strings.Contains(s, "Refer-To") {
		t.Errorf("two Refer-To crossed:\n%s", s)
	}
}

func TestURIForLegs(t *testing.T) {
	p, _ := leaky(t, Config{})
	var u sip.Uri
	if err := sip.ParseUri("sip:mod_sofia@pbx.corp.local:5080;transport=udp;maddr=10.0.0.10?Subject=x", &u); err != nil {
		t.Fatal(err)
	}
	got := p.URI(ToOutside, u, "203.0.113.1", 5060)
	if s := got.String(); s != "sip:anonymous@203.0.113.1:5060;transport=udp" {
		t.Errorf("URI = %s", s)
	}
	if got := p.URI(ToInside, u, "203.0.113.1", 5060); got.String() != u.String() {
		t.Errorf("toward the inside changed: %s", got.String())
	}
}

func TestOutsideSDP(t *testing.T) {
	body := strings.Join([]string{
		"v=0",
		"o=asterisk 1 1 IN IP4 203.0.113.1",
		"s=Asterisk PBX 18.2.1",
		"i=PBX at pbx.corp.local",
		"c=IN IP4 203.0.113.1",
		"t=0 0",
		"a=tool:Asterisk PBX 18.2.1",
		"m=audio 40000 RTP/AVP 0 101",
		"i=line 1",
		"a=rtpmap:0 PCMU/8000",
		"a=rtpmap:101 telephone-event/8000",
		"a=fmtp:101 0-16",
		"a=ptime:20",
		"a=ssrc:1234 cname:pbx@10.0.0.10",
		"a=X-Asterisk-Chan:SIP/100",
		"a=ice-ufrag:abcd",
		"a=candidate:1 1 UDP 1 192.168.1.9 5000 typ host",
		"a=sendrecv",
		"",
	}, "\r\n")
	p, r := leaky(t, Config{})
	got := string(p.Body(ToOutside, "application/sdp", []byte(body)))
	want := strings.Join([]string{
		"v=0",
		"o=- 1 1 IN IP4 203.0.113.1",
		"s=-",
		"c=IN IP4 203.0.113.1",
		"t=0 0",
		"m=audio 40000 RTP/AVP 0 101",
		"a=rtpmap:0 PCMU/8000",
		"a=rtpmap:101 telephone-event/8000",
		"a=fmtp:101 0-16",
		"a=ptime:20",
		"a=ice-ufrag:abcd",
		"a=sendrecv",
		"",
	}, "\r\n")
	if got != want {
		t.Errorf("SDP toward the outside:\n%s\nwant:\n%s", got, want)
	}
	for item, n := range map[string]int64{"sdp:tool": 1, "sdp:ssrc": 1, "sdp:x-*": 1, "sdp:candidate": 1, "sdp:i": 2} {
		if c := r.Count(item, Removed); c != n {
			t.Errorf("%s removed %d, want %d", item, c, n)
		}
	}
	if c := r.Count("sdp:s", Rewritten) + r.Count("sdp:o", Rewritten); c != 2 {
		t.Errorf("s= and o= rewritten %d, want 2", c)
	}
	if got := p.Body(ToInside, "application/sdp", []byte(body)); string(got) != body {
		t.Errorf("SDP toward the inside changed")
	}
	clean := "v=0\r\no=- 1 1 IN IP4 203.0.113.1\r\ns=-\r\nt=0 0\r\n"
	if got := p.Body(ToOutside, "application/sdp", []byte(clean)); string(got) != clean {
		t.Errorf("clean SDP changed: %q", got)
	}

	// Lines that are not "<type>=" go, and so does any line but c= and o=
	// naming the inside, whatever its type; a bare LF ends a line.
	got = string(p.Body(ToOutside, "application/sdp", []byte(
		"v=0\r\na=CAndidAte:\n192.168.0.0\r\nx=1\r\n\r\nb=AS:64 pbx.corp.local\r\nc=IN IP4 203.0.113.1\r\nm=audio 4000 RTP/AVP 0\r\n")))
	if got != "v=0\r\na=CAndidAte:\r\nc=IN IP4 203.0.113.1\r\nm=audio 4000 RTP/AVP 0\r\n" {
		t.Errorf("lines not <type>= or naming the inside: %q", got)
	}

	// A list of its own, with a prefix.
	p, _ = leaky(t, Config{SDPAttributes: []string{"rtpmap", "x-*"}})
	got = string(p.Body(ToOutside, "application/sdp", []byte("v=0\na=rtpmap:0 PCMU/8000\na=ptime:20\na=x-foo:1\n")))
	if got != "v=0\r\na=rtpmap:0 PCMU/8000\r\na=x-foo:1\r\n" {
		t.Errorf("own list: %q", got)
	}
}

func TestSipfragPhrase(t *testing.T) {
	p, r := leaky(t, Config{})
	got := string(p.Body(ToOutside, "message/sipfrag", []byte("SIP/2.0 200 OK (Asterisk)\r\nServer: x\r\n")))
	if got != "SIP/2.0 200 OK\r\n" {
		t.Errorf("sipfrag = %q", got)
	}
	if r.Count(ItemSipfrag, Rewritten) != 1 {
		t.Errorf("sipfrag not counted")
	}
	if got := string(p.Body(ToOutside, "message/sipfrag", []byte("SIP/2.0 180 Ringing\r\n"))); got != "SIP/2.0 180 Ringing\r\n" {
		t.Errorf("clean sipfrag = %q", got)
	}
}

// FuzzSanitise: whatever a header value or an SDP body holds, what the
// sanitisers let out toward the outside names no inside address or name
// (a Refer-To's Replaces aside: the B2BUA maps it), has no free text where
// the policy says scrub, and SDP keeps only allowed attributes.
func FuzzSanitise(f *testing.F) {
	f.Add(`"Asterisk" <sip:100@10.0.0.10;x=pbx.corp.local?Replaces=a%3Bto-tag%3D1%3Bfrom-tag%3D2&X=1>;p=10%2E0.0.10`,
		"v=0\r\ns=x\r\na=tool:y\r\na=rtpmap:0 PCMU/8000\r\ni=10.0.0.10\r\n")
	f.Add(`SIP;cause=486;text="pbx.corp.local", Q.850 ;cause=16`, "a=candidate:1 1 UDP 1 192.168.1.9 5 typ host\n")
	f.Add(`399 pbx "x", 2`, "")
	f.Add("5 (comment);duration=60", "o=asterisk 1 1 IN IP4 10.0.0.10\r\n")
	p, err := New(Config{
		InternalNets:  []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16")},
		InternalNames: []string{"pbx.corp.local"},
	}, func(a netip.Addr) bool { return a == netip.MustParseAddr("10.0.0.10") })
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, v, sdp string) {
		for _, name := range []string{"referred-by", "p-asserted-identity", "diversion", "history-info", "subject", "allow-events"} {
			if out, ok := p.outsideHeader(name, v, "203.0.113.1", 5060); ok {
				if leak, found := p.Scan([]byte(out)); found {
					t.Fatalf("%s: %q became %q, naming %q", name, v, out, leak)
				}
			}
		}
		if out, ok := p.outsideHeader("refer-to", v, "203.0.113.1", 5060); ok {
			var u sip.Uri
			if s, e, ok := uriSpan(out); ok && sip.ParseUri(out[s:e], &u) == nil && p.InternalHost(u.Host) {
				t.Fatalf("Refer-To %q became %q, naming an inside host", v, out)
			}
		}
		if out, ok := scrubReason(v); ok && (strings.Contains(out, "text") || strings.Contains(out, `"`)) {
			t.Fatalf("Reason %q scrubbed to %q", v, out)
		}
		if out, ok := scrubWarning(v, "203.0.113.1", 5060); ok {
			for _, w := range splitTopLevel(out) {
				code, rest, _ := strings.Cut(w, " ")
				n, _ := strconv.Atoi(code)
				if rest != `203.0.113.1:5060 "`+warningTexts[n]+`"` && rest != `203.0.113.1:5060 "`+warningTexts[399]+`"` {
					t.Fatalf("Warning %q scrubbed to %q", v, out)
				}
			}
		}
		if out, ok := scrubRetryAfter(v); ok && strings.ContainsAny(out, "( )") {
			t.Fatalf("Retry-After %q scrubbed to %q", v, out)
		}
		body := string(p.outsideSDP([]byte(sdp)))
		for ln := range strings.SplitSeq(strings.TrimSuffix(body, "\n"), "\n") {
			ln = strings.TrimSuffix(ln, "\r")
			if body == "" {
				break
			}
			if len(ln) < 2 || ln[1] != '=' || !strings.ContainsRune(sdpTypes, rune(ln[0])) {
				t.Fatalf("SDP %q kept a line not <type>=: %q", sdp, ln)
			}
			if ln[0] != 'c' && ln[0] != 'o' && p.leaks(ln[2:]) {
				t.Fatalf("SDP %q kept %q, naming the inside", sdp, ln)
			}
			switch ln[0] {
			case 'i', 'u', 'e', 'p':
				t.Fatalf("SDP %q kept %q", sdp, ln)
			case 's':
				if ln != "s=-" {
					t.Fatalf("SDP %q kept %q", sdp, ln)
				}
			case 'a':
				name, val, _ := strings.Cut(ln[2:], ":")
				if !p.sdpAllowed(name) || p.leaks(val) {
					t.Fatalf("SDP %q kept %q", sdp, ln)
				}
			}
		}
	})
}
