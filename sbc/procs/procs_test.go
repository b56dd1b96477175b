package procs

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"
)

// fakeProcs records what the controller sets GOMAXPROCS, GOGC and the
// memory limit to.
type fakeProcs struct {
	mu    sync.Mutex
	n     int
	log   []int
	gogc  int
	limit int64
}

func (f *fakeProcs) setGC(p int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.gogc
	f.gogc = p
	return old
}

func (f *fakeProcs) setLimit(l int64) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.limit
	if l >= 0 {
		f.limit = l
	}
	return old
}

func (f *fakeProcs) collector() (int, int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gogc, f.limit
}

// options are the controller's options with every setting faked by f.
func (f *fakeProcs) options(o Options) Options {
	o.set, o.gc, o.limit = f.set, f.setGC, f.setLimit
	if o.cpu == nil {
		o.cpu = func() (time.Duration, bool) { return 0, true }
	}
	return o
}

func (f *fakeProcs) set(n int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.n
	if n > 0 {
		f.n = n
		f.log = append(f.log, n)
	}
	return old
}

func (f *fakeProcs) now() (int, []int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n, append([]int(nil), f.log...)
}

func newStepper(t *testing.T) (*Controller, *fakeProcs) {
	t.Helper()
	f := &fakeProcs{n: 4, gogc: 100, limit: 1 << 62}
	o := f.options(Options{MemoryLimit: 1 << 30})
	o.defaults()
	return &Controller{o: o}, f
}

// TestStep: wide at first; Hold quiet intervals in a row make it one
// processor, a busy one in between starts the count again; the first
// interval over Widen on one processor gives all of them back; loads
// between the thresholds change nothing either way.
func TestStep(t *testing.T) {
	c, f := newStepper(t)
	var logged logCount
	c.o.Log = slog.New(&logged)
	before := Read()
	if c.o.Wide != 4 || c.o.Hold != 5 {
		t.Fatalf("defaults: wide %d, hold %d", c.o.Wide, c.o.Hold)
	}
	for range 4 {
		c.step(0.1)
	}
	c.step(0.75) // between the thresholds: not quiet
	for range 4 {
		c.step(0.6)
	}
	if n, _ := f.now(); n != 4 {
		t.Fatalf("after 4 quiet intervals, a busy one, 4 quiet: GOMAXPROCS %d, want 4 (still wide)", n)
	}
	c.step(0.2)
	if n, _ := f.now(); n != 1 {
		t.Fatalf("after 5 quiet intervals in a row: GOMAXPROCS %d, want 1", n)
	}
	if g, l := f.collector(); g != 100 || l != 1<<62 {
		t.Errorf("on one processor: GOGC %d, memory limit %d; the mode changed them (Start sets them once)", g, l)
	}
	for range 50 {
		c.step(0.75) // busy, but one processor keeps up
	}
	if n, _ := f.now(); n != 1 {
		t.Fatalf("at 0.75 CPUs on one processor: GOMAXPROCS %d, want 1", n)
	}
	c.step(0.9)
	if n, _ := f.now(); n != 4 {
		t.Fatalf("at 0.9 CPUs on one processor: GOMAXPROCS %d, want 4", n)
	}
	if g, l := f.collector(); g != 100 || l != 1<<62 {
		t.Errorf("wide again: GOGC %d, memory limit %d; the mode changed them", g, l)
	}
	for range 50 {
		c.step(0.9) // what needed the second processor
	}
	if n, log := f.now(); n != 4 || len(log) != 2 {
		t.Fatalf("GOMAXPROCS %d, set %v; want 4 after [1 4]", n, log)
	}
	after := Read()
	if after.Narrowed-before.Narrowed != 1 || after.Widened-before.Widened != 1 || after.Narrow {
		t.Errorf("Read: %+v after %+v, want one change each way and wide now", after, before)
	}
	// Within a minute only the first change is logged at info level.
	if info, debug := logged.counts(); info != 1 || debug != 1 {
		t.Errorf("logged %d changes at info level and %d at debug, want 1 and 1", info, debug)
	}
}

// logCount is a slog handler that counts records by level.
type logCount struct {
	mu          sync.Mutex
	info, debug int
}

func (h *logCount) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCount) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.Level >= slog.LevelInfo {
		h.info++
	} else {
		h.debug++
	}
	return nil
}
func (h *logCount) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logCount) WithGroup(string) slog.Handler      { return h }

func (h *logCount) counts() (int, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.info, h.debug
}

