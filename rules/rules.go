// Package rules is sipwall's anti-fraud engine: per-user, per-source and
// per-prefix counters on outbound calls, checked against a YAML rule file,
// with actions from an alert up to blocking the account.
//
// The B2BUA calls Check before it places a call from outside, Answered and
// Ended as the call progresses. Counters live in memory (bounded) and the
// day-long and hour-long ones are written behind to the state store, so a
// restart does not reset a day's budget. See README.md.
package rules

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipwall/sipwall/dialplan"
	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/store"
)

// Defaults and bounds.
const (
	DefaultMaxCalls   = 100000
	DefaultMaxTracked = 100000
	DefaultQueue      = 1000
	maxKeyPart        = 128
	bucketName        = "fraud"
	flushEvery        = time.Second
	countryTTL        = 400 * 24 * time.Hour
)

// Call is what is known of a call from outside before it is placed, or
// of a destination an outside party names inside one (a transfer's
// target, a followed redirect).
type Call struct {
	// ID is the call's key (unique per call); "" for a one-off check (a
	// transfer, a redirect): counted and judged, never in progress, no
	// Ended to come.
	ID      string
	User    string     // authenticated user ("" for trusted peers)
	Trusted string     // trusted peer name
	Source  netip.Addr // transport peer
	// Destination is the destination as named (R-URI user, tel: number,
	// Refer-To user); the engine reads it with its dial plan unless
	// Number holds the reading already.
	Destination string
	Number      *dialplan.Number
	// Route is how the destination was named: "invite" (or ""), "refer",
	// "redirect". For alerts and logs.
	Route string
}

// Verdict is the answer of Check.
type Verdict struct {
	Allow  bool
	Status int
	Reason string
	Rule   string // "<set>/<rule>" that decided, "" if none
	Action string
	// MaxDuration > 0: tear the call down (BYE both legs) when it has
	// lasted this long (call_duration / minutes_per_day budget left).
	MaxDuration time.Duration
	// Shadow: the rule that fired is in shadow mode (Allow stays true).
	Shadow bool
}

// Alert reports a threshold reached.
type Alert struct {
	Rule    string
	Level   string // "warning" | "critical"
	Key     string // the counter key: user, source address or prefix
	Measure string
	Value   float64
	Limit   float64
	Call    Call
	Time    time.Time
	Action  string // the rule's action (taken only for critical, not shadow)
	Shadow  bool
}

// Block is a blocked account.
type Block struct {
	User   string    `json:"user"`
	Rule   string    `json:"rule"`
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until"`
	Reason string    `json:"reason"`
}

// Options configures New. Zero values take the defaults.
type Options struct {
	Rules *RuleSet     // nil = no rules
	Store *store.Store // counters persisted (bucket "fraud"); nil = memory only
	// Plan reads destinations (the dial plan every layer shares); nil:
	// a plan of the rule file's country. The home country of
	// "international" is the file's country, else the plan's.
	Plan *dialplan.Plan
	// Now is the clock; windows are computed from it. Default time.Now.
	Now func() time.Time
	// Ban is the ban_source sink (reason "fraud").
	Ban func(ip netip.Addr, d time.Duration, reason, evidence string)
	// OnAlert gets every warning and critical; may be nil.
	OnAlert func(Alert)
	// Webhook: POST each Alert as JSON (http or https URL); "" = off.
	Webhook        string
	WebhookTimeout time.Duration // per attempt, default 5s
	Logger         *slog.Logger  // component "rules"; default discards

	MaxCalls   int // calls in progress tracked, default 100000
	MaxTracked int // counters, remembered countries, blocks: each default 100000
	QueueSize  int // webhook queue, default 1000

	// Shared, when set, holds the counters, calls in progress, account
	// blocks and called countries of every node of a cluster; the local
	// tables stay as a cache and fallback (nil: this node alone).
	Shared Shared
	// SharedFailClosed rejects a call (503 ReasonUnavailable) when
	// Shared fails during its Check, instead of counting on this node
	// alone and going on.
	SharedFailClosed bool
	// SharedGaugeTTL is how long a calls-in-progress gauge outlives its
	// last change in Shared (default DefaultSharedGaugeTTL): the bound on
	// the count a crashed node leaves behind.
	SharedGaugeTTL time.Duration
}

