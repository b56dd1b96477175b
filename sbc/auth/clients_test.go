package auth

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/config"
)

// defaultProfiles compiles the configuration's built-in profiles.
func defaultProfiles(t *testing.T) []Profile {
	t.Helper()
	var ps []Profile
	for _, c := range config.DefaultAuthProfiles() {
		p, err := CompileProfile(c.Name, c.UserAgent, c.Algorithms)
		if err != nil {
			t.Fatalf("built-in profile %s: %v", c.Name, err)
		}
		ps = append(ps, p)
	}
	return ps
}

// offered returns the algorithms of a challenge response, in order.
func offered(t *testing.T, w *recorder, header string) []string {
	t.Helper()
	var algs []string
	for _, hh := range w.last(t).GetHeaders(header) {
		c, err := ParseCredentials(hh.Value())
		if err != nil {
			t.Fatal(err)
		}
		algs = append(algs, c.Get("algorithm"))
	}
	return algs
}

func TestDefaultOfferAndProfiles(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Profiles = defaultProfiles(t) })
	for _, tc := range []struct {
		ua   string
		want []string
	}{
		{"", []string{SHA256, MD5}},
		{"Linphone/5.1.64 (belle-sip/5.1.55)", []string{SHA256, MD5}},
		{"baresip v3.10.1 (x86_64/linux)", []string{SHA256, MD5}},
		{"baresip v1.1.0 (x86_64/linux)", []string{MD5}},
		{"Yealink SIP-T46S 66.86.0.15", []string{MD5}},
		{"MicroSIP/3.21.3", []string{MD5}},
		{"JsSIP 3.10.1", []string{MD5}},
		{strings.Repeat("x", 4000) + "yealink", []string{SHA256, MD5}}, // only the first 128 bytes are matched
	} {
		extra := []string{}
		if tc.ua != "" {
			extra = append(extra, "User-Agent: "+tc.ua)
		}
		_, w := f.serve(t, newReq(t, "REGISTER", "sip:"+realm, alicePeer, "", extra...))
		if got := offered(t, w, "WWW-Authenticate"); !slices.Equal(got, tc.want) {
			t.Errorf("User-Agent %.40q: offered %v, want %v", tc.ua, got, tc.want)
		}
	}
}

// A profile never offers an algorithm the configuration does not accept.
func TestProfileLimitedToConfigured(t *testing.T) {
	p, err := CompileProfile("old", "(?i)oldphone", []string{MD5})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *Options) {
		o.Algorithms = []string{SHA256}
		o.Profiles = []Profile{p}
	})
	_, w := f.serve(t, newReq(t, "INVITE", ruri, alicePeer, "", "User-Agent: OldPhone 1.0"))
	if got := offered(t, w, "Proxy-Authenticate"); !slices.Equal(got, []string{SHA256}) {
		t.Fatalf("offered %v, want [SHA-256]", got)
	}
	if _, err := CompileProfile("bad", "(", []string{MD5}); err == nil {
		t.Fatal("bad regexp accepted")
	}
	if _, err := CompileProfile("bad", "x", []string{"SHA-1"}); err == nil {
		t.Fatal("unknown algorithm accepted")
	}
}

