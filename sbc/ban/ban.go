// Package ban is sipwall's brute-force and scanner ban store. The digest
// auth layer reports failed digests (Failure) and successes (Success); the
// chain layer (Layer) drops banned peers and bans scanners by User-Agent.
// Bans live in memory for the per-request lookup, in the state store so a
// restart keeps them, and in a Sink (the XDP ban map, later). See README.md.
package ban

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipwall/sipwall/sbc/store"
)

// Defaults of Options.
const (
	DefaultThreshold        = 5
	DefaultWindow           = 60 * time.Second
	DefaultBanTime          = time.Hour
	DefaultMaxBanTime       = 7 * 24 * time.Hour
	DefaultForget           = 24 * time.Hour
	DefaultPrefix6Threshold = 20
	DefaultUserThreshold    = 20
	DefaultMaxTracked       = 100000
	DefaultMaxBans          = 100000
	DefaultSweepInterval    = 10 * time.Second
)

// Ban reasons. Ban accepts others; Stats counts those under ReasonOther.
const (
	ReasonAuthFailures   = "auth-failures"   // Threshold failed digests from one address
	ReasonPrefixFailures = "prefix-failures" // Prefix6Threshold failed digests from one IPv6 /64
	ReasonScanner        = "scanner"         // User-Agent of a known scanner
	ReasonManual         = "manual"          // Ban with an empty reason
	ReasonPolicy         = "policy"          // the policy layer
	ReasonOther          = "other"           // Stats key of any other reason
)

// ReasonUnknownUser is the auth layer's failure reason for a user name that
// does not exist. Such failures count against the address (and its /64) but
// not against the user: locking names that do not exist protects nobody,
// and spraying random names could otherwise push real users' counters out
// of the bounded user table.
const ReasonUnknownUser = "unknown-user"

// Limits on what is kept of caller and attacker text.
const (
	MaxUserLen     = 128 // user names are cut to this many bytes before counting
	MaxEvidenceLen = 256 // Ban evidence is cut to this many bytes
	maxQuoted      = 64  // attacker text quoted in evidence
	maxReasonLen   = 32
	maxGood        = 8 // known-good addresses kept per user
	nStripes       = 64
	// MinBits4 and MinBits6 are the widest prefixes Ban accepts: a wider
	// ban is almost certainly a mistake, and belongs in a firewall anyway.
	MinBits4 = 16
	MinBits6 = 32
)

// Sentinel errors; test with errors.Is.
var (
	// ErrTrusted means a ban of a trusted address was refused.
	ErrTrusted = errors.New("ban: address is trusted")
	// ErrBadPrefix means the prefix is invalid or wider than MinBits4/MinBits6.
	ErrBadPrefix = errors.New("ban: bad prefix")
	// ErrBadReason means a reason is not 1-32 bytes of [a-z0-9-].
	ErrBadReason = errors.New("ban: bad reason")
)

// Sink receives every ban and unban, for the XDP ban map. It must be fast
// and idempotent (the same ban may be pushed twice, an unban may name a
// prefix the sink no longer holds). It is called without the Manager's
// read locks held, so Banned never waits for it; calls for one prefix are
// serialised so the sink ends in the Manager's state.
type Sink interface {
	Ban(p netip.Prefix, until time.Time) error
	Unban(p netip.Prefix) error
}

// Shared carries bans between the nodes of a cluster (cmd/sipwall adapts
// sbc/cluster to it). Publish is called after every local ban, escalation
// (a new ban of a prefix, its Level raised) and unban (removed true, only
// Prefix set), never for a ban applied from another node by ApplyRemote or
// lifted by RemoveRemote, nor for bans that end or are evicted (every node
// does that by itself). It is called without the Manager's read and
// counter locks, serialised per prefix with the sink and store writes and
// with the state when it runs, so the last event of a prefix is its state
// here. It must not wait for the event's delivery back to this or any
// Manager (ApplyRemote takes the same per-prefix lock). Its errors are
// counted (Stats.SharedErrors), logged and returned by Ban and Unban; the
// ban holds on this node anyway.
type Shared interface {
	Publish(e Entry, removed bool) error
}

