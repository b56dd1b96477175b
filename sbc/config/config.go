// Package config is sipwall's configuration: a typed, strictly decoded YAML
// document. Unknown keys, wrong types and bad values are errors that name the
// key and its line in the file.
package config

// Config is the whole configuration file. Every field documents its default.
type Config struct {
	// Listen is the list of sockets sipwall serves SIP on.
	// Default: one UDP and one TCP listener on 0.0.0.0:5060, side external.
	Listen []Listener `yaml:"listen"`
	// Upstreams are the internal PBXs / proxies calls from outside go to.
	// Required outside demo mode.
	Upstreams []Upstream `yaml:"upstreams"`
	// Health configures OPTIONS health checks of the upstreams.
	Health Health `yaml:"health"`
	// Outbound is where calls from the inside to non-registered outside
	// destinations go (a carrier trunk). Optional: without it such calls get 404.
	Outbound *Outbound `yaml:"outbound"`
	// Limits bounds everything an attacker can drive.
	Limits Limits `yaml:"limits"`
	// Calls configures the B2BUA's call handling and timers.
	Calls Calls `yaml:"calls"`
	// Registrar configures REGISTER handling and the location service.
	Registrar Registrar `yaml:"registrar"`
	// Auth configures trusted peers and digest authentication.
	Auth Auth `yaml:"auth"`
	// Bans configures brute-force and scanner bans.
	Bans Bans `yaml:"bans"`
	// Topology configures what of the inside may be seen from outside.
	Topology Topology `yaml:"topology"`
	// Media configures the media relay.
	Media Media `yaml:"media"`
	// Dialplan says how the destinations outside parties name are read.
	Dialplan Dialplan `yaml:"dialplan"`
	// Policy configures the OPA policy layer.
	Policy Policy `yaml:"policy"`
	// Rules configures the anti-fraud rules.
	Rules Rules `yaml:"rules"`
	// TLS configures certificates and TLS for the tls and wss listeners.
	TLS TLS `yaml:"tls"`
	// Prefilter configures the packet prefilter: XDP at the NIC or the
	// same limiter in the listeners.
	Prefilter Prefilter `yaml:"prefilter"`
	// Store is the embedded state store.
	Store Store `yaml:"store"`
	// Log configures logging.
	Log Log `yaml:"log"`
	// Admin configures the admin HTTP API.
	Admin Admin `yaml:"admin"`
	// HEP copies SIP messages to a Homer collector.
	HEP HEP `yaml:"hep"`

	// pos remembers where each key of a parsed file was, so checks made
	// after parsing (Validate, RequireUpstreams) can still name a line.
	pos *positions
}

// Listener is one SIP socket.
type Listener struct {
	// Transport: udp, tcp, tls (SIP over TLS) or wss (SIP over secure
	// WebSocket, RFC 7118). Required.
	Transport string `yaml:"transport"`
	// Addr is host:port to bind, IPv4 or IPv6 ("[::]:5060"). Required.
	Addr string `yaml:"addr"`
	// Side is "external" (default) or "internal". Requests toward the
	// upstreams leave from an internal listener when there is one; whether a
	// request came from the inside is decided by its source IP, not by this.
	Side string `yaml:"side"`
	// Advertise is the host[:port] written in Via, Contact and Record-Route
	// for messages sent from this listener. Default: the bound address, or the
	// first non-loopback address of the host when bound to a wildcard.
	Advertise string `yaml:"advertise"`
}

// Upstream is one internal PBX or proxy.
type Upstream struct {
	// Name identifies the upstream in logs and metrics. Required, unique.
	Name string `yaml:"name"`
	// URI is the SIP URI to send to, e.g. "sip:10.0.0.10:5060;transport=tcp".
	// The host must be an IP address. Required.
	URI string `yaml:"uri"`
	// Priority: lower is preferred. Default 1.
	Priority int `yaml:"priority"`
	// Weight shares load between upstreams of the same priority. Default 1.
	Weight int `yaml:"weight"`
	// TLSName is the name the upstream's certificate must carry when the
	// URI says transport=tls. Empty: its IP address (an IP SAN).
	TLSName string `yaml:"tls_name"`
}

// Health configures the OPTIONS health checks of upstreams.
type Health struct {
	// Interval between checks of one upstream. Default 10s; 0 disables checks.
	Interval Duration `yaml:"interval"`
	// Timeout of one check. Default 2s.
	Timeout Duration `yaml:"timeout"`
	// Failures in a row that mark an upstream down. Default 3.
	Failures int `yaml:"failures"`
	// Successes in a row that mark a down upstream up again. Default 2.
	Successes int `yaml:"successes"`
}

