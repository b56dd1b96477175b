package policy

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
)

// msg joins lines with CRLF and ends the headers.
func msg(lines ...string) string { return strings.Join(lines, "\r\n") + "\r\n\r\n" }

// parseReq builds an sbc.Request from raw SIP text.
func parseReq(t testing.TB, raw string, peer string, side sbc.Side) *sbc.Request {
	t.Helper()
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	req, ok := m.(*sip.Request)
	if !ok {
		t.Fatalf("not a request: %T", m)
	}
	return &sbc.Request{Request: req, Peer: netip.MustParseAddrPort(peer), Transport: "udp", Side: side}
}

func invite(ruri, toTag string) string {
	to := "To: <" + ruri + ">"
	if toTag != "" {
		to += ";tag=" + toTag
	}
	return msg(
		"INVITE "+ruri+" SIP/2.0",
		"Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK776asdhds",
		"Max-Forwards: 70",
		to,
		"From: \"Alice\" <sip:201@example.com>;tag=1928301774",
		"Call-ID: a84b4c76e66710@pc33.example.com",
		"CSeq: 314159 INVITE",
		"Contact: <sip:201@203.0.113.5:5060>",
		"User-Agent: TestPhone/1.0",
		"Content-Length: 0",
	)
}

// writeDir writes files (name → content) into a new temp dir.
func writeDir(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, files)
	return dir
}

func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for n, c := range files {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// recorder is a sbc.ResponseWriter that keeps the responses.
type recorder struct {
	mu  sync.Mutex
	res []*sip.Response
}

func (w *recorder) Respond(res *sip.Response) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.res = append(w.res, res)
	return nil
}
func (w *recorder) Tx() sip.ServerTransaction { return nil }
func (w *recorder) Written() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.res) == 0 {
		return 0
	}
	return w.res[len(w.res)-1].StatusCode
}

// fixedClock is a settable clock.
type fixedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fixedClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fixedClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
