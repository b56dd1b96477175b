package upstream

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// scriptPinger answers each target from a per-name queue of results; an
// exhausted queue repeats its last entry.
type scriptPinger struct {
	mu     sync.Mutex
	script map[string][]result
	calls  map[string]int
}

type result struct {
	status int
	err    error
}

func (s *scriptPinger) Ping(ctx context.Context, t Target) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls == nil {
		s.calls = map[string]int{}
	}
	q := s.script[t.Name]
	if len(q) == 0 {
		return 0, errors.New("no script")
	}
	r := q[0]
	if len(q) > 1 {
		s.script[t.Name] = q[1:]
	}
	s.calls[t.Name]++
	return r.status, r.err
}

func (s *scriptPinger) set(name string, rs ...result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.script == nil {
		s.script = map[string][]result{}
	}
	s.script[name] = rs
}

// fakeClock is a manually advanced clock for LastCheck.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestJudge(t *testing.T) {
	tests := []struct {
		status int
		err    error
		ok     bool
	}{
		{200, nil, true},
		{404, nil, true}, // a PBX that dislikes OPTIONS is still alive
		{405, nil, true},
		{408, nil, true},
		{499, nil, true},
		{500, nil, false},
		{503, nil, false},
		{604, nil, false},
		{0, nil, false},
		{42, nil, false},
		{700, nil, false},
		{200, errors.New("boom"), false},
	}
	for _, tc := range tests {
		ok, reason := judge(tc.status, tc.err)
		if ok != tc.ok {
			t.Errorf("judge(%d, %v) = %v, want %v", tc.status, tc.err, ok, tc.ok)
		}
		if ok != (reason == "") {
			t.Errorf("judge(%d, %v): reason %q does not match ok=%v", tc.status, tc.err, reason, ok)
		}
	}
}