// A client answering every challenge at once (current libre) sends one
// credential per algorithm: the strongest is verified, the others are not
// looked at, so a wrong strong answer is never saved by a right weak one.
func TestOneCredentialPerAlgorithm(t *testing.T) {
	const hdr = "Proxy-Authorization: "
	for _, tc := range []struct {
		name           string
		creds          func(c chal) []string
		status         int // 0: accepted
		reason, header string
	}{
		{"sha256-and-md5", func(c chal) []string {
			return []string{
				hdr + authz(SHA256, "alice", "correct horse", "INVITE", ruri, c, "00000001", "a"),
				hdr + authz(MD5, "alice", "correct horse", "INVITE", ruri, c, "00000001", "a"),
			}
		}, 0, "", ""},
		{"md5-first-on-the-wire", func(c chal) []string {
			return []string{
				hdr + authz(MD5, "alice", "correct horse", "INVITE", ruri, c, "00000001", "a"),
				hdr + authz(SHA256, "alice", "correct horse", "INVITE", ruri, c, "00000001", "a"),
			}
		}, 0, "", ""},
		{"strong-wrong-weak-right", func(c chal) []string {
			return []string{
				hdr + authz(SHA256, "alice", "guess", "INVITE", ruri, c, "00000001", "a"),
				hdr + authz(MD5, "alice", "correct horse", "INVITE", ruri, c, "00000001", "a"),
			}
		}, 407, ReasonBadPassword, ""},
		{"strong-malformed-weak-right", func(c chal) []string {
			return []string{
				hdr + strings.Replace(authz(SHA256, "alice", "correct horse", "INVITE", ruri, c, "00000001", "a"), "qop=auth", "qop=auth-int", 1),
				hdr + authz(MD5, "alice", "correct horse", "INVITE", ruri, c, "00000001", "a"),
			}
		}, 400, ReasonMalformed, `"qop=auth required"`},
		{"same-algorithm-twice", func(c chal) []string {
			return []string{
				hdr + authz(SHA256, "alice", "correct horse", "INVITE", ruri, c, "00000001", "a"),
				hdr + authz(SHA256, "alice", "correct horse", "INVITE", ruri, c, "00000001", "b"),
			}
		}, 400, ReasonMalformed, `"two credentials for SHA-256"`},
		{"different-users", func(c chal) []string {
			return []string{
				hdr + authz(SHA256, "alice", "correct horse", "INVITE", ruri, c, "00000001", "a"),
				hdr + authz(MD5, "bob", "battery staple", "INVITE", ruri, c, "00000001", "a"),
			}
		}, 400, ReasonMalformed, `"credentials name different users"`},
		{"algorithm-not-offered", func(c chal) []string {
			return []string{
				hdr + authz(SHA256, "alice", "correct horse", "INVITE", ruri, c, "00000001", "a"),
				hdr + authz(SHA512256, "alice", "correct horse", "INVITE", ruri, c, "00000001", "a"),
			}
		}, 400, ReasonMalformed, `"digest algorithm 'SHA-512-256' not offered"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil) // defaults: SHA-256, MD5
			c := f.challengeFor(t, "INVITE", ruri, alicePeer)
			r := newReq(t, "INVITE", ruri, alicePeer, "", tc.creds(c)...)
			v, w := f.serve(t, r)
			if tc.status == 0 {
				if v != sbc.Continue || r.Identity == nil || r.Identity.User != "alice" {
					t.Fatalf("verdict %v identity %+v responses %d", v, r.Identity, len(w.res))
				}
				if n := len(r.GetHeaders("Proxy-Authorization")); n != 0 {
					t.Fatalf("%d of our credentials left to forward", n)
				}
				return
			}
			res := w.last(t)
			if v != sbc.Rejected || int(res.StatusCode) != tc.status {
				t.Fatalf("verdict %v status %d, want %d", v, res.StatusCode, tc.status)
			}
			if f.a.Stats().Failures[tc.reason] != 1 {
				t.Fatalf("failures %+v, want one %s", f.a.Stats().Failures, tc.reason)
			}
			warn := res.GetHeader("Warning")
			switch {
			case tc.header == "" && warn != nil:
				t.Fatalf("unexpected Warning %q", warn.Value())
			case tc.header != "" && (warn == nil || warn.Value() != "399 "+realm+" "+tc.header):
				t.Fatalf("Warning %v, want 399 %s %s", warn, realm, tc.header)
			}
			if tc.header != "" && !strings.HasPrefix(r.Why, ReasonMalformed+": ") {
				t.Fatalf("Why %q", r.Why)
			}
		})
	}
}

// The Warning of a 400 says what is wrong with the credentials, and the
// same for an unknown user as for a known one: it tells nobody apart.
func TestWarningDoesNotEnumerate(t *testing.T) {
	f := newFixture(t, nil)
	var texts []string
	for _, user := range []string{"alice", "nosuchuser"} {
		c := f.challengeFor(t, "INVITE", ruri, alicePeer)
		v := strings.Replace(authz(SHA256, user, "x", "INVITE", ruri, c, "00000001", "a"), "qop=auth", "qop=auth-int", 1)
		_, w := f.serve(t, newReq(t, "INVITE", ruri, alicePeer, "", "Proxy-Authorization: "+v))
		res := w.last(t)
		if res.StatusCode != 400 || res.GetHeader("Warning") == nil {
			t.Fatalf("%s: %d without Warning", user, res.StatusCode)
		}
		texts = append(texts, res.GetHeader("Warning").Value())
	}
	if texts[0] != texts[1] {
		t.Fatalf("Warnings differ between users: %q", texts)
	}
	// A Warning never carries the wire's quote characters back.
	c := f.challengeFor(t, "INVITE", ruri, alicePeer)
	v := strings.Replace(authz(SHA256, "alice", "x", "INVITE", ruri, c, "00000001", "a"), "algorithm=SHA-256", `algorithm="SHA\"-1"`, 1)
	_, w := f.serve(t, newReq(t, "INVITE", ruri, alicePeer, "", "Proxy-Authorization: "+v))
	if got := w.last(t).GetHeader("Warning"); got == nil || strings.Count(got.Value(), `"`) != 2 {
		t.Fatalf("Warning %v", got)
	}
}

// A user without an MD5 HA1 never authenticates with MD5, whatever a
// profile offered: what an account accepts is what is stored for it.
func TestAccountWithoutMD5(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		u := users()
		m := ha1s("carol", "pw")
		delete(m, MD5)
		u["carol"] = struct {
			ha1      map[string]string
			disabled bool
		}{ha1: m}
		o.Users = u
	})
	c := f.challengeFor(t, "INVITE", ruri, alicePeer)
	r := newReq(t, "INVITE", ruri, alicePeer, "", "Proxy-Authorization: "+authz(MD5, "carol", "pw", "INVITE", ruri, c, "00000001", "a"))
	if v, w := f.serve(t, r); v != sbc.Rejected || w.last(t).StatusCode != 407 {
		t.Fatalf("MD5 for an account without MD5: %v", v)
	}
	c = f.challengeFor(t, "INVITE", ruri, alicePeer)
	r = newReq(t, "INVITE", ruri, alicePeer, "", "Proxy-Authorization: "+authz(SHA256, "carol", "pw", "INVITE", ruri, c, "00000001", "a"))
	if v, _ := f.serve(t, r); v != sbc.Continue {
		t.Fatalf("SHA-256: %v", v)
	}
}

