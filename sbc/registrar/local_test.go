package registrar_test

import (
	"context"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/registrar"
	"github.com/sipwall/sipwall/sbc/siptest"
)

// TestLocalMode: the SBC is the registrar; two registered users call each
// other through it, by domain and by the SBC's address.
func TestLocalMode(t *testing.T) {
	t.Parallel()
	alice := siptest.NewPeer(t, phoneIP+":0")
	alice.User = "alice"
	bob := siptest.NewPeer(t, phone2IP+":0")
	bob.User = "bob"
	h := startSBC(t, localConfig(), nil, "", nil)

	sendRegister(t, alice, h.UDP, register{aor: "alice@example.com", callID: "a@1", contact: []string{"<" + alice.URI() + ">"}, expires: "3600"})
	if got := contactExpires(t, alice.ExpectResponse(200, wait)); len(got) != 1 || got[0] != 60 {
		t.Errorf("alice's expires %v, want [60]", got)
	}
	sendRegister(t, bob, h.UDP, register{aor: "bob@example.com", callID: "b@1", contact: []string{"<" + bob.URI() + ">"}})
	bob.ExpectResponse(200, wait)

	for _, ruri := range []string{"sip:bob@example.com", "sip:bob@" + h.UDP.String()} {
		d := alice.Invite(h.UDP, ruri, nil, offerSDP(phoneIP))
		inv := bob.ExpectRequest("INVITE", wait)
		if got := inv.Recipient.String(); got != bob.URI() {
			t.Errorf("%s: bob's Request-URI %q", ruri, got)
		}
		bob.ReplyBody(inv, 200, "OK", offerSDP(phone2IP))
		d.Learn(alice.ExpectResponse(200, wait))
		d.Ack(nil, "")
		bob.ExpectRequest("ACK", wait)
		d.Send("BYE", nil, "")
		bob.Reply(bob.ExpectRequest("BYE", wait), 200, "OK")
		alice.ExpectResponse(200, wait)
	}

	// A listed user who is not registered: no route (no upstream: 503).
	sendRegister(t, bob, h.UDP, register{aor: "bob@example.com", callID: "b@1", cseq: 2, contact: []string{"*"}, expires: "0"})
	bob.ExpectResponse(200, wait)
	alice.Invite(h.UDP, "sip:bob@example.com", nil, offerSDP(phoneIP))
	alice.ExpectResponse(503, wait)
	bob.NoMessage(quiet)

	// A query lists the caller's own bindings.
	sendRegister(t, alice, h.UDP, register{aor: "alice@example.com", callID: "a@1", cseq: 2, contact: []string{}})
	res := alice.ExpectResponse(200, wait)
	if cs := res.GetHeaders("Contact"); len(cs) != 1 || !strings.Contains(cs[0].Value(), alice.URI()) {
		t.Errorf("query answered %v", cs)
	}
	// ... but not to someone else.
	sendRegister(t, bob, h.UDP, register{aor: "alice@example.com", callID: "spy", contact: []string{}})
	if cs := bob.ExpectResponse(200, wait).GetHeaders("Contact"); len(cs) != 0 {
		t.Errorf("another address's query got %v", cs)
	}
}

// TestLocalModeUnknown: users not listed and hosts not in domains are
// refused, 404 and other_domain_status.
func TestLocalModeUnknown(t *testing.T) {
	t.Parallel()
	phone := siptest.NewPeer(t, phoneIP+":0")
	h := startSBC(t, localConfig(), nil, "", nil)
	sendRegister(t, phone, h.UDP, register{aor: "carol@example.com", callID: "c@1"})
	phone.ExpectResponse(404, wait)
	sendRegister(t, phone, h.UDP, register{aor: "alice@other.example", callID: "c@2"})
	phone.ExpectResponse(403, wait)

	cfg := localConfig()
	cfg.OtherDomainStatus = 404
	h2 := startSBC(t, cfg, nil, "", nil)
	sendRegister(t, phone, h2.UDP, register{aor: "alice@other.example", callID: "c@3"})
	phone.ExpectResponse(404, wait)
	if d := h.dump(t) + h2.dump(t); d != "" {
		t.Errorf("store holds:\n%s", d)
	}
}

