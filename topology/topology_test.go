package topology

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func policy(t *testing.T, c Config) *Policy {
	t.Helper()
	pbx := netip.MustParseAddr("10.0.0.10")
	p, err := New(c, func(a netip.Addr) bool { return a == pbx })
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func parse(t *testing.T, lines ...string) sip.Message {
	t.Helper()
	m, err := sip.ParseMessage([]byte(strings.Join(lines, "\r\n") + "\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCopyHeadersToOutside(t *testing.T) {
	p := policy(t, Config{
		UserAgent:     "sbc",
		InternalNets:  []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16")},
		InternalNames: []string{"corp.local"},
		ToOutside:     []string{"X-Allowed"},
	})
	in := parse(t,
		"SIP/2.0 200 OK",
		"Via: SIP/2.0/UDP 10.0.0.10:5060;branch=z9hG4bK1",
		"From: <sip:a@x>;tag=1", "To: <sip:b@y>;tag=2", "Call-ID: c", "CSeq: 1 INVITE",
		"Server: Asterisk PBX 18.2.1",
		"User-Agent: FPBX-16.0.40",
		"Warning: 399 pbx.corp.local \"internal\"",
		"X-Asterisk-HangupCause: Normal",
		"X-Allowed: yes",
		"P-Charging-Vector: icid-value=1;orig-ioi=pbx.corp.local",
		"P-Asserted-Identity: \"Reception\" <sip:100@10.0.0.10:5060;user=phone>",
		"Diversion: <sip:200@pbx.corp.local>;reason=unconditional, <sip:300@192.168.1.9;maddr=10.0.0.10>;reason=busy",
		"Supported: replaces, timer",
		"Content-Length: 0")
	out := sip.NewResponse(200, "OK")
	p.CopyHeaders(ToOutside, in, out, "203.0.113.1", 5060)
	s := out.String()
	for _, leak := range []string{"Asterisk", "FPBX", "Warning", "HangupCause", "P-Charging", "10.0.0.10", "corp.local", "192.168.1.9"} {
		if strings.Contains(s, leak) {
			t.Errorf("output contains %q:\n%s", leak, s)
		}
	}
	for _, want := range []string{
		"Server: sbc",
		"X-Allowed: yes",
		`P-Asserted-Identity: "Reception" <sip:100@203.0.113.1:5060;user=phone>`,
		"Diversion: <sip:200@203.0.113.1:5060>;reason=unconditional, <sip:300@203.0.113.1:5060>;reason=busy",
		"Supported: replaces, timer",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if leak, found := p.Scan([]byte(s)); found {
		t.Errorf("guard finds %q in the hidden message", leak)
	}
}

func TestCopyHeadersToInside(t *testing.T) {
	p := policy(t, Config{})
	in := parse(t,
		"INVITE sip:b@sbc SIP/2.0",
		"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1",
		"From: <sip:a@x>;tag=1", "To: <sip:b@y>", "Call-ID: c", "CSeq: 1 INVITE", "Max-Forwards: 70",
		"P-Asserted-Identity: <sip:ceo@bank.example>",
		"X-Forwarded-For: 1.2.3.4",
		"Diversion: <sip:5@carrier.example>;reason=busy",
		"Content-Length: 0")
	out := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", Host: "10.0.0.10"})
	p.CopyHeaders(ToInside, in, out, "10.0.0.2", 5060)
	s := out.String()
	if strings.Contains(s, "P-Asserted-Identity") || strings.Contains(s, "X-Forwarded-For") {
		t.Errorf("an identity claimed from outside reached the inside:\n%s", s)
	}
	if !strings.Contains(s, "Diversion: <sip:5@carrier.example>;reason=busy") {
		t.Errorf("Diversion from the carrier lost:\n%s", s)
	}
	if strings.Contains(s, "User-Agent") {
		t.Errorf("user agent written toward the inside")
	}
}

func TestReferToRewritten(t *testing.T) {
	p := policy(t, Config{})
	in := parse(t,
		"REFER sip:a@sbc SIP/2.0",
		"Via: SIP/2.0/UDP 10.0.0.10:5060;branch=z9hG4bK1",
		"From: <sip:a@x>;tag=1", "To: <sip:b@y>;tag=2", "Call-ID: c", "CSeq: 2 REFER", "Max-Forwards: 70",
		"Refer-To: <sip:2000@10.0.0.10:5060?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2>",
		"Referred-By: sip:100@10.0.0.10",
		"Content-Length: 0")
	out := sip.NewRequest(sip.REFER, sip.Uri{Scheme: "sip", Host: "198.51.100.7"})
	p.CopyHeaders(ToOutside, in, out, "203.0.113.1", 5060)
	s := out.String()
	if strings.Contains(s, "10.0.0.10") {
		t.Errorf("inside address left:\n%s", s)
	}
	if !strings.Contains(s, "Refer-To: <sip:2000@203.0.113.1:5060?Replaces=") || !strings.Contains(s, "sip:100@203.0.113.1:5060") {
		t.Errorf("Refer-To/Referred-By not rewritten:\n%s", s)
	}
}

func TestSipfragScrubbed(t *testing.T) {
	p := policy(t, Config{})
	body := []byte("SIP/2.0 200 OK\r\nServer: Asterisk\r\nContact: <sip:10.0.0.10>\r\n\r\n")
	if got := string(p.Body(ToOutside, "message/sipfrag;version=2.0", body)); got != "SIP/2.0 200 OK\r\n" {
		t.Errorf("sipfrag = %q", got)
	}
	if got := string(p.Body(ToOutside, "message/sipfrag", []byte("garbage 10.0.0.10"))); got != "SIP/2.0 500 Server Internal Error\r\n" {
		t.Errorf("bad sipfrag = %q", got)
	}
	if got := string(p.Body(ToInside, "message/sipfrag", body)); got != string(body) {
		t.Errorf("sipfrag toward the inside changed")
	}
	sdp := []byte("v=0\r\n")
	if got := p.Body(ToOutside, "application/sdp", sdp); string(got) != string(sdp) {
		t.Errorf("SDP changed by Body")
	}
}

func TestScan(t *testing.T) {
	p := policy(t, Config{
		InternalNets:  []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("fd00::/8")},
		InternalNames: []string{"pbx.corp.local"},
	})
	for in, want := range map[string]string{
		"Via: SIP/2.0/UDP 10.0.0.10:5060;branch=x":  "10.0.0.10",
		"c=IN IP4 192.168.7.7\r\n":                  "192.168.7.7",
		"Contact: <sip:1@[fd00::5]:5060>":           "fd00::5",
		"o=- 1 1 IN IP6 fd12:3456::1":               "fd12:3456::1",
		"Contact: <sip:1@PBX.Corp.Local>":           "pbx.corp.local",
		"received=::ffff:10.0.0.10":                 "10.0.0.10",
		"Via: SIP/2.0/UDP 203.0.113.1:5060, x=1.2.": "",
		"version 10.0.0 build 1.2.3.4":              "",
		"c=IN IP4 0.0.0.0":                          "",
	} {
		got, found := p.Scan([]byte(in))
		if found != (want != "") || got != want {
			t.Errorf("Scan(%q) = %q, %v; want %q", in, got, found, want)
		}
	}
}

func TestNewRejects(t *testing.T) {
	for _, c := range []Config{{Guard: "maybe"}, {UserAgent: "a\r\nX: y"}, {InternalNames: []string{" "}}} {
		if _, err := New(c, nil); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

func FuzzScanAndRewrite(f *testing.F) {
	f.Add("Refer-To: <sip:1@10.0.0.10>", "<sip:2@[fd00::1]:5;maddr=10.0.0.10>, \"x\" <sip:3@y>")
	f.Add("", "sip:a@b")
	f.Add("\x00\xff", "<<>>,,\"\\")
	p, _ := New(Config{InternalNets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}, InternalNames: []string{"corp"}}, nil)
	f.Fuzz(func(t *testing.T, raw, hdr string) {
		p.Scan([]byte(raw))
		if v, ok := p.rewriteAddrs(hdr, "203.0.113.1", 5060, true); ok {
			// What the rewrite lets out names no inside address in a URI host.
			for _, part := range splitTopLevel(v) {
				s, e, ok := uriSpan(part)
				if !ok {
					continue
				}
				var u sip.Uri
				if sip.ParseUri(part[s:e], &u) == nil && p.InternalHost(u.Host) {
					t.Fatalf("rewritten %q still names inside host %q", v, u.Host)
				}
			}
		}
		p.Body(ToOutside, "message/sipfrag", []byte(raw))
	})
}
