package main

// The destination check through the whole wiring, in process: the
// default configuration (built-in policy, built-in rules) with
// dialplan.country GB and calls.follow_redirects on, a PBX that records
// what it receives (a raw SIP peer on 127.0.0.46), callers authenticated
// by digest. A premium destination, written in any form, is refused on
// every route before the PBX sees it; extensions, names, emergency,
// national and international numbers reach it.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/rules"
	"github.com/sipwall/sipwall/sbc/auth"
	"github.com/sipwall/sipwall/sbc/config"
	"github.com/sipwall/sipwall/sbc/decision"
	"github.com/sipwall/sipwall/sbc/siptest"
)

// Written forms of the premium number +449091234567 (or of no number a
// PBX may still dial) as a URI user part, and forms that must connect.
var (
	blockedForms = []string{
		"+449091234567",
		"%2B44%20(0)909%20123%204567",
		"*6709091234567",
		"14109091234567",
		"09091234567;phone-context=+44",
		"%EF%BC%90%EF%BC%99%EF%BC%90%EF%BC%99%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96%EF%BC%97",
	}
	connectForms = []string{"1000", "02079460000", "%2B33%201%2042%2000%2000%2000", "*6702079460000", "carol"}
)

// writeUsers writes a users file of names, each with password "demo".
func writeUsers(t *testing.T, dir, realm string, names ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("users:\n")
	for _, u := range names {
		fmt.Fprintf(&b, "  - name: %s\n    ha1:\n", u)
		for _, alg := range []string{auth.SHA256, auth.SHA512256, auth.MD5} {
			fmt.Fprintf(&b, "      %s: %q\n", alg, auth.HashPassword(u, realm, "demo", alg))
		}
	}
	p := filepath.Join(dir, "users.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// authed sends method in d with digest credentials of u after the 407,
// and returns the final response to the second request.
func (u *sipUA) authed(d *siptest.Dialog, method string, hdrs []string, body string) *sip.Response {
	u.t.Helper()
	res := u.mustFinal(d.Send(method, hdrs, body), 5*time.Second)
	if res.StatusCode != 407 {
		return res
	}
	if method == "INVITE" {
		d.AckFailure(res)
	}
	chal := md5Challenge(u.t, res, "Proxy-Authenticate")
	return u.mustFinal(d.Send(method, append(hdrs, credentials("Proxy-Authorization", chal, u.user, "demo", method, d.Target)), body), 10*time.Second)
}

func TestDestinationCheckEveryRoute(t *testing.T) {
	pbx := siptest.NewPeer(t, "127.0.0.46:0")
	pbx2 := siptest.NewPeer(t, "127.0.0.47:0")
	a, _ := startDemo(t, func(c *config.Config) {
		c.Upstreams = []config.Upstream{{Name: "pbx", URI: "sip:" + pbx.Addr().String(), Priority: 1, Weight: 1}}
		c.Auth.UsersFile = writeUsers(t, t.TempDir(), c.Auth.Realm, "alice", "bob", "carol", "dave", "erin", "frank")
		c.Dialplan.Country = "GB"
		c.Calls.FollowRedirects = true
	})
	node := udpListener(t, a)
	uri := func(user string) string { return "sip:" + user + "@" + node.String() }
	const quiet = 200 * time.Millisecond

	// An INVITE's Request-URI, tel: too; emergency numbers connect.
	t.Run("invite", func(t *testing.T) {
		u := newUA(t, "127.0.0.41", "alice")
		for _, f := range append(blockedForms, "tel:+44-909-123-4567") {
			ruri := uri(f)
			if strings.HasPrefix(f, "tel:") {
				ruri = f
			}
			d := u.p.NewDialog(node, ruri)
			if res := u.authed(d, "INVITE", nil, clusterSDP(u.p.Addr())); res.StatusCode != 403 {
				t.Errorf("INVITE %s: %d %s, want 403", f, res.StatusCode, res.Reason)
			} else {
				d.AckFailure(res)
			}
		}
		pbx.NoMessage(quiet)
		for _, f := range append(connectForms, "999", "tel:+44-20-7946-0000") {
			ruri, want := uri(f), f
			if strings.HasPrefix(f, "tel:") {
				ruri, want = f, strings.TrimPrefix(f, "tel:")
			}
			d, inv := u.inviteAuth(node, ruri, "demo")
			got := pbx.ExpectRequest("INVITE", 5*time.Second)
			if got.Recipient.User != want {
				t.Errorf("INVITE %s reached the PBX as %s", f, got.Recipient.String())
			}
			pbx.Reply(got, 486, "Busy Here")
			pbx.ExpectRequest("ACK", 5*time.Second)
			if res := u.finish(d, inv, 5*time.Second); res.StatusCode != 486 {
				t.Errorf("INVITE %s: %d, want the PBX's 486", f, res.StatusCode)
			}
		}
	})

	// establish places u's call to 1000 and answers it at the PBX.
	establish := func(t *testing.T, u *sipUA) (*siptest.Dialog, *siptest.Dialog) {
		t.Helper()
		d, inv := u.inviteAuth(node, uri("1000"), "demo")
		got := pbx.ExpectRequest("INVITE", 5*time.Second)
		pbx.ReplyBody(got, 200, "OK", clusterSDP(pbx.Addr()))
		if res := u.finish(d, inv, 5*time.Second); res.StatusCode != 200 {
			t.Fatalf("call to 1000: %d", res.StatusCode)
		}
		pbx.ExpectRequest("ACK", 5*time.Second)
		return d, pbx.DialogFrom(got)
	}

	// A REFER inside an answered call.
	t.Run("refer in dialog", func(t *testing.T) {
		u := newUA(t, "127.0.0.42", "bob")
		d, _ := establish(t, u)
		for _, f := range blockedForms {
			if res := u.mustFinal(d.Send("REFER", []string{"Refer-To: <" + uri(f) + ">"}, ""), 5*time.Second); res.StatusCode != 403 {
				t.Errorf("REFER to %s: %d, want 403", f, res.StatusCode)
			}
		}
		pbx.NoMessage(quiet)
		for _, f := range connectForms {
			req := d.Send("REFER", []string{"Refer-To: <" + uri(f) + ">"}, "")
			refer := pbx.ExpectRequest("REFER", 5*time.Second)
			if rt := refer.GetHeader("Refer-To"); rt == nil || !strings.Contains(rt.Value(), f) {
				t.Errorf("REFER to %s reached the PBX with Refer-To %v", f, rt)
			}
			pbx.Reply(refer, 202, "Accepted")
			if res := u.mustFinal(req, 5*time.Second); res.StatusCode != 202 {
				t.Errorf("REFER to %s: %d, want 202", f, res.StatusCode)
			}
		}
		req := d.Send("BYE", nil, "")
		pbx.Reply(pbx.ExpectRequest("BYE", 5*time.Second), 200, "OK")
		u.mustFinal(req, 5*time.Second)
	})

	// A REFER outside any dialog: refused by the destination check, or
	// let through to the B2BUA, which has no dialog for it (481).
	t.Run("refer out of dialog", func(t *testing.T) {
		u := newUA(t, "127.0.0.43", "carol")
		for _, tc := range []struct {
			forms  []string
			status int
		}{{blockedForms, 403}, {connectForms, 481}} {
			for _, f := range tc.forms {
				d := u.p.NewDialog(node, uri("bob"))
				if res := u.authed(d, "REFER", []string{"Refer-To: <" + uri(f) + ">"}, ""); res.StatusCode != tc.status {
					t.Errorf("REFER to %s out of dialog: %d, want %d", f, res.StatusCode, tc.status)
				}
			}
		}
		pbx.NoMessage(quiet)
	})

	// An INVITE with Replaces and Referred-By: its Request-URI is judged
	// like any new call's.
	t.Run("replaces", func(t *testing.T) {
		u := newUA(t, "127.0.0.44", "dave")
		hdrs := []string{"Replaces: gone@127.0.0.44;to-tag=a1;from-tag=b2", "Referred-By: <sip:alice@127.0.0.41>"}
		for _, f := range blockedForms {
			d := u.p.NewDialog(node, uri(f))
			if res := u.authed(d, "INVITE", hdrs, clusterSDP(u.p.Addr())); res.StatusCode != 403 {
				t.Errorf("INVITE with Replaces to %s: %d, want 403", f, res.StatusCode)
			} else {
				d.AckFailure(res)
			}
		}
		pbx.NoMessage(quiet)
		for _, f := range connectForms {
			d := u.p.NewDialog(node, uri(f))
			inv := d.Send("INVITE", hdrs, clusterSDP(u.p.Addr()))
			res := u.mustFinal(inv, 5*time.Second)
			d.AckFailure(res)
			chal := md5Challenge(t, res, "Proxy-Authenticate")
			inv = d.Send("INVITE", append(hdrs, credentials("Proxy-Authorization", chal, "dave", "demo", "INVITE", d.Target)), clusterSDP(u.p.Addr()))
			got := pbx.ExpectRequest("INVITE", 5*time.Second)
			pbx.Reply(got, 481, "Call/Transaction Does Not Exist")
			pbx.ExpectRequest("ACK", 5*time.Second)
			u.finish(d, inv, 5*time.Second)
		}
	})

	// A 3xx from the PBX that sipwall follows (calls.follow_redirects).
	t.Run("followed redirect", func(t *testing.T) {
		redirect := func(u *sipUA, f string) *sip.Response {
			t.Helper()
			d, inv := u.inviteAuth(node, uri("1000"), "demo")
			got := pbx.ExpectRequest("INVITE", 5*time.Second)
			pbx.Reply(got, 302, "Moved Temporarily", "Contact: <sip:"+f+"@"+pbx2.Addr().String()+">")
			pbx.ExpectRequest("ACK", 5*time.Second)
			if f2 := connectForms; strings.Contains(strings.Join(f2, "|"), f) {
				got2 := pbx2.ExpectRequest("INVITE", 5*time.Second)
				if got2.Recipient.User != f {
					t.Errorf("redirect to %s followed to %s", f, got2.Recipient.String())
				}
				pbx2.Reply(got2, 486, "Busy Here")
				pbx2.ExpectRequest("ACK", 5*time.Second)
			}
			return u.finish(d, inv, 5*time.Second)
		}
		erin, frank := newUA(t, "127.0.0.48", "erin"), newUA(t, "127.0.0.49", "frank")
		for _, f := range blockedForms {
			if res := redirect(erin, f); res.StatusCode != 403 {
				t.Errorf("redirect to %s: %d, want 403", f, res.StatusCode)
			}
		}
		pbx2.NoMessage(quiet)
		for _, f := range connectForms {
			if res := redirect(frank, f); res.StatusCode != 486 {
				t.Errorf("redirect to %s: %d, want 486 from where it led", f, res.StatusCode)
			}
		}
	})

	// The decision log finds every refusal by the number itself (`sipwall
	// why +449091234567`), with the rule that refused it.
	found := a.decisions.Search(decision.Query{Text: "+449091234567"})
	n := 0
	for _, e := range found {
		if e.Verdict == "rejected" && e.Status == 403 && strings.Contains(e.Why, "builtin/premium") {
			n += e.Count
		}
	}
	// invite 5 + tel 1, refer in dialog 5, refer out of dialog 5,
	// replaces 5, redirect 5: the full-width form reads as no number.
	if n != 26 {
		t.Errorf("decision log: %d premium refusals found by +449091234567, want 26:\n%+v", n, found)
	}
}

func TestRulesAndDialplanCommands(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"rules", "builtin"}, &out, &errb); code != 0 || !bytes.Equal(out.Bytes(), rules.Builtin()) {
		t.Errorf("sipwall rules builtin: exit %d, printed %q (stderr %q)", code, out.String(), errb.String())
	}
	out.Reset()
	code := Main([]string{"dialplan", "-country", "GB", "+44 (0)909 123 4567", "*671000", "tel:+44-20-7946-0000", "０"}, &out, &errb)
	want := "\"+44 (0)909 123 4567\"\tnational\t+449091234567\n\"*671000\"\textension\textension 1000 after *67\n" +
		"\"tel:+44-20-7946-0000\"\tnational\t+442079460000\n\"０\"\tinvalid\tinvalid (non-ASCII character)\n"
	if code != 0 || out.String() != want {
		t.Errorf("sipwall dialplan: exit %d, printed\n%s\nwant\n%s", code, out.String(), want)
	}
	if code := Main([]string{"dialplan", "-country", "XX", "1"}, &out, &errb); code == 0 {
		t.Error("sipwall dialplan -country XX: exit 0")
	}
}