// TestBadInput: every malformed or refused REGISTER gets its status and
// changes nothing: not the store, not the PBX.
func TestBadInput(t *testing.T) {
	t.Parallel()
	long := "<sip:alice@" + strings.Repeat("a", 600) + ".example.com>"
	tests := []struct {
		name  string
		mode  registrar.Mode
		r     register
		code  int
		check func(t *testing.T, res *sip.Response)
	}{
		{name: "mailto Contact", r: register{contact: []string{"<mailto:alice@example.com>"}}, code: 400},
		{name: "tel Contact", r: register{contact: []string{"<tel:+15551234>"}}, code: 400},
		{name: "Contact too long", r: register{contact: []string{long}}, code: 400},
		{name: "Expires below min", r: register{expires: "30"}, code: 423, check: func(t *testing.T, res *sip.Response) {
			if got := header(res, "Min-Expires"); got != "60" {
				t.Errorf("Min-Expires %q, want 60", got)
			}
		}},
		{name: "contact expires below min", r: register{contact: []string{"<sip:alice@192.168.1.10>;expires=1"}}, code: 423},
		{name: "Expires not a number", r: register{expires: "soon"}, code: 400},
		{name: "Expires negative", r: register{expires: "-5"}, code: 400},
		{name: "two Expires", r: register{expires: "120", extra: []string{"Expires: 300"}}, code: 400},
		{name: "contact expires not a number", r: register{contact: []string{"<sip:alice@192.168.1.10>;expires=x"}}, code: 400},
		{name: "bad q", r: register{contact: []string{"<sip:alice@192.168.1.10>;q=2"}}, code: 400},
		{name: "star with Expires 3600", r: register{contact: []string{"*"}, expires: "3600"}, code: 400},
		{name: "star without Expires", r: register{contact: []string{"*"}}, code: 400},
		{name: "star and a Contact", r: register{contact: []string{"*", "<sip:alice@192.168.1.10>"}, expires: "0"}, code: 400},
		{name: "too many Contacts", r: register{contact: []string{
			"<sip:alice@192.168.1.1>", "<sip:alice@192.168.1.2>", "<sip:alice@192.168.1.3>",
			"<sip:alice@192.168.1.4>", "<sip:alice@192.168.1.5>", "<sip:alice@192.168.1.6>"}}, code: 403},
		{name: "other domain", r: register{aor: "alice@evil.example"}, code: 403},
		{name: "AOR without user", r: register{aor: "example.com"}, code: 400},
		{name: "Max-Forwards 0", r: register{extra: []string{"Max-Forwards: 0"}}, code: 483},
		{name: "local: unknown user", mode: registrar.ModeLocal, r: register{aor: "mallory@example.com"}, code: 404},
		{name: "local: other domain", mode: registrar.ModeLocal, r: register{aor: "alice@evil.example"}, code: 403},
		{name: "local: Expires below min", mode: registrar.ModeLocal, r: register{expires: "59"}, code: 423},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			phone := siptest.NewPeer(t, phoneIP+":0")
			pbx := siptest.NewPeer(t, pbxIP+":0")
			cfg := relayConfig()
			if tt.mode == registrar.ModeLocal {
				cfg = localConfig()
			}
			h := startSBC(t, cfg, pbx, "", nil)
			// An existing binding, to show it is untouched.
			if tt.mode == registrar.ModeLocal {
				sendRegister(t, phone, h.UDP, register{callID: "pre", cseq: 1})
				phone.ExpectResponse(200, wait)
			} else {
				registerRelayed(t, h, phone, pbx, register{callID: "pre", cseq: 1})
			}
			before := h.dump(t)
			tt.r.callID = "bad"
			sendRegister(t, phone, h.UDP, tt.r)
			res := phone.ExpectResponse(tt.code, wait)
			if tt.check != nil {
				tt.check(t, res)
			}
			pbx.NoMessage(quiet)
			if after := h.dump(t); after != before {
				t.Errorf("store changed:\nbefore %s\nafter  %s", before, after)
			}
			if n := h.Reg.Stats().Rejected.Load(); n != 1 {
				t.Errorf("Rejected = %d", n)
			}
		})
	}
}

