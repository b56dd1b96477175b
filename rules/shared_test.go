package rules

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// memShared stands in for the fraud state of sbc/cluster (Redis): maps of
// windowed counters, gauges and blocks on the test clock, that can be
// made to fail. sbc/cluster is tested against a real Redis on its own;
// these tests exercise the engine's use of Shared, with two (real)
// engines on one memShared.
type memShared struct {
	mu       sync.Mutex
	now      func() time.Time
	counters map[string]float64 // key|window start (ns)
	gauges   map[string]float64
	blocks   map[string]memBlock
	// failing makes every call fail when it returns an error for the
	// call's key (nil: none fails).
	failing func(key string) error
}

type memBlock struct {
	v     []byte
	until time.Time
}

func newMemShared(now func() time.Time) *memShared {
	return &memShared{now: now, counters: map[string]float64{}, gauges: map[string]float64{}, blocks: map[string]memBlock{}}
}

var errDown = errors.New("redis down")

func (s *memShared) failAll(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing = nil
	if on {
		s.failing = func(string) error { return errDown }
	}
}

func (s *memShared) failed(key string) error {
	if s.failing == nil {
		return nil
	}
	return s.failing(key)
}

func (s *memShared) AddCounter(key string, start, end, prevStart time.Time, delta float64) (float64, float64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failed(key); err != nil {
		return 0, 0, err
	}
	k := fmt.Sprintf("%s|%d", key, start.UnixNano())
	s.counters[k] += delta
	return s.counters[k], s.counters[fmt.Sprintf("%s|%d", key, prevStart.UnixNano())], nil
}

func (s *memShared) AddGauge(key string, delta float64, _ time.Duration) (float64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failed(key); err != nil {
		return 0, err
	}
	s.gauges[key] += delta
	return s.gauges[key], nil
}

func (s *memShared) gauge(key string) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gauges[key]
}

func (s *memShared) PutBlock(user string, v []byte, until time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failed(user); err != nil {
		return err
	}
	s.blocks[user] = memBlock{v: append([]byte(nil), v...), until: until}
	return nil
}

func (s *memShared) GetBlock(user string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failed(user); err != nil {
		return nil, false, err
	}
	b, ok := s.blocks[user]
	if !ok || !s.now().Before(b.until) {
		return nil, false, nil
	}
	return append([]byte(nil), b.v...), true, nil
}

func (s *memShared) DeleteBlock(user string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failed(user); err != nil {
		return err
	}
	delete(s.blocks, user)
	return nil
}

func (s *memShared) ForEachBlock(fn func(user string, v []byte) error) error {
	s.mu.Lock()
	if err := s.failed(""); err != nil {
		s.mu.Unlock()
		return err
	}
	type kv struct {
		u string
		v []byte
	}
	var l []kv
	for u, b := range s.blocks {
		if s.now().Before(b.until) {
			l = append(l, kv{u, b.v})
		}
	}
	s.mu.Unlock()
	sort.Slice(l, func(i, j int) bool { return l[i].u < l[j].u })
	for _, x := range l {
		if err := fn(x.u, x.v); err != nil {
			return err
		}
	}
	return nil
}

// sharedPair builds two engines ("nodes") on one memShared and one clock.
func sharedPair(t *testing.T, rules string, failClosed bool) (a, b *harness, sh *memShared) {
	t.Helper()
	clk := newClock(monday10)
	sh = newMemShared(clk.now)
	node := func() *harness {
		h := &harness{clk: clk}
		h.start(t, Options{Rules: mustParse(t, ruleFile(rules)), Shared: sh, SharedFailClosed: failClosed})
		return h
	}
	a, b = node(), node()
	b.n = 1000 // call IDs apart from A's
	return a, b, sh
}

