package wire

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const invite = "INVITE sip:bob@example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds\r\n" +
	"Max-Forwards: 70\r\n" +
	"To: Bob <sip:bob@example.com>\r\n" +
	"From: \"Alice\" <sip:alice@example.org>;tag=1928301774\r\n" +
	"Call-ID: a84b4c76e66710@pc33.example.org\r\n" +
	"CSeq: 314159 INVITE\r\n" +
	"Contact: <sip:alice@192.0.2.10:5060>\r\n" +
	"Content-Type: application/sdp\r\n" +
	"Content-Length: 4\r\n" +
	"\r\n" +
	"v=0\n"

func TestPreParse(t *testing.T) {
	cases := []struct {
		name      string
		transport string
		data      string
		max       int
		action    Action
		reason    Reason
		pong      bool
		dataLen   int // expected len(Data) for Accept; -1 = whole input
	}{
		{"invite", "udp", invite, 0, Accept, ReasonNone, false, -1},
		{"invite tcp", "tcp", invite, 0, Accept, ReasonNone, false, -1},
		{"invite ws", "WS", invite, 0, Accept, ReasonNone, false, -1},
		{"leading CRLF tcp", "tcp", "\r\n\r\n" + invite, 0, Accept, ReasonNone, false, len(invite)},
		{"leading CRLF udp", "udp", "\r\n" + invite, 0, Drop, ReasonStartLine, false, 0},
		{"trailing bytes", "udp", invite + "INVITE sip:x SIP/2.0\r\n", 0, Accept, ReasonNone, false, len(invite)},
		{"ping udp", "udp", "\r\n\r\n", 0, Keepalive, ReasonNone, false, 0},
		{"ping tcp", "tcp", "\r\n\r\n", 0, Keepalive, ReasonNone, true, 0},
		{"pong tcp", "TLS", "\r\n", 0, Keepalive, ReasonNone, false, 0},
		{"three CRLF", "udp", "\r\n\r\n\r\n", 0, Drop, ReasonStartLine, false, 0},
		{"only CRLF stream", "tcp", "\r\n\r\n\r\n", 0, Drop, ReasonEmpty, false, 0},
		{"empty", "udp", "", 0, Drop, ReasonEmpty, false, 0},
		{"too large", "udp", invite, 100, Drop, ReasonTooLarge, false, 0},
		{"no CRLF", "udp", "INVITE sip:bob@example.com SIP/2.0", 0, Drop, ReasonStartLine, false, 0},
		{"LF only", "udp", strings.ReplaceAll(invite, "\r\n", "\n"), 0, Drop, ReasonLineEnding, false, 0},
		{"response", "udp", "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", 0, Accept, ReasonNone, false, -1},
		{"response 1.0", "udp", "SIP/1.0 200 OK\r\n\r\n", 0, Drop, ReasonStartLine, false, 0},
		{"response 700", "udp", "SIP/2.0 700 X\r\n\r\n", 0, Drop, ReasonStartLine, false, 0},
		{"response 4 digits", "udp", "SIP/2.0 2000 X\r\n\r\n", 0, Drop, ReasonStartLine, false, 0},
		{"response no SP", "udp", "SIP/2.0 200\r\n\r\n", 0, Drop, ReasonStartLine, false, 0},
		{"method not token", "udp", "INV\"ITE sip:a@b SIP/2.0\r\n\r\n", 0, Drop, ReasonStartLine, false, 0},
		{"no scheme", "udp", "INVITE bob@example.com SIP/2.0\r\n\r\n", 0, Drop, ReasonStartLine, false, 0},
		{"scheme digit first", "udp", "INVITE 1sip:bob SIP/2.0\r\n\r\n", 0, Drop, ReasonStartLine, false, 0},
		{"uri non-ascii", "udp", "INVITE sip:b\xc3\xa9b@example.com SIP/2.0\r\n\r\n", 0, Drop, ReasonStartLine, false, 0},
		{"version lower", "udp", "INVITE sip:a@b sip/2.0\r\n\r\n", 0, Drop, ReasonStartLine, false, 0},
		{"version long", "udp", "INVITE sip:a@b SIP/2222.0\r\n\r\n", 0, Drop, ReasonStartLine, false, 0},
		{"version 7", "udp", "INVITE sip:a@b SIP/7.0\r\n\r\n", 0, Accept, ReasonNone, false, -1},
		{"NUL in start line", "udp", "INVITE sip:a@b\x00 SIP/2.0\r\n\r\n", 0, Drop, ReasonControlChar, false, 0},
		{"no header end", "udp", "INVITE sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\n", 0, Drop, ReasonNoHeaderEnd, false, 0},
		{"CR at end", "udp", "INVITE sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r", 0, Drop, ReasonNoHeaderEnd, false, 0},
		{"CR CR", "udp", "INVITE sip:a@b SIP/2.0\r\n\r\r", 0, Drop, ReasonLineEnding, false, 0},
		{"missing length tcp", "tcp", "OPTIONS sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\n\r\n", 0, Drop, ReasonMissingLength, false, 0},
		{"missing length udp", "udp", "OPTIONS sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\n\r\n", 0, Accept, ReasonNone, false, -1},
		{"folded length", "udp", "OPTIONS sip:a@b SIP/2.0\r\nContent-Length:\r\n 2\r\n\r\nab", 0, Accept, ReasonNone, false, -1},
		{"length 2^32-1", "udp", "OPTIONS sip:a@b SIP/2.0\r\nl: 4294967295\r\n\r\nab", 0, Drop, ReasonTruncatedBody, false, 0},
		{"length huge", "udp", "OPTIONS sip:a@b SIP/2.0\r\nl: 99999999999999999999999999\r\n\r\nab", 0, Drop, ReasonTruncatedBody, false, 0},
		{"length plus", "udp", "OPTIONS sip:a@b SIP/2.0\r\nl: +2\r\n\r\nab", 0, Drop, ReasonContentLength, false, 0},
		{"length inner space", "udp", "OPTIONS sip:a@b SIP/2.0\r\nl: 1 2\r\n\r\nab", 0, Drop, ReasonContentLength, false, 0},
		{"method case", "udp", "OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 options\r\n\r\n", 0, Drop, ReasonMethodCase, false, 0},
		{"method differs", "udp", "OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n", 0, Accept, ReasonNone, false, -1},
		{"display name comma", "udp", "OPTIONS sip:a@b SIP/2.0\r\nf: a, b <sip:a@b>\r\n\r\n", 0, Drop, ReasonAddressSyntax, false, 0},
		{"display name quoted comma", "udp", "OPTIONS sip:a@b SIP/2.0\r\nf: \"a, b\" <sip:a@b>\r\n\r\n", 0, Accept, ReasonNone, false, -1},
		{"display name escaped quote", "udp", "OPTIONS sip:a@b SIP/2.0\r\nf: \"a\\\" <b\" <sip:a@b>\r\n\r\n", 0, Accept, ReasonNone, false, -1},
		{"unterminated quote", "udp", "OPTIONS sip:a@b SIP/2.0\r\nT: \"a <sip:a@b>\r\n\r\n", 0, Drop, ReasonAddressSyntax, false, 0},
		{"unclosed bracket", "udp", "OPTIONS sip:a@b SIP/2.0\r\nTo: <sip:a@b\r\n\r\n", 0, Drop, ReasonAddressSyntax, false, 0},
		{"contact list", "udp", "OPTIONS sip:a@b SIP/2.0\r\nm: \"x, y\" <sip:a@b>;q=0.5, sip:c@d;expires=3\r\n\r\n", 0, Accept, ReasonNone, false, -1},
		{"contact star", "udp", "REGISTER sip:b SIP/2.0\r\nContact: *\r\n\r\n", 0, Accept, ReasonNone, false, -1},
		{"contact question bare", "udp", "REGISTER sip:b SIP/2.0\r\nContact: <sip:x@y>, sip:a@b?x=y\r\n\r\n", 0, Drop, ReasonAddressSyntax, false, 0},
		{"tag twice", "udp", "OPTIONS sip:a@b SIP/2.0\r\nt: <sip:a@b>;tag=1 ; Tag = 2\r\n\r\n", 0, Drop, ReasonAddressSyntax, false, 0},
		{"tag twice bare", "udp", "OPTIONS sip:a@b SIP/2.0\r\nt: sip:a@b;tag=1;tag=2\r\n\r\n", 0, Drop, ReasonAddressSyntax, false, 0},
		{"quoted semicolon", "udp", "OPTIONS sip:a@b SIP/2.0\r\nm: <sip:a@b>;x=\";tag=1\";tag=2\r\n\r\n", 0, Accept, ReasonNone, false, -1},
		{"uri param twice", "udp", "OPTIONS sip:a@b SIP/2.0\r\nm: <sip:a@b;lr;lr>\r\n\r\n", 0, Drop, ReasonAddressSyntax, false, 0},
		{"uri user semicolons", "udp", "OPTIONS sip:u;x=1;x=2@b;x=3 SIP/2.0\r\n\r\n", 0, Accept, ReasonNone, false, -1},
		{"r-uri param twice", "udp", "OPTIONS sip:b;x=1;x=2 SIP/2.0\r\n\r\n", 0, Drop, ReasonStartLine, false, 0},
		{"too many params", "udp", "OPTIONS sip:a@b SIP/2.0\r\nf: <sip:a@b>" + manyParams(40) + "\r\n\r\n", 0, Drop, ReasonAddressSyntax, false, 0},
		{"header without name", "udp", "OPTIONS sip:a@b SIP/2.0\r\n: x\r\n\r\n", 0, Drop, ReasonHeaderSyntax, false, 0},
		{"header name with space", "udp", "OPTIONS sip:a@b SIP/2.0\r\nA B: x\r\n\r\n", 0, Drop, ReasonHeaderSyntax, false, 0},
		{"header name space before colon", "udp", "OPTIONS sip:a@b SIP/2.0\r\nAB \t: x\r\n\r\n", 0, Accept, ReasonNone, false, -1},
		{"DEL in folded line", "udp", "OPTIONS sip:a@b SIP/2.0\r\nA: x\r\n y\x7f\r\n\r\n", 0, Drop, ReasonControlChar, false, 0},
		{"LF in folded line", "udp", "OPTIONS sip:a@b SIP/2.0\r\nA: x\r\n y\nz\r\n\r\n", 0, Drop, ReasonLineEnding, false, 0},
		{"body controls", "udp", "OPTIONS sip:a@b SIP/2.0\r\nl: 3\r\n\r\n\x00\r\x01", 0, Accept, ReasonNone, false, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := PreParse(c.transport, []byte(c.data), c.max)
			if r.Action != c.action || r.Reason != c.reason || r.Pong != c.pong {
				t.Fatalf("got %v %v pong=%v, want %v %v pong=%v", r.Action, r.Reason, r.Pong, c.action, c.reason, c.pong)
			}
			if r.Action != Accept {
				if r.Data != nil {
					t.Fatal("data on a non-accept")
				}
				return
			}
			want := c.dataLen
			if want < 0 {
				want = len(c.data)
			}
			if len(r.Data) != want {
				t.Fatalf("data %d bytes, want %d", len(r.Data), want)
			}
			if r.Response != strings.HasPrefix(c.data, "SIP/") {
				t.Fatalf("response %v", r.Response)
			}
		})
	}
}

