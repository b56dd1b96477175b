package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	// Time zones resolve the same on machines without a zoneinfo database.
	_ "time/tzdata"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/dialplan"
)

// Transports sipwall can listen on. Adding a transport means adding its
// constant here and to the transports list.
const (
	TransportUDP = "udp"
	TransportTCP = "tcp"
	TransportTLS = "tls"
	TransportWSS = "wss"
)

var transports = []string{TransportUDP, TransportTCP, TransportTLS, TransportWSS}

// sendTransports are those sipwall opens toward upstreams and the trunk.
var sendTransports = []string{TransportUDP, TransportTCP, TransportTLS}

// socketKind is the kind of socket a transport binds: tcp, tls and wss
// all bind TCP ports and so cannot share one.
func socketKind(transport string) string {
	if transport == TransportUDP {
		return "udp"
	}
	return "tcp"
}

// Listener sides.
const (
	SideExternal = "external"
	SideInternal = "internal"
)

// Registrar modes and what to do when an AOR is full.
const (
	RegistrarRelay = "relay"
	RegistrarLocal = "local"
	RegistrarOff   = "off"

	WhenFullReject        = "reject"
	WhenFullReplaceOldest = "replace_oldest"
)

// maxRefreshPercent keeps a margin between the end of the caching window
// and the expiry of the PBX's binding, for the refresh that goes up.
const maxRefreshPercent = 90

// Topology guard modes and media modes.
const (
	GuardBlock         = "block"
	TextKeep           = "keep"
	TextScrub          = "scrub"
	TextDrop           = "drop"
	GuardLog           = "log"
	GuardOff           = "off"
	PrefilterXDP       = "xdp"
	PrefilterUserspace = "userspace"
	PrefilterOff       = "off"

	MediaRelay = "relay"
	MediaOff   = "off"

	MediaFastTC   = "tc"
	MediaFastAuto = "auto"
	MediaFastOff  = "off"

	MediaEncPass = "pass"
	MediaEncOff  = "off"
	MediaEncSDES = "sdes"
	MediaEncDTLS = "dtls"
	MediaEncAuto = "auto"
)

var (
	guardModes     = []string{GuardBlock, GuardLog, GuardOff}
	textModes      = []string{TextKeep, TextScrub, TextDrop}
	displayModes   = []string{TextScrub, TextDrop}
	mediaModes     = []string{MediaRelay, MediaOff}
	mediaFastPaths = []string{MediaFastAuto, MediaFastTC, MediaFastOff}
	mediaEncModes  = []string{MediaEncAuto, MediaEncSDES, MediaEncDTLS, MediaEncOff, MediaEncPass}
	prefilterModes = []string{PrefilterXDP, PrefilterUserspace, PrefilterOff}
	tlsVersions    = []string{"1.2", "1.3"}
)

// Policy modes.
const (
	PolicyEnforce = "enforce"
	PolicyShadow  = "shadow"
	PolicyOff     = "off"
)

var policyModes = []string{PolicyEnforce, PolicyShadow, PolicyOff}

// Auth modes.
const (
	AuthDigest = "digest"
	AuthOff    = "off"
)

// Digest algorithms (RFC 8760).
const (
	AlgSHA256    = "SHA-256"
	AlgSHA512256 = "SHA-512-256"
	AlgMD5       = "MD5"
)

var (
	algorithms     = []string{AlgSHA256, AlgSHA512256, AlgMD5}
	authModes      = []string{AuthDigest, AuthOff}
	registrarModes = []string{RegistrarRelay, RegistrarLocal, RegistrarOff}
	whenFull       = []string{WhenFullReject, WhenFullReplaceOldest}
)

var (
	sides      = []string{SideExternal, SideInternal}
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"text", "json"}
)

// Bounds of limits.max_message_size. Below 1 KiB ordinary INVITEs with SDP
// no longer fit; above 64 KiB - 1 a message cannot travel in one UDP
// datagram.
const (
	minMessageSize = 1024
	maxMessageSize = 65535
)

// Validate checks c the way Parse does after decoding. Parse already calls
// it; use it on a Config built or changed in code. Problems point at lines
// of the parsed file when c came from Parse.
func (c *Config) Validate() error {
	return newError(c.pos.fileName(), c.problems())
}

// RequireUpstreams reports an error when no upstream is configured. Parse
// allows none (demo mode supplies its own); serving for real needs one.
func (c *Config) RequireUpstreams() error {
	if len(c.Upstreams) > 0 {
		return nil
	}
	line := 0
	if c.pos != nil {
		line = 1 // not in the file at all: point at its start
		if l, ok := c.pos.keys["upstreams"]; ok {
			line = l
		}
	}
	return newError(c.pos.fileName(), []Problem{{Line: line, Key: "upstreams", Msg: "at least one upstream is required"}})
}

// RequireUsers reports an error when auth.mode is digest but there is
// neither a users file nor a trusted peer: nobody could ever get through.
// Parse allows it (demo mode supplies its own users); serving needs it.
func (c *Config) RequireUsers() error {
	if c.Auth.Mode != AuthDigest || c.Auth.UsersFile != "" || len(c.Auth.Trusted) > 0 {
		return nil
	}
	return c.KeyError("auth.users_file", errors.New("is required when auth.mode is digest (or list auth.trusted peers); write it with `sipwall passwd`"))
}

// checker collects validation problems, looking up each key's line.
type checker struct {
	pos      *positions
	problems []Problem
}

