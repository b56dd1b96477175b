package registrar_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc/registrar"
	"github.com/sipwall/sipwall/sbc/siptest"
)

// memShared stands in for the location store of sbc/cluster (Redis): a
// map with TTLs on the test clock, that can be made to fail. sbc/cluster
// is tested against a real Redis on its own; what these tests exercise
// is the registrar's use of registrar.Shared, with two real registrars
// (two in-process SBCs) on one store.
type memShared struct {
	mu   sync.Mutex
	now  func() time.Time
	m    map[string]memRecord
	fail error
}

type memRecord struct {
	v   []byte
	exp time.Time
}

func newMemShared(now func() time.Time) *memShared {
	return &memShared{now: now, m: map[string]memRecord{}}
}

func (s *memShared) Put(aor string, v []byte, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	if ttl <= 0 {
		delete(s.m, aor)
		return nil
	}
	s.m[aor] = memRecord{v: append([]byte(nil), v...), exp: s.now().Add(ttl)}
	return nil
}

func (s *memShared) Get(aor string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, false, s.fail
	}
	r, ok := s.m[aor]
	if !ok || !s.now().Before(r.exp) {
		return nil, false, nil
	}
	return append([]byte(nil), r.v...), true, nil
}

func (s *memShared) Delete(aor string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	delete(s.m, aor)
	return nil
}

func (s *memShared) setFail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

func (s *memShared) has(aor string) bool {
	_, ok, _ := s.Get(aor)
	return ok
}

// twoNodes starts two local-mode SBCs, nodes "a" and "b", on one shared
// location store and one clock. mut adjusts each node's configuration.
func twoNodes(t *testing.T, mut func(node string, c *registrar.Config)) (a, b *harness, sh *memShared) {
	t.Helper()
	clk := newClock()
	sh = newMemShared(clk.Now)
	start := func(node string) *harness {
		cfg := localConfig()
		cfg.Shared, cfg.Node = sh, node
		if mut != nil {
			mut(node, &cfg)
		}
		return startSBC(t, cfg, nil, "", clk)
	}
	return start("a"), start("b"), sh
}

// TestSharedRegisterThroughACallThroughB: a phone registered through node
// A is found by node B, which routes a call to it over the phone's flow;
// the binding expires on B as on A.
func TestSharedRegisterThroughACallThroughB(t *testing.T) {
	t.Parallel()
	a, b, sh := twoNodes(t, nil)
	alice := siptest.NewPeer(t, phoneIP+":0")
	alice.User = "alice"
	bob := siptest.NewPeer(t, phone2IP+":0")
	bob.User = "bob"

	sendRegister(t, alice, a.UDP, register{aor: "alice@example.com", callID: "a@1", contact: []string{"<" + alice.URI() + ">"}})
	alice.ExpectResponse(200, wait)
	if !sh.has("alice@example.com") {
		t.Fatal("A did not write the AOR to the shared store")
	}
	if n, _ := b.Reg.Count(); n != 0 {
		t.Fatalf("B holds %d AORs before any lookup", n)
	}
	bs := b.Reg.Lookup("alice@example.com")
	if len(bs) != 1 || bs[0].Contact != alice.URI() || bs[0].Peer != alice.Addr().String() || bs[0].Node != "a" {
		t.Fatalf("B's lookup: %+v", bs)
	}
	if n, m := b.Reg.Count(); n != 1 || m != 1 {
		t.Fatalf("B did not keep what it read: %d AORs, %d bindings", n, m)
	}

	// bob, not registered anywhere, calls alice through B.
	d := bob.Invite(b.UDP, "sip:alice@example.com", nil, offerSDP(phone2IP))
	inv := alice.ExpectRequest("INVITE", wait)
	if got := inv.Recipient.String(); got != alice.URI() {
		t.Errorf("alice's Request-URI %q", got)
	}
	alice.ReplyBody(inv, 200, "OK", offerSDP(phoneIP))
	d.Learn(bob.ExpectResponse(200, wait))
	d.Ack(nil, "")
	alice.ExpectRequest("ACK", wait)
	d.Send("BYE", nil, "")
	alice.Reply(alice.ExpectRequest("BYE", wait), 200, "OK")
	bob.ExpectResponse(200, wait)

	// Phones get 60 s: past that, no node finds the binding.
	a.Clock.Advance(61 * time.Second)
	if bs := b.Reg.Lookup("alice@example.com"); len(bs) != 0 {
		t.Fatalf("B still finds an expired binding: %+v", bs)
	}
	if bs := a.Reg.Lookup("alice@example.com"); len(bs) != 0 {
		t.Fatalf("A still finds an expired binding: %+v", bs)
	}
	if sh.has("alice@example.com") {
		t.Fatal("the shared record outlived its bindings")
	}
	if e := a.Reg.Stats().SharedErrors.Load() + b.Reg.Stats().SharedErrors.Load(); e != 0 {
		t.Fatalf("%d shared errors", e)
	}
}