// TestSharedCallsPerMinute: a limit of 4 calls a minute counts the calls
// of both nodes together: three pass, spread over A and B, the fourth is
// refused wherever it arrives.
func TestSharedCallsPerMinute(t *testing.T) {
	a, b, _ := sharedPair(t, "- {name: r, measure: calls_per_minute, critical: 4, action: reject}", false)
	for i, h := range []*harness{a, b, a} {
		if v, _ := h.check(); !v.Allow {
			t.Fatalf("call %d: %+v", i+1, v)
		}
	}
	if v, _ := b.check(); v.Allow || v.Status != 403 || v.Rule != "default/r" {
		t.Fatalf("4th call on B: %+v, want 403 by default/r", v)
	}
	if v, _ := a.check(); v.Allow {
		t.Fatalf("5th call on A: %+v", v)
	}
	// Other users are counted apart, and two minutes later the count
	// starts over.
	if v, _ := a.check(user("bob")); !v.Allow {
		t.Fatalf("bob: %+v", v)
	}
	a.clk.advance(2 * time.Minute)
	if v, _ := b.check(); !v.Allow {
		t.Fatalf("two minutes later: %+v", v)
	}
	// The OPA counters are the fleet's too.
	if _, m := b.e.Counters("alice"); m != 1 {
		t.Fatalf("lastMinute %d on B, want 1", m)
	}
	for _, h := range []*harness{a, b} {
		if st := h.e.Stats(); st.SharedErrors != 0 {
			t.Fatalf("shared errors %d", st.SharedErrors)
		}
	}
}

// TestSharedCallsPerDay: a day budget is the fleet's.
func TestSharedCallsPerDay(t *testing.T) {
	a, b, _ := sharedPair(t, "- {name: r, measure: calls_per_day, critical: 3, action: reject}", false)
	a.check()
	a.clk.advance(3 * time.Hour)
	b.check()
	if v, _ := a.check(); v.Allow {
		t.Fatalf("3rd call of the day: %+v", v)
	}
	a.clk.advance(24 * time.Hour)
	if v, _ := b.check(); !v.Allow {
		t.Fatalf("next day: %+v", v)
	}
}

// TestSharedConcurrent: calls in progress on both nodes count together,
// a refused call does not hold a slot, and Ended on either node frees one.
func TestSharedConcurrent(t *testing.T) {
	a, b, sh := sharedPair(t, "- {name: r, measure: concurrent_calls, critical: 3, action: reject}", false)
	_, c1 := a.check()
	v2, c2 := b.check()
	if !v2.Allow {
		t.Fatalf("2nd call: %+v", v2)
	}
	if v, _ := a.check(); v.Allow {
		t.Fatalf("3rd concurrent call: %+v", v)
	}
	if g := sh.gauge("g|default/r|alice"); g != 2 {
		t.Fatalf("gauge %v after a refused call, want 2", g)
	}
	if p, _ := a.e.Counters("alice"); p != 2 {
		t.Fatalf("in progress %d on A, want 2", p)
	}
	a.e.Ended(c1.ID, true, time.Minute)
	v3, c3 := b.check()
	if !v3.Allow {
		t.Fatalf("after A's call ended: %+v", v3)
	}
	b.e.Ended(c2.ID, false, 0)
	if g := sh.gauge("g|default/r|alice"); g != 1 {
		t.Fatalf("gauge %v, want 1", g)
	}
	b.e.Ended(c3.ID, true, time.Second)
	if g := sh.gauge("g|default/r|alice"); g != 0 {
		t.Fatalf("gauge %v, want 0", g)
	}
	if g := sh.gauge("g|u|alice"); g != 0 {
		t.Fatalf("account gauge %v, want 0", g)
	}
}

// TestSharedEndedCounters: measures fed by Ended (short calls) count the
// calls ended on any node.
func TestSharedEndedCounters(t *testing.T) {
	a, b, _ := sharedPair(t, "- {name: r, measure: short_calls, short_seconds: 10, critical: 2, action: reject}", false)
	_, c1 := a.check()
	a.e.Ended(c1.ID, true, 3*time.Second)
	_, c2 := b.check()
	b.e.Ended(c2.ID, true, 3*time.Second)
	for _, h := range []*harness{a, b} {
		if v, _ := h.check(); v.Allow {
			t.Fatalf("after two short calls: %+v", v)
		}
	}
}