// Outbound is the trunk for calls from the inside to the outside.
type Outbound struct {
	// URI of the trunk, e.g. "sip:203.0.113.5:5060". Required.
	URI string `yaml:"uri"`
}

// Limits bounds resources.
type Limits struct {
	// MaxInflight is the number of requests processed at once; beyond it new
	// requests are dropped (UDP) or answered 503 (stream). Default 2000.
	MaxInflight int `yaml:"max_inflight"`
	// MaxDialogs bounds the dialog table; new calls beyond it get 503.
	// Default 20000.
	MaxDialogs int `yaml:"max_dialogs"`
	// MaxMessageSize in bytes for any transport. Default 65535.
	MaxMessageSize int `yaml:"max_message_size"`
	// TCP limits stream connections.
	TCP TCPLimits `yaml:"tcp"`
}

// TCPLimits bounds stream transports.
type TCPLimits struct {
	// MaxConns is the total number of inbound connections. Default 4096.
	MaxConns int `yaml:"max_conns"`
	// MaxConnsPerSource bounds connections from one IP. Default 32.
	MaxConnsPerSource int `yaml:"max_conns_per_source"`
	// IdleTimeout closes a connection that sent nothing for this long.
	// Default 120s.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// WriteTimeout bounds one write. Default 10s.
	WriteTimeout Duration `yaml:"write_timeout"`
	// MessageTimeout bounds the time from the first byte of a message to
	// its last, so a client trickling bytes (slow loris) cannot hold a
	// connection. Default 10s.
	MessageTimeout Duration `yaml:"message_timeout"`
}

// Calls configures the B2BUA.
type Calls struct {
	// RingTimeout ends an unanswered INVITE with 408 (and CANCEL toward the
	// inside). Default 120s.
	RingTimeout Duration `yaml:"ring_timeout"`
	// MaxDuration tears down a call (BYE both legs) after this long; 0 = no
	// limit. Default 0.
	MaxDuration Duration `yaml:"max_duration"`
	// SessionTimeout ends a confirmed dialog that saw no in-dialog request
	// for this long (protects the table from vanished peers). Default 2h.
	SessionTimeout Duration `yaml:"session_timeout"`
	// FollowRedirects makes the B2BUA follow a 3xx from the inside instead
	// of relaying it. Default false.
	FollowRedirects bool `yaml:"follow_redirects"`
	// DrainTimeout is how long a stopping sipwall (SIGTERM) lets calls in
	// progress end by themselves, refusing new ones, before it stops.
	// Default 30s; 0 stops at once.
	DrainTimeout Duration `yaml:"drain_timeout"`
	// MaxPerUser caps the calls in progress (ringing or answered) that one
	// authenticated user places from outside; one more gets 486 Busy Here
	// with a Warning. A phone has a few lines; 10 leaves room for
	// transfers and conferences. Default 10; 0 = no cap.
	MaxPerUser int `yaml:"max_per_user"`
	// MaxPerSource caps the calls in progress placed from one outside
	// address (an IPv6 /64 counts as one), whoever they authenticate as;
	// trusted peers are not counted. Default 20 (an office behind one
	// NAT, at one call in progress per three or four phones, up to about
	// 70 phones); 0 = no cap.
	MaxPerSource int `yaml:"max_per_source"`
	// MaxPerTrusted caps the calls in progress of one trusted peer (a
	// trunk, a PBX), counted by its name. Its capacity is a contract's
	// business, so by default there is none. Default 0 = no cap.
	MaxPerTrusted int `yaml:"max_per_trusted"`
}