// Options configure a Manager. Zero values take the defaults.
type Options struct {
	// Store keeps bans and escalation levels across restarts; nil keeps
	// them in memory only.
	Store *store.Store
	// Threshold failures from one address within Window ban it (default 5).
	Threshold int
	// Window is the counting window of every threshold (default 60s).
	Window time.Duration
	// BanTime is the length of a first ban (default 1h).
	BanTime time.Duration
	// MaxBanTime caps escalation (default 7 days).
	MaxBanTime time.Duration
	// Forget is how long after the end of its last ban a prefix's
	// escalation level is remembered (default 24h).
	Forget time.Duration
	// Prefix6Threshold failures from the addresses of one IPv6 /64 together
	// within Window ban the /64 (default 20).
	Prefix6Threshold int
	// UserThreshold failures for one user name, from any address, within
	// Window lock the user (default 20).
	UserThreshold int
	// UserLockTime is the length of a user lock (default BanTime); locks do
	// not escalate.
	UserLockTime time.Duration
	// ScannerAgents are User-Agent substrings, compared ASCII
	// case-insensitively, that get a peer banned by the layer. nil means
	// DefaultScannerAgents; an empty non-nil slice turns the check off.
	ScannerAgents []string
	// Trusted addresses are never counted, banned or locked out.
	Trusted func(netip.Addr) (name string, ok bool)
	// Sink receives bans and unbans (nil: none).
	Sink Sink
	// Shared publishes local bans and unbans to the other nodes (nil:
	// single node). Bans from other nodes come in through ApplyRemote and
	// RemoveRemote.
	Shared Shared
	// MaxTracked bounds each counting table (addresses, /64s, users,
	// known-good users), the user locks and the escalation levels
	// (default 100000). When full the least recently used entry goes.
	MaxTracked int
	// MaxBans bounds the bans held (default 100000). When full, the ban
	// that ends first is lifted early (counted in Stats.Evicted).
	MaxBans int
	// SweepInterval is how often Run expires bans and idle counters
	// (default 10s).
	SweepInterval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger gets one Info line per ban and lock (default: discard).
	Logger *slog.Logger
	// OnEvent, when set, is told of every ban, unban and user lock, local
	// or from another node (for the decision log). Called without locks
	// held; it must be quick.
	OnEvent func(Event)
}

// Event is a ban, unban or lock, for Options.OnEvent.
type Event struct {
	// Kind is EventBan, EventUnban or EventLock.
	Kind string
	// Entry is the ban (Prefix only for an unban); Lock the user lock.
	Entry Entry
	Lock  UserLock
	// Remote: decided by another node.
	Remote bool
}

// Event kinds.
const (
	EventBan   = "banned"
	EventUnban = "unbanned"
	EventLock  = "locked"
)

func (m *Manager) event(ev Event) {
	if m.opt.OnEvent != nil {
		m.opt.OnEvent(ev)
	}
}

// DefaultScannerAgents are User-Agent substrings of SIP scanners and
// attack tools (SIPVicious and its "friendly-scanner" disguise, sipcli,
// sippts' "pplsip", VaxSIPUserAgent floods, iWar, SiVuS, smap, ...), taken
// from the lists fail2ban, Kamailio and APIBAN users keep. sipsak and
// "VoIP SIP" (Ozeki SDK) are legitimate tools that scanners hide behind:
// drop them from ScannerAgents if your own phones use them.
var DefaultScannerAgents = []string{
	"friendly-scanner",
	"friendly-request",
	"sipvicious",
	"sipcli",
	"sip-scan",
	"sipscan",
	"vaxsipuseragent",
	"vaxipuseragent",
	"sipsak",
	"iwar",
	"sundayddr",
	"sundayaddr",
	"smap",
	"pplsip",
	"siparmyknife",
	"sivus",
	"voip sip",
}

// Entry is one ban.
type Entry struct {
	// Prefix is a /32 or /128 for an address, a /64 for an IPv6 network,
	// or what a manual ban gave.
	Prefix netip.Prefix `json:"prefix"`
	// Reason is one of the Reason constants, or a caller's reason.
	Reason string `json:"reason"`
	// Evidence is a short human text; attacker text in it is quoted.
	Evidence string    `json:"evidence"`
	Since    time.Time `json:"since"`
	Until    time.Time `json:"until"`
	// Level is the escalation level: the ban lasts BanTime << Level,
	// capped at MaxBanTime, unless Ban was given a duration.
	Level int `json:"level"`
}

// UserLock is a locked user name.
type UserLock struct {
	User         string // as received, cut to MaxUserLen; attacker text
	Since, Until time.Time
	Evidence     string
}

