package auth

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipwall/sipwall/sbc/store"
)

// DefaultKeyRotation is how often KeyRing.Run replaces the nonce key.
const DefaultKeyRotation = 24 * time.Hour

const (
	// KeysBucket is the store bucket holding the nonce keys.
	KeysBucket = "auth-keys"
	keyLen     = 32
	// keyRecheck bounds how long Run sleeps between looks at the clock, so
	// a clock jump (suspend, NTP step) or a failed rotation is dealt with
	// within a minute.
	keyRecheck = time.Minute
)

// KeyRing holds the nonce HMAC keys: the current one signs new nonces, the
// previous one still verifies nonces issued before the last rotation, and
// older keys are gone, so their nonces are foreign. Each key has a one-byte
// id carried in the nonce. It is safe for concurrent use. Use one KeyRing
// per store and share it between layers. Make one with NewKeyRing.
type KeyRing struct {
	bucket *store.Bucket[storedKey] // nil: memory only
	rotate time.Duration
	now    func() time.Time
	after  func(time.Duration) <-chan time.Time // the timer of Run; tests replace it

	keys atomic.Pointer[keySet]

	mu      sync.Mutex // serializes rotations; guards lastErr
	lastErr error
}

// keySet is immutable once published, so readers need no lock.
type keySet struct {
	cur  ringKey
	prev *ringKey
}

type ringKey struct {
	id      byte
	seq     uint64
	key     []byte
	created time.Time
}

// storedKey is a key as kept in the store, under its id in hex ("07").
// Seq orders keys without trusting the clock.
type storedKey struct {
	Seq     uint64    `json:"seq"`
	Key     []byte    `json:"key"`
	Created time.Time `json:"created"`
}

func keyName(id byte) string { return fmt.Sprintf("%02x", id) }

func randomKey() []byte {
	k := make([]byte, keyLen)
	_, _ = rand.Read(k) // crypto/rand.Read does not fail
	return k
}

// NewKeyRing returns the nonce keys kept in st (bucket KeysBucket), creating
// the first key if there is none, so that nonces issued before a restart
// still verify after it. With st nil the keys live in memory only. rotate
// is the rotation period of Run (default DefaultKeyRotation); a nonce
// stays valid for at least one period, so keep it well above the nonce
// TTL. now is the clock (default time.Now).
//
// Entries of the bucket that are not a valid key are deleted, as are keys
// older than the newest two (left behind by a crash during a rotation).
func NewKeyRing(st *store.Store, rotate time.Duration, now func() time.Time) (*KeyRing, error) {
	if rotate <= 0 {
		rotate = DefaultKeyRotation
	}
	if now == nil {
		now = time.Now
	}
	k := &KeyRing{rotate: rotate, now: now, after: time.After}
	if st == nil {
		k.keys.Store(&keySet{cur: ringKey{key: randomKey(), created: now()}})
		return k, nil
	}
	b, err := store.NewBucket[storedKey](st, KeysBucket)
	if err != nil {
		return nil, fmt.Errorf("auth keys: %w", err)
	}
	k.bucket = b
	if err := k.load(); err != nil {
		return nil, err
	}
	return k, nil
}

// fixedKeyRing is the ring of Options.Key: one key, id 0, never rotated.
func fixedKeyRing(key []byte) *KeyRing {
	k := &KeyRing{rotate: DefaultKeyRotation, now: time.Now, after: time.After}
	k.keys.Store(&keySet{cur: ringKey{key: slices.Clone(key)}})
	return k
}

func (k *KeyRing) load() error {
	var found []ringKey
	var drop []string
	err := k.bucket.ForEach(func(name string, v storedKey, _ time.Time) error {
		id, err := strconv.ParseUint(name, 16, 8)
		if err != nil || len(name) != 2 || len(v.Key) != keyLen {
			drop = append(drop, name)
			return nil
		}
		found = append(found, ringKey{id: byte(id), seq: v.Seq, key: v.Key, created: v.Created})
		return nil
	})
	if err != nil {
		return fmt.Errorf("auth keys: load: %w", err)
	}
	slices.SortFunc(found, func(a, b ringKey) int { return cmp.Compare(b.seq, a.seq) })
	for _, old := range found[min(2, len(found)):] {
		drop = append(drop, keyName(old.id))
	}
	found = found[:min(2, len(found))]
	// Drop before creating: a first key may take the name of a bad entry.
	if len(drop) > 0 {
		if _, err := k.bucket.DeleteMany(drop...); err != nil {
			return fmt.Errorf("auth keys: drop old keys: %w", err)
		}
	}
	if len(found) == 0 {
		first := ringKey{seq: 1, key: randomKey(), created: k.now()}
		if err := k.put(first); err != nil {
			return err
		}
		found = append(found, first)
	}
	set := &keySet{cur: found[0]}
	if len(found) > 1 {
		set.prev = &found[1]
	}
	k.keys.Store(set)
	return nil
}

