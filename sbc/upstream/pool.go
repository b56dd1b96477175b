// Package upstream is the set of internal PBXs and proxies the B2BUA forwards
// to: parsing of their configuration, selection order for failover, active
// (SIP OPTIONS) and passive health tracking, and the stats about it.
package upstream

import (
	"cmp"
	"context"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Names under which the counters of Stats are to be exported.
const (
	MetricChecksTotal       = "sipwall_upstream_checks_total"
	MetricFailuresTotal     = "sipwall_upstream_failures_total"
	MetricStateChangesTotal = "sipwall_upstream_state_changes_total"
)

// Defaults applied by New to zero Options fields. They match the defaults of
// the health section of the configuration.
const (
	DefaultHealthTimeout = 2 * time.Second
	DefaultFailures      = 3
	DefaultSuccesses     = 2
)

// Pinger performs one active health check.
type Pinger interface {
	// Ping sends a SIP OPTIONS to t and returns the status of the final
	// response. It must give up when ctx is done and then return an error.
	Ping(ctx context.Context, t Target) (status int, err error)
}

// Options configures a Pool.
type Options struct {
	// HealthInterval is the time between two checks of one target.
	// Zero disables active checks; passive marks still apply.
	HealthInterval time.Duration
	// HealthTimeout bounds one check. Zero means DefaultHealthTimeout.
	HealthTimeout time.Duration
	// Failures in a row mark an up target down. Zero means DefaultFailures.
	Failures int
	// Successes in a row mark a down target up. Zero means DefaultSuccesses.
	Successes int
	// Pinger performs active checks. Without one, active checks are off.
	Pinger Pinger
	// Logger receives state changes. Nil means slog.Default().
	Logger *slog.Logger
	// Rand returns a uniform int in [0, n). Nil means math/rand/v2.IntN.
	// Injectable so tests get deterministic orders; calls are serialized by
	// the pool, so it need not be safe for concurrent use.
	Rand func(n int) int
}

// TargetStatus is a snapshot of one target's health, for the admin API.
type TargetStatus struct {
	Name string         `json:"name"`
	Addr netip.AddrPort `json:"addr"`
	Up   bool           `json:"up"`
	// ConsecutiveFails counts failures in a row, from checks and from Mark.
	ConsecutiveFails int `json:"consecutive_fails"`
	// LastCheck is when the last active check completed; zero if none yet.
	LastCheck time.Time `json:"last_check"`
	// LastError describes why the last active check failed; empty if it
	// succeeded.
	LastError string `json:"last_error"`
}

// Stats are pool-wide counters, monotonic over the pool's life.
type Stats struct {
	// ChecksTotal counts completed active checks.
	ChecksTotal uint64
	// FailuresTotal counts failure observations: failed active checks and
	// Mark(name, false) calls.
	FailuresTotal uint64
	// StateChangesTotal counts up->down and down->up transitions.
	StateChangesTotal uint64
}

// member is a target plus its mutable health state, guarded by Pool.mu.
type member struct {
	t Target // immutable after New

	up bool
	// answered: a check or a call found the target alive since start.
	answered  bool
	fails     int // consecutive failures
	succ      int // consecutive successes
	lastCheck time.Time
	lastErr   string
}

// Pool is the set of upstream targets with their health. It is safe for
// concurrent use.
type Pool struct {
	interval  time.Duration
	timeout   time.Duration
	failures  int
	successes int
	pinger    Pinger
	log       *slog.Logger
	now       func() time.Time // replaceable by tests

	randMu sync.Mutex // serializes calls to rand
	rand   func(n int) int

	members []*member // config order; the slice itself never changes
	byName  map[string]*member
	byAddr  map[netip.Addr]*member

	mu sync.Mutex // guards the health fields of members

	checks  atomic.Uint64
	fails   atomic.Uint64
	changes atomic.Uint64
	running atomic.Bool
}

// New builds a pool. Targets start up: before the first check there is no
// reason to refuse calls. Names must be unique; a later target reusing a name
// is ignored with a warning because Mark could not tell the two apart.
// A weight below 1 counts as 1 and an empty transport as udp.
func New(targets []Target, opts Options) *Pool {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	p := &Pool{
		interval:  opts.HealthInterval,
		timeout:   opts.HealthTimeout,
		failures:  opts.Failures,
		successes: opts.Successes,
		pinger:    opts.Pinger,
		log:       log.With("component", "upstream"),
		now:       time.Now,
		rand:      opts.Rand,
		byName:    make(map[string]*member, len(targets)),
		byAddr:    make(map[netip.Addr]*member, len(targets)),
	}
	if p.timeout <= 0 {
		p.timeout = DefaultHealthTimeout
	}
	if p.failures <= 0 {
		p.failures = DefaultFailures
	}
	if p.successes <= 0 {
		p.successes = DefaultSuccesses
	}
	if p.rand == nil {
		p.rand = rand.IntN
	}

	for _, t := range targets {
		if _, dup := p.byName[t.Name]; dup {
			p.log.Warn("duplicate upstream name ignored", "upstream", t.Name, "addr", t.Addr)
			continue
		}
		t = t.clone()
		if t.Weight < 1 {
			t.Weight = 1
		}
		if t.Transport == "" {
			t.Transport = "udp"
		}
		m := &member{t: t, up: true}
		p.members = append(p.members, m)
		p.byName[t.Name] = m
		if a := t.Addr.Addr().Unmap(); a.IsValid() {
			// First target wins so Lookup is stable when upstreams share a host.
			if _, ok := p.byAddr[a]; !ok {
				p.byAddr[a] = m
			}
		}
	}
	return p
}

// Candidates returns the targets to try for a new request, best first: by
// priority ascending, and within one priority in a weighted random order
// (a target's chance to come first is its weight over the group's total).
// Down targets are left out. If every target is down, all of them are
// returned in the same order: health checks can be wrong or stale, and trying
// a possibly dead upstream is better than refusing every call. The result is
// a fresh slice of copies; nil if the pool is empty.
func (p *Pool) Candidates() []Target {
	p.mu.Lock()
	out := make([]Target, 0, len(p.members))
	for _, m := range p.members {
		if m.up {
			out = append(out, m.t)
		}
	}
	if len(out) == 0 {
		for _, m := range p.members {
			out = append(out, m.t)
		}
	}
	p.mu.Unlock()

	if len(out) == 0 {
		return nil
	}
	p.order(out)
	for i := range out {
		out[i] = out[i].clone()
	}
	return out
}

// order sorts ts by priority and shuffles each priority group by weight.
func (p *Pool) order(ts []Target) {
	// Stable so equal priorities keep config order before the shuffle; this
	// keeps results reproducible with a deterministic Rand.
	slices.SortStableFunc(ts, func(a, b Target) int { return cmp.Compare(a.Priority, b.Priority) })

	p.randMu.Lock()
	defer p.randMu.Unlock()
	for start := 0; start < len(ts); {
		end := start + 1
		for end < len(ts) && ts[end].Priority == ts[start].Priority {
			end++
		}
		p.weightedShuffle(ts[start:end])
		start = end
	}
}

// weightedShuffle orders g by successive weighted draws without replacement.
// Caller holds randMu.
func (p *Pool) weightedShuffle(g []Target) {
	for k := 0; k < len(g)-1; k++ {
		total := 0
		for _, t := range g[k:] {
			total += t.Weight
		}
		r := p.intn(total)
		pick := k
		for i := k; i < len(g); i++ {
			if r < g[i].Weight {
				pick = i
				break
			}
			r -= g[i].Weight
		}
		g[k], g[pick] = g[pick], g[k]
	}
}

// intn draws from the configured source, folding out-of-range values from a
// misbehaving injected Rand back into [0, n). Caller holds randMu.
func (p *Pool) intn(n int) int {
	r := p.rand(n)
	if r < 0 || r >= n {
		r = ((r % n) + n) % n
	}
	return r
}

// Mark reports what real traffic observed: ok=false for a 503 or a timeout
// from the target, ok=true for a response that shows it alive. Marks feed the
// same consecutive counters as active checks. Unknown names are ignored.
func (p *Pool) Mark(name string, ok bool) {
	m := p.byName[name]
	if m == nil {
		return
	}
	reason := ""
	if !ok {
		reason = "failure reported by call handling"
	}
	p.observe(m, ok, reason, false)
}

// Lookup tells whether addr is the IP of one of the upstreams, ignoring the
// port because a PBX often sends from a port other than the one it listens on.
func (p *Pool) Lookup(addr netip.Addr) (Target, bool) {
	m, ok := p.byAddr[addr.Unmap()]
	if !ok {
		return Target{}, false
	}
	return m.t.clone(), true
}

// Status returns a snapshot of every target's health in configuration order.
func (p *Pool) Status() []TargetStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]TargetStatus, 0, len(p.members))
	for _, m := range p.members {
		out = append(out, TargetStatus{
			Name:             m.t.Name,
			Addr:             m.t.Addr,
			Up:               m.up,
			ConsecutiveFails: m.fails,
			LastCheck:        m.lastCheck,
			LastError:        m.lastErr,
		})
	}
	return out
}

