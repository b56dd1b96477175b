package auth

import (
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