// TestCSeqOrder: a REGISTER of the same Call-ID with a CSeq not above the
// binding's fails (RFC 3261 10.3 step 7) and changes nothing.
func TestCSeqOrder(t *testing.T) {
	t.Parallel()
	phone := siptest.NewPeer(t, phoneIP+":0")
	h := startSBC(t, localConfig(), nil, "", nil)
	sendRegister(t, phone, h.UDP, register{callID: "ord", cseq: 5})
	phone.ExpectResponse(200, wait)
	before := h.dump(t)
	for _, r := range []register{
		{callID: "ord", cseq: 5},
		{callID: "ord", cseq: 4, contact: []string{"<sip:alice@192.168.1.10:5060>;expires=0"}},
		{callID: "ord", cseq: 3, contact: []string{"*"}, expires: "0"},
	} {
		sendRegister(t, phone, h.UDP, r)
		phone.ExpectResponse(400, wait)
	}
	if after := h.dump(t); after != before {
		t.Errorf("store changed:\nbefore %s\nafter  %s", before, after)
	}
	// Another Call-ID (the phone rebooted) may replace the binding.
	sendRegister(t, phone, h.UDP, register{callID: "ord2", cseq: 1})
	phone.ExpectResponse(200, wait)
	if bs := h.Reg.Lookup("alice@example.com"); len(bs) != 1 || bs[0].CallID != "ord2" {
		t.Errorf("bindings %+v", bs)
	}
}

// TestMaxBindings: a full AOR rejects a new Contact (403) or, with
// replace_oldest, drops the binding refreshed longest ago.
func TestMaxBindings(t *testing.T) {
	t.Parallel()
	for _, replace := range []bool{false, true} {
		name := "reject"
		if replace {
			name = "replace_oldest"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			phone := siptest.NewPeer(t, phoneIP+":0")
			cfg := localConfig()
			cfg.MaxBindings = 2
			cfg.ReplaceOldest = replace
			h := startSBC(t, cfg, nil, "", nil)
			for i, c := range []string{"<sip:alice@10.0.0.1>", "<sip:alice@10.0.0.2>"} {
				sendRegister(t, phone, h.UDP, register{callID: "mb" + c, contact: []string{c}})
				phone.ExpectResponse(200, wait)
				if i == 0 {
					h.Clock.Advance(time.Second)
				}
			}
			// Refreshing the first makes the second the oldest.
			h.Clock.Advance(time.Second)
			sendRegister(t, phone, h.UDP, register{callID: "mb<sip:alice@10.0.0.1>", cseq: 2, contact: []string{"<sip:alice@10.0.0.1>"}})
			phone.ExpectResponse(200, wait)
			before := h.dump(t)
			sendRegister(t, phone, h.UDP, register{callID: "mb3", contact: []string{"<sip:alice@10.0.0.3>"}})
			if !replace {
				phone.ExpectResponse(403, wait)
				if after := h.dump(t); after != before {
					t.Errorf("store changed:\nbefore %s\nafter  %s", before, after)
				}
				return
			}
			res := phone.ExpectResponse(200, wait)
			var got []string
			for _, b := range h.Reg.Lookup("alice@example.com") {
				got = append(got, b.Contact)
			}
			if strings.Join(got, " ") != "sip:alice@10.0.0.1 sip:alice@10.0.0.3" {
				t.Errorf("bindings %v, want 10.0.0.1 and 10.0.0.3", got)
			}
			if n := len(res.GetHeaders("Contact")); n != 2 {
				t.Errorf("200 lists %d Contacts", n)
			}
		})
	}
}

