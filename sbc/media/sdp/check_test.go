package sdp

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// checkBase is a plain offer; cases replace or add lines.
var checkBase = []string{
	"v=0",
	"o=- 1 1 IN IP4 192.0.2.10",
	"s=-",
	"c=IN IP4 192.0.2.10",
	"t=0 0",
	"m=audio 49170 RTP/AVP 0 8 101",
	"a=rtpmap:0 PCMU/8000",
	"a=rtpmap:8 PCMA/8000",
	"a=rtpmap:101 telephone-event/8000",
	"a=fmtp:101 0-16",
	"a=ptime:20",
	"a=sendrecv",
}

// with returns checkBase with line i (0-based) replaced by repl; i past
// the end appends.
func with(i int, repl ...string) []string {
	out := slices.Clone(checkBase)
	if i >= len(out) {
		return append(out, repl...)
	}
	return slices.Concat(out[:i], repl, out[i+1:])
}

// extra returns checkBase plus lines.
func extra(lines ...string) []string { return with(len(checkBase), lines...) }

func repeat(line string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strings.ReplaceAll(line, "#", strconv.Itoa(i))
	}
	return out
}

// mediaLines is n audio sections.
func mediaLines(n int) []string {
	var out []string
	for i := range n {
		out = append(out, "m=audio "+strconv.Itoa(50000+2*i)+" RTP/AVP 0")
	}
	return out
}