// Registrar configures REGISTER handling and the location service (see
// sbc/registrar/README.md).
type Registrar struct {
	// Mode is "relay" (REGISTER from outside goes to the upstream PBX, the
	// SBC keeps the binding and gives the PBX a Contact pointing at itself),
	// "local" (the SBC is the registrar) or "off" (REGISTER passes to the
	// B2BUA's plain relay). Default relay.
	Mode string `yaml:"mode"`
	// Domains are the AOR hosts accepted in To. Empty means any host in
	// relay mode (the PBX decides); local mode needs at least one.
	Domains []string `yaml:"domains"`
	// Users are the user parts allowed to register in local mode, until the
	// auth layer's users file replaces this list. Required in local mode.
	Users []string `yaml:"users"`
	// MinExpires: a REGISTER asking less (but not 0) gets 423 with
	// Min-Expires. Default 60s.
	MinExpires Duration `yaml:"min_expires"`
	// MaxExpires caps the expiry granted. Default 1h.
	MaxExpires Duration `yaml:"max_expires"`
	// PhoneExpires caps the expiry granted toward phones, short so that
	// they refresh often enough to keep NAT pinholes open. Default 60s.
	PhoneExpires Duration `yaml:"phone_expires"`
	// UpstreamExpires is the expiry asked of the PBX in relay mode.
	// Default 1h.
	UpstreamExpires Duration `yaml:"upstream_expires"`
	// RefreshPercent: a refresh arriving while less than this share of the
	// PBX's expiry has passed is answered by the SBC without asking the PBX.
	// 0 turns caching off. Default 50.
	RefreshPercent int `yaml:"refresh_percent"`
	// MaxBindings bounds the contacts of one AOR. Default 5.
	MaxBindings int `yaml:"max_bindings"`
	// MaxAORs bounds the AORs in the location store. Default 100000.
	MaxAORs int `yaml:"max_aors"`
	// WhenFull is what a REGISTER beyond max_bindings gets: "reject" (403)
	// or "replace_oldest". Default reject.
	WhenFull string `yaml:"when_full"`
	// OtherDomainStatus answers a REGISTER for a host not in domains:
	// 403 or 404. Default 403.
	OtherDomainStatus int `yaml:"other_domain_status"`
	// Redirect answers INVITEs for registered users with 302 instead of
	// relaying them (the redirect server role). Local mode only. Default
	// false.
	Redirect bool `yaml:"redirect"`
}

// Auth configures who may send requests from outside (see
// sbc/auth/README.md).
type Auth struct {
	// Mode is "digest" (every out-of-dialog request from an untrusted peer
	// must authenticate) or "off" (requests pass to the upstream unchallenged;
	// the PBX must authenticate them itself). Default digest.
	Mode string `yaml:"mode"`
	// Realm of the challenges. HA1 values in the users file bind it.
	// Default "sipwall".
	Realm string `yaml:"realm"`
	// UsersFile is the YAML file of users and their HA1 values, written by
	// `sipwall passwd`; reloaded when it changes. Required in digest mode
	// unless every peer is trusted.
	UsersFile string `yaml:"users_file"`
	// Algorithms offered, one challenge header each, in this order, and
	// the only ones accepted: SHA-256, SHA-512-256, MD5. Default [SHA-256,
	// MD5]: clients pick the first they know (RFC 8760), and a client
	// answering both is verified on the stronger. Which algorithms an
	// account accepts is decided by the HA1 values stored for it (`sipwall
	// passwd -no-md5` stores none for MD5).
	Algorithms []string `yaml:"algorithms"`
	// Profiles offer clients recognised by their User-Agent a subset of
	// algorithms, in their order; the first match wins. Absent: the
	// built-in profiles (MD5 alone for client families that give up on a
	// challenge that is not MD5: baresip 1.x, pjsip before 2.14, JsSIP,
	// most desk phones; see sbc/auth/README.md). `profiles: []` turns them
	// off.
	Profiles []AuthProfile `yaml:"profiles"`
	// NonceTTL is how long a nonce is accepted; then stale=true. Default 300s.
	NonceTTL Duration `yaml:"nonce_ttl"`
	// MaxSkew is how far ahead of our clock a nonce may be dated (nodes
	// sharing keys). Default 5s.
	MaxSkew Duration `yaml:"max_skew"`
	// KeyRotation is how often the nonce key is replaced; the previous key
	// stays valid for one more period. Default 24h.
	KeyRotation Duration `yaml:"key_rotation"`
	// Trusted peers (carriers, other PBXs) skip digest and are never banned.
	// The upstreams are always trusted.
	Trusted []Trusted `yaml:"trusted"`
	// AssertIdentity names a header (e.g. P-Asserted-Identity) carrying the
	// authenticated user to the upstream as <sip:user@realm>. Empty: none.
	AssertIdentity string `yaml:"assert_identity"`
	// SourceHeader names a header carrying the real source address of a
	// request to the upstream, signed with SourceKeyFile (see
	// sbc/auth/README.md). Empty: none.
	SourceHeader string `yaml:"source_header"`
	// SourceKeyFile holds the HMAC key (at least 32 bytes) signing
	// SourceHeader. Required with source_header.
	SourceKeyFile string `yaml:"source_key_file"`
}