// TestMaxAORs: a new AOR beyond max_aors gets 503; an expired AOR frees
// its slot.
func TestMaxAORs(t *testing.T) {
	t.Parallel()
	phone := siptest.NewPeer(t, phoneIP+":0")
	cfg := localConfig()
	cfg.MaxAORs = 1
	h := startSBC(t, cfg, nil, "", nil)
	sendRegister(t, phone, h.UDP, register{aor: "alice@example.com", callID: "m1"})
	phone.ExpectResponse(200, wait)
	before := h.dump(t)
	sendRegister(t, phone, h.UDP, register{aor: "bob@example.com", callID: "m2"})
	if got := header(phone.ExpectResponse(503, wait), "Retry-After"); got == "" {
		t.Error("503 without Retry-After")
	}
	if after := h.dump(t); after != before {
		t.Errorf("store changed:\nbefore %s\nafter  %s", before, after)
	}
	h.Clock.Advance(61 * time.Second)
	sendRegister(t, phone, h.UDP, register{aor: "bob@example.com", callID: "m3"})
	phone.ExpectResponse(200, wait)
	if aors, bindings := h.Reg.Count(); aors != 1 || bindings != 1 {
		t.Errorf("Count = %d, %d", aors, bindings)
	}
}

// TestRedirect: with redirect on, an INVITE for a registered user is
// answered 302 with the binding's Contact; for a listed user without a
// binding, 480.
func TestRedirect(t *testing.T) {
	t.Parallel()
	bob := siptest.NewPeer(t, phone2IP+":0")
	caller := siptest.NewPeer(t, phoneIP+":0")
	cfg := localConfig()
	cfg.Redirect = true
	h := startSBC(t, cfg, nil, "", nil)
	sendRegister(t, bob, h.UDP, register{aor: "bob@example.com", callID: "rd",
		contact: []string{"<sip:bob@192.168.7.7:5070;transport=tcp>;q=0.5"}})
	bob.ExpectResponse(200, wait)

	d := caller.Invite(h.UDP, "sip:bob@example.com", nil, offerSDP(phoneIP))
	res := caller.ExpectResponse(302, wait)
	ct := res.Contact()
	if ct == nil || ct.Address.String() != "sip:bob@192.168.7.7:5070;transport=tcp" {
		t.Errorf("302 Contact %v", res.GetHeaders("Contact"))
	} else if q, _ := ct.Params.Get("q"); q != "0.5" {
		t.Errorf("302 Contact q %q", q)
	}
	d.AckFailure(res)
	bob.NoMessage(quiet)

	caller.Invite(h.UDP, "sip:alice@example.com", nil, offerSDP(phoneIP))
	caller.ExpectResponse(480, wait)
	if n := h.Reg.Stats().Redirected.Load(); n != 1 {
		t.Errorf("Redirected = %d", n)
	}
}

// writer records the response ServeSIP sends.
type writer struct {
	res     *sip.Response
	written atomic.Int32
}

func (w *writer) Respond(res *sip.Response) error {
	w.res = res
	if res.StatusCode >= 200 {
		w.written.CompareAndSwap(0, int32(res.StatusCode))
	}
	return nil
}
func (w *writer) Tx() sip.ServerTransaction { return nil }
func (w *writer) Written() int              { return int(w.written.Load()) }

// TestIdentityMismatch: once auth sets an identity, a REGISTER whose To
// is another user's gets 403 and changes nothing; its own user passes.
func TestIdentityMismatch(t *testing.T) {
	t.Parallel()
	h := startSBC(t, localConfig(), nil, "", nil)
	mk := func(user string, cseq int) *sbc.Request {
		raw := registerMsg(netip.MustParseAddrPort("127.0.0.5:5060"), "UDP", register{aor: "alice@example.com", callID: "id", cseq: cseq})
		msg, err := sip.NewParser().ParseSIP(raw)
		if err != nil {
			t.Fatal(err)
		}
		req := msg.(*sip.Request)
		req.SetSource("127.0.0.5:5060")
		return &sbc.Request{Request: req, Peer: netip.MustParseAddrPort("127.0.0.5:5060"), Transport: "udp", Side: sbc.External,
			Identity: &sbc.Identity{User: user, Realm: "example.com"}}
	}
	w := &writer{}
	v, err := h.Reg.ServeSIP(context.Background(), w, mk("bob", 1))
	if err != nil || v != sbc.Rejected || w.Written() != 403 {
		t.Fatalf("bob registering alice: %v %v %d", v, err, w.Written())
	}
	if d := h.dump(t); d != "" {
		t.Errorf("store holds:\n%s", d)
	}
	w = &writer{}
	v, err = h.Reg.ServeSIP(context.Background(), w, mk("alice", 2))
	if err != nil || v != sbc.Answered || w.Written() != 200 {
		t.Fatalf("alice registering alice: %v %v %d", v, err, w.Written())
	}
	// Authenticated, a query lists every binding whatever the address.
	if n := len(w.res.GetHeaders("Contact")); n != 1 {
		t.Errorf("200 lists %d Contacts", n)
	}
}

