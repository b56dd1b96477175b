package auth

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseUsers(t *testing.T) {
	sha := HashPassword("alice", realm, "pw", SHA256)
	u, err := ParseUsers([]byte("users:\n  - name: alice\n    ha1: {SHA-256: \"" + strings.ToUpper(sha) + "\"}\n  - name: carol\n    ha1: {MD5: \"" + HashPassword("carol", realm, "pw", MD5) + "\"}\n    disabled: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if h, dis, ok := u.Lookup("alice", realm); !ok || dis || h[SHA256] != sha {
		t.Fatalf("alice: %v %v %v", h, dis, ok)
	}
	if _, dis, ok := u.Lookup("carol", realm); !ok || !dis {
		t.Fatal("carol not disabled")
	}
	if _, _, ok := u.Lookup("dave", realm); ok {
		t.Fatal("unknown user found")
	}
	for _, bad := range []string{
		"users:\n  - name: a\n    password: secret\n",
		"users:\n  - name: a\n    ha1: {SHA-1: \"00\"}\n",
		"users:\n  - name: a\n    ha1: {SHA-256: \"00\"}\n",
		"users:\n  - name: a\n",
		"users:\n  - name: \"\"\n    ha1: {MD5: \"" + strings.Repeat("0", 32) + "\"}\n",
		"users:\n  - {name: a, ha1: {MD5: \"" + strings.Repeat("0", 32) + "\"}}\n  - {name: a, ha1: {MD5: \"" + strings.Repeat("0", 32) + "\"}}\n",
	} {
		if _, err := ParseUsers([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// TestNCTableBounded fills the nonce-count table past its cap: it stays
// bounded, and a forgotten nonce is refused rather than replayable.
func TestNCTableBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	tb := newNCTable(4)
	for i := range 10 {
		if r := tb.use(string(rune('a'+i)), int64(i+1), 1, now, time.Hour); r != ncOK {
			t.Fatalf("use %d: %v", i, r)
		}
	}
	if n := tb.len(); n > 4 {
		t.Fatalf("table grew to %d", n)
	}
	if r := tb.use("a", 1, 1, now, time.Hour); r != ncForgot {
		t.Fatalf("forgotten nonce: %v, want refused", r)
	}
}

// TestNCTableOrder: a full table forgets the nonce recorded first, one at
// a time, and those older than the TTL before that; what it still holds
// keeps its count (replays refused), and the table stays bounded over many
// rounds of its recording order being reused.
func TestNCTableOrder(t *testing.T) {
	now := time.Unix(1000, 0)
	tb := newNCTable(3)
	for i, n := range []string{"a", "b", "c"} {
		if r := tb.use(n, int64(i+1), 1, now, time.Hour); r != ncOK {
			t.Fatalf("use %s: %v", n, r)
		}
	}
	if r := tb.use("d", 4, 1, now, time.Hour); r != ncOK {
		t.Fatalf("use d: %v", r)
	}
	if r := tb.use("a", 1, 2, now, time.Hour); r != ncForgot {
		t.Fatalf("a, recorded first: %v, want forgotten", r)
	}
	if r := tb.use("b", 2, 1, now, time.Hour); r != ncReplay {
		t.Fatalf("b replayed: %v, want refused as a replay", r)
	}
	if r := tb.use("b", 2, 2, now, time.Hour); r != ncOK {
		t.Fatalf("b's next count: %v", r)
	}
	// An hour later b, c and d are past the TTL: a new nonce drops them
	// all, not just the first.
	later := now.Add(time.Hour + time.Nanosecond)
	if r := tb.use("e", later.UnixNano(), 1, later, time.Hour); r != ncOK {
		t.Fatalf("use e: %v", r)
	}
	if n := tb.len(); n != 1 {
		t.Fatalf("after expiry the table holds %d, want 1 (e)", n)
	}
	// Many rounds: the queue is reused, the table stays at its cap, and
	// the map and the queue agree.
	tb = newNCTable(100)
	for i := range 20000 {
		tb.use(strconv.Itoa(i), int64(i+1), 1, now, time.Hour)
	}
	if n := tb.len(); n != 100 {
		t.Fatalf("table holds %d, want 100", n)
	}
	if q := len(tb.order) - tb.head; q != 100 || cap(tb.order) > 4096 {
		t.Fatalf("queue holds %d (cap %d), want 100 and a reused array", q, cap(tb.order))
	}
	if r := tb.use("19999", 20000, 2, now, time.Hour); r != ncOK {
		t.Fatalf("the newest nonce's next count: %v", r)
	}
	if r := tb.use("0", 1, 2, now, time.Hour); r != ncForgot {
		t.Fatalf("the oldest nonce: %v, want forgotten", r)
	}
}