// Stats is a snapshot of the counters.
type Stats struct {
	Bans        map[string]uint64 // new bans by reason
	Drops       uint64            // Banned hits
	Failures    uint64            // failures counted
	Ignored     uint64            // failures from trusted or already banned addresses
	UserLocks   uint64            // user locks started
	Evicted     uint64            // entries dropped because their table was full
	SinkErrors  uint64
	StoreErrors uint64
	// Remote counts bans applied from other nodes (ApplyRemote);
	// SharedErrors failed Publish calls.
	Remote       uint64
	SharedErrors uint64
	Active       int // bans in force
	Locked       int // user locks in force
}

var statReasons = []string{ReasonAuthFailures, ReasonPrefixFailures, ReasonScanner, ReasonManual, ReasonPolicy, ReasonOther}

// goodAddrs are a user's known-good addresses, oldest first.
type goodAddrs struct {
	a [maxGood]netip.Addr
	n int
}

func (g *goodAddrs) add(ip netip.Addr) {
	for i := 0; i < g.n; i++ {
		if g.a[i] == ip {
			copy(g.a[i:g.n], g.a[i+1:g.n])
			g.a[g.n-1] = ip
			return
		}
	}
	if g.n == maxGood {
		copy(g.a[:], g.a[1:])
		g.n--
	}
	g.a[g.n] = ip
	g.n++
}

func (g *goodAddrs) has(ip netip.Addr) bool {
	for i := 0; i < g.n; i++ {
		if g.a[i] == ip {
			return true
		}
	}
	return false
}

// levelState is a prefix's escalation level; its timed end is the moment
// it is forgotten.
type levelState struct {
	Level int       `json:"level"`
	Until time.Time `json:"until"` // end of the ban that set the level
}

// Manager holds the bans, the failure counters and the user locks. All
// methods are safe for concurrent use.
type Manager struct {
	opt      Options
	log      *slog.Logger
	agents   []string // lower case
	maxLevel int
	bansB    *store.Bucket[Entry]
	levelsB  *store.Bucket[levelState]

	// mu guards what the request path reads: bans and user locks.
	mu    sync.RWMutex
	bans  *timed[netip.Prefix, Entry]
	cnt4  [33]int32
	cnt6  [129]int32
	lens4 []uint8 // prefix lengths in use, longest first
	lens6 []uint8
	locks *timed[string, UserLock]

	// cmu guards the counters, known-good users and levels. Never held
	// together with mu.
	cmu    sync.Mutex
	addrs  *lru[netip.Addr, window]
	nets   *lru[netip.Prefix, window]
	users  *lru[string, window]
	good   *lru[string, goodAddrs]
	levels *timed[netip.Prefix, levelState]

	// stripes serialise the store and sink writes of one prefix, so
	// that they land in the order of the memory changes.
	stripes [nStripes]sync.Mutex

	bansBy                                       map[string]*atomic.Uint64
	drops, failures, ignored, userLocks, evicted atomic.Uint64
	sinkErrors, storeErrors                      atomic.Uint64
	remote, sharedErrors                         atomic.Uint64
	warnAt                                       atomic.Int64
}

