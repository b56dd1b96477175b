package auth

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultUsersPoll is how often ReloadingUsers.Run looks at the users file.
const DefaultUsersPoll = 2 * time.Second

// ReloadingUsers is a Users backed by a users file that is re-read when it
// changes. Each load builds a new FileUsers beside the current one and
// swaps it in atomically; a load that fails keeps the current set, so a
// half-written or broken file never locks everybody out.
type ReloadingUsers struct {
	path  string
	log   *slog.Logger
	now   func() time.Time
	after func(time.Duration) <-chan time.Time // the timer of Run; tests replace it

	cur atomic.Pointer[loadedUsers]

	mu   sync.Mutex  // serializes loads; guards seen and err
	seen os.FileInfo // the version of the file last read or tried; nil: missing
	err  error
}

var _ Users = (*ReloadingUsers)(nil)

type loadedUsers struct {
	users *FileUsers
	at    time.Time
}

// WatchUsersFile loads the users file at path and returns a ReloadingUsers
// for it; it fails if this first load does. logger (nil: discard) gets a
// line for every reload and every failure. Call Run to follow changes.
func WatchUsersFile(path string, logger *slog.Logger) (*ReloadingUsers, error) {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	u := &ReloadingUsers{
		path:  path,
		log:   logger.With("component", "auth"),
		now:   time.Now,
		after: time.After,
	}
	if err := u.Reload(); err != nil {
		return nil, err
	}
	return u, nil
}

// Lookup implements Users with the users of the last successful load.
func (u *ReloadingUsers) Lookup(username, realm string) (map[string]string, bool, bool) {
	return u.cur.Load().users.Lookup(username, realm)
}

// Reload reads the file now. On failure the current users stay in force
// and the error, which names the file, is returned, logged and kept for
// LastError.
func (u *ReloadingUsers) Reload() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	// Stat before reading: a change during the read is then seen as a
	// change by the next poll rather than missed.
	u.seen = statOrNil(u.path)
	fu, err := LoadUsersFile(u.path)
	u.err = err
	if err != nil {
		if old := u.cur.Load(); old != nil {
			u.log.Error("users file not reloaded, keeping the previous users",
				"file", u.path, "users", old.users.Len(), "err", err)
		}
		return err
	}
	u.cur.Store(&loadedUsers{users: fu, at: u.now()})
	u.log.Info("users file loaded", "file", u.path, "users", fu.Len())
	return nil
}

// Run looks at the file's size, modification time and identity every
// interval (default DefaultUsersPoll) and reloads it when they change, until
// ctx is done; then it returns nil. A file that stays broken or missing is
// reported once, not at every look. Run it in its own goroutine.
func (u *ReloadingUsers) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = DefaultUsersPoll
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-u.after(interval):
		}
		u.poll()
	}
}

func (u *ReloadingUsers) poll() {
	fi := statOrNil(u.path)
	u.mu.Lock()
	changed := !sameVersion(u.seen, fi)
	u.mu.Unlock()
	if changed {
		// Also when the file is gone or unreadable: Reload keeps the users
		// and reports it, once, since the missing state is then seen.
		_ = u.Reload()
	}
}

func statOrNil(path string) os.FileInfo {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	return fi
}

// sameVersion reports whether two looks at the file saw the same version.
// The identity check catches a file replaced by rename whose size and
// time happen to match.
func sameVersion(a, b os.FileInfo) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Size() == b.Size() && a.ModTime().Equal(b.ModTime()) && os.SameFile(a, b)
}

// Len is the number of users in force.
func (u *ReloadingUsers) Len() int { return u.cur.Load().users.Len() }

// Loaded is when the users in force were loaded.
func (u *ReloadingUsers) Loaded() time.Time { return u.cur.Load().at }

// LastError is the error of the last load, nil if it succeeded.
func (u *ReloadingUsers) LastError() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}