// TestSharedUnregisterElsewhere: a refresh and an unregistration through
// B act on the binding A registered (same Call-ID and CSeq order), and A
// sees the result.
func TestSharedUnregisterElsewhere(t *testing.T) {
	t.Parallel()
	a, b, sh := twoNodes(t, nil)
	alice := siptest.NewPeer(t, phoneIP+":0")
	alice.User = "alice"
	ct := []string{"<" + alice.URI() + ">"}

	sendRegister(t, alice, a.UDP, register{callID: "a@1", cseq: 5, contact: ct})
	alice.ExpectResponse(200, wait)
	// CSeq order holds across nodes.
	sendRegister(t, alice, b.UDP, register{callID: "a@1", cseq: 5, contact: ct})
	alice.ExpectResponse(400, wait)
	a.Clock.Advance(30 * time.Second)
	sendRegister(t, alice, b.UDP, register{callID: "a@1", cseq: 6, contact: ct})
	alice.ExpectResponse(200, wait)
	// One binding, refreshed by B (not a second one): B worked on the
	// cluster's record.
	bs := a.Reg.Lookup("alice@example.com")
	if len(bs) != 1 || bs[0].CSeq != 6 || bs[0].Node != "b" || !bs[0].Expires.Equal(a.Clock.Now().Add(60*time.Second)) {
		t.Fatalf("A after B's refresh: %+v", bs)
	}
	sendRegister(t, alice, b.UDP, register{callID: "a@1", cseq: 7, contact: []string{"*"}, expires: "0"})
	alice.ExpectResponse(200, wait)
	if sh.has("alice@example.com") {
		t.Fatal("unregistration did not reach the shared store")
	}
	if bs := a.Reg.Lookup("alice@example.com"); len(bs) != 0 {
		t.Fatalf("A still routes to an unregistered phone: %+v", bs)
	}
	if n, _ := a.Reg.Count(); n != 0 {
		t.Fatalf("A's table still holds %d AORs", n)
	}
}

// TestSharedFailure: with the shared store failing, registrations and
// lookups are served from the local table and the errors counted; once it
// is back, what a node registered meanwhile reaches the others.
func TestSharedFailure(t *testing.T) {
	t.Parallel()
	a, b, sh := twoNodes(t, nil)
	alice := siptest.NewPeer(t, phoneIP+":0")
	alice.User = "alice"
	bob := siptest.NewPeer(t, phone2IP+":0")
	bob.User = "bob"

	sendRegister(t, alice, a.UDP, register{aor: "alice@example.com", callID: "a@1", contact: []string{"<" + alice.URI() + ">"}})
	alice.ExpectResponse(200, wait)
	if len(b.Reg.Lookup("alice@example.com")) != 1 {
		t.Fatal("B does not find alice")
	}

	down := errors.New("redis down")
	sh.setFail(down)
	// B still routes to alice, from its local table.
	if bs := b.Reg.Lookup("alice@example.com"); len(bs) != 1 || bs[0].Contact != alice.URI() {
		t.Fatalf("B without the shared store: %+v", bs)
	}
	if b.Reg.Stats().SharedErrors.Load() == 0 {
		t.Fatal("B's shared error not counted")
	}
	d := bob.Invite(b.UDP, "sip:alice@example.com", nil, offerSDP(phone2IP))
	inv := alice.ExpectRequest("INVITE", wait)
	alice.Reply(inv, 486, "Busy Here")
	d.AckFailure(bob.ExpectResponse(486, wait))
	alice.ExpectRequest("ACK", wait)

	// bob registers through A meanwhile: answered from the local table.
	sendRegister(t, bob, a.UDP, register{aor: "bob@example.com", callID: "b@1", contact: []string{"<" + bob.URI() + ">"}})
	bob.ExpectResponse(200, wait)
	if len(a.Reg.Lookup("bob@example.com")) != 1 {
		t.Fatal("A lost bob while the shared store is down")
	}
	if len(b.Reg.Lookup("bob@example.com")) != 0 {
		t.Fatal("B found bob without the shared store")
	}
	if a.Reg.Stats().SharedErrors.Load() < 2 {
		t.Fatalf("A's shared errors %d", a.Reg.Stats().SharedErrors.Load())
	}

	// Back: A's next lookup of bob puts the newer local record in the
	// store instead of dropping it, and B finds him.
	sh.setFail(nil)
	if len(a.Reg.Lookup("bob@example.com")) != 1 {
		t.Fatal("A dropped bob, registered while the shared store was down")
	}
	if bs := b.Reg.Lookup("bob@example.com"); len(bs) != 1 || bs[0].Contact != bob.URI() {
		t.Fatalf("B after the outage: %+v", bs)
	}
}

// TestSharedBounds: a node whose table is full (max_aors) still routes to
// AORs registered elsewhere, without caching them, and still refuses a new
// AOR of its own.
func TestSharedBounds(t *testing.T) {
	t.Parallel()
	a, b, _ := twoNodes(t, func(node string, c *registrar.Config) {
		if node == "b" {
			c.MaxAORs = 1
		}
	})
	alice := siptest.NewPeer(t, phoneIP+":0")
	alice.User = "alice"
	bob := siptest.NewPeer(t, phone2IP+":0")
	bob.User = "bob"

	sendRegister(t, bob, b.UDP, register{aor: "bob@example.com", callID: "b@1", contact: []string{"<" + bob.URI() + ">"}})
	bob.ExpectResponse(200, wait)
	sendRegister(t, alice, a.UDP, register{aor: "alice@example.com", callID: "a@1", contact: []string{"<" + alice.URI() + ">"}})
	alice.ExpectResponse(200, wait)

	if bs := b.Reg.Lookup("alice@example.com"); len(bs) != 1 {
		t.Fatalf("full B does not find alice: %+v", bs)
	}
	if n, _ := b.Reg.Count(); n != 1 {
		t.Fatalf("full B holds %d AORs, max 1", n)
	}
	// alice refreshing through the full B is a new AOR there: 503.
	sendRegister(t, alice, b.UDP, register{aor: "alice@example.com", callID: "a@1", cseq: 2, contact: []string{"<" + alice.URI() + ">"}})
	alice.ExpectResponse(503, wait)
	if n, _ := b.Reg.Count(); n != 1 {
		t.Fatalf("full B holds %d AORs after a refused REGISTER", n)
	}
}
