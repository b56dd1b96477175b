// Package procs fits the number of Go processors (GOMAXPROCS) to the
// load: one while the process uses less than most of one CPU, all of them
// when it needs more.
//
// Why: signalling is a stream of small messages, each handed between a few
// goroutines (the reader, the chain, a transaction, the B2BUA). With two
// or more processors and work for one, every hand-off wakes an idle thread
// that takes the new goroutine or spins looking for one and sleeps again:
// at 400 calls/s on a 2-CPU machine that cost a fifth of sipwall's CPU
// (1.54 against 1.22 CPU-s per 1,000 calls, the same build with one
// processor). On one processor a goroutine made runnable waits for the
// running one to block, on the same thread, as a single-process server
// handles its messages. When the load needs more than that one processor
// can give, the controller hands all of them back within an interval.
//
// On one processor the collector's marking shares it with the messages
// (with several it takes an idle one), and each collection delays the
// messages behind it: call setup p99 went from 8 to 16–24 ms at 400
// calls/s. So while the controller runs the collector runs half as often
// (GOGC 200 instead of 100: setup p99 back at 8–12 ms, peak RSS ~240 →
// ~320 MiB at 400 calls/s; 400 gave the same p99 for twice the memory),
// with a soft memory limit at half the memory the process may use (the
// machine's, or its cgroup's) so that the larger heap gives way before
// memory runs short. Not lower: a soft limit under the live heap makes
// the collector run without pause (up to half the CPU), and at half the
// memory it only trims what GOGC 200 adds over the default while the
// live heap is under a quarter of it (the default's peak is twice the
// live heap). Both are set once, at Start, not per mode:
// going back to GOGC 100 as the load rises would find the heap past its
// new goal, and the collector would start at once with every allocating
// goroutine assisting it, just when the messages need the processors.
//
// It stays off when GOMAXPROCS is set in the environment (the operator's
// choice) or when the machine gives the process one processor anyway;
// GOGC or GOMEMLIMIT in the environment keep the collector's settings
// as they are.
package procs

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// Options tune the controller; the zero value is the default.
type Options struct {
	// Wide is the number of processors under load; 0: the runtime's
	// choice at start (the CPUs, or the container's CPU limit).
	Wide int
	// Interval is how often the CPU the process used is read (1 s).
	Interval time.Duration
	// Widen: on one processor, an interval in which the process used
	// more than this share of one CPU gives it all of them (0.8).
	Widen float64
	// Narrow: with all processors, Hold intervals in a row in which the
	// process used less than this many CPUs go back to one (0.7, 5).
	// One processor is no dearer per message than several (here 20 %
	// cheaper, see the package comment), so what used under 0.7 CPUs
	// wide uses under Widen narrow, and what needs more than Widen
	// narrow uses more than Narrow wide: the two do not chase each other.
	Narrow float64
	Hold   int
	// GOGC is the collector's percentage while the controller runs
	// (200); -1 keeps the collector as it is. MemoryLimit is the soft
	// memory limit then (0: half of the machine's or the cgroup's
	// memory; none if unknown).
	GOGC        int
	MemoryLimit int64
	Log         *slog.Logger

	// cpu reads the process's CPU time (user and system); set reads and
	// sets GOMAXPROCS; gc and limit set GOGC and the memory limit and
	// return the values before. Tests replace them.
	cpu   func() (time.Duration, bool)
	set   func(int) int
	gc    func(int) int
	limit func(int64) int64
}

