package policy

import (
	"sync"
	"sync/atomic"
	"time"
)

// counters are the engine's and layer's counts, read by Status.
type counters struct {
	allows, denies, shadowDenies, redirects atomic.Uint64
	errors, timeouts                        atomic.Uint64
	reloadsOK, reloadsFailed                atomic.Uint64
	bans, logsDropped                       atomic.Uint64
	latency                                 latency
}

// LatencyBounds are the upper bounds of the decision time histogram's
// buckets (Stats.Latency), around the 50 µs target of a decision.
var LatencyBounds = [...]time.Duration{
	5 * time.Microsecond, 10 * time.Microsecond, 20 * time.Microsecond, 35 * time.Microsecond,
	50 * time.Microsecond, 75 * time.Microsecond, 100 * time.Microsecond, 200 * time.Microsecond,
	500 * time.Microsecond, time.Millisecond, 5 * time.Millisecond, 50 * time.Millisecond,
}

// latency counts decision times per bucket of LatencyBounds (the last
// slot: beyond them) and their sum.
type latency struct {
	n   [len(LatencyBounds) + 1]atomic.Uint64
	sum atomic.Int64 // ns
}

func (l *latency) observe(d time.Duration) {
	i := 0
	for i < len(LatencyBounds) && d > LatencyBounds[i] {
		i++
	}
	l.n[i].Add(1)
	l.sum.Add(int64(d))
}

// Latency is a snapshot of the decision time histogram: Counts[i] the
// decisions that took at most LatencyBounds[i] and more than the bound
// before it, the last one those beyond every bound.
type Latency struct {
	Counts [len(LatencyBounds) + 1]uint64
	Sum    time.Duration
}

// Quantile is the upper bound of the bucket holding quantile q (0..1) of
// the decisions, 0 without any; beyond the last bound it reports that
// bound.
func (l Latency) Quantile(q float64) time.Duration {
	var total uint64
	for _, c := range l.Counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	want := uint64(q*float64(total) + 0.5)
	var seen uint64
	for i, c := range l.Counts {
		seen += c
		if seen >= want && i < len(LatencyBounds) {
			return LatencyBounds[i]
		}
	}
	return LatencyBounds[len(LatencyBounds)-1]
}

// Status is what the engine has loaded and done.
type Status struct {
	Version   string    // hash of the loaded files (names and contents)
	Loaded    time.Time // when the loaded version was built
	Tests     int       // Rego tests the loaded version passed
	LastError error     // last failed reload, nil after a good one
	Stats     Stats
}

// Stats are monotonic counts since New.
type Stats struct {
	Allows        uint64 // decisions that allowed
	Denies        uint64 // decisions that denied (enforced or shadow)
	ShadowDenies  uint64 // denials not enforced because of shadow mode
	Redirects     uint64 // 302 answers sent
	Errors        uint64 // evaluations failed (error, undefined, malformed)
	Timeouts      uint64 // evaluations that ran out of time
	Bans          uint64 // bans passed to Options.Ban
	ReloadsOK     uint64
	ReloadsFailed uint64
	LogsDropped   uint64 // deny log lines over the rate limit
	// Latency is how long decisions took (input to decision, evaluation
	// errors and timeouts included).
	Latency Latency
}

// Status returns the loaded version and the counters.
func (e *Engine) Status() Status {
	c := e.cur.Load()
	st := Status{Version: c.version, Loaded: c.loaded, Tests: c.tests}
	if b := e.lastErr.Load(); b != nil {
		st.LastError = b.err
	}
	st.Stats = Stats{
		Allows:        e.c.allows.Load(),
		Denies:        e.c.denies.Load(),
		ShadowDenies:  e.c.shadowDenies.Load(),
		Redirects:     e.c.redirects.Load(),
		Errors:        e.c.errors.Load(),
		Timeouts:      e.c.timeouts.Load(),
		Bans:          e.c.bans.Load(),
		ReloadsOK:     e.c.reloadsOK.Load(),
		ReloadsFailed: e.c.reloadsFailed.Load(),
		LogsDropped:   e.c.logsDropped.Load(),
	}
	for i := range st.Stats.Latency.Counts {
		st.Stats.Latency.Counts[i] = e.c.latency.n[i].Load()
	}
	st.Stats.Latency.Sum = time.Duration(e.c.latency.sum.Load())
	return st
}

// limiter is a token bucket of n per second on an injected clock.
type limiter struct {
	mu     sync.Mutex
	n      float64
	tokens float64
	last   time.Time
	now    func() time.Time
}

func newLimiter(perSecond int, now func() time.Time) *limiter {
	return &limiter{n: float64(perSecond), tokens: float64(perSecond), now: now}
}

func (l *limiter) allow() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.now()
	if !l.last.IsZero() {
		l.tokens += t.Sub(l.last).Seconds() * l.n
		if l.tokens > l.n {
			l.tokens = l.n
		}
	}
	l.last = t
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}
