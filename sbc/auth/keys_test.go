package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/store"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// nonceKeyID is the key id a nonce carries.
func nonceKeyID(t *testing.T, nonce string) byte {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(raw) != nonceRawLen {
		t.Fatalf("nonce %q: %d bytes, %v", nonce, len(raw), err)
	}
	return raw[0]
}

// login answers challenge c as alice and returns the verdict, the status
// sent (0 for none) and whether stale was set.
func (f *fixture) login(t *testing.T, c chal, nc string) (sbc.Verdict, int, bool) {
	t.Helper()
	r := newReq(t, "INVITE", ruri, alicePeer, "",
		"Proxy-Authorization: "+authz(SHA256, "alice", "correct horse", "INVITE", ruri, c, nc, "cn"))
	v, w := f.serve(t, r)
	if len(w.res) == 0 {
		return v, 0, false
	}
	res := w.last(t)
	return v, int(res.StatusCode), bytes.Contains([]byte(res.String()), []byte("stale=true"))
}

// TestKeyRotation: after one rotation a nonce of the old key (and its
// opaque) still works; after two it is foreign. New nonces carry the new
// key's id.
func TestKeyRotation(t *testing.T) {
	var ring *KeyRing
	f := newFixture(t, func(o *Options) {
		var err error
		ring, err = NewKeyRing(nil, time.Hour, o.Now)
		if err != nil {
			t.Fatal(err)
		}
		o.Keys = ring // takes precedence over the fixture's Key
	})
	id0, key0 := ring.Current()
	old := f.challengeFor(t, "INVITE", ruri, alicePeer)
	if got := nonceKeyID(t, old.nonce); got != id0 {
		t.Fatalf("nonce key id %d, want current %d", got, id0)
	}

	if err := ring.Rotate(); err != nil {
		t.Fatal(err)
	}
	id1, key1 := ring.Current()
	if id1 == id0 || bytes.Equal(key1, key0) || len(key1) != 32 {
		t.Fatalf("rotation kept the key: id %d→%d", id0, id1)
	}
	if k, ok := ring.Lookup(id0); !ok || !bytes.Equal(k, key0) {
		t.Fatal("previous key not kept for verification")
	}
	fresh := f.challengeFor(t, "INVITE", ruri, alicePeer)
	if got := nonceKeyID(t, fresh.nonce); got != id1 {
		t.Fatalf("new nonce key id %d, want %d", got, id1)
	}
	if v, code, _ := f.login(t, old, "00000001"); v != sbc.Continue {
		t.Fatalf("old-key nonce after one rotation: %v %d", v, code)
	}

	if err := ring.Rotate(); err != nil {
		t.Fatal(err)
	}
	if _, ok := ring.Lookup(id0); ok {
		t.Fatal("key two rotations old still valid")
	}
	before := f.a.Stats().Failures[ReasonForeignNonce]
	v, code, stale := f.login(t, old, "00000002")
	if v != sbc.Rejected || code != 407 || stale {
		t.Fatalf("two-rotations-old nonce: %v %d stale=%v, want 407 without stale", v, code, stale)
	}
	if got := f.a.Stats().Failures[ReasonForeignNonce]; got != before+1 {
		t.Fatalf("foreign-nonce count %d, want %d", got, before+1)
	}
	// The nonce of the key that is now previous still works.
	if v, code, _ := f.login(t, fresh, "00000001"); v != sbc.Continue {
		t.Fatalf("one-rotation-old nonce: %v %d", v, code)
	}
	if len(f.fails) != 0 {
		t.Fatalf("OnFailure called: %v", f.fails)
	}
}

// TestKeyOpaqueUsesNonceKey: the opaque is the nonce key's, so it changes
// with the key and an opaque made under another key is refused.
func TestKeyOpaqueUsesNonceKey(t *testing.T) {
	ring, _ := NewKeyRing(nil, 0, nil)
	m := newNonceMinter(ring)
	ip := alicePeer.Addr()
	n0 := m.mint(t0, ip, realm)
	op0 := m.opaque(n0)
	if err := ring.Rotate(); err != nil {
		t.Fatal(err)
	}
	if m.opaque(n0) != op0 {
		t.Fatal("opaque of an old-key nonce changed with the rotation")
	}
	// The same nonce bytes under another ring's key: another opaque.
	other := newNonceMinter(fixedKeyRing(bytes.Repeat([]byte{7}, 32)))
	if other.opaque(n0) == op0 {
		t.Fatal("opaque does not depend on the nonce's key")
	}
	if err := ring.Rotate(); err != nil {
		t.Fatal(err)
	}
	// Key gone: the opaque can no longer be matched.
	if m.opaque(n0) == op0 {
		t.Fatal("opaque of a dropped key still matches")
	}
	if st, _ := m.check(n0, t0, ip, realm, time.Minute, time.Second); st != nonceForeign {
		t.Fatalf("dropped-key nonce: state %v, want foreign", st)
	}
}