// AuthProfile is one entry of auth.profiles.
type AuthProfile struct {
	// Name shows in the decision log. Required, unique.
	Name string `yaml:"name"`
	// UserAgent is a regular expression (Go syntax, RE2) matched against
	// the first 128 bytes of the User-Agent header. Required.
	UserAgent string `yaml:"user_agent"`
	// Algorithms offered to matching clients, among auth.algorithms.
	// Required.
	Algorithms []string `yaml:"algorithms"`
}

// Trusted is a named group of peer networks that skip digest.
type Trusted struct {
	// Name shows in logs and in the request's identity. Required, unique.
	Name string `yaml:"name"`
	// CIDRs are the peer networks, e.g. "203.0.113.0/24" or "2001:db8::/48".
	CIDRs []string `yaml:"cidrs"`
	// CertNames and CertFingerprints identify the peer by the client
	// certificate it presents over tls or wss (verified against
	// tls.client_ca): a DNS SAN (or common name), or the certificate's
	// SHA-256 in hex. With CIDRs too, both must match.
	CertNames        []string `yaml:"cert_names"`
	CertFingerprints []string `yaml:"cert_fingerprints"`
	// Encryption is the media encryption with this peer: auto, sdes,
	// dtls or off (as media.encryption.outside). Default: that of
	// media.encryption.outside. media.encryption.require does not apply
	// to a peer with a mode of its own.
	Encryption string `yaml:"encryption"`
}

// Bans configures the ban store (see sbc/ban/README.md).
type Bans struct {
	// Threshold is the number of failed digests (answers to our own
	// challenge) from one address within Window that bans it. Default 5.
	Threshold int `yaml:"threshold"`
	// Window of the failure counts. Default 60s.
	Window Duration `yaml:"window"`
	// BanTime is the first ban's length; each new ban of the same address
	// doubles it. Default 1h.
	BanTime Duration `yaml:"ban_time"`
	// MaxBanTime caps the doubling. Default 168h.
	MaxBanTime Duration `yaml:"max_ban_time"`
	// Forget drops an address's escalation this long after its last ban
	// ended. Default 24h.
	Forget Duration `yaml:"forget"`
	// Prefix6Threshold: failures from one IPv6 /64 within Window that ban
	// the whole /64. Default 20.
	Prefix6Threshold int `yaml:"prefix6_threshold"`
	// UserThreshold: failures for one user name (any address) within
	// Window that lock the user for addresses it never authenticated from.
	// Default 20.
	UserThreshold int `yaml:"user_threshold"`
	// UserLockTime is the length of a user lock. Default 1h.
	UserLockTime Duration `yaml:"user_lock_time"`
	// ScannerAgents are case-insensitive User-Agent substrings banned on
	// first sight. Empty: the built-in list; ["none"] turns it off.
	ScannerAgents []string `yaml:"scanner_agents"`
}

// Topology configures topology hiding (see topology/README.md).
type Topology struct {
	// UserAgent is written as User-Agent and Server toward the outside.
	// Empty: none (the inside's are always removed).
	UserAgent string `yaml:"user_agent"`
	// ToOutside lists extra headers copied from the inside to the outside.
	ToOutside []string `yaml:"to_outside"`
	// ToInside lists extra headers copied from the outside to the inside.
	ToInside []string `yaml:"to_inside"`
	// InternalNets are inside networks beyond the upstreams' addresses:
	// rewritten in URIs toward the outside and looked for by the guard.
	InternalNets []string `yaml:"internal_nets"`
	// InternalNames are inside host names (and their subdomains).
	InternalNames []string `yaml:"internal_names"`
	// Guard scans every message sent outside for inside addresses and
	// names: block (default), log or off.
	Guard string `yaml:"guard"`
	// KeepReasons are status codes whose reason phrase from the inside
	// crosses as it came, unless it names the inside or a product word.
	// Default: none (every response toward the outside carries the RFC
	// phrase of its code).
	KeepReasons []int `yaml:"keep_reasons"`
	// TextHeaders is the policy per free-text header toward the outside.
	TextHeaders TextHeaders `yaml:"text_headers"`
	// DisplayNames of identities from the inside, toward the outside:
	// scrub (default: dropped when they name the inside or a product
	// word) or drop.
	DisplayNames string `yaml:"display_names"`
	// SDPAttributes is the allow-list of SDP attributes toward the
	// outside (a trailing * matches a prefix). Default: the built-in
	// list (topology/README.md).
	SDPAttributes []string `yaml:"sdp_attributes"`
	// ProductWords are words naming products (case-insensitive
	// substrings) that display names, URI users, kept reason phrases and
	// scrubbed Subject and Organization must not hold. Default: the
	// built-in list; ["none"] turns it off.
	ProductWords []string `yaml:"product_words"`
}

