package store

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// KeepTTL, returned as the ttl from an Update function, keeps the entry's
// current expiry (none if it did not exist). Fixed-window counters need
// this so that increments do not push the window out.
const KeepTTL time.Duration = -1

// envelope is the on-disk form of every value. JSON is chosen over a
// binary encoding on purpose: the file stays readable with the stock
// bbolt tools when debugging a live system, and it tolerates schema
// drift — fields added later decode as zero values in old entries, and
// fields removed are ignored — so upgrades need no migrations.
type envelope[T any] struct {
	// Exp is when the entry stops existing; zero means never.
	Exp time.Time `json:"exp,omitzero"`
	V   T         `json:"v"`
}

// expiryOnly decodes just the expiry, for code that does not know T.
type expiryOnly struct {
	Exp time.Time `json:"exp,omitzero"`
}

// Bucket is a typed view of one bbolt bucket whose values are T. It is
// safe for concurrent use. Functions passed to Update and ForEach run
// inside a bbolt transaction and must not call back into the store
// (that deadlocks); collect what you need and act afterwards.
type Bucket[T any] struct {
	s    *Store
	name string
}

// NewBucket creates the named bucket if needed and returns a typed handle
// to it. The bucket is registered with the store's Sweeper. Calling it
// twice with the same name is fine; using two different types for one
// name is not checked and will surface as ErrCorrupt on reads.
func NewBucket[T any](s *Store, name string) (*Bucket[T], error) {
	if name == "" || len(name) > MaxBucketNameLen {
		return nil, fmt.Errorf("%w: %q", ErrBadBucket, name)
	}
	err := s.update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists([]byte(name))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: create bucket %q: %w", name, err)
	}
	s.register(name)
	return &Bucket[T]{s: s, name: name}, nil
}

// Name returns the bucket name.
func (b *Bucket[T]) Name() string { return b.name }

func checkKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrBadKey)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrBadKey, len(key), MaxKeyLen)
	}
	return nil
}

func (b *Bucket[T]) encode(v T, exp time.Time) ([]byte, error) {
	if !exp.IsZero() {
		exp = exp.UTC() // one zone on disk keeps the file easy to read
	}
	data, err := json.Marshal(envelope[T]{Exp: exp, V: v})
	if err != nil {
		return nil, fmt.Errorf("store: encode %s value: %w", b.name, err)
	}
	return data, nil
}

func (b *Bucket[T]) decode(key, raw []byte) (envelope[T], error) {
	var env envelope[T]
	if err := json.Unmarshal(raw, &env); err != nil {
		return env, fmt.Errorf("%w: bucket %q key %q: %w", ErrCorrupt, b.name, key, err)
	}
	return env, nil
}

func decodeExpiry(raw []byte) (time.Time, error) {
	var e expiryOnly
	err := json.Unmarshal(raw, &e)
	return e.Exp, err
}

// Put stores v under key with no expiry.
func (b *Bucket[T]) Put(key string, v T) error {
	return b.put(key, v, time.Time{})
}

// PutTTL stores v under key; it reads as absent once ttl has passed.
func (b *Bucket[T]) PutTTL(key string, v T, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("%w: %s", ErrBadTTL, ttl)
	}
	return b.put(key, v, b.s.now().Add(ttl))
}

func (b *Bucket[T]) put(key string, v T, exp time.Time) error {
	if err := checkKey(key); err != nil {
		return err
	}
	// Encode before the transaction so the write lock is held briefly.
	data, err := b.encode(v, exp)
	if err != nil {
		return err
	}
	return b.s.batch(func(tx *bolt.Tx) error {
		bk, err := txBucket(tx, b.name)
		if err != nil {
			return err
		}
		return bk.Put([]byte(key), data)
	})
}

// Get returns the value under key. ok is false when the key is missing or
// expired. A value that cannot be decoded yields an ErrCorrupt error.
func (b *Bucket[T]) Get(key string) (v T, ok bool, err error) {
	if err := checkKey(key); err != nil {
		return v, false, err
	}
	err = b.s.view(func(tx *bolt.Tx) error {
		bk, err := txBucket(tx, b.name)
		if err != nil {
			return err
		}
		raw := bk.Get([]byte(key))
		if raw == nil {
			return nil
		}
		env, err := b.decode([]byte(key), raw)
		if err != nil {
			return err
		}
		if expired(env.Exp, b.s.now()) {
			return nil
		}
		v, ok = env.V, true
		return nil
	})
	if err != nil {
		var zero T
		return zero, false, err
	}
	return v, ok, nil
}