// New builds a Manager. With a Store it loads the persisted bans and
// levels (expired ones and trusted addresses are skipped) and pushes the
// bans to the Sink.
func New(opt Options) (*Manager, error) {
	if opt.Threshold < 0 || opt.Prefix6Threshold < 0 || opt.UserThreshold < 0 ||
		opt.Window < 0 || opt.BanTime < 0 || opt.MaxBanTime < 0 || opt.Forget < 0 ||
		opt.UserLockTime < 0 || opt.MaxTracked < 0 || opt.MaxBans < 0 || opt.SweepInterval < 0 {
		return nil, errors.New("ban: negative option")
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&opt.Threshold, DefaultThreshold)
	def(&opt.Prefix6Threshold, DefaultPrefix6Threshold)
	def(&opt.UserThreshold, DefaultUserThreshold)
	def(&opt.MaxTracked, DefaultMaxTracked)
	def(&opt.MaxBans, DefaultMaxBans)
	defD(&opt.Window, DefaultWindow)
	defD(&opt.BanTime, DefaultBanTime)
	defD(&opt.MaxBanTime, DefaultMaxBanTime)
	defD(&opt.Forget, DefaultForget)
	defD(&opt.UserLockTime, opt.BanTime)
	defD(&opt.SweepInterval, DefaultSweepInterval)
	if opt.MaxBanTime < opt.BanTime {
		return nil, fmt.Errorf("ban: MaxBanTime %s is shorter than BanTime %s", opt.MaxBanTime, opt.BanTime)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	agents := opt.ScannerAgents
	if agents == nil {
		agents = DefaultScannerAgents
	}
	m := &Manager{
		opt:    opt,
		log:    log.With("component", "ban"),
		bans:   newTimed[netip.Prefix, Entry](),
		locks:  newTimed[string, UserLock](),
		addrs:  newLRU[netip.Addr, window](opt.MaxTracked),
		nets:   newLRU[netip.Prefix, window](opt.MaxTracked),
		users:  newLRU[string, window](opt.MaxTracked),
		good:   newLRU[string, goodAddrs](opt.MaxTracked),
		levels: newTimed[netip.Prefix, levelState](),
		bansBy: map[string]*atomic.Uint64{},
	}
	for _, a := range agents {
		if a == "" {
			return nil, errors.New("ban: empty scanner agent would match every request")
		}
		m.agents = append(m.agents, strings.ToLower(a))
	}
	for m.duration(m.maxLevel) < opt.MaxBanTime {
		m.maxLevel++
	}
	for _, r := range statReasons {
		m.bansBy[r] = new(atomic.Uint64)
	}
	if opt.Store != nil {
		var err error
		if m.bansB, err = store.NewBucket[Entry](opt.Store, "bans"); err != nil {
			return nil, fmt.Errorf("ban: %w", err)
		}
		if m.levelsB, err = store.NewBucket[levelState](opt.Store, "ban-level"); err != nil {
			return nil, fmt.Errorf("ban: %w", err)
		}
		if err := m.load(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// duration is the length of a ban at level lv.
func (m *Manager) duration(lv int) time.Duration {
	d := m.opt.BanTime
	for range lv {
		if d > m.opt.MaxBanTime/2 {
			return m.opt.MaxBanTime
		}
		d *= 2
	}
	return min(d, m.opt.MaxBanTime)
}

// Banned reports the ban covering ip: its exact address first, then any
// wider banned prefix (the /64 of an IPv6 address). A v4-mapped address
// is looked up as IPv4. Expired bans and trusted addresses are never
// reported. The miss path takes a read lock and allocates nothing.
func (m *Manager) Banned(ip netip.Addr) (Entry, bool) {
	ip = ip.Unmap()
	e, ok := m.find(ip)
	if !ok {
		return Entry{}, false
	}
	if m.isTrusted(ip) {
		return Entry{}, false
	}
	m.drops.Add(1)
	return e, true
}

func (m *Manager) find(ip netip.Addr) (Entry, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	lens := m.lens6
	if ip.Is4() {
		lens = m.lens4
	} else if !ip.Is6() {
		return Entry{}, false
	}
	var now time.Time
	for _, b := range lens {
		p, _ := ip.Prefix(int(b))
		it, ok := m.bans.m[p]
		if !ok {
			continue
		}
		if now.IsZero() {
			now = m.opt.Now()
		}
		if now.Before(it.end) {
			return it.val, true
		}
	}
	return Entry{}, false
}

func (m *Manager) isTrusted(ip netip.Addr) bool {
	if m.opt.Trusted == nil {
		return false
	}
	_, ok := m.opt.Trusted(ip)
	return ok
}

// Failure records a failed digest from ip for user. It is ignored for
// trusted and already banned addresses. It bans ip after Threshold
// failures within Window, its /64 after Prefix6Threshold failures from
// the /64, and locks user after UserThreshold failures (not counted for
// ReasonUnknownUser). user is attacker text.
func (m *Manager) Failure(ip netip.Addr, user, reason string) {
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() {
		return
	}
	if m.isTrusted(ip) {
		m.ignored.Add(1)
		return
	}
	if _, ok := m.find(ip); ok {
		m.ignored.Add(1)
		return
	}
	m.failures.Add(1)
	now := m.opt.Now()
	user = clipUser(user)
	countUser := user != "" && reason != ReasonUnknownUser && !m.lockActive(user, now)
	win := m.opt.Window

	type todo struct {
		p            netip.Prefix
		reason, evid string
	}
	var bans []todo
	var lockEvid string
	m.cmu.Lock()
	if n := count(m, m.addrs, ip, now).add(now, win); n >= float64(m.opt.Threshold) {
		bans = append(bans, todo{hostPrefix(ip), ReasonAuthFailures,
			fmt.Sprintf("%d failed digests in %s%s", int(n), fmtDur(win), lastUser(user))})
		m.addrs.del(ip)
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		if n := count(m, m.nets, p, now).add(now, win); n >= float64(m.opt.Prefix6Threshold) {
			bans = append(bans, todo{p, ReasonPrefixFailures,
				fmt.Sprintf("%d failed digests from the /64 in %s, last from %s%s", int(n), fmtDur(win), ip, lastUser(user))})
			m.nets.del(p)
		}
	}
	if countUser {
		if n := count(m, m.users, user, now).add(now, win); n >= float64(m.opt.UserThreshold) {
			lockEvid = fmt.Sprintf("%d failed digests in %s, last from %s", int(n), fmtDur(win), ip)
			m.users.del(user)
		}
	}
	m.cmu.Unlock()

	for _, b := range bans {
		_, _ = m.ban(b.p, 0, b.reason, b.evid, now)
	}
	if lockEvid != "" {
		m.lockUser(user, lockEvid, now)
	}
}

// count touches key in t (cmu held) and counts an eviction.
func count[K comparable](m *Manager, t *lru[K, window], key K, now time.Time) *window {
	c, ev := t.touch(key, now)
	if ev {
		m.evicted.Add(1)
	}
	return c
}

// Success records that user authenticated from ip, which keeps ip working
// for that user while the user is locked. A user keeps its maxGood most
// recent addresses. Success does not reset failure counts: an attacker
// with one valid account must not be able to wash its counters with it.
func (m *Manager) Success(ip netip.Addr, user string) {
	ip = ip.Unmap().WithZone("")
	user = clipUser(user)
	if !ip.IsValid() || user == "" {
		return
	}
	m.cmu.Lock()
	g, ev := m.good.touch(user, m.opt.Now())
	g.add(ip)
	m.cmu.Unlock()
	if ev {
		m.evicted.Add(1)
	}
}

// UserLocked reports whether user is locked for requests from ip: the
// user is locked and ip is neither trusted nor known-good for the user.
func (m *Manager) UserLocked(user string, ip netip.Addr) bool {
	user = clipUser(user)
	if user == "" || !m.lockActive(user, m.opt.Now()) {
		return false
	}
	ip = ip.Unmap().WithZone("")
	if m.isTrusted(ip) {
		return false
	}
	m.cmu.Lock()
	g, ok := m.good.get(user)
	known := ok && g.has(ip)
	m.cmu.Unlock()
	return !known
}

func (m *Manager) lockActive(user string, now time.Time) bool {
	m.mu.RLock()
	_, end, ok := m.locks.get(user)
	m.mu.RUnlock()
	return ok && now.Before(end)
}

func (m *Manager) lockUser(user, evidence string, now time.Time) {
	l := UserLock{User: user, Since: now, Until: now.Add(m.opt.UserLockTime), Evidence: evidence}
	m.mu.Lock()
	if _, end, ok := m.locks.get(user); ok && now.Before(end) {
		m.mu.Unlock()
		return
	}
	if m.locks.len() >= m.opt.MaxTracked {
		m.locks.popEnded(now, nil)
		if m.locks.len() >= m.opt.MaxTracked {
			k, _, _, _ := m.locks.first()
			m.locks.del(k)
			m.evicted.Add(1)
		}
	}
	m.locks.set(user, l, l.Until)
	m.mu.Unlock()
	m.userLocks.Add(1)
	m.log.Info("user locked", "user", quote(user), "evidence", evidence, "until", l.Until)
	m.event(Event{Kind: EventLock, Lock: l})
}

// Ban bans p (an address as /32 or /128, or a network) for d, or for the
// escalated duration of its level when d <= 0. Either way the ban raises
// the prefix's escalation level. An empty reason is ReasonManual. A ban
// covering a trusted address is refused with ErrTrusted (checked on the
// first and last address of a network; Banned never reports a trusted
// address whatever the bans). A persistence error is returned, but the
// ban is in force in memory anyway.
func (m *Manager) Ban(p netip.Prefix, d time.Duration, reason, evidence string) (Entry, error) {
	p, err := normPrefix(p)
	if err != nil {
		return Entry{}, err
	}
	if reason == "" {
		reason = ReasonManual
	} else if !validReason(reason) {
		return Entry{}, fmt.Errorf("%w: %s", ErrBadReason, quote(reason))
	}
	if m.isTrusted(p.Addr()) || m.isTrusted(lastAddr(p)) {
		return Entry{}, fmt.Errorf("ban %s: %w", p, ErrTrusted)
	}
	return m.ban(p, d, reason, clip(evidence, MaxEvidenceLen), m.opt.Now())
}

func (m *Manager) ban(p netip.Prefix, d time.Duration, reason, evidence string, now time.Time) (Entry, error) {
	m.cmu.Lock()
	lv := 0
	if st, forget, ok := m.levels.get(p); ok && now.Before(forget) {
		lv = min(st.Level+1, m.maxLevel)
	}
	if d <= 0 {
		d = m.duration(lv)
	}
	e := Entry{Prefix: p, Reason: reason, Evidence: evidence, Since: now, Until: now.Add(d), Level: lv}
	m.setLevel(p, levelState{Level: lv, Until: e.Until}, now)
	m.cmu.Unlock()

	m.mu.Lock()
	lifted := m.insertBan(e, now)
	m.mu.Unlock()

	c, ok := m.bansBy[reason]
	if !ok {
		c = m.bansBy[ReasonOther]
	}
	c.Add(1)
	m.log.Info("banned", "prefix", p.String(), "reason", reason, "evidence", evidence,
		"level", lv, "duration", d.String(), "until", e.Until)
	m.event(Event{Kind: EventBan, Entry: e})
	err := m.sync(p, true, true)
	for _, q := range lifted {
		_ = m.persist(q, false)
	}
	if err != nil {
		return e, fmt.Errorf("ban %s: %w", p, err)
	}
	return e, nil
}

// setLevel remembers the escalation level of p (cmu held), within
// MaxTracked: when full, ended levels go, then the one forgotten first.
func (m *Manager) setLevel(p netip.Prefix, st levelState, now time.Time) {
	if _, _, ok := m.levels.get(p); !ok && m.levels.len() >= m.opt.MaxTracked {
		m.levels.popEnded(now, nil)
		if m.levels.len() >= m.opt.MaxTracked {
			k, _, _, _ := m.levels.first()
			m.levels.del(k)
			m.evicted.Add(1)
		}
	}
	m.levels.set(p, st, st.Until.Add(m.opt.Forget))
}

// ApplyRemote puts into force a ban another node decided (Shared's
// events): in memory, the Sink and the store, like a local ban, but it is
// not published again, counts in Stats.Remote rather than Stats.Bans, and
// does not raise the level itself: the level is the other node's, kept
// here (the higher of both) so that the next local ban escalates from it.
// A ban of a trusted address is refused (ErrTrusted), as is a bad or too
// wide prefix (ErrBadPrefix); an ended ban is ignored, as is one that ends
// no later than the ban of the same prefix in force here (an echo of
// this node's own event, or an older one): a remote event never shortens
// a ban. MaxBans holds as for local bans. An unknown reason is kept as
// ReasonOther. A persistence error is returned; the ban holds anyway.
func (m *Manager) ApplyRemote(e Entry) error {
	p, err := normPrefix(e.Prefix)
	if err != nil {
		return err
	}
	if m.isTrusted(p.Addr()) || m.isTrusted(lastAddr(p)) {
		return fmt.Errorf("remote ban %s: %w", p, ErrTrusted)
	}
	now := m.opt.Now()
	if !now.Before(e.Until) {
		return nil
	}
	e.Prefix = p
	if !validReason(e.Reason) {
		e.Reason = ReasonOther
	}
	e.Evidence = clip(e.Evidence, MaxEvidenceLen)
	if e.Since.IsZero() || e.Since.After(now) {
		e.Since = now
	}
	e.Level = min(max(e.Level, 0), m.maxLevel)

	m.cmu.Lock()
	st := levelState{Level: e.Level, Until: e.Until}
	if old, forget, ok := m.levels.get(p); ok && now.Before(forget) {
		st.Level = max(st.Level, old.Level)
		if old.Until.After(st.Until) {
			st.Until = old.Until
		}
	}
	m.setLevel(p, st, now)
	m.cmu.Unlock()

	m.mu.Lock()
	if _, end, ok := m.bans.get(p); ok && now.Before(end) && !end.Before(e.Until) {
		m.mu.Unlock()
		return nil
	}
	lifted := m.insertBan(e, now)
	m.mu.Unlock()

	m.remote.Add(1)
	m.log.Info("banned by another node", "prefix", p.String(), "reason", e.Reason, "evidence", e.Evidence,
		"level", e.Level, "until", e.Until)
	m.event(Event{Kind: EventBan, Entry: e, Remote: true})
	err = m.persist(p, true)
	for _, q := range lifted {
		_ = m.persist(q, false)
	}
	if err != nil {
		return fmt.Errorf("remote ban %s: %w", p, err)
	}
	return nil
}

// RemoveRemote lifts the ban of exactly p that another node lifted, from
// memory, store and sink, without publishing it again, and reports
// whether it was in force. The level is kept, as by Unban.
func (m *Manager) RemoveRemote(p netip.Prefix) (bool, error) {
	return m.unban(p, false)
}

// insertBan adds or replaces e (mu held). When the table is full it
// drops ended bans, then the ban that ends first; it returns the
// prefixes it dropped so the caller can lift them from store and sink.
func (m *Manager) insertBan(e Entry, now time.Time) []netip.Prefix {
	var lifted []netip.Prefix
	if _, _, ok := m.bans.get(e.Prefix); !ok {
		if m.bans.len() >= m.opt.MaxBans {
			m.bans.popEnded(now, func(p netip.Prefix, _ Entry) {
				m.countLen(p, -1)
				lifted = append(lifted, p)
			})
		}
		if m.bans.len() >= m.opt.MaxBans {
			p, _, _, _ := m.bans.first()
			m.bans.del(p)
			m.countLen(p, -1)
			lifted = append(lifted, p)
			m.evicted.Add(1)
		}
		m.countLen(e.Prefix, 1)
	}
	m.bans.set(e.Prefix, e, e.Until)
	return lifted
}

// countLen tracks which prefix lengths are in use so Banned only looks
// up those (mu held).
func (m *Manager) countLen(p netip.Prefix, d int32) {
	b := p.Bits()
	var n *int32
	if p.Addr().Is4() {
		n = &m.cnt4[b]
	} else {
		n = &m.cnt6[b]
	}
	before := *n
	*n += d
	if (before == 0) == (*n == 0) {
		return
	}
	rebuild := func(cnt []int32) []uint8 {
		var l []uint8
		for i := len(cnt) - 1; i >= 0; i-- {
			if cnt[i] > 0 {
				l = append(l, uint8(i))
			}
		}
		return l
	}
	if p.Addr().Is4() {
		m.lens4 = rebuild(m.cnt4[:])
	} else {
		m.lens6 = rebuild(m.cnt6[:])
	}
}

// Unban lifts the ban of exactly p (not of addresses inside a banned
// network) from memory, store and sink, and reports whether it was in
// force. The escalation level is kept on purpose: an operator's unban of
// a repeat offender must not make its next ban short.
//
// With Options.Shared the unban is published even when p is not banned
// here, so that an operator's unban on any node lifts the ban on all.
func (m *Manager) Unban(p netip.Prefix) (bool, error) {
	return m.unban(p, true)
}

func (m *Manager) unban(p netip.Prefix, publish bool) (bool, error) {
	p, err := normPrefix(p)
	if err != nil {
		return false, err
	}
	now := m.opt.Now()
	m.mu.Lock()
	_, end, ok := m.bans.get(p)
	if ok {
		m.bans.del(p)
		m.countLen(p, -1)
	}
	m.mu.Unlock()
	if !ok {
		if publish && m.opt.Shared != nil {
			if err := m.publish(Entry{Prefix: p}, true); err != nil {
				return false, fmt.Errorf("unban %s: %w", p, err)
			}
		}
		return false, nil
	}
	if publish {
		m.log.Info("unbanned", "prefix", p.String())
	} else {
		m.log.Info("unbanned by another node", "prefix", p.String())
	}
	m.event(Event{Kind: EventUnban, Entry: Entry{Prefix: p}, Remote: !publish})
	if err := m.sync(p, false, publish); err != nil {
		return now.Before(end), fmt.Errorf("unban %s: %w", p, err)
	}
	return now.Before(end), nil
}

// Bans returns the bans in force, ending soonest first.
func (m *Manager) Bans() []Entry {
	now := m.opt.Now()
	m.mu.RLock()
	out := make([]Entry, 0, m.bans.len())
	m.bans.each(func(_ netip.Prefix, e Entry, end time.Time) {
		if now.Before(end) {
			out = append(out, e)
		}
	})
	m.mu.RUnlock()
	slices.SortFunc(out, func(a, b Entry) int {
		if c := a.Until.Compare(b.Until); c != 0 {
			return c
		}
		return a.Prefix.Addr().Compare(b.Prefix.Addr())
	})
	return out
}

// LockedUsers returns the user locks in force, ending soonest first.
func (m *Manager) LockedUsers() []UserLock {
	now := m.opt.Now()
	m.mu.RLock()
	out := make([]UserLock, 0, m.locks.len())
	m.locks.each(func(_ string, l UserLock, end time.Time) {
		if now.Before(end) {
			out = append(out, l)
		}
	})
	m.mu.RUnlock()
	slices.SortFunc(out, func(a, b UserLock) int {
		if c := a.Until.Compare(b.Until); c != 0 {
			return c
		}
		return strings.Compare(a.User, b.User)
	})
	return out
}

// Stats returns the counters.
func (m *Manager) Stats() Stats {
	s := Stats{
		Bans:         make(map[string]uint64, len(m.bansBy)),
		Drops:        m.drops.Load(),
		Failures:     m.failures.Load(),
		Ignored:      m.ignored.Load(),
		UserLocks:    m.userLocks.Load(),
		Evicted:      m.evicted.Load(),
		SinkErrors:   m.sinkErrors.Load(),
		StoreErrors:  m.storeErrors.Load(),
		Remote:       m.remote.Load(),
		SharedErrors: m.sharedErrors.Load(),
	}
	for r, c := range m.bansBy {
		s.Bans[r] = c.Load()
	}
	now := m.opt.Now()
	m.mu.RLock()
	m.bans.each(func(_ netip.Prefix, _ Entry, end time.Time) {
		if now.Before(end) {
			s.Active++
		}
	})
	m.locks.each(func(_ string, _ UserLock, end time.Time) {
		if now.Before(end) {
			s.Locked++
		}
	})
	m.mu.RUnlock()
	return s
}

// Sweep drops ended bans (lifting them from the sink), ended locks and
// levels, and counters idle for two windows. Run calls it periodically;
// it returns the number of bans lifted.
func (m *Manager) Sweep() int {
	now := m.opt.Now()
	var ended []netip.Prefix
	m.mu.Lock()
	m.bans.popEnded(now, func(p netip.Prefix, _ Entry) {
		m.countLen(p, -1)
		ended = append(ended, p)
	})
	m.locks.popEnded(now, nil)
	m.mu.Unlock()

	cutoff := now.Add(-2 * m.opt.Window)
	m.cmu.Lock()
	m.addrs.dropIdle(cutoff)
	m.nets.dropIdle(cutoff)
	m.users.dropIdle(cutoff)
	m.levels.popEnded(now, nil)
	m.cmu.Unlock()

	for _, p := range ended {
		m.log.Debug("ban ended", "prefix", p.String())
		_ = m.persist(p, false)
	}
	return len(ended)
}

// warn logs a sink or store failure at Warn at most once a minute, and
// at Debug otherwise, so a dead sink cannot flood the log.
func (m *Manager) warn(msg string, args ...any) {
	now := m.opt.Now().UnixNano()
	last := m.warnAt.Load()
	if now-last >= int64(time.Minute) && m.warnAt.CompareAndSwap(last, now) {
		m.log.Warn(msg, args...)
		return
	}
	m.log.Debug(msg, args...)
}

func hostPrefix(ip netip.Addr) netip.Prefix { return netip.PrefixFrom(ip, ip.BitLen()) }

// normPrefix unmaps, strips the zone and masks p, and refuses invalid
// and too wide prefixes.
func normPrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("%w: %s", ErrBadPrefix, p)
	}
	a, bits := p.Addr(), p.Bits()
	if a.Is4In6() {
		if bits < 96 {
			return netip.Prefix{}, fmt.Errorf("%w: %s", ErrBadPrefix, p)
		}
		a, bits = a.Unmap(), bits-96
	}
	if (a.Is4() && bits < MinBits4) || (a.Is6() && bits < MinBits6) {
		return netip.Prefix{}, fmt.Errorf("%w: %s is wider than /%d (IPv4) or /%d (IPv6)", ErrBadPrefix, p, MinBits4, MinBits6)
	}
	q, err := a.WithZone("").Prefix(bits)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w: %s", ErrBadPrefix, p)
	}
	return q, nil
}

// lastAddr is the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func validReason(r string) bool {
	if len(r) == 0 || len(r) > maxReasonLen {
		return false
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func clipUser(u string) string { return clip(u, MaxUserLen) }

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// quote makes attacker text safe for logs and evidence: cut to maxQuoted
// bytes and Go-quoted.
func quote(s string) string {
	if len(s) > maxQuoted {
		return strconv.Quote(s[:maxQuoted]) + "..."
	}
	return strconv.Quote(s)
}

func lastUser(u string) string {
	if u == "" {
		return ""
	}
	return ", last user " + quote(u)
}

// fmtDur prints whole seconds as "60s" rather than "1m0s".
func fmtDur(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}
