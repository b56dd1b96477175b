//go:build linux

package media

import (
	"errors"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"
)

// Out of descriptors, a bind fails for every port alike: alloc must stop
// at the first such failure instead of trying the whole range under the
// Manager's lock (which once kept a loaded SBC busy for minutes).
func TestAllocStopsWhenOutOfDescriptors(t *testing.T) {
	first, _ := freeRange(t, 500)
	p := newPortPool(netip.MustParseAddr("127.0.0.1"), first, 500)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	// Room for one pair (and the ReadDir above), not two.
	low := lim
	low.Cur = uint64(len(fds) + 3)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)

	var got error
	var held int
	start := time.Now()
	for range 5 {
		rtp, rtcp, _, err := p.alloc(time.Now())
		if err != nil {
			got = err
			break
		}
		held++
		defer rtp.Close()
		defer rtcp.Close()
	}
	if !errors.Is(got, syscall.EMFILE) {
		t.Fatalf("alloc with no descriptor left: %v after %d pairs, want EMFILE", got, held)
	}
	if p.bindFailures > 1 {
		t.Errorf("alloc tried %d binds after running out of descriptors, want it to stop at the first", p.bindFailures)
	}
	t.Logf("%d pair(s) bound, then EMFILE after %s", held, time.Since(start))
}
