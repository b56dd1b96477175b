package siptest

import (
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/emiago/sipgo/sip"
)

// ShortTimers shrinks sipgo's transaction timers for a test binary (call
// it from TestMain) so 64×T1 waits take a fraction of a second.
func ShortTimers(t1, t2, t4 time.Duration) {
	sip.SetTimers(t1, t2, t4)
	// Timer D is not derived from T1 by SetTimers.
	sip.Timer_D = 64 * t1
	// Timer M is T1, as package sbc sets it for the process (client.go).
	sip.Timer_M = t1
}

// Logger discards logs unless SIPWALL_TEST_LOG is set (to see the SBC's
// side of a failing test).
func Logger() *slog.Logger {
	if os.Getenv("SIPWALL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
