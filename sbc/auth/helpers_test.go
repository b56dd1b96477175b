package auth

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
)

const realm = "sip.example.test"

// clock is an injected, manually advanced clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// recorder is a ResponseWriter keeping what was sent.
type recorder struct{ res []*sip.Response }

func (w *recorder) Respond(res *sip.Response) error { w.res = append(w.res, res); return nil }
func (w *recorder) Tx() sip.ServerTransaction       { return nil }
func (w *recorder) Written() int {
	if len(w.res) == 0 {
		return 0
	}
	return int(w.res[len(w.res)-1].StatusCode)
}
func (w *recorder) last(t *testing.T) *sip.Response {
	t.Helper()
	if len(w.res) == 0 {
		t.Fatal("no response sent")
	}
	return w.res[len(w.res)-1]
}

var (
	alicePeer = netip.MustParseAddrPort("192.0.2.10:5060")
	evePeer   = netip.MustParseAddrPort("198.51.100.66:5060")
)

// newReq parses a request built from method, Request-URI and extra header
// lines; the To has no tag unless toTag is set.
func newReq(t testing.TB, method, ruri string, peer netip.AddrPort, toTag string, extra ...string) *sbc.Request {
	t.Helper()
	to := "To: <" + ruri + ">"
	if toTag != "" {
		to += ";tag=" + toTag
	}
	lines := []string{
		method + " " + ruri + " SIP/2.0",
		"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-1",
		"Max-Forwards: 70",
		"From: <sip:alice@" + realm + ">;tag=f1",
		to,
		"Call-ID: c1@192.0.2.10",
		"CSeq: 1 " + method,
	}
	lines = append(lines, extra...)
	raw := strings.Join(lines, "\r\n") + "\r\nContent-Length: 0\r\n\r\n"
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatalf("parse request: %v", err)
	}
	return &sbc.Request{Request: msg.(*sip.Request), Peer: peer, Side: sbc.External}
}

// testUsers is an in-memory Users.
type testUsers map[string]struct {
	ha1      map[string]string
	disabled bool
}

func (u testUsers) Lookup(name, _ string) (map[string]string, bool, bool) {
	e, ok := u[name]
	return e.ha1, e.disabled, ok
}

// h is an independent hash helper for the tests, not the package's code.
func h(alg, s string) string {
	var f hash.Hash
	switch alg {
	case "SHA-256":
		f = sha256.New()
	case "SHA-512-256":
		f = sha512.New512_256()
	default:
		f = md5.New()
	}
	f.Write([]byte(s))
	return hex.EncodeToString(f.Sum(nil))
}

func ha1s(user, pw string) map[string]string {
	m := map[string]string{}
	for _, a := range []string{"SHA-256", "SHA-512-256", "MD5"} {
		m[a] = h(a, user+":"+realm+":"+pw)
	}
	return m
}

func users() testUsers {
	return testUsers{
		"alice": {ha1: ha1s("alice", "correct horse")},
		"bob":   {ha1: ha1s("bob", "battery staple"), disabled: true},
	}
}

type fixture struct {
	a       *Auth
	clk     *clock
	fails   []string
	failsMu sync.Mutex
}

func newFixture(t *testing.T, mut func(*Options)) *fixture {
	t.Helper()
	f := &fixture{clk: &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}}
	opt := Options{
		Realm: realm,
		Users: users(),
		Key:   []byte("0123456789abcdef0123456789abcdef"),
		Now:   f.clk.Now,
		OnFailure: func(peer netip.Addr, user, reason string) {
			f.failsMu.Lock()
			f.fails = append(f.fails, peer.String()+"/"+user+"/"+reason)
			f.failsMu.Unlock()
		},
	}
	if mut != nil {
		mut(&opt)
	}
	a, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	f.a = a
	return f
}

// serve runs one request through the layer.
func (f *fixture) serve(t *testing.T, r *sbc.Request) (sbc.Verdict, *recorder) {
	t.Helper()
	w := &recorder{}
	v, err := f.a.ServeSIP(t.Context(), w, r)
	if err != nil {
		t.Fatalf("ServeSIP: %v", err)
	}
	return v, w
}

type chal struct{ nonce, opaque string }

// challengeFor sends an unauthenticated request and returns the challenge.
func (f *fixture) challengeFor(t *testing.T, method, ruri string, peer netip.AddrPort) chal {
	t.Helper()
	v, w := f.serve(t, newReq(t, method, ruri, peer, ""))
	if v != sbc.Rejected {
		t.Fatalf("verdict %v, want rejected", v)
	}
	res := w.last(t)
	name := "Proxy-Authenticate"
	if method == "REGISTER" {
		name = "WWW-Authenticate"
	}
	hs := res.GetHeaders(name)
	if len(hs) == 0 {
		t.Fatalf("no %s in %d", name, res.StatusCode)
	}
	c, err := ParseCredentials(hs[0].Value())
	if err != nil {
		t.Fatalf("own challenge unparsable: %v", err)
	}
	return chal{c.Get("nonce"), c.Get("opaque")}
}

// authz builds a credentials value computed the RFC 7616 way.
func authz(alg, user, pw, method, uri string, c chal, nc, cnonce string) string {
	ha1 := h(alg, user+":"+realm+":"+pw)
	ha2 := h(alg, method+":"+uri)
	resp := h(alg, ha1+":"+c.nonce+":"+nc+":"+cnonce+":auth:"+ha2)
	return fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=%s, qop=auth, nc=%s, cnonce="%s", opaque="%s"`,
		user, realm, c.nonce, uri, resp, alg, nc, cnonce, c.opaque)
}

var (
	maskRe  = regexp.MustCompile(`(nonce|opaque)="[^"]*"`)
	toTagRe = regexp.MustCompile(`(?m)^(To: .*;tag=)[^;\r\n]*`)
)

// masked is the wire form of a response with nonce and opaque values, and
// the To tag sipgo picks at random for every response, hidden.
func masked(res *sip.Response) string {
	s := maskRe.ReplaceAllString(res.String(), `$1="*"`)
	return toTagRe.ReplaceAllString(s, `${1}*`)
}

// setMD5 offers SHA-256 and SHA-512-256, then MD5 when md5 is set.
func setMD5(o *Options, md5 bool) {
	o.Algorithms = []string{SHA256, SHA512256}
	if md5 {
		o.Algorithms = append(o.Algorithms, MD5)
	}
}
