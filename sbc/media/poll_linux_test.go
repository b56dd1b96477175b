//go:build linux

package media

import (
	"fmt"
	"runtime"
	"testing"
)

// relayGoroutines is how many goroutines the relay runs for streams live
// streams: its poller's workers while there is any stream, whatever their
// number.
func relayGoroutines(m *Manager, streams int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.poll.p != nil {
		return len(m.poll.p.workers)
	}
	if m.poll.err != nil {
		return 4 * streams
	}
	return 0
}

// TestPollerMemoryPerCall: with the sockets polled, a call's relay state
// (one audio stream: four sockets, both pools) stays within 16 KiB of
// heap, and no goroutine comes with it.
func TestPollerMemoryPerCall(t *testing.T) {
	const calls = 200
	m := newTestManager(t, withPairs(t, calls+4))
	setupCall(t, m, "first") // the poller and its buffers, made once
	base := settledGoroutines()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range calls {
		c := setupCall(t, m, fmt.Sprint("call-", i))
		c.phone.conn.Close() // the test's own sockets are not the relay's
		c.pbx.conn.Close()
		c.phoneC.conn.Close()
		c.pbxC.conn.Close()
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / calls
	t.Logf("%d B of heap per call with media, %d relay goroutines", per, relayGoroutines(m, calls+1))
	if per > 16<<10 {
		t.Errorf("%d B of heap per call, want at most 16 KiB", per)
	}
	if n := settledGoroutines(); n != base {
		t.Errorf("%d goroutines after %d more calls, %d before", n, calls, base)
	}
}
