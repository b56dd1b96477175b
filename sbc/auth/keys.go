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
	// keyLockName and keyLockTTL: the KeySource lock of the node that
	// creates the first shared key or rotates.
	keyLockName = "auth-keys"
	keyLockTTL  = 30 * time.Second
	// keyRefreshMin spaces the refreshes a nonce of an unknown key id
	// triggers: at most one source read a second, whatever the peers
	// send.
	keyRefreshMin = time.Second
	// keyStartTries and keyStartWait bound how long NewSharedKeyRing
	// waits for another node creating the first key.
	keyStartTries = 40
	keyStartWait  = 250 * time.Millisecond
)

// KeyRing holds the nonce HMAC keys: the current one signs new nonces, the
// previous one still verifies nonces issued before the last rotation, and
// older keys are gone, so their nonces are foreign. Each key has a one-byte
// id carried in the nonce. It is safe for concurrent use. Use one KeyRing
// per store and share it between layers. Make one with NewKeyRing, or
// with NewSharedKeyRing for keys shared by the nodes of a cluster.
type KeyRing struct {
	bucket *store.Bucket[storedKey] // nil: memory only
	src    KeySource                // nil: not shared
	rotate time.Duration
	now    func() time.Time
	after  func(time.Duration) <-chan time.Time // the timer of Run; tests replace it
	sleep  func(time.Duration)                  // NewSharedKeyRing's wait for another node

	// keys is read lock-free by Current and Lookup.
	keys atomic.Pointer[keySet]

	mu    sync.Mutex // serializes rotations
	setMu sync.Mutex // serializes changes of a shared ring's key set

	refreshMu   sync.Mutex // serializes refreshes of a shared ring
	lastRefresh time.Time

	errMu   sync.Mutex
	lastErr error
}

// SharedKey is a nonce key as a KeySource keeps it: ID is the key's
// one-byte id in hex ("07", the id nonces carry), Seq orders the keys
// (the highest signs), Secret is the 32-byte HMAC key.
type SharedKey struct {
	ID      string
	Seq     uint64
	Secret  []byte
	Created time.Time
}

// KeySource keeps the nonce keys of the nodes of a cluster, so that a
// nonce issued by one node verifies on another (cmd/sipwall adapts
// sbc/cluster to it). See NewSharedKeyRing.
type KeySource interface {
	// Keys returns the keys held.
	Keys() ([]SharedKey, error)
	// AddKey stores k unless a key with its ID is held already, and
	// reports whether it stored it.
	AddKey(k SharedKey) (bool, error)
	// DeleteKey removes the key with that ID (none: no error).
	DeleteKey(id string) error
	// TryLock takes the named lock for ttl unless it is held, and
	// reports whether it took it.
	TryLock(name string, ttl time.Duration) (bool, error)
}

// keySet is immutable once published, so readers need no lock.
type keySet struct {
	cur  ringKey
	prev *ringKey
}

func (s *keySet) lookup(id byte) ([]byte, bool) {
	switch {
	case s.cur.id == id:
		return s.cur.key, true
	case s.prev != nil && s.prev.id == id:
		return s.prev.key, true
	}
	return nil, false
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
// current or the previous one). The key must not be modified. On a shared
// ring an id it does not hold (a key another node rotated in) makes it
// read the source first, at most once a second.
func (k *KeyRing) Lookup(id byte) ([]byte, bool) {
	if key, ok := k.keys.Load().lookup(id); ok {
		return key, true
	}
	if k.src == nil {
		return nil, false
	}
	return k.refreshFor(id)
}

// Rotate makes a new key current now. The current key becomes the previous
// one, still valid for verification; the previous one is deleted. The new
// key is stored before it is used, so that no nonce is signed by a key a
// restart would lose; if storing fails, nothing changes.
//
// On a shared ring the new key is added to the source (no lock: when two
// nodes rotate at once, the source keeps one key per id and both take
// it), keys older than the newest two are deleted there, and the other
// nodes take the new key on their next refresh.
func (k *KeyRing) Rotate() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var err error
	if k.src != nil {
		err = k.rotateShared(false)
	} else {
		err = k.rotateLocked()
	}
	k.setErr(err)
	return err
}

