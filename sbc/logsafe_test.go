package sbc

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestSafeHandlerQuotesAndTruncates(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(SafeHandler(slog.NewTextHandler(&buf, nil), 0, nil))
	evil := "INVITE sip:x SIP/2.0\r\nX: \x00\x1b[31m" + strings.Repeat("A", 500)
	log.Error("failed to parse", "data", evil, "error", errors.New("bad\nline"))
	out := buf.String()
	if strings.ContainsAny(out[:len(out)-1], "\r\x00\x1b") || strings.Count(out, "\n") != 1 {
		t.Fatalf("raw control bytes reached the log: %q", out)
	}
	if strings.Contains(out, strings.Repeat("A", 200)) || !strings.Contains(out, "bytes)") {
		t.Fatalf("long value not truncated: %q", out)
	}
}

func TestSafeHandlerRateLimits(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(0, 0)
	log := slog.New(SafeHandler(slog.NewTextHandler(&buf, nil), 2, func() time.Time { return now }))
	for i := 0; i < 10; i++ {
		log.Warn("flood")
	}
	if got := strings.Count(buf.String(), "msg=flood"); got != 2 {
		t.Fatalf("%d lines in the first second, want 2", got)
	}
	now = now.Add(time.Second)
	log.Warn("flood")
	if !strings.Contains(buf.String(), "suppressed=8") {
		t.Fatalf("suppressed count missing: %q", buf.String())
	}
	log.Warn("other")
	if !strings.Contains(buf.String(), "msg=other") {
		t.Fatal("a different message was limited by the first one's bucket")
	}
}