func TestUnansweredChallenges(t *testing.T) {
	var got []Unanswered
	f := newFixture(t, func(o *Options) {
		o.Profiles = defaultProfiles(t)
		o.OnUnanswered = func(u Unanswered) { got = append(got, u) }
		o.MaxPending = 2
	})
	phone := netip.MustParseAddrPort("192.0.2.20:5060")
	third := netip.MustParseAddrPort("192.0.2.30:5060")
	// The old phone is challenged twice and never answers; alice answers.
	for range 2 {
		f.serve(t, newReq(t, "REGISTER", "sip:"+realm, phone, "", "User-Agent: baresip v1.1.0 (x86_64/linux)"))
	}
	c := f.challengeFor(t, "INVITE", ruri, alicePeer)
	f.serve(t, newReq(t, "INVITE", ruri, alicePeer, "", "Proxy-Authorization: "+authz(SHA256, "alice", "correct horse", "INVITE", ruri, c, "00000001", "a")))
	// The table holds two sources: a third is not tracked while full...
	f.serve(t, newReq(t, "INVITE", ruri, evePeer, ""))
	f.serve(t, newReq(t, "INVITE", ruri, third, ""))
	f.a.Sweep()
	if len(got) != 0 {
		t.Fatalf("reported before the deadline: %+v", got)
	}
	f.clk.Add(DefaultUnansweredAfter)
	f.a.Sweep()
	slices.SortFunc(got, func(a, b Unanswered) int { return a.Peer.Compare(b.Peer) })
	if len(got) != 2 || got[0].Peer != phone.Addr() || got[1].Peer != evePeer.Addr() {
		t.Fatalf("reported %+v, want the phone and eve", got)
	}
	u := got[0]
	// The REGISTER's To names no user here; eve's INVITE is From alice.
	if got[1].User != "alice" || got[1].Method != "INVITE" || got[1].Count != 1 {
		t.Fatalf("entry %+v", got[1])
	}
	if u.Count != 2 || u.Method != "REGISTER" || u.User != "" || u.ProfileFor != "baresip-1" ||
		!slices.Equal(u.Offered, []string{MD5}) || !strings.HasPrefix(u.UserAgent, "baresip v1.1.0") {
		t.Fatalf("entry %+v", u)
	}
	if s := u.Summary(); s != "challenge unanswered (offered MD5 by profile baresip-1)" {
		t.Fatalf("summary %q", s)
	}
	if s := f.a.Stats(); s.Unanswered != 2 || s.Pending != 0 {
		t.Fatalf("stats %+v", s)
	}
	// ...and once swept, the table takes new sources again.
	f.serve(t, newReq(t, "INVITE", ruri, third, ""))
	f.clk.Add(time.Minute)
	f.a.Sweep()
	if len(got) != 3 || got[2].Peer != third.Addr() {
		t.Fatalf("third source not reported: %+v", got)
	}
}