// counter is a fixed window, with the previous window kept for the
// sliding estimate of minute and hour windows.
type counter struct {
	Start int64   `json:"s"` // unix nanoseconds
	End   int64   `json:"e"`
	Cur   float64 `json:"c"`
	Prev  float64 `json:"p,omitempty"`
}

// record is the value of the "fraud" bucket: keys "c|…" counters,
// "b|…" blocks, "n|…" countries a user has called.
type record struct {
	C *counter `json:"c,omitempty"`
	B *Block   `json:"b,omitempty"`
	N bool     `json:"n,omitempty"`
}

type window int

const (
	perMinute window = iota
	perHour
	perDay
)

type inflight struct {
	call     Call
	start    time.Time
	conc     []string // concurrent_calls keys it holds
	shared   []string // Shared gauges it raised
	account  string
	answered bool
	elem     *list.Element
}

// Engine evaluates calls against the rules. It is safe for concurrent use.
type Engine struct {
	opt    Options
	log    *slog.Logger
	rs     atomic.Pointer[RuleSet]
	bucket *store.Bucket[record]
	client *http.Client
	queue  chan Alert
	// backoff is the first retry delay of the webhook (doubles).
	backoff time.Duration

	flushMu sync.Mutex

	mu        sync.Mutex
	counters  *lru[*counter]
	countries *lru[bool]
	dirty     map[string]bool // store keys to write
	calls     map[string]*inflight
	order     *list.List     // of *inflight, oldest first
	conc      map[string]int // concurrent_calls key and "u|account" → calls
	blocks    map[string]Block
	stats     Stats
	logged    map[string]time.Time // rule+level → last Info line (rate limit)

	// With Shared: gauges of ended calls to lower once e.mu is released,
	// accounts whose block did not reach Shared, last Warn of a failure.
	relq         []string
	unsynced     map[string]bool
	sharedWarned time.Time
}

// New builds an Engine and loads persisted counters and blocks.
func New(opt Options) (*Engine, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opt.WebhookTimeout < 0 || opt.MaxCalls < 0 || opt.MaxTracked < 0 || opt.QueueSize < 0 || opt.SharedGaugeTTL < 0 {
		return nil, errors.New("rules: negative option")
	}
	if opt.SharedGaugeTTL == 0 {
		opt.SharedGaugeTTL = DefaultSharedGaugeTTL
	}
	if opt.WebhookTimeout == 0 {
		opt.WebhookTimeout = 5 * time.Second
	}
	if opt.MaxCalls == 0 {
		opt.MaxCalls = DefaultMaxCalls
	}
	if opt.MaxTracked == 0 {
		opt.MaxTracked = DefaultMaxTracked
	}
	if opt.QueueSize == 0 {
		opt.QueueSize = DefaultQueue
	}
	if opt.Webhook != "" {
		u, err := url.Parse(opt.Webhook)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("rules: webhook %q: not an http(s) URL", opt.Webhook)
		}
	}
	rs := opt.Rules
	if rs == nil {
		rs = &RuleSet{Zone: time.UTC, Lists: map[string][]string{}}
	}
	e := &Engine{
		opt:       opt,
		log:       opt.Logger.With("component", "rules"),
		client:    &http.Client{Timeout: opt.WebhookTimeout},
		queue:     make(chan Alert, opt.QueueSize),
		backoff:   time.Second,
		counters:  newLRU[*counter](opt.MaxTracked),
		countries: newLRU[bool](opt.MaxTracked),
		dirty:     map[string]bool{},
		calls:     map[string]*inflight{},
		order:     list.New(),
		conc:      map[string]int{},
		blocks:    map[string]Block{},
		logged:    map[string]time.Time{},
		unsynced:  map[string]bool{},
	}
	e.rs.Store(rs)
	if opt.Store != nil {
		b, err := store.NewBucket[record](opt.Store, bucketName)
		if err != nil {
			return nil, fmt.Errorf("rules: %w", err)
		}
		e.bucket = b
		if err := e.load(); err != nil {
			return nil, fmt.Errorf("rules: load %s: %w", bucketName, err)
		}
	}
	return e, nil
}

func (e *Engine) load() error {
	now := e.opt.Now()
	return e.bucket.ForEach(func(key string, v record, _ time.Time) error {
		switch {
		case strings.HasPrefix(key, "c|") && v.C != nil:
			if v.C.End+(v.C.End-v.C.Start) > now.UnixNano() {
				c := *v.C
				e.counters.put(key[2:], &c)
			}
		case strings.HasPrefix(key, "b|") && v.B != nil:
			if v.B.Until.After(now) && len(e.blocks) < e.opt.MaxTracked {
				e.blocks[key[2:]] = *v.B
			}
		case strings.HasPrefix(key, "n|") && v.N:
			e.countries.put(key[2:], true)
		}
		return nil
	})
}