// Ready tells whether the pool can take calls, with the reason: an upstream
// is up and, while active checks are on, has answered a check or a call
// since start. Targets start up so that calls are routed before the first
// check, but readiness waits for an answer: a pool whose only upstream is
// dead at start is never ready, rather than ready until its checks fail.
// With active checks off, readiness is the up state alone. A pool without
// targets is ready.
func (p *Pool) Ready() (bool, string) {
	if len(p.members) == 0 {
		return true, "no upstreams configured"
	}
	checking := p.interval > 0 && p.pinger != nil
	p.mu.Lock()
	defer p.mu.Unlock()
	waiting := false
	for _, m := range p.members {
		switch {
		case !m.up:
		case m.answered || !checking:
			return true, "upstream " + m.t.Name + " up"
		default:
			waiting = true
		}
	}
	if waiting {
		return false, "waiting for an upstream to answer a health check"
	}
	return false, "no upstream up"
}

// Stats returns the current counters.
func (p *Pool) Stats() Stats {
	return Stats{
		ChecksTotal:       p.checks.Load(),
		FailuresTotal:     p.fails.Load(),
		StateChangesTotal: p.changes.Load(),
	}
}

// observe applies one health observation to m and logs a state change.
// active tells a check result from a passive Mark.
func (p *Pool) observe(m *member, ok bool, reason string, active bool) {
	if !ok {
		p.fails.Add(1)
	}

	p.mu.Lock()
	if active {
		m.lastCheck = p.now()
		m.lastErr = reason
	}
	changed := false
	if ok {
		m.answered = true
		m.fails = 0
		m.succ++
		if !m.up && m.succ >= p.successes {
			m.up, changed = true, true
		}
	} else {
		m.succ = 0
		m.fails++
		if m.up && m.fails >= p.failures {
			m.up, changed = false, true
		}
	}
	up, fails, succ := m.up, m.fails, m.succ
	p.mu.Unlock()

	if !changed {
		return
	}
	p.changes.Add(1)
	source := "traffic"
	if active {
		source = "health_check"
	}
	// Logged outside the lock so a slow handler cannot stall call routing.
	if up {
		p.log.Info("upstream up", "upstream", m.t.Name, "addr", m.t.Addr,
			"consecutive_successes", succ, "source", source)
	} else {
		p.log.Warn("upstream down", "upstream", m.t.Name, "addr", m.t.Addr,
			"consecutive_failures", fails, "error", reason, "source", source)
	}
}