func (ch *checker) fail(key, format string, args ...any) {
	ch.problems = append(ch.problems, Problem{Line: ch.pos.line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

// problems runs every check on c.
func (c *Config) problems() []Problem {
	ch := &checker{pos: c.pos}
	ch.listeners(c.Listen)
	ch.upstreams(c.Upstreams)
	ch.health(c.Health)
	if c.Outbound != nil {
		ch.sipURI("outbound.uri", c.Outbound.URI)
	}
	ch.limits(c.Limits)
	ch.calls(c.Calls)
	ch.registrar(c.Registrar, c.Auth.Mode == AuthDigest)
	ch.auth(c.Auth, c.TLS.ClientCA)
	ch.bans(c.Bans)
	ch.topology(c.Topology)
	ch.media(c.Media)
	ch.policy(c.Policy)
	ch.dialplan(c.Dialplan, c.Policy.Country)
	if w := c.Rules.Webhook; w != "" {
		if u, err := url.Parse(w); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			ch.fail("rules.webhook", "%s is not an http or https URL", quote(w))
		}
	}
	if c.Rules.WebhookTimeout <= 0 || c.Rules.WebhookTimeout > Duration(time.Minute) {
		ch.fail("rules.webhook_timeout", "must be greater than 0 and at most 1m, got %s", c.Rules.WebhookTimeout)
	}
	if c.Auth.Mode == AuthOff && c.Policy.Mode == PolicyEnforce && c.Policy.Dir == "" {
		ch.fail(ch.pos.written("auth.mode", "policy.mode"), "with auth.mode off the built-in policy refuses every untrusted request from outside; set policy.dir to a policy of yours, or policy.mode to off or shadow")
	}
	ch.prefilter(c.Prefilter)
	ch.mediaFastPath(c.Media, c.Prefilter)
	ch.mediaEncryption(c.Media.Encryption, c.Auth.Trusted)
	ch.tls(c.TLS, c.Listen, c.Upstreams)
	if strings.TrimSpace(c.Store.Path) == "" {
		ch.fail("store.path", "must not be empty")
	}
	ch.store(c.Store)
	ch.admin(c.Admin)
	ch.hep(c.HEP)
	if c.Calls.DrainTimeout < 0 || c.Calls.DrainTimeout > Duration(time.Hour) {
		ch.fail("calls.drain_timeout", "must be 0 to 1h, got %s", c.Calls.DrainTimeout)
	}
	ch.oneOf("log.level", c.Log.Level, logLevels)
	ch.oneOf("log.format", c.Log.Format, logFormats)
	return ch.problems
}

func (ch *checker) listeners(ls []Listener) {
	if len(ls) == 0 {
		ch.fail("listen", "at least one listener is required")
	}
	type socket struct {
		transport string
		addr      netip.AddrPort
	}
	first := map[socket]int{}
	for i, l := range ls {
		p := "listen[" + strconv.Itoa(i) + "]"
		okTransport := ch.oneOf(p+".transport", l.Transport, transports)
		addr, okAddr := ch.bindAddr(p+".addr", l.Addr)
		ch.oneOf(p+".side", l.Side, sides)
		if l.Advertise != "" {
			ch.advertise(p+".advertise", l.Advertise)
		}
		// Port 0 asks the kernel for a free port, so two such listeners
		// never collide.
		if okTransport && okAddr && addr.Port() != 0 {
			s := socket{socketKind(l.Transport), addr}
			if j, dup := first[s]; dup {
				ch.fail(p+".addr", "duplicate listener %s %s (same as listen[%d])", l.Transport, addr, j)
			} else {
				first[s] = i
			}
		}
	}
}

func (ch *checker) upstreams(us []Upstream) {
	first := map[string]int{}
	for i, u := range us {
		p := "upstreams[" + strconv.Itoa(i) + "]"
		switch j, dup := first[u.Name]; {
		case strings.TrimSpace(u.Name) == "":
			ch.fail(p+".name", "is required")
		case dup:
			ch.fail(p+".name", "duplicate name %s (also upstreams[%d])", quote(u.Name), j)
		default:
			first[u.Name] = i
		}
		ch.sipURI(p+".uri", u.URI)
		if u.TLSName != "" && !isHostname(strings.TrimSuffix(u.TLSName, ".")) {
			ch.fail(p+".tls_name", "%s is not a DNS name", quote(u.TLSName))
		}
		ch.atLeast(p+".priority", u.Priority, 1)
		ch.atLeast(p+".weight", u.Weight, 1)
	}
}

func (ch *checker) health(h Health) {
	ch.atLeast("health.failures", h.Failures, 1)
	ch.atLeast("health.successes", h.Successes, 1)
	ch.nonNegative("health.interval", h.Interval)
	ch.nonNegative("health.timeout", h.Timeout)
	if h.Interval <= 0 {
		return // checks are off; the timeout is unused
	}
	if h.Timeout <= 0 {
		ch.fail("health.timeout", "must be greater than 0 while health checks are on (health.interval > 0)")
		return
	}
	if h.Timeout >= h.Interval {
		// Point at whichever of the two the file sets; the other is a default.
		key := "health.timeout"
		if !ch.pos.has(key) && ch.pos.has("health.interval") {
			key = "health.interval"
		}
		ch.fail(key, "health.timeout (%s) must be shorter than health.interval (%s)", h.Timeout, h.Interval)
	}
}

func (ch *checker) limits(l Limits) {
	ch.atLeast("limits.max_inflight", l.MaxInflight, 1)
	ch.atLeast("limits.max_dialogs", l.MaxDialogs, 1)
	if l.MaxMessageSize < minMessageSize || l.MaxMessageSize > maxMessageSize {
		ch.fail("limits.max_message_size", "must be between %d and %d, got %d", minMessageSize, maxMessageSize, l.MaxMessageSize)
	}
	ch.atLeast("limits.tcp.max_conns", l.TCP.MaxConns, 1)
	ch.atLeast("limits.tcp.max_conns_per_source", l.TCP.MaxConnsPerSource, 1)
	ch.positive("limits.tcp.idle_timeout", l.TCP.IdleTimeout)
	ch.positive("limits.tcp.write_timeout", l.TCP.WriteTimeout)
	ch.positive("limits.tcp.message_timeout", l.TCP.MessageTimeout)
}

func (ch *checker) calls(c Calls) {
	ch.positive("calls.ring_timeout", c.RingTimeout)
	ch.nonNegative("calls.max_duration", c.MaxDuration)
	ch.positive("calls.session_timeout", c.SessionTimeout)
	ch.callCap("calls.max_per_user", c.MaxPerUser)
	ch.callCap("calls.max_per_source", c.MaxPerSource)
	ch.callCap("calls.max_per_trusted", c.MaxPerTrusted)
}

// maxCallCap bounds the calls.max_per_* keys: more than the largest
// dialog table anyone runs is a typo.
const maxCallCap = 1_000_000

func (ch *checker) callCap(key string, v int) {
	if v < 0 || v > maxCallCap {
		ch.fail(key, "must be 0 (no cap) to %d, got %d", maxCallCap, v)
	}
}

func (ch *checker) registrar(r Registrar, authenticated bool) {
	okMode := ch.oneOf("registrar.mode", r.Mode, registrarModes)
	local := okMode && r.Mode == RegistrarLocal
	seen := map[string]int{}
	for i, d := range r.Domains {
		key := "registrar.domains[" + strconv.Itoa(i) + "]"
		if !isDomain(d) {
			ch.fail(key, "%s is neither a host name nor an IP address (IPv6 in brackets)", quote(d))
			continue
		}
		// AOR hosts compare case-insensitively (RFC 3261 19.1.4).
		if j, dup := seen[strings.ToLower(d)]; dup {
			ch.fail(key, "duplicate domain %s (also registrar.domains[%d])", quote(d), j)
			continue
		}
		seen[strings.ToLower(d)] = i
	}
	users := map[string]int{}
	for i, u := range r.Users {
		key := "registrar.users[" + strconv.Itoa(i) + "]"
		if !isUserPart(u) {
			ch.fail(key, "%s is not a SIP user part (no spaces, \"@\", \":\", \";\" or \"<>\")", quote(u))
			continue
		}
		if j, dup := users[u]; dup {
			ch.fail(key, "duplicate user %s (also registrar.users[%d])", quote(u), j)
			continue
		}
		users[u] = i
	}
	if local && len(r.Domains) == 0 {
		ch.fail("registrar.domains", "at least one domain is required when registrar.mode is local")
	}
	if local && len(r.Users) == 0 && !authenticated {
		ch.fail("registrar.users", "at least one user is required when registrar.mode is local and auth.mode is off (no open registrar)")
	}
	okMin := ch.seconds("registrar.min_expires", r.MinExpires)
	okMax := ch.seconds("registrar.max_expires", r.MaxExpires)
	okPhone := ch.seconds("registrar.phone_expires", r.PhoneExpires)
	okUp := ch.seconds("registrar.upstream_expires", r.UpstreamExpires)
	// Each comparison is reported once, at whichever of its keys the file
	// sets (the other one being a default).
	switch {
	case okMin && okMax && r.MaxExpires < r.MinExpires:
		ch.fail(ch.pos.written("registrar.max_expires", "registrar.min_expires"),
			"registrar.max_expires (%s) must not be shorter than registrar.min_expires (%s)", r.MaxExpires, r.MinExpires)
	case okMin && okMax && okPhone && (r.PhoneExpires < r.MinExpires || r.PhoneExpires > r.MaxExpires):
		ch.fail(ch.pos.written("registrar.phone_expires", "registrar.min_expires", "registrar.max_expires"),
			"registrar.phone_expires (%s) must be from registrar.min_expires (%s) to registrar.max_expires (%s)", r.PhoneExpires, r.MinExpires, r.MaxExpires)
	case okPhone && okUp && r.UpstreamExpires < r.PhoneExpires:
		ch.fail(ch.pos.written("registrar.upstream_expires", "registrar.phone_expires"),
			"registrar.upstream_expires (%s) must not be shorter than registrar.phone_expires (%s)", r.UpstreamExpires, r.PhoneExpires)
	}
	if r.RefreshPercent < 0 || r.RefreshPercent > maxRefreshPercent {
		ch.fail("registrar.refresh_percent", "must be from 0 to %d, got %d", maxRefreshPercent, r.RefreshPercent)
	}
	ch.atLeast("registrar.max_bindings", r.MaxBindings, 1)
	ch.atLeast("registrar.max_aors", r.MaxAORs, 1)
	ch.oneOf("registrar.when_full", r.WhenFull, whenFull)
	if r.OtherDomainStatus != 403 && r.OtherDomainStatus != 404 {
		ch.fail("registrar.other_domain_status", "must be 403 or 404, got %d", r.OtherDomainStatus)
	}
	if r.Redirect && okMode && !local {
		ch.fail("registrar.redirect", "needs registrar.mode local (the SBC must be the location service it redirects from)")
	}
}

// minNonceTTL keeps nonces usable across a slow client's retry.
const minNonceTTL = 10 * time.Second

// coreHeaders are the headers the SBC writes itself on every request; a
// configured identity or source header may not be one of them.
var coreHeaders = []string{
	"via", "v", "from", "f", "to", "t", "call-id", "i", "cseq", "contact", "m",
	"max-forwards", "content-length", "l", "content-type", "c", "route",
	"record-route", "authorization", "proxy-authorization",
}

func (ch *checker) auth(a Auth, clientCA string) {
	ch.oneOf("auth.mode", a.Mode, authModes)
	if a.Realm == "" || len(a.Realm) > 128 || strings.ContainsAny(a.Realm, "\"\\\r\n\t") {
		ch.fail("auth.realm", "must be 1 to 128 characters without quotes, backslashes or control characters, got %s", quote(a.Realm))
	}
	if a.NonceTTL < Duration(minNonceTTL) {
		ch.fail("auth.nonce_ttl", "must be at least %s, got %s", minNonceTTL, a.NonceTTL)
	}
	ch.nonNegative("auth.max_skew", a.MaxSkew)
	algs := map[string]int{}
	for i, alg := range a.Algorithms {
		key := "auth.algorithms[" + strconv.Itoa(i) + "]"
		if !ch.oneOf(key, alg, algorithms) {
			continue
		}
		if j, dup := algs[alg]; dup {
			ch.fail(key, "duplicate algorithm %s (also auth.algorithms[%d])", alg, j)
		}
		algs[alg] = i
	}
	ch.authProfiles(a)
	if a.KeyRotation < a.NonceTTL {
		ch.fail(ch.pos.written("auth.key_rotation", "auth.nonce_ttl"),
			"auth.key_rotation (%s) must not be shorter than auth.nonce_ttl (%s): a nonce must outlive its key by no more than one rotation", a.KeyRotation, a.NonceTTL)
	}
	names := map[string]int{}
	for i, t := range a.Trusted {
		p := "auth.trusted[" + strconv.Itoa(i) + "]"
		switch j, dup := names[t.Name]; {
		case strings.TrimSpace(t.Name) == "":
			ch.fail(p+".name", "is required")
		case dup:
			ch.fail(p+".name", "duplicate name %s (also auth.trusted[%d])", quote(t.Name), j)
		default:
			names[t.Name] = i
		}
		if len(t.CIDRs) == 0 && len(t.CertNames) == 0 && len(t.CertFingerprints) == 0 {
			ch.fail(p+".cidrs", "at least one network (or cert_names / cert_fingerprints) is required")
		}
		for k, n := range t.CertNames {
			if strings.TrimSpace(n) == "" || len(n) > 253 || strings.ContainsAny(n, " \t\r\n\x00") {
				ch.fail(p+".cert_names["+strconv.Itoa(k)+"]", "%s is not a certificate name", quote(n))
			}
		}
		for k, f := range t.CertFingerprints {
			if _, ok := NormFingerprint(f); !ok {
				ch.fail(p+".cert_fingerprints["+strconv.Itoa(k)+"]", "%s is not a SHA-256 fingerprint (64 hex digits, colons allowed)", quote(f))
			}
		}
		if (len(t.CertNames) > 0 || len(t.CertFingerprints) > 0) && clientCA == "" {
			ch.fail(p+".cert_names", "identifying a peer by certificate needs tls.client_ca")
		}
		for k, c := range t.CIDRs {
			if _, err := ParsePrefix(c); err != nil {
				ch.fail(p+".cidrs["+strconv.Itoa(k)+"]", "%s is not an IP network (e.g. \"203.0.113.0/24\", \"2001:db8::/48\" or one address)", quote(c))
			}
		}
	}
	ch.headerName("auth.assert_identity", a.AssertIdentity)
	ch.headerName("auth.source_header", a.SourceHeader)
	if a.SourceHeader != "" && a.SourceKeyFile == "" {
		ch.fail("auth.source_key_file", "is required with auth.source_header (the key the upstream checks the signature with)")
	}
	if a.AssertIdentity != "" && a.SourceHeader != "" && strings.EqualFold(a.AssertIdentity, a.SourceHeader) {
		ch.fail("auth.source_header", "must differ from auth.assert_identity")
	}
}

// ParsePrefix reads a network "203.0.113.0/24" or a single address (as a
// /32 or /128), masked to its network.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p.Addr().Zone() != "" || (p.Addr().Is4In6() && p.Bits() < 96) {
			return netip.Prefix{}, errors.New("not a network")
		}
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p.Addr())).Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, errors.New("not an address")
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// unmapBits is what a v4-mapped IPv6 prefix loses when written as IPv4.
func unmapBits(a netip.Addr) int {
	if a.Is4In6() {
		return 96
	}
	return 0
}

