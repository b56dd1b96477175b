package config

import "time"

// Default values, as documented on the Config fields.
const (
	defaultAddr              = "0.0.0.0:5060"
	defaultHealthInterval    = 10 * time.Second
	defaultHealthTimeout     = 2 * time.Second
	defaultHealthFailures    = 3
	defaultHealthSuccesses   = 2
	defaultMaxInflight       = 2000
	defaultMaxDialogs        = 20000
	defaultMaxMessageSize    = 65535
	defaultTCPMaxConns       = 4096
	defaultTCPMaxPerSource   = 32
	defaultTCPIdleTimeout    = 120 * time.Second
	defaultTCPWriteTimeout   = 10 * time.Second
	defaultTCPMessageTimeout = 10 * time.Second
	defaultRingTimeout       = 120 * time.Second
	defaultSessionTimeout    = 2 * time.Hour
	defaultMaxCallsPerUser   = 10
	defaultMaxCallsPerSource = 20
	defaultStorePath         = "/var/lib/sipwall"
	defaultLogLevel          = "info"
	defaultLogFormat         = "text"
	defaultUpstreamPriority  = 1
	defaultUpstreamWeight    = 1
	defaultListenerSide      = SideExternal
	defaultRegistrarMode     = RegistrarRelay
	defaultMinExpires        = 60 * time.Second
	defaultMaxExpires        = time.Hour
	defaultPhoneExpires      = 60 * time.Second
	defaultUpstreamExpires   = time.Hour
	defaultRefreshPercent    = 50
	defaultMaxBindings       = 5
	defaultMaxAORs           = 100000
	defaultWhenFull          = WhenFullReject
	defaultOtherDomainStatus = 403
	defaultAuthMode          = AuthDigest
	defaultRealm             = "sipwall"
	defaultNonceTTL          = 300 * time.Second
	defaultMaxSkew           = 5 * time.Second
	defaultKeyRotation       = 24 * time.Hour
	defaultBanThreshold      = 5
	defaultBanWindow         = 60 * time.Second
	defaultBanTime           = time.Hour
	defaultMaxBanTime        = 168 * time.Hour
	defaultBanForget         = 24 * time.Hour
	defaultPrefix6Threshold  = 20
	defaultUserThreshold     = 20
	defaultUserLockTime      = time.Hour
	defaultGuard             = GuardBlock
	defaultPinPath           = "/sys/fs/bpf/sipwall"
	defaultVerifiedShare     = 20
	defaultVerifiedTTL       = time.Hour
	defaultMediaMode         = MediaRelay
	defaultMediaPortMin      = 40000
	defaultMediaPortMax      = 44999
	defaultMediaInactivity   = 60 * time.Second
	defaultMediaMaxSessions  = 10000
	defaultMediaFastPath     = MediaFastAuto
	defaultPolicyMode        = PolicyEnforce
	defaultPolicyQuery       = "data.sipwall.decision"
	defaultPolicyTimeout     = 50 * time.Millisecond
	defaultPolicyFailStatus  = 500
	defaultPolicyZone        = "UTC"
	defaultSampleAllows      = 100
	defaultWebhookTimeout    = 5 * time.Second
)

// Default returns the configuration an empty file yields: every default
// filled in and no upstreams.
func Default() *Config {
	c := &Config{}
	c.applyDefaults()
	return c
}

// applyDefaults fills every zero field with its documented default.
//
// Zero means "unset" here, so it suits a Config assembled in code. Parse
// does not use it on decoded values: it decodes on top of Default(), which
// keeps an explicit zero in the file (health.interval: 0 disables checks,
// priority: 0 is reported as invalid instead of silently becoming 1).
func (c *Config) applyDefaults() {
	if len(c.Listen) == 0 {
		c.Listen = []Listener{
			{Transport: TransportUDP, Addr: defaultAddr},
			{Transport: TransportTCP, Addr: defaultAddr},
		}
	}
	for i := range c.Listen {
		c.Listen[i].applyDefaults()
	}
	for i := range c.Upstreams {
		c.Upstreams[i].applyDefaults()
	}
	c.Health.applyDefaults()
	c.Limits.applyDefaults()
	c.Calls.applyDefaults()
	c.Registrar.applyDefaults()
	c.Auth.applyDefaults()
	c.Bans.applyDefaults()
	setDefault(&c.Topology.Guard, defaultGuard)
	setDefault(&c.Topology.DisplayNames, TextScrub)
	for _, f := range []*string{&c.Topology.TextHeaders.Reason, &c.Topology.TextHeaders.Warning, &c.Topology.TextHeaders.Subject, &c.Topology.TextHeaders.Organization} {
		setDefault(f, TextScrub)
	}
	c.Media.applyDefaults()
	c.Policy.applyDefaults()
	c.Dialplan.Names = true
	setDefault(&c.Dialplan.TelURI, TelCarry)
	c.Rules.Builtin = true
	setDefault(&c.Rules.WebhookTimeout, Duration(defaultWebhookTimeout))
	c.Prefilter.applyDefaults()
	c.TLS.applyDefaults()
	setDefault(&c.Store.Path, defaultStorePath)
	setDefault(&c.Store.Backend, BackendEmbedded)
	setDefault(&c.Store.Redis.Prefix, "sipwall")
	setDefault(&c.Store.Redis.Timeout, Duration(500*time.Millisecond))
	setDefault(&c.Store.Redis.Resync, Duration(30*time.Second))
	if c.Store.Redis.FailClosed == nil {
		c.Store.Redis.FailClosed = []string{FailClosedFraud}
	}
	setDefault(&c.Log.Level, defaultLogLevel)
	setDefault(&c.Log.Format, defaultLogFormat)
	c.Log.Calls = true
	setDefault(&c.Admin.Addr, "127.0.0.1:9090")
	setDefault(&c.Admin.DecisionLog, 10000)
	setDefault(&c.HEP.Transport, "udp")
	setDefault(&c.Calls.DrainTimeout, Duration(30*time.Second))
}

