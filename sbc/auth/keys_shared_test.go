package auth

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc"
)

// memKeys stands in for the key store of sbc/cluster (Redis): a map of
// keys and of locks with TTLs on a test clock, that can be made to fail.
// sbc/cluster is tested against a real Redis on its own; these tests
// exercise the rings, two (or more) real ones on one source.
type memKeys struct {
	mu    sync.Mutex
	now   func() time.Time
	keys  map[string]SharedKey
	locks map[string]time.Time
	fail  error
	reads int
}

func newMemKeys(now func() time.Time) *memKeys {
	return &memKeys{now: now, keys: map[string]SharedKey{}, locks: map[string]time.Time{}}
}

func (s *memKeys) Keys() ([]SharedKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	if s.fail != nil {
		return nil, s.fail
	}
	var out []SharedKey
	for _, k := range s.keys {
		k.Secret = slices.Clone(k.Secret)
		out = append(out, k)
	}
	return out, nil
}

func (s *memKeys) AddKey(k SharedKey) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return false, s.fail
	}
	if _, ok := s.keys[k.ID]; ok {
		return false, nil
	}
	k.Secret = slices.Clone(k.Secret)
	s.keys[k.ID] = k
	return true, nil
}

func (s *memKeys) DeleteKey(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	delete(s.keys, id)
	return nil
}

func (s *memKeys) TryLock(name string, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return false, s.fail
	}
	if end, ok := s.locks[name]; ok && s.now().Before(end) {
		return false, nil
	}
	s.locks[name] = s.now().Add(ttl)
	return true, nil
}