// headerName checks an optional SIP header name: a token, not one the SBC
// writes itself.
// authProfiles checks auth.profiles: a name, a regular expression that
// compiles, and known algorithms.
func (ch *checker) authProfiles(a Auth) {
	names := map[string]int{}
	for i, p := range a.Profiles {
		key := "auth.profiles[" + strconv.Itoa(i) + "]"
		if p.Name == "" || len(p.Name) > 64 {
			ch.fail(key+".name", "required, at most 64 characters")
		} else if j, dup := names[p.Name]; dup {
			ch.fail(key+".name", "duplicate profile %s (also auth.profiles[%d])", quote(p.Name), j)
		} else {
			names[p.Name] = i
		}
		if p.UserAgent == "" {
			ch.fail(key+".user_agent", "required: a regular expression matched against the User-Agent")
		} else if _, err := regexp.Compile(p.UserAgent); err != nil {
			ch.fail(key+".user_agent", "not a regular expression: %v", err)
		}
		if len(p.Algorithms) == 0 {
			ch.fail(key+".algorithms", "required: one or more of auth.algorithms")
		}
		for j, alg := range p.Algorithms {
			// One not in auth.algorithms is never offered: a profile
			// chooses among what is configured.
			ch.oneOf(key+".algorithms["+strconv.Itoa(j)+"]", alg, algorithms)
		}
	}
}

