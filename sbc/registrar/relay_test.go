package registrar_test

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/siptest"
	"github.com/sipwall/sipwall/topology"
)

// TestRelayRegister: the PBX sees the phone's AOR and Request-URI, a
// Contact at the SBC with upstream_expires, and nothing of the phone's
// address or Call-ID; the phone sees its own Contact with phone_expires.
func TestRelayRegister(t *testing.T) {
	t.Parallel()
	phone := siptest.NewPeer(t, phoneIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, relayConfig(), pbx, "", nil)

	sendRegister(t, phone, h.UDP, register{callID: "reg-1@phone", expires: "3600",
		extra: []string{"Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"n1\", uri=\"sip:example.com\", response=\"00\""}})
	up := pbx.ExpectRequest("REGISTER", wait)

	if got := up.Recipient.String(); got != "sip:example.com" {
		t.Errorf("PBX Request-URI %q, want the phone's sip:example.com", got)
	}
	if got := up.To().Address.String(); got != "sip:alice@example.com" {
		t.Errorf("PBX To %q", got)
	}
	if up.CallID().Value() == "reg-1@phone" {
		t.Error("the phone's Call-ID reached the PBX")
	}
	if got := header(up, "Authorization"); !strings.Contains(got, `response="00"`) {
		t.Errorf("Authorization not relayed unchanged: %q", got)
	}
	ct := up.Contact()
	if ct.Address.Host != "127.0.0.1" || ct.Address.Port != int(h.UDP.Port()) || !strings.HasPrefix(ct.Address.User, "sw-") {
		t.Errorf("PBX Contact %q, want a token at the SBC %s", ct.Value(), h.UDP)
	}
	if got := contactExpires(t, up); len(got) != 1 || got[0] != 3600 {
		t.Errorf("PBX Contact expires %v, want [3600]", got)
	}
	raw := up.String()
	for _, leak := range []string{"192.168.1.10", phoneIP, "reg-1@phone"} {
		if strings.Contains(raw, leak) {
			t.Errorf("PBX REGISTER contains %q:\n%s", leak, raw)
		}
	}
	pbxAnswer(t, pbx, up)
	res := phone.ExpectResponse(200, wait)
	if got := res.Contact().Address.String(); got != "sip:alice@192.168.1.10:5060" {
		t.Errorf("phone's 200 Contact %q, want its own", got)
	}
	if got := contactExpires(t, res); len(got) != 1 || got[0] != 60 {
		t.Errorf("phone's 200 expires %v, want [60] (phone_expires)", got)
	}
	if strings.Contains(res.String(), "sw-") {
		t.Errorf("the token reached the phone:\n%s", res)
	}

	bs := h.Reg.Lookup("alice@EXAMPLE.com")
	if len(bs) != 1 || bs[0].Peer != phone.Addr().String() || bs[0].Transport != "udp" || bs[0].Token != ct.Address.User {
		t.Fatalf("bindings %+v", bs)
	}
	if n := h.Reg.Stats().Relayed.Load(); n != 1 {
		t.Errorf("Relayed = %d", n)
	}
}

