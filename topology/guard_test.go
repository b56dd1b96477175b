package topology

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestScanDecodedAndGlued(t *testing.T) {
	p, _ := leaky(t, Config{})
	for in, want := range map[string]string{
		"Refer-To: <sip:1@x?Replaces=abc%4010.0.0.10%3Bto-tag%3D1>": "10.0.0.10",
		"10%2E0%2E0%2E10":              "10.0.0.10",
		"%2531%2530.0.0.10":            "10.0.0.10", // double encoding
		"x10.0.0.10y":                  "10.0.0.10",
		"abc10.0.0.10def":              "10.0.0.10", // hex letters glued
		"cafe192.168.3.4":              "192.168.3.4",
		"110.0.0.101":                  "",          // another address, whole: not 10.0.0.10
		"10.0.0.10123":                 "10.0.0.10", // glued to digits that make no octet
		"010.000.000.010":              "10.0.0.10", // leading zeros
		"1.2.3.4.192.168.9.9.5":        "192.168.9.9",
		`"10\.0.0.10"`:                 "10.0.0.10", // quoted pair
		"pbx%2Ecorp%2Elocal":           "pbx.corp.local",
		"xxPBX.CORP.LOCALyy":           "pbx.corp.local",
		"cafd00::5":                    "fd00::5", // hex glued in front
		"[fd00::5]:5060":               "fd00::5",
		"fd00::5:5060":                 "fd00::5:5060",
		"sip:1@[fd00:0:0:0:0:0:0:7]:5": "fd00::7",
		"::ffff:10.0.0.10":             "10.0.0.10",
		"a=fingerprint:sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89": "",
		"Date: Sat, 13 Nov 2010 23:29:00 GMT": "",
		"00:1a:2b:3c:4d:5e":                   "",
		"version 10.0.0 build 1.2.3.4":        "",
		"%zz %4":                              "",
		"203.0.113.10":                        "",
	} {
		got, found := p.Scan([]byte(in))
		if found != (want != "") || got != want {
			t.Errorf("Scan(%q) = %q, %v; want %q", in, got, found, want)
		}
	}
}

func msg(lines ...string) []byte {
	all := strings.Join(lines, "\r\n")
	head, body, found := strings.Cut(all, "\r\n\r\n")
	if !found {
		head = strings.TrimSuffix(all, "\r\n")
	}
	return []byte(strings.Replace(head, "Content-Length: N", "Content-Length: "+strconv.Itoa(len(body)), 1) + "\r\n\r\n" + body)
}

// response is a response toward the outside; extra lines go after CSeq.
func response(status string, extra ...string) []byte {
	return msg(append(append([]string{
		"SIP/2.0 " + status,
		"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1;received=198.51.100.7",
		"From: <sip:caller@198.51.100.7>;tag=1",
		"To: <sip:100@pbx.corp.local>;tag=2",
		"Call-ID: abc@198.51.100.7",
		"CSeq: 1 INVITE",
	}, extra...), "")...)
}