func TestCheckRefused(t *testing.T) {
	long := "a=x-long:" + strings.Repeat("a", MaxLineLength-len("a=x-long:")+1)
	tests := []struct {
		name  string
		lines []string
		line  int    // the line the refusal names (1-based), 0 for the body
		why   string // part of the reason
	}{
		// Payload types on the m= line (RFC 3551: 7 bits).
		{"pt 128", with(5, "m=audio 49170 RTP/AVP 0 128"), 6, "payload type not 0-127"},
		{"pt 255", with(5, "m=audio 49170 RTP/AVP 255"), 6, "payload type not 0-127"},
		{"pt 4 digits", with(5, "m=audio 49170 RTP/AVP 0101"), 6, "payload type not 0-127"},
		{"pt negative", with(5, "m=audio 49170 RTP/AVP -1"), 6, "payload type not 0-127"},
		{"pt name on RTP", with(5, "m=audio 49170 RTP/AVP PCMU"), 6, "payload type not 0-127"},
		{"pt twice", with(5, "m=audio 49170 RTP/AVP 0 8 0"), 6, "listed twice"},
		{"pt SAVPF", with(5, "m=audio 49170 UDP/TLS/RTP/SAVPF 111 300"), 6, "payload type not 0-127"},
		{"format twice udptl", with(5, "m=image 4000 udptl t38 t38"), 6, "listed twice"},
		{"too many formats", with(5, "m=video 5000 RTP/AVP "+strings.Join(repeat("#", MaxFormats+1), " ")), 6, "more than 32 formats"},
		{"no format", with(5, "m=audio 49170 RTP/AVP"), 6, "without a format"},
		{"no format trailing space", with(5, "m=audio 49170 RTP/AVP   "), 6, "without a format"},
		{"bad proto", with(5, "m=audio 49170 RTP//AVP 0"), 6, "transport protocol"},
		{"bad media", with(5, "m=au(dio 49170 RTP/AVP 0"), 6, "media type"},
		// Ports and port counts.
		{"port 65536", with(5, "m=audio 65536 RTP/AVP 0"), 6, "port not 0-65535"},
		{"port 99999", with(5, "m=audio 99999 RTP/AVP 0"), 6, "port not 0-65535"},
		{"port 6 digits", with(5, "m=audio 049170 RTP/AVP 0"), 6, "port not 0-65535"},
		{"port sign", with(5, "m=audio +5000 RTP/AVP 0"), 6, "port not 0-65535"},
		{"port letters", with(5, "m=audio 4917a RTP/AVP 0"), 6, "port not 0-65535"},
		{"count 0", with(5, "m=audio 49170/0 RTP/AVP 0"), 6, "port count not 1-8"},
		{"count 9", with(5, "m=audio 49170/9 RTP/AVP 0"), 6, "port count not 1-8"},
		{"count empty", with(5, "m=audio 49170/ RTP/AVP 0"), 6, "port count not 1-8"},
		{"count past 65535 RTP", with(5, "m=audio 65532/3 RTP/AVP 0"), 6, "beyond 65535"},
		{"count past 65535", with(5, "m=image 65535/2 udptl t38"), 6, "beyond 65535"},
		{"too many m=", slices.Concat(checkBase[:5], mediaLines(MaxInboundMedia+1)), 5 + MaxInboundMedia + 1, "more than 8 m= lines"},
		// Counts per level.
		{"attributes session", slices.Concat(checkBase[:5], repeat("a=x-#", MaxAttributes+1), checkBase[5:]), 5 + MaxAttributes + 1, "more than 128 a= lines"},
		{"attributes media", extra(repeat("a=x-#", MaxAttributes-5)...), len(checkBase) + MaxAttributes - 5, "more than 128 a= lines"},
		{"bandwidths", extra(repeat("b=X-#:64", MaxBandwidths+1)...), len(checkBase) + MaxBandwidths + 1, "more than 4 b= lines"},
		// Lines and characters.
		{"line too long", extra(long), len(checkBase) + 1, "longer than 1024 bytes"},
		{"NUL", with(2, "s=a\x00b"), 3, "NUL or CR"},
		{"bare CR", with(6, "a=rtpmap:0 PCMU/8000\ra=ptime:10"), 7, "NUL or CR"},
		{"escape", with(2, "s=\x1b[31m"), 3, "control character"},
		{"DEL", with(2, "s=\x7f"), 3, "control character"},
		{"C1 control", with(2, "s=\u0085"), 3, "control character"},
		{"invalid UTF-8", with(2, "s=\xff\xfe"), 3, "invalid UTF-8"},
		{"empty line inside", with(4, "t=0 0", ""), 6, "empty line inside"},
		{"not type=value", with(2, "s"), 3, "not <type>=<value>"},
		{"upper-case type", with(2, "S=-"), 3, "not <type>=<value>"},
		{"space before =", with(5, "m =audio 49170 RTP/AVP 0"), 6, "not <type>=<value>"},
		{"unknown type", extra("y=1"), len(checkBase) + 1, "unknown type y="},
		{"v= not first", with(0, "o=- 1 1 IN IP4 192.0.2.10"), 1, "v=0"},
		{"v=1", with(0, "v=1"), 1, "v=0"},
		{"v= twice", extra("v=0"), len(checkBase) + 1, "v=0"},
		{"empty body", nil, 0, "body empty"},
		{"only blank lines", []string{"", ""}, 0, "body empty"},
		// c= (RFC 8866 section 5.7).
		{"c= IP4 with IPv6", with(3, "c=IN IP4 2001:db8::1"), 4, "does not match its address type"},
		{"c= IP6 with IPv4", with(3, "c=IN IP6 192.0.2.10"), 4, "does not match its address type"},
		{"c= IP5", with(3, "c=IN IP5 192.0.2.10"), 4, "address type is not IP4 or IP6"},
		{"c= ATM", with(3, "c=ATM NSAP 47.0091"), 4, "network type is not IN"},
		{"c= bad octet", with(3, "c=IN IP4 999.1.1.1"), 4, "neither an IP address"},
		{"c= zone", with(3, "c=IN IP6 fe80::1%eth0"), 4, "zone"},
		{"c= unicast TTL", with(3, "c=IN IP4 192.0.2.10/127"), 4, "TTL or count"},
		{"c= TTL 256", with(3, "c=IN IP4 224.2.1.1/256"), 4, "TTL or count"},
		{"c= too few fields", with(3, "c=IN IP4"), 4, "not IN IP4|IP6"},
		{"c= too many fields", with(3, "c=IN IP4 192.0.2.10 x"), 4, "not IN IP4|IP6"},
		{"c= name with suffix", with(3, "c=IN IP4 media.example.com/127"), 4, "neither an IP address"},
		{"c= garbage", with(3, "c=IN IP4 a_b"), 4, "neither an IP address"},
		{"attribute name", extra("a=bad name:1"), len(checkBase) + 1, "bad attribute name"},
		{"attribute empty name", extra("a=:1"), len(checkBase) + 1, "bad attribute name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := ""
			if tc.lines != nil {
				body = crlf(tc.lines...)
			}
			out, dropped, err := Check([]byte(body))
			var ce *CheckError
			if !errors.As(err, &ce) || !errors.Is(err, ErrRefused) {
				t.Fatalf("Check() = %q, %v, %v; want a refusal", out, dropped, err)
			}
			if out != nil || dropped != nil {
				t.Errorf("refusal with output %q, %v", out, dropped)
			}
			if ce.Line != tc.line || !strings.Contains(ce.Reason, tc.why) {
				t.Errorf("refused at line %d for %q; want line %d, %q", ce.Line, ce.Reason, tc.line, tc.why)
			}
			checkWarning(t, ce.Warning())
		})
	}
}