// TestCaching: refreshes inside the refresh window are answered by the SBC;
// the PBX sees one REGISTER per window, counted.
func TestCaching(t *testing.T) {
	t.Parallel()
	phone := siptest.NewPeer(t, phoneIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, relayConfig(), pbx, "", nil)

	pbxSaw := 0
	cseq := 1
	up, _ := registerRelayed(t, h, phone, pbx, register{callID: "cache@phone", cseq: cseq})
	pbxSaw++
	upCallID := up.CallID().Value()
	// upstream_expires 1h at 50%: a window of 30 minutes. The phone
	// refreshes every 55 s (phone_expires 60 s): 32 refreshes fall in the
	// window, the 33rd after it.
	const step = 55 * time.Second
	cached := 0
	for elapsed := step; elapsed < 30*time.Minute; elapsed += step {
		h.Clock.Advance(step)
		cseq++
		sendRegister(t, phone, h.UDP, register{callID: "cache@phone", cseq: cseq})
		res := phone.ExpectResponse(200, wait)
		if got := contactExpires(t, res); len(got) != 1 || got[0] != 60 {
			t.Fatalf("refresh %d: expires %v", cached, got)
		}
		cached++
	}
	pbx.NoMessage(quiet)
	if n := h.Reg.Stats().Cached.Load(); n != int64(cached) || cached != 32 {
		t.Errorf("Cached = %d, want %d (32)", n, cached)
	}

	// Past the window the next refresh goes up, same Call-ID, higher CSeq.
	h.Clock.Advance(step)
	cseq++
	sendRegister(t, phone, h.UDP, register{callID: "cache@phone", cseq: cseq})
	up2 := pbx.ExpectRequest("REGISTER", wait)
	pbxSaw++
	if up2.CallID().Value() != upCallID || up2.CSeq().SeqNo <= up.CSeq().SeqNo {
		t.Errorf("refresh to PBX: Call-ID %q CSeq %d, want %q and above %d", up2.CallID().Value(), up2.CSeq().SeqNo, upCallID, up.CSeq().SeqNo)
	}
	if tokenOf(t, up2) != tokenOf(t, up) {
		t.Error("the refresh gave the PBX a new token")
	}
	pbxAnswer(t, pbx, up2)
	phone.ExpectResponse(200, wait)

	// The next window starts with that refresh.
	h.Clock.Advance(step)
	cseq++
	sendRegister(t, phone, h.UDP, register{callID: "cache@phone", cseq: cseq})
	phone.ExpectResponse(200, wait)
	pbx.NoMessage(quiet)

	// The same registration from a new flow (NAT rebinding) always goes up.
	moved := siptest.NewPeer(t, phoneIP+":0")
	cseq++
	sendRegister(t, moved, h.UDP, register{callID: "cache@phone", cseq: cseq})
	up3 := pbx.ExpectRequest("REGISTER", wait)
	pbxSaw++
	pbxAnswer(t, pbx, up3)
	moved.ExpectResponse(200, wait)
	if bs := h.Reg.Lookup("alice@example.com"); len(bs) != 1 || bs[0].Peer != moved.Addr().String() {
		t.Errorf("binding after the move: %+v", bs)
	}
	pbx.NoMessage(quiet)
	if n := h.Reg.Stats().Relayed.Load(); n != int64(pbxSaw) {
		t.Errorf("Relayed = %d, want %d", n, pbxSaw)
	}
}