// Builtin reports whether the rules in force include the built-in ones.
func (e *Engine) Builtin() bool {
	for _, s := range e.rs.Load().Sets {
		if s.builtin {
			return true
		}
	}
	return false
}

// Swap replaces the rules atomically. Counters are keyed by "<set>/<rule>"
// and survive a reload of rules with the same names.
func (e *Engine) Swap(rs *RuleSet) {
	if rs == nil {
		rs = &RuleSet{Zone: time.UTC, Lists: map[string][]string{}}
	}
	e.rs.Store(rs)
}

// dest is a destination as the dial plan read it.
type dest struct {
	ok     bool
	digits string // E.164 without '+'
	cc     string
	class  dialplan.Class
}

// dest reads c's destination: the reading the caller made, else the
// engine's plan, else the rule file's.
func (e *Engine) dest(c Call, rs *RuleSet) dest {
	var n dialplan.Number
	switch {
	case c.Number != nil:
		n = *c.Number
	case e.opt.Plan != nil:
		n = e.opt.Plan.Parse(c.Destination)
	case rs.plan != nil:
		n = rs.plan.Parse(c.Destination)
	default:
		n = noCountry.Parse(c.Destination)
	}
	if !n.Valid() {
		return dest{class: n.Class}
	}
	d := n.E164[1:]
	return dest{ok: true, digits: d, cc: dialplan.CountryCode(d), class: n.Class}
}

// noCountry reads destinations for rule sets built in code.
var noCountry = dialplan.MustNew(dialplan.Config{})

// home is the calling code "international" compares with.
func (e *Engine) home(rs *RuleSet) string {
	if rs.home == "" && e.opt.Plan != nil {
		return e.opt.Plan.CountryCode()
	}
	return rs.home
}

func (r *Rule) matches(d dest, home string) bool {
	if r.matchAll {
		return true
	}
	if slices.Contains(r.Classes, d.class) {
		return true
	}
	if !d.ok {
		return r.Unnormal && d.class == dialplan.Invalid
	}
	if r.International && d.cc != home {
		return true
	}
	if len(r.match) > 0 {
		for i := 1; i <= len(d.digits); i++ {
			if _, ok := r.match[d.digits[:i]]; ok {
				return true
			}
		}
	}
	return false
}

func (s *Set) applies(c Call) bool {
	if c.User != "" {
		return contains(s.Users, "*") || contains(s.Users, c.User)
	}
	if c.Trusted != "" {
		return contains(s.Trusted, "*") || contains(s.Trusted, c.Trusted)
	}
	return s.Anonymous
}

func cut(s string) string {
	if len(s) > maxKeyPart {
		return s[:maxKeyPart]
	}
	return s
}

// account is the key of a caller: the user, "peer:<name>" for a
// trusted peer, "anon:<address>" for a caller with neither.
func account(c Call) string {
	switch {
	case c.User != "":
		return cut(c.User)
	case c.Trusted != "":
		return "peer:" + cut(c.Trusted)
	}
	return "anon:" + c.Source.Unmap().String()
}

func perKey(r *Rule, c Call, d dest) string {
	switch r.Per {
	case "source":
		return c.Source.Unmap().String()
	case "prefix":
		if !d.ok {
			return string(d.class) // invalid, extension, name, ...
		}
		if len(d.digits) > 4 {
			return d.digits[:4]
		}
		return d.digits
	}
	return account(c)
}

func bounds(now time.Time, w window, loc *time.Location) (start, end time.Time) {
	switch w {
	case perMinute:
		start = now.Truncate(time.Minute)
		return start, start.Add(time.Minute)
	case perHour:
		start = now.Truncate(time.Hour)
		return start, start.Add(time.Hour)
	}
	// A calendar day in the zone: time.Date normalises across DST, so a
	// day is 23 or 25 hours when it must be.
	y, m, d := now.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, loc), time.Date(y, m, d+1, 0, 0, 0, 0, loc)
}