// TextHeaders is the policy of free-text headers toward the outside:
// keep (as they came, unless they name the inside), scrub (default;
// Reason and Warning keep their codes only, Subject and Organization
// cross unless they name the inside or a product word) or drop.
type TextHeaders struct {
	// Reason: default scrub (protocol and cause, no text).
	Reason string `yaml:"reason"`
	// Warning (copied only when listed in to_outside): default scrub
	// (the code, the SBC as agent, the RFC text of the code).
	Warning string `yaml:"warning"`
	// Subject: default scrub.
	Subject string `yaml:"subject"`
	// Organization (copied only when listed in to_outside): default
	// scrub.
	Organization string `yaml:"organization"`
}

// Media configures the media relay (see sbc/media/README.md).
type Media struct {
	// Mode is relay (default: RTP/RTCP flow through the SBC and SDP shows
	// only its addresses) or off (SDP crosses unchanged; media flows end to
	// end and the guard blocks SDP that names inside addresses).
	Mode string `yaml:"mode"`
	// PortMin and PortMax bound the UDP ports of relay sockets.
	// Default 40000 and 44999.
	PortMin int `yaml:"port_min"`
	PortMax int `yaml:"port_max"`
	// ExternalIP and InternalIP are the addresses relay sockets bind on each
	// side. Default: the IP of the first external (internal) UDP listener;
	// with no internal listener the external one serves both.
	ExternalIP string `yaml:"external_ip"`
	InternalIP string `yaml:"internal_ip"`
	// AdvertiseExternal and AdvertiseInternal are the addresses written in
	// SDP. Default: the bind address, or the listener's advertised address
	// when it binds a wildcard.
	AdvertiseExternal string `yaml:"advertise_external"`
	AdvertiseInternal string `yaml:"advertise_internal"`
	// Inactivity ends a call whose media saw no packet in either direction
	// for this long (an ICE check answered counts); 0 disables. Default
	// 60s.
	Inactivity Duration `yaml:"inactivity"`
	// MaxSessions bounds the calls with relayed media. Default 10000.
	MaxSessions int `yaml:"max_sessions"`
	// FastPath forwards the RTP of latched streams in the kernel (a TC
	// program on prefilter.interfaces): tc (always; falls back to
	// userspace, loudly, when it cannot load or attach), auto (default:
	// as tc when prefilter.mode is xdp, else off) or off.
	FastPath string `yaml:"fastpath"`
	// Encryption is what the relay speaks with each side's endpoints
	// (sbc/media/README.md, Encrypted media).
	Encryption MediaEncryption `yaml:"encryption"`
}

// MediaEncryption is the media encryption per side: pass (SDP security
// lines cross unchanged, SRTP end to end if the two endpoints agree),
// off (plain RTP), sdes (SDES-SRTP, RFC 4568), dtls (DTLS-SRTP with
// ICE-lite, RFC 5763/5764, as WebRTC needs), auto (what the endpoint
// offers: DTLS-SRTP, SDES-SRTP or plain; our offers toward it are plain).
// The SBC terminates one side's encryption and originates the other's.
type MediaEncryption struct {
	// Outside is for phones and browsers on external listeners. Default
	// auto.
	Outside string `yaml:"outside"`
	// Inside is for the PBX and internal proxies. Default off (plain
	// RTP, what PBXs speak inside). pass needs pass outside too.
	Inside string `yaml:"inside"`
	// Require refuses plain media from outside: an offer without SRTP
	// gets 488 with a Warning. Needs outside auto, sdes or dtls. Default
	// false.
	Require bool `yaml:"require"`
}