func (o *Options) defaults() {
	if o.set == nil {
		o.set = runtime.GOMAXPROCS
	}
	if o.cpu == nil {
		o.cpu = processCPU
	}
	if o.Wide <= 0 {
		o.Wide = o.set(0)
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Widen <= 0 {
		o.Widen = 0.8
	}
	if o.Narrow <= 0 {
		o.Narrow = 0.7
	}
	if o.Hold <= 0 {
		o.Hold = 5
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.gc == nil {
		o.gc = debug.SetGCPercent
	}
	if o.limit == nil {
		o.limit = debug.SetMemoryLimit
	}
	if o.GOGC == 0 {
		o.GOGC = 200
	}
	if _, set := os.LookupEnv("GOGC"); set {
		o.GOGC = -1
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); set {
		o.GOGC = -1
	}
	if o.MemoryLimit == 0 {
		if m := memoryAvailable(); m > 0 {
			o.MemoryLimit = m / 2
		}
	}
}

// Controller is a running controller.
type Controller struct {
	o      Options
	narrow bool // one processor now
	low    int  // intervals in a row below Narrow, while wide
	// loggedAt is when a change was last logged at info level: the
	// changes of a load near the thresholds are logged once a minute
	// (at debug level in between), not every few seconds.
	loggedAt time.Time
	// wideGC and wideLimit are the collector's settings before Start,
	// restored when the controller ends.
	wideGC    int
	wideLimit int64
}

// Stats tells what the controller of the process did: Narrowed and
// Widened count the changes to one processor and back to all of them;
// Narrow tells whether the process runs on one now.
type Stats struct {
	Running           bool
	Narrow            bool
	Narrowed, Widened int64
}

var stats struct {
	narrow            atomic.Bool
	narrowed, widened atomic.Int64
}

// Read returns the controller's counters (they add up over the
// controllers the process ran).
func Read() Stats {
	return Stats{Running: running.Load(), Narrow: stats.narrow.Load(), Narrowed: stats.narrowed.Load(), Widened: stats.widened.Load()}
}

// wideProcs is the processors the process may use under load, for pools sized
// by them (Max); 0 while no controller runs.
var wideProcs atomic.Int64

// Max is how many processors the process may use under load: the
// controller's Wide while one runs, GOMAXPROCS otherwise. Pools sized once
// for the process's parallelism (the media relay's readers) use it rather
// than GOMAXPROCS, which reads 1 while the load is low.
func Max() int {
	if n := wideProcs.Load(); n > 0 {
		return int(n)
	}
	return runtime.GOMAXPROCS(0)
}

// Enabled tells whether the controller should run: GOMAXPROCS is not set
// in the environment and the process has more than one processor.
func Enabled() bool {
	_, set := os.LookupEnv("GOMAXPROCS")
	_, ok := processCPU()
	return !set && ok && runtime.GOMAXPROCS(0) > 1
}

// running is set while a controller runs: GOMAXPROCS is the process's,
// so there is one controller at most (several nodes in one test binary
// share it).
var running atomic.Bool

// Start runs a controller until ctx ends, then gives the process all its
// processors back. It starts wide, and the first quiet interval makes it
// narrow: Hold quiet intervals in a row are asked only after a widening,
// against going back and forth. If a controller runs already, it returns
// nil and starts none.
func Start(ctx context.Context, o Options) *Controller {
	if !running.CompareAndSwap(false, true) {
		return nil
	}
	o.defaults()
	c := newController(o)
	wideProcs.Store(int64(o.Wide))
	c.collectorSet()
	go c.run(ctx)
	return c
}

// newController is a controller as it starts: wide, one quiet interval
// from narrow.
func newController(o Options) *Controller {
	return &Controller{o: o, low: o.Hold - 1}
}

// collectorSet makes the collector run less often while the controller
// runs; collectorBack restores it.
func (c *Controller) collectorSet() {
	if c.o.GOGC <= 0 {
		return
	}
	// The limit first: the larger heap the percentage allows is
	// bounded from the start.
	if c.o.MemoryLimit > 0 {
		c.wideLimit = c.o.limit(c.o.MemoryLimit)
	}
	c.wideGC = c.o.gc(c.o.GOGC)
}

func (c *Controller) collectorBack() {
	if c.o.GOGC <= 0 {
		return
	}
	c.o.gc(c.wideGC)
	if c.o.MemoryLimit > 0 {
		c.o.limit(c.wideLimit)
	}
}

func (c *Controller) run(ctx context.Context) {
	t := time.NewTicker(c.o.Interval)
	defer t.Stop()
	defer func() {
		if c.narrow {
			c.widen()
		}
		c.collectorBack()
		wideProcs.Store(0)
		running.Store(false)
	}()
	last, ok := c.o.cpu()
	if !ok {
		return
	}
	lastAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			used, ok := c.o.cpu()
			if !ok {
				return
			}
			wall := now.Sub(lastAt)
			if wall <= 0 {
				continue
			}
			c.step(float64(used-last) / float64(wall))
			last, lastAt = used, now
		}
	}
}

// step takes the CPUs the process used over the last interval (1.0: one
// CPU busy the whole interval) and sets GOMAXPROCS for the next.
func (c *Controller) step(cpus float64) {
	switch {
	case c.narrow && cpus > c.o.Widen:
		c.low = 0
		c.widen()
		stats.widened.Add(1)
		c.logChange("processors: all of them, the load needs more than one", "gomaxprocs", c.o.Wide, "cpus_used", cpus)
	case !c.narrow && cpus < c.o.Narrow:
		c.low++
		if c.low >= c.o.Hold {
			c.low = 0
			c.narrowDown()
			stats.narrowed.Add(1)
			c.logChange("processors: one, the load fits in one CPU", "gomaxprocs", 1, "cpus_used", cpus)
		}
	case !c.narrow:
		c.low = 0
	}
}

// logChange logs a change: at info level once a minute at
// most, at debug level otherwise.
func (c *Controller) logChange(msg string, args ...any) {
	st := Read()
	args = append(args, "changes", st.Narrowed+st.Widened)
	if now := time.Now(); c.loggedAt.IsZero() || now.Sub(c.loggedAt) >= time.Minute {
		c.loggedAt = now
		c.o.Log.Info(msg, args...)
		return
	}
	c.o.Log.Debug(msg, args...)
}

// narrowDown goes to one processor.
func (c *Controller) narrowDown() {
	c.narrow = true
	stats.narrow.Store(true)
	c.o.set(1)
}

// widen gives the process all its processors.
func (c *Controller) widen() {
	c.narrow = false
	stats.narrow.Store(false)
	c.o.set(c.o.Wide)
}