func (k *KeyRing) put(rk ringKey) error {
	err := k.bucket.Put(keyName(rk.id), storedKey{Seq: rk.seq, Key: rk.key, Created: rk.created.UTC()})
	if err != nil {
		return fmt.Errorf("auth keys: store key %s: %w", keyName(rk.id), err)
	}
	return nil
}

// Current returns the key that signs new nonces and its id. The key must
// not be modified.
func (k *KeyRing) Current() (id byte, key []byte) {
	s := k.keys.Load()
	return s.cur.id, s.cur.key
}

// Lookup returns the key with the given id if it is still valid (the
// current or the previous one). The key must not be modified.
func (k *KeyRing) Lookup(id byte) ([]byte, bool) {
	s := k.keys.Load()
	switch {
	case s.cur.id == id:
		return s.cur.key, true
	case s.prev != nil && s.prev.id == id:
		return s.prev.key, true
	}
	return nil, false
}

// Rotate makes a new key current now. The current key becomes the previous
// one, still valid for verification; the previous one is deleted. The new
// key is stored before it is used, so that no nonce is signed by a key a
// restart would lose; if storing fails, nothing changes.
func (k *KeyRing) Rotate() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lastErr = k.rotateLocked()
	return k.lastErr
}

func (k *KeyRing) rotateLocked() error {
	old := k.keys.Load()
	next := ringKey{id: old.cur.id + 1, seq: old.cur.seq + 1, key: randomKey(), created: k.now()}
	if k.bucket != nil {
		if err := k.put(next); err != nil {
			return err
		}
	}
	prev := old.cur
	k.keys.Store(&keySet{cur: next, prev: &prev})
	if k.bucket != nil && old.prev != nil && old.prev.id != next.id {
		if err := k.bucket.Delete(keyName(old.prev.id)); err != nil {
			// Rotated all the same; the next load drops the leftover.
			return fmt.Errorf("auth keys: delete key %s: %w", keyName(old.prev.id), err)
		}
	}
	return nil
}

// untilDue is how long until the current key is one rotation period old.
func (k *KeyRing) untilDue() time.Duration {
	return k.keys.Load().cur.created.Add(k.rotate).Sub(k.now())
}

// Run rotates the keys whenever the current key is one rotation period old,
// until ctx is done (it returns nil) or the store is closed (it returns
// store.ErrClosed). The age counts from the key's stored creation time, so
// restarts neither postpone nor hasten rotation. A failed rotation keeps
// the keys as they are, shows in LastError, and is retried a minute later.
// Run it in its own goroutine.
func (k *KeyRing) Run(ctx context.Context) error {
	for {
		if k.untilDue() <= 0 {
			if err := k.Rotate(); errors.Is(err, store.ErrClosed) {
				return err
			}
		}
		wait := k.untilDue()
		if wait <= 0 || wait > keyRecheck {
			wait = keyRecheck
		}
		select {
		case <-ctx.Done():
			return nil
		case <-k.after(wait):
		}
	}
}

// LastError is the error of the last rotation, nil if it succeeded.
func (k *KeyRing) LastError() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lastErr
}

// keyRing picks the nonce keys of the options: Keys, else the fixed Key,
// else a random in-memory ring, whose nonces die with the process.
func (o *Options) keyRing() (*KeyRing, error) {
	if len(o.Key) > 0 && len(o.Key) < keyLen {
		return nil, errors.New("auth: nonce key shorter than 32 bytes")
	}
	switch {
	case o.Keys != nil:
		return o.Keys, nil
	case len(o.Key) > 0:
		return fixedKeyRing(o.Key), nil
	}
	return NewKeyRing(nil, 0, o.Now)
}