func (k *KeyRing) setErr(err error) {
	k.errMu.Lock()
	k.lastErr = err
	k.errMu.Unlock()
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
//
// On a shared ring Run also reads the keys from the source at every pass
// (at least once a minute), and the rotation is done by the one node that
// takes the source's lock; the others take the new key when they read
// it. Run then returns only when ctx is done.
func (k *KeyRing) Run(ctx context.Context) error {
	if k.src != nil {
		return k.runShared(ctx)
	}
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

// LastError is the error of the last rotation (on a shared ring, of the
// last rotation or refresh), nil if it succeeded.
func (k *KeyRing) LastError() error {
	k.errMu.Lock()
	defer k.errMu.Unlock()
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

// NewSharedKeyRing returns nonce keys kept in src, shared by the nodes of a
// cluster, so that a nonce issued by one node verifies on all. It reads
// the keys; when there is none, the node that takes src's lock creates the
// first one and every node takes what src then holds (the others wait up
// to 10 s for it). It fails when src fails at start: there are no keys in
// memory to fall back on yet (the caller may fall back to NewKeyRing).
//
// The current key is the one with the highest Seq, the previous one the
// next highest; nonces of either verify. Run reads src at least once a
// minute and rotates when the current key is rotate old (default
// DefaultKeyRotation), on the one node that takes the lock; a nonce naming
// a key id the ring does not hold makes it read src at once (at most once
// a second). When src fails the ring keeps the keys it holds; keys it
// holds that src lost (a flushed Redis) are written back. now is the
// clock (default time.Now).
func NewSharedKeyRing(src KeySource, rotate time.Duration, now func() time.Time) (*KeyRing, error) {
	if src == nil {
		return nil, errors.New("auth keys: no key source")
	}
	if rotate <= 0 {
		rotate = DefaultKeyRotation
	}
	if now == nil {
		now = time.Now
	}
	k := &KeyRing{src: src, rotate: rotate, now: now, after: time.After, sleep: time.Sleep}
	for try := 0; ; try++ {
		ks, err := src.Keys()
		if err != nil {
			return nil, fmt.Errorf("auth keys: read shared keys: %w", err)
		}
		if k.merge(parseShared(ks)) != nil {
			k.lastRefresh = k.now()
			return k, nil
		}
		if try == keyStartTries {
			return nil, errors.New("auth keys: no shared key appeared")
		}
		locked, err := src.TryLock(keyLockName, keyLockTTL)
		if err != nil {
			return nil, fmt.Errorf("auth keys: lock shared keys: %w", err)
		}
		if !locked {
			k.sleep(keyStartWait) // another node is creating the first key
			continue
		}
		first := ringKey{id: 1, seq: 1, key: randomKey(), created: k.now()}
		if _, err := src.AddKey(toShared(first)); err != nil {
			return nil, fmt.Errorf("auth keys: add shared key: %w", err)
		}
		// Read again: the key in force is whatever src holds.
	}
}

func toShared(rk ringKey) SharedKey {
	return SharedKey{ID: keyName(rk.id), Seq: rk.seq, Secret: slices.Clone(rk.key), Created: rk.created.UTC()}
}

// parseShared keeps the well-formed keys of a source: an id of two hex
// digits and a 32-byte secret.
func parseShared(ks []SharedKey) []ringKey {
	out := make([]ringKey, 0, len(ks))
	for _, sk := range ks {
		id, err := strconv.ParseUint(sk.ID, 16, 8)
		if err != nil || len(sk.ID) != 2 || len(sk.Secret) != keyLen {
			continue
		}
		out = append(out, ringKey{id: byte(id), seq: sk.Seq, key: slices.Clone(sk.Secret), created: sk.Created})
	}
	return out
}

// merge makes the ring's keys the newest two (by Seq) of src's keys and
// the ones it holds, src winning for an id both have. Holding on to its
// own keys means a source that lost keys, or a read that raced a rotation,
// never takes a valid key away. It returns the set in force, nil if there
// is no key at all.
func (k *KeyRing) merge(src []ringKey) *keySet {
	k.setMu.Lock()
	defer k.setMu.Unlock()
	old := k.keys.Load()
	all := slices.Clone(src)
	if old != nil {
		for _, rk := range []*ringKey{&old.cur, old.prev} {
			if rk != nil && !slices.ContainsFunc(all, func(o ringKey) bool { return o.id == rk.id }) {
				all = append(all, *rk)
			}
		}
	}
	if len(all) == 0 {
		return nil
	}
	slices.SortFunc(all, func(a, b ringKey) int { return cmp.Compare(b.seq, a.seq) })
	set := &keySet{cur: all[0]}
	if len(all) > 1 {
		set.prev = &all[1]
	}
	if old != nil && sameKey(old.cur, set.cur) && (old.prev == nil) == (set.prev == nil) &&
		(old.prev == nil || sameKey(*old.prev, *set.prev)) {
		return old // unchanged: keep the published set
	}
	k.keys.Store(set)
	return set
}

func sameKey(a, b ringKey) bool {
	return a.id == b.id && a.seq == b.seq && slices.Equal(a.key, b.key)
}

// Refresh reads the keys from the source now (a shared ring; others have
// nothing to read). On error the ring keeps its keys.
func (k *KeyRing) Refresh() error {
	if k.src == nil {
		return nil
	}
	k.refreshMu.Lock()
	defer k.refreshMu.Unlock()
	return k.refreshLocked()
}

// refreshFor reads the source for an id the ring does not hold, unless it
// was read less than keyRefreshMin ago. Concurrent callers wait for the
// read in progress rather than start another.
func (k *KeyRing) refreshFor(id byte) ([]byte, bool) {
	k.refreshMu.Lock()
	defer k.refreshMu.Unlock()
	if key, ok := k.keys.Load().lookup(id); ok {
		return key, true // read meanwhile
	}
	if since := k.now().Sub(k.lastRefresh); since >= 0 && since < keyRefreshMin {
		return nil, false
	}
	_ = k.refreshLocked()
	return k.keys.Load().lookup(id)
}

// refreshLocked reads the source into the ring (refreshMu held), and
// writes back the keys in force that the source lacks.
func (k *KeyRing) refreshLocked() error {
	k.lastRefresh = k.now()
	ks, err := k.src.Keys()
	if err != nil {
		err = fmt.Errorf("auth keys: read shared keys: %w", err)
		k.setErr(err)
		return err
	}
	have := parseShared(ks)
	set := k.merge(have)
	if set == nil {
		return nil // no key anywhere: NewSharedKeyRing makes the first
	}
	var errs []error
	for _, rk := range []*ringKey{&set.cur, set.prev} {
		if rk == nil || slices.ContainsFunc(have, func(o ringKey) bool { return o.id == rk.id }) {
			continue
		}
		if _, err := k.src.AddKey(toShared(*rk)); err != nil {
			errs = append(errs, fmt.Errorf("auth keys: write back key %s: %w", keyName(rk.id), err))
		}
	}
	err = errors.Join(errs...)
	k.setErr(err)
	return err
}

// rotateShared adds a new current key to the source (mu held). With lock,
// only after taking the source's lock and only if the current key is
// still due once the source is read again (another node may have rotated
// meanwhile); without lock, at once.
func (k *KeyRing) rotateShared(lock bool) error {
	if lock {
		ok, err := k.src.TryLock(keyLockName, keyLockTTL)
		if err != nil {
			return fmt.Errorf("auth keys: lock shared keys: %w", err)
		}
		if !ok {
			return nil // another node rotates; its key comes with a refresh
		}
	}
	ks, err := k.src.Keys()
	if err != nil {
		return fmt.Errorf("auth keys: read shared keys: %w", err)
	}
	have := parseShared(ks)
	set := k.merge(have)
	if lock && k.now().Before(set.cur.created.Add(k.rotate)) {
		return nil
	}
	next := ringKey{id: byte(set.cur.seq + 1), seq: set.cur.seq + 1, key: randomKey(), created: k.now()}
	added, err := k.src.AddKey(toShared(next))
	if err != nil {
		return fmt.Errorf("auth keys: add shared key %s: %w", keyName(next.id), err)
	}
	if !added {
		// Another node rotated to this id first: take its key.
		ks, err := k.src.Keys()
		if err != nil {
			return fmt.Errorf("auth keys: read shared keys: %w", err)
		}
		k.merge(parseShared(ks))
		return nil
	}
	k.merge([]ringKey{next})
	// Keys older than the newest two are gone for every node.
	var errs []error
	for _, rk := range have {
		if rk.seq < set.cur.seq {
			if err := k.src.DeleteKey(keyName(rk.id)); err != nil {
				errs = append(errs, fmt.Errorf("auth keys: delete shared key %s: %w", keyName(rk.id), err))
			}
		}
	}
	return errors.Join(errs...)
}

// runShared is Run for a shared ring.
func (k *KeyRing) runShared(ctx context.Context) error {
	for {
		err := k.Refresh()
		if err == nil && k.untilDue() <= 0 {
			k.mu.Lock()
			err = k.rotateShared(true)
			k.mu.Unlock()
			k.setErr(err)
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