// Dialplan says how a destination named by an outside party (the
// Request-URI of a new INVITE, the Refer-To of a REFER, the Contact of a
// 3xx the B2BUA follows) is read: as an extension, a user name, an
// emergency number, a service code, a national or an international number
// in E.164, or none of these (invalid, refused by the built-in rules).
// The policy input, the fraud rules, the decision log and the call log
// all take it from here (see dialplan/README.md).
type Dialplan struct {
	// Country is the ISO 3166 alpha-2 code of the local number plan (GB,
	// US, CA, DE, FR, IE, NL, BE, ES, IT, AT or CH): national numbers
	// ("020 7946 0000") are read with it. Default: policy.country, else
	// the rule file's country; with none, only international forms
	// (+44…, 00 44…) are numbers and national forms are invalid.
	Country string `yaml:"country"`
	// TrunkPrefix is the national (trunk) prefix, digits. Default: the
	// country's (0; 1 in US and CA; none in ES and IT).
	TrunkPrefix string `yaml:"trunk_prefix"`
	// InternationalPrefix is the international prefix, digits. Default:
	// the country's (00; 011 in US and CA); without a country 00 and 011.
	InternationalPrefix string `yaml:"international_prefix"`
	// NationalLengths are the lengths of national significant numbers
	// (without the trunk prefix), 4 to 14. Default: the country's (GB 7
	// to 10, US 10, FR 9, ...). Needs country.
	NationalLengths []int `yaml:"national_lengths"`
	// Extensions are regular expressions of the PBX's extensions, each
	// matched against the whole dial string before it is read as a
	// number. Default (none listed): 2 to 6 digits that read as no number
	// and do not begin with one of the country's public short codes
	// (directory enquiries 118...).
	Extensions []string `yaml:"extensions"`
	// Names accepts SIP user names (a letter, then letters, digits, ".",
	// "-", "_"; at most 6 digits) as destinations. Default true.
	Names bool `yaml:"names"`
	// Emergency are the emergency numbers: always read as such, never
	// refused by a rule. Default: the country's plus 112 and 911; 112, 911
	// and 999 without a country.
	Emergency []string `yaml:"emergency"`
	// ServiceCodes are regular expressions of the PBX's service codes
	// (voicemail, call pickup). Default: a star and two or three digits
	// (^\*[0-9]{2,3}$).
	ServiceCodes []string `yaml:"service_codes"`
	// Features are prefixes stripped and recorded before the destination
	// is read (CLIR and CLIP per call). Default: *67, *82, #31#, *31# and
	// the country's (141 and 1470 in GB).
	Features []string `yaml:"features"`
	// TelURI is what happens to a tel: Request-URI: carry (the number
	// goes to the PBX as the user part of the inside Request-URI, with
	// user=phone) or refuse (416 Unsupported URI Scheme). Default carry.
	TelURI string `yaml:"tel_uri"`
}

// Policy configures the OPA policy layer (see policy/README.md).
type Policy struct {
	// Mode is enforce (default), shadow (decide, log and count what would
	// be denied, enforce nothing) or off.
	Mode string `yaml:"mode"`
	// Dir holds the policy: .rego files (with their _test.rego tests) and
	// data.json / data.yaml. Empty: the built-in policy, which allows
	// authenticated users, trusted peers and in-dialog requests. Reloaded
	// when it changes; a policy that does not compile or whose tests fail
	// keeps the one before.
	Dir string `yaml:"dir"`
	// Query is the Rego query of the decision. Default data.sipwall.decision.
	Query string `yaml:"query"`
	// Timeout bounds one decision; past it the request is refused
	// (fail closed). Default 50ms.
	Timeout Duration `yaml:"timeout"`
	// FailStatus answers requests when the policy fails or times out:
	// 500 or 403. Default 500.
	FailStatus int `yaml:"fail_status"`
	// Zone is the IANA time zone of input.time.local. Default UTC.
	Zone string `yaml:"zone"`
	// Country (ISO 3166 alpha-2, e.g. GB) is the country of the dial
	// plan when dialplan.country is not set (the two may not differ).
	// Empty: none.
	Country string `yaml:"country"`
	// SampleAllows logs one allowed request in this many (denials are
	// always logged, rate-limited); 0 logs none. Default 100.
	SampleAllows int `yaml:"sample_allows"`
}

// Rules configures the anti-fraud layer (see rules/README.md).
type Rules struct {
	// Builtin puts the built-in rules (rules/default.yaml, in the binary)
	// first: premium and IRSF ranges and unreadable destinations refused,
	// 20 calls a minute and 11 at once per user. They match with
	// File's lists. Default true; false leaves File alone.
	Builtin bool `yaml:"builtin"`
	// File is the rule file (YAML): rule sets with their matches,
	// measures, limits and actions. Reloaded when it changes and on
	// SIGHUP, all-or-nothing. Empty: the built-in rules alone (none with
	// builtin false).
	File string `yaml:"file"`
	// Webhook is an HTTP(S) URL every alert is POSTed to as JSON, with
	// retries. Empty: alerts are logged only.
	Webhook string `yaml:"webhook"`
	// WebhookTimeout bounds one delivery attempt. Default 5s.
	WebhookTimeout Duration `yaml:"webhook_timeout"`
}