// checkWarning: the text fits in a Warning's quoted string and carries
// nothing but printable ASCII.
func checkWarning(t *testing.T, w string) {
	t.Helper()
	if w == "" || len(w) > 120 {
		t.Errorf("warning %q: empty or longer than 120 bytes", w)
	}
	for _, c := range []byte(w) {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			t.Fatalf("warning %q has byte %#x", w, c)
		}
	}
}

func TestCheckDropped(t *testing.T) {
	n := len(checkBase)
	tests := []struct {
		name  string
		lines []string
		drop  []int  // lines dropped (1-based)
		why   string // part of the first reason
	}{
		// rtpmap must name a payload type of its m= line (RFC 8866 6.6).
		{"rtpmap not listed", extra("a=rtpmap:96 opus/48000/2"), []int{n + 1}, "rtpmap payload type not on its m= line"},
		{"rtpmap 128", extra("a=rtpmap:128 PCMU/8000"), []int{n + 1}, "not on its m= line"},
		{"rtpmap 65536", extra("a=rtpmap:65536 PCMU/8000"), []int{n + 1}, "not on its m= line"},
		{"rtpmap no pt", extra("a=rtpmap:"), []int{n + 1}, "not on its m= line"},
		{"rtpmap twice", extra("a=rtpmap:0 PCMA/8000"), []int{n + 1}, "repeated"},
		{"rtpmap no clock", with(6, "a=rtpmap:0 PCMU"), []int{7}, "clock rate"},
		{"rtpmap clock 0", with(6, "a=rtpmap:0 PCMU/0"), []int{7}, "clock rate"},
		{"rtpmap clock huge", with(6, "a=rtpmap:0 PCMU/1000001"), []int{7}, "clock rate"},
		{"rtpmap clock 8 digits", with(6, "a=rtpmap:0 PCMU/80000000"), []int{7}, "clock rate"},
		{"rtpmap channels 0", with(6, "a=rtpmap:0 PCMU/8000/0"), []int{7}, "channels"},
		{"rtpmap channels 256", with(6, "a=rtpmap:0 PCMU/8000/256"), []int{7}, "channels"},
		{"rtpmap bad name", with(6, "a=rtpmap:0 PC MU/8000"), []int{7}, "clock rate"},
		{"rtpmap session level", with(4, "t=0 0", "a=rtpmap:0 PCMU/8000"), []int{6}, "session level"},
		{"rtpmap udptl", []string{"v=0", "o=- 1 1 IN IP4 192.0.2.10", "s=-", "c=IN IP4 192.0.2.10", "t=0 0", "m=image 4000 udptl t38", "a=rtpmap:0 PCMU/8000", "a=T38FaxVersion:0"}, []int{7}, "not RTP"},
		// fmtp and rtcp-fb likewise.
		{"fmtp not listed", extra("a=fmtp:96 mode=30"), []int{n + 1}, "fmtp payload type not on its m= line"},
		{"fmtp 300", extra("a=fmtp:300 x"), []int{n + 1}, "fmtp payload type"},
		{"fmtp session level", with(4, "t=0 0", "a=fmtp:101 0-16"), []int{6}, "fmtp at session level"},
		{"fmtp udptl other", []string{"v=0", "o=- 1 1 IN IP4 192.0.2.10", "s=-", "t=0 0", "m=image 4000 udptl t38", "c=IN IP4 192.0.2.10", "a=fmtp:t39 x"}, []int{7}, "fmtp format not on its m= line"},
		{"rtcp-fb 128", extra("a=rtcp-fb:128 nack"), []int{n + 1}, "rtcp-fb payload type"},
		{"rtcp-fb not listed", extra("a=rtcp-fb:96 nack pli"), []int{n + 1}, "rtcp-fb payload type"},
		{"rtcp-fb star alone", extra("a=rtcp-fb:*"), []int{n + 1}, "rtcp-fb payload type"},
		// ptime and maxptime (RFC 8866 6.4, 6.5; bounds from RFC 3551 4.2).
		{"ptime 0", with(10, "a=ptime:0"), []int{11}, "ptime not 1-200 ms"},
		{"ptime 0.5", with(10, "a=ptime:0.5"), []int{11}, "ptime not"},
		{"ptime 201", with(10, "a=ptime:201"), []int{11}, "ptime not"},
		{"ptime 65535", with(10, "a=ptime:65535"), []int{11}, "ptime not"},
		{"ptime huge", with(10, "a=ptime:99999999999999999999"), []int{11}, "ptime not"},
		{"ptime negative", with(10, "a=ptime:-20"), []int{11}, "ptime not"},
		{"ptime text", with(10, "a=ptime:twenty"), []int{11}, "ptime not"},
		{"ptime empty", with(10, "a=ptime:"), []int{11}, "ptime not"},
		{"ptime no value", with(10, "a=ptime"), []int{11}, "ptime not"},
		{"ptime dot", with(10, "a=ptime:20."), []int{11}, "ptime not"},
		{"ptime 4 decimals", with(10, "a=ptime:20.1234"), []int{11}, "ptime not"},
		{"ptime exponent", with(10, "a=ptime:2e1"), []int{11}, "ptime not"},
		{"ptime session level", with(4, "t=0 0", "a=ptime:1000"), []int{6}, "ptime not"},
		{"maxptime 0", extra("a=maxptime:0"), []int{n + 1}, "maxptime not 1-1000 ms"},
		{"maxptime 1001", extra("a=maxptime:1001"), []int{n + 1}, "maxptime not"},
		{"maxptime 4294967296", extra("a=maxptime:4294967296"), []int{n + 1}, "maxptime not"},
		// b= (RFC 8866 5.8).
		{"b= too large", with(4, "b=AS:1000000001", "t=0 0"), []int{5}, "b= not"},
		{"b= 11 digits", with(4, "b=TIAS:99999999999", "t=0 0"), []int{5}, "b= not"},
		{"b= negative", extra("b=AS:-1"), []int{n + 1}, "b= not"},
		{"b= empty", extra("b=AS:"), []int{n + 1}, "b= not"},
		{"b= no colon", extra("b=AS"), []int{n + 1}, "b= not"},
		{"b= bad type", extra("b=A S:64"), []int{n + 1}, "b= not"},
		{"b= decimal", extra("b=AS:6.4"), []int{n + 1}, "b= not"},
		// a=rtcp (RFC 3605).
		{"rtcp port", extra("a=rtcp:65536"), []int{n + 1}, "rtcp not"},
		{"rtcp family", extra("a=rtcp:49171 IN IP4 2001:db8::1"), []int{n + 1}, "rtcp not"},
		{"rtcp name", extra("a=rtcp:49171 IN IP4 media.example.com"), []int{n + 1}, "rtcp not"},
		{"rtcp session level", with(4, "t=0 0", "a=rtcp:49171"), []int{6}, "rtcp at session level"},
		// Several in one body, and a body ending without a line end.
		{"several", extra("a=rtpmap:96 opus/48000/2", "a=fmtp:96 x", "a=maxptime:0", "a=sendonly"), []int{n + 1, n + 2, n + 3}, "rtpmap"},
		{"two sections", slices.Concat(checkBase, []string{"m=video 5000 RTP/AVP 96", "a=rtpmap:0 PCMU/8000", "a=rtpmap:96 H264/90000"}), []int{n + 2}, "not on its m= line"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, ending := range []string{"\r\n", "\n"} {
				body := strings.Join(tc.lines, ending) + ending
				out, dropped, err := Check([]byte(body))
				if err != nil {
					t.Fatalf("Check() refused: %v", err)
				}
				var lines []int
				for _, d := range dropped {
					lines = append(lines, d.Line)
					checkWarning(t, d.Reason)
				}
				if !slices.Equal(lines, tc.drop) || !strings.Contains(dropped[0].Reason, tc.why) {
					t.Fatalf("dropped %+v; want lines %v, %q", dropped, tc.drop, tc.why)
				}
				var want []string
				for i, l := range tc.lines {
					if !slices.Contains(tc.drop, i+1) {
						want = append(want, l)
					}
				}
				if w := strings.Join(want, ending) + ending; string(out) != w {
					t.Errorf("output\n%q\nwant\n%q", out, w)
				}
				again, d2, err := Check(out)
				if err != nil || d2 != nil || string(again) != string(out) {
					t.Errorf("output does not pass Check unchanged: %v %v", d2, err)
				}
			}
		})
	}
}