// TestKeyForgedID: a nonce whose id byte is changed to another valid key's
// id fails the MAC, so the id cannot be used to pick a key.
func TestKeyForgedID(t *testing.T) {
	ring, _ := NewKeyRing(nil, 0, nil)
	m := newNonceMinter(ring)
	ip := alicePeer.Addr()
	n := m.mint(t0, ip, realm)
	if st, _ := m.check(n, t0, ip, realm, time.Minute, time.Second); st != nonceValid {
		t.Fatalf("own nonce: %v", st)
	}
	if err := ring.Rotate(); err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(n)
	raw[0]++ // now names the current key
	forged := base64.RawURLEncoding.EncodeToString(raw)
	if st, _ := m.check(forged, t0, ip, realm, time.Minute, time.Second); st != nonceForeign {
		t.Fatalf("re-labelled nonce: %v, want foreign", st)
	}
}

// TestKeyRingRestart: keys live in the store; a nonce issued before a
// restart verifies after it, the current key is the same, and a rotation
// persists its effect (old key gone) across a restart too.
func TestKeyRingRestart(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: t0}
	ip := alicePeer.Addr()
	open := func() (*store.Store, *KeyRing) {
		t.Helper()
		st, err := store.Open(dir, store.WithNoSync())
		if err != nil {
			t.Fatal(err)
		}
		ring, err := NewKeyRing(st, time.Hour, clk.Now)
		if err != nil {
			t.Fatal(err)
		}
		return st, ring
	}
	check := func(ring *KeyRing, nonce string) nonceState {
		m := newNonceMinter(ring)
		s, _ := m.check(nonce, clk.Now(), ip, realm, time.Minute, time.Second)
		return s
	}
	mint := func(ring *KeyRing) string {
		m := newNonceMinter(ring)
		return m.mint(clk.Now(), ip, realm)
	}

	st, ring := open()
	n0 := mint(ring)
	id0, key0 := ring.Current()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st, ring = open()
	if id, key := ring.Current(); id != id0 || !bytes.Equal(key, key0) {
		t.Fatal("current key changed across a restart")
	}
	if s := check(ring, n0); s != nonceValid {
		t.Fatalf("nonce from before the restart: %v", s)
	}
	if err := ring.Rotate(); err != nil {
		t.Fatal(err)
	}
	n1 := mint(ring)
	id1, _ := ring.Current()
	st.Close()

	st, ring = open()
	if id, _ := ring.Current(); id != id1 {
		t.Fatalf("current id %d after restart, want %d", id, id1)
	}
	if s := check(ring, n0); s != nonceValid {
		t.Fatalf("previous-key nonce after restart: %v", s)
	}
	if s := check(ring, n1); s != nonceValid {
		t.Fatalf("current-key nonce after restart: %v", s)
	}
	if err := ring.Rotate(); err != nil {
		t.Fatal(err)
	}
	st.Close()

	st, ring = open()
	defer st.Close()
	if s := check(ring, n0); s != nonceForeign {
		t.Fatalf("two-rotations-old nonce after restart: %v, want foreign", s)
	}
	if s := check(ring, n1); s != nonceValid {
		t.Fatalf("previous-key nonce after restart: %v", s)
	}
	b, _ := store.NewBucket[storedKey](st, KeysBucket)
	if n, err := b.Len(); err != nil || n != 2 {
		t.Fatalf("%d keys stored (%v), want 2", n, err)
	}
}

