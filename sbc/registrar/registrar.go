// Package registrar is the "registrar" layer: REGISTER handling and the
// location service. In relay mode it relays REGISTER from phones to the
// upstream PBX, keeps each binding (the phone's transport address, which
// NAT makes the only reachable one) and gives the PBX a Contact pointing at
// the SBC; in local mode it is the registrar itself. Locate tells the B2BUA
// where a registered user is. See README.md.
package registrar

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/config"
	"github.com/sipwall/sipwall/sbc/store"
	"github.com/sipwall/sipwall/sbc/upstream"
)

// Mode selects what the layer does with REGISTER.
type Mode string

// Modes; see config.Registrar.Mode.
const (
	ModeRelay Mode = "relay"
	ModeLocal Mode = "local"
	ModeOff   Mode = "off"
)

// BucketName is the store bucket holding one record per AOR.
const BucketName = "registrar"

// Bounds on what a phone can make the SBC store.
const (
	maxUserLen    = 128
	maxHostLen    = 255
	maxContactLen = 512
	// defaultExpires is what a REGISTER without any expiry asks for
	// (RFC 3261 10.2.1.1 leaves it to the registrar; 3600 is customary).
	defaultExpires = time.Hour
	// maxDelta is the largest delta-seconds value (RFC 3261 20.19).
	maxDelta = 1<<32 - 1
	stripes  = 64
)

// tokenPrefix marks the user part of the Contacts the SBC gives the PBX.
const tokenPrefix = "sw-"

// targetPrefix starts the Name of targets Locate returns.
const targetPrefix = "reg:"

// Endpoint gives the listener to send from on a side. *sbc.Server has it.
type Endpoint interface {
	Local(transport string, side sbc.Side) (*sbc.Listener, bool)
}

// Shared holds the AOR records of every node of a cluster, so that a phone
// registered through one node is reachable through any (cmd/sipwall
// adapts sbc/cluster to it). Values are the JSON of one AOR's record (its
// bindings), written with a TTL up to its latest binding expiry. Get
// reports ok false for an AOR without bindings. See README.md, "Shared
// state".
type Shared interface {
	Put(aor string, v []byte, ttl time.Duration) error
	Get(aor string) ([]byte, bool, error)
	Delete(aor string) error
}

// Config is what the registrar needs. The policy fields mirror
// config.Registrar (FromConfig copies them); the rest is wiring.
type Config struct {
	Mode    Mode
	Domains []string
	Users   []string
	// IsUser tells local users apart when Users is empty (the auth layer's
	// users file); wiring, not copied by FromConfig.
	IsUser            func(user string) bool
	MinExpires        time.Duration
	MaxExpires        time.Duration
	PhoneExpires      time.Duration
	UpstreamExpires   time.Duration
	RefreshPercent    int
	MaxBindings       int
	MaxAORs           int
	ReplaceOldest     bool
	OtherDomainStatus int
	Redirect          bool

	// Client sends REGISTERs to the PBX (relay mode).
	Client *sipgo.Client
	// Endpoint gives the inside listener whose address goes into the
	// Contact handed to the PBX.
	Endpoint Endpoint
	// Pool are the upstreams REGISTERs are relayed to.
	Pool *upstream.Pool
	// Store persists the bindings. Required.
	Store *store.Store
	// Shared, when set, is the cluster's location store: every change of
	// an AOR is written to it, and lookups read it first (nil: single
	// node).
	Shared Shared
	// Node names this node in a cluster; it is recorded on the bindings
	// registered through it (the node holding the phone's flow).
	Node string
	// Reason is the reason phrase a response relayed from the PBX may
	// carry toward the phone (the topology policy's: the RFC phrase of the
	// code, not the PBX's words). Nil: as the PBX wrote it.
	Reason func(code int, phrase string) string
	// SweepEvery is how often Run drops expired bindings from memory.
	// Default 30s.
	SweepEvery time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
}