// Delete removes key. Deleting a missing key is not an error.
func (b *Bucket[T]) Delete(key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return b.s.batch(func(tx *bolt.Tx) error {
		bk, err := txBucket(tx, b.name)
		if err != nil {
			return err
		}
		return bk.Delete([]byte(key))
	})
}

// DeleteMany removes keys in one transaction and reports how many were
// present (expired-but-unswept entries count too). All keys are checked
// first, so a bad key deletes nothing.
func (b *Bucket[T]) DeleteMany(keys ...string) (int, error) {
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return 0, err
		}
	}
	n := 0
	err := b.s.update(func(tx *bolt.Tx) error {
		bk, err := txBucket(tx, b.name)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if bk.Get([]byte(k)) == nil {
				continue
			}
			if err := bk.Delete([]byte(k)); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Update atomically reads, changes and writes key in one write
// transaction, so concurrent Updates of the same key never lose changes.
//
// fn gets the current value (zero and exists=false if the key is missing
// or expired) and returns the new value, whether to keep it, and its TTL:
// positive sets a new expiry from now, zero means no expiry, KeepTTL (any
// negative value) keeps the current expiry. keep=false deletes the key.
// If fn returns an error, nothing is written and Update returns that
// error unchanged. A stored value that cannot be decoded fails with
// ErrCorrupt before fn is called; Delete it to recover.
func (b *Bucket[T]) Update(key string, fn func(old T, exists bool) (nv T, keep bool, ttl time.Duration, err error)) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return b.s.update(func(tx *bolt.Tx) error {
		bk, err := txBucket(tx, b.name)
		if err != nil {
			return err
		}
		k := []byte(key)
		now := b.s.now()
		raw := bk.Get(k)
		var (
			old    T
			exists bool
			oldExp time.Time
		)
		if raw != nil {
			env, err := b.decode(k, raw)
			if err != nil {
				return err
			}
			if !expired(env.Exp, now) {
				old, exists, oldExp = env.V, true, env.Exp
			}
		}
		nv, keep, ttl, err := fn(old, exists)
		if err != nil {
			return err // rolls the transaction back
		}
		if !keep {
			if raw == nil {
				return nil
			}
			return bk.Delete(k)
		}
		var exp time.Time
		switch {
		case ttl > 0:
			exp = now.Add(ttl)
		case ttl < 0:
			exp = oldExp
		}
		data, err := b.encode(nv, exp)
		if err != nil {
			return err
		}
		return bk.Put(k, data)
	})
}

// ForEach calls fn for every live entry in key order; expires is zero for
// entries without expiry. An error from fn stops the walk and is returned
// unchanged. An undecodable entry stops the walk with ErrCorrupt.
func (b *Bucket[T]) ForEach(fn func(key string, v T, expires time.Time) error) error {
	return b.s.view(func(tx *bolt.Tx) error {
		bk, err := txBucket(tx, b.name)
		if err != nil {
			return err
		}
		now := b.s.now()
		return bk.ForEach(func(k, raw []byte) error {
			if raw == nil {
				return nil // nested bucket; not ours
			}
			env, err := b.decode(k, raw)
			if err != nil {
				return err
			}
			if expired(env.Exp, now) {
				return nil
			}
			return fn(string(k), env.V, env.Exp)
		})
	})
}

// Len counts the live (unexpired) entries. It reads every entry, so it
// is meant for metrics and admin views, not hot paths.
func (b *Bucket[T]) Len() (int, error) {
	n := 0
	err := b.s.view(func(tx *bolt.Tx) error {
		bk, err := txBucket(tx, b.name)
		if err != nil {
			return err
		}
		now := b.s.now()
		return bk.ForEach(func(k, raw []byte) error {
			if raw == nil {
				return nil
			}
			exp, err := decodeExpiry(raw)
			if err != nil {
				return fmt.Errorf("%w: bucket %q key %q: %w", ErrCorrupt, b.name, k, err)
			}
			if !expired(exp, now) {
				n++
			}
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Sweep deletes expired entries and reports how many it removed. It works
// in bounded transactions (see WithSweepBatch) so writers are not starved.
// Undecodable entries are left in place.
func (b *Bucket[T]) Sweep() (removed int, err error) {
	return b.s.sweepAll(b.name)
}