// counter returns the counter under key, rolled to the window holding now.
// Caller holds e.mu.
func (e *Engine) counter(key string, now time.Time, w window, loc *time.Location) *counter {
	c, ok := e.counters.get(key)
	n := now.UnixNano()
	if ok && n >= c.Start && n < c.End {
		return c
	}
	if ok && n < c.Start && w != perDay {
		return c // clock stepped back: keep counting in the window we have
	}
	s, en := bounds(now, w, loc)
	nc := &counter{Start: s.UnixNano(), End: en.UnixNano()}
	if ok && w != perDay && c.End == nc.Start {
		nc.Prev = c.Cur
	}
	if e.counters.put(key, nc) {
		e.stats.Evicted++
	}
	return nc
}

// value is the count over the last window: the current fixed window plus
// the previous one weighted by its overlap (minute and hour), or the
// calendar day.
func (c *counter) value(now time.Time, w window) float64 {
	if w == perDay || c.Prev == 0 {
		return c.Cur
	}
	left := float64(c.End-now.UnixNano()) / float64(c.End-c.Start)
	if left < 0 {
		left = 0
	}
	return c.Cur + c.Prev*left
}

func (e *Engine) add(key string, now time.Time, w window, loc *time.Location, delta float64) float64 {
	c := e.counter(key, now, w, loc)
	c.Cur += delta
	if w != perMinute {
		e.dirty["c|"+key] = true
	}
	return c.value(now, w)
}

func (e *Engine) peek(key string, now time.Time, w window, loc *time.Location) float64 {
	return e.counter(key, now, w, loc).value(now, w)
}

// fired is a rule that reached a threshold on this call.
type fired struct {
	r      *Rule
	level  string
	key    string
	value  float64
	limit  float64
	maxDur time.Duration // teardown budget
	reject bool          // the action rejects this call
}