func TestOutbound(t *testing.T) {
	sdp := func(lines ...string) []string {
		body := "v=0\r\no=- 1 1 IN IP4 203.0.113.1\r\ns=-\r\nc=IN IP4 203.0.113.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n" + strings.Join(lines, "")
		return []string{"Content-Type: application/sdp", "Content-Length: N", "", body}
	}
	for _, tc := range []struct {
		name    string
		guard   string
		in      []byte
		send    bool
		want    []string // in what is sent
		notWant []string
		counted map[string]Action
	}{
		{name: "clean: as it is", in: response("200 OK", "Content-Length: 0"), send: true, want: []string{"SIP/2.0 200 OK\r\n"}},
		{name: "echoed headers are the peer's", in: response("486 Busy Here", "Content-Length: 0"), send: true,
			want: []string{"To: <sip:100@pbx.corp.local>;tag=2"}},
		{name: "the SBC's own phrase", in: response("503 Fraud Counters Unavailable", "Content-Length: 0"), send: true,
			want: []string{"SIP/2.0 503 Fraud Counters Unavailable\r\n"}},
		{name: "inside name in the status line", in: response("486 Busy Here (pbx.corp.local)", "Content-Length: 0"), send: true,
			want: []string{"SIP/2.0 486 Busy Here\r\n"}, counted: map[string]Action{ItemReasonPhrase: GuardStripped}},
		{name: "header that can go is stripped",
			in:   response("200 OK", append([]string{"Contact: <sip:203.0.113.1>", "Subject: call from 10.0.0.10"}, sdp("a=tool:x10.0.0.10\r\n", "a=sendrecv\r\n")...)...),
			send: true, want: []string{"SIP/2.0 200 OK\r\n", "a=sendrecv\r\n"}, notWant: []string{"Subject", "tool"},
			counted: map[string]Action{"Subject": GuardStripped, "sdp:tool": GuardStripped}},
		{name: "final response with an inside Contact: a bare 500",
			in:   response("486 Busy Here", "Contact: <sip:100@10.0.0.10>", "Server: x", "Content-Length: 0"),
			send: true, want: []string{"SIP/2.0 500 Server Internal Error\r\n", "To: <sip:100@pbx.corp.local>;tag=2\r\n", "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"},
			notWant: []string{"Server: x", "Contact"}, counted: map[string]Action{"Contact": GuardReplaced}},
		{name: "2xx with an inside c=: a bare 500",
			in:   response("200 OK", append([]string{"Contact: <sip:203.0.113.1>"}, "Content-Type: application/sdp", "Content-Length: N", "", "v=0\r\nc=IN IP4 10.0.0.10\r\n")...),
			send: true, want: []string{"SIP/2.0 500 Server Internal Error\r\n"}, counted: map[string]Action{"sdp:c": GuardReplaced}},
		{name: "provisional that cannot be cleaned: nothing",
			in:   response("180 Ringing", "Contact: <sip:100@10.0.0.10>", "Content-Length: 0"),
			send: false, counted: map[string]Action{"Contact": GuardBlocked}},
		{name: "request to an inside target: nothing",
			in:   msg("BYE sip:100@10.0.0.10 SIP/2.0", "Via: SIP/2.0/UDP 203.0.113.1;branch=z9hG4bK2", "Content-Length: 0", ""),
			send: false, counted: map[string]Action{ItemStartLine: GuardBlocked}},
		{name: "request with a header that can go",
			in:   msg("NOTIFY sip:caller@198.51.100.7 SIP/2.0", "Via: SIP/2.0/UDP 203.0.113.1;branch=z9hG4bK2", "Event: refer", "X-Leak: pbx%2Ecorp%2Elocal", "Content-Type: message/sipfrag", "Content-Length: N", "", "SIP/2.0 200 OK from 10.0.0.10\r\n"),
			send: true, want: []string{"Event: refer\r\n", "\r\n\r\nSIP/2.0 200 OK\r\n"}, notWant: []string{"X-Leak"},
			counted: map[string]Action{ItemHeaderOther: GuardStripped, ItemSipfrag: GuardStripped}},
		{name: "request whose From names the inside",
			in:   msg("OPTIONS sip:phone@198.51.100.7 SIP/2.0", "Via: SIP/2.0/UDP 203.0.113.1;branch=z9hG4bK2", "From: \"10.0.0.10\" <sip:a@203.0.113.1>;tag=1", "Content-Length: 0", ""),
			send: false, counted: map[string]Action{"From": GuardBlocked}},
		{name: "an unknown body", in: response("200 OK", "Content-Type: text/plain", "Content-Length: N", "", "host 10.0.0.10"),
			send: true, want: []string{"SIP/2.0 500 "}, counted: map[string]Action{ItemBody: GuardReplaced}},
		{name: "log mode sends", guard: GuardLog, in: response("180 Ringing", "Contact: <sip:100@10.0.0.10>", "Content-Length: 0"),
			send: true, want: []string{"10.0.0.10"}, counted: map[string]Action{"Contact": GuardLogged}},
		{name: "off", guard: GuardOff, in: response("180 Ringing (pbx.corp.local)", "Contact: <sip:100@10.0.0.10>", "Content-Length: 0"),
			send: true, want: []string{"10.0.0.10", "(pbx.corp.local)"}},
		{name: "not SIP", in: []byte("\x16\x03\x01 10.0.0.10"), send: false, counted: map[string]Action{ItemOther: GuardBlocked}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, r := leaky(t, Config{Guard: tc.guard})
			out, send := p.Outbound(tc.in)
			if send != tc.send {
				t.Fatalf("send = %v, want %v; out:\n%s", send, tc.send, out)
			}
			if !send && out != nil {
				t.Errorf("nothing to send, but out = %q", out)
			}
			for _, w := range tc.want {
				if !bytes.Contains(out, []byte(w)) {
					t.Errorf("sent lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.notWant {
				if bytes.Contains(out, []byte(w)) {
					t.Errorf("sent holds %q:\n%s", w, out)
				}
			}
			for item, a := range tc.counted {
				if r.Count(item, a) != 1 {
					t.Errorf("%s %s counted %d, want 1", item, a, r.Count(item, a))
				}
			}
			if send && p.GuardMode() == GuardBlock {
				m, ok := splitWire(out)
				if !ok {
					t.Fatalf("sent bytes do not read as SIP:\n%q", out)
				}
				if fs := p.findings(m); len(fs) != 0 {
					t.Errorf("sent bytes still leak %+v", fs)
				}
				if n, _ := strconv.Atoi(headerValue(m, "content-length")); n != len(m.body) {
					t.Errorf("Content-Length %d for a body of %d", n, len(m.body))
				}
			}
		})
	}
}

func headerValue(m *wireMsg, name string) string {
	for _, h := range m.headers {
		if h.name == name {
			_, v, _ := strings.Cut(h.raw, ":")
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// logRecords collects log records.
type logRecords struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r)
	return nil
}
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecords) WithGroup(string) slog.Handler      { return l }

func TestReportRateLimited(t *testing.T) {
	var logs logRecords
	now := time.Unix(1000, 0)
	r := NewReport(slog.New(&logs), func() time.Time { return now })
	for range 3 {
		r.Note(ItemReasonPhrase, Rewritten, "486 Busy Here (Asterisk)")
	}
	r.Note("Contact", GuardBlocked, "10.0.0.10")
	r.Note("X-Never-Heard-Of", Removed, "x")
	if len(logs.recs) != 3 {
		t.Fatalf("%d log lines, want 3 (one per item)", len(logs.recs))
	}
	if logs.recs[1].Level != slog.LevelError || logs.recs[0].Level != slog.LevelInfo {
		t.Errorf("levels %v %v", logs.recs[0].Level, logs.recs[1].Level)
	}
	now = now.Add(ReportInterval)
	r.Note(ItemReasonPhrase, Rewritten, strings.Repeat("long ", 50))
	if len(logs.recs) != 4 {
		t.Fatalf("%d log lines after the interval, want 4", len(logs.recs))
	}
	attrs := map[string]string{}
	logs.recs[3].Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
	if attrs["since_last_line"] != "2" || attrs["item"] != ItemReasonPhrase || len(attrs["detail"]) > 90 {
		t.Errorf("line after the interval: %v", attrs)
	}
	if n := r.Count(ItemReasonPhrase, Rewritten); n != 4 {
		t.Errorf("count %d, want 4", n)
	}
	if n := r.Count(ItemOther, Removed); n != 1 {
		t.Errorf("an unknown item counted as %d others, want 1", n)
	}
	seen := 0
	r.Counts(func(item string, a Action, n int64) { seen++ })
	if seen != 3 {
		t.Errorf("Counts gave %d series, want 3", seen)
	}
	var nilReport *Report
	nilReport.Note(ItemOther, Removed, "") // no panic
}

func FuzzOutbound(f *testing.F) {
	f.Add(response("486 Busy Here (Asterisk)", "Contact: <sip:100@10.0.0.10>", "Content-Length: 0"))
	f.Add(response("200 OK", "Subject: 10%2E0.0.10", "Content-Type: application/sdp", "Content-Length: N", "", "v=0\r\ns=x\r\na=tool:10.0.0.10\r\n"))
	f.Add(msg("NOTIFY sip:a@b SIP/2.0", "Content-Type: message/sipfrag", "Content-Length: N", "", "SIP/2.0 200 OK pbx.corp.local\r\n"))
	f.Add([]byte("SIP/2.0 100\r\n\r\n"))
	p, _ := New(Config{InternalNames: []string{"pbx.corp.local"}}, func(a netip.Addr) bool { return a.Is4() && a.As4()[0] == 10 })
	f.Fuzz(func(t *testing.T, in []byte) {
		out, send := p.Outbound(in)
		if !send {
			return
		}
		if _, leak := p.Scan(out); !leak {
			return
		}
		// What goes out with a leak must be SIP whose only leaks are in
		// the headers a response echoes from its request.
		m, ok := splitWire(out)
		if !ok {
			t.Fatalf("sent unreadable bytes with a leak: %q", out)
		}
		if fs := p.findings(m); len(fs) != 0 {
			t.Fatalf("sent %q with leaks %+v", out, fs)
		}
	})
}

func TestGuardRTCP(t *testing.T) {
	for _, tc := range []struct {
		guard string
		pkt   string
		pass  bool
		a     Action
	}{
		{GuardBlock, "\x81\xca\x00\x01cname", true, nActions},
		{GuardBlock, "\x81\xca\x00\x01x10.0.0.10", false, GuardBlocked},
		{GuardLog, "\x81\xca\x00\x01x10.0.0.10", true, GuardLogged},
		{GuardOff, "\x81\xca\x00\x01x10.0.0.10", true, nActions},
	} {
		p, r := leaky(t, Config{Guard: tc.guard})
		if got := p.GuardRTCP([]byte(tc.pkt)); got != tc.pass {
			t.Errorf("%s %q: %v, want %v", tc.guard, tc.pkt, got, tc.pass)
		}
		if tc.a != nActions && r.Count(ItemRTCPPacket, tc.a) != 1 {
			t.Errorf("%s: %s not counted", tc.guard, tc.a)
		}
	}
	r := NewReport(nil, nil)
	r.RTCP("rtcp:cname", 2)
	r.RTCP("rtcp:tool", 1)
	if r.Count("rtcp:cname", Rewritten) != 2 || r.Count("rtcp:tool", Removed) != 1 {
		t.Error("RTCP items not counted")
	}
}