// TestSharedBlock: a block set on A stops the account on B, B lists it,
// and an unblock on B lifts it on A.
func TestSharedBlock(t *testing.T) {
	a, b, _ := sharedPair(t, "- {name: r, measure: calls_per_minute, critical: 2, action: block_account, block_for: 1h}", false)
	a.check()
	if v, _ := a.check(); v.Allow || v.Action != ActBlockAccount {
		t.Fatalf("2nd call: %+v", v)
	}
	v, _ := b.check()
	if v.Allow || v.Reason != "Account Blocked" || v.Status != 403 || v.Rule != "default/r" {
		t.Fatalf("on B: %+v", v)
	}
	if v, _ := b.check(user("bob")); !v.Allow {
		t.Fatalf("bob on B: %+v", v)
	}
	bl := b.e.Blocked()
	if len(bl) != 1 || bl[0].User != "alice" || !bl[0].Until.Equal(monday10.Add(time.Hour)) {
		t.Fatalf("B's Blocked: %+v", bl)
	}
	if !b.e.Unblock("alice") {
		t.Fatal("Unblock on B found no block")
	}
	a.clk.advance(2 * time.Minute) // the counter's minute is over
	if v, _ := a.check(); !v.Allow {
		t.Fatalf("on A after B's unblock: %+v", v)
	}
	if len(a.e.Blocked()) != 0 {
		t.Fatalf("A still lists %+v", a.e.Blocked())
	}
}

// TestSharedNewCountry: a country one node allowed a call to is known to
// the other; a refused call teaches nothing, on either node.
func TestSharedNewCountry(t *testing.T) {
	rules := "- {name: nc, measure: new_country, critical: 1, action: alert}\n" +
		"- {name: no-de, match: {prefixes: [\"49\"]}, measure: calls_per_minute, critical: 1, action: reject}\n"
	a, b, _ := sharedPair(t, rules, false)
	ncAlerts := func(h *harness) int {
		h.mu.Lock()
		defer h.mu.Unlock()
		n := 0
		for _, al := range h.alerts {
			if al.Rule == "default/nc" {
				n++
			}
		}
		return n
	}
	if v, _ := a.check(to("+33142000000")); !v.Allow || v.Rule != "default/nc" || ncAlerts(a) != 1 {
		t.Fatalf("first call to FR on A: %+v, %d alerts", v, ncAlerts(a))
	}
	if v, _ := b.check(to("+33142000001")); !v.Allow || v.Rule != "" || ncAlerts(b) != 0 {
		t.Fatalf("call to FR on B: %+v, %d alerts: FR is known", v, ncAlerts(b))
	}
	if v, _ := a.check(to("+4930123456")); v.Allow || ncAlerts(a) != 2 {
		t.Fatalf("call to DE on A: %+v, %d alerts", v, ncAlerts(a))
	}
	b.check(to("+4930123457"))
	if ncAlerts(b) != 1 {
		t.Fatalf("DE on B: %d new-country alerts, want 1 (the refused call taught nothing)", ncAlerts(b))
	}
}

// TestSharedFailOpen: with Shared down, calls are counted on each node
// alone and go on; the failures are counted.
func TestSharedFailOpen(t *testing.T) {
	a, b, sh := sharedPair(t, "- {name: r, measure: calls_per_minute, critical: 3, action: reject}", false)
	sh.failAll(true)
	for i, h := range []*harness{a, b, a, b} {
		if v, _ := h.check(); !v.Allow {
			t.Fatalf("call %d with Shared down: %+v", i+1, v)
		}
	}
	if v, _ := a.check(); v.Allow || v.Rule != "default/r" {
		t.Fatalf("A's 3rd call, counted locally: %+v", v)
	}
	if st := a.e.Stats(); st.SharedErrors == 0 || st.Unavailable != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Back: the shared count goes on from what it holds.
	sh.failAll(false)
	if v, _ := b.check(); !v.Allow {
		t.Fatalf("with Shared back: %+v", v)
	}
}