// Check decides on a new call before it is placed and counts the attempt.
// With Options.Shared it reads and counts in Shared first, without e.mu
// (see checkShared), and decides on the fleet's values.
func (e *Engine) Check(c Call) Verdict {
	now := e.opt.Now()
	rs := e.rs.Load()
	acct := account(c)
	d := e.dest(c, rs)
	itsp := rs.items(c, d, e.home(rs))
	its := *itsp

	var sv *sharedView
	if e.opt.Shared != nil {
		var v Verdict
		var done bool
		if sv, v, done = e.checkShared(c, rs, its, acct, d, now); done {
			return v
		}
	}

	// An emergency call is never refused, limited or torn down by a rule,
	// nor by a blocked account: it is counted and alerts.
	emergency := d.class == dialplan.Emergency
	e.mu.Lock()
	e.stats.Checks++
	var reput *Block // an unsynced local block Shared lacks: write it again
	switch {
	case emergency:
	case sv != nil && sv.block == blockPresent:
		b := sv.b
		if _, ok := e.blocks[acct]; ok || len(e.blocks) < e.opt.MaxTracked {
			e.blocks[acct] = b // cached for when Shared fails
		}
		e.stats.Blocked++
		e.stats.Rejected++
		e.mu.Unlock()
		return Verdict{Status: 403, Reason: "Account Blocked", Rule: b.Rule, Action: ActBlockAccount}
	case sv != nil && sv.block == blockAbsent && !e.unsynced[acct]:
		// Unblocked (or ended) on some node: the cluster decides.
		delete(e.blocks, acct)
	default:
		if b, ok := e.blocks[acct]; ok {
			if now.Before(b.Until) {
				e.stats.Blocked++
				e.stats.Rejected++
				if sv != nil && sv.block == blockAbsent {
					reput = &b
				}
				e.mu.Unlock()
				if reput != nil {
					e.putBlock(*reput)
				}
				if sv != nil {
					e.lower(sv.held)
				}
				return Verdict{Status: 403, Reason: "Account Blocked", Rule: b.Rule, Action: ActBlockAccount}
			}
			delete(e.blocks, acct)
			delete(e.unsynced, acct)
		}
	}
	e.add("u|"+acct, now, perMinute, rs.Zone, 1)

	var fires []fired
	var concKeys, newCountries []string
	for _, it := range its {
		r, k, ck := it.r, it.k, it.ck
		var v float64
		f := fired{r: r, key: k}
		switch r.Measure {
		case CallsPerMinute:
			v = sv.counter(ck, e.add(ck, now, perMinute, rs.Zone, 1))
		case CallsPerDay:
			v = sv.counter(ck, e.add(ck, now, perDay, rs.Zone, 1))
		case ConcurrentCalls:
			v = float64(e.conc[ck] + 1)
			if sv != nil {
				if n, ok := sv.gauges[ck]; ok {
					v = n
				}
			}
			concKeys = append(concKeys, ck)
		case ShortCalls:
			v = sv.counter(ck, e.peek(ck, now, perHour, rs.Zone))
		case FailedRatio:
			total := sv.counter(ck+"|t", e.peek(ck+"|t", now, perHour, rs.Zone))
			if total >= 10 {
				v = 100 * sv.counter(ck+"|f", e.peek(ck+"|f", now, perHour, rs.Zone)) / total
			}
		case MinutesPerDay:
			v = sv.counter(ck, e.peek(ck, now, perDay, rs.Zone))
			if r.Action == ActTeardown && r.Critical > 0 {
				if left := r.Critical - v; left > 0 {
					f.maxDur = time.Duration(left * float64(time.Minute))
				}
			}
		case CallDuration:
			// Judged when the call ends; here only the limit is set.
			if r.Action == ActTeardown && r.Critical > 0 && !r.Shadow {
				f.maxDur = time.Duration(r.Critical * float64(time.Second))
				fires = append(fires, f)
			}
			continue
		case NewCountry:
			if !d.ok {
				continue
			}
			nk := ck + "|" + d.cc
			_, seen := e.countries.get(nk)
			if sv != nil {
				if s, ok := sv.seen[nk]; ok {
					seen = s
					if s {
						e.countries.put(nk, true) // learnt from another node
					}
				}
			}
			if !seen {
				v = 1
				newCountries = append(newCountries, nk)
			}
		case OutsideHours:
			if r.outside(now.In(rs.Zone)) {
				v = 1
			}
		}
		switch {
		case r.Critical > 0 && v >= r.Critical:
			f.level, f.value, f.limit = "critical", v, r.Critical
			f.reject = r.Action == ActReject || r.Action == ActBlockAccount || r.Action == ActBanSource ||
				(r.Action == ActTeardown && f.maxDur == 0)
		case r.Warning > 0 && v >= r.Warning:
			f.level, f.value, f.limit = "warning", v, r.Warning
			f.reject = false
		default:
			f.level = ""
		}
		if f.level != "" || f.maxDur > 0 {
			fires = append(fires, f)
		}
	}
	putApplied(itsp)
	if emergency {
		for i := range fires {
			fires[i].reject, fires[i].maxDur = false, 0
		}
	}

	v := Verdict{Allow: true}
	var alerts []Alert
	var blocks []Block
	var bans []fired
	for _, f := range fires {
		if f.level != "" {
			if f.level == "critical" {
				e.stats.Criticals++
			} else {
				e.stats.Warnings++
			}
			alerts = append(alerts, Alert{Rule: f.r.ID, Level: f.level, Key: f.key, Measure: f.r.Measure,
				Value: f.value, Limit: f.limit, Call: c, Time: now, Action: f.r.Action, Shadow: f.r.Shadow})
		}
		if f.level != "critical" && f.maxDur == 0 {
			continue
		}
		if f.r.Shadow {
			if f.level == "critical" {
				e.stats.Shadowed++
				if v.Allow && v.Rule == "" {
					v.Shadow, v.Rule, v.Action = true, f.r.ID, f.r.Action
				}
			}
			continue
		}
		switch {
		case f.reject:
			if f.r.Action == ActBlockAccount {
				blocks = append(blocks, Block{User: acct, Rule: f.r.ID, Since: now, Until: now.Add(f.r.BlockFor),
					Reason: fmt.Sprintf("%s %g >= %g", f.r.Measure, f.value, f.limit)})
			}
			if f.r.Action == ActBanSource && c.Source.IsValid() {
				bans = append(bans, f)
			}
			if v.Allow {
				v = Verdict{Status: f.r.Status, Reason: sbc.ReasonPhrase(f.r.Status, "Call Rejected"), Rule: f.r.ID, Action: f.r.Action}
			}
		case f.maxDur > 0 && v.Allow:
			if v.MaxDuration == 0 || f.maxDur < v.MaxDuration {
				v.MaxDuration, v.Rule, v.Action, v.Shadow = f.maxDur, f.r.ID, ActTeardown, false
			}
		case f.level == "critical" && v.Allow && v.Rule == "":
			v.Rule, v.Action = f.r.ID, f.r.Action // alert
		}
	}
	for _, b := range blocks {
		if len(e.blocks) < e.opt.MaxTracked {
			e.blocks[b.User] = b
			e.stats.AccountBlocks++
			if e.opt.Shared != nil {
				// Not in Shared yet: until putBlock has written it, a
				// concurrent Check must not take its absence there
				// for an unblock.
				e.unsynced[b.User] = true
			}
		} else {
			e.stats.Evicted++
		}
	}
	var held []string
	if sv != nil {
		held = sv.held
	}
	if v.Allow {
		e.stats.Allowed++
		if v.MaxDuration > 0 {
			e.stats.Teardowns++
		}
		for _, nk := range newCountries {
			e.countries.put(nk, true)
			e.dirty["n|"+nk] = true
		}
		if c.ID != "" {
			e.track(c, acct, concKeys, held, now)
			held = nil // the call's now, lowered when it ends
		}
	} else {
		e.stats.Rejected++
	}
	e.stats.SourceBans += uint64(len(bans))
	e.mu.Unlock()

	if e.opt.Shared != nil {
		e.lower(held) // a rejected call is not in progress
		e.drainReleases()
		for _, b := range blocks {
			e.putBlock(b)
		}
		if v.Allow {
			for _, nk := range newCountries {
				if _, err := e.opt.Shared.AddGauge(gaugeCountry+nk, 1, countryTTL); err != nil {
					e.sharedErr("country", err)
				}
			}
		}
	}
	for _, b := range blocks {
		e.log.Warn("account blocked", "user", quote(b.User), "rule", b.Rule, "until", b.Until, "reason", b.Reason)
		if e.bucket != nil {
			if err := e.bucket.PutTTL("b|"+b.User, record{B: &b}, b.Until.Sub(now)); err != nil {
				e.storeErr(err)
			}
		}
	}
	for _, f := range bans {
		e.log.Warn("source banned", "source", c.Source, "rule", f.r.ID, "for", f.r.BlockFor)
		if e.opt.Ban != nil {
			e.opt.Ban(c.Source.Unmap(), f.r.BlockFor, "fraud",
				fmt.Sprintf("rule %s: %s %g >= %g", f.r.ID, f.r.Measure, f.value, f.limit))
		}
	}
	for _, a := range alerts {
		e.alert(a)
	}
	if !v.Allow || v.Shadow {
		e.log.Debug("call checked", "call", quote(c.ID), "allow", v.Allow, "rule", v.Rule, "action", v.Action, "shadow", v.Shadow)
	}
	return v
}

