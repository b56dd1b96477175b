package registrar_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"gopkg.in/yaml.v3"

	"github.com/sipwall/sipwall/sbc/siptest"
)

// flow is one RFC 3665 call flow: its messages in order, F1 first.
type flow []string

// loadFlow reads testdata/rfc3665/<name> (see its README).
func loadFlow(t *testing.T, name string) flow {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "rfc3665", name))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	if err := yaml.Unmarshal(data, &msgs); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return msgs
}

// request turns message i (a phone's REGISTER) into what the test phone
// sends: sip: for sips: and the phone's own Via over UDP (sipwall has no
// TLS yet); every other header as written, folding included.
func (f flow) request(t *testing.T, i int, from *siptest.Peer) []byte {
	t.Helper()
	var out []string
	inVia := false
	for _, line := range strings.Split(strings.TrimRight(f[i], "\n"), "\n") {
		line = strings.ReplaceAll(line, "sips:", "sip:")
		switch {
		case strings.HasPrefix(line, "Via:"):
			inVia = true
			out = append(out, from.Via(siptest.NewBranch()))
			continue
		case inVia && (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")):
			continue // the Via's folded continuation
		}
		inVia = false
		out = append(out, line)
	}
	return []byte(strings.Join(out, "\r\n") + "\r\n\r\n")
}

// header returns header name of message i (a server's response), unfolded.
func (f flow) header(t *testing.T, i int, name string) []string {
	t.Helper()
	raw := strings.ReplaceAll(strings.TrimRight(f[i], "\n"), "\n", "\r\n") + "\r\n\r\n"
	msg, err := sip.NewParser().ParseSIP([]byte(raw))
	if err != nil {
		t.Fatalf("message F%d: %v", i+1, err)
	}
	var vs []string
	for _, h := range msg.GetHeaders(name) {
		vs = append(vs, h.Value())
	}
	return vs
}

// biloxi is relay mode for the RFC's domain.
func biloxi(t *testing.T) (*harness, *siptest.Peer, *siptest.Peer) {
	t.Helper()
	phone := siptest.NewPeer(t, phoneIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	cfg := relayConfig()
	cfg.Domains = []string{"biloxi.example.com"}
	return startSBC(t, cfg, pbx, "", nil), phone, pbx
}

// preRegister gives bob the RFC's Contact under another Call-ID than the
// flows use, as a registration made before the flow.
func preRegister(t *testing.T, h *harness, phone, pbx *siptest.Peer) {
	t.Helper()
	registerRelayed(t, h, phone, pbx, register{aor: "bob@biloxi.example.com", ruri: "sip:ss2.biloxi.example.com",
		callID: "earlier@biloxi.example.com", contact: []string{"<sip:bob@client.biloxi.example.com>"}})
}

// checkRelayed: the PBX got the phone's Request-URI and credentials as the
// phone sent them.
func checkRelayed(t *testing.T, up *sip.Request, f flow, i int) {
	t.Helper()
	if got := up.Recipient.String(); got != "sip:ss2.biloxi.example.com" {
		t.Errorf("F%d: PBX Request-URI %q", i+1, got)
	}
	want := f.header(t, i, "Authorization")
	var got []string
	for _, h := range up.GetHeaders("Authorization") {
		got = append(got, h.Value())
	}
	want0 := strings.ReplaceAll(strings.Join(want, "|"), "sips:", "sip:")
	if strings.Join(got, "|") != want0 {
		t.Errorf("F%d: PBX Authorization %q, want %q", i+1, got, want0)
	}
}

// TestRFC3665NewRegistration (2.1): the PBX's challenge reaches the phone
// unchanged, the credentials reach the PBX unchanged, and the binding is
// stored on the 200.
func TestRFC3665NewRegistration(t *testing.T) {
	t.Parallel()
	f := loadFlow(t, "2.01_sip-client-new-registration.yaml")
	h, phone, pbx := biloxi(t)

	phone.SendRaw(h.UDP, f.request(t, 0, phone))
	up1 := pbx.ExpectRequest("REGISTER", wait)
	checkRelayed(t, up1, f, 0)
	challenge := f.header(t, 1, "WWW-Authenticate")
	pbx.Reply(up1, 401, "Unauthorized", "WWW-Authenticate: "+challenge[0])
	res := phone.ExpectResponse(401, wait)
	if got := header(res, "WWW-Authenticate"); got != challenge[0] {
		t.Errorf("phone's challenge %q, want %q", got, challenge[0])
	}
	if d := h.dump(t); d != "" {
		t.Errorf("stored after the 401:\n%s", d)
	}

	phone.SendRaw(h.UDP, f.request(t, 2, phone))
	up3 := pbx.ExpectRequest("REGISTER", wait)
	checkRelayed(t, up3, f, 2)
	if up3.CallID().Value() != up1.CallID().Value() || up3.CSeq().SeqNo != 2 {
		t.Errorf("F3 at the PBX: Call-ID %q CSeq %d, want %q and 2", up3.CallID().Value(), up3.CSeq().SeqNo, up1.CallID().Value())
	}
	pbxAnswer(t, pbx, up3)
	res = phone.ExpectResponse(200, wait)
	if cs := res.GetHeaders("Contact"); len(cs) != 1 || cs[0].Value() != "<sip:bob@client.biloxi.example.com>;expires=60" {
		t.Errorf("F4 Contacts %v", cs)
	}
	bs := h.Reg.Lookup("bob@biloxi.example.com")
	if len(bs) != 1 || bs[0].CallID != "1j9FpLxk3uxtm8tn@biloxi.example.com" || bs[0].CSeq != 2 {
		t.Errorf("bindings %+v", bs)
	}
}

// TestRFC3665UpdateOfContactList (2.2): the flow adds a mailto: Contact,
// which an SBC routing SIP cannot serve: 400 and nothing changes. The same
// update with a SIP Contact is relayed and the 200 lists both bindings.
func TestRFC3665UpdateOfContactList(t *testing.T) {
	t.Parallel()
	f := loadFlow(t, "2.02_update-of-contact-list.yaml")
	h, phone, pbx := biloxi(t)
	preRegister(t, h, phone, pbx)
	before := h.dump(t)

	phone.SendRaw(h.UDP, f.request(t, 0, phone))
	phone.ExpectResponse(400, wait)
	pbx.NoMessage(quiet)
	if after := h.dump(t); after != before {
		t.Errorf("store changed:\nbefore %s\nafter  %s", before, after)
	}

	sipUpdate := []byte(strings.Replace(string(f.request(t, 0, phone)), "Contact: mailto:bob@biloxi.example.com", "Contact: <sip:bob@client2.biloxi.example.com>", 1))
	phone.SendRaw(h.UDP, sipUpdate)
	up := pbx.ExpectRequest("REGISTER", wait)
	checkRelayed(t, up, f, 0)
	pbxAnswer(t, pbx, up)
	res := phone.ExpectResponse(200, wait)
	var got []string
	for _, c := range res.GetHeaders("Contact") {
		got = append(got, c.Value())
	}
	want := "<sip:bob@client.biloxi.example.com>;expires=60 <sip:bob@client2.biloxi.example.com>;expires=60"
	if strings.Join(got, " ") != want {
		t.Errorf("F2 Contacts %q, want %q", got, want)
	}
}

// TestRFC3665Query (2.3): a REGISTER without Contact is relayed (the PBX
// authenticates it) and answered with the SBC's bindings, not the PBX's
// list.
func TestRFC3665Query(t *testing.T) {
	t.Parallel()
	f := loadFlow(t, "2.03_request-for-current-contact-list.yaml")
	h, phone, pbx := biloxi(t)
	preRegister(t, h, phone, pbx)

	phone.SendRaw(h.UDP, f.request(t, 0, phone))
	up := pbx.ExpectRequest("REGISTER", wait)
	checkRelayed(t, up, f, 0)
	if cs := up.GetHeaders("Contact"); len(cs) != 0 {
		t.Errorf("the query reached the PBX with Contacts %v", cs)
	}
	var extra []string
	for _, c := range f.header(t, 1, "Contact") {
		extra = append(extra, "Contact: "+c)
	}
	pbx.Reply(up, 200, "OK", extra...)
	res := phone.ExpectResponse(200, wait)
	if cs := res.GetHeaders("Contact"); len(cs) != 1 || cs[0].Value() != "<sip:bob@client.biloxi.example.com>;expires=60" {
		t.Errorf("F2 Contacts %v", cs)
	}
}

// TestRFC3665Cancellation (2.4): Contact: * with Expires: 0 is relayed as
// it is and removes the bindings.
func TestRFC3665Cancellation(t *testing.T) {
	t.Parallel()
	f := loadFlow(t, "2.04_cancellation-of-registration.yaml")
	h, phone, pbx := biloxi(t)
	preRegister(t, h, phone, pbx)

	phone.SendRaw(h.UDP, f.request(t, 0, phone))
	up := pbx.ExpectRequest("REGISTER", wait)
	checkRelayed(t, up, f, 0)
	if ct := up.Contact(); ct == nil || !ct.Address.Wildcard || header(up, "Expires") != "0" {
		t.Errorf("PBX got Contact %v Expires %q", up.GetHeaders("Contact"), header(up, "Expires"))
	}
	pbx.Reply(up, 200, "OK")
	res := phone.ExpectResponse(200, wait)
	if cs := res.GetHeaders("Contact"); len(cs) != 0 {
		t.Errorf("F2 Contacts %v", cs)
	}
	if bs := h.Reg.Lookup("bob@biloxi.example.com"); len(bs) != 0 {
		t.Errorf("bindings left: %+v", bs)
	}
	if d := h.dump(t); d != "" {
		t.Errorf("store holds:\n%s", d)
	}
}

// TestRFC3665Unsuccessful (2.5): both challenges reach the phone; nothing
// is ever stored.
func TestRFC3665Unsuccessful(t *testing.T) {
	t.Parallel()
	f := loadFlow(t, "2.05_unsuccessful-registration.yaml")
	h, phone, pbx := biloxi(t)
	for _, i := range []int{0, 2} {
		phone.SendRaw(h.UDP, f.request(t, i, phone))
		up := pbx.ExpectRequest("REGISTER", wait)
		checkRelayed(t, up, f, i)
		challenge := f.header(t, i+1, "WWW-Authenticate")[0]
		pbx.Reply(up, 401, "Unauthorized", "WWW-Authenticate: "+challenge)
		if got := header(phone.ExpectResponse(401, wait), "WWW-Authenticate"); got != challenge {
			t.Errorf("F%d: challenge %q, want %q", i+2, got, challenge)
		}
	}
	if d := h.dump(t); d != "" {
		t.Errorf("store holds:\n%s", d)
	}
	if n := h.Reg.Stats().Registered.Load(); n != 0 {
		t.Errorf("Registered = %d", n)
	}
}
