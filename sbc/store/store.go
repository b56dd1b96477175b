// Package store is sipwall's embedded state store: registrations, bans,
// fraud counters, nonce keys and ACME data live here so that a restart
// loses nothing.
//
// The store is a single bbolt file (sipwall.db) in a directory owned by
// the process. Callers work through typed buckets (see NewBucket); values
// are JSON documents wrapped in a small envelope that carries an optional
// expiry time. Expired entries read as absent immediately and are removed
// from disk by Sweep or by the background Sweeper.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// FileName is the name of the database file inside the store directory.
const FileName = "sipwall.db"

const (
	defaultLockTimeout = 2 * time.Second
	defaultSweepBatch  = 1000
	defaultSweepEvery  = time.Minute

	// MaxKeyLen bounds keys so that a hostile SIP peer cannot make us store
	// arbitrarily large keys derived from its headers.
	MaxKeyLen = 1024
	// MaxBucketNameLen bounds bucket names; they are chosen by code, not
	// by peers, so this only catches mistakes.
	MaxBucketNameLen = 255
)

// Sentinel errors; test for them with errors.Is.
var (
	// ErrLocked means another process (or another Store in this process)
	// holds the database file lock.
	ErrLocked = errors.New("store: database is locked by another process")
	// ErrClosed means the Store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrBadKey means a key is empty or longer than MaxKeyLen bytes.
	ErrBadKey = errors.New("store: bad key")
	// ErrBadBucket means a bucket name is empty or too long.
	ErrBadBucket = errors.New("store: bad bucket name")
	// ErrBadTTL means PutTTL got a TTL that is not positive.
	ErrBadTTL = errors.New("store: ttl must be positive")
	// ErrCorrupt means a stored entry or bucket could not be decoded.
	ErrCorrupt = errors.New("store: corrupt entry")
)

// Store is an open state store. It is safe for concurrent use.
type Store struct {
	db          *bolt.DB
	dir         string
	now         func() time.Time
	log         *slog.Logger
	sweepBatch  int
	lockTimeout time.Duration
	noSync      bool

	mu      sync.Mutex
	buckets map[string]struct{} // names registered through NewBucket, for the Sweeper

	closeOnce sync.Once
	closeErr  error
}

// Option configures Open.
type Option func(*Store)

// WithClock sets the clock used to compute and check expiry. Tests inject
// a fake clock so expiry can be checked without sleeping.
func WithClock(now func() time.Time) Option {
	return func(s *Store) {
		if now != nil {
			s.now = now
		}
	}
}

// WithLockTimeout sets how long Open waits for the file lock before
// failing with ErrLocked. Non-positive values keep the default (2s): the
// store never waits forever.
func WithLockTimeout(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			s.lockTimeout = d
		}
	}
}

// WithLogger sets the logger the Sweeper reports failed passes to.
// The default discards.
func WithLogger(l *slog.Logger) Option {
	return func(s *Store) {
		if l != nil {
			s.log = l
		}
	}
}

// WithSweepBatch bounds how many keys one sweep transaction scans per
// bucket, so sweeping a large bucket never holds the write lock for long.
// Non-positive values keep the default (1000).
func WithSweepBatch(n int) Option {
	return func(s *Store) {
		if n > 0 {
			s.sweepBatch = n
		}
	}
}

// WithNoSync skips fsync on commit. Only for throwaway stores (tests,
// demo): a crash may lose or corrupt recent writes.
func WithNoSync() Option {
	return func(s *Store) { s.noSync = true }
}

// Open opens (creating if needed) the store in dir. The directory is
// created with mode 0700 because the store holds nonce keys and ACME
// account keys. If another process holds the store, Open fails with
// ErrLocked after the lock timeout instead of hanging.
func Open(dir string, opts ...Option) (*Store, error) {
	s := &Store{
		dir:         dir,
		now:         time.Now,
		log:         slog.New(slog.DiscardHandler),
		sweepBatch:  defaultSweepBatch,
		lockTimeout: defaultLockTimeout,
		buckets:     make(map[string]struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	if dir == "" {
		return nil, errors.New("store: empty directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: s.lockTimeout,
		NoSync:  s.noSync,
	})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s (waited %s)", ErrLocked, path, s.lockTimeout)
		}
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	s.db = db
	return s, nil
}

// OpenTemp opens a store in a new temporary directory, for demo mode and
// tests. The returned cleanup closes the store and removes the directory;
// it is safe to call more than once.
func OpenTemp(opts ...Option) (*Store, func(), error) {
	dir, err := os.MkdirTemp("", "sipwall-store-")
	if err != nil {
		return nil, nil, fmt.Errorf("store: create temp directory: %w", err)
	}
	s, err := Open(dir, opts...)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, nil, err
	}
	cleanup := func() {
		_ = s.Close()
		_ = os.RemoveAll(dir)
	}
	return s, cleanup, nil
}

// Dir returns the directory the store lives in.
func (s *Store) Dir() string { return s.dir }

// Path returns the path of the database file.
func (s *Store) Path() string { return filepath.Join(s.dir, FileName) }

// Close releases the database and its file lock. It waits for running
// transactions. Calling it again returns the first result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("store: close: %w", err)
		}
	})
	return s.closeErr
}

