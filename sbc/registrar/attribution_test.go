package registrar_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
)

// A binding records whom its REGISTER is attributed to: the authenticated
// user, trusted:<peer> for a trusted peer, nothing when nobody
// authenticated it; each refresh records it anew.
func TestBindingRegisteredBy(t *testing.T) {
	t.Parallel()
	h := startSBC(t, localConfig(), nil, "", nil)
	peer := netip.MustParseAddrPort("127.0.0.5:5060")
	for i, tc := range []struct {
		id   *sbc.Identity
		want string
	}{
		{&sbc.Identity{Trusted: "office", Realm: "example.com"}, "trusted:office"},
		{&sbc.Identity{User: "alice", Realm: "example.com"}, "alice"},
		{nil, ""},
	} {
		msg, err := sip.NewParser().ParseSIP(registerMsg(peer, "UDP", register{callID: "by", cseq: i + 1}))
		if err != nil {
			t.Fatal(err)
		}
		req := msg.(*sip.Request)
		req.SetSource(peer.String())
		w := &writer{}
		r := &sbc.Request{Request: req, Peer: peer, Transport: "udp", Side: sbc.External, Identity: tc.id}
		if v, err := h.Reg.ServeSIP(context.Background(), w, r); err != nil || v != sbc.Answered || w.Written() != 200 {
			t.Fatalf("REGISTER as %q: %v %v %d", tc.want, v, err, w.Written())
		}
		bs := h.Reg.Lookup("alice@example.com")
		if len(bs) != 1 || bs[0].RegisteredBy != tc.want {
			t.Fatalf("after a REGISTER as %q: bindings %+v, want one registered by %q", tc.want, bs, tc.want)
		}
		if all := h.Reg.All(10)["alice@example.com"]; len(all) != 1 || all[0].RegisteredBy != tc.want {
			t.Fatalf("All() lists %+v, want registered by %q", all, tc.want)
		}
	}
}