// TestFallback: when the PBX does not answer a refresh, the SBC answers it
// while the PBX's binding is still valid, and 503 after that.
func TestFallback(t *testing.T) {
	t.Parallel()
	phone := siptest.NewPeer(t, phoneIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	cfg := relayConfig()
	cfg.RefreshPercent = 0 // every refresh goes up
	cfg.UpstreamExpires = 120 * time.Second
	h := startSBC(t, cfg, pbx, "", nil)
	registerRelayed(t, h, phone, pbx, register{callID: "fb@phone", cseq: 1})

	h.Clock.Advance(55 * time.Second)
	sendRegister(t, phone, h.UDP, register{callID: "fb@phone", cseq: 2})
	pbx.ExpectRequest("REGISTER", wait) // and never answered: Timer F
	res := phone.ExpectResponse(200, 64*testT1+wait)
	if got := contactExpires(t, res); len(got) != 1 || got[0] != 60 {
		t.Errorf("expires %v", got)
	}
	if n := h.Reg.Stats().Fallback.Load(); n != 1 {
		t.Errorf("Fallback = %d", n)
	}

	// With less than min_expires left at the PBX, no answer means 503.
	h.Clock.Advance(55 * time.Second)
	sendRegister(t, phone, h.UDP, register{callID: "fb@phone", cseq: 3})
	pbx.Drain(quiet)
	phone.ExpectResponse(503, 64*testT1+wait)
}

// TestUnregister: Contact: * with Expires: 0 is relayed as such and the
// bindings go; so does a single Contact with expires=0.
func TestUnregister(t *testing.T) {
	t.Parallel()
	phone := siptest.NewPeer(t, phoneIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, relayConfig(), pbx, "", nil)

	registerRelayed(t, h, phone, pbx, register{callID: "un@phone", cseq: 1,
		contact: []string{"<sip:alice@192.168.1.10:5060>", "<sip:alice@192.168.1.10:5062>"}})
	if n := len(h.Reg.Lookup("alice@example.com")); n != 2 {
		t.Fatalf("%d bindings, want 2", n)
	}

	up, _ := registerRelayed(t, h, phone, pbx, register{callID: "un@phone", cseq: 2,
		contact: []string{"<sip:alice@192.168.1.10:5062>;expires=0"}})
	if got := contactExpires(t, up); len(got) != 1 || got[0] != 0 {
		t.Errorf("PBX got expires %v, want [0]", got)
	}
	if n := len(h.Reg.Lookup("alice@example.com")); n != 1 {
		t.Fatalf("%d bindings after removing one, want 1", n)
	}

	sendRegister(t, phone, h.UDP, register{callID: "un@phone", cseq: 3, contact: []string{"*"}, expires: "0"})
	up = pbx.ExpectRequest("REGISTER", wait)
	if ct := up.Contact(); ct == nil || !ct.Address.Wildcard || header(up, "Expires") != "0" {
		t.Errorf("PBX got Contact %v Expires %q, want * and 0", up.GetHeaders("Contact"), header(up, "Expires"))
	}
	pbx.Reply(up, 200, "OK")
	res := phone.ExpectResponse(200, wait)
	if len(res.GetHeaders("Contact")) != 0 {
		t.Errorf("200 to the unregister lists %v", res.GetHeaders("Contact"))
	}
	if n := len(h.Reg.Lookup("alice@example.com")); n != 0 {
		t.Errorf("%d bindings after *, want 0", n)
	}
	if d := h.dump(t); d != "" {
		t.Errorf("store still holds:\n%s", d)
	}
	if n := h.Reg.Stats().Removed.Load(); n != 2 {
		t.Errorf("Removed = %d, want 2", n)
	}
}

// TestPBXCallsRegisteredPhoneUDP: an INVITE from the PBX to the token
// reaches the phone at its transport address, with its Contact as the
// Request-URI, and the call completes.
func TestPBXCallsRegisteredPhoneUDP(t *testing.T) {
	t.Parallel()
	phone := siptest.NewPeer(t, phoneIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, relayConfig(), pbx, "", nil)
	up, _ := registerRelayed(t, h, phone, pbx, register{callID: "call@phone", cseq: 1})
	token := tokenOf(t, up)

	d := pbx.Invite(h.UDP, "sip:"+token+"@"+h.UDP.String(), nil, offerSDP(pbxIP))
	inv := phone.ExpectRequest("INVITE", wait)
	if got := inv.Recipient.String(); got != "sip:alice@192.168.1.10:5060" {
		t.Errorf("phone's INVITE Request-URI %q, want its Contact", got)
	}
	phone.ReplyBody(inv, 200, "OK", offerSDP(phoneIP))
	d.Learn(pbx.ExpectResponse(200, wait))
	d.Ack(nil, "")
	phone.ExpectRequest("ACK", wait)
	d.Send("BYE", nil, "")
	phone.Reply(phone.ExpectRequest("BYE", wait), 200, "OK")
	pbx.ExpectResponse(200, wait)

	// The PBX's qualify (OPTIONS to the Contact it holds) reaches the phone.
	o := pbx.NewDialog(h.UDP, "sip:"+token+"@"+h.UDP.String())
	o.Send("OPTIONS", nil, "")
	opt := phone.ExpectRequest("OPTIONS", wait)
	phone.Reply(opt, 200, "OK")
	pbx.ExpectResponse(200, wait)
	if n := h.Reg.Stats().Located.Load(); n != 2 {
		t.Errorf("Located = %d, want 2", n)
	}
}

// TestPBXCallsRegisteredPhoneTCP: a phone registered over TCP is reached
// down its own connection (the flow), not a new one.
func TestPBXCallsRegisteredPhoneTCP(t *testing.T) {
	t.Parallel()
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, relayConfig(), pbx, "", nil)
	phone := dialTCP(t, phoneIP+":0", h.TCP)
	phone.Send(registerMsg(phone.Addr(), "TCP", register{callID: "tcp@phone", cseq: 1,
		contact: []string{"<sip:alice@10.1.1.1:5060;transport=tcp>"}}))
	up := pbx.ExpectRequest("REGISTER", wait)
	pbxAnswer(t, pbx, up)
	if res, ok := phone.Recv(wait).(*sip.Response); !ok || res.StatusCode != 200 {
		t.Fatalf("phone got %v, want 200", res)
	}
	bs := h.Reg.Lookup("alice@example.com")
	if len(bs) != 1 || bs[0].Transport != "tcp" || bs[0].Peer != phone.Addr().String() {
		t.Fatalf("bindings %+v", bs)
	}

	d := pbx.Invite(h.UDP, "sip:"+tokenOf(t, up)+"@"+h.UDP.String(), nil, offerSDP(pbxIP))
	inv, ok := phone.Recv(wait).(*sip.Request)
	if !ok || inv.Method != sip.INVITE {
		t.Fatalf("phone got %v, want the INVITE on its connection", inv)
	}
	if got := inv.Recipient.String(); got != "sip:alice@10.1.1.1:5060;transport=tcp" {
		t.Errorf("Request-URI %q", got)
	}
	// Answer on the same connection; the PBX gets the 200.
	res := sip.NewResponseFromRequest(inv, 486, "Busy Here", nil)
	res.SetBody(nil)
	phone.Send([]byte(res.String()))
	d.AckFailure(pbx.ExpectResponse(486, wait))
	ack, ok := phone.Recv(wait).(*sip.Request)
	if !ok || ack.Method != sip.ACK {
		t.Errorf("phone got %v, want the ACK on its connection", ack)
	}
}