// TestSharedFailClosed: with SharedFailClosed a failing Shared refuses the
// call with 503, and the gauges it raised before the failure are lowered.
func TestSharedFailClosed(t *testing.T) {
	a, _, sh := sharedPair(t, "- {name: r, measure: calls_per_minute, critical: 3, action: reject}", true)
	sh.failAll(true)
	v, _ := a.check()
	if v.Allow || v.Status != 503 || v.Reason != ReasonUnavailable {
		t.Fatalf("with Shared down: %+v", v)
	}
	// Only the rule's counter fails: the account gauge raised before it
	// is lowered again.
	sh.mu.Lock()
	sh.failing = func(key string) error {
		if strings.HasPrefix(key, "default/") {
			return errDown
		}
		return nil
	}
	sh.mu.Unlock()
	if v, _ := a.check(); v.Status != 503 {
		t.Fatalf("with the rule's counter down: %+v", v)
	}
	if g := sh.gauge("g|u|alice"); g != 0 {
		t.Fatalf("account gauge %v after a refused call", g)
	}
	if st := a.e.Stats(); st.Unavailable != 2 || st.Rejected != 2 || st.SharedErrors != 2 || st.InProgress != 0 {
		t.Fatalf("stats %+v", st)
	}
	sh.failAll(false)
	if v, _ := a.check(); !v.Allow {
		t.Fatalf("with Shared back: %+v", v)
	}
}

// TestSharedBlockFailOpen: a block set while Shared was down holds on its
// node and reaches Shared once it is back, rather than being taken for an
// unblock made elsewhere.
func TestSharedBlockFailOpen(t *testing.T) {
	a, b, sh := sharedPair(t, "- {name: r, measure: calls_per_minute, critical: 2, action: block_account, block_for: 1h}", false)
	sh.failAll(true)
	a.check()
	if v, _ := a.check(); v.Allow || v.Action != ActBlockAccount {
		t.Fatalf("2nd call: %+v", v)
	}
	sh.failAll(false)
	a.clk.advance(2 * time.Minute)
	if v, _ := a.check(); v.Reason != "Account Blocked" {
		t.Fatalf("A after Shared came back: %+v", v)
	}
	if v, _ := b.check(); v.Reason != "Account Blocked" {
		t.Fatalf("B: %+v", v)
	}
}

// TestSharedRace runs checks and ends on two engines at once (-race).
func TestSharedRace(t *testing.T) {
	a, b, sh := sharedPair(t, "- {name: r, measure: concurrent_calls, critical: 1000, action: reject}\n- {name: m, measure: calls_per_minute, critical: 100000, action: reject}", false)
	var wg sync.WaitGroup
	for w, h := range []*harness{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				c := Call{ID: fmt.Sprintf("w%d-%d", w, i), User: "alice", Source: src1, Destination: "+442079460000"}
				if v := h.e.Check(c); v.Allow {
					h.e.Ended(c.ID, true, time.Second)
				}
			}
		}()
	}
	wg.Wait()
	if g := sh.gauge("g|default/r|alice"); g != 0 {
		t.Fatalf("gauge %v after every call ended", g)
	}
}

// batchShared is memShared with Batch: it counts the round trips a
// pipelining Shared (sbc/cluster) would make.
type batchShared struct {
	*memShared
	trips, batches int
}

func (s *batchShared) trip() {
	s.mu.Lock()
	s.trips++
	s.mu.Unlock()
}

func (s *batchShared) AddCounter(key string, start, end, prevStart time.Time, delta float64) (float64, float64, error) {
	s.trip()
	return s.memShared.AddCounter(key, start, end, prevStart, delta)
}