// FromConfig copies the policy of the configuration file; the caller adds
// the wiring (Client, Endpoint, Pool, Store, Logger).
func FromConfig(c config.Registrar) Config {
	return Config{
		Mode:              Mode(c.Mode),
		Domains:           slices.Clone(c.Domains),
		Users:             slices.Clone(c.Users),
		MinExpires:        c.MinExpires.D(),
		MaxExpires:        c.MaxExpires.D(),
		PhoneExpires:      c.PhoneExpires.D(),
		UpstreamExpires:   c.UpstreamExpires.D(),
		RefreshPercent:    c.RefreshPercent,
		MaxBindings:       c.MaxBindings,
		MaxAORs:           c.MaxAORs,
		ReplaceOldest:     c.WhenFull == config.WhenFullReplaceOldest,
		OtherDomainStatus: c.OtherDomainStatus,
		Redirect:          c.Redirect,
	}
}

// Binding is one registered contact of an AOR, as stored.
type Binding struct {
	// Token is the user part of the Contact the PBX knows this binding by
	// (relay mode); random, so it tells nothing about the phone.
	Token string `json:"token"`
	// Contact is the phone's Contact URI as it registered it; it becomes
	// the Request-URI of requests to the phone.
	Contact string `json:"contact"`
	// Params are the Contact's header parameters other than expires
	// (q, +sip.instance, reg-id), echoed back in 200 responses.
	Params string `json:"params,omitempty"`
	// Key identifies the binding within its AOR: the instance and reg-id
	// when the phone sends them (RFC 5626), else the Contact URI.
	Key string `json:"key"`
	// Q is the Contact's q value in thousandths (1000 when absent).
	Q int `json:"q"`
	// CallID and CSeq order the phone's requests (RFC 3261 10.3 step 7).
	CallID string `json:"call_id"`
	CSeq   uint32 `json:"cseq"`
	// Peer and Transport are the flow the phone registered over: requests
	// go there, not to the Contact's host, which NAT makes unreachable.
	Peer      string `json:"peer"`
	Transport string `json:"transport"`
	// Expires is when the binding ends toward the phone.
	Expires time.Time `json:"expires"`
	// Created is the first registration, Updated the last refresh.
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	// Relay mode: the PBX's side of the binding.
	UpCallID    string    `json:"up_call_id,omitempty"`
	UpExpires   time.Time `json:"up_expires,omitzero"`
	UpRefreshed time.Time `json:"up_refreshed,omitzero"`
	// Node is the cluster node the phone registered through, which holds
	// its flow (Config.Node; empty on a single node).
	Node string `json:"node,omitempty"`
	// RegisteredBy is whom the last REGISTER of this binding is
	// attributed to (sbc.Identity.Attribution): the user that
	// authenticated it, or trusted:<peer>; empty when sipwall did not
	// authenticate it (auth off, or relay mode leaving it to the PBX).
	RegisteredBy string `json:"registered_by,omitempty"`
}

// record is the stored value of one AOR.
type record struct {
	Bindings []Binding `json:"bindings"`
}

// Stats counts what the registrar did.
type Stats struct {
	// Registered: REGISTERs answered 200 (queries included).
	Registered atomic.Int64
	// Relayed: REGISTERs sent to the PBX.
	Relayed atomic.Int64
	// Cached: refreshes answered without asking the PBX.
	Cached atomic.Int64
	// Fallback: refreshes answered locally because no PBX answered while
	// its binding was still valid.
	Fallback atomic.Int64
	// Removed: bindings removed by the phone (expires 0 or *).
	Removed atomic.Int64
	// Evicted: bindings replaced under when_full: replace_oldest.
	Evicted atomic.Int64
	// Rejected: REGISTERs the SBC refused itself.
	Rejected atomic.Int64
	// Located: Locate calls that found a binding.
	Located atomic.Int64
	// Redirected: INVITEs answered 302.
	Redirected atomic.Int64
	// Unavailable: requests to a token or user without a live binding (480).
	Unavailable atomic.Int64
	// Unreachable: bindings dropped because their flow failed.
	Unreachable atomic.Int64
	// StoreErrors: writes to the store that failed (the REGISTER got 500).
	StoreErrors atomic.Int64
	// SharedErrors: reads and writes of Config.Shared that failed (or
	// read an undecodable record); the local table served instead.
	SharedErrors atomic.Int64
}