// counter is Shared's estimate for a counter key when Check read it,
// else the local one.
func (sv *sharedView) counter(key string, local float64) float64 {
	if sv != nil {
		if n, ok := sv.counters[key]; ok {
			return n
		}
	}
	return local
}

// track records an allowed call as in progress, with the Shared gauges it
// raised (held). Caller holds e.mu.
func (e *Engine) track(c Call, acct string, concKeys, held []string, now time.Time) {
	if c.ID == "" {
		return
	}
	if old, ok := e.calls[c.ID]; ok {
		e.release(old) // a reused ID replaces the old call
	}
	if len(e.calls) >= e.opt.MaxCalls {
		// Full: push out the oldest call. The B2BUA ends every call it
		// places, so this only happens when Ended calls go missing.
		e.release(e.order.Front().Value.(*inflight))
		e.stats.Evicted++
	}
	f := &inflight{call: c, start: now, conc: concKeys, account: acct, shared: held}
	for _, k := range concKeys {
		e.conc[k]++
	}
	e.conc["u|"+acct]++
	e.calls[c.ID] = f
	f.elem = e.order.PushBack(f)
}

// release forgets an in-progress call; its Shared gauges are queued for
// drainReleases. Caller holds e.mu.
func (e *Engine) release(f *inflight) {
	e.relq = append(e.relq, f.shared...)
	delete(e.calls, f.call.ID)
	e.order.Remove(f.elem)
	for _, k := range append(f.conc, "u|"+f.account) {
		if e.conc[k] <= 1 {
			delete(e.conc, k)
		} else {
			e.conc[k]--
		}
	}
}

// Answered records that the call was answered.
func (e *Engine) Answered(id string) {
	e.mu.Lock()
	if f, ok := e.calls[id]; ok {
		f.answered = true
	}
	e.mu.Unlock()
}