func (ch *checker) headerName(key, s string) {
	if s == "" {
		return
	}
	if len(s) > 64 || strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~") != "" {
		ch.fail(key, "%s is not a header name (letters, digits and -.!%%*_+`'~)", quote(s))
		return
	}
	if slices.Contains(coreHeaders, strings.ToLower(s)) {
		ch.fail(key, "%s is a header the SBC writes itself", quote(s))
	}
}

func (ch *checker) bans(b Bans) {
	ch.atLeast("bans.threshold", b.Threshold, 1)
	ch.positive("bans.window", b.Window)
	ch.positive("bans.ban_time", b.BanTime)
	if b.MaxBanTime < b.BanTime {
		ch.fail(ch.pos.written("bans.max_ban_time", "bans.ban_time"),
			"bans.max_ban_time (%s) must not be shorter than bans.ban_time (%s)", b.MaxBanTime, b.BanTime)
	}
	ch.nonNegative("bans.forget", b.Forget)
	ch.atLeast("bans.prefix6_threshold", b.Prefix6Threshold, 1)
	ch.atLeast("bans.user_threshold", b.UserThreshold, 1)
	ch.positive("bans.user_lock_time", b.UserLockTime)
	for i, a := range b.ScannerAgents {
		key := "bans.scanner_agents[" + strconv.Itoa(i) + "]"
		switch {
		case strings.TrimSpace(a) == "":
			ch.fail(key, "must not be empty")
		case strings.EqualFold(a, "none") && len(b.ScannerAgents) > 1:
			ch.fail(key, "\"none\" turns the list off and must be alone")
		}
	}
}

func (ch *checker) topology(t Topology) {
	if strings.ContainsAny(t.UserAgent, "\r\n\x00") || len(t.UserAgent) > 128 {
		ch.fail("topology.user_agent", "must be at most 128 characters on one line")
	}
	for i, h := range t.ToOutside {
		ch.headerName("topology.to_outside["+strconv.Itoa(i)+"]", h)
	}
	for i, h := range t.ToInside {
		ch.headerName("topology.to_inside["+strconv.Itoa(i)+"]", h)
	}
	for i, n := range t.InternalNets {
		if _, err := ParsePrefix(n); err != nil {
			ch.fail("topology.internal_nets["+strconv.Itoa(i)+"]", "%s is not an IP network (e.g. \"10.0.0.0/8\")", quote(n))
		}
	}
	for i, n := range t.InternalNames {
		if !isHostname(strings.TrimSuffix(n, ".")) {
			ch.fail("topology.internal_names["+strconv.Itoa(i)+"]", "%s is not a host name", quote(n))
		}
	}
	ch.oneOf("topology.guard", t.Guard, guardModes)
	seen := map[int]bool{}
	for i, c := range t.KeepReasons {
		key := "topology.keep_reasons[" + strconv.Itoa(i) + "]"
		switch {
		case c < 100 || c > 699:
			ch.fail(key, "%d is not a status code (100 to 699)", c)
		case seen[c]:
			ch.fail(key, "%d is listed twice", c)
		}
		seen[c] = true
	}
	ch.oneOf("topology.text_headers.reason", t.TextHeaders.Reason, textModes)
	ch.oneOf("topology.text_headers.warning", t.TextHeaders.Warning, textModes)
	ch.oneOf("topology.text_headers.subject", t.TextHeaders.Subject, textModes)
	ch.oneOf("topology.text_headers.organization", t.TextHeaders.Organization, textModes)
	ch.oneOf("topology.display_names", t.DisplayNames, displayModes)
	for i, a := range t.SDPAttributes {
		name := strings.TrimSuffix(a, "*")
		if name == "" || len(a) > 64 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != "" {
			ch.fail("topology.sdp_attributes["+strconv.Itoa(i)+"]", "%s is not an SDP attribute name (letters, digits and -_., a trailing * for a prefix)", quote(a))
		}
	}
	for i, w := range t.ProductWords {
		key := "topology.product_words[" + strconv.Itoa(i) + "]"
		switch {
		case strings.TrimSpace(w) == "" || strings.ContainsAny(w, "\r\n\x00"):
			ch.fail(key, "must be a word on one line")
		case strings.EqualFold(w, "none") && len(t.ProductWords) > 1:
			ch.fail(key, "\"none\" turns the list off and must be alone")
		}
	}
}