// Registrar is the "registrar" layer and the location service.
type Registrar struct {
	cfg     Config
	log     *slog.Logger
	bucket  *store.Bucket[record]
	secret  []byte
	domains map[string]bool
	users   map[string]bool

	// stripe serializes changes to one AOR (by hash) without serializing
	// all of them; mu guards the maps and is held only briefly.
	stripe  [stripes]sync.Mutex
	mu      sync.RWMutex
	aors    map[string][]Binding
	tokens  map[string]string // token -> AOR
	pending int               // new AORs being written, counted against MaxAORs
	// unsynced are the AORs whose last write to Shared failed: the local
	// table is newer than the cluster's record.
	unsynced map[string]bool

	stats  Stats
	warnAt atomic.Int64 // last Shared failure logged at Warn (unix ns)
}

var _ sbc.Handler = (*Registrar)(nil)

// New builds the layer and loads the live bindings from the store.
func New(cfg Config) (*Registrar, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = 30 * time.Second
	}
	switch cfg.Mode {
	case ModeRelay, ModeLocal, ModeOff:
	default:
		return nil, fmt.Errorf("registrar: unknown mode %q", cfg.Mode)
	}
	if cfg.Store == nil {
		return nil, errors.New("registrar: no store")
	}
	if cfg.MinExpires < time.Second || cfg.MaxExpires < cfg.MinExpires || cfg.PhoneExpires < cfg.MinExpires {
		return nil, fmt.Errorf("registrar: bad expiry bounds (min %s, max %s, phone %s)", cfg.MinExpires, cfg.MaxExpires, cfg.PhoneExpires)
	}
	if cfg.MaxBindings < 1 || cfg.MaxAORs < 1 {
		return nil, errors.New("registrar: max_bindings and max_aors must be at least 1")
	}
	if cfg.OtherDomainStatus != 404 {
		cfg.OtherDomainStatus = 403
	}
	if cfg.Mode == ModeLocal && (len(cfg.Domains) == 0 || (len(cfg.Users) == 0 && cfg.IsUser == nil)) {
		// Never an open registrar: local mode needs domains and users.
		return nil, errors.New("registrar: local mode needs domains and users")
	}
	if cfg.Redirect && cfg.Mode != ModeLocal {
		return nil, errors.New("registrar: redirect needs local mode")
	}
	if cfg.Mode == ModeRelay && (cfg.Client == nil || cfg.Endpoint == nil) {
		return nil, errors.New("registrar: relay mode needs a client and an endpoint")
	}
	if cfg.UpstreamExpires < cfg.PhoneExpires {
		cfg.UpstreamExpires = cfg.PhoneExpires
	}
	b, err := store.NewBucket[record](cfg.Store, BucketName)
	if err != nil {
		return nil, fmt.Errorf("registrar: %w", err)
	}
	g := &Registrar{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "registrar"),
		bucket:  b,
		secret:  make([]byte, 32),
		domains: map[string]bool{},
		users:   map[string]bool{},
		aors:    map[string][]Binding{},
		tokens:  map[string]string{},

		unsynced: map[string]bool{},
	}
	_, _ = rand.Read(g.secret)
	for _, d := range cfg.Domains {
		g.domains[strings.ToLower(d)] = true
	}
	for _, u := range cfg.Users {
		g.users[u] = true
	}
	if err := g.load(); err != nil {
		return nil, err
	}
	return g, nil
}