func TestCheckOnceThresholds(t *testing.T) {
	clock := &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	pinger := &scriptPinger{}
	p := New([]Target{mustTarget(t, "pbx", "sip:127.0.0.1:5001", 1, 1)},
		Options{HealthInterval: time.Second, Failures: 3, Successes: 2, Pinger: pinger, Logger: quietLogger()})
	p.now = clock.now
	m := p.byName["pbx"]
	ctx := context.Background()

	pinger.set("pbx", result{503, nil}, result{0, errors.New("timeout")}, result{500, nil})
	for i := range 2 {
		p.checkOnce(ctx, m)
		if !p.Status()[0].Up {
			t.Fatalf("down after %d failures, want 3", i+1)
		}
	}
	clock.advance(time.Minute)
	p.checkOnce(ctx, m)
	st := p.Status()[0]
	if st.Up {
		t.Fatal("still up after 3 failed checks")
	}
	if st.ConsecutiveFails != 3 || st.LastError != "status 500" || !st.LastCheck.Equal(clock.now()) {
		t.Errorf("Status() = %+v, want 3 fails, last error status 500, last check %v", st, clock.now())
	}
	if c := p.Candidates(); len(c) != 1 {
		t.Errorf("all-down fallback: Candidates() = %v, want the only target", names(c))
	}

	pinger.set("pbx", result{404, nil}, result{0, errors.New("flap")}, result{405, nil})
	p.checkOnce(ctx, m) // 404: alive, 1 success
	p.checkOnce(ctx, m) // error: resets the success run
	p.checkOnce(ctx, m) // 405: 1 success
	if p.Status()[0].Up {
		t.Fatal("up without 2 consecutive successes")
	}
	p.checkOnce(ctx, m) // 405 again: 2 successes
	st = p.Status()[0]
	if !st.Up || st.ConsecutiveFails != 0 || st.LastError != "" {
		t.Errorf("Status() = %+v, want up, no fails, no error", st)
	}

	got := p.Stats()
	want := Stats{ChecksTotal: 7, FailuresTotal: 4, StateChangesTotal: 2}
	if got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

// blockPinger blocks until its context ends, like an upstream that never
// answers.
type blockPinger struct{ started chan struct{} }

func (b *blockPinger) Ping(ctx context.Context, t Target) (int, error) {
	if b.started != nil {
		select {
		case b.started <- struct{}{}:
		default:
		}
	}
	<-ctx.Done()
	return 0, ctx.Err()
}

func TestCheckOnceTimeout(t *testing.T) {
	p := New([]Target{mustTarget(t, "pbx", "sip:127.0.0.1:5001", 1, 1)},
		Options{HealthInterval: time.Second, HealthTimeout: 20 * time.Millisecond, Failures: 1,
			Pinger: &blockPinger{}, Logger: quietLogger()})
	done := make(chan struct{})
	go func() {
		p.checkOnce(context.Background(), p.byName["pbx"])
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("check did not honour its timeout")
	}
	st := p.Status()[0]
	if st.Up || !strings.Contains(st.LastError, "deadline exceeded") {
		t.Errorf("Status() = %+v, want down by deadline exceeded", st)
	}
}

func TestCheckOnceShutdownNotCounted(t *testing.T) {
	p := New([]Target{mustTarget(t, "pbx", "sip:127.0.0.1:5001", 1, 1)},
		Options{HealthInterval: time.Second, Failures: 1, Pinger: &blockPinger{}, Logger: quietLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.checkOnce(ctx, p.byName["pbx"])
	if st := p.Status()[0]; !st.Up || !st.LastCheck.IsZero() {
		t.Errorf("Status() = %+v: a check cut by shutdown must not count", st)
	}
	if s := p.Stats(); s != (Stats{}) {
		t.Errorf("Stats() = %+v, want zero", s)
	}
}

func TestStateChangeLoggedOnce(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	pinger := &scriptPinger{}
	pinger.set("pbx", result{503, nil})
	p := New([]Target{mustTarget(t, "pbx", "sip:127.0.0.1:5001", 1, 1)},
		Options{HealthInterval: time.Second, Failures: 2, Successes: 2, Pinger: pinger, Logger: log})
	m := p.byName["pbx"]
	for range 6 {
		p.checkOnce(context.Background(), m)
	}
	pinger.set("pbx", result{200, nil})
	for range 6 {
		p.checkOnce(context.Background(), m)
	}

	out := buf.String()
	if n := strings.Count(out, `msg="upstream down"`); n != 1 {
		t.Errorf("%d down lines, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, `msg="upstream up"`); n != 1 {
		t.Errorf("%d up lines, want 1:\n%s", n, out)
	}
	if strings.Count(out, "component=upstream") != 2 || !strings.Contains(out, "upstream=pbx") {
		t.Errorf("log lines lack component or upstream name:\n%s", out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// countPinger answers 200 at once and counts calls.
type countPinger struct{ n atomic.Int64 }

func (c *countPinger) Ping(ctx context.Context, t Target) (int, error) {
	c.n.Add(1)
	return 200, nil
}

// mixedPinger blocks for target "stuck" and answers the others at once.
type mixedPinger struct {
	fast  countPinger
	stuck blockPinger
}

func (m *mixedPinger) Ping(ctx context.Context, t Target) (int, error) {
	if t.Name == "stuck" {
		return m.stuck.Ping(ctx, t)
	}
	return m.fast.Ping(ctx, t)
}

// waitFor polls cond until it holds or the deadline passes; the loop is
// bounded in both iterations and time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for range 5000 {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		runtime.Gosched()
		<-tick.C
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestRunStopsOnCancel(t *testing.T) {
	base := runtime.NumGoroutine()

	pinger := &mixedPinger{stuck: blockPinger{started: make(chan struct{}, 1)}}
	p := New([]Target{
		mustTarget(t, "a", "sip:127.0.0.1:5001", 1, 1),
		mustTarget(t, "b", "sip:127.0.0.1:5002", 1, 1),
		mustTarget(t, "stuck", "sip:127.0.0.1:5003", 2, 1),
	}, Options{HealthInterval: time.Millisecond, HealthTimeout: time.Minute, Pinger: pinger, Logger: quietLogger()})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		p.Run(ctx)
		close(done)
	}()

	waitFor(t, "repeated checks", func() bool { return pinger.fast.n.Load() >= 10 })
	select {
	case <-pinger.stuck.started:
	case <-time.After(5 * time.Second):
		t.Fatal("stuck target was never checked")
	}

	// A second Run while the first is active must not start more checkers.
	second := make(chan struct{})
	go func() {
		p.Run(ctx)
		close(second)
	}()
	select {
	case <-second:
	case <-time.After(5 * time.Second):
		t.Fatal("second Run did not return at once")
	}

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	waitFor(t, "goroutines back to baseline", func() bool { return runtime.NumGoroutine() <= base })

	if st := p.Status(); !st[0].Up || st[0].LastCheck.IsZero() || !st[2].Up {
		t.Errorf("Status() = %+v: want checked targets up, stuck one not failed by shutdown", st)
	}
	if s := p.Stats(); s.ChecksTotal < 10 || s.FailuresTotal != 0 {
		t.Errorf("Stats() = %+v, want >= 10 checks and no failures", s)
	}
}

func TestRunDisabled(t *testing.T) {
	for _, opts := range []Options{
		{HealthInterval: 0, Pinger: &countPinger{}},
		{HealthInterval: time.Millisecond, Pinger: nil},
	} {
		opts.Logger = quietLogger()
		p := New([]Target{mustTarget(t, "a", "sip:127.0.0.1:5001", 1, 1)}, opts)
		done := make(chan struct{})
		go func() {
			p.Run(context.Background()) // never cancelled: must return by itself
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("Run with %+v did not return at once", opts)
		}
	}
}

// The first check of every target goes out when Run starts, not after a
// random share of the interval: readiness follows the upstreams at once.
func TestRunChecksAtOnce(t *testing.T) {
	pinger := &countPinger{}
	p := New([]Target{
		mustTarget(t, "a", "sip:127.0.0.1:5001", 1, 1),
		mustTarget(t, "b", "sip:127.0.0.1:5002", 1, 1),
	}, Options{HealthInterval: time.Hour, Pinger: pinger, Logger: quietLogger()})
	if ok, why := p.Ready(); ok || why != "waiting for an upstream to answer a health check" {
		t.Errorf("Ready() before any check = %v %q, want not ready, waiting", ok, why)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	waitFor(t, "one check of each target", func() bool { return pinger.n.Load() >= 2 })
	if ok, _ := p.Ready(); !ok {
		t.Error("not ready after both targets answered")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if n := pinger.n.Load(); n != 2 {
		t.Errorf("%d checks within an interval of an hour, want 2", n)
	}
}

// stampPinger records when each check starts and lets it last until its
// context ends (the timeout), like an upstream that went dead.
type stampPinger struct {
	mu     sync.Mutex
	starts []time.Time
}

func (s *stampPinger) Ping(ctx context.Context, t Target) (int, error) {
	s.mu.Lock()
	s.starts = append(s.starts, time.Now())
	s.mu.Unlock()
	<-ctx.Done()
	return 0, ctx.Err()
}

func (s *stampPinger) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.starts)
}

// Checks start every interval even when each lasts the whole timeout, so
// that a dead upstream is down within failures × interval + timeout, not
// failures × (interval + timeout).
func TestRunFixedRate(t *testing.T) {
	const interval, timeout = 200 * time.Millisecond, 150 * time.Millisecond
	pinger := &stampPinger{}
	p := New([]Target{mustTarget(t, "dead", "sip:127.0.0.1:5001", 1, 1)},
		Options{HealthInterval: interval, HealthTimeout: timeout, Failures: 100, Pinger: pinger, Logger: quietLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	waitFor(t, "seven checks", func() bool { return pinger.count() >= 7 })
	cancel()
	<-done
	pinger.mu.Lock()
	starts := pinger.starts
	pinger.mu.Unlock()
	// From the second check on the schedule is fixed: five gaps are 1 s at
	// the interval, 1.75 s if each gap added the timeout.
	if d := starts[6].Sub(starts[1]); d < 5*interval-50*time.Millisecond || d > 5*interval+400*time.Millisecond {
		t.Errorf("checks 2 to 7 spread over %v, want about %v (every interval)", d, 5*interval)
	}
}

func TestReady(t *testing.T) {
	targets := []Target{mustTarget(t, "a", "sip:127.0.0.1:5001", 1, 1), mustTarget(t, "b", "sip:127.0.0.1:5002", 2, 1)}
	type step struct {
		name   string
		ok     bool // the observation: alive or failed
		active bool // a check (true) or a call's Mark
	}
	tests := []struct {
		name    string
		opts    Options
		steps   []step
		ready   bool
		why     string
		targets []Target
	}{
		{name: "no upstreams", opts: Options{HealthInterval: time.Second, Pinger: &countPinger{}}, ready: true, why: "no upstreams configured"},
		{name: "checks off: up from start", opts: Options{}, targets: targets, ready: true, why: "upstream a up"},
		{name: "no pinger: up from start", opts: Options{HealthInterval: time.Second}, targets: targets, ready: true, why: "upstream a up"},
		{name: "before the first answer", opts: Options{HealthInterval: time.Second, Pinger: &countPinger{}}, targets: targets,
			ready: false, why: "waiting for an upstream to answer a health check"},
		{name: "first check failed", opts: Options{HealthInterval: time.Second, Pinger: &countPinger{}, Failures: 3}, targets: targets,
			steps: []step{{"a", false, true}, {"b", false, true}}, ready: false, why: "waiting for an upstream to answer a health check"},
		{name: "second target answered", opts: Options{HealthInterval: time.Second, Pinger: &countPinger{}}, targets: targets,
			steps: []step{{"a", false, true}, {"b", true, true}}, ready: true, why: "upstream b up"},
		{name: "a call answered", opts: Options{HealthInterval: time.Second, Pinger: &countPinger{}}, targets: targets,
			steps: []step{{"a", true, false}}, ready: true, why: "upstream a up"},
		{name: "answered, then down", opts: Options{HealthInterval: time.Second, Pinger: &countPinger{}, Failures: 2}, targets: targets[:1],
			steps: []step{{"a", true, true}, {"a", false, true}, {"a", false, false}}, ready: false, why: "no upstream up"},
		{name: "answered, one failure", opts: Options{HealthInterval: time.Second, Pinger: &countPinger{}, Failures: 2}, targets: targets[:1],
			steps: []step{{"a", true, true}, {"a", false, true}}, ready: true, why: "upstream a up"},
		{name: "checks off, down by calls", opts: Options{Failures: 1}, targets: targets,
			steps: []step{{"a", false, false}, {"b", false, false}}, ready: false, why: "no upstream up"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Logger = quietLogger()
			p := New(tc.targets, tc.opts)
			for _, s := range tc.steps {
				if s.active {
					p.observe(p.byName[s.name], s.ok, "scripted", true)
				} else {
					p.Mark(s.name, s.ok)
				}
			}
			if ok, why := p.Ready(); ok != tc.ready || why != tc.why {
				t.Errorf("Ready() = %v %q, want %v %q", ok, why, tc.ready, tc.why)
			}
		})
	}
}