// TestKeyRingLoadTidies: leftovers of a crash mid-rotation (three keys) and
// an invalid entry are dropped at load; the newest by sequence is current.
func TestKeyRingLoadTidies(t *testing.T) {
	st, cleanup, err := store.OpenTemp(store.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	b, err := store.NewBucket[storedKey](st, KeysBucket)
	if err != nil {
		t.Fatal(err)
	}
	k := func(c byte) []byte { return bytes.Repeat([]byte{c}, 32) }
	// Creation times out of order on purpose: the sequence decides.
	for name, v := range map[string]storedKey{
		"05": {Seq: 5, Key: k(5), Created: t0.Add(time.Hour)},
		"06": {Seq: 6, Key: k(6), Created: t0},
		"07": {Seq: 7, Key: k(7), Created: t0.Add(-time.Hour)},
		"08": {Seq: 8, Key: []byte("short")},
		"zz": {Seq: 9, Key: k(9)},
	} {
		if err := b.Put(name, v); err != nil {
			t.Fatal(err)
		}
	}
	ring, err := NewKeyRing(st, time.Hour, func() time.Time { return t0 })
	if err != nil {
		t.Fatal(err)
	}
	if id, key := ring.Current(); id != 7 || !bytes.Equal(key, k(7)) {
		t.Fatalf("current id %d, want 7", id)
	}
	if _, ok := ring.Lookup(6); !ok {
		t.Fatal("previous key 6 not valid")
	}
	for _, id := range []byte{5, 8} {
		if _, ok := ring.Lookup(id); ok {
			t.Fatalf("key %d valid", id)
		}
	}
	var left []string
	_ = b.ForEach(func(name string, _ storedKey, _ time.Time) error { left = append(left, name); return nil })
	if len(left) != 2 || left[0] != "06" || left[1] != "07" {
		t.Fatalf("stored keys %v, want [06 07]", left)
	}
}

// TestKeyRingLoadOnlyBad: a bucket holding only a bad entry under the
// first key's name gets a fresh key that survives the next load.
func TestKeyRingLoadOnlyBad(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := store.NewBucket[storedKey](st, KeysBucket)
	if err := b.Put("00", storedKey{Seq: 1, Key: []byte("short")}); err != nil {
		t.Fatal(err)
	}
	ring, err := NewKeyRing(st, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, key := ring.Current()
	if len(key) != 32 {
		t.Fatalf("current key of %d bytes", len(key))
	}
	st.Close()
	st, err = store.Open(dir, store.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ring, err = NewKeyRing(st, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id2, key2 := ring.Current(); id2 != id || !bytes.Equal(key2, key) {
		t.Fatal("fresh key lost at the next load")
	}
}

// TestKeyRingRun drives Run with an injected clock and timer: it rotates
// once the current key is one period old, not before, and the period counts
// from the stored creation time, so a restart does not reset it.
func TestKeyRingRun(t *testing.T) {
	st, cleanup, err := store.OpenTemp(store.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	clk := &clock{t: t0}
	ring, err := NewKeyRing(st, time.Hour, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	ticks := make(chan time.Time)
	waiting := make(chan time.Duration)
	ring.after = func(d time.Duration) <-chan time.Time {
		waiting <- d
		return ticks
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ring.Run(ctx) }()
	// Run asks for its timer at the end of each pass: then the pass is
	// over and no other starts until the next tick.
	await := func() {
		t.Helper()
		select {
		case d := <-waiting:
			if d <= 0 || d > keyRecheck {
				t.Fatalf("Run waits %v; want within (0, %v]", d, keyRecheck)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run is not waiting")
		}
	}
	tick := func() {
		t.Helper()
		select {
		case ticks <- time.Time{}:
		case <-time.After(10 * time.Second):
			t.Fatal("Run does not take the tick")
		}
		await()
	}
	await()
	id0, _ := ring.Current()

	clk.Add(59 * time.Minute)
	tick()
	if id, _ := ring.Current(); id != id0 {
		t.Fatal("rotated before the period")
	}
	clk.Add(time.Minute)
	tick()
	id1, _ := ring.Current()
	if id1 == id0 {
		t.Fatal("not rotated after the period")
	}
	if _, ok := ring.Lookup(id0); !ok {
		t.Fatal("previous key dropped by Run")
	}
	tick()
	if id, _ := ring.Current(); id != id1 {
		t.Fatal("rotated twice within one period")
	}
	if err := ring.LastError(); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}

	// Half a period later a new ring on the same store does not rotate
	// early, and rotates at the stored key's age, not its own start.
	clk.Add(30 * time.Minute)
	ring2, err := NewKeyRing(st, time.Hour, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	if d := ring2.untilDue(); d != 30*time.Minute {
		t.Fatalf("due in %v after restart, want 30m", d)
	}
}

// TestKeyRingRunStoreClosed: a rotation that cannot be stored changes
// nothing, shows in LastError, and a closed store ends Run.
func TestKeyRingRunStoreClosed(t *testing.T) {
	st, cleanup, err := store.OpenTemp(store.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	clk := &clock{t: t0}
	ring, err := NewKeyRing(st, time.Hour, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	id0, key0 := ring.Current()
	st.Close()
	clk.Add(2 * time.Hour)
	ring.after = func(time.Duration) <-chan time.Time { return nil }
	done := make(chan error, 1)
	go func() { done <- ring.Run(t.Context()) }()
	select {
	case err := <-done:
		if !errors.Is(err, store.ErrClosed) {
			t.Fatalf("Run: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop on a closed store")
	}
	if id, key := ring.Current(); id != id0 || !bytes.Equal(key, key0) {
		t.Fatal("keys changed by a rotation that was not stored")
	}
	if !errors.Is(ring.LastError(), store.ErrClosed) {
		t.Fatalf("LastError %v", ring.LastError())
	}
}

// TestKeyRingConcurrent mints and checks nonces while keys rotate (run it
// with -race). A nonce may only fail when its key is gone.
func TestKeyRingConcurrent(t *testing.T) {
	st, cleanup, err := store.OpenTemp(store.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	t.Run("memory", func(t *testing.T) { testKeyRingConcurrent(t, nil) })
	t.Run("store", func(t *testing.T) { testKeyRingConcurrent(t, st) })
}

func testKeyRingConcurrent(t *testing.T, st *store.Store) {
	ring, err := NewKeyRing(st, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := newNonceMinter(ring)
	const workers, rounds, rotations = 8, 300, 50
	var rot sync.WaitGroup
	rot.Add(1)
	go func() {
		defer rot.Done()
		for range rotations {
			if err := ring.Rotate(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	valid, foreign := 0, 0
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(w + 1)})
			var minted []string
			for i := range rounds {
				minted = append(minted, m.mint(t0, ip, realm))
				// The fresh nonce and one from a while ago, whose key
				// may have gone meanwhile.
				for _, n := range []string{minted[i], minted[max(0, i-20)]} {
					st, _ := m.check(n, t0, ip, realm, time.Minute, time.Second)
					if m.opaque(n) == "" {
						t.Error("empty opaque")
						return
					}
					// Checked after the nonce: keys never come back (fewer
					// than 256 rotations), so a key seen here was there.
					_, kept := ring.Lookup(nonceKeyIDRaw(n))
					mu.Lock()
					switch {
					case st == nonceValid:
						valid++
					case st == nonceForeign && !kept:
						foreign++
					default:
						mu.Unlock()
						t.Errorf("nonce refused (%v) while its key is valid", st)
						return
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	rot.Wait()
	if valid == 0 {
		t.Fatal("no nonce verified")
	}
	// After the rotations stop, every fresh nonce verifies.
	n := m.mint(t0, alicePeer.Addr(), realm)
	if s, _ := m.check(n, t0, alicePeer.Addr(), realm, time.Minute, time.Second); s != nonceValid {
		t.Fatalf("fresh nonce: %v", s)
	}
	t.Logf("%d valid, %d foreign (key dropped meanwhile)", valid, foreign)
}

func nonceKeyIDRaw(nonce string) byte {
	raw, _ := base64.RawURLEncoding.DecodeString(nonce)
	return raw[0]
}

// TestKeyOptions: Keys wins over Key; Key alone is one fixed key (the same
// nonces verify under two layers sharing it); short keys are refused.
func TestKeyOptions(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	ring, _ := NewKeyRing(nil, 0, nil)
	a, err := New(Options{Realm: realm, Users: users(), Key: key, Keys: ring})
	if err != nil {
		t.Fatal(err)
	}
	if a.nonces.keys != ring {
		t.Fatal("Keys did not take precedence over Key")
	}
	a1, _ := New(Options{Realm: realm, Users: users(), Key: key})
	a2, _ := New(Options{Realm: realm, Users: users(), Key: key})
	n := a1.nonces.mint(t0, alicePeer.Addr(), realm)
	if s, _ := a2.nonces.check(n, t0, alicePeer.Addr(), realm, time.Minute, time.Second); s != nonceValid {
		t.Fatalf("nonce under a shared fixed Key: %v", s)
	}
	r1, _ := New(Options{Realm: realm, Users: users()})
	r2, _ := New(Options{Realm: realm, Users: users()})
	n = r1.nonces.mint(t0, alicePeer.Addr(), realm)
	if s, _ := r2.nonces.check(n, t0, alicePeer.Addr(), realm, time.Minute, time.Second); s != nonceForeign {
		t.Fatalf("random keys shared a nonce: %v", s)
	}
	if _, err := New(Options{Realm: realm, Users: users(), Key: []byte("short"), Keys: ring}); err == nil {
		t.Fatal("short Key accepted beside Keys")
	}
}

// FuzzNonceCheck: no input makes check panic, and nothing but a nonce we
// minted for this peer verifies.
const b64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func FuzzNonceCheck(f *testing.F) {
	ring, _ := NewKeyRing(nil, 0, nil)
	m := newNonceMinter(ring)
	ip := alicePeer.Addr()
	good := m.mint(t0, ip, realm)
	f.Add(good)
	f.Add(good[:len(good)-1] + "A")
	// Same bytes, other spelling: the last character's two spare bits set.
	last := strings.IndexByte(b64url, good[len(good)-1])
	f.Add(good[:len(good)-1] + string(b64url[last^1]))
	f.Add("A" + good[1:])
	f.Add("")
	f.Add(string(make([]byte, 66)))
	f.Fuzz(func(t *testing.T, nonce string) {
		st, _ := m.check(nonce, t0, ip, realm, time.Minute, time.Second)
		_ = m.opaque(nonce)
		if nonce != good && st != nonceForeign {
			t.Fatalf("forged nonce %q: state %v", nonce, st)
		}
	})
}