// load fills memory with the live bindings of the store.
func (g *Registrar) load() error {
	now := g.cfg.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	err := g.bucket.ForEach(func(aor string, rec record, _ time.Time) error {
		live := liveBindings(rec.Bindings, now)
		if len(live) == 0 {
			return nil
		}
		g.aors[aor] = live
		for _, b := range live {
			g.tokens[b.Token] = aor
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("registrar: load bindings: %w", err)
	}
	if n := len(g.aors); n > 0 {
		g.log.Info("bindings loaded", "aors", n)
	}
	return nil
}

// Name implements sbc.Handler.
func (g *Registrar) Name() string { return "registrar" }

// Stats returns the counters.
func (g *Registrar) Stats() *Stats { return &g.stats }

// Count returns the number of AORs and bindings held.
func (g *Registrar) Count() (aors, bindings int) {
	now := g.cfg.Now()
	g.mu.RLock()
	defer g.mu.RUnlock()
	for _, bs := range g.aors {
		n := len(liveBindings(bs, now))
		if n > 0 {
			aors++
			bindings += n
		}
	}
	return aors, bindings
}

// All returns every AOR with its live bindings (admin API), at most max
// AORs (0: all).
func (g *Registrar) All(max int) map[string][]Binding {
	now := g.cfg.Now()
	g.mu.RLock()
	defer g.mu.RUnlock()
	out := map[string][]Binding{}
	for aor, bs := range g.aors {
		if max > 0 && len(out) >= max {
			break
		}
		if live := liveBindings(bs, now); len(live) > 0 {
			out[aor] = live
		}
	}
	return out
}

// Lookup returns the live bindings of an AOR ("user@host"); with Shared,
// the cluster's.
func (g *Registrar) Lookup(aor string) []Binding {
	return g.fetch(normalizeAOR(aor), g.cfg.Now())
}

// ServeSIP implements sbc.Handler.
func (g *Registrar) ServeSIP(ctx context.Context, w sbc.ResponseWriter, r *sbc.Request) (sbc.Verdict, error) {
	if g.cfg.Mode == ModeOff || r.IsAck() {
		return sbc.Continue, nil
	}
	if r.Method == sip.REGISTER {
		if r.Side != sbc.External {
			// The inside registering somewhere outside (a PBX to its
			// carrier) is the B2BUA's plain relay.
			return sbc.Continue, nil
		}
		return g.register(ctx, w, r)
	}
	if to := r.To(); to == nil || to.Params.Has("tag") {
		return sbc.Continue, nil
	}
	if r.Side == sbc.Internal && isToken(r.Recipient.User) && g.tokenTarget(r.Recipient.User) == nil {
		// The PBX still holds a binding the phone let lapse: answer here,
		// or the B2BUA would route the token out of the outbound trunk.
		g.stats.Unavailable.Add(1)
		return sbc.Rejected, sbc.Respond(w, r, 480, "Temporarily Unavailable")
	}
	if g.cfg.Redirect && r.Method == sip.INVITE {
		return g.redirect(w, r)
	}
	return sbc.Continue, nil
}

// redirect answers an INVITE for a local user with 302 and the user's
// Contacts (the redirect server role), or 480 when the user is known but
// not registered. Anything else continues to the B2BUA.
func (g *Registrar) redirect(w sbc.ResponseWriter, r *sbc.Request) (sbc.Verdict, error) {
	_, bs, known := g.localAOR(r.Recipient, g.cfg.Now())
	if !known {
		return sbc.Continue, nil
	}
	bs = orderTargets(bs)
	if len(bs) == 0 {
		g.stats.Unavailable.Add(1)
		return sbc.Rejected, sbc.Respond(w, r, 480, "Temporarily Unavailable")
	}
	res := sip.NewResponseFromRequest(r.Request, 302, "Moved Temporarily", nil)
	for _, b := range bs {
		var u sip.Uri
		if err := sip.ParseUri(b.Contact, &u); err != nil {
			continue
		}
		ct := &sip.ContactHeader{Address: u, Params: sip.NewParams()}
		if b.Q != 1000 {
			ct.Params.Add("q", formatQ(b.Q))
		}
		res.AppendHeader(ct)
	}
	g.stats.Redirected.Add(1)
	return sbc.Rejected, w.Respond(res)
}

// Locate is the B2BUA's hook: where a registered user is. A request from
// the inside to a token the SBC gave the PBX goes to that binding; in local
// mode a request to a registered AOR, from either side, goes to its
// bindings (best q first, then the most recent).
func (g *Registrar) Locate(r *sbc.Request) ([]upstream.Target, bool) {
	if g.cfg.Mode == ModeOff || r.Method == sip.REGISTER {
		return nil, false
	}
	if r.Side == sbc.Internal && isToken(r.Recipient.User) {
		if t := g.tokenTarget(r.Recipient.User); t != nil {
			g.stats.Located.Add(1)
			return []upstream.Target{*t}, true
		}
		return nil, false
	}
	if g.cfg.Mode != ModeLocal {
		return nil, false
	}
	_, bs, known := g.localAOR(r.Recipient, g.cfg.Now())
	if !known {
		return nil, false
	}
	var ts []upstream.Target
	for _, b := range orderTargets(bs) {
		if t, ok := target(b); ok {
			ts = append(ts, t)
		}
	}
	if len(ts) == 0 {
		return nil, false
	}
	g.stats.Located.Add(1)
	return ts, true
}

// errForeignFlow keeps a binding whose flow another node holds.
var errForeignFlow = errors.New("registrar: flow held by another node")

// Unreachable drops the binding behind a target Locate returned, once the
// B2BUA failed to reach its flow (transport error, no answer): a phone that
// is gone must not keep attracting calls until its expiry. With Shared, a
// binding registered through another node (Binding.Node) is kept: that
// node holds the flow.
func (g *Registrar) Unreachable(t upstream.Target) {
	token, ok := strings.CutPrefix(t.Name, targetPrefix)
	if !ok {
		return
	}
	g.mu.RLock()
	aor, ok := g.tokens[token]
	g.mu.RUnlock()
	if !ok {
		return
	}
	_, err := g.commit(aor, func(old []Binding, _ time.Time) ([]Binding, *reject, error) {
		i := slices.IndexFunc(old, func(b Binding) bool { return b.Token == token })
		if i >= 0 && g.cfg.Shared != nil && old[i].Node != g.cfg.Node {
			// Another node holds the phone's flow: that this node
			// cannot reach it says nothing about the phone, so the
			// binding stays for the node that can.
			return nil, nil, errForeignFlow
		}
		out := slices.DeleteFunc(slices.Clone(old), func(b Binding) bool { return b.Token == token })
		return out, nil, nil
	})
	if errors.Is(err, errForeignFlow) {
		g.log.Debug("unreachable binding of another node kept", "target", t.Name)
		return
	}
	if err != nil {
		g.log.Warn("drop unreachable binding failed", "error", err)
		return
	}
	g.stats.Unreachable.Add(1)
	g.log.Info("unreachable binding dropped", "target", t.Name, "addr", t.Addr.String())
}

// Sweep drops expired bindings from memory; the store's own Sweeper
// removes expired records from disk.
func (g *Registrar) Sweep() int {
	now := g.cfg.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for aor, bs := range g.aors {
		live := liveBindings(bs, now)
		if len(live) == len(bs) {
			continue
		}
		n += len(bs) - len(live)
		for _, b := range bs {
			if !slices.ContainsFunc(live, func(l Binding) bool { return l.Token == b.Token }) {
				delete(g.tokens, b.Token)
			}
		}
		if len(live) == 0 {
			delete(g.aors, aor)
		} else {
			g.aors[aor] = live
		}
	}
	for aor := range g.unsynced {
		if _, ok := g.aors[aor]; !ok {
			delete(g.unsynced, aor)
		}
	}
	return n
}

// Run sweeps expired bindings from memory until ctx is done.
func (g *Registrar) Run(ctx context.Context) {
	t := time.NewTicker(g.cfg.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.Sweep()
		}
	}
}

// tokenTarget is the target of the binding a token names, nil if none is
// live.
func (g *Registrar) tokenTarget(token string) *upstream.Target {
	now := g.cfg.Now()
	g.mu.RLock()
	aor, ok := g.tokens[token]
	var found *Binding
	if ok && g.cfg.Shared == nil {
		for _, b := range g.aors[aor] {
			if b.Token == token && b.Expires.After(now) {
				found = &b
				break
			}
		}
	}
	g.mu.RUnlock()
	if ok && g.cfg.Shared != nil {
		// The binding as the cluster has it: refreshed or removed through
		// another node since this one learnt the token.
		for _, b := range g.fetch(aor, now) {
			if b.Token == token {
				found = &b
				break
			}
		}
	}
	if found == nil {
		return nil
	}
	t, ok := target(*found)
	if !ok {
		return nil
	}
	return &t
}

// localAOR maps a Request-URI onto a registered or registrable local AOR
// and returns its live bindings: user@host when the host is a domain; for
// any other host (the SBC's own address, typically) the first domain, in
// configured order, where the user has bindings. known is false when the
// user is not a local user.
func (g *Registrar) localAOR(u sip.Uri, now time.Time) (aor string, bs []Binding, known bool) {
	if g.cfg.Mode != ModeLocal || u.User == "" || !g.isUser(u.User) {
		return "", nil, false
	}
	host := strings.ToLower(strings.TrimSuffix(u.Host, "."))
	if g.domains[host] {
		aor = u.User + "@" + host
		return aor, g.fetch(aor, now), true
	}
	for _, d := range g.cfg.Domains {
		a := u.User + "@" + strings.ToLower(d)
		if bs := g.fetch(a, now); len(bs) > 0 {
			return a, bs, true
		}
	}
	return u.User + "@" + strings.ToLower(g.cfg.Domains[0]), nil, true
}

// snapshot copies the live bindings of aor from the local table.
func (g *Registrar) snapshot(aor string, now time.Time) []Binding {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return liveBindings(g.aors[aor], now)
}

// fetch returns the live bindings of aor for routing and before a change.
// Without Shared it is snapshot. With Shared it reads the cluster's record
// first and brings the local table in line with it (bindings learnt,
// refreshed or dropped); when Shared fails it counts the error and serves
// the local table, the cache of what this node last wrote or read.
func (g *Registrar) fetch(aor string, now time.Time) []Binding {
	if g.cfg.Shared == nil {
		return g.snapshot(aor, now)
	}
	// Under the AOR's stripe, so that an older read cannot overwrite
	// the local table after a newer commit.
	s := &g.stripe[stripeOf(aor)]
	s.Lock()
	defer s.Unlock()
	return g.fetchLocked(aor, now)
}

// SyncShared writes back what this node changed while Shared was failing:
// every unsynced AOR is read again, and the newer of the two copies wins,
// as on a lookup. Call it when Shared is reachable again, so that a phone
// registered here during the outage is found by the other nodes at once,
// not only at its next refresh.
func (g *Registrar) SyncShared() {
	if g.cfg.Shared == nil {
		return
	}
	g.mu.RLock()
	aors := make([]string, 0, len(g.unsynced))
	for aor := range g.unsynced {
		aors = append(aors, aor)
	}
	g.mu.RUnlock()
	now := g.cfg.Now()
	for _, aor := range aors {
		g.fetch(aor, now)
	}
}

// fetchLocked is fetch with the AOR's stripe held.
func (g *Registrar) fetchLocked(aor string, now time.Time) []Binding {
	if g.cfg.Shared == nil {
		return g.snapshot(aor, now)
	}
	v, ok, err := g.cfg.Shared.Get(aor)
	var rec record
	if err == nil && ok {
		if jerr := json.Unmarshal(v, &rec); jerr != nil {
			err = fmt.Errorf("decode: %w", jerr)
		}
	}
	if err != nil {
		g.sharedErr("read", aor, err)
		return g.snapshot(aor, now)
	}
	live := g.sane(liveBindings(rec.Bindings, now))
	g.mu.RLock()
	unsynced := g.unsynced[aor]
	g.mu.RUnlock()
	if unsynced {
		// This node changed the AOR while Shared was failing. If that
		// change is newer than anything the cluster holds, the cluster
		// gets it now instead of this node losing it.
		if local := g.snapshot(aor, now); len(local) > 0 && lastUpdate(local).After(lastUpdate(live)) {
			g.share(aor, local, lastExpiry(local).Sub(now))
			return local
		}
		g.mu.Lock()
		delete(g.unsynced, aor)
		g.mu.Unlock()
	}
	g.learn(aor, live)
	return live
}

// lastUpdate is the latest refresh of bs (zero for none).
func lastUpdate(bs []Binding) time.Time {
	var t time.Time
	for _, b := range bs {
		if b.Updated.After(t) {
			t = b.Updated
		}
	}
	return t
}

// lastExpiry is the latest expiry of bs (zero for none).
func lastExpiry(bs []Binding) time.Time {
	var t time.Time
	for _, b := range bs {
		if b.Expires.After(t) {
			t = b.Expires
		}
	}
	return t
}

// sane keeps what the registrar itself could have stored: bindings with
// a token, at most MaxBindings of them (the most recently refreshed).
func (g *Registrar) sane(bs []Binding) []Binding {
	bs = slices.DeleteFunc(bs, func(b Binding) bool { return !isToken(b.Token) })
	if len(bs) > g.cfg.MaxBindings {
		slices.SortStableFunc(bs, func(a, b Binding) int { return b.Updated.Compare(a.Updated) })
		bs = bs[:g.cfg.MaxBindings]
	}
	return bs
}

// learn makes the local table hold bs for aor, as read from Shared. A new
// AOR is not cached when the table is full (MaxAORs): it is served all
// the same, from Shared.
func (g *Registrar) learn(aor string, bs []Binding) {
	g.mu.Lock()
	defer g.mu.Unlock()
	old, had := g.aors[aor]
	if !had && (len(bs) == 0 || len(g.aors)+g.pending >= g.cfg.MaxAORs) {
		return
	}
	for _, b := range old {
		delete(g.tokens, b.Token)
	}
	if len(bs) == 0 {
		delete(g.aors, aor)
		return
	}
	g.aors[aor] = slices.Clone(bs)
	for _, b := range bs {
		g.tokens[b.Token] = aor
	}
}

// share writes the new bindings of aor to Shared (a deletion when there
// are none), with the AOR's stripe held. A failure is counted and logged,
// not returned: the change holds on this node, which marks the AOR
// unsynced; the phone's next refresh, or the next lookup here, writes
// again.
func (g *Registrar) share(aor string, nb []Binding, ttl time.Duration) {
	if g.cfg.Shared == nil {
		return
	}
	var err error
	if len(nb) == 0 {
		err = g.cfg.Shared.Delete(aor)
	} else {
		var v []byte
		if v, err = json.Marshal(record{Bindings: nb}); err == nil {
			err = g.cfg.Shared.Put(aor, v, ttl)
		}
	}
	g.mu.Lock()
	if err != nil {
		g.unsynced[aor] = true
	} else {
		delete(g.unsynced, aor)
	}
	g.mu.Unlock()
	if err != nil {
		g.sharedErr("write", aor, err)
	}
}

// sharedErr counts a Shared failure and logs it at Warn at most once a
// minute (Debug otherwise): a dead Redis must not flood the log.
func (g *Registrar) sharedErr(op, aor string, err error) {
	g.stats.SharedErrors.Add(1)
	now := time.Now().UnixNano()
	last := g.warnAt.Load()
	if now-last >= int64(time.Minute) && g.warnAt.CompareAndSwap(last, now) {
		g.log.Warn("shared location store failed; serving the local table", "op", op, "aor", aor, "error", err)
		return
	}
	g.log.Debug("shared location store failed", "op", op, "aor", aor, "error", err)
}

// target turns a binding into a B2BUA target: the phone's Contact as the
// Request-URI, its flow as the destination.
func target(b Binding) (upstream.Target, bool) {
	var u sip.Uri
	if err := sip.ParseUri(b.Contact, &u); err != nil {
		return upstream.Target{}, false
	}
	ap, err := netip.ParseAddrPort(b.Peer)
	if err != nil {
		return upstream.Target{}, false
	}
	return upstream.Target{
		Name:      targetPrefix + b.Token,
		URI:       u,
		Addr:      ap,
		Transport: b.Transport,
		Priority:  1,
		Weight:    1,
		Exact:     true,
		External:  true,
	}, true
}

// orderTargets sorts bindings best q first, then most recently refreshed.
func orderTargets(bs []Binding) []Binding {
	slices.SortStableFunc(bs, func(a, b Binding) int {
		if a.Q != b.Q {
			return b.Q - a.Q
		}
		return b.Updated.Compare(a.Updated)
	})
	return bs
}

// liveBindings copies the bindings that have not expired at now.
func liveBindings(bs []Binding, now time.Time) []Binding {
	out := make([]Binding, 0, len(bs))
	for _, b := range bs {
		if b.Expires.After(now) {
			out = append(out, b)
		}
	}
	return out
}

func isToken(user string) bool {
	if len(user) != len(tokenPrefix)+24 || !strings.HasPrefix(user, tokenPrefix) {
		return false
	}
	_, err := hex.DecodeString(user[len(tokenPrefix):])
	return err == nil
}

func newToken() string {
	var buf [12]byte
	_, _ = rand.Read(buf[:])
	return tokenPrefix + hex.EncodeToString(buf[:])
}

// mapID derives a stable inside identifier from an outside one, so the PBX
// sees one Call-ID per phone registration while learning nothing of it.
func (g *Registrar) mapID(kind, v string) string {
	m := hmac.New(sha256.New, g.secret)
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// normalizeAOR lower-cases the host of "user@host"; user parts are case
// sensitive (RFC 3261 19.1.4).
func normalizeAOR(aor string) string {
	user, host, ok := strings.Cut(aor, "@")
	if !ok {
		return aor
	}
	return user + "@" + strings.ToLower(host)
}

// isUser reports whether user is a local user: one of Users when that list
// is given, else one IsUser knows (the auth layer's users file).
func (g *Registrar) isUser(user string) bool {
	if len(g.users) > 0 {
		return g.users[user]
	}
	return g.cfg.IsUser != nil && g.cfg.IsUser(user)
}