// TestFirstQuietIntervalNarrows: a controller as Start makes it goes to
// one processor at the first quiet interval (nothing to go back and
// forth from yet); after a widening it asks Hold quiet intervals again.
func TestFirstQuietIntervalNarrows(t *testing.T) {
	f := &fakeProcs{n: 4, gogc: 100, limit: 1 << 62}
	o := f.options(Options{MemoryLimit: 1 << 30})
	o.defaults()
	c := newController(o)
	c.step(0.9) // busy at start: stays wide, the count starts again
	if n, _ := f.now(); n != 4 {
		t.Fatalf("busy first interval: GOMAXPROCS %d, want 4", n)
	}
	for range o.Hold - 1 {
		c.step(0.1)
	}
	if n, _ := f.now(); n != 4 {
		t.Fatalf("after a busy interval, %d quiet: GOMAXPROCS %d, want 4", o.Hold-1, n)
	}
	c = newController(o)
	c.step(0.1)
	if n, _ := f.now(); n != 1 {
		t.Fatalf("quiet first interval: GOMAXPROCS %d, want 1", n)
	}
	c.step(0.95)
	for range o.Hold - 1 {
		c.step(0.1)
	}
	if n, _ := f.now(); n != 4 {
		t.Fatalf("after a widening, %d quiet intervals: GOMAXPROCS %d, want 4 (Hold %d)", o.Hold-1, n, o.Hold)
	}
	c.step(0.1)
	if n, _ := f.now(); n != 1 {
		t.Fatalf("after a widening, %d quiet intervals: GOMAXPROCS %d, want 1", o.Hold, n)
	}
}

// TestStartRunsAndRestores: a running controller reads the CPU time each
// interval, goes to one processor when the process is quiet, and gives
// all of them back when its context ends; Max says the wide count while
// it runs.
func TestStartRunsAndRestores(t *testing.T) {
	f := &fakeProcs{n: 3, gogc: 100, limit: 1 << 62}
	var mu sync.Mutex
	var used time.Duration
	cpu := func() (time.Duration, bool) {
		mu.Lock()
		defer mu.Unlock()
		return used, true
	}
	ctx, cancel := context.WithCancel(context.Background())
	before := Read()
	c := Start(ctx, f.options(Options{Interval: 5 * time.Millisecond, Hold: 3, MemoryLimit: 1 << 30, cpu: cpu}))
	if c == nil {
		t.Fatal("Start: nil")
	}
	if g, l := f.collector(); g != 200 || l != 1<<30 {
		t.Errorf("after Start: GOGC %d, memory limit %d; want 200, %d", g, l, 1<<30)
	}
	if Start(ctx, f.options(Options{cpu: cpu})) != nil {
		t.Error("a second controller started while one runs")
	}
	if Max() != 3 {
		t.Errorf("Max while running: %d, want 3", Max())
	}
	waitProcs(t, f, 1, "a quiet process")
	// Busy: a whole CPU per interval and more.
	mu.Lock()
	used += time.Hour
	mu.Unlock()
	waitProcs(t, f, 3, "a busy process")
	// Quiet again, then stopped while on one processor.
	waitProcs(t, f, 1, "quiet again")
	cancel()
	waitProcs(t, f, 3, "after the end")
	for deadline := time.Now().Add(10 * time.Second); Max() != runtime.GOMAXPROCS(0); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after the end: Max %d, want GOMAXPROCS", Max())
		}
	}
	if g, l := f.collector(); g != 100 || l != 1<<62 {
		t.Errorf("after the end: GOGC %d, memory limit %d; want 100, %d again", g, l, int64(1<<62))
	}
	if st := Read(); st.Narrowed-before.Narrowed < 2 || st.Widened-before.Widened < 1 || st.Narrow {
		t.Errorf("Read after the end: %+v (before %+v), want 2 changes to one and 1 to all at least, wide", st, before)
	}
}

// TestEnabledHonoursEnvironment: GOMAXPROCS set by the operator turns the
// controller off.
func TestEnabledHonoursEnvironment(t *testing.T) {
	t.Setenv("GOMAXPROCS", "2")
	if Enabled() {
		t.Error("Enabled with GOMAXPROCS set in the environment")
	}
}

// TestCollectorLeftToEnvironment: GOGC or GOMEMLIMIT set by the operator
// keep the collector's settings.
func TestCollectorLeftToEnvironment(t *testing.T) {
	for _, env := range []string{"GOGC", "GOMEMLIMIT"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv(env, map[string]string{"GOGC": "150", "GOMEMLIMIT": "1GiB"}[env])
			f := &fakeProcs{n: 2, gogc: 150, limit: 1 << 30}
			o := f.options(Options{Hold: 1})
			o.defaults()
			c := &Controller{o: o}
			c.collectorSet()
			c.step(0.1)
			if n, _ := f.now(); n != 1 {
				t.Fatalf("GOMAXPROCS %d, want 1", n)
			}
			if g, l := f.collector(); g != 150 || l != 1<<30 {
				t.Errorf("GOGC %d, memory limit %d: changed", g, l)
			}
		})
	}
}

// TestMemoryAvailable: the machine's memory is read (Linux).
func TestMemoryAvailable(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/meminfo: Linux only")
	}
	if m := memoryAvailable(); m < 64<<20 {
		t.Errorf("memory available %d bytes: want the machine's (at least 64 MiB)", m)
	}
}

// waitProcs waits up to 10 s for f's GOMAXPROCS to become want.
func waitProcs(t *testing.T, f *fakeProcs, want int, what string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		n, _ := f.now()
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: GOMAXPROCS %d after 10 s, want %d", what, n, want)
		}
	}
}