// Ended records the end of a call: short calls, minutes, the failed ratio
// and the concurrent count (with Shared, there too, after e.mu).
func (e *Engine) Ended(id string, answered bool, duration time.Duration) {
	now := e.opt.Now()
	rs := e.rs.Load()
	e.mu.Lock()
	f, ok := e.calls[id]
	if !ok {
		e.stats.UnknownEnded++
		e.mu.Unlock()
		return
	}
	e.release(f)
	c := f.call
	d := e.dest(c, rs)
	type add struct {
		key   string
		w     window
		delta float64
	}
	var alerts []Alert
	var adds []add
	count := func(key string, w window, delta float64) {
		e.add(key, now, w, rs.Zone, delta)
		if e.opt.Shared != nil {
			adds = append(adds, add{key, w, delta})
		}
	}
	itsp := rs.items(c, d, e.home(rs))
	for _, it := range *itsp {
		r, k, ck := it.r, it.k, it.ck
		switch r.Measure {
		case ShortCalls:
			if answered && duration < time.Duration(r.ShortSeconds)*time.Second {
				count(ck, perHour, 1)
			}
		case MinutesPerDay:
			if answered && duration > 0 {
				count(ck, perDay, duration.Minutes())
			}
		case FailedRatio:
			count(ck+"|t", perHour, 1)
			if !answered {
				count(ck+"|f", perHour, 1)
			}
		case CallDuration:
			m := duration.Seconds()
			a := Alert{Rule: r.ID, Key: k, Measure: r.Measure, Value: m, Call: c, Time: now, Action: r.Action, Shadow: r.Shadow}
			switch {
			case answered && r.Critical > 0 && m >= r.Critical:
				a.Level, a.Limit = "critical", r.Critical
				e.stats.Criticals++
			case answered && r.Warning > 0 && m >= r.Warning:
				a.Level, a.Limit = "warning", r.Warning
				e.stats.Warnings++
			default:
				continue
			}
			alerts = append(alerts, a)
		}
	}
	putApplied(itsp)
	e.mu.Unlock()
	if e.opt.Shared != nil {
		// The gauges release lowered and the counts of the call's end, in
		// one batch.
		e.mu.Lock()
		lowered := e.relq
		e.relq = nil
		e.mu.Unlock()
		ops := make([]SharedOp, 0, len(lowered)+len(adds))
		for _, k := range lowered {
			ops = append(ops, gaugeOp(k, -1, e.opt.SharedGaugeTTL))
		}
		for _, a := range adds {
			ops = append(ops, counterOp(a.key, now, a.w, rs.Zone, a.delta))
		}
		e.runShared(ops)
		for i := range ops {
			if err := ops[i].Err; err != nil {
				if i < len(lowered) {
					e.sharedErr("gauge", err)
				} else {
					e.sharedErr("count", err)
				}
			}
		}
	}
	for _, a := range alerts {
		e.alert(a)
	}
}

