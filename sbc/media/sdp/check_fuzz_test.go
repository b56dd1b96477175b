package sdp

import (
	"errors"
	"strings"
	"testing"
)

// FuzzCheck: Check never panics; a refusal is a *CheckError whose Warning
// is short printable ASCII; what it accepts is the body minus the dropped
// lines, passes Check again unchanged, holds no NUL or CR inside a line,
// and parses whenever the body did.
func FuzzCheck(f *testing.F) {
	for _, sm := range samples {
		f.Add([]byte(sm.body))
	}
	f.Add([]byte(crlf(extra("a=rtpmap:96 opus/48000/2", "a=ptime:0", "b=AS:99999999999", "a=rtcp:70000")...)))
	f.Add([]byte(crlf(with(5, "m=audio 49170/2 RTP/AVP 0 128")...)))
	f.Add([]byte(crlf(with(3, "c=IN IP4 media.example.com")...)))
	f.Add([]byte("v=0\nm=image 4000 udptl t38\na=fmtp:t38 x\na=rtpmap:0 PCMU/8000\n"))
	f.Add([]byte("v=0\r\ns=\x00\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		in := string(body) // Check must not write to body
		out, dropped, err := Check(body)
		if string(body) != in {
			t.Fatalf("Check changed its input")
		}
		if err != nil {
			var ce *CheckError
			if !errors.As(err, &ce) || !errors.Is(err, ErrRefused) || out != nil || dropped != nil {
				t.Fatalf("Check() = %q, %v, %v", out, dropped, err)
			}
			w := ce.Warning()
			if len(w) > 120 {
				t.Fatalf("warning of %d bytes: %q", len(w), w)
			}
			for _, c := range []byte(w) {
				if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
					t.Fatalf("warning %q has byte %#x", w, c)
				}
			}
			return
		}
		// out is body without the dropped lines, in order.
		lines := strings.SplitAfter(in, "\n")
		if lines[len(lines)-1] == "" {
			lines = lines[:len(lines)-1]
		}
		var want strings.Builder
		next := 0
		for i, l := range lines {
			if next < len(dropped) && dropped[next].Line == i+1 {
				next++
				continue
			}
			want.WriteString(l)
		}
		if next != len(dropped) {
			t.Fatalf("dropped lines %v out of order or beyond the body", dropped)
		}
		if string(out) != want.String() {
			t.Fatalf("output\n%q\nis not the body without lines %v", out, dropped)
		}
		again, d2, err := Check(out)
		if err != nil || d2 != nil || string(again) != string(out) {
			t.Fatalf("output does not pass Check unchanged: %v, %v", d2, err)
		}
		for l := range strings.SplitSeq(string(out), "\n") {
			if strings.ContainsRune(strings.TrimSuffix(l, "\r"), '\r') || strings.ContainsRune(l, 0) {
				t.Fatalf("NUL or CR inside a line: %q", l)
			}
		}
		if _, perr := Parse(body); perr == nil {
			if _, err := Parse(out); err != nil {
				t.Fatalf("body parses, output does not: %v\n%q", err, out)
			}
		}
	})
}
