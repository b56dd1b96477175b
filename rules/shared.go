package rules

import (
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Shared holds the fraud state of every node of a cluster, so that a
// fleet counts each call once: counters, calls in progress, account
// blocks and the countries a key has called (cmd/sipwall adapts
// sbc/cluster to it). See README.md, "Shared state".
type Shared interface {
	// AddCounter adds delta (0: read only) to the fixed window
	// [start, end) of key and returns that window's count and the count
	// of the window of key that starts at prevStart (0 when none).
	AddCounter(key string, start, end, prevStart time.Time, delta float64) (cur, prev float64, err error)
	// AddGauge adds delta (0: read only) to key, which is kept ttl after
	// its last change, and returns the new value.
	AddGauge(key string, delta float64, ttl time.Duration) (float64, error)
	// PutBlock stores the block of an account (the JSON of Block) until
	// until.
	PutBlock(user string, v []byte, until time.Time) error
	// GetBlock returns the block of an account; ok false when there is
	// none in force.
	GetBlock(user string) (v []byte, ok bool, err error)
	// DeleteBlock lifts the block of an account (none: no error).
	DeleteBlock(user string) error
	// ForEachBlock calls fn for every block in force.
	ForEachBlock(fn func(user string, v []byte) error) error
}

// SharedBatch is a Shared that runs several counter and gauge operations
// in one round trip (sbc/cluster pipelines them). Check, Ended, Counters
// and the release of gauges use it when Shared has it; without it they
// make one call per operation.
type SharedBatch interface {
	Batch(ops []SharedOp) error
}

// SharedOp is one operation of a batch: AddCounter's when End is set,
// else AddGauge's (kept TTL after the change). The batch fills in Cur
// (the counter's window, or the gauge), Prev (the counter's previous
// window) and Err.
type SharedOp struct {
	Key                   string
	Start, End, PrevStart time.Time
	TTL                   time.Duration
	Delta                 float64

	Cur, Prev float64
	Err       error
}

// DefaultSharedGaugeTTL is how long a calls-in-progress gauge outlives its
// last change in Shared: the bound on a count a crashed node leaves.
const DefaultSharedGaugeTTL = 24 * time.Hour

// Key prefixes of the gauges in Shared (counters are keyed as the local
// ones: "<set>/<rule>|<key>", "u|<account>").
const (
	gaugeRule    = "g|" // concurrent_calls: "g|<set>/<rule>|<key>"
	gaugeAccount = "g|u|"
	gaugeCountry = "n|" // a country called: "n|<set>/<rule>|<key>|<cc>"
)

// ReasonUnavailable is the reason phrase of the 503 Check answers when
// Shared fails and Options.SharedFailClosed is set.
const ReasonUnavailable = "Fraud Counters Unavailable"

// blockState is what Shared said of an account's block.
type blockState uint8

const (
	blockUnknown blockState = iota // not asked, or Shared failed
	blockAbsent
	blockPresent
)

// sharedView is what Check read from Shared before it takes e.mu: the
// values that replace the local ones in the decision. Missing entries
// (Shared failed, fail-open) fall back to the local counters.
type sharedView struct {
	block    blockState
	b        Block
	counters map[string]float64 // counter key → estimate over its window
	gauges   map[string]float64 // rule key → calls in progress, this one included
	seen     map[string]bool    // country key ("<rule>|<key>|<cc>") → called before
	held     []string           // gauge keys raised by this call: lowered on reject or at Ended
}

// applied is a rule that applies to a call, with its counter key.
type applied struct {
	r  *Rule
	k  string // the per key: account, source or prefix
	ck string // "<set>/<rule>|<k>"
}

// appliedPool recycles the lists items builds: Check and Ended need one
// per call, and a rule file may have hundreds of rules.
var appliedPool = sync.Pool{New: func() any { return new([]applied) }}

// items lists the rules of rs that apply to c, in file order, in a list
// from appliedPool; give it back with release.
func (rs *RuleSet) items(c Call, d dest, home string) *[]applied {
	p := appliedPool.Get().(*[]applied)
	out := (*p)[:0]
	for si := range rs.Sets {
		s := &rs.Sets[si]
		if !s.applies(c) {
			continue
		}
		for _, r := range s.Rules {
			if !r.matches(d, home) {
				continue
			}
			k := perKey(r, c, d)
			out = append(out, applied{r: r, k: k, ck: r.ID + "|" + k})
		}
	}
	*p = out
	return p
}

// putApplied gives a list of items back to appliedPool.
func putApplied(p *[]applied) {
	clear(*p) // no rule or key kept alive by the pool
	*p = (*p)[:0]
	appliedPool.Put(p)
}

// windowOf is the counting window of a measure's counters.
func windowOf(measure string) window {
	switch measure {
	case CallsPerMinute:
		return perMinute
	case ShortCalls, FailedRatio:
		return perHour
	}
	return perDay
}

// sharedCount adds delta to key's window in Shared and returns the
// estimate over the last window, as counter.value does for the local one.
func (e *Engine) sharedCount(key string, now time.Time, w window, loc *time.Location, delta float64) (float64, error) {
	ops := []SharedOp{counterOp(key, now, w, loc, delta)}
	e.runShared(ops)
	if ops[0].Err != nil {
		return 0, ops[0].Err
	}
	return ops[0].estimate(now, w), nil
}

// counterOp is the operation that adds delta to key's window at now and
// reads the window before it.
func counterOp(key string, now time.Time, w window, loc *time.Location, delta float64) SharedOp {
	start, end := bounds(now, w, loc)
	var prevStart time.Time
	switch w {
	case perMinute:
		prevStart = start.Add(-time.Minute)
	case perHour:
		prevStart = start.Add(-time.Hour)
	default:
		y, m, d := start.Date()
		prevStart = time.Date(y, m, d-1, 0, 0, 0, 0, loc)
	}
	return SharedOp{Key: key, Start: start, End: end, PrevStart: prevStart, Delta: delta}
}

// estimate is a counter operation's estimate over the last window.
func (o *SharedOp) estimate(now time.Time, w window) float64 {
	return estimate(o.Cur, o.Prev, o.Start, o.End, now, w)
}

// gaugeOp is the operation that adds delta to a gauge.
func gaugeOp(key string, delta float64, ttl time.Duration) SharedOp {
	return SharedOp{Key: key, Delta: delta, TTL: ttl}
}

// runShared runs ops against Shared: in one round trip when it batches,
// else one call each. Errors are the operations'.
func (e *Engine) runShared(ops []SharedOp) {
	if len(ops) == 0 {
		return
	}
	if b, ok := e.opt.Shared.(SharedBatch); ok {
		_ = b.Batch(ops)
		return
	}
	for i := range ops {
		o := &ops[i]
		if !o.End.IsZero() {
			o.Cur, o.Prev, o.Err = e.opt.Shared.AddCounter(o.Key, o.Start, o.End, o.PrevStart, o.Delta)
		} else {
			o.Cur, o.Err = e.opt.Shared.AddGauge(o.Key, o.Delta, o.TTL)
		}
	}
}

// estimate is counter.value on Shared's counts.
func estimate(cur, prev float64, start, end, now time.Time, w window) float64 {
	if w == perDay || prev == 0 {
		return cur
	}
	left := float64(end.Sub(now)) / float64(end.Sub(start))
	if left < 0 {
		left = 0
	}
	return cur + prev*left
}

// checkShared reads and counts in Shared what Check needs, before e.mu is
// taken: the account's block first (a blocked account counts nothing),
// then every counter and gauge of the rules that apply. With
// SharedFailClosed a failure ends the check (done: the 503 verdict);
// otherwise the failed value is left to the local counters.
func (e *Engine) checkShared(c Call, rs *RuleSet, its []applied, acct string, d dest, now time.Time) (sv *sharedView, v Verdict, done bool) {
	sh := e.opt.Shared
	sv = &sharedView{counters: map[string]float64{}, gauges: map[string]float64{}, seen: map[string]bool{}}
	fail := func(op string, err error) bool {
		e.sharedErr(op, err)
		if !e.opt.SharedFailClosed {
			return false
		}
		e.lower(sv.held)
		e.mu.Lock()
		e.stats.Checks++
		e.stats.Rejected++
		e.stats.Unavailable++
		e.mu.Unlock()
		v, done = Verdict{Status: 503, Reason: ReasonUnavailable}, true
		return true
	}

	raw, ok, err := sh.GetBlock(acct)
	switch {
	case err != nil:
		if fail("get block", err) {
			return sv, v, true
		}
	case ok:
		var b Block
		if err := json.Unmarshal(raw, &b); err != nil {
			if fail("get block", fmt.Errorf("decode block of %s: %w", quote(acct), err)) {
				return sv, v, true
			}
			break
		}
		if now.Before(b.Until) {
			b.User = acct
			sv.block, sv.b = blockPresent, b
			return sv, v, false
		}
		sv.block = blockAbsent
	default:
		sv.block = blockAbsent
	}

	// Everything else in one batch: the account's counter and gauge, then
	// every counter and gauge of the rules that apply.
	type use struct {
		kind    uint8
		key     string // sv map key
		w       window
		partner int // FailedRatio: the other count of the pair, else -1
	}
	const (
		useCount = iota
		useAccountGauge
		useRuleGauge
		useCountry
	)
	ops := make([]SharedOp, 0, 2+len(its))
	uses := make([]use, 0, 2+len(its))
	add := func(op SharedOp, u use) {
		ops = append(ops, op)
		uses = append(uses, u)
	}
	add(counterOp("u|"+acct, now, perMinute, rs.Zone, 1), use{kind: useCount, key: "u|" + acct, w: perMinute, partner: -1})
	if c.ID != "" {
		add(gaugeOp(gaugeAccount+acct, 1, e.opt.SharedGaugeTTL), use{kind: useAccountGauge, key: gaugeAccount + acct, partner: -1})
	}

	// Countries this node knows are called before need no round trip:
	// Shared never forgets one sooner than the local table does.
	var countries []string
	for _, it := range its {
		if it.r.Measure == NewCountry && d.ok {
			countries = append(countries, it.ck+"|"+d.cc)
		}
	}
	if len(countries) > 0 {
		e.mu.Lock()
		for _, nk := range countries {
			if _, ok := e.countries.get(nk); ok {
				sv.seen[nk] = true
			}
		}
		e.mu.Unlock()
	}

	gauged := map[string]bool{}
	for _, it := range its {
		r, ck := it.r, it.ck
		switch r.Measure {
		case CallsPerMinute, CallsPerDay:
			w := windowOf(r.Measure)
			add(counterOp(ck, now, w, rs.Zone, 1), use{kind: useCount, key: ck, w: w, partner: -1})
		case ShortCalls, MinutesPerDay:
			w := windowOf(r.Measure)
			add(counterOp(ck, now, w, rs.Zone, 0), use{kind: useCount, key: ck, w: w, partner: -1})
		case FailedRatio:
			n := len(ops)
			add(counterOp(ck+"|t", now, perHour, rs.Zone, 0), use{kind: useCount, key: ck + "|t", w: perHour, partner: n + 1})
			add(counterOp(ck+"|f", now, perHour, rs.Zone, 0), use{kind: useCount, key: ck + "|f", w: perHour, partner: n})
		case ConcurrentCalls:
			if gauged[ck] {
				continue
			}
			gauged[ck] = true
			add(gaugeOp(gaugeRule+ck, 1, e.opt.SharedGaugeTTL), use{kind: useRuleGauge, key: ck, partner: -1})
		case NewCountry:
			if !d.ok {
				continue
			}
			nk := ck + "|" + d.cc
			if _, known := sv.seen[nk]; known {
				continue
			}
			sv.seen[nk] = false // asked once, whatever the answer
			add(gaugeOp(gaugeCountry+nk, 0, countryTTL), use{kind: useCountry, key: nk, partner: -1})
		}
	}
	e.runShared(ops)

	// The gauges raised first: a failure that ends the check lowers them.
	for i, u := range uses {
		if ops[i].Err != nil {
			continue
		}
		switch u.kind {
		case useAccountGauge:
			sv.held = append(sv.held, u.key)
		case useRuleGauge:
			sv.held = append(sv.held, gaugeRule+u.key)
		}
	}
	for i, u := range uses {
		o := &ops[i]
		if o.Err != nil {
			op := "count"
			switch u.kind {
			case useAccountGauge, useRuleGauge:
				op = "gauge"
			case useCountry:
				op = "country"
				delete(sv.seen, u.key)
			}
			if fail(op, o.Err) {
				return sv, v, true
			}
			continue
		}
		switch u.kind {
		case useCount:
			if u.partner >= 0 && ops[u.partner].Err != nil {
				continue // a ratio needs both of its counts
			}
			sv.counters[u.key] = o.estimate(now, u.w)
		case useRuleGauge:
			// A count a lost Ended left below zero must not hide this
			// call.
			sv.gauges[u.key] = max(o.Cur, 1)
		case useCountry:
			sv.seen[u.key] = o.Cur > 0
		}
	}
	return sv, v, false
}

// lower releases gauges this node raised, outside e.mu.
func (e *Engine) lower(keys []string) {
	ops := make([]SharedOp, len(keys))
	for i, k := range keys {
		ops[i] = gaugeOp(k, -1, e.opt.SharedGaugeTTL)
	}
	e.runShared(ops)
	for i := range ops {
		if ops[i].Err != nil {
			e.sharedErr("gauge", ops[i].Err)
		}
	}
}

// drainReleases lowers the Shared gauges of the calls release forgot
// while e.mu was held. Call it without e.mu.
func (e *Engine) drainReleases() {
	if e.opt.Shared == nil {
		return
	}
	e.mu.Lock()
	keys := e.relq
	e.relq = nil
	e.mu.Unlock()
	e.lower(keys)
}

// putBlock writes a block to Shared; a failure leaves the account marked
// unsynced, so that the local block holds (and is written again) rather
// than being taken for an unblock made elsewhere.
func (e *Engine) putBlock(b Block) {
	v, err := json.Marshal(b)
	if err == nil {
		err = e.opt.Shared.PutBlock(b.User, v, b.Until)
	}
	e.mu.Lock()
	if err != nil {
		e.unsynced[b.User] = true
	} else {
		delete(e.unsynced, b.User)
	}
	e.mu.Unlock()
	if err != nil {
		e.sharedErr("put block", err)
	}
}

// sharedBlocks lists the blocks in force in Shared.
func (e *Engine) sharedBlocks(now time.Time) ([]Block, error) {
	var l []Block
	err := e.opt.Shared.ForEachBlock(func(user string, v []byte) error {
		var b Block
		if err := json.Unmarshal(v, &b); err != nil {
			return nil // not ours to judge; Check treats it alike
		}
		b.User = user
		if now.Before(b.Until) {
			l = append(l, b)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(l, func(i, j int) bool {
		if !l[i].Until.Equal(l[j].Until) {
			return l[i].Until.Before(l[j].Until)
		}
		return l[i].User < l[j].User
	})
	return l, nil
}

// sharedErr counts a Shared failure and logs it at Warn at most once a
// minute (Debug otherwise).
func (e *Engine) sharedErr(op string, err error) {
	now := e.opt.Now()
	e.mu.Lock()
	e.stats.SharedErrors++
	warn := now.Sub(e.sharedWarned) >= time.Minute || now.Before(e.sharedWarned)
	if warn {
		e.sharedWarned = now
	}
	e.mu.Unlock()
	if warn {
		e.log.Warn("shared fraud state failed", "op", op, "err", err, "fail_closed", e.opt.SharedFailClosed)
		return
	}
	e.log.Debug("shared fraud state failed", "op", op, "err", err)
}
