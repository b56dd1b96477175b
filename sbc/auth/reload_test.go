package auth

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc"
)

// usersYAML is a users file with the given users, password "pw-<name>".
func usersYAML(names ...string) string {
	var b strings.Builder
	b.WriteString("users:\n")
	for _, n := range names {
		b.WriteString("  - name: " + n + "\n    ha1: {SHA-256: \"" + h("SHA-256", n+":"+realm+":pw-"+n) + "\"}\n")
	}
	return b.String()
}

func writeUsers(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// logBuf is a concurrency-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func has(u Users, name string) bool {
	_, _, ok := u.Lookup(name, realm)
	return ok
}

func TestReloadUsers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yaml")
	writeUsers(t, path, usersYAML("alice"))
	var logs logBuf
	u, err := WatchUsersFile(path, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: t0}
	u.now = clk.Now
	if !has(u, "alice") || has(u, "carol") || u.Len() != 1 || u.LastError() != nil {
		t.Fatalf("first load: alice %v, len %d, err %v", has(u, "alice"), u.Len(), u.LastError())
	}

	// Changed file: carol appears, alice goes.
	writeUsers(t, path, usersYAML("carol", "dave"))
	if err := u.Reload(); err != nil {
		t.Fatal(err)
	}
	if has(u, "alice") || !has(u, "carol") || !has(u, "dave") || u.Len() != 2 || !u.Loaded().Equal(t0) {
		t.Fatalf("after reload: alice %v carol %v len %d loaded %v", has(u, "alice"), has(u, "carol"), u.Len(), u.Loaded())
	}

	// Broken file: the error names the file, the users stay.
	clk.Add(time.Minute)
	writeUsers(t, path, "users:\n  - name: eve\n    password: hunter2\n")
	err = u.Reload()
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("bad file: err %v, want one naming %s", err, path)
	}
	if !has(u, "carol") || has(u, "eve") || u.Len() != 2 || !u.Loaded().Equal(t0) {
		t.Fatal("bad file replaced the users")
	}
	if !errors.Is(u.LastError(), err) && u.LastError().Error() != err.Error() {
		t.Fatalf("LastError %v, want %v", u.LastError(), err)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "file="+path) {
		t.Fatalf("failure not logged with the file:\n%s", logs.String())
	}

	// Removed file: the users stay.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := u.Reload(); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("removed file: %v", err)
	}
	if !has(u, "carol") || u.Len() != 2 {
		t.Fatal("removed file dropped the users")
	}

	// Back and good: loaded, error cleared.
	writeUsers(t, path, usersYAML("alice"))
	if err := u.Reload(); err != nil || !has(u, "alice") || u.LastError() != nil || !u.Loaded().Equal(t0.Add(time.Minute)) {
		t.Fatalf("recovery: err %v, alice %v, last %v", err, has(u, "alice"), u.LastError())
	}
}

func TestReloadUsersFirstLoadFails(t *testing.T) {
	dir := t.TempDir()
	if _, err := WatchUsersFile(filepath.Join(dir, "missing.yaml"), nil); err == nil {
		t.Fatal("missing file accepted")
	}
	bad := filepath.Join(dir, "bad.yaml")
	writeUsers(t, bad, "users: [")
	if _, err := WatchUsersFile(bad, nil); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("bad file: %v", err)
	}
}