func (ch *checker) media(m Media) {
	ch.oneOf("media.mode", m.Mode, mediaModes)
	if m.PortMin < 1024 || m.PortMin > 65534 || m.PortMin%2 != 0 {
		ch.fail("media.port_min", "must be an even port from 1024 to 65534, got %d", m.PortMin)
	}
	if m.PortMax > 65535 || m.PortMax < m.PortMin+3 {
		ch.fail(ch.pos.written("media.port_max", "media.port_min"), "media.port_max (%d) must be at most 65535 and leave room for two port pairs above media.port_min (%d)", m.PortMax, m.PortMin)
	}
	for _, k := range []struct{ key, v string }{
		{"media.external_ip", m.ExternalIP}, {"media.internal_ip", m.InternalIP},
		{"media.advertise_external", m.AdvertiseExternal}, {"media.advertise_internal", m.AdvertiseInternal},
	} {
		if k.v == "" {
			continue
		}
		a, err := netip.ParseAddr(k.v)
		if err != nil || a.Zone() != "" {
			ch.fail(k.key, "%s is not an IP address", quote(k.v))
		} else if strings.HasPrefix(k.key, "media.advertise") && a.IsUnspecified() {
			ch.fail(k.key, "must not be a wildcard address")
		}
	}
	ch.nonNegative("media.inactivity", m.Inactivity)
	ch.atLeast("media.max_sessions", m.MaxSessions, 1)
}

// mediaFastPath checks media.fastpath: tc attaches to the prefilter's
// interfaces, so it needs some.
func (ch *checker) mediaFastPath(m Media, p Prefilter) {
	if ch.oneOf("media.fastpath", m.FastPath, mediaFastPaths) && m.FastPath == MediaFastTC && len(p.Interfaces) == 0 {
		ch.fail(ch.pos.written("prefilter.interfaces", "media.fastpath"), "fastpath tc needs the NICs media arrives on in prefilter.interfaces")
	}
}

// mediaEncryption checks media.encryption: pass on both sides or
// neither, and a requirement that a terminating mode outside can meet.
func (ch *checker) mediaEncryption(e MediaEncryption, trusted []Trusted) {
	okOut := ch.oneOf("media.encryption.outside", e.Outside, mediaEncModes)
	okIn := ch.oneOf("media.encryption.inside", e.Inside, mediaEncModes)
	for i, t := range trusted {
		if t.Encryption == "" {
			continue
		}
		key := "auth.trusted[" + strconv.Itoa(i) + "].encryption"
		if ch.oneOf(key, t.Encryption, mediaEncModes[:4]) && okIn && e.Inside == MediaEncPass {
			ch.fail(key, "a mode of the peer's own needs media.encryption.inside other than pass")
		}
	}
	if !okOut || !okIn {
		return
	}
	if (e.Outside == MediaEncPass) != (e.Inside == MediaEncPass) {
		ch.fail(ch.pos.written("media.encryption.inside", "media.encryption.outside"), "pass needs pass on both sides (the endpoints then agree on SRTP end to end)")
	}
	if e.Require && (e.Outside == MediaEncPass || e.Outside == MediaEncOff) {
		ch.fail("media.encryption.require", "needs media.encryption.outside auto, sdes or dtls (the SBC must terminate SRTP outside to check it)")
	}
}

var tlsURI = regexp.MustCompile(`(?i);transport=tls(;|$)`)

// NormFingerprint gives a SHA-256 certificate fingerprint as 64 lower-case
// hex digits, accepting colons between bytes and either case.
func NormFingerprint(s string) (string, bool) {
	f := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	if len(f) != 64 || strings.Trim(f, "0123456789abcdef") != "" {
		return "", false
	}
	return f, true
}

func (ch *checker) tls(t TLS, ls []Listener, us []Upstream) {
	hasTLS := slices.ContainsFunc(ls, func(l Listener) bool { return l.Transport == TransportTLS })
	for i, u := range us {
		if !hasTLS && tlsURI.MatchString(u.URI) {
			ch.fail("upstreams["+strconv.Itoa(i)+"].uri", "transport=tls needs a tls listener (its address goes in the Via and Contact)")
		}
	}
	secure := -1
	for i, l := range ls {
		if l.Transport == TransportTLS || l.Transport == TransportWSS {
			secure = i
			break
		}
	}
	acme := len(t.ACME.Names) > 0
	files := t.CertFile != "" || t.KeyFile != ""
	switch {
	case acme && files:
		ch.fail(ch.pos.written("tls.cert_file", "tls.key_file"), "set either tls.acme.names or tls.cert_file and tls.key_file, not both")
	case files && (t.CertFile == "" || t.KeyFile == ""):
		ch.fail(ch.pos.written("tls.cert_file", "tls.key_file"), "tls.cert_file and tls.key_file go together")
	case secure >= 0 && !acme && !files:
		ch.fail("listen["+strconv.Itoa(secure)+"].transport", "a %s listener needs a certificate: set tls.acme.names or tls.cert_file and tls.key_file", ls[secure].Transport)
	}
	for i, n := range t.ACME.Names {
		if !isHostname(strings.TrimSuffix(n, ".")) || !strings.Contains(n, ".") {
			ch.fail("tls.acme.names["+strconv.Itoa(i)+"]", "%s is not a DNS name", quote(n))
		}
	}
	if t.ACME.CA != "" {
		if u, err := url.Parse(t.ACME.CA); err != nil || u.Scheme != "https" || u.Host == "" {
			ch.fail("tls.acme.ca", "%s is not an https URL of an ACME directory", quote(t.ACME.CA))
		}
	}
	if t.ACME.HTTPPort < 0 || t.ACME.HTTPPort > 65535 {
		ch.fail("tls.acme.http_port", "must be a port (0 turns HTTP-01 off), got %d", t.ACME.HTTPPort)
	}
	if acme && t.ACME.HTTPPort == 0 && !t.ACME.ALPN {
		ch.fail(ch.pos.written("tls.acme.http_port", "tls.acme.alpn"), "ACME needs a challenge: set tls.acme.http_port or tls.acme.alpn")
	}
	if acme && t.ACME.ALPN && t.ACME.HTTPPort == 0 && secure < 0 {
		ch.fail("tls.acme.alpn", "TLS-ALPN-01 is answered on a tls or wss listener, and there is none")
	}
	ch.nonNegative("tls.acme.renew_before", t.ACME.RenewBefore)
	ch.oneOf("tls.min_version", t.MinVersion, tlsVersions)
	if t.HandshakeTimeout <= 0 || t.HandshakeTimeout > Duration(time.Minute) {
		ch.fail("tls.handshake_timeout", "must be greater than 0 and at most 1m, got %s", t.HandshakeTimeout)
	}
	if t.HandshakeRate < 0 {
		ch.fail("tls.handshake_rate", "must not be negative (0: no limit), got %d", t.HandshakeRate)
	}
	if t.HandshakeRate > 0 && t.HandshakeBurst < 1 {
		ch.fail(ch.pos.written("tls.handshake_burst", "tls.handshake_rate"), "must be at least 1 when tls.handshake_rate is set, got %d", t.HandshakeBurst)
	}
	if (t.UpstreamCertFile == "") != (t.UpstreamKeyFile == "") {
		ch.fail(ch.pos.written("tls.upstream_cert_file", "tls.upstream_key_file"), "tls.upstream_cert_file and tls.upstream_key_file go together")
	}
	if t.CRLFile != "" && t.ClientCA == "" {
		ch.fail("tls.crl_file", "needs tls.client_ca (the CA whose certificates it revokes)")
	}
}