// Backup writes a consistent copy of the whole database file to w while
// the store stays in use (a read transaction pins the snapshot). The copy
// is a complete sipwall.db that Open accepts.
func (s *Store) Backup(w io.Writer) (int64, error) {
	var n int64
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("store: backup: %w", err)
	}
	return n, nil
}

// view and update map bbolt's "not open" onto ErrClosed so callers need
// not import bbolt to recognise a closed store.
func (s *Store) view(fn func(*bolt.Tx) error) error {
	return mapErr(s.db.View(fn))
}

func (s *Store) update(fn func(*bolt.Tx) error) error {
	return mapErr(s.db.Update(fn))
}

// batch groups concurrent writers into one transaction and one fsync (bbolt
// may call fn more than once, so only idempotent writes — Put, Delete — use
// it). Under load this turns one fsync per write into one per batch.
func (s *Store) batch(fn func(*bolt.Tx) error) error {
	return mapErr(s.db.Batch(fn))
}

func mapErr(err error) error {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

func (s *Store) register(name string) {
	s.mu.Lock()
	s.buckets[name] = struct{}{}
	s.mu.Unlock()
}

func (s *Store) registered() []string {
	s.mu.Lock()
	names := make([]string, 0, len(s.buckets))
	for n := range s.buckets {
		names = append(names, n)
	}
	s.mu.Unlock()
	slices.Sort(names) // stable order makes passes predictable
	return names
}

// Sweeper removes expired entries from every bucket created with
// NewBucket on this store, once immediately and then every interval, until
// ctx is done (it returns nil) or the store is closed (it returns
// ErrClosed). Each pass scans at most the sweep batch size of keys per
// bucket and resumes where the previous pass stopped, so a huge bucket is
// swept over several passes without long write locks. Run it in its own
// goroutine. A non-positive interval means one minute.
func (s *Store) Sweeper(ctx context.Context, every time.Duration) error {
	if every <= 0 {
		every = defaultSweepEvery
	}
	resume := make(map[string][]byte)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.sweepPass(ctx, resume); errors.Is(err, ErrClosed) {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// sweepPass sweeps one batch of each registered bucket. Errors other than
// a closed store are logged and the bucket is retried from the start next
// pass.
func (s *Store) sweepPass(ctx context.Context, resume map[string][]byte) error {
	for _, name := range s.registered() {
		if ctx.Err() != nil {
			return nil
		}
		removed, next, err := s.sweepChunk(name, resume[name])
		if err != nil {
			if errors.Is(err, ErrClosed) {
				return err
			}
			s.log.Warn("store sweep failed", "bucket", name, "err", err)
			delete(resume, name)
			continue
		}
		if removed > 0 {
			s.log.Debug("store sweep", "bucket", name, "removed", removed)
		}
		if next == nil {
			delete(resume, name)
		} else {
			resume[name] = next
		}
	}
	return nil
}

// sweepAll sweeps a whole bucket in bounded transactions.
func (s *Store) sweepAll(name string) (int, error) {
	total := 0
	var after []byte
	for {
		n, next, err := s.sweepChunk(name, after)
		total += n
		if err != nil {
			return total, err
		}
		if next == nil {
			return total, nil
		}
		after = next
	}
}

// sweepChunk scans up to sweepBatch keys strictly after `after` (from the
// start when nil) and deletes the expired ones in one transaction. It
// returns the last scanned key to resume from, or nil when the end of the
// bucket was reached. Entries that cannot be decoded are left alone: Get
// reports them, and deleting data we cannot read would hide the problem.
func (s *Store) sweepChunk(name string, after []byte) (removed int, next []byte, err error) {
	err = s.update(func(tx *bolt.Tx) error {
		b, err := txBucket(tx, name)
		if err != nil {
			return err
		}
		now := s.now()
		c := b.Cursor()
		var k, v []byte
		if after == nil {
			k, v = c.First()
		} else {
			k, v = c.Seek(after)
			if k != nil && string(k) == string(after) {
				k, v = c.Next()
			}
		}
		var doomed [][]byte
		scanned := 0
		for ; k != nil; k, v = c.Next() {
			if scanned == s.sweepBatch {
				break
			}
			scanned++
			next = slices.Clone(k)
			if v == nil {
				continue // nested bucket; not ours
			}
			exp, derr := decodeExpiry(v)
			if derr == nil && expired(exp, now) {
				doomed = append(doomed, slices.Clone(k))
			}
		}
		if k == nil {
			next = nil // reached the end
		}
		// Delete after the scan: deleting under a live cursor can skip keys.
		for _, dk := range doomed {
			if err := b.Delete(dk); err != nil {
				return err
			}
		}
		removed = len(doomed)
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return removed, next, nil
}

func txBucket(tx *bolt.Tx, name string) (*bolt.Bucket, error) {
	b := tx.Bucket([]byte(name))
	if b == nil {
		// NewBucket created it, so only outside tampering removes it.
		return nil, fmt.Errorf("%w: bucket %q is missing", ErrCorrupt, name)
	}
	return b, nil
}

func expired(exp, now time.Time) bool {
	return !exp.IsZero() && !now.Before(exp)
}