// TestReloadUsersRun drives Run with an injected timer: a change is picked
// up, a broken or removed file keeps the users and is reported once, not
// at every look, and a file replaced by rename is seen even with the same
// size and time.
func TestReloadUsersRun(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users.yaml")
	writeUsers(t, path, usersYAML("alice"))
	var logs logBuf
	u, err := WatchUsersFile(path, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ticks := make(chan time.Time)
	waiting := make(chan time.Duration)
	u.after = func(d time.Duration) <-chan time.Time {
		waiting <- d
		return ticks
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx, 0) }()
	// Run asks for its timer before each wait: when it has, the look
	// before is over and no other runs until the next tick.
	await := func() time.Duration {
		t.Helper()
		select {
		case d := <-waiting:
			return d
		case <-time.After(10 * time.Second):
			t.Fatal("Run is not waiting")
		}
		return 0
	}
	if d := await(); d != DefaultUsersPoll {
		t.Fatalf("interval %v, want default %v", d, DefaultUsersPoll)
	}
	poll := func() {
		t.Helper()
		select {
		case ticks <- time.Time{}:
		case <-time.After(10 * time.Second):
			t.Fatal("Run does not take the tick")
		}
		await()
	}
	// Older mtime for the next writes so that a change is a change even on
	// file systems with coarse timestamps.
	stamp := time.Now().Add(-time.Hour)
	write := func(body string) {
		t.Helper()
		writeUsers(t, path, body)
		stamp = stamp.Add(time.Second)
		if err := os.Chtimes(path, stamp, stamp); err != nil {
			t.Fatal(err)
		}
	}
	errorLines := func() int { return strings.Count(logs.String(), "level=ERROR") }

	write(usersYAML("alice", "carol"))
	poll()
	if !has(u, "carol") {
		t.Fatal("change not picked up")
	}

	write("users: [")
	poll()
	poll()
	poll()
	if !has(u, "carol") || u.LastError() == nil {
		t.Fatal("broken file: users lost or error not kept")
	}
	if n := errorLines(); n != 1 {
		t.Fatalf("broken file logged %d times, want once:\n%s", n, logs.String())
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	poll()
	poll()
	if !has(u, "carol") || !errors.Is(u.LastError(), fs.ErrNotExist) {
		t.Fatalf("removed file: carol %v, err %v", has(u, "carol"), u.LastError())
	}
	if n := errorLines(); n != 2 {
		t.Fatalf("removal logged %d error lines in all, want 2:\n%s", n, logs.String())
	}

	write(usersYAML("alice", "dave"))
	poll()
	if !has(u, "dave") || has(u, "carol") || u.LastError() != nil {
		t.Fatal("recreated file not loaded")
	}

	// Replace by rename with the same size and time: another file.
	next := filepath.Join(dir, "next.yaml")
	writeUsers(t, next, usersYAML("alice", "erin"))
	if err := os.Chtimes(next, stamp, stamp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, path); err != nil {
		t.Fatal(err)
	}
	poll()
	if !has(u, "erin") {
		t.Fatal("renamed-in file with same size and time not picked up")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}
}

// TestReloadUsersInAuth: the layer sees a user added to the file after a
// reload, without being rebuilt.
func TestReloadUsersInAuth(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yaml")
	writeUsers(t, path, usersYAML("alice"))
	u, err := WatchUsersFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *Options) { o.Users = u })
	try := func(user string) sbc.Verdict {
		c := f.challengeFor(t, "INVITE", ruri, alicePeer)
		r := newReq(t, "INVITE", ruri, alicePeer, "",
			"Proxy-Authorization: "+authz(SHA256, user, "pw-"+user, "INVITE", ruri, c, "00000001", "cn"))
		v, _ := f.serve(t, r)
		return v
	}
	if v := try("carol"); v != sbc.Rejected {
		t.Fatalf("carol before reload: %v", v)
	}
	writeUsers(t, path, usersYAML("alice", "carol"))
	if err := u.Reload(); err != nil {
		t.Fatal(err)
	}
	if v := try("carol"); v != sbc.Continue {
		t.Fatalf("carol after reload: %v", v)
	}
}

// TestValidUserName agrees with ParseUsers on every case.
func TestValidUserName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"alice", true},
		{"1001", true},
		{"a.b-c_d+e", true},
		{"ünïcode", true},
		{"", false},
		{`al"ice`, false},
		{`al\ice`, false},
		{"al\rice", false},
		{"al\nice", false},
	} {
		if got := ValidUserName(tc.name); got != tc.ok {
			t.Errorf("ValidUserName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
		q := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\r", `\r`, "\n", `\n`).Replace(tc.name)
		_, err := ParseUsers([]byte("users:\n  - name: \"" + q + "\"\n    ha1: {MD5: \"" + strings.Repeat("0", 32) + "\"}\n"))
		if (err == nil) != tc.ok {
			t.Errorf("ParseUsers(%q): %v, ValidUserName says %v", tc.name, err, tc.ok)
		}
	}
}