func manyParams(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(";p")
		b.WriteByte(byte('a' + i%26))
		b.WriteByte(byte('a' + i/26))
	}
	return b.String()
}

func TestPreParseDoesNotAllocate(t *testing.T) {
	data := []byte(invite)
	for _, tr := range []string{"udp", "tcp"} {
		if n := testing.AllocsPerRun(200, func() { PreParse(tr, data, 0) }); n != 0 {
			t.Errorf("%s: %v allocations per PreParse", tr, n)
		}
	}
	junk := []byte("OPTIONS sip:a@b SIP/2.0\r\nl: 4294967295\r\nl: 2\r\n\r\n")
	if n := testing.AllocsPerRun(200, func() { PreParse("udp", junk, 0) }); n != 0 {
		t.Errorf("drop path: %v allocations", n)
	}
}

func TestReasons(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Reasons() {
		s := r.String()
		if s == "" || s == "unknown" || s == "none" || seen[s] {
			t.Errorf("reason %d: %q", r, s)
		}
		seen[s] = true
	}
	if Reason(200).String() != "unknown" || Action(9).String() != "unknown" || Drop.String() != "drop" {
		t.Error("edge names")
	}
}

func TestIsStream(t *testing.T) {
	for tr, want := range map[string]bool{"udp": false, "UDP": false, "ws": false, "wss": false, "tcp": true, "TLS": true, "sctp": true} {
		if IsStream(tr) != want {
			t.Errorf("IsStream(%q) = %v", tr, !want)
		}
	}
}

