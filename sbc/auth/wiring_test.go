package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc"
)

// Algorithms fixes the order of the challenges; the first is what clients
// reading one challenge use.
func TestAlgorithmsOrder(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Algorithms = []string{MD5, SHA256} })
	_, w := f.serve(t, newReq(t, "INVITE", ruri, alicePeer, ""))
	hs := w.last(t).GetHeaders("Proxy-Authenticate")
	if len(hs) != 2 || !strings.Contains(hs[0].Value(), "algorithm=MD5") || !strings.Contains(hs[1].Value(), "algorithm=SHA-256") {
		t.Fatalf("challenges %v, want MD5 then SHA-256", hs)
	}
	// SHA-512-256 is not offered, so it is not accepted either.
	c := f.challengeFor(t, "INVITE", ruri, alicePeer)
	_, w = f.serve(t, newReq(t, "INVITE", ruri, alicePeer, "",
		"Proxy-Authorization: "+authz(SHA512256, "alice", "correct horse", "INVITE", ruri, c, "00000001", "x")))
	if got := w.last(t).StatusCode; got != 400 {
		t.Errorf("credentials with an algorithm not offered got %d, want 400", got)
	}
	for _, bad := range [][]string{{"SHA-1"}, {MD5, MD5}} {
		if _, err := New(Options{Realm: realm, Users: users(), Algorithms: bad}); err == nil {
			t.Errorf("New accepted algorithms %q", bad)
		}
	}
}

// OnSuccess hears of every authentication; Forward adds the identity and
// the signed source for the upstream.
func TestSuccessHookAndForward(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	var got []string
	f := newFixture(t, func(o *Options) {
		o.OnSuccess = func(p netip.Addr, u string) { got = append(got, p.String()+"/"+u) }
		o.Forward = &Forwarder{IdentityHeader: "P-Asserted-Identity", SourceHeader: "X-Source", Key: key,
			Now: func() time.Time { return time.Unix(1700000000, 0) }}
	})
	c := f.challengeFor(t, "INVITE", ruri, alicePeer)
	r := newReq(t, "INVITE", ruri, alicePeer, "", "Proxy-Authorization: "+authz(SHA256, "alice", "correct horse", "INVITE", ruri, c, "00000001", "x"))
	r.Transport = "udp"
	if v, _ := f.serve(t, r); v != sbc.Continue {
		t.Fatalf("verdict %v", v)
	}
	if len(got) != 1 || got[0] != alicePeer.Addr().String()+"/alice" {
		t.Errorf("OnSuccess calls %q", got)
	}
	if len(r.Forward) != 2 || r.Forward[0].Name() != "P-Asserted-Identity" || r.Forward[0].Value() != "<sip:alice@"+realm+">" {
		t.Fatalf("Forward = %v", r.Forward)
	}
	src := r.Forward[1].Value()
	body, sig, ok := strings.Cut(src, ";sig=")
	if !ok || body != alicePeer.String()+";transport=udp;ts=1700000000" {
		t.Fatalf("source header %q", src)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(body))
	if sig != hex.EncodeToString(m.Sum(nil)) {
		t.Errorf("source signature does not verify with the key")
	}
	if err := (&Forwarder{SourceHeader: "X", Key: []byte("short")}).Check(); err == nil {
		t.Error("a short source key passed Check")
	}
}

// A locked user fails from an address Locked names, with the same answer
// as a wrong password, and is reported as evidence.
func TestLockedUserRefused(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.Locked = func(u string, p netip.Addr) bool { return u == "alice" && p == alicePeer.Addr() }
	})
	c := f.challengeFor(t, "INVITE", ruri, alicePeer)
	v, w := f.serve(t, newReq(t, "INVITE", ruri, alicePeer, "",
		"Proxy-Authorization: "+authz(SHA256, "alice", "correct horse", "INVITE", ruri, c, "00000001", "x")))
	if v != sbc.Rejected || w.last(t).StatusCode != 407 {
		t.Fatalf("locked user: verdict %v", v)
	}
	if len(f.fails) != 1 || !strings.HasSuffix(f.fails[0], "/alice/"+ReasonLocked) {
		t.Errorf("failures %q", f.fails)
	}
}

// Credentials the layer cannot accept (no qop, as SIPVicious sends) count
// as evidence only when they carry a valid nonce issued to that address.
func TestMalformedWithOurNonceIsEvidence(t *testing.T) {
	f := newFixture(t, nil)
	c := f.challengeFor(t, "INVITE", ruri, alicePeer)
	noQop := `Digest username="alice", realm="` + realm + `", nonce="` + c.nonce + `", uri="` + ruri + `", response="0123456789abcdef0123456789abcdef", algorithm=MD5`
	if _, w := f.serve(t, newReq(t, "INVITE", ruri, alicePeer, "", "Proxy-Authorization: "+noQop)); w.last(t).StatusCode != 400 {
		t.Fatalf("status %d, want 400", w.last(t).StatusCode)
	}
	if len(f.fails) != 1 || f.fails[0] != alicePeer.Addr().String()+"/alice/"+ReasonMalformed {
		t.Fatalf("failures %q, want one malformed", f.fails)
	}
	// The same from another address, or with a made-up nonce: no evidence.
	other := netip.MustParseAddrPort("192.0.2.99:5060")
	f.serve(t, newReq(t, "INVITE", ruri, other, "", "Proxy-Authorization: "+noQop))
	forged := strings.Replace(noQop, c.nonce, "bm9ub25jZQ", 1)
	f.serve(t, newReq(t, "INVITE", ruri, alicePeer, "", "Proxy-Authorization: "+forged))
	if len(f.fails) != 1 {
		t.Errorf("failures %q, want still one", f.fails)
	}
}

// Credentials for another realm (the PBX's own digest) stay on the request;
// ours never do.
func TestOtherRealmCredentialsKept(t *testing.T) {
	f := newFixture(t, nil)
	c := f.challengeFor(t, "REGISTER", "sip:"+realm, alicePeer)
	pbx := `Digest username="alice", realm="pbx.internal", nonce="abc", uri="sip:` + realm + `", response="0123456789abcdef0123456789abcdef", algorithm=MD5`
	r := newReq(t, "REGISTER", "sip:"+realm, alicePeer, "",
		"Authorization: "+pbx,
		"authorization: "+authz(SHA256, "alice", "correct horse", "REGISTER", "sip:"+realm, c, "00000001", "x"))
	if v, _ := f.serve(t, r); v != sbc.Continue {
		t.Fatalf("verdict %v", v)
	}
	var left []string
	for _, h := range r.Headers() {
		if strings.EqualFold(h.Name(), "authorization") {
			left = append(left, h.Value())
		}
	}
	if len(left) != 1 || left[0] != pbx {
		t.Errorf("credentials left %q, want only the PBX realm's", left)
	}
}
