package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// fakeClock is a settable clock so expiry is tested without sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type reg struct {
	Contact string `json:"contact"`
	Expires int    `json:"expires"`
}

func openTest(t *testing.T, opts ...Option) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), opts...)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newBucket[T any](t *testing.T, s *Store, name string) *Bucket[T] {
	t.Helper()
	b, err := NewBucket[T](s, name)
	if err != nil {
		t.Fatalf("new bucket %q: %v", name, err)
	}
	return b
}

func TestPutGetDelete(t *testing.T) {
	s := openTest(t)
	b := newBucket[reg](t, s, "registrations")

	if _, ok, err := b.Get("alice"); err != nil || ok {
		t.Fatalf("get missing: ok=%v err=%v", ok, err)
	}
	want := reg{Contact: "sip:alice@192.0.2.1:5060", Expires: 3600}
	if err := b.Put("alice", want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := b.Get("alice")
	if err != nil || !ok || got != want {
		t.Fatalf("get: %+v ok=%v err=%v", got, ok, err)
	}
	// Overwrite.
	want.Expires = 60
	if err := b.Put("alice", want); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := b.Get("alice"); got != want {
		t.Fatalf("after overwrite: %+v", got)
	}
	if err := b.Delete("alice"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := b.Get("alice"); err != nil || ok {
		t.Fatalf("get deleted: ok=%v err=%v", ok, err)
	}
	// Deleting a missing key is fine.
	if err := b.Delete("alice"); err != nil {
		t.Fatalf("delete missing: %v", err)
	}
}

func TestBucketsAreSeparate(t *testing.T) {
	s := openTest(t)
	a := newBucket[string](t, s, "a")
	b := newBucket[string](t, s, "b")
	if err := a.Put("k", "from a"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := b.Get("k"); ok {
		t.Fatal("key leaked across buckets")
	}
	// A second handle on the same name sees the same data.
	a2 := newBucket[string](t, s, "a")
	if v, ok, _ := a2.Get("k"); !ok || v != "from a" {
		t.Fatalf("second handle: %q %v", v, ok)
	}
}

func TestTTLExpiry(t *testing.T) {
	clk := newFakeClock()
	s := openTest(t, WithClock(clk.Now))
	b := newBucket[int](t, s, "bans")

	if err := b.PutTTL("203.0.113.7", 1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.Put("forever", 2); err != nil {
		t.Fatal(err)
	}

	clk.Advance(9 * time.Second)
	if _, ok, _ := b.Get("203.0.113.7"); !ok {
		t.Fatal("expired too early")
	}
	var seenExp time.Time
	err := b.ForEach(func(k string, v int, exp time.Time) error {
		if k == "203.0.113.7" {
			seenExp = exp
		} else if !exp.IsZero() {
			t.Errorf("%s: unexpected expiry %v", k, exp)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if wantExp := clk.Now().Add(time.Second); !seenExp.Equal(wantExp) {
		t.Fatalf("expiry %v, want %v", seenExp, wantExp)
	}

	clk.Advance(time.Second) // exactly at expiry: gone
	if _, ok, err := b.Get("203.0.113.7"); ok || err != nil {
		t.Fatalf("not expired at deadline: ok=%v err=%v", ok, err)
	}
	if n, err := b.Len(); err != nil || n != 1 {
		t.Fatalf("len = %d, %v; want 1", n, err)
	}
	var keys []string
	if err := b.ForEach(func(k string, _ int, _ time.Time) error {
		keys = append(keys, k)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "forever" {
		t.Fatalf("foreach keys %v", keys)
	}

	// An Update over an expired entry sees it as absent.
	err = b.Update("203.0.113.7", func(old int, exists bool) (int, bool, time.Duration, error) {
		if exists || old != 0 {
			t.Errorf("update saw expired entry: %d %v", old, exists)
		}
		return 5, true, 0, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(100 * 365 * 24 * time.Hour)
	if v, ok, _ := b.Get("203.0.113.7"); !ok || v != 5 {
		t.Fatalf("ttl 0 should mean no expiry: %d %v", v, ok)
	}
}

func TestPutTTLRejectsNonPositive(t *testing.T) {
	s := openTest(t)
	b := newBucket[int](t, s, "x")
	for _, ttl := range []time.Duration{0, -time.Second} {
		if err := b.PutTTL("k", 1, ttl); !errors.Is(err, ErrBadTTL) {
			t.Errorf("ttl %v: err %v, want ErrBadTTL", ttl, err)
		}
	}
}

func TestUpdateTTLModes(t *testing.T) {
	clk := newFakeClock()
	s := openTest(t, WithClock(clk.Now))
	b := newBucket[int](t, s, "fraud")

	incr := func(ttl time.Duration) {
		t.Helper()
		err := b.Update("acct", func(old int, _ bool) (int, bool, time.Duration, error) {
			return old + 1, true, ttl, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	incr(time.Minute) // window opens, expires at t0+60s
	clk.Advance(50 * time.Second)
	incr(KeepTTL) // must not extend the window
	clk.Advance(9 * time.Second)
	if v, ok, _ := b.Get("acct"); !ok || v != 2 {
		t.Fatalf("before window end: %d %v", v, ok)
	}
	clk.Advance(time.Second)
	if _, ok, _ := b.Get("acct"); ok {
		t.Fatal("KeepTTL extended the expiry")
	}
	// KeepTTL on a fresh key means no expiry.
	incr(KeepTTL)
	clk.Advance(1000 * time.Hour)
	if v, ok, _ := b.Get("acct"); !ok || v != 1 {
		t.Fatalf("KeepTTL on new key: %d %v", v, ok)
	}
	// A positive ttl replaces the old expiry.
	incr(time.Second)
	clk.Advance(time.Second)
	if _, ok, _ := b.Get("acct"); ok {
		t.Fatal("positive ttl not applied")
	}
}

func TestUpdateConcurrentIncrements(t *testing.T) {
	// NoSync: 5000 fsyncs would only test the disk; atomicity is what matters.
	s := openTest(t, WithNoSync())
	b := newBucket[int](t, s, "counters")

	const workers, perWorker = 50, 100
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				err := b.Update("calls", func(old int, _ bool) (int, bool, time.Duration, error) {
					return old + 1, true, 0, nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if v, ok, err := b.Get("calls"); err != nil || !ok || v != workers*perWorker {
		t.Fatalf("counter = %d (ok=%v err=%v), want %d", v, ok, err, workers*perWorker)
	}
}

func TestUpdateErrorLeavesOldValue(t *testing.T) {
	s := openTest(t)
	b := newBucket[reg](t, s, "registrations")
	orig := reg{Contact: "sip:bob@198.51.100.2", Expires: 300}
	if err := b.Put("bob", orig); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("policy says no")
	err := b.Update("bob", func(old reg, exists bool) (reg, bool, time.Duration, error) {
		if !exists || old != orig {
			t.Errorf("update saw %+v %v", old, exists)
		}
		return reg{Contact: "sip:mallory@203.0.113.9"}, true, 0, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the fn error", err)
	}
	if got, ok, _ := b.Get("bob"); !ok || got != orig {
		t.Fatalf("value changed after failed update: %+v %v", got, ok)
	}
	// A failed update of a missing key creates nothing.
	_ = b.Update("carol", func(reg, bool) (reg, bool, time.Duration, error) {
		return reg{Contact: "x"}, true, 0, boom
	})
	if _, ok, _ := b.Get("carol"); ok {
		t.Fatal("failed update created a key")
	}
}

func TestUpdateKeepFalseDeletes(t *testing.T) {
	s := openTest(t)
	b := newBucket[int](t, s, "x")
	if err := b.Put("k", 3); err != nil {
		t.Fatal(err)
	}
	err := b.Update("k", func(old int, exists bool) (int, bool, time.Duration, error) {
		return 0, false, 0, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := b.Get("k"); ok {
		t.Fatal("keep=false did not delete")
	}
	// keep=false on a missing key is a no-op.
	if err := b.Update("missing", func(int, bool) (int, bool, time.Duration, error) {
		return 0, false, 0, nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestPersistenceAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	clk := newFakeClock()
	s, err := Open(dir, WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	b := newBucket[reg](t, s, "registrations")
	want := reg{Contact: "sip:alice@192.0.2.1", Expires: 3600}
	if err := b.Put("alice", want); err != nil {
		t.Fatal(err)
	}
	if err := b.PutTTL("short", reg{}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, _, err := b.Get("alice"); !errors.Is(err, ErrClosed) {
		t.Fatalf("get on closed store: %v, want ErrClosed", err)
	}

	clk.Advance(2 * time.Minute)
	s2, err := Open(dir, WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	b2 := newBucket[reg](t, s2, "registrations")
	if got, ok, err := b2.Get("alice"); err != nil || !ok || got != want {
		t.Fatalf("after reopen: %+v ok=%v err=%v", got, ok, err)
	}
	// Expiry is absolute, so it survives the restart too.
	if _, ok, _ := b2.Get("short"); ok {
		t.Fatal("ttl entry outlived its expiry across reopen")
	}
}

func TestOpenCreatesPrivateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "state")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		t.Fatalf("dir mode %v, want no group/other access", perm)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
		t.Fatalf("db file: %v", err)
	}
	if s.Path() != filepath.Join(dir, FileName) {
		t.Fatalf("path %q", s.Path())
	}
}

func TestSecondOpenFailsWithLockError(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	const timeout = 200 * time.Millisecond
	start := time.Now()
	s2, err := Open(dir, WithLockTimeout(timeout))
	elapsed := time.Since(start)
	if err == nil {
		s2.Close()
		t.Fatal("second open succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("err = %v, want ErrLocked", err)
	}
	if elapsed > timeout+2*time.Second {
		t.Fatalf("second open took %v, lock timeout was %v", elapsed, timeout)
	}
	// Once the first holder closes, the store opens again.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s3, err := Open(dir, WithLockTimeout(timeout))
	if err != nil {
		t.Fatalf("open after release: %v", err)
	}
	s3.Close()
}

func TestSweepCounts(t *testing.T) {
	clk := newFakeClock()
	// A tiny batch makes Sweep walk the bucket over several transactions.
	s := openTest(t, WithClock(clk.Now), WithSweepBatch(3))
	b := newBucket[int](t, s, "nonces")

	for i := range 10 {
		if err := b.PutTTL(fmt.Sprintf("short-%02d", i), i, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 7 {
		if err := b.PutTTL(fmt.Sprintf("long-%02d", i), i, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 4 {
		if err := b.Put(fmt.Sprintf("perm-%02d", i), i); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := b.Sweep(); err != nil || n != 0 {
		t.Fatalf("sweep before expiry: %d, %v", n, err)
	}
	clk.Advance(time.Minute)
	if n, err := b.Sweep(); err != nil || n != 10 {
		t.Fatalf("first sweep removed %d (%v), want 10", n, err)
	}
	if n, err := b.Sweep(); err != nil || n != 0 {
		t.Fatalf("repeat sweep removed %d (%v), want 0", n, err)
	}
	clk.Advance(time.Hour)
	if n, err := b.Sweep(); err != nil || n != 7 {
		t.Fatalf("second sweep removed %d (%v), want 7", n, err)
	}
	if n, err := b.Len(); err != nil || n != 4 {
		t.Fatalf("len = %d (%v), want 4", n, err)
	}
	// Sweep really deletes: the raw bucket holds only the permanent keys.
	if raw := rawCount(t, s, "nonces"); raw != 4 {
		t.Fatalf("raw entries %d, want 4", raw)
	}
}

func TestSweeperBackground(t *testing.T) {
	clk := newFakeClock()
	s := openTest(t, WithClock(clk.Now), WithSweepBatch(2))
	a := newBucket[int](t, s, "a")
	b := newBucket[string](t, s, "b")
	for i := range 5 {
		if err := a.PutTTL(fmt.Sprint(i), i, time.Second); err != nil {
			t.Fatal(err)
		}
		if err := b.PutTTL(fmt.Sprint(i), "v", time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Put("keep", "v"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Sweeper(ctx, time.Millisecond) }()

	deadline := time.Now().Add(5 * time.Second)
	for rawCount(t, s, "a") != 0 || rawCount(t, s, "b") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("sweeper did not clean up: a=%d b=%d", rawCount(t, s, "a"), rawCount(t, s, "b"))
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sweeper returned %v after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("sweeper did not stop on cancel")
	}
}

func TestSweeperStopsOnClose(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	newBucket[int](t, s, "a")
	done := make(chan error, 1)
	go func() { done <- s.Sweeper(context.Background(), time.Millisecond) }()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("sweeper returned %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("sweeper kept running on a closed store")
	}
}

func TestBadKeys(t *testing.T) {
	s := openTest(t)
	b := newBucket[int](t, s, "x")
	long := strings.Repeat("k", MaxKeyLen+1)
	for _, key := range []string{"", long} {
		if err := b.Put(key, 1); !errors.Is(err, ErrBadKey) {
			t.Errorf("put %d-byte key: %v", len(key), err)
		}
		if err := b.PutTTL(key, 1, time.Second); !errors.Is(err, ErrBadKey) {
			t.Errorf("putttl %d-byte key: %v", len(key), err)
		}
		if _, _, err := b.Get(key); !errors.Is(err, ErrBadKey) {
			t.Errorf("get %d-byte key: %v", len(key), err)
		}
		if err := b.Delete(key); !errors.Is(err, ErrBadKey) {
			t.Errorf("delete %d-byte key: %v", len(key), err)
		}
		if err := b.Update(key, func(int, bool) (int, bool, time.Duration, error) {
			t.Error("update fn called for bad key")
			return 0, true, 0, nil
		}); !errors.Is(err, ErrBadKey) {
			t.Errorf("update %d-byte key: %v", len(key), err)
		}
		if _, err := b.DeleteMany("ok", key); !errors.Is(err, ErrBadKey) {
			t.Errorf("deletemany %d-byte key: %v", len(key), err)
		}
	}
	// The limit itself is allowed.
	longest := strings.Repeat("k", MaxKeyLen)
	if err := b.Put(longest, 1); err != nil {
		t.Fatalf("max-length key: %v", err)
	}
	if _, err := NewBucket[int](s, ""); !errors.Is(err, ErrBadBucket) {
		t.Errorf("empty bucket name: %v", err)
	}
	if _, err := NewBucket[int](s, strings.Repeat("b", MaxBucketNameLen+1)); !errors.Is(err, ErrBadBucket) {
		t.Errorf("long bucket name: %v", err)
	}
}

func TestDeleteMany(t *testing.T) {
	s := openTest(t)
	b := newBucket[int](t, s, "x")
	for _, k := range []string{"a", "b", "c"} {
		if err := b.Put(k, 1); err != nil {
			t.Fatal(err)
		}
	}
	n, err := b.DeleteMany("a", "c", "missing")
	if err != nil || n != 2 {
		t.Fatalf("deletemany = %d, %v; want 2", n, err)
	}
	if n, _ := b.Len(); n != 1 {
		t.Fatalf("len %d, want 1", n)
	}
}

func TestForEachStopsOnError(t *testing.T) {
	s := openTest(t)
	b := newBucket[int](t, s, "x")
	for i := range 5 {
		if err := b.Put(fmt.Sprint(i), i); err != nil {
			t.Fatal(err)
		}
	}
	stop := errors.New("stop")
	calls := 0
	err := b.ForEach(func(string, int, time.Time) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 2 {
		t.Fatalf("err=%v calls=%d", err, calls)
	}
}

func TestCorruptEntries(t *testing.T) {
	clk := newFakeClock()
	s := openTest(t, WithClock(clk.Now))
	b := newBucket[reg](t, s, "registrations")
	if err := b.PutTTL("good", reg{Contact: "sip:a@192.0.2.1"}, time.Second); err != nil {
		t.Fatal(err)
	}
	writeRaw(t, s, "registrations", "garbage", []byte("{not json"))
	writeRaw(t, s, "registrations", "wrongtype", []byte(`{"v":"a string, not an object"}`))

	for _, key := range []string{"garbage", "wrongtype"} {
		if _, _, err := b.Get(key); !errors.Is(err, ErrCorrupt) {
			t.Errorf("get %s: %v, want ErrCorrupt", key, err)
		}
		called := false
		err := b.Update(key, func(reg, bool) (reg, bool, time.Duration, error) {
			called = true
			return reg{}, true, 0, nil
		})
		if !errors.Is(err, ErrCorrupt) || called {
			t.Errorf("update %s: %v (fn called %v), want ErrCorrupt", key, err, called)
		}
	}
	if err := b.ForEach(func(string, reg, time.Time) error { return nil }); !errors.Is(err, ErrCorrupt) {
		t.Errorf("foreach: %v, want ErrCorrupt", err)
	}
	if _, err := b.Len(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("len: %v, want ErrCorrupt", err)
	}
	// Sweep removes what it can read and leaves the rest for Get to report.
	clk.Advance(time.Second)
	if n, err := b.Sweep(); err != nil || n != 1 {
		t.Errorf("sweep: %d, %v; want 1, nil", n, err)
	}
	// Delete is the way out.
	if _, err := b.DeleteMany("garbage", "wrongtype"); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Len(); err != nil || n != 0 {
		t.Fatalf("len after cleanup: %d, %v", n, err)
	}
}

func TestSchemaTolerance(t *testing.T) {
	s := openTest(t)
	// An entry written by an older or newer version: unknown field, missing field.
	writeRaw(t, s, "registrations", "old", []byte(`{"v":{"contact":"sip:x@192.0.2.5","transport":"udp"}}`))
	b := newBucket[reg](t, s, "registrations")
	got, ok, err := b.Get("old")
	if err != nil || !ok || got.Contact != "sip:x@192.0.2.5" || got.Expires != 0 {
		t.Fatalf("got %+v ok=%v err=%v", got, ok, err)
	}
}

func TestOpenTemp(t *testing.T) {
	s, cleanup, err := OpenTemp()
	if err != nil {
		t.Fatal(err)
	}
	dir := s.Dir()
	b := newBucket[string](t, s, "acme")
	if err := b.Put("account", "key"); err != nil {
		t.Fatal(err)
	}
	cleanup()
	cleanup() // idempotent
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp dir still there: %v", err)
	}
}

func TestUnencodableValue(t *testing.T) {
	s := openTest(t)
	b := newBucket[func()](t, s, "x")
	if err := b.Put("k", func() {}); err == nil {
		t.Fatal("put of an unencodable value succeeded")
	}
	if n, _ := b.Len(); n != 0 {
		t.Fatalf("len %d after failed put", n)
	}
}

// writeRaw bypasses the typed API to plant arbitrary bytes.
func writeRaw(t *testing.T, s *Store, bucket, key string, val []byte) {
	t.Helper()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return err
		}
		return b.Put([]byte(key), val)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// rawCount counts stored entries, expired or not.
func rawCount(t *testing.T, s *Store, bucket string) int {
	t.Helper()
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket([]byte(bucket)).Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestBackupWhileOpen(t *testing.T) {
	s := openTest(t)
	b := newBucket[string](t, s, "acme")
	if err := b.Put("account", "secret"); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	f, err := os.OpenFile(filepath.Join(dst, FileName), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Backup(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// The copy opens on its own while the original is still locked.
	c, err := Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cb := newBucket[string](t, c, "acme")
	if v, ok, err := cb.Get("account"); err != nil || !ok || v != "secret" {
		t.Fatalf("backup copy: %q %v %v", v, ok, err)
	}
}