// TLS configures certificates and TLS (see tls/README.md).
type TLS struct {
	// ACME obtains and renews certificates automatically.
	ACME ACME `yaml:"acme"`
	// CertFile and KeyFile are a PEM certificate chain and its key, used
	// instead of ACME; reloaded when they change.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// MinVersion is the lowest TLS version accepted: 1.2 (default) or 1.3.
	MinVersion string `yaml:"min_version"`
	// HandshakeTimeout bounds a TLS handshake. Default 5s.
	HandshakeTimeout Duration `yaml:"handshake_timeout"`
	// HandshakeRate and HandshakeBurst bound the handshakes one source may
	// start per second. Defaults 10 and 20; rate 0: no limit.
	HandshakeRate  int `yaml:"handshake_rate"`
	HandshakeBurst int `yaml:"handshake_burst"`
	// ClientCA is a PEM bundle of CAs whose client certificates identify
	// peers (trunks, mutual TLS); CRLFile revokes some of them.
	ClientCA string `yaml:"client_ca"`
	CRLFile  string `yaml:"crl_file"`
	// UpstreamCA is a PEM bundle of roots that upstreams' certificates
	// (transport=tls) are verified with; empty: the system roots.
	// UpstreamCertFile and UpstreamKeyFile are the client certificate
	// presented to them (optional).
	UpstreamCA       string `yaml:"upstream_ca"`
	UpstreamCertFile string `yaml:"upstream_cert_file"`
	UpstreamKeyFile  string `yaml:"upstream_key_file"`
}

// ACME configures automatic certificates.
type ACME struct {
	// Names are the DNS names to obtain a certificate for. Empty: no ACME.
	Names []string `yaml:"names"`
	// Email is the ACME account's contact.
	Email string `yaml:"email"`
	// CA is the ACME directory URL. Default Let's Encrypt.
	CA string `yaml:"ca"`
	// CARoot is a PEM file of roots for a private ACME server's HTTPS.
	CARoot string `yaml:"ca_root"`
	// HTTPPort answers HTTP-01 challenges (0: off). Default 80.
	HTTPPort int `yaml:"http_port"`
	// ALPN answers TLS-ALPN-01 challenges on the tls/wss listeners.
	// Default true.
	ALPN bool `yaml:"alpn"`
	// RenewBefore renews when less than this much validity is left
	// (0: a third of the lifetime).
	RenewBefore Duration `yaml:"renew_before"`
}

// Prefilter configures the packet prefilter (see bpf/README.md).
type Prefilter struct {
	// Mode: "xdp" attaches the XDP program to Interfaces (and falls back to
	// the userspace limiter, loudly, when it cannot); "userspace" runs the
	// same decision on every datagram and connection the listeners receive;
	// "off" turns both off. Default userspace.
	Mode string `yaml:"mode"`
	// Interfaces are the NICs the XDP program is attached to (mode xdp).
	Interfaces []string `yaml:"interfaces"`
	// Generic allows the generic (skb) XDP mode when a NIC's driver has no
	// native XDP. Default false: such a NIC makes sipwall fall back to the
	// userspace limiter.
	Generic bool `yaml:"generic"`
	// PinPath is the bpf filesystem directory where the XDP maps are
	// pinned so a restart keeps bans and limiter state. Default
	// /sys/fs/bpf/sipwall.
	PinPath string `yaml:"pin_path"`
	// Observe counts every decision but drops nothing (for a first
	// deployment).
	Observe bool `yaml:"observe"`
	// Allow lists networks never limited, besides auth.trusted and the
	// upstreams.
	Allow []string `yaml:"allow"`
	// Deny lists networks always dropped.
	Deny []string `yaml:"deny"`
	// VerifiedShare is the percent of every class cap kept for sources
	// that authenticated within VerifiedTTL. Default 20.
	VerifiedShare int `yaml:"verified_share"`
	// VerifiedTTL is how long an authentication counts. Default 1h.
	VerifiedTTL Duration `yaml:"verified_ttl"`
	// Rates are the per-source budgets of each packet class, per IPv4
	// address and per IPv6 /64.
	Rates ClassRates `yaml:"rates"`
	// Caps are packets per second per CPU of each class from all sources
	// together; 0 means no cap.
	Caps ClassCaps `yaml:"caps"`
}

// ClassRates are per-source budgets by packet class.
type ClassRates struct {
	Request   Rate `yaml:"request"`
	Response  Rate `yaml:"response"`
	Keepalive Rate `yaml:"keepalive"`
	Stun      Rate `yaml:"stun"`
	Junk      Rate `yaml:"junk"`
	Syn       Rate `yaml:"syn"`
}

// Rate is Rate packets per second on average with bursts of Burst; rate 0
// means no limit.
type Rate struct {
	Rate  int `yaml:"rate"`
	Burst int `yaml:"burst"`
}

