//go:build unix

package main

import (
	"bytes"
	"log/slog"
	"strings"
	"syscall"
	"testing"

	"github.com/sipwall/sipwall/sbc/config"
)

// TestCheckDescriptors: the soft descriptor limit goes up to the hard
// one, and a relay range larger than the limit leaves is warned about.
func TestCheckDescriptors(t *testing.T) {
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig)
	if orig.Max < 2048 {
		t.Skipf("hard descriptor limit %d: too low to lower the soft one for the test", orig.Max)
	}
	low := orig
	low.Cur = 1024
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cfg := config.Default()
	cfg.Media.PortMin, cfg.Media.PortMax = 40000, 40099 // 200 sockets at most
	checkDescriptors(cfg, log)
	var now syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now); err != nil {
		t.Fatal(err)
	}
	if now.Cur != orig.Max {
		t.Fatalf("soft limit %d after the check, want the hard limit %d", now.Cur, orig.Max)
	}
	if logs.Len() != 0 {
		t.Fatalf("warned for a small range:\n%s", logs.String())
	}
	// A range beyond the hard limit: raised to what it needs where the
	// process may (root), else warned about.
	cfg.Media.PortMin, cfg.Media.PortMax = 1024, 65535
	checkDescriptors(cfg, log)
	const need = 2*64512 + 1024
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now); err != nil {
		t.Fatal(err)
	}
	warned := strings.Contains(logs.String(), "needs more descriptors than the limit leaves")
	switch {
	case now.Cur >= need && warned:
		t.Fatalf("limit raised to %d and warned all the same:\n%s", now.Cur, logs.String())
	case now.Cur < need && !warned:
		t.Fatalf("limit %d for a range of %d ports per side, and no warning:\n%s", now.Cur, 64512, logs.String())
	}
	t.Logf("limit for %d relay sockets: %d (warned: %v)", need-1024, now.Cur, warned)
}