// TestTokenWithoutBinding: the PBX calling a token whose binding expired
// gets 480 from the SBC; nothing goes anywhere else.
func TestTokenWithoutBinding(t *testing.T) {
	t.Parallel()
	phone := siptest.NewPeer(t, phoneIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, relayConfig(), pbx, "", nil)
	up, _ := registerRelayed(t, h, phone, pbx, register{callID: "exp@phone", cseq: 1})
	h.Clock.Advance(61 * time.Second)
	if n := h.Reg.Sweep(); n != 1 {
		t.Errorf("Sweep removed %d, want 1", n)
	}
	pbx.Invite(h.UDP, "sip:"+tokenOf(t, up)+"@"+h.UDP.String(), nil, offerSDP(pbxIP))
	pbx.ExpectResponse(480, wait)
	phone.NoMessage(quiet)
	if n := h.Reg.Stats().Unavailable.Load(); n != 1 {
		t.Errorf("Unavailable = %d", n)
	}
}

// TestRestartPersistence: after a restart on the same store the binding is
// still there and the PBX's call reaches the phone.
func TestRestartPersistence(t *testing.T) {
	t.Parallel()
	phone := siptest.NewPeer(t, phoneIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, relayConfig(), pbx, "", nil)
	up, _ := registerRelayed(t, h, phone, pbx, register{callID: "restart@phone", cseq: 1})
	token := tokenOf(t, up)

	h2 := h.restart(t, pbx)
	bs := h2.Reg.Lookup("alice@example.com")
	if len(bs) != 1 || bs[0].Token != token || bs[0].Peer != phone.Addr().String() {
		t.Fatalf("bindings after restart: %+v", bs)
	}
	r := &sbc.Request{Request: sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: token, Host: "127.0.0.1"}), Side: sbc.Internal}
	ts, ok := h2.Reg.Locate(r)
	if !ok || len(ts) != 1 || ts[0].Addr != phone.Addr() || !ts[0].External || !ts[0].Exact {
		t.Fatalf("Locate after restart: %+v %v", ts, ok)
	}
	d := pbx.Invite(h2.UDP, "sip:"+token+"@"+h2.UDP.String(), nil, offerSDP(pbxIP))
	inv := phone.ExpectRequest("INVITE", wait)
	phone.Reply(inv, 486, "Busy Here")
	d.AckFailure(pbx.ExpectResponse(486, wait))
	phone.ExpectRequest("ACK", wait)

	// A refresh within the window after the restart is still cached.
	h2.Clock.Advance(30 * time.Second)
	sendRegister(t, phone, h2.UDP, register{callID: "restart@phone", cseq: 2})
	phone.ExpectResponse(200, wait)
	pbx.NoMessage(quiet)
}

// TestUnreachable: a target the B2BUA could not reach loses its binding.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	phone := siptest.NewPeer(t, phoneIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, relayConfig(), pbx, "", nil)
	up, _ := registerRelayed(t, h, phone, pbx, register{callID: "gone@phone", cseq: 1})
	r := &sbc.Request{Request: sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: tokenOf(t, up), Host: "127.0.0.1"}), Side: sbc.Internal}
	ts, ok := h.Reg.Locate(r)
	if !ok {
		t.Fatal("not located")
	}
	h.Reg.Unreachable(ts[0])
	if _, ok := h.Reg.Locate(r); ok {
		t.Error("still located after Unreachable")
	}
	if d := h.dump(t); d != "" {
		t.Errorf("store still holds:\n%s", d)
	}
	if n := h.Reg.Stats().Unreachable.Load(); n != 1 {
		t.Errorf("Unreachable = %d", n)
	}
	// Locate ignores requests from the outside to tokens.
	r.Side = sbc.External
	if _, ok := h.Reg.Locate(r); ok {
		t.Error("a token located for an outside request")
	}
}