func TestCheckAccepted(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
	}{
		{"base", checkBase},
		{"port 0 rejected stream", with(5, "m=audio 0 RTP/AVP 0 8 101")},
		{"port 65535", with(5, "m=audio 65535 RTP/AVP 0 8 101")},
		{"port count", with(5, "m=audio 49170/2 RTP/AVP 0 8 101")},
		{"port count 8 at the top", with(5, "m=audio 65520/8 RTP/AVP 0 8 101")},
		{"pt 127 and 0", with(5, "m=audio 49170 RTP/AVP 0 8 101 127")},
		{"32 formats", slices.Concat(checkBase[:5], []string{"m=video 5000 RTP/AVP " + strings.Join(repeat("#", MaxFormats), " ")})},
		{"8 m= lines", slices.Concat(checkBase[:5], mediaLines(MaxInboundMedia))},
		{"128 attributes per level", slices.Concat(checkBase[:5], repeat("a=x-#", MaxAttributes), checkBase[5:6], repeat("a=y-#", MaxAttributes))},
		{"4 b= per level", slices.Concat(checkBase[:4], repeat("b=X-#:64", MaxBandwidths), checkBase[4:6], repeat("b=Y-#:64", MaxBandwidths))},
		{"line of 1024 bytes", extra("a=x-long:" + strings.Repeat("a", MaxLineLength-len("a=x-long:")))},
		{"ptime bounds", with(10, "a=ptime:1", "a=ptime:200", "a=ptime:2.5", "a=ptime:20.125")},
		{"maxptime bounds", extra("a=maxptime:1", "a=maxptime:240", "a=maxptime:1000")},
		{"b= bounds", extra("b=AS:0", "b=TIAS:1000000000", "b=X-YZ:64")},
		{"rtcp-fb", extra("a=rtcp-fb:* nack", "a=rtcp-fb:101 ccm fir")},
		{"rtpmap channels and rates", with(8, "a=rtpmap:101 telephone-event/48000/255")},
		{"rtpmap lowercase attr name", with(6, "a=RTPMAP:0 PCMU/8000")},
		{"c= IPv6", with(3, "c=IN IP6 2001:db8::10")},
		{"c= host name", with(3, "c=IN IP4 media.example.com")},
		{"c= multicast", with(3, "c=IN IP4 224.2.1.1/127/3")},
		{"c= IPv6 multicast", with(3, "c=IN IP6 ff15::101/3")},
		{"c= hold", with(3, "c=IN IP4 0.0.0.0")},
		{"rtcp", extra("a=rtcp:49171", "a=x-other:1")},
		{"rtcp address", extra("a=rtcp:49171 IN IP6 2001:db8::1")},
		{"udptl formats", []string{"v=0", "o=- 1 1 IN IP4 192.0.2.10", "s=-", "c=IN IP4 192.0.2.10", "t=0 0", "m=image 4000 udptl t38", "a=fmtp:t38 x", "a=T38FaxVersion:0"}},
		{"msrp", []string{"v=0", "o=- 1 1 IN IP4 192.0.2.10", "s=-", "c=IN IP4 192.0.2.10", "t=0 0", "m=message 7394 TCP/MSRP *", "a=accept-types:text/plain"}},
		{"UTF-8 session name", with(2, "s=Café ☎")},
		{"tab", with(2, "s=a\tb")},
		{"trailing blank lines", append(slices.Clone(checkBase), "", "")},
		{"unknown attribute", extra("a=x-vendor:anything at all")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(crlf(tc.lines...))
			out, dropped, err := Check(body)
			if err != nil || dropped != nil {
				t.Fatalf("Check() = %v, %v; want the body as it is", dropped, err)
			}
			if &out[0] != &body[0] || len(out) != len(body) {
				t.Errorf("accepted body was copied or changed")
			}
		})
	}
}