// Counters returns a user's calls in progress and call attempts in the
// last minute (for the OPA input). A trusted peer's key is "peer:<name>".
//
// With Shared the counts are the cluster's; when it fails, this node's.
func (e *Engine) Counters(user string) (inProgress, lastMinute int) {
	now := e.opt.Now()
	user = cut(user)
	if e.opt.Shared != nil {
		ops := []SharedOp{
			gaugeOp(gaugeAccount+user, 0, e.opt.SharedGaugeTTL),
			counterOp("u|"+user, now, perMinute, e.rs.Load().Zone, 0),
		}
		e.runShared(ops)
		err := ops[0].Err
		if err == nil {
			err = ops[1].Err
		}
		if err == nil {
			return int(max(ops[0].Cur, 0) + 0.5), int(ops[1].estimate(now, perMinute) + 0.5)
		}
		e.sharedErr("counters", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	inProgress = e.conc["u|"+user]
	if c, ok := e.counters.get("u|" + user); ok {
		n := now.UnixNano()
		switch {
		case n >= c.Start && n < c.End:
			lastMinute = int(c.value(now, perMinute) + 0.5)
		case n >= c.End && n < c.End+(c.End-c.Start):
			// The next window has begun with no call yet.
			left := float64(c.End+(c.End-c.Start)-n) / float64(c.End-c.Start)
			lastMinute = int(c.Cur*left + 0.5)
		}
	}
	return inProgress, lastMinute
}

// Blocked lists the blocked accounts, soonest end first: with Shared the
// cluster's (this node's when it fails).
func (e *Engine) Blocked() []Block {
	now := e.opt.Now()
	if e.opt.Shared != nil {
		l, err := e.sharedBlocks(now)
		if err == nil {
			return l
		}
		e.sharedErr("list blocks", err)
	}
	e.mu.Lock()
	l := make([]Block, 0, len(e.blocks))
	for _, b := range e.blocks {
		if now.Before(b.Until) {
			l = append(l, b)
		}
	}
	e.mu.Unlock()
	sort.Slice(l, func(i, j int) bool {
		if !l[i].Until.Equal(l[j].Until) {
			return l[i].Until.Before(l[j].Until)
		}
		return l[i].User < l[j].User
	})
	return l
}

// Unblock lifts a block and reports whether there was one. With Shared it
// lifts it on every node; if Shared fails, the block stays in Shared and
// the other nodes (and this one, once Shared answers again) keep it.
func (e *Engine) Unblock(user string) bool {
	user = cut(user)
	e.mu.Lock()
	_, ok := e.blocks[user]
	delete(e.blocks, user)
	delete(e.unsynced, user)
	e.mu.Unlock()
	if sh := e.opt.Shared; sh != nil {
		_, had, err := sh.GetBlock(user)
		if err == nil {
			ok = ok || had
			err = sh.DeleteBlock(user)
		}
		if err != nil {
			e.sharedErr("delete block", err)
		}
	}
	if e.bucket != nil {
		if err := e.bucket.Delete("b|" + user); err != nil {
			e.storeErr(err)
		}
	}
	if ok {
		e.log.Info("account unblocked", "user", quote(user))
	}
	return ok
}

// Flush writes the changed day and hour counters and the remembered
// countries to the store. Run calls it every second and when it returns.
func (e *Engine) Flush() error {
	if e.bucket == nil {
		return nil
	}
	e.flushMu.Lock()
	defer e.flushMu.Unlock()
	now := e.opt.Now()
	type w struct {
		key string
		rec record
		ttl time.Duration
	}
	e.mu.Lock()
	todo := make([]w, 0, len(e.dirty))
	for k := range e.dirty {
		switch k[0] {
		case 'c':
			c, ok := e.counters.get(k[2:])
			if !ok {
				continue
			}
			cc := *c
			// Keep it through the next window: it is the sliding
			// estimate's previous window then.
			ttl := time.Duration(cc.End + (cc.End - cc.Start) - now.UnixNano())
			if ttl > 0 {
				todo = append(todo, w{k, record{C: &cc}, ttl})
			}
		case 'n':
			todo = append(todo, w{k, record{N: true}, countryTTL})
		}
	}
	clear(e.dirty)
	e.mu.Unlock()
	var first error
	for _, t := range todo {
		if err := e.bucket.PutTTL(t.key, t.rec, t.ttl); err != nil {
			e.storeErr(err)
			if first == nil {
				first = err
			}
		}
	}
	return first
}

func (e *Engine) storeErr(err error) {
	e.mu.Lock()
	e.stats.StoreErrors++
	e.mu.Unlock()
	e.log.Warn("store write failed", "err", err)
}

// Run sends webhooks and flushes counters to the store until ctx ends,
// then flushes once more.
func (e *Engine) Run(ctx context.Context) {
	var wg sync.WaitGroup
	if e.opt.Webhook != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.sender(ctx)
		}()
	}
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			e.Flush()
			wg.Wait()
			return
		case <-t.C:
			e.Flush()
			e.housekeeping()
		}
	}
}

func (e *Engine) housekeeping() {
	now := e.opt.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	for u, b := range e.blocks {
		if !now.Before(b.Until) {
			delete(e.blocks, u)
			delete(e.unsynced, u)
		}
	}
}

func (r *Rule) outside(t time.Time) bool {
	m := t.Hour()*60 + t.Minute()
	if r.From < r.To {
		return !(r.Days[t.Weekday()] && m >= r.From && m < r.To)
	}
	// Overnight hours (22:00-06:00) belong to the day they start on.
	if m >= r.From {
		return !r.Days[t.Weekday()]
	}
	if m < r.To {
		return !r.Days[t.AddDate(0, 0, -1).Weekday()]
	}
	return true
}

// quote makes attacker text safe for a log line.
func quote(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return fmt.Sprintf("%q", s)
}