// tortureSeeds returns the RFC 4475 messages of the project's testdata.
func tortureSeeds(t testing.TB) [][]byte {
	files, err := filepath.Glob("../../../testdata/rfc4475/*.dat")
	if err != nil || len(files) == 0 {
		t.Fatalf("no torture files: %v", err)
	}
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzPreParse: never panics; Accept means the start line has the shape
// PreParse promises, Data is a prefix of the message, and the header
// section holds no control character.
func FuzzPreParse(f *testing.F) {
	for _, s := range tortureSeeds(f) {
		f.Add(s, false)
	}
	f.Add([]byte(invite), true)
	f.Add([]byte("\r\n\r\n"), true)
	f.Fuzz(func(t *testing.T, data []byte, stream bool) {
		tr := "udp"
		if stream {
			tr = "tcp"
		}
		r := PreParse(tr, data, 0)
		switch r.Action {
		case Keepalive:
			if string(data) != "\r\n" && string(data) != "\r\n\r\n" {
				t.Fatalf("keepalive for %q", data)
			}
			return
		case Drop:
			if r.Reason == ReasonNone || r.Data != nil {
				t.Fatalf("drop without reason or with data: %+v", r)
			}
			return
		}
		msg := data
		for stream && bytes.HasPrefix(msg, []byte("\r\n")) {
			msg = msg[2:]
		}
		if !bytes.HasPrefix(msg, r.Data) || len(r.Data) > DefaultMaxSize {
			t.Fatalf("data is not a prefix of the message")
		}
		head, _, ok := bytes.Cut(r.Data, []byte("\r\n\r\n"))
		if !ok {
			t.Fatalf("accepted without end of headers: %q", r.Data)
		}
		line, _, _ := bytes.Cut(head, []byte("\r\n"))
		if r.Response {
			if !isStatusLine(line) || !bytes.HasPrefix(line, []byte("SIP/2.0 ")) {
				t.Fatalf("bad status line accepted: %q", line)
			}
		} else {
			parts := bytes.Split(line, []byte(" "))
			if len(parts) != 3 || !isToken(parts[0]) || !isRequestURI(parts[1]) || !bytes.HasPrefix(parts[2], []byte("SIP/")) {
				t.Fatalf("bad request line accepted: %q", line)
			}
		}
		for _, c := range head {
			if (c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f {
				t.Fatalf("control character %#x accepted in %q", c, head)
			}
		}
	})
}
