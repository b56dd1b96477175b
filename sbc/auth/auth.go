package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
)

// Defaults of Options.
const (
	DefaultNonceTTL  = 300 * time.Second
	DefaultMaxSkew   = 5 * time.Second
	DefaultMaxNonces = 65536
)

// Failure reasons, as counted in Stats and passed to OnFailure.
const (
	ReasonMalformed    = "malformed"     // 400: unparsable or unacceptable credentials
	ReasonURIMismatch  = "uri-mismatch"  // 400: digest uri is not the Request-URI
	ReasonBadOpaque    = "bad-opaque"    // 400: opaque does not belong to the nonce
	ReasonForeignNonce = "foreign-nonce" // not our nonce, or issued to another peer
	ReasonStale        = "stale"         // our nonce, expired
	ReasonFutureNonce  = "future-nonce"  // our nonce, issued after now
	ReasonReplay       = "replay"        // nonce-count not above the last accepted
	ReasonUnknownUser  = "unknown-user"  // evidence: OnFailure
	ReasonBadPassword  = "bad-password"  // evidence: OnFailure
	ReasonDisabled     = "disabled"      // evidence: OnFailure
	ReasonLocked       = "locked"        // evidence: OnFailure; Locked said so
)

var reasons = []string{
	ReasonMalformed, ReasonURIMismatch, ReasonBadOpaque, ReasonForeignNonce,
	ReasonStale, ReasonFutureNonce, ReasonReplay, ReasonUnknownUser,
	ReasonBadPassword, ReasonDisabled, ReasonLocked,
}

