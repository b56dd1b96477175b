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