// applyDefaults fills the zero fields of one listener. Parse also calls it
// on every fresh list element before decoding into it.
func (l *Listener) applyDefaults() {
	setDefault(&l.Side, defaultListenerSide)
}

// applyDefaults fills the zero fields of one upstream. Parse also calls it
// on every fresh list element before decoding into it.
func (u *Upstream) applyDefaults() {
	setDefault(&u.Priority, defaultUpstreamPriority)
	setDefault(&u.Weight, defaultUpstreamWeight)
}

func (h *Health) applyDefaults() {
	setDefault(&h.Interval, Duration(defaultHealthInterval))
	setDefault(&h.Timeout, Duration(defaultHealthTimeout))
	setDefault(&h.Failures, defaultHealthFailures)
	setDefault(&h.Successes, defaultHealthSuccesses)
}

func (l *Limits) applyDefaults() {
	setDefault(&l.MaxInflight, defaultMaxInflight)
	setDefault(&l.MaxDialogs, defaultMaxDialogs)
	setDefault(&l.MaxMessageSize, defaultMaxMessageSize)
	setDefault(&l.TCP.MaxConns, defaultTCPMaxConns)
	setDefault(&l.TCP.MaxConnsPerSource, defaultTCPMaxPerSource)
	setDefault(&l.TCP.IdleTimeout, Duration(defaultTCPIdleTimeout))
	setDefault(&l.TCP.WriteTimeout, Duration(defaultTCPWriteTimeout))
	setDefault(&l.TCP.MessageTimeout, Duration(defaultTCPMessageTimeout))
}

func (c *Calls) applyDefaults() {
	setDefault(&c.RingTimeout, Duration(defaultRingTimeout))
	setDefault(&c.SessionTimeout, Duration(defaultSessionTimeout))
	setDefault(&c.MaxPerUser, defaultMaxCallsPerUser)
	setDefault(&c.MaxPerSource, defaultMaxCallsPerSource)
	// MaxDuration defaults to 0 (no limit) and FollowRedirects to false,
	// which are already the zero values.
}

func (r *Registrar) applyDefaults() {
	setDefault(&r.Mode, defaultRegistrarMode)
	setDefault(&r.MinExpires, Duration(defaultMinExpires))
	setDefault(&r.MaxExpires, Duration(defaultMaxExpires))
	setDefault(&r.PhoneExpires, Duration(defaultPhoneExpires))
	setDefault(&r.UpstreamExpires, Duration(defaultUpstreamExpires))
	setDefault(&r.RefreshPercent, defaultRefreshPercent)
	setDefault(&r.MaxBindings, defaultMaxBindings)
	setDefault(&r.MaxAORs, defaultMaxAORs)
	setDefault(&r.WhenFull, defaultWhenFull)
	setDefault(&r.OtherDomainStatus, defaultOtherDomainStatus)
	// Domains and Users default to empty, Redirect to false: the zero
	// values.
}

func setDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}

func (a *Auth) applyDefaults() {
	setDefault(&a.Mode, defaultAuthMode)
	setDefault(&a.Realm, defaultRealm)
	if len(a.Algorithms) == 0 {
		a.Algorithms = []string{AlgSHA256, AlgMD5}
	}
	if a.Profiles == nil {
		// Absent, not `profiles: []`: the built-in profiles.
		a.Profiles = DefaultAuthProfiles()
	}
	setDefault(&a.NonceTTL, Duration(defaultNonceTTL))
	setDefault(&a.MaxSkew, Duration(defaultMaxSkew))
	setDefault(&a.KeyRotation, Duration(defaultKeyRotation))
}