func (s *memKeys) setFail(err error) { s.mu.Lock(); s.fail = err; s.mu.Unlock() }
func (s *memKeys) readCount() int    { s.mu.Lock(); defer s.mu.Unlock(); return s.reads }
func (s *memKeys) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id := range s.keys {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func newShared(t *testing.T, src KeySource, clk *clock) *KeyRing {
	t.Helper()
	r, err := NewSharedKeyRing(src, time.Hour, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func sameCurrent(t *testing.T, a, b *KeyRing) {
	t.Helper()
	ida, ka := a.Current()
	idb, kb := b.Current()
	if ida != idb || !bytes.Equal(ka, kb) {
		t.Fatalf("current keys differ: %d and %d", ida, idb)
	}
}

// TestSharedKeyRingAcrossNodes: the first ring creates the first key, the
// second takes it, and a client challenged by one node authenticates on
// the other.
func TestSharedKeyRingAcrossNodes(t *testing.T) {
	clk := &clock{t: t0}
	src := newMemKeys(clk.Now)
	ra := newShared(t, src, clk)
	rb := newShared(t, src, clk)
	sameCurrent(t, ra, rb)
	if got := src.ids(); !slices.Equal(got, []string{"01"}) {
		t.Fatalf("source holds %v, want the first key 01", got)
	}

	fa := newFixture(t, func(o *Options) { o.Keys = ra })
	fb := newFixture(t, func(o *Options) { o.Keys = rb })
	c := fa.challengeFor(t, "INVITE", ruri, alicePeer)
	if v, code, _ := fb.login(t, c, "00000001"); v != sbc.Continue {
		t.Fatalf("nonce of node A on node B: %v %d", v, code)
	}
	// A fixed-key layer does not take it: the shared key made it pass.
	fc := newFixture(t, nil)
	if v, code, _ := fc.login(t, c, "00000001"); v != sbc.Rejected || code != 407 {
		t.Fatalf("nonce of node A on an unshared node: %v %d", v, code)
	}
}

// TestSharedKeyRingStartRace: rings started together on an empty source
// end up with the same single key.
func TestSharedKeyRingStartRace(t *testing.T) {
	clk := &clock{t: t0}
	src := newMemKeys(clk.Now)
	rings := make([]*KeyRing, 4)
	var wg sync.WaitGroup
	for i := range rings {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := NewSharedKeyRing(src, time.Hour, clk.Now)
			if err != nil {
				t.Error(err)
				return
			}
			rings[i] = r
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, r := range rings[1:] {
		sameCurrent(t, rings[0], r)
	}
	if got := src.ids(); len(got) != 1 {
		t.Fatalf("source holds %v, want one key", got)
	}
}

// TestSharedKeyRingRotation: a rotation on A reaches B when B reads the
// source, at once when a nonce names the new key; the previous key stays
// valid on both, the one before is gone from the source and from B.
func TestSharedKeyRingRotation(t *testing.T) {
	clk := &clock{t: t0}
	src := newMemKeys(clk.Now)
	ra := newShared(t, src, clk)
	rb := newShared(t, src, clk)
	ma, mb := newNonceMinter(ra), newNonceMinter(rb)
	ip := alicePeer.Addr()
	check := func(m nonceMinter, n string) nonceState {
		s, _ := m.check(n, t0, ip, realm, time.Minute, time.Second)
		return s
	}
	n0 := ma.mint(t0, ip, realm)
	id0, _ := ra.Current()

	if err := ra.Rotate(); err != nil {
		t.Fatal(err)
	}
	id1, key1 := ra.Current()
	if id1 == id0 {
		t.Fatal("A did not rotate")
	}
	if id, _ := rb.Current(); id != id0 {
		t.Fatal("B changed keys without reading the source")
	}
	n1 := ma.mint(t0, ip, realm)
	// B does not hold the new key and read the source less than a second
	// ago: the nonce is foreign for now.
	if s := check(mb, n1); s != nonceForeign {
		t.Fatalf("new-key nonce on B within the second: %v", s)
	}
	clk.Add(time.Second)
	reads := src.readCount()
	if s := check(mb, n1); s != nonceValid {
		t.Fatalf("new-key nonce on B: %v", s)
	}
	if src.readCount() != reads+1 {
		t.Fatalf("B read the source %d times for one unknown id", src.readCount()-reads)
	}
	if id, key := rb.Current(); id != id1 || !bytes.Equal(key, key1) {
		t.Fatal("B does not sign with the new key after reading it")
	}
	for _, m := range []nonceMinter{ma, mb} {
		if s := check(m, n0); s != nonceValid {
			t.Fatalf("previous-key nonce: %v", s)
		}
	}

	if err := ra.Rotate(); err != nil {
		t.Fatal(err)
	}
	if got := src.ids(); len(got) != 2 || slices.Contains(got, keyName(id0)) {
		t.Fatalf("source after two rotations: %v", got)
	}
	if err := rb.Refresh(); err != nil {
		t.Fatal(err)
	}
	sameCurrent(t, ra, rb)
	for _, m := range []nonceMinter{ma, mb} {
		if s := check(m, n0); s != nonceForeign {
			t.Fatalf("two-rotations-old nonce: %v, want foreign", s)
		}
		if s := check(m, n1); s != nonceValid {
			t.Fatalf("previous-key nonce: %v", s)
		}
	}
}

// TestSharedKeyRingUnknownID: ids no ring holds (forged nonces) make a
// ring read the source at most once a second.
func TestSharedKeyRingUnknownID(t *testing.T) {
	clk := &clock{t: t0}
	src := newMemKeys(clk.Now)
	r := newShared(t, src, clk)
	base := src.readCount()
	for range 100 {
		if _, ok := r.Lookup(0x77); ok {
			t.Fatal("unknown id found")
		}
	}
	if n := src.readCount() - base; n != 0 {
		t.Fatalf("%d reads within the first second", n)
	}
	clk.Add(1500 * time.Millisecond)
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.Lookup(0x77)
		}()
	}
	wg.Wait()
	if n := src.readCount() - base; n != 1 {
		t.Fatalf("%d reads for 50 lookups in one second, want 1", n)
	}
	clk.Add(time.Second)
	r.Lookup(0x78)
	if n := src.readCount() - base; n != 2 {
		t.Fatalf("%d reads after another second, want 2", n)
	}
	// The hot path does not read: the key in force.
	id, _ := r.Current()
	r.Lookup(id)
	if n := src.readCount() - base; n != 2 {
		t.Fatalf("a known id read the source")
	}
}

// TestSharedKeyRingSourceDown: a failing source leaves the ring its keys
// (LastError says why); a source that lost its keys gets them back; a
// ring cannot start on a failing source.
func TestSharedKeyRingSourceDown(t *testing.T) {
	clk := &clock{t: t0}
	src := newMemKeys(clk.Now)
	ra := newShared(t, src, clk)
	if err := ra.Rotate(); err != nil {
		t.Fatal(err)
	}
	rb := newShared(t, src, clk)
	ma, mb := newNonceMinter(ra), newNonceMinter(rb)
	ip := alicePeer.Addr()
	n := ma.mint(t0, ip, realm)
	id, key := rb.Current()

	down := errors.New("redis down")
	src.setFail(down)
	if err := rb.Refresh(); !errors.Is(err, down) || !errors.Is(rb.LastError(), down) {
		t.Fatalf("Refresh on a failing source: %v, LastError %v", err, rb.LastError())
	}
	if i, k := rb.Current(); i != id || !bytes.Equal(k, key) {
		t.Fatal("keys changed on a failed read")
	}
	clk.Add(2 * time.Second)
	if s, _ := mb.check(n, t0, ip, realm, time.Minute, time.Second); s != nonceValid {
		t.Fatalf("nonce on B with the source down: %v", s)
	}
	if _, ok := rb.Lookup(0x99); ok {
		t.Fatal("unknown id found")
	}
	if err := ra.Rotate(); !errors.Is(err, down) {
		t.Fatalf("Rotate on a failing source: %v", err)
	}
	if i, _ := ra.Current(); i != id {
		t.Fatal("a rotation that was not stored changed the keys")
	}
	if _, err := NewSharedKeyRing(src, time.Hour, clk.Now); !errors.Is(err, down) {
		t.Fatalf("NewSharedKeyRing on a failing source: %v", err)
	}

	// Back, but empty (flushed): B writes its keys back, A keeps working
	// with them, and a new node takes them.
	src.mu.Lock()
	src.fail, src.keys = nil, map[string]SharedKey{}
	src.mu.Unlock()
	if err := rb.Refresh(); err != nil || rb.LastError() != nil {
		t.Fatalf("Refresh: %v, LastError %v", err, rb.LastError())
	}
	if got := src.ids(); len(got) != 2 {
		t.Fatalf("source after the write-back: %v", got)
	}
	rc := newShared(t, src, clk)
	sameCurrent(t, ra, rc)
	rcm := newNonceMinter(rc)
	if s, _ := rcm.check(n, t0, ip, realm, time.Minute, time.Second); s != nonceValid {
		t.Fatalf("nonce on a node started after the flush: %v", s)
	}
}

// TestSharedKeyRingRun: with the current key due, two rings running Run
// rotate once between them (one takes the lock), and both end on the new
// key.
func TestSharedKeyRingRun(t *testing.T) {
	clk := &clock{t: t0}
	src := newMemKeys(clk.Now)
	rings := []*KeyRing{newShared(t, src, clk), newShared(t, src, clk)}
	id0, _ := rings[0].Current()
	clk.Add(time.Hour)

	ctx, cancel := context.WithCancel(t.Context())
	passes := make(chan struct{}, len(rings))
	done := make(chan error, len(rings))
	for _, r := range rings {
		var once sync.Once
		r.after = func(time.Duration) <-chan time.Time {
			once.Do(func() { passes <- struct{}{} })
			return nil // one pass only
		}
		go func() { done <- r.Run(ctx) }()
	}
	for range rings {
		select {
		case <-passes:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not finish its pass")
		}
	}
	cancel()
	for range rings {
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
	}
	if got := src.ids(); len(got) != 2 {
		t.Fatalf("source after Run: %v, want one rotation", got)
	}
	for _, r := range rings {
		if err := r.Refresh(); err != nil {
			t.Fatal(err)
		}
		if id, _ := r.Current(); id == id0 {
			t.Fatal("a ring still signs with the old key")
		}
		if _, ok := r.Lookup(id0); !ok {
			t.Fatal("previous key dropped")
		}
	}
	sameCurrent(t, rings[0], rings[1])
}