// TestOffMode: REGISTER passes through to the next layer.
func TestOffMode(t *testing.T) {
	t.Parallel()
	phone := siptest.NewPeer(t, phoneIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	cfg := relayConfig()
	cfg.Mode = registrar.ModeOff
	h := startSBC(t, cfg, pbx, "", nil)
	sendRegister(t, phone, h.UDP, register{callID: "off"})
	up := pbx.ExpectRequest("REGISTER", wait)
	// The B2BUA's plain relay keeps the phone's Contact.
	if got := up.Contact().Address.String(); got != "sip:alice@192.168.1.10:5060" {
		t.Errorf("Contact %q", got)
	}
	pbxAnswer(t, pbx, up)
	phone.ExpectResponse(200, wait)
	if d := h.dump(t); d != "" {
		t.Errorf("store holds:\n%s", d)
	}
}

// TestNewRefusesBadConfig: local mode without lists, redirect outside
// local mode and no store are construction errors.
func TestNewRefusesBadConfig(t *testing.T) {
	h := startSBC(t, relayConfig(), nil, "", nil)
	base := relayConfig()
	base.Store = h.Store
	base.Client = h.Server.Client()
	base.Endpoint = h.Server
	for name, f := range map[string]func(c *registrar.Config){
		"local without users":   func(c *registrar.Config) { c.Mode = registrar.ModeLocal; c.Users = nil },
		"local without domains": func(c *registrar.Config) { c.Mode = registrar.ModeLocal; c.Users = []string{"a"}; c.Domains = nil },
		"redirect in relay":     func(c *registrar.Config) { c.Redirect = true },
		"no store":              func(c *registrar.Config) { c.Store = nil },
		"bad mode":              func(c *registrar.Config) { c.Mode = "proxy" },
		"min above max":         func(c *registrar.Config) { c.MinExpires = 2 * time.Hour },
		"relay without client":  func(c *registrar.Config) { c.Client = nil },
	} {
		c := base
		f(&c)
		if _, err := registrar.New(c); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

// TestInstanceID: a phone sending +sip.instance and reg-id (RFC 5626)
// keeps one binding when it re-registers from a new address and Contact.
func TestInstanceID(t *testing.T) {
	t.Parallel()
	phone := siptest.NewPeer(t, phoneIP+":0")
	moved := siptest.NewPeer(t, phoneIP+":0")
	h := startSBC(t, localConfig(), nil, "", nil)
	inst := `;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000a95a0e128>";reg-id=1`
	sendRegister(t, phone, h.UDP, register{callID: "inst", contact: []string{"<sip:alice@192.168.1.10:5060;ob>" + inst}})
	phone.ExpectResponse(200, wait)
	sendRegister(t, moved, h.UDP, register{callID: "inst", cseq: 2, contact: []string{"<sip:alice@192.168.1.11:5060;ob>" + inst}})
	res := moved.ExpectResponse(200, wait)
	bs := h.Reg.Lookup("alice@example.com")
	if len(bs) != 1 || bs[0].Peer != moved.Addr().String() || bs[0].Contact != "sip:alice@192.168.1.11:5060;ob" {
		t.Fatalf("bindings %+v", bs)
	}
	if cs := res.GetHeaders("Contact"); len(cs) != 1 || !strings.Contains(cs[0].Value(), "+sip.instance=") || !strings.Contains(cs[0].Value(), "reg-id=1") {
		t.Errorf("200 Contacts %v: the instance must be echoed", cs)
	}
}