// ClassCaps are packets per second per CPU by packet class (0: no cap).
type ClassCaps struct {
	Request   int `yaml:"request"`
	Response  int `yaml:"response"`
	Keepalive int `yaml:"keepalive"`
	Stun      int `yaml:"stun"`
	Junk      int `yaml:"junk"`
	Syn       int `yaml:"syn"`
}

// Store is the embedded state store.
type Store struct {
	// Path is the directory of the store file. Default /var/lib/sipwall.
	Path string `yaml:"path"`
	// Backend is "embedded" (default: the bbolt file alone, one node) or
	// "redis": registrations, bans, nonce keys, fraud counters and account
	// blocks are also shared with the other nodes through Redis or Valkey.
	Backend string `yaml:"backend"`
	// Redis is the shared store of backend redis.
	Redis Redis `yaml:"redis"`
}

// Redis configures the shared store (store.backend: redis).
type Redis struct {
	// Addrs are host:port of the server (one: standalone), of the
	// sentinels (MasterName set) or of cluster nodes (Cluster).
	Addrs []string `yaml:"addrs"`
	// MasterName is the Sentinel master set name; empty: no Sentinel.
	MasterName string `yaml:"master_name"`
	// Cluster speaks the Redis Cluster protocol to Addrs.
	Cluster bool `yaml:"cluster"`
	// Username and PasswordFile (a file holding the password) for AUTH.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	// DB is the database number (standalone and Sentinel).
	DB int `yaml:"db"`
	// Prefix starts every key and channel name. Default "sipwall".
	Prefix string `yaml:"prefix"`
	// Timeout bounds each command. Default 500ms.
	Timeout Duration `yaml:"timeout"`
	// Resync is how often bans are compared in full with the shared store
	// (a missed message heals). Default 30s.
	Resync Duration `yaml:"resync"`
	// Node names this node in logs and messages. Default: host name.
	Node string `yaml:"node"`
	// FailClosed lists the kinds of shared state whose requests are
	// refused while the shared store is unreachable, instead of served
	// from this node's own state: "fraud" (new calls of users with fraud
	// rules get 503), "registrations" (REGISTER gets 503). Default
	// [fraud].
	FailClosed []string `yaml:"fail_closed"`
}

// Backends of the store.
const (
	BackendEmbedded = "embedded"
	BackendRedis    = "redis"
)

// Log configures logging.
type Log struct {
	// Level: debug, info, warn, error. Default info.
	Level string `yaml:"level"`
	// Format: text or json. Default text.
	Format string `yaml:"format"`
	// Calls writes one line per ended call (a CDR: both legs' Call-IDs,
	// user, destination, setup time, duration, end reason). Default true.
	Calls bool `yaml:"calls"`
}

// Admin configures the admin HTTP API (see README.md, Operations).
type Admin struct {
	// Addr is host:port of the admin API: health, readiness, Prometheus
	// metrics, status, calls, registrations, bans, fraud blocks, reload.
	// Default 127.0.0.1:9090; "" turns it off.
	Addr string `yaml:"addr"`
	// TokenFile holds the bearer token the API requires. Required when
	// Addr is not a loopback address; when set, required on loopback too.
	TokenFile string `yaml:"token_file"`
	// Pprof serves Go's runtime profiles (net/http/pprof) under
	// /debug/pprof/, behind the same token. Off by default: a CPU profile
	// costs CPU while it runs, and the heap profile shows memory contents'
	// shape. Used by `make bench` to profile the hot path.
	Pprof bool `yaml:"pprof"`
	// Console serves the web console under /console/ on Addr: a login
	// with the token of TokenFile (required), then pages of calls,
	// registrations, bans, the decision log ("why") and the policy and
	// rules status. Off by default.
	Console bool `yaml:"console"`
	// DecisionLog is how many recent decisions (rejections, drops,
	// forwarded calls and registrations, bans, locks) are kept in memory
	// for the console's and the API's "why" search: 100 to 1000000,
	// default 10000.
	DecisionLog int `yaml:"decision_log"`
}

// HEP configures the copy of every SIP message to a Homer collector.
type HEP struct {
	// Addr is the collector's IP:port; "" turns HEP off.
	Addr string `yaml:"addr"`
	// Transport: udp (default) or tcp.
	Transport string `yaml:"transport"`
	// AgentID identifies this sipwall at the collector.
	AgentID int `yaml:"agent_id"`
	// PasswordFile holds the collector's password (optional).
	PasswordFile string `yaml:"password_file"`
}
