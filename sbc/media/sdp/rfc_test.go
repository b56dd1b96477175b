package sdp

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// isSDP reports whether a header block (LF or CRLF lines) declares an SDP
// body, in the long or the compact form of Content-Type.
func isSDP(head string) bool {
	for _, l := range strings.Split(head, "\n") {
		name, val, ok := strings.Cut(strings.TrimSuffix(l, "\r"), ":")
		name = strings.TrimSpace(name)
		if ok && (strings.EqualFold(name, "Content-Type") || strings.EqualFold(name, "c")) &&
			strings.Contains(strings.ToLower(val), "application/sdp") {
			return true
		}
	}
	return false
}

// contentLength returns the Content-Length of a header block, -1 if none.
func contentLength(head string) int {
	for _, l := range strings.Split(head, "\n") {
		name, val, ok := strings.Cut(strings.TrimSuffix(l, "\r"), ":")
		if ok && (strings.EqualFold(strings.TrimSpace(name), "Content-Length") || strings.EqualFold(strings.TrimSpace(name), "l")) {
			if n, err := strconv.Atoi(strings.TrimSpace(val)); err == nil {
				return n
			}
		}
	}
	return -1
}

// TestRFC3665Bodies parses and rewrites every SDP body of the RFC 3665
// flows: YAML lists of messages whose lines end in LF; a body follows the
// first empty line.
func TestRFC3665Bodies(t *testing.T) {
	// The extraction of 3.11 F1 lost its v=0 line (see testdata/README.md).
	refused := map[string]bool{"3.11_unsuccessful-temporarily-unavailable.yaml F1": true}
	var files []string
	for _, dir := range []string{filepath.Join("testdata", "rfc3665"), filepath.Join("..", "..", "..", "testdata", "rfc3665")} {
		m, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil || len(m) == 0 {
			t.Fatalf("no flows in %s (%v)", dir, err)
		}
		files = append(files, m...)
	}
	bodies := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var msgs []string
		if err := yaml.Unmarshal(data, &msgs); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for i, msg := range msgs {
			head, body, _ := strings.Cut(msg, "\n\n")
			if !isSDP(head) {
				continue
			}
			bodies++
			name := filepath.Base(f) + " F" + strconv.Itoa(i+1)
			wire := strings.ReplaceAll(strings.TrimRight(body, "\n"), "\n", "\r\n") + "\r\n"
			if n := contentLength(head); n >= 0 && n != len(wire) {
				t.Errorf("%s: Content-Length %d, body %d bytes: extraction is wrong", name, n, len(wire))
			}
			for _, b := range []string{body, wire} {
				s, err := Parse([]byte(b))
				if refused[name] {
					if !errors.Is(err, ErrMalformed) {
						t.Errorf("%s: Parse() = %v, want ErrMalformed", name, err)
					}
					continue
				}
				if err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				if len(s.Media()) != 1 || s.Media()[0].Type != "audio" || !s.Media()[0].Addr.IsValid() {
					t.Errorf("%s: media %+v", name, s.Media())
				}
				tg := relayTarget(s, sbc4)
				out, err := s.Rewrite(tg)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				checkRewritten(t, s, tg, out)
			}
		}
	}
	if bodies < 60 {
		t.Errorf("only %d SDP bodies found", bodies)
	}
}

// TestRFC4475Bodies parses the SDP bodies of the RFC 4475 torture messages
// (the module's testdata/rfc4475, CRLF lines): everything after the first
// empty line of a message whose Content-Type is application/sdp.
func TestRFC4475Bodies(t *testing.T) {
	refused := map[string]string{
		"mismatch02.dat": "no s= line",
		"test.dat":       "testing=123 is no SDP line",
	}
	files, err := filepath.Glob(filepath.Join("..", "..", "..", "testdata", "rfc4475", "*.dat"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no RFC 4475 messages (%v)", err)
	}
	bodies := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		head, body, _ := strings.Cut(string(data), "\r\n\r\n")
		if !isSDP(head) {
			continue
		}
		bodies++
		name := filepath.Base(f)
		s, err := Parse([]byte(body))
		if why, ok := refused[name]; ok {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%s (%s): Parse() = %v, want ErrMalformed", name, why, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		tg := relayTarget(s, sbc6)
		out, err := s.Rewrite(tg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		checkRewritten(t, s, tg, out)
	}
	if bodies < 20 {
		t.Errorf("only %d SDP bodies found", bodies)
	}
}