// Kinds of shared state store.redis.fail_closed may name.
const (
	FailClosedFraud         = "fraud"
	FailClosedRegistrations = "registrations"
)

func (ch *checker) store(s Store) {
	if !ch.oneOf("store.backend", s.Backend, []string{BackendEmbedded, BackendRedis}) || s.Backend != BackendRedis {
		return
	}
	r := s.Redis
	if len(r.Addrs) == 0 {
		ch.fail("store.redis.addrs", "at least one address is required with store.backend redis")
	}
	for _, a := range r.Addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			ch.fail("store.redis.addrs", "%s is not host:port", quote(a))
		}
	}
	if r.Cluster && r.MasterName != "" {
		ch.fail("store.redis.cluster", "cluster and master_name (Sentinel) exclude each other")
	}
	if r.Cluster && r.DB != 0 {
		ch.fail("store.redis.db", "Redis Cluster has database 0 only")
	}
	if r.DB < 0 || r.DB > 15 {
		ch.fail("store.redis.db", "must be 0 to 15, got %d", r.DB)
	}
	if r.Prefix == "" || strings.ContainsAny(r.Prefix, " \t\r\n{}*?[]") {
		ch.fail("store.redis.prefix", "must be a non-empty name without spaces, braces or glob characters, got %s", quote(r.Prefix))
	}
	if r.Timeout <= 0 || r.Timeout > Duration(10*time.Second) {
		ch.fail("store.redis.timeout", "must be greater than 0 and at most 10s, got %s", r.Timeout)
	}
	if r.Resync < Duration(time.Second) || r.Resync > Duration(time.Hour) {
		ch.fail("store.redis.resync", "must be 1s to 1h, got %s", r.Resync)
	}
	for _, k := range r.FailClosed {
		ch.oneOf("store.redis.fail_closed", k, []string{FailClosedFraud, FailClosedRegistrations})
	}
}

func (ch *checker) admin(a Admin) {
	if a.DecisionLog < 100 || a.DecisionLog > 1000000 {
		ch.fail("admin.decision_log", "must be 100 to 1000000 entries, got %d", a.DecisionLog)
	}
	if a.Console && (a.Addr == "" || a.TokenFile == "") {
		ch.fail(ch.pos.written("admin.console", "admin.token_file"), "the web console needs admin.addr and admin.token_file: its login is the admin token")
	}
	if a.Addr == "" {
		return
	}
	ap, err := netip.ParseAddrPort(a.Addr)
	if err != nil {
		ch.fail("admin.addr", "%s is not IP:port (e.g. \"127.0.0.1:9090\"; \"\" turns the API off)", quote(a.Addr))
		return
	}
	if !ap.Addr().IsLoopback() && a.TokenFile == "" {
		ch.fail(ch.pos.written("admin.token_file", "admin.addr"), "admin.addr %s is not a loopback address: set admin.token_file", a.Addr)
	}
}

func (ch *checker) hep(h HEP) {
	if h.Addr != "" {
		if ap, err := netip.ParseAddrPort(h.Addr); err != nil || ap.Port() == 0 || ap.Addr().IsUnspecified() {
			ch.fail("hep.addr", "%s is not the collector's IP:port", quote(h.Addr))
		}
	}
	ch.oneOf("hep.transport", h.Transport, []string{"udp", "tcp"})
	if h.AgentID < 0 || int64(h.AgentID) > 1<<32-1 {
		ch.fail("hep.agent_id", "must be 0 to 4294967295, got %d", h.AgentID)
	}
}

func (ch *checker) prefilter(p Prefilter) {
	ch.oneOf("prefilter.mode", p.Mode, prefilterModes)
	if p.Mode == PrefilterXDP && len(p.Interfaces) == 0 {
		ch.fail(ch.pos.written("prefilter.interfaces", "prefilter.mode"), "mode xdp needs at least one NIC in prefilter.interfaces")
	}
	for i, n := range p.Interfaces {
		if n == "" || len(n) > 15 || strings.ContainsAny(n, "/ \t\r\n\x00:") {
			ch.fail("prefilter.interfaces["+strconv.Itoa(i)+"]", "%s is not an interface name", quote(n))
		}
	}
	if p.Mode == PrefilterXDP && p.PinPath != "" && !filepath.IsAbs(p.PinPath) {
		ch.fail("prefilter.pin_path", "must be an absolute path on a bpf filesystem, got %s", quote(p.PinPath))
	}
	for _, l := range []struct {
		key  string
		nets []string
	}{{"prefilter.allow", p.Allow}, {"prefilter.deny", p.Deny}} {
		for i, n := range l.nets {
			if _, err := ParsePrefix(n); err != nil {
				ch.fail(l.key+"["+strconv.Itoa(i)+"]", "%s is not an IP network (e.g. \"192.0.2.0/24\")", quote(n))
			}
		}
	}
	if p.VerifiedShare < 0 || p.VerifiedShare > 100 {
		ch.fail("prefilter.verified_share", "must be a percentage from 0 to 100, got %d", p.VerifiedShare)
	}
	ch.positive("prefilter.verified_ttl", p.VerifiedTTL)
	r := p.Rates
	for _, c := range []struct {
		name string
		r    Rate
	}{{"request", r.Request}, {"response", r.Response}, {"keepalive", r.Keepalive}, {"stun", r.Stun}, {"junk", r.Junk}, {"syn", r.Syn}} {
		key := "prefilter.rates." + c.name
		if c.r.Rate < 0 || c.r.Rate > 1_000_000 {
			ch.fail(key+".rate", "must be 0 (no limit) to 1000000 packets per second, got %d", c.r.Rate)
		}
		if c.r.Rate > 0 && (c.r.Burst < 1 || c.r.Burst > 10_000_000) {
			ch.fail(ch.pos.written(key+".burst", key+".rate"), "must be 1 to 10000000 packets when %s.rate is set, got %d", key, c.r.Burst)
		}
	}
	cp := p.Caps
	for _, c := range []struct {
		name string
		v    int
	}{{"request", cp.Request}, {"response", cp.Response}, {"keepalive", cp.Keepalive}, {"stun", cp.Stun}, {"junk", cp.Junk}, {"syn", cp.Syn}} {
		if c.v < 0 {
			ch.fail("prefilter.caps."+c.name, "must not be negative (0: no cap), got %d", c.v)
		}
	}
}