// Options configure the layer. Realm and Users are required.
type Options struct {
	Realm string
	Users Users
	// Keys signs nonces with a rotated key kept in the store (see
	// NewKeyRing); it takes precedence over Key. Starting Keys.Run, which
	// rotates, is up to the caller.
	Keys *KeyRing
	// Key signs nonces with one fixed key of at least 32 bytes, when Keys
	// is nil. Both empty: a random key, so nonces do not survive a restart
	// (clients are simply challenged again).
	Key []byte
	// NonceTTL is how long a nonce is accepted (default 300s); after that
	// the client gets a new challenge with stale=true.
	NonceTTL time.Duration
	// MaxSkew is how far in the future a nonce may be dated (default 5s),
	// for nodes sharing Key with slightly different clocks.
	MaxSkew time.Duration
	// MaxNonces bounds the nonce-count table (default 65536).
	MaxNonces int
	// Algorithms are offered in this order, one challenge header each
	// (RFC 8760), and are the only ones accepted. Default SHA-256, then
	// MD5 (DefaultAlgorithms). Clients that read only the first challenge
	// take the first one.
	Algorithms []string
	// Profiles choose, by User-Agent, what a client is offered among
	// Algorithms; the first match wins (see Profile). Nil: none.
	Profiles []Profile
	// OnUnanswered is called by Sweep for a source that was challenged
	// and sent no credentials for our realm within UnansweredAfter.
	OnUnanswered func(Unanswered)
	// UnansweredAfter defaults to DefaultUnansweredAfter, MaxPending (the
	// sources tracked for it) to DefaultMaxPending.
	UnansweredAfter time.Duration
	MaxPending      int
	// Trusted matches peers that skip digest (trunks, the PBX) by address.
	Trusted func(netip.Addr) (name string, ok bool)
	// TrustedCert matches peers identified by their verified client
	// certificate (mutual TLS), asked when a request carries one.
	TrustedCert func(netip.Addr, *sbc.PeerCert) (name string, ok bool)
	// OnFailure is called when a peer answered one of our valid nonces with
	// a wrong response: unknown user, wrong password or disabled account.
	// user is what the peer sent and must be treated as untrusted text.
	OnFailure func(peer netip.Addr, user string, reason string)
	// OnSuccess is called when a peer authenticated as user.
	OnSuccess func(peer netip.Addr, user string)
	// Locked, when it returns true, makes valid credentials for user from
	// peer fail like a wrong password (a user under a distributed
	// brute-force attack, from an address it never used).
	Locked func(user string, peer netip.Addr) bool
	// InDialog reports whether a request with a To tag belongs to a dialog
	// the SBC created (the B2BUA's Owns); those pass without digest. Nil:
	// every request is challenged.
	InDialog func(*sbc.Request) bool
	// Forward adds the identity and source headers toward the upstream.
	Forward *Forwarder
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// DefaultAlgorithms are offered when Options.Algorithms is empty: SHA-256
// for the clients that know it (RFC 8760), then MD5 for the many that
// know nothing else.
func DefaultAlgorithms() []string { return []string{SHA256, MD5} }

// Stats is a snapshot of the layer's counters.
type Stats struct {
	Challenges uint64
	Successes  uint64
	Trusted    uint64
	// Unanswered counts sources reported by Sweep; Pending those still
	// waited for.
	Unanswered uint64
	Pending    int
	Failures   map[string]uint64
}

// Auth is the digest authentication layer, name "auth".
type Auth struct {
	opt    Options
	algs   []string // offered, strongest first
	nonces nonceMinter
	nc     *ncTable
	dummy  map[string]string // HA1 per algorithm for users that do not exist
	agent  string            // warn-agent of our Warning headers

	pending *pending

	challenges, successes, trusted, unanswered atomic.Uint64
	failures                                   map[string]*atomic.Uint64
}

var _ sbc.Handler = (*Auth)(nil)

// New builds the layer.
func New(opt Options) (*Auth, error) {
	if opt.Realm == "" || strings.ContainsAny(opt.Realm, "\"\\\r\n") {
		return nil, fmt.Errorf("auth: invalid realm %q", opt.Realm)
	}
	if opt.Users == nil {
		return nil, errors.New("auth: no users")
	}
	keys, err := opt.keyRing()
	if err != nil {
		return nil, err
	}
	if opt.NonceTTL <= 0 {
		opt.NonceTTL = DefaultNonceTTL
	}
	if opt.MaxSkew <= 0 {
		opt.MaxSkew = DefaultMaxSkew
	}
	if opt.MaxNonces <= 0 {
		opt.MaxNonces = DefaultMaxNonces
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.UnansweredAfter <= 0 {
		opt.UnansweredAfter = DefaultUnansweredAfter
	}
	if opt.MaxPending <= 0 {
		opt.MaxPending = DefaultMaxPending
	}
	a := &Auth{
		opt:      opt,
		algs:     DefaultAlgorithms(),
		nonces:   newNonceMinter(keys),
		nc:       newNCTable(opt.MaxNonces),
		dummy:    map[string]string{},
		agent:    warnAgent(opt.Realm),
		pending:  newPending(opt.MaxPending, opt.UnansweredAfter),
		failures: map[string]*atomic.Uint64{},
	}
	if len(opt.Algorithms) > 0 {
		a.algs = nil
		for _, alg := range opt.Algorithms {
			if hexLen(alg) == 0 || slices.Contains(a.algs, alg) {
				return nil, fmt.Errorf("auth: algorithm %q unknown or repeated", alg)
			}
			a.algs = append(a.algs, alg)
		}
	}
	for _, p := range opt.Profiles {
		for _, alg := range p.Algorithms {
			if hexLen(alg) == 0 {
				return nil, fmt.Errorf("auth: profile %q: algorithm %q unknown", p.Name, alg)
			}
		}
	}
	seed := make([]byte, 16)
	_, _ = rand.Read(seed)
	for _, alg := range []string{SHA256, SHA512256, MD5} {
		a.dummy[alg] = hexHash(alg, "dummy:"+string(seed))
	}
	for _, r := range reasons {
		a.failures[r] = new(atomic.Uint64)
	}
	return a, nil
}

// Name implements sbc.Handler.
func (a *Auth) Name() string { return "auth" }

// Stats returns the counters.
func (a *Auth) Stats() Stats {
	s := Stats{
		Challenges: a.challenges.Load(),
		Successes:  a.successes.Load(),
		Trusted:    a.trusted.Load(),
		Unanswered: a.unanswered.Load(),
		Pending:    a.pending.len(),
		Failures:   make(map[string]uint64, len(a.failures)),
	}
	for r, c := range a.failures {
		s.Failures[r] = c.Load()
	}
	return s
}

// kind is the registrar (401) or proxy (407) flavour of the exchange.
type kind struct {
	code      int
	reason    string
	challenge string
	creds     string
}

var (
	registrar = kind{401, "Unauthorized", "WWW-Authenticate", "Authorization"}
	proxy     = kind{407, "Proxy Authentication Required", "Proxy-Authenticate", "Proxy-Authorization"}
)

// ServeSIP implements sbc.Handler.
func (a *Auth) ServeSIP(_ context.Context, w sbc.ResponseWriter, r *sbc.Request) (sbc.Verdict, error) {
	if r.Side == sbc.Internal {
		return sbc.Continue, nil
	}
	ip := r.Peer.Addr().Unmap()
	name, trusted := "", false
	if a.opt.Trusted != nil {
		name, trusted = a.opt.Trusted(ip)
	}
	if !trusted && r.PeerCert != nil && a.opt.TrustedCert != nil {
		name, trusted = a.opt.TrustedCert(ip, r.PeerCert)
	}
	if trusted {
		a.trusted.Add(1)
		r.Identity = &sbc.Identity{Trusted: name, Realm: a.opt.Realm}
		a.opt.Forward.Apply(r, "", a.opt.Realm)
		return sbc.Continue, nil
	}
	switch r.Method {
	case sip.ACK, sip.CANCEL:
		// ACK cannot be challenged and CANCEL must match its INVITE.
		return sbc.Continue, nil
	}
	if to := r.To(); to != nil && r.Method != sip.REGISTER {
		if tag, ok := to.Params.Get("tag"); ok && tag != "" && a.opt.InDialog != nil && a.opt.InDialog(r) {
			// In a dialog the SBC created, which was authenticated when it
			// was created. A To tag alone proves nothing: anything else
			// is challenged like any out-of-dialog request.
			r.Owned = true
			return sbc.Continue, nil
		}
	}
	if r.Method == sip.OPTIONS && r.Recipient.User == "" {
		// OPTIONS to the SBC itself is a keepalive, answered later.
		return sbc.Continue, nil
	}
	k := proxy
	if r.Method == sip.REGISTER {
		k = registrar
	}
	return a.authenticate(w, r, k, ip)
}

func (a *Auth) authenticate(w sbc.ResponseWriter, r *sbc.Request, k kind, ip netip.Addr) (sbc.Verdict, error) {
	var mine []*Credentials
	for _, h := range r.GetHeaders(k.creds) {
		c, err := ParseCredentials(h.Value())
		if err != nil {
			return a.badRequest(w, r, ReasonMalformed, "credentials do not parse")
		}
		if c.Get("realm") != a.opt.Realm {
			continue // meant for another hop
		}
		mine = append(mine, c)
	}
	if len(mine) == 0 {
		return a.challenge(w, r, k, ip, false, true)
	}
	a.pending.answered(ip)
	chosen, why := a.choose(mine)
	if chosen == nil {
		a.evidence(mine[0], ip)
		return a.badRequest(w, r, ReasonMalformed, why)
	}
	cr, why := a.validate(chosen)
	r.Claimed = cr.username
	if why != "" {
		a.evidence(chosen, ip)
		return a.badRequest(w, r, ReasonMalformed, why)
	}
	if !a.sameURI(cr.uri, r) {
		return a.badRequest(w, r, ReasonURIMismatch, "digest uri is not the Request-URI")
	}
	now := a.opt.Now()
	state, issued := a.nonces.check(cr.nonce, now, ip, a.opt.Realm, a.opt.NonceTTL, a.opt.MaxSkew)
	switch state {
	case nonceForeign:
		a.fail(r, ReasonForeignNonce)
		return a.challenge(w, r, k, ip, false, false)
	case nonceFuture:
		a.fail(r, ReasonFutureNonce)
		return a.challenge(w, r, k, ip, false, false)
	case nonceStale:
		// stale=true without checking the digest: checking it would turn
		// expired nonces into a password oracle that OnFailure never sees.
		a.fail(r, ReasonStale)
		return a.challenge(w, r, k, ip, true, false)
	}
	if op, given := chosen.Params["opaque"]; given &&
		subtle.ConstantTimeCompare([]byte(op), []byte(a.nonces.opaque(cr.nonce))) != 1 {
		return a.badRequest(w, r, ReasonBadOpaque, "opaque does not belong to the nonce")
	}
	if st := a.nc.peek(cr.nonce, issued, cr.nc); st != ncOK {
		return a.ncRefused(w, r, k, ip, st)
	}

	// The same work whether or not the user exists, has this algorithm or
	// is disabled, so that neither the response nor its timing tells.
	ha1s, disabled, known := a.opt.Users.Lookup(cr.username, a.opt.Realm)
	ha1, have := ha1s[cr.alg]
	if !known || !have || len(ha1) != hexLen(cr.alg) {
		ha1, known = a.dummy[cr.alg], false
	}
	want := response(cr.alg, ha1, string(r.Method), cr.uri, cr.nonce, cr.ncHex, cr.cnonce)
	match := subtle.ConstantTimeCompare([]byte(want), []byte(cr.response)) == 1
	locked := a.opt.Locked != nil && a.opt.Locked(cr.username, ip)
	var reason string
	switch {
	case !known:
		reason = ReasonUnknownUser
	case !match:
		reason = ReasonBadPassword
	case disabled:
		reason = ReasonDisabled
	case locked:
		reason = ReasonLocked
	}
	if reason != "" {
		a.fail(r, reason)
		if a.opt.OnFailure != nil {
			a.opt.OnFailure(ip, cr.username, reason)
		}
		return a.challenge(w, r, k, ip, false, false)
	}
	if st := a.nc.use(cr.nonce, issued, cr.nc, now, a.opt.NonceTTL); st != ncOK {
		return a.ncRefused(w, r, k, ip, st)
	}
	a.successes.Add(1)
	if a.opt.OnSuccess != nil {
		a.opt.OnSuccess(ip, cr.username)
	}
	// Our credentials are for us only and never reach the next hop; those
	// for another realm (the PBX's own digest) pass on.
	r.Request = withoutOurCredentials(r.Request, a.opt.Realm)
	r.Identity = &sbc.Identity{User: cr.username, Realm: a.opt.Realm}
	a.opt.Forward.Apply(r, cr.username, a.opt.Realm)
	return sbc.Continue, nil
}

// evidence reports unacceptable credentials (no qop, an algorithm we did
// not offer, a bad nonce count...) that still carry a valid nonce of ours
// issued to this very address: the peer saw our challenge, so this is not
// spoofed, and a client that cannot answer it properly is guessing.
// Brute-force tools that ignore qop land here.
func (a *Auth) evidence(c *Credentials, ip netip.Addr) {
	if a.opt.OnFailure == nil {
		return
	}
	nonce := c.Get("nonce")
	if nonce == "" {
		return
	}
	state, _ := a.nonces.check(nonce, a.opt.Now(), ip, a.opt.Realm, a.opt.NonceTTL, a.opt.MaxSkew)
	if state != nonceValid {
		return
	}
	user := c.Get("username")
	if len(user) > 64 {
		user = user[:64]
	}
	a.opt.OnFailure(ip, user, ReasonMalformed)
}

// ncRefused answers a nonce count that cannot be used: a replay, or a
// nonce the table has forgotten; either way the client gets stale=true.
func (a *Auth) ncRefused(w sbc.ResponseWriter, r *sbc.Request, k kind, ip netip.Addr, st ncResult) (sbc.Verdict, error) {
	if st == ncReplay {
		a.fail(r, ReasonReplay)
	} else {
		a.fail(r, ReasonStale)
	}
	return a.challenge(w, r, k, ip, true, false)
}

// choose picks, among the credentials for our realm, the one to verify:
// the only one, or — from a client that answered every challenge of a
// response at once (RFC 8760 lets it) — the one of the strongest
// algorithm. The others are not looked at, so a weak answer beside a
// strong one never decides. why says what is wrong when none can be used.
func (a *Auth) choose(creds []*Credentials) (*Credentials, string) {
	if len(creds) == 1 {
		return creds[0], ""
	}
	if len(creds) > len(a.algs) {
		return nil, "more credentials than algorithms offered"
	}
	var best *Credentials
	bestAlg := ""
	seen := map[string]bool{}
	for _, c := range creds {
		alg := a.algorithm(c)
		if alg == "" {
			return nil, "digest algorithm " + quoteParam(c.Get("algorithm")) + " not offered"
		}
		if seen[alg] {
			return nil, "two credentials for " + alg
		}
		seen[alg] = true
		if best != nil && c.Get("username") != best.Get("username") {
			return nil, "credentials name different users"
		}
		if best == nil || strength(alg) > strength(bestAlg) {
			best, bestAlg = c, alg
		}
	}
	return best, ""
}

// algorithm returns the configured algorithm c answers, "" for one we do
// not accept. An absent algorithm means MD5 (RFC 7616 3.4).
func (a *Auth) algorithm(c *Credentials) string {
	v, ok := c.Params["algorithm"]
	if !ok {
		v = MD5
	}
	for _, alg := range a.algs {
		if strings.EqualFold(v, alg) {
			return alg
		}
	}
	return ""
}

// checked holds validated credential fields.
type checked struct {
	username, uri, nonce, cnonce, response, alg, ncHex string
	nc                                                 uint32
}

// validate applies what the parser does not know: required fields, offered
// algorithm, qop=auth, a non-zero 8-digit nc, a response of the right size.
// why says what is wrong, "" when nothing is; it names fields, never the
// user, so it tells a client what to fix without telling users apart.
func (a *Auth) validate(c *Credentials) (checked, string) {
	p := c.Params
	var cr checked
	for _, f := range []string{"username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce"} {
		if p[f] == "" {
			return cr, "credentials lack " + f
		}
	}
	if _, ok := p["username*"]; ok {
		return cr, "username* (RFC 8187) not supported" // extended user names are not supported
	}
	if u, ok := p["userhash"]; ok && !strings.EqualFold(u, "false") {
		return cr, "userhash not offered"
	}
	if cr.alg = a.algorithm(c); cr.alg == "" {
		return cr, "digest algorithm " + quoteParam(p["algorithm"]) + " not offered"
	}
	if !strings.EqualFold(p["qop"], "auth") {
		return cr, "qop=auth required"
	}
	cr.ncHex = p["nc"]
	if len(cr.ncHex) != 8 {
		return cr, "nc is not 8 hex digits"
	}
	n, err := strconv.ParseUint(cr.ncHex, 16, 32)
	if err != nil || n == 0 {
		return cr, "nc is not a hex count above 0"
	}
	cr.nc = uint32(n)
	cr.response = strings.ToLower(p["response"])
	if len(cr.response) != hexLen(cr.alg) || strings.Trim(cr.response, "0123456789abcdef") != "" {
		return cr, "response is not a hex " + cr.alg + " digest"
	}
	cr.cnonce = p["cnonce"]
	if len(cr.cnonce) > maxCnonceLen {
		return cr, "cnonce longer than " + strconv.Itoa(maxCnonceLen)
	}
	cr.username, cr.uri, cr.nonce = p["username"], p["uri"], p["nonce"]
	// Quotes and backslashes in a user name are only ever injection
	// attempts; refusing them keeps the name safe to log and store.
	if strings.ContainsAny(cr.username, "\"\\") || strings.ContainsAny(cr.uri, "\"\\") {
		return cr, "quote or backslash in username or uri"
	}
	return cr, ""
}

// quoteParam renders a parameter value from the wire for a Warning text:
// cut, and without the characters that would end the quoted string.
func quoteParam(v string) string {
	if len(v) > 24 {
		v = v[:24]
	}
	v = strings.Map(func(r rune) rune {
		if r < 0x20 || r == '"' || r == '\\' || r > 0x7e {
			return '?'
		}
		return r
	}, v)
	return "'" + v + "'"
}

// sameURI reports whether the digest uri is the Request-URI. The digest
// covers the uri parameter, so without this check a captured response
// could be used for any other target.
func (a *Auth) sameURI(uri string, r *sbc.Request) bool {
	ruri := r.Recipient.String()
	if uri == ruri {
		return true
	}
	var u sip.Uri
	if err := sip.ParseUri(uri, &u); err != nil {
		return false
	}
	return u.String() == ruri
}

// fail counts a failure and names it on the request for the decision log.
func (a *Auth) fail(r *sbc.Request, reason string) {
	a.failures[reason].Add(1)
	r.Why = reason
}

// badRequest refuses credentials that cannot be used with a 400 whose
// Warning (RFC 3261 20.43, code 399) says what is wrong with them.
func (a *Auth) badRequest(w sbc.ResponseWriter, r *sbc.Request, reason, why string) (sbc.Verdict, error) {
	a.fail(r, reason)
	r.Why = reason + ": " + why
	warn := sip.NewHeader("Warning", "399 "+a.agent+` "`+why+`"`)
	if err := sbc.Respond(w, r, 400, "Bad Request", warn); err != nil {
		return sbc.Rejected, fmt.Errorf("auth: send 400: %w", err)
	}
	return sbc.Rejected, nil
}

// warnAgent is the warn-agent of our Warning headers: the realm when it is
// a token, which names the service without naming a host.
func warnAgent(realm string) string {
	for _, c := range realm {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-.!%*_+`'~", c)) {
			return "sbc"
		}
	}
	return realm
}

// challenge answers with one challenge per algorithm offered to this
// client (the configured list, or a profile's), in that order (RFC 8760
// 2.4), all with the same fresh nonce. fresh marks a request that carried
// no credentials: its source is watched until it answers (Sweep).
func (a *Auth) challenge(w sbc.ResponseWriter, r *sbc.Request, k kind, ip netip.Addr, stale, fresh bool) (sbc.Verdict, error) {
	a.challenges.Add(1)
	ua := userAgent(r)
	algs, profile := a.offer(ua)
	if fresh {
		u := Unanswered{Peer: ip, First: a.opt.Now(), Method: string(r.Method), To: r.Recipient.User,
			UserAgent: ua, Offered: algs, ProfileFor: profile}
		if r.Method == sip.REGISTER {
			if to := r.To(); to != nil {
				u.User = to.Address.User
			}
		} else if f := r.From(); f != nil {
			u.User = f.Address.User
		}
		a.pending.challenged(u)
	}
	nonce := a.nonces.mint(a.opt.Now(), ip, a.opt.Realm)
	opaque := a.nonces.opaque(nonce)
	hdrs := make([]sip.Header, 0, len(algs))
	for _, alg := range algs {
		v := `Digest realm="` + a.opt.Realm + `", nonce="` + nonce + `", opaque="` + opaque +
			`", algorithm=` + alg + `, qop="auth"`
		if stale {
			v += ", stale=true"
		}
		hdrs = append(hdrs, sip.NewHeader(k.challenge, v))
	}
	if err := sbc.Respond(w, r, k.code, k.reason, hdrs...); err != nil {
		return sbc.Rejected, fmt.Errorf("auth: send %d: %w", k.code, err)
	}
	return sbc.Rejected, nil
}

// userAgent is the client's User-Agent, cut to maxUALen bytes.
func userAgent(r *sbc.Request) string {
	h := r.GetHeader("User-Agent")
	if h == nil {
		return ""
	}
	v := h.Value()
	if len(v) > maxUALen {
		v = v[:maxUALen]
	}
	return v
}

// withoutOurCredentials returns m without the Authorization and
// Proxy-Authorization headers (any spelling) whose realm is ours, or that do
// not parse. When there are some it returns a copy: the request belongs to
// its server transaction, which reads its headers from other goroutines
// (the automatic 100 Trying), so it is never changed in place.
func withoutOurCredentials(m *sip.Request, realm string) *sip.Request {
	var keep []sip.Header
	found := false
	for _, h := range m.Headers() {
		n := h.Name()
		if !strings.EqualFold(n, "authorization") && !strings.EqualFold(n, "proxy-authorization") {
			continue
		}
		found = true
		if c, err := ParseCredentials(h.Value()); err == nil && c.Get("realm") != realm {
			keep = append(keep, sip.NewHeader(n, h.Value()))
		}
	}
	if !found {
		return m
	}
	m = m.Clone()
	removeHeaders(m, "authorization", "proxy-authorization")
	for _, h := range keep {
		m.AppendHeader(h)
	}
	return m
}

// removeHeaders drops every header with one of the lowercase names, however
// the sender spelled it (sipgo's RemoveHeader matches the exact spelling).
func removeHeaders(m *sip.Request, names ...string) {
	var spell []string
	for _, h := range m.Headers() {
		for _, n := range names {
			if strings.EqualFold(h.Name(), n) {
				spell = append(spell, h.Name())
			}
		}
	}
	for _, s := range spell {
		m.RemoveHeader(s)
	}
}