// DefaultAuthProfiles are the auth.profiles used when the key is absent:
// client families that give up on a challenge whose algorithm is not MD5
// (even with an MD5 challenge beside it), or that read only the first
// challenge and know only MD5. They are offered MD5 alone. Matched
// case-insensitively against the User-Agent.
func DefaultAuthProfiles() []AuthProfile {
	md5 := func(name, re string) AuthProfile {
		return AuthProfile{Name: name, UserAgent: "(?i)" + re, Algorithms: []string{AlgMD5}}
	}
	return []AuthProfile{
		// libre before 2.x (Debian 12's baresip 1.1) fails the request
		// on any challenge that is not MD5.
		md5("baresip-1", `^baresip v?[01]\.`),
		// pjsip before 2.14 (MicroSIP, Zoiper 5, Asterisk's chan_pjsip as
		// a client) stops at an algorithm it does not know.
		md5("pjsip", `pjsip|microsip|^z 5\.|^zoiper|^asterisk`),
		// sofia-sip (FreeSWITCH as a client) and the browser libraries
		// JsSIP and SIP.js read one challenge and know only MD5.
		md5("md5-stacks", `freeswitch|sofia-sip|jssip|sip\.js`),
		// Desk phones and adapters in the field: most know only MD5 and
		// many read only the first challenge.
		md5("desk-phones", `yealink|grandstream|polycom|^poly|cisco|linksys|snom|fanvil|gigaset|fritz|panasonic|htek|obihai`),
	}
}

func (b *Bans) applyDefaults() {
	setDefault(&b.Threshold, defaultBanThreshold)
	setDefault(&b.Window, Duration(defaultBanWindow))
	setDefault(&b.BanTime, Duration(defaultBanTime))
	setDefault(&b.MaxBanTime, Duration(defaultMaxBanTime))
	setDefault(&b.Forget, Duration(defaultBanForget))
	setDefault(&b.Prefix6Threshold, defaultPrefix6Threshold)
	setDefault(&b.UserThreshold, defaultUserThreshold)
	setDefault(&b.UserLockTime, Duration(defaultUserLockTime))
}

func (m *Media) applyDefaults() {
	setDefault(&m.Mode, defaultMediaMode)
	setDefault(&m.PortMin, defaultMediaPortMin)
	setDefault(&m.PortMax, defaultMediaPortMax)
	setDefault(&m.Inactivity, Duration(defaultMediaInactivity))
	setDefault(&m.MaxSessions, defaultMediaMaxSessions)
	setDefault(&m.FastPath, defaultMediaFastPath)
	setDefault(&m.Encryption.Outside, MediaEncAuto)
	setDefault(&m.Encryption.Inside, MediaEncOff)
}

func (t *TLS) applyDefaults() {
	setDefault(&t.ACME.CA, DefaultACMECA)
	setDefault(&t.ACME.HTTPPort, 80)
	t.ACME.ALPN = true
	setDefault(&t.MinVersion, "1.2")
	setDefault(&t.HandshakeTimeout, Duration(5*time.Second))
	setDefault(&t.HandshakeRate, 10)
	setDefault(&t.HandshakeBurst, 20)
}

// DefaultACMECA is the ACME directory used when tls.acme.ca is not set:
// Let's Encrypt's production directory.
const DefaultACMECA = "https://acme-v02.api.letsencrypt.org/directory"

func (p *Prefilter) applyDefaults() {
	setDefault(&p.Mode, PrefilterUserspace)
	setDefault(&p.PinPath, defaultPinPath)
	setDefault(&p.VerifiedShare, defaultVerifiedShare)
	setDefault(&p.VerifiedTTL, Duration(defaultVerifiedTTL))
	r := &p.Rates
	for _, d := range []struct {
		r           *Rate
		rate, burst int
	}{
		{&r.Request, 200, 400}, {&r.Response, 400, 800}, {&r.Keepalive, 20, 40},
		{&r.Stun, 20, 40}, {&r.Junk, 5, 10}, {&r.Syn, 20, 40},
	} {
		setDefault(d.r, Rate{Rate: d.rate, Burst: d.burst})
	}
	c := &p.Caps
	setDefault(&c.Request, 20000)
	setDefault(&c.Response, 40000)
	setDefault(&c.Keepalive, 20000)
	setDefault(&c.Stun, 10000)
	setDefault(&c.Junk, 1000)
	setDefault(&c.Syn, 5000)
}

func (p *Policy) applyDefaults() {
	setDefault(&p.Mode, defaultPolicyMode)
	setDefault(&p.Query, defaultPolicyQuery)
	setDefault(&p.Timeout, Duration(defaultPolicyTimeout))
	setDefault(&p.FailStatus, defaultPolicyFailStatus)
	setDefault(&p.Zone, defaultPolicyZone)
	setDefault(&p.SampleAllows, defaultSampleAllows)
}