func (ch *checker) policy(p Policy) {
	ch.oneOf("policy.mode", p.Mode, policyModes)
	if !strings.HasPrefix(p.Query, "data.") || strings.ContainsAny(p.Query, " \t\r\n") {
		ch.fail("policy.query", "must be a reference under data, e.g. \"data.sipwall.decision\", got %s", quote(p.Query))
	}
	if p.Timeout <= 0 || p.Timeout > Duration(time.Second) {
		ch.fail("policy.timeout", "must be greater than 0 and at most 1s, got %s", p.Timeout)
	}
	if p.FailStatus != 403 && p.FailStatus != 500 {
		ch.fail("policy.fail_status", "must be 403 or 500, got %d", p.FailStatus)
	}
	if _, err := time.LoadLocation(p.Zone); err != nil || p.Zone == "" {
		ch.fail("policy.zone", "%s is not an IANA time zone (e.g. \"Europe/London\")", quote(p.Zone))
	}
	if p.Country != "" && !slices.Contains(dialplan.Countries(), p.Country) {
		ch.fail("policy.country", "must be one of %s (ISO 3166 alpha-2, capitals), got %s", strings.Join(dialplan.Countries(), ", "), quote(p.Country))
	}
	if p.SampleAllows < 0 {
		ch.fail("policy.sample_allows", "must not be negative, got %d", p.SampleAllows)
	}
}

// Values of dialplan.tel_uri.
const (
	TelCarry  = "carry"
	TelRefuse = "refuse"
)

func (ch *checker) dialplan(d Dialplan, policyCountry string) {
	countryOK := true
	if d.Country != "" && !slices.Contains(dialplan.Countries(), d.Country) {
		ch.fail("dialplan.country", "must be one of %s (ISO 3166 alpha-2, capitals), got %s", strings.Join(dialplan.Countries(), ", "), quote(d.Country))
		countryOK = false
	}
	if d.Country != "" && policyCountry != "" && d.Country != policyCountry {
		ch.fail(ch.pos.written("dialplan.country", "policy.country"), "dialplan.country (%s) and policy.country (%s) differ: set dialplan.country alone", d.Country, policyCountry)
	}
	digits := func(key, v string, max int) {
		if v != "" && (len(v) > max || strings.Trim(v, "0123456789") != "") {
			ch.fail(key, "must be 1 to %d digits, got %s", max, quote(v))
		}
	}
	digits("dialplan.trunk_prefix", d.TrunkPrefix, 3)
	digits("dialplan.international_prefix", d.InternationalPrefix, 4)
	if d.TrunkPrefix != "" && d.TrunkPrefix == d.InternationalPrefix {
		ch.fail(ch.pos.written("dialplan.international_prefix", "dialplan.trunk_prefix"), "dialplan.trunk_prefix and dialplan.international_prefix are both %s", quote(d.TrunkPrefix))
	}
	if len(d.NationalLengths) > 0 && d.Country == "" && policyCountry == "" {
		ch.fail("dialplan.national_lengths", "needs dialplan.country")
	}
	for i, n := range d.NationalLengths {
		if n < 4 || n > 14 {
			ch.fail("dialplan.national_lengths["+strconv.Itoa(i)+"]", "must be 4 to 14, got %d", n)
		}
	}
	patterns := func(key string, l []string) {
		if len(l) > 64 {
			ch.fail(key, "at most 64 patterns, got %d", len(l))
		}
		for i, p := range l {
			if _, err := regexp.Compile(p); err != nil || len(p) > 256 {
				ch.fail(key+"["+strconv.Itoa(i)+"]", "%s is not a regular expression of at most 256 characters", quote(p))
			}
		}
	}
	patterns("dialplan.extensions", d.Extensions)
	patterns("dialplan.service_codes", d.ServiceCodes)
	for i, e := range d.Emergency {
		digits("dialplan.emergency["+strconv.Itoa(i)+"]", e, 8)
		if e == "" {
			ch.fail("dialplan.emergency["+strconv.Itoa(i)+"]", "must be 1 to 8 digits, got \"\"")
		}
	}
	for i, f := range d.Features {
		if f == "" || len(f) > 8 || strings.Trim(f, "0123456789*#") != "" {
			ch.fail("dialplan.features["+strconv.Itoa(i)+"]", "must be 1 to 8 digits, * or #, got %s", quote(f))
		}
	}
	ch.oneOf("dialplan.tel_uri", d.TelURI, []string{TelCarry, TelRefuse})
	if countryOK && len(ch.problems) == 0 {
		// Whatever the checks above let through, the plan must build.
		if _, err := dialplan.New(d.Plan(policyCountry)); err != nil {
			ch.fail("dialplan", "%v", err)
		}
	}
}

// Plan is the dial plan's configuration, with policy.country as the
// country when dialplan.country is not set.
func (d Dialplan) Plan(policyCountry string) dialplan.Config {
	// An empty list is the default, as a list left out: a dumped
	// configuration (nil lists written as []) reads back the same.
	orNil := func(l []string) []string {
		if len(l) == 0 {
			return nil
		}
		return l
	}
	c := dialplan.Config{
		Country: d.Country, TrunkPrefix: d.TrunkPrefix, InternationalPrefix: d.InternationalPrefix,
		Extensions: orNil(d.Extensions), NoNames: !d.Names, Emergency: orNil(d.Emergency),
		ServiceCodes: orNil(d.ServiceCodes), Features: orNil(d.Features),
	}
	if len(d.NationalLengths) > 0 {
		c.NationalLengths = d.NationalLengths
	}
	if c.Country == "" {
		c.Country = policyCountry
	}
	return c
}

// written returns the first of keys that the file sets, or the first key
// when it sets none of them.
func (p *positions) written(keys ...string) string {
	for _, k := range keys {
		if p.has(k) {
			return k
		}
	}
	return keys[0]
}

// seconds checks an expiry: SIP counts them in whole seconds (RFC 3261
// 20.19), at least one.
func (ch *checker) seconds(key string, d Duration) bool {
	if d < Duration(time.Second) || d%Duration(time.Second) != 0 {
		ch.fail(key, "must be a whole number of seconds, at least 1s, got %s", d)
		return false
	}
	return true
}

// isDomain reports whether s can be the host of an AOR: a DNS name, an
// IPv4 address or an IPv6 address in brackets.
func isDomain(s string) bool {
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		ip, err := netip.ParseAddr(s[1 : len(s)-1])
		return err == nil && ip.Is6() && ip.Zone() == ""
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip.Is4()
	}
	return isHostname(s)
}

// isUserPart reports whether s is usable as the user of an AOR: not empty,
// at most 128 bytes, and none of the characters that end a user part or
// need escaping.
func isUserPart(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	return !strings.ContainsAny(s, " \t\r\n@:;<>\"?,/%")
}

// oneOf checks that v is one of allowed; it reports whether it is.
func (ch *checker) oneOf(key, v string, allowed []string) bool {
	if slices.Contains(allowed, v) {
		return true
	}
	list := strings.Join(allowed, ", ")
	if v == "" {
		ch.fail(key, "is required (one of %s)", list)
	} else {
		ch.fail(key, "%s is not one of %s", quote(v), list)
	}
	return false
}