// TestCheckLimits: the body-wide limits are Parse's.
func TestCheckLimits(t *testing.T) {
	big := crlf(checkBase...) + "a=x-pad:" + strings.Repeat("a", 900) + "\r\n"
	for len(big) <= MaxSize {
		big += "s=" + strings.Repeat("a", 900) + "\r\n" // s= repeats: only its value is checked
	}
	if _, _, err := Check([]byte(big)); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("body of %d bytes: %v", len(big), err)
	}
	many := crlf(checkBase...) + strings.Repeat("t=0 0\r\n", MaxLines-len(checkBase)+1)
	if _, _, err := Check([]byte(many)); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "more than 1024 lines") {
		t.Errorf("%d lines: %v", MaxLines+1, err)
	}
	exact := crlf(checkBase...) + strings.Repeat("t=0 0\r\n", MaxLines-len(checkBase))
	if _, _, err := Check([]byte(exact)); err != nil {
		t.Errorf("%d lines: %v", MaxLines, err)
	}
}

// TestCheckSamples: real bodies from phones, PBXs and browsers, and every
// body of the RFC 3665 and RFC 4475 messages that Parse takes, pass as
// they are; but for the RFC 4475 bodies' "a=rtpmap:31 LPC", which has no
// clock rate (RFC 8866 section 6.6 requires one) and is dropped.
func TestCheckSamples(t *testing.T) {
	for _, sm := range samples {
		out, dropped, err := Check([]byte(sm.body))
		if err != nil || dropped != nil || string(out) != sm.body {
			t.Errorf("%s: Check() = %v, %v", sm.name, dropped, err)
		}
	}
	var bodies []string
	flows, _ := filepath.Glob(filepath.Join("testdata", "rfc3665", "*.yaml"))
	for _, f := range flows {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var msgs []string
		if err := yaml.Unmarshal(data, &msgs); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, msg := range msgs {
			if head, body, _ := strings.Cut(msg, "\n\n"); isSDP(head) {
				bodies = append(bodies, body)
			}
		}
	}
	torture, _ := filepath.Glob(filepath.Join("..", "..", "..", "testdata", "rfc4475", "*.dat"))
	for _, f := range torture {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if head, body, _ := strings.Cut(string(data), "\r\n\r\n"); isSDP(head) {
			bodies = append(bodies, body)
		}
	}
	if len(bodies) < 80 {
		t.Fatalf("only %d bodies found", len(bodies))
	}
	lpc := 0
	for i, b := range bodies {
		if _, err := Parse([]byte(b)); err != nil {
			continue // a body the relay refuses anyway
		}
		out, dropped, err := Check([]byte(b))
		if err != nil {
			t.Errorf("body %d: %v\n%s", i, err, b)
			continue
		}
		want := b
		if len(dropped) == 1 && strings.Contains(b, "\na=rtpmap:31 LPC\r\n") {
			lpc++
			want = strings.Replace(b, "a=rtpmap:31 LPC\r\n", "", 1)
		} else if dropped != nil {
			t.Errorf("body %d: dropped %v\n%s", i, dropped, b)
		}
		if string(out) != want {
			t.Errorf("body %d: output\n%q\nwant\n%q", i, out, want)
		}
	}
	if lpc == 0 {
		t.Errorf("no RFC 4475 body with a=rtpmap:31 LPC checked")
	}
}

// TestCheckErrorsQuoteNothing: neither a refusal nor a drop reason repeats
// bytes of the body.
func TestCheckErrorsQuoteNothing(t *testing.T) {
	const mark = "QQQ"
	for _, lines := range [][]string{
		with(5, "m=audio 49170 RTP/AVP 0 QQQ"),
		with(5, "m=audio QQQ RTP/AVP 0"),
		with(3, "c=IN IP4 QQQ_"),
		with(3, "c=IN QQQ 1.2.3.4"),
		extra("a=QQQ QQQ:1"),
		extra("q=QQQ"),
	} {
		_, _, err := Check([]byte(crlf(lines...)))
		if err == nil || strings.Contains(err.Error(), mark) {
			t.Errorf("%q: %v", lines, err)
		}
	}
	_, dropped, err := Check([]byte(crlf(extra("a=rtpmap:96 QQQ/8000", "a=ptime:QQQ", "b=QQQ:QQQ")...)))
	if err != nil || len(dropped) != 3 {
		t.Fatalf("Check() = %v, %v", dropped, err)
	}
	for _, d := range dropped {
		if strings.Contains(d.Reason, mark) {
			t.Errorf("reason %q", d.Reason)
		}
	}
}
