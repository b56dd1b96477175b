package b2bua_test

import (
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc/siptest"
)

// TestNoGoroutineLeak runs many sequential calls and checks that, once
// their transactions have expired, the goroutine count is back where it
// started. Not parallel: other tests' goroutines would blur the count (the
// parallel tests only start after the sequential ones are done).
func TestNoGoroutineLeak(t *testing.T) {
	const calls = 200
	const margin = 5
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	caller.Quiet, pbx.Quiet = true, true
	h := startSBC(t, withUpstream("pbx", pbx, 1))

	base := runtime.NumGoroutine()
	deadline := time.Now().Add(40 * time.Second)
	for i := range calls {
		if time.Now().After(deadline) {
			t.Fatalf("only %d calls done within the time budget", i)
		}
		establish(t, h, caller, pbx).hangup(t)
	}
	h.waitIdle(t)
	peak := runtime.NumGoroutine()
	// Finished transactions linger for 64*T1 (Timers L, J, H); give them
	// that and some slack.
	var n int
	ok := false
	limit := time.Now().Add(64*testT1 + 5*time.Second)
	for time.Now().Before(limit) {
		if n = runtime.NumGoroutine(); n <= base+margin {
			ok = true
			break
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	if !ok {
		var sb strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&sb, 1)
		t.Fatalf("%d goroutines after %d calls, baseline %d (margin %d)\n%s", n, calls, base, margin, sb.String())
	}
	t.Logf("goroutines: baseline %d, right after the calls %d, settled %d", base, peak, n)
	if got := h.B2B.Stats().Answered.Load(); got != calls {
		t.Errorf("Stats.Answered = %d, want %d", got, calls)
	}
}