// TestPBXRejects: the PBX's errors reach the phone and
// nothing is stored; a PBX 2xx refusing the token (expires=0) stores
// nothing either.
func TestPBXRejects(t *testing.T) {
	t.Parallel()
	phone := siptest.NewPeer(t, phoneIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	cfg := relayConfig()
	cfg.Reason = func(code int, phrase string) string { return topology.Phrase(code) }
	h := startSBC(t, cfg, pbx, "", nil)

	sendRegister(t, phone, h.UDP, register{callID: "rej@phone", cseq: 1})
	pbx.Reply(pbx.ExpectRequest("REGISTER", wait), 403, "Forbidden (Asterisk PBX 18.2.1)")
	if res := phone.ExpectResponse(403, wait); res.Reason != "Forbidden" {
		t.Errorf("reason phrase %q: Config.Reason not applied", res.Reason)
	}

	sendRegister(t, phone, h.UDP, register{callID: "rej@phone", cseq: 2})
	up := pbx.ExpectRequest("REGISTER", wait)
	pbx.Reply(up, 200, "OK", "Contact: <"+up.Contact().Address.String()+">;expires=0")
	if res := phone.ExpectResponse(200, wait); len(res.GetHeaders("Contact")) != 0 {
		t.Errorf("200 lists %v", res.GetHeaders("Contact"))
	}

	sendRegister(t, phone, h.UDP, register{callID: "rej@phone", cseq: 3})
	pbx.Reply(pbx.ExpectRequest("REGISTER", wait), 423, "Interval Too Brief", "Min-Expires: 7200")
	phone.ExpectResponse(500, wait)
	if d := h.dump(t); d != "" {
		t.Errorf("store holds:\n%s", d)
	}
}

// TestNoUpstream: relay mode without an upstream answers 503.
func TestNoUpstream(t *testing.T) {
	t.Parallel()
	phone := siptest.NewPeer(t, phoneIP+":0")
	h := startSBC(t, relayConfig(), nil, "", nil)
	sendRegister(t, phone, h.UDP, register{callID: "noup@phone", cseq: 1})
	phone.ExpectResponse(503, wait)
	if d := h.dump(t); d != "" {
		t.Errorf("store holds:\n%s", d)
	}
}

// TestReplaceOldestRelay: with replace_oldest the evicted binding's token is
// unregistered at the PBX in the same REGISTER.
func TestReplaceOldestRelay(t *testing.T) {
	t.Parallel()
	phone := siptest.NewPeer(t, phoneIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	cfg := relayConfig()
	cfg.MaxBindings = 1
	cfg.ReplaceOldest = true
	h := startSBC(t, cfg, pbx, "", nil)
	up1, _ := registerRelayed(t, h, phone, pbx, register{callID: "old@phone", cseq: 1})
	h.Clock.Advance(time.Second)
	sendRegister(t, phone, h.UDP, register{callID: "new@phone", cseq: 1, contact: []string{"<sip:alice@192.168.1.20:5060>"}})
	up2 := pbx.ExpectRequest("REGISTER", wait)
	var got []string
	for _, hd := range up2.GetHeaders("Contact") {
		got = append(got, hd.Value())
	}
	if len(got) != 2 || !strings.Contains(got[1], tokenOf(t, up1)) || !strings.HasSuffix(got[1], "expires=0") {
		t.Errorf("PBX Contacts %q, want the new token and the old one with expires=0", got)
	}
	pbxAnswer(t, pbx, up2)
	phone.ExpectResponse(200, wait)
	bs := h.Reg.Lookup("alice@example.com")
	if len(bs) != 1 || bs[0].Contact != "sip:alice@192.168.1.20:5060" {
		t.Errorf("bindings %+v", bs)
	}
	if n := h.Reg.Stats().Evicted.Load(); n != 1 {
		t.Errorf("Evicted = %d", n)
	}
}

// TestRemoveUnknownBinding: removing a Contact the SBC never bound is
// answered locally (the PBX knows no token for it), even when the store is
// full.
func TestRemoveUnknownBinding(t *testing.T) {
	t.Parallel()
	phone := siptest.NewPeer(t, phoneIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	cfg := relayConfig()
	cfg.MaxAORs = 1
	h := startSBC(t, cfg, pbx, "", nil)
	registerRelayed(t, h, phone, pbx, register{aor: "bob@example.com", callID: "full"})
	sendRegister(t, phone, h.UDP, register{callID: "rm", contact: []string{"<sip:alice@192.168.1.10:5060>;expires=0"}})
	if cs := phone.ExpectResponse(200, wait).GetHeaders("Contact"); len(cs) != 0 {
		t.Errorf("200 lists %v", cs)
	}
	pbx.NoMessage(quiet)
}