func (s *batchShared) AddGauge(key string, delta float64, ttl time.Duration) (float64, error) {
	s.trip()
	return s.memShared.AddGauge(key, delta, ttl)
}

func (s *batchShared) GetBlock(user string) ([]byte, bool, error) {
	s.trip()
	return s.memShared.GetBlock(user)
}

func (s *batchShared) Batch(ops []SharedOp) error {
	s.mu.Lock()
	s.trips++
	s.batches++
	s.mu.Unlock()
	for i := range ops {
		o := &ops[i]
		if !o.End.IsZero() {
			o.Cur, o.Prev, o.Err = s.memShared.AddCounter(o.Key, o.Start, o.End, o.PrevStart, o.Delta)
		} else {
			o.Cur, o.Err = s.memShared.AddGauge(o.Key, o.Delta, o.TTL)
		}
	}
	return nil
}

func (s *batchShared) roundTrips() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.trips
}

// TestSharedBatched: with a Shared that batches, a call costs three round
// trips whatever the rules (the block, then every counter and gauge of
// Check at once; Ended's at once), the counters input two, and the counts
// are the same as one call each.
func TestSharedBatched(t *testing.T) {
	const rules = "- {name: r, measure: concurrent_calls, critical: 3, action: reject}\n" +
		"- {name: m, measure: calls_per_minute, critical: 100, action: reject}\n" +
		"- {name: d, measure: calls_per_day, critical: 1000, action: reject}\n" +
		"- {name: f, measure: failed_ratio, critical: 0.9, action: reject}\n" +
		"- {name: s, measure: short_calls, short_seconds: 10, critical: 100, action: reject}"
	clk := newClock(monday10)
	sh := &batchShared{memShared: newMemShared(clk.now)}
	h := &harness{clk: clk}
	h.start(t, Options{Rules: mustParse(t, ruleFile(rules)), Shared: sh})
	before := sh.roundTrips()
	v, c := h.check()
	if !v.Allow {
		t.Fatalf("first call: %+v", v)
	}
	if n := sh.roundTrips() - before; n != 2 {
		t.Errorf("Check: %d round trips, want 2", n)
	}
	if g := sh.gauge("g|default/r|alice"); g != 1 {
		t.Errorf("concurrent gauge %v, want 1", g)
	}
	before = sh.roundTrips()
	if p, m := h.e.Counters("alice"); p != 1 || m != 1 {
		t.Errorf("counters %d %d, want 1 1", p, m)
	}
	if n := sh.roundTrips() - before; n != 1 {
		t.Errorf("Counters: %d round trips, want 1", n)
	}
	before = sh.roundTrips()
	h.e.Ended(c.ID, true, 3*time.Second)
	if n := sh.roundTrips() - before; n != 1 {
		t.Errorf("Ended: %d round trips, want 1", n)
	}
	if g, u := sh.gauge("g|default/r|alice"), sh.gauge("g|u|alice"); g != 0 || u != 0 {
		t.Errorf("gauges %v %v after the call ended, want 0", g, u)
	}
	// The short call and the ended call's ratio counts are in Shared.
	sh.mu.Lock()
	var short, total float64
	for k, n := range sh.counters {
		if strings.HasPrefix(k, "default/s|alice|") {
			short += n
		}
		if strings.HasPrefix(k, "default/f|alice|t|") {
			total += n
		}
	}
	sh.mu.Unlock()
	if short != 1 || total != 1 {
		t.Errorf("short %v, total %v: want 1 1", short, total)
	}
	// A refused call lowers what it raised, in one round trip more.
	h.check()
	h.check()
	before = sh.roundTrips()
	if v, _ := h.check(); v.Allow {
		t.Fatalf("4th concurrent call: %+v", v)
	}
	if n := sh.roundTrips() - before; n != 3 {
		t.Errorf("refused Check: %d round trips, want 3", n)
	}
	if g := sh.gauge("g|default/r|alice"); g != 2 {
		t.Errorf("concurrent gauge %v after a refused call, want 2", g)
	}
}
