package auth

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc"
)

const ruri = "sip:bob@" + realm

// TestRFC7616Vectors checks the digest formula against RFC 7616 3.9.1.
func TestRFC7616Vectors(t *testing.T) {
	const (
		user, rlm, pw = "Mufasa", "http-auth@example.org", "Circle of Life"
		nonce         = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
		cnonce        = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
	)
	for _, tc := range []struct{ alg, want string }{
		{MD5, "8ca523f5e9506fed4657c9700eebdbec"},
		{SHA256, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
	} {
		ha1 := HashPassword(user, rlm, pw, tc.alg)
		if got := response(tc.alg, ha1, "GET", "/dir/index.html", nonce, "00000001", cnonce); got != tc.want {
			t.Errorf("%s: response %s, want %s", tc.alg, got, tc.want)
		}
	}
	if HashPassword("a", "b", "c", "SHA-1") != "" {
		t.Error("unsupported algorithm hashed")
	}
}

func TestSuccess(t *testing.T) {
	for _, tc := range []struct {
		alg, method, uri string
	}{
		{SHA256, "INVITE", ruri},
		{SHA512256, "INVITE", ruri},
		{MD5, "INVITE", ruri},
		{SHA256, "REGISTER", "sip:" + realm},
		{SHA512256, "MESSAGE", ruri},
		{SHA256, "OPTIONS", ruri},
		{SHA256, "NOTIFY", ruri},
	} {
		t.Run(tc.alg+"/"+tc.method, func(t *testing.T) {
			f := newFixture(t, func(o *Options) { setMD5(o, true) })
			c := f.challengeFor(t, tc.method, tc.uri, alicePeer)
			hdr := "Proxy-Authorization"
			if tc.method == "REGISTER" {
				hdr = "Authorization"
			}
			r := newReq(t, tc.method, tc.uri, alicePeer, "",
				hdr+": "+authz(tc.alg, "alice", "correct horse", tc.method, tc.uri, c, "00000001", "cn1"))
			v, w := f.serve(t, r)
			if v != sbc.Continue || len(w.res) != 0 {
				t.Fatalf("verdict %v, responses %d", v, len(w.res))
			}
			if r.Identity == nil || r.Identity.User != "alice" || r.Identity.Realm != realm || r.Identity.Trusted != "" {
				t.Fatalf("identity %+v", r.Identity)
			}
			if n := len(r.GetHeaders("Authorization")) + len(r.GetHeaders("Proxy-Authorization")); n != 0 {
				t.Fatalf("%d credentials headers left to forward", n)
			}
			// The next request on the same nonce with a higher nc passes.
			r2 := newReq(t, tc.method, tc.uri, alicePeer, "",
				hdr+": "+authz(tc.alg, "alice", "correct horse", tc.method, tc.uri, c, "00000002", "cn2"))
			if v, _ := f.serve(t, r2); v != sbc.Continue {
				t.Fatalf("nc=2: verdict %v", v)
			}
			if s := f.a.Stats(); s.Successes != 2 || s.Challenges != 1 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

// TestChallenge checks the challenge itself: status, one header per
// algorithm, strongest first, and MD5 only when enabled.
func TestChallenge(t *testing.T) {
	for _, tc := range []struct {
		method string
		md5    bool
		code   int
		header string
		algs   []string
	}{
		{"INVITE", false, 407, "Proxy-Authenticate", []string{SHA256, SHA512256}},
		{"INVITE", true, 407, "Proxy-Authenticate", []string{SHA256, SHA512256, MD5}},
		{"REGISTER", false, 401, "WWW-Authenticate", []string{SHA256, SHA512256}},
		{"SUBSCRIBE", false, 407, "Proxy-Authenticate", []string{SHA256, SHA512256}},
		{"REFER", false, 407, "Proxy-Authenticate", []string{SHA256, SHA512256}},
		{"PUBLISH", false, 407, "Proxy-Authenticate", []string{SHA256, SHA512256}},
	} {
		f := newFixture(t, func(o *Options) { setMD5(o, tc.md5) })
		v, w := f.serve(t, newReq(t, tc.method, ruri, alicePeer, ""))
		res := w.last(t)
		if v != sbc.Rejected || int(res.StatusCode) != tc.code {
			t.Fatalf("%s: %v %d", tc.method, v, res.StatusCode)
		}
		hs := res.GetHeaders(tc.header)
		if len(hs) != len(tc.algs) {
			t.Fatalf("%s: %d challenges", tc.method, len(hs))
		}
		for i, hh := range hs {
			c, err := ParseCredentials(hh.Value())
			if err != nil {
				t.Fatal(err)
			}
			if c.Get("algorithm") != tc.algs[i] || c.Get("qop") != "auth" || c.Get("realm") != realm ||
				c.Get("opaque") == "" || c.Get("nonce") == "" || c.Get("stale") != "" {
				t.Fatalf("%s: challenge %d: %s", tc.method, i, hh.Value())
			}
		}
	}
}

func TestWrongPasswordAndEnumeration(t *testing.T) {
	f := newFixture(t, nil)
	var ref string
	for i, tc := range []struct{ user, pw, reason string }{
		{"alice", "wrong", ReasonBadPassword},
		{"mallory", "whatever", ReasonUnknownUser},
		{"bob", "battery staple", ReasonDisabled}, // right password, disabled
		{"bob", "wrong", ReasonBadPassword},
	} {
		c := f.challengeFor(t, "INVITE", ruri, evePeer)
		// Same From, Call-ID, CSeq: only the credentials differ.
		r := newReq(t, "INVITE", ruri, evePeer, "",
			"Proxy-Authorization: "+authz(SHA256, tc.user, tc.pw, "INVITE", ruri, c, "00000001", "cn"))
		v, w := f.serve(t, r)
		res := w.last(t)
		if v != sbc.Rejected || res.StatusCode != 407 || r.Identity != nil {
			t.Fatalf("%s: %v %d", tc.user, v, res.StatusCode)
		}
		if i == 0 {
			ref = masked(res)
		} else if got := masked(res); got != ref {
			t.Fatalf("%s response differs:\n%s\nvs\n%s", tc.reason, got, ref)
		}
		if strings.Contains(res.String(), "stale") {
			t.Fatalf("%s: stale set", tc.reason)
		}
	}
	want := []string{
		"198.51.100.66/alice/bad-password", "198.51.100.66/mallory/unknown-user",
		"198.51.100.66/bob/disabled", "198.51.100.66/bob/bad-password",
	}
	if strings.Join(f.fails, ",") != strings.Join(want, ",") {
		t.Fatalf("OnFailure calls %v", f.fails)
	}
	s := f.a.Stats()
	if s.Failures[ReasonBadPassword] != 2 || s.Failures[ReasonUnknownUser] != 1 || s.Failures[ReasonDisabled] != 1 || s.Successes != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestRefused covers nonces and replays: each case is refused with a new
// challenge (or 400) and none of them is evidence for OnFailure.
func TestRefused(t *testing.T) {
	good := func(f *fixture, t *testing.T, c chal, nc string) string {
		return "Proxy-Authorization: " + authz(SHA256, "alice", "correct horse", "INVITE", ruri, c, nc, "cn")
	}
	for _, tc := range []struct {
		name   string
		md5    bool
		run    func(f *fixture, t *testing.T) *recorder
		code   int
		stale  bool
		reason string
	}{
		{"stale", false, func(f *fixture, t *testing.T) *recorder {
			c := f.challengeFor(t, "INVITE", ruri, alicePeer)
			f.clk.Add(DefaultNonceTTL + time.Second)
			_, w := f.serve(t, newReq(t, "INVITE", ruri, alicePeer, "", good(f, t, c, "00000001")))
			return w
		}, 407, true, ReasonStale},
		{"replayed-nc", false, func(f *fixture, t *testing.T) *recorder {
			c := f.challengeFor(t, "INVITE", ruri, alicePeer)
			if v, _ := f.serve(t, newReq(t, "INVITE", ruri, alicePeer, "", good(f, t, c, "00000002"))); v != sbc.Continue {
				t.Fatal("first use refused")
			}
			_, w := f.serve(t, newReq(t, "INVITE", ruri, alicePeer, "", good(f, t, c, "00000001")))
			return w
		}, 407, true, ReasonReplay},
		{"same-nc-again", false, func(f *fixture, t *testing.T) *recorder {
			c := f.challengeFor(t, "INVITE", ruri, alicePeer)
			hdr := good(f, t, c, "00000001")
			f.serve(t, newReq(t, "INVITE", ruri, alicePeer, "", hdr))
			_, w := f.serve(t, newReq(t, "INVITE", ruri, alicePeer, "", hdr))
			return w
		}, 407, true, ReasonReplay},
		{"other-ip", false, func(f *fixture, t *testing.T) *recorder {
			c := f.challengeFor(t, "INVITE", ruri, alicePeer)
			_, w := f.serve(t, newReq(t, "INVITE", ruri, evePeer, "", good(f, t, c, "00000001")))
			return w
		}, 407, false, ReasonForeignNonce},
		{"other-request-uri", false, func(f *fixture, t *testing.T) *recorder {
			c := f.challengeFor(t, "INVITE", ruri, alicePeer)
			_, w := f.serve(t, newReq(t, "INVITE", "sip:premium@"+realm, alicePeer, "", good(f, t, c, "00000001")))
			return w
		}, 400, false, ReasonURIMismatch},
		{"from-the-future", false, func(f *fixture, t *testing.T) *recorder {
			f.clk.Add(time.Hour)
			c := f.challengeFor(t, "INVITE", ruri, alicePeer)
			f.clk.Add(-time.Hour)
			_, w := f.serve(t, newReq(t, "INVITE", ruri, alicePeer, "", good(f, t, c, "00000001")))
			return w
		}, 407, false, ReasonFutureNonce},
		{"forged-nonce", false, func(f *fixture, t *testing.T) *recorder {
			c := chal{nonce: strings.Repeat("A", 64), opaque: "x"}
			_, w := f.serve(t, newReq(t, "INVITE", ruri, alicePeer, "", good(f, t, c, "00000001")))
			return w
		}, 407, false, ReasonForeignNonce},
		{"bad-opaque", false, func(f *fixture, t *testing.T) *recorder {
			c := f.challengeFor(t, "INVITE", ruri, alicePeer)
			c.opaque = "AAAAAAAAAAAAAAAA"
			_, w := f.serve(t, newReq(t, "INVITE", ruri, alicePeer, "", good(f, t, c, "00000001")))
			return w
		}, 400, false, ReasonBadOpaque},
		{"md5-not-enabled", false, func(f *fixture, t *testing.T) *recorder {
			c := f.challengeFor(t, "INVITE", ruri, alicePeer)
			_, w := f.serve(t, newReq(t, "INVITE", ruri, alicePeer, "",
				"Proxy-Authorization: "+authz(MD5, "alice", "correct horse", "INVITE", ruri, c, "00000001", "cn")))
			return w
		}, 400, false, ReasonMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(o *Options) { setMD5(o, tc.md5) })
			w := tc.run(f, t)
			res := w.last(t)
			if int(res.StatusCode) != tc.code {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.code)
			}
			if got := strings.Contains(res.String(), "stale=true"); got != tc.stale {
				t.Fatalf("stale %v, want %v:\n%s", got, tc.stale, res)
			}
			// Unacceptable credentials on a valid nonce of this peer are
			// evidence (the peer saw our challenge); nothing else is.
			want := 0
			if tc.reason == ReasonMalformed {
				want = 1
			}
			if len(f.fails) != want {
				t.Fatalf("OnFailure calls %v, want %d", f.fails, want)
			}
			if f.a.Stats().Failures[tc.reason] == 0 {
				t.Fatalf("reason %s not counted: %+v", tc.reason, f.a.Stats())
			}
		})
	}
}

func TestPassThrough(t *testing.T) {
	trusted := netip.MustParseAddrPort("203.0.113.5:5060")
	f := newFixture(t, func(o *Options) {
		o.Trusted = func(a netip.Addr) (string, bool) {
			return "carrier", a == trusted.Addr()
		}
		// The dialog with To tag "t1" is one the SBC created.
		o.InDialog = func(r *sbc.Request) bool {
			tag, _ := r.To().Params.Get("tag")
			return tag == "t1"
		}
	})
	internal := newReq(t, "INVITE", ruri, alicePeer, "")
	internal.Side = sbc.Internal
	for _, tc := range []struct {
		name    string
		r       *sbc.Request
		trusted string
	}{
		{"trusted", newReq(t, "INVITE", ruri, trusted, ""), "carrier"},
		{"trusted-v4-mapped", newReq(t, "INVITE", ruri, netip.AddrPortFrom(netip.AddrFrom16(trusted.Addr().As16()), 5060), ""), "carrier"},
		{"internal", internal, ""},
		{"in-dialog", newReq(t, "BYE", ruri, alicePeer, "t1"), ""},
		{"in-dialog-invite", newReq(t, "INVITE", ruri, alicePeer, "t1"), ""},
		{"ack", newReq(t, "ACK", ruri, alicePeer, ""), ""},
		{"cancel", newReq(t, "CANCEL", ruri, alicePeer, ""), ""},
		{"options-keepalive", newReq(t, "OPTIONS", "sip:"+realm, alicePeer, ""), ""},
	} {
		v, w := f.serve(t, tc.r)
		if v != sbc.Continue || len(w.res) != 0 {
			t.Fatalf("%s: verdict %v, %d responses", tc.name, v, len(w.res))
		}
		if tc.trusted != "" && (tc.r.Identity == nil || tc.r.Identity.Trusted != tc.trusted || tc.r.Identity.User != "") {
			t.Fatalf("%s: identity %+v", tc.name, tc.r.Identity)
		}
		if tc.trusted == "" && tc.r.Identity != nil {
			t.Fatalf("%s: identity set: %+v", tc.name, tc.r.Identity)
		}
	}
	// A To tag of a dialog the SBC does not know, or on a REGISTER, is
	// challenged: a tag proves nothing.
	for _, r := range []*sbc.Request{newReq(t, "BYE", ruri, alicePeer, "forged"), newReq(t, "REGISTER", "sip:"+realm, alicePeer, "t1")} {
		if v, w := f.serve(t, r); v != sbc.Rejected || w.last(t).StatusCode < 401 {
			t.Fatalf("%s with To tag: verdict %v", r.Method, v)
		}
	}
	// Out-of-dialog BYE is not a pass: default deny.
	if v, _ := f.serve(t, newReq(t, "BYE", ruri, alicePeer, "")); v != sbc.Rejected {
		t.Fatalf("out-of-dialog BYE: %v", v)
	}
}

func TestMalformed(t *testing.T) {
	f := newFixture(t, nil)
	c := f.challengeFor(t, "INVITE", ruri, alicePeer)
	valid := authz(SHA256, "alice", "correct horse", "INVITE", ruri, c, "00000001", "cn")
	drop := func(param string) string {
		var out []string
		for _, p := range strings.Split(strings.TrimPrefix(valid, "Digest "), ", ") {
			if !strings.HasPrefix(p, param+"=") {
				out = append(out, p)
			}
		}
		return "Digest " + strings.Join(out, ", ")
	}
	repl := func(old, new string) string { return strings.Replace(valid, old, new, 1) }
	cases := map[string][]string{
		"no-username":    {drop("username")},
		"no-nonce":       {drop("nonce")},
		"no-uri":         {drop("uri")},
		"no-response":    {drop("response")},
		"no-qop":         {drop("qop")},
		"no-nc":          {drop("nc")},
		"no-cnonce":      {drop("cnonce")},
		"dup-param":      {valid + `, nc=00000002`},
		"dup-param-case": {valid + `, CNONCE="x"`},
		"8k-cnonce":      {repl(`cnonce="cn"`, `cnonce="`+strings.Repeat("a", 8<<10)+`"`)},
		"long-cnonce":    {repl(`cnonce="cn"`, `cnonce="`+strings.Repeat("a", 300)+`"`)},
		"escaped-quote":  {repl(`username="alice"`, `username="al\"ice"`)},
		"unterminated":   {repl(`username="alice"`, `username="alice\"`)},
		"alg-not-offer":  {repl("algorithm=SHA-256", "algorithm=SHA-1")},
		"alg-sess":       {repl("algorithm=SHA-256", "algorithm=SHA-256-sess")},
		"no-alg-md5":     {drop("algorithm")},
		"auth-int":       {repl("qop=auth", "qop=auth-int")},
		"nc-zero":        {repl("nc=00000001", "nc=00000000")},
		"nc-short":       {repl("nc=00000001", "nc=1")},
		"nc-not-hex":     {repl("nc=00000001", "nc=0000000g")},
		"short-response": {repl(`response="`, `response="ab`)},
		"non-hex-resp":   {repl(`response="`, `response="zz`)[:len(valid)+2]},
		"two-for-realm":  {valid, valid},
		"basic":          {"Basic YWxpY2U6cGFzcw=="},
		"no-params":      {"Digest"},
		"trailing-comma": {valid + ","},
		"no-comma":       {repl(", qop", " qop")},
		"empty-value":    {repl("nc=00000001", "nc=")},
		"ctl-char":       {repl(`cnonce="cn"`, "cnonce=\"c\x01n\"")},
		"userhash":       {valid + ", userhash=true"},
		"username-star":  {valid + ", username*=UTF-8''alice"},
		"bad-utf8":       {repl(`cnonce="cn"`, "cnonce=\"\xff\"")},
		"too-many":       {valid + strings.Repeat(", x=1", 20)},
	}
	for name, hdrs := range cases {
		t.Run(name, func(t *testing.T) {
			var extra []string
			for _, v := range hdrs {
				extra = append(extra, "Proxy-Authorization: "+v)
			}
			r := newReq(t, "INVITE", ruri, alicePeer, "", extra...)
			v, w := f.serve(t, r)
			if v != sbc.Rejected || w.last(t).StatusCode != 400 {
				t.Fatalf("verdict %v status %d for %q", v, w.last(t).StatusCode, hdrs)
			}
		})
	}
	// Those that parsed and carry our valid nonce (no-qop, nc-zero...) are
	// evidence of a peer that saw our challenge; all are "malformed".
	if len(f.fails) == 0 {
		t.Fatal("no malformed credentials on our nonce reported as evidence")
	}
	for _, fl := range f.fails {
		if !strings.HasPrefix(fl, alicePeer.Addr().String()+"/") || !strings.HasSuffix(fl, "/"+ReasonMalformed) {
			t.Errorf("evidence %q, want %s/…/%s", fl, alicePeer.Addr(), ReasonMalformed)
		}
	}
	// Credentials for another realm are ignored: a plain challenge.
	other := strings.Replace(valid, `realm="`+realm+`"`, `realm="other"`, 1)
	_, w := f.serve(t, newReq(t, "INVITE", ruri, alicePeer, "", "Proxy-Authorization: "+other))
	if w.last(t).StatusCode != 407 {
		t.Fatalf("other realm: %d", w.last(t).StatusCode)
	}
	// The credentials of a proxy request given as Authorization do not count.
	_, w = f.serve(t, newReq(t, "INVITE", ruri, alicePeer, "", "Authorization: "+valid))
	if w.last(t).StatusCode != 407 {
		t.Fatalf("wrong header: %d", w.last(t).StatusCode)
	}
}

func TestNew(t *testing.T) {
	for _, opt := range []Options{
		{Users: users()},
		{Realm: `a"b`, Users: users()},
		{Realm: realm},
		{Realm: realm, Users: users(), Key: []byte("short")},
	} {
		if _, err := New(opt); err == nil {
			t.Errorf("New(%+v) accepted", opt)
		}
	}
}

// A trunk identified by its client certificate skips digest only when the
// request arrived with that verified certificate; the same address without
// it, or with another certificate, is challenged.
func TestTrustedByCertificate(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.TrustedCert = func(_ netip.Addr, pc *sbc.PeerCert) (string, bool) {
			return "carrier-tls", pc.Name == "trunk.carrier.example"
		}
	})
	peer := netip.MustParseAddrPort("198.51.100.7:5061")
	withCert := newReq(t, "INVITE", ruri, peer, "")
	withCert.Transport = "tls"
	withCert.PeerCert = &sbc.PeerCert{Name: "trunk.carrier.example", Fingerprint: strings.Repeat("ab", 32)}
	if v, w := f.serve(t, withCert); v != sbc.Continue || len(w.res) != 0 || withCert.Identity == nil || withCert.Identity.Trusted != "carrier-tls" {
		t.Fatalf("trunk with its certificate: verdict %v, identity %+v", v, withCert.Identity)
	}
	other := newReq(t, "INVITE", ruri, peer, "")
	other.PeerCert = &sbc.PeerCert{Name: "someone.else.example"}
	none := newReq(t, "INVITE", ruri, peer, "")
	for name, r := range map[string]*sbc.Request{"other certificate": other, "no certificate": none} {
		if v, w := f.serve(t, r); v != sbc.Rejected || w.last(t).StatusCode != 407 {
			t.Fatalf("%s: verdict %v, want a 407 challenge", name, v)
		}
	}
}