func (ch *checker) atLeast(key string, v, lowest int) {
	if v < lowest {
		ch.fail(key, "must be at least %d, got %d", lowest, v)
	}
}

func (ch *checker) positive(key string, d Duration) {
	if d <= 0 {
		ch.fail(key, "must be greater than 0, got %s", d)
	}
}

func (ch *checker) nonNegative(key string, d Duration) {
	if d < 0 {
		ch.fail(key, "must not be negative, got %s", d)
	}
}

// bindAddrHint shows the accepted form of a listen address.
const bindAddrHint = `(e.g. "0.0.0.0:5060", "[::]:5060", "192.0.2.10:5060")`

// bindAddr checks a listen address: an IP literal (IPv6 in brackets) and a
// port, 0 meaning any free port. It returns the parsed address.
func (ch *checker) bindAddr(key, s string) (netip.AddrPort, bool) {
	if s == "" {
		ch.fail(key, "is required %s", bindAddrHint)
		return netip.AddrPort{}, false
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		why := "not IP:port"
		var ae *net.AddrError
		if errors.As(err, &ae) {
			why = ae.Err // e.g. "missing port in address"
		}
		ch.fail(key, "%s is not an IP:port address: %s %s", quote(s), why, bindAddrHint)
		return netip.AddrPort{}, false
	}
	if host == "" {
		ch.fail(key, "%s has no IP address; use \"0.0.0.0%s\" for every IPv4 address or \"[::]%s\" for every IPv6 address",
			quote(s), s, s)
		return netip.AddrPort{}, false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		ch.fail(key, "%s: %s is not an IP address (host names are not accepted here) %s", quote(s), quote(host), bindAddrHint)
		return netip.AddrPort{}, false
	}
	if ip.Is4() && strings.HasPrefix(s, "[") {
		ch.fail(key, "%s: only IPv6 addresses go in brackets", quote(s))
		return netip.AddrPort{}, false
	}
	n, ok := parsePort(port)
	if !ok {
		ch.fail(key, "%s: port %s is not a number from 0 to 65535", quote(s), quote(port))
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip, n), true
}

// advertise checks an advertised address: host or host:port, where host is
// an IP literal (IPv6 in brackets) or a DNS name, and the port 1..65535.
func (ch *checker) advertise(key, s string) {
	host, port := s, ""
	bracketed := false
	switch {
	case strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]"):
		host, bracketed = s[1:len(s)-1], true
	case strings.Contains(s, ":"):
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			ch.fail(key, "%s is not host or host:port (IPv6 addresses go in brackets, e.g. \"[2001:db8::1]:5060\")", quote(s))
			return
		}
		host, port, bracketed = h, p, strings.HasPrefix(s, "[")
	}
	if port != "" {
		if n, ok := parsePort(port); !ok || n == 0 {
			ch.fail(key, "%s: port %s is not a number from 1 to 65535", quote(s), quote(port))
			return
		}
	}
	ip, err := netip.ParseAddr(host)
	switch {
	case err != nil && bracketed:
		ch.fail(key, "%s: %s in brackets is not an IPv6 address", quote(s), quote(host))
	case err != nil:
		if !isHostname(host) {
			ch.fail(key, "%s: %s is neither an IP address nor a host name", quote(s), quote(host))
		}
	case ip.Is4() && bracketed:
		ch.fail(key, "%s: only IPv6 addresses go in brackets", quote(s))
	case ip.IsUnspecified():
		ch.fail(key, "%s is a wildcard address; advertise the address peers should send to", quote(s))
	case ip.Zone() != "":
		ch.fail(key, "%s: a zone (%%%s) means nothing to peers", quote(s), ip.Zone())
	}
}

// sipURIHint shows the accepted form of upstream and outbound URIs.
const sipURIHint = `(e.g. "sip:10.0.0.10:5060;transport=tcp")`

// sipURI checks a URI to send to: sip (TLS is transport=tls), an IP literal host, an
// optional port and, if present, a transport sipwall supports.
func (ch *checker) sipURI(key, s string) {
	if s == "" {
		ch.fail(key, "is required %s", sipURIHint)
		return
	}
	// Checked before parsing: the parser's complaints about a missing or
	// foreign scheme are less clear than this.
	scheme, _, _ := strings.Cut(s, ":")
	if scheme = strings.ToLower(scheme); scheme != "sip" {
		ch.fail(key, "%s: scheme must be sip (for TLS use ;transport=tls) %s", quote(s), sipURIHint)
		return
	}
	var u sip.Uri
	if err := parseURI(s, &u); err != nil {
		ch.fail(key, "%s is not a valid SIP URI: %v %s", quote(s), err, sipURIHint)
		return
	}
	host := u.Host
	bracketed := strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]")
	if bracketed {
		host = host[1 : len(host)-1]
	}
	if host == "" {
		ch.fail(key, "%s has no host %s", quote(s), sipURIHint)
		return
	}
	ip, err := netip.ParseAddr(host)
	switch {
	case err != nil || (bracketed && !ip.Is6()) || (!bracketed && !ip.Is4()):
		ch.fail(key, "%s: host %s is not an IP address (IPv4, or IPv6 in brackets); DNS names are not supported", quote(s), quote(u.Host))
		return
	case ip.IsUnspecified():
		ch.fail(key, "%s: host %s is a wildcard address, not a destination", quote(s), quote(u.Host))
		return
	}
	if u.Port < 0 || u.Port > 65535 {
		ch.fail(key, "%s: port %d is not from 1 to 65535", quote(s), u.Port)
		return
	}
	for _, kv := range u.UriParams {
		if strings.EqualFold(kv.K, "transport") && !slices.Contains(sendTransports, strings.ToLower(kv.V)) {
			ch.fail(key, "%s: transport=%s is not one of %s", quote(s), kv.V, strings.Join(sendTransports, ", "))
			return
		}
	}
}

// parseURI is sip.ParseUri made safe to call on any string: the parser is
// third-party code, and a malformed config must be an error, not a crash.
func parseURI(s string, u *sip.Uri) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("unparsable (%v)", r)
		}
	}()
	return sip.ParseUri(s, u)
}

// parsePort parses a decimal port number 0..65535 (no sign, no spaces).
func parsePort(s string) (uint16, bool) {
	n, err := strconv.ParseUint(s, 10, 16)
	return uint16(n), err == nil
}

// isHostname reports whether s is a syntactically valid DNS name.
func isHostname(s string) bool {
	s = strings.TrimSuffix(s, ".") // a fully qualified name may end in a dot
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	// An all-numeric last label makes it a malformed IPv4 address
	// ("10.0.0.300"), never a name.
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != ""
}
