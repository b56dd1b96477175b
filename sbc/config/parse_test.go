package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// wantDefault spells the documented defaults out literally, so the test
// does not just compare Default() with itself.
func wantDefault() Config {
	return Config{
		Listen: []Listener{
			{Transport: "udp", Addr: "0.0.0.0:5060", Side: "external"},
			{Transport: "tcp", Addr: "0.0.0.0:5060", Side: "external"},
		},
		Health: Health{Interval: Duration(10 * time.Second), Timeout: Duration(2 * time.Second), Failures: 3, Successes: 2},
		Limits: Limits{
			MaxInflight:    2000,
			MaxDialogs:     20000,
			MaxMessageSize: 65535,
			TCP: TCPLimits{
				MaxConns:          4096,
				MaxConnsPerSource: 32,
				IdleTimeout:       Duration(120 * time.Second),
				WriteTimeout:      Duration(10 * time.Second),
				MessageTimeout:    Duration(10 * time.Second),
			},
		},
		Calls: Calls{RingTimeout: Duration(120 * time.Second), SessionTimeout: Duration(2 * time.Hour), DrainTimeout: Duration(30 * time.Second),
			MaxPerUser: 10, MaxPerSource: 20},
		Registrar: Registrar{
			Mode:              "relay",
			MinExpires:        Duration(60 * time.Second),
			MaxExpires:        Duration(time.Hour),
			PhoneExpires:      Duration(60 * time.Second),
			UpstreamExpires:   Duration(time.Hour),
			RefreshPercent:    50,
			MaxBindings:       5,
			MaxAORs:           100000,
			WhenFull:          "reject",
			OtherDomainStatus: 403,
		},
		Auth: Auth{
			Mode: "digest", Realm: "sipwall", Algorithms: []string{"SHA-256", "MD5"}, Profiles: DefaultAuthProfiles(), NonceTTL: Duration(300 * time.Second),
			MaxSkew: Duration(5 * time.Second), KeyRotation: Duration(24 * time.Hour),
		},
		Bans: Bans{
			Threshold: 5, Window: Duration(time.Minute), BanTime: Duration(time.Hour),
			MaxBanTime: Duration(168 * time.Hour), Forget: Duration(24 * time.Hour),
			Prefix6Threshold: 20, UserThreshold: 20, UserLockTime: Duration(time.Hour),
		},
		Topology: Topology{Guard: "block", DisplayNames: "scrub", TextHeaders: TextHeaders{Reason: "scrub", Warning: "scrub", Subject: "scrub", Organization: "scrub"}},
		Media: Media{Mode: "relay", PortMin: 40000, PortMax: 44999, Inactivity: Duration(60 * time.Second), MaxSessions: 10000, FastPath: "auto",
			Encryption: MediaEncryption{Outside: "auto", Inside: "off"}},
		Policy:   Policy{Mode: "enforce", Query: "data.sipwall.decision", Timeout: Duration(50 * time.Millisecond), FailStatus: 500, Zone: "UTC", SampleAllows: 100},
		Dialplan: Dialplan{Names: true, TelURI: "carry"},
		Rules:    Rules{Builtin: true, WebhookTimeout: Duration(5 * time.Second)},
		TLS: TLS{
			ACME:       ACME{CA: DefaultACMECA, HTTPPort: 80, ALPN: true},
			MinVersion: "1.2", HandshakeTimeout: Duration(5 * time.Second), HandshakeRate: 10, HandshakeBurst: 20,
		},
		Prefilter: Prefilter{
			Mode: "userspace", PinPath: "/sys/fs/bpf/sipwall", VerifiedShare: 20, VerifiedTTL: Duration(time.Hour),
			Rates: ClassRates{Request: Rate{200, 400}, Response: Rate{400, 800}, Keepalive: Rate{20, 40}, Stun: Rate{20, 40}, Junk: Rate{5, 10}, Syn: Rate{20, 40}},
			Caps:  ClassCaps{Request: 20000, Response: 40000, Keepalive: 20000, Stun: 10000, Junk: 1000, Syn: 5000},
		},
		Store: Store{Path: "/var/lib/sipwall", Backend: "embedded", Redis: Redis{Prefix: "sipwall", Timeout: Duration(500 * time.Millisecond), Resync: Duration(30 * time.Second), FailClosed: []string{"fraud"}}},
		Log:   Log{Level: "info", Format: "text", Calls: true},
		Admin: Admin{Addr: "127.0.0.1:9090", DecisionLog: 10000},
		HEP:   HEP{Transport: "udp"},
	}
}

// same compares two configs, ignoring the recorded positions.
func same(t *testing.T, got *Config, want Config) {
	t.Helper()
	g := *got
	g.pos = nil
	// An empty list in the file and no key are the same.
	if len(g.Upstreams) == 0 {
		g.Upstreams = nil
	}
	if len(g.Registrar.Domains) == 0 {
		g.Registrar.Domains = nil
	}
	if len(g.Store.Redis.Addrs) == 0 {
		g.Store.Redis.Addrs = nil
	}
	if len(g.Registrar.Users) == 0 {
		g.Registrar.Users = nil
	}
	if len(g.Auth.Trusted) == 0 {
		g.Auth.Trusted = nil
	}
	for i := range g.Auth.Trusted {
		for _, l := range []*[]string{&g.Auth.Trusted[i].CIDRs, &g.Auth.Trusted[i].CertNames, &g.Auth.Trusted[i].CertFingerprints} {
			if len(*l) == 0 {
				*l = nil
			}
		}
	}
	if len(g.Bans.ScannerAgents) == 0 {
		g.Bans.ScannerAgents = nil
	}
	if len(g.Dialplan.NationalLengths) == 0 {
		g.Dialplan.NationalLengths = nil
	}
	if len(g.Topology.KeepReasons) == 0 {
		g.Topology.KeepReasons = nil
	}
	for _, l := range []*[]string{&g.Topology.ToOutside, &g.Topology.ToInside, &g.Topology.InternalNets, &g.Topology.InternalNames, &g.Topology.SDPAttributes, &g.Topology.ProductWords, &g.Prefilter.Interfaces, &g.Prefilter.Allow, &g.Prefilter.Deny, &g.TLS.ACME.Names,
		&g.Dialplan.Extensions, &g.Dialplan.Emergency, &g.Dialplan.ServiceCodes, &g.Dialplan.Features} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("config mismatch\n got: %+v\nwant: %+v", g, want)
	}
}

func TestEmptyDocumentIsDefault(t *testing.T) {
	for _, in := range []string{
		"",
		"\n\n",
		"# only a comment\n",
		"---\n",
		"~\n",
		"---\n# comment\n...\n",
	} {
		c, err := Parse([]byte(in), "empty.yaml")
		if err != nil {
			t.Errorf("Parse(%q): %v", in, err)
			continue
		}
		same(t, c, wantDefault())
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	same(t, c, wantDefault())
	if err := c.Validate(); err != nil {
		t.Errorf("Default().Validate(): %v", err)
	}
	// Each call must hand out its own lists.
	c.Listen[0].Addr = "127.0.0.1:1"
	if Default().Listen[0].Addr != "0.0.0.0:5060" {
		t.Error("Default() shares its Listen slice between calls")
	}
}

func TestApplyDefaultsFillsOnlyZeroFields(t *testing.T) {
	c := &Config{
		Upstreams: []Upstream{{Name: "a", URI: "sip:10.0.0.1", Weight: 5}},
		Health:    Health{Failures: 7},
		Log:       Log{Format: "json"},
	}
	c.applyDefaults()
	if u := c.Upstreams[0]; u.Priority != 1 || u.Weight != 5 {
		t.Errorf("upstream = %+v, want priority 1 (default) and weight 5 (kept)", u)
	}
	if c.Health.Failures != 7 || c.Health.Successes != 2 || c.Health.Interval.D() != 10*time.Second {
		t.Errorf("health = %+v", c.Health)
	}
	if c.Log.Format != "json" || c.Log.Level != "info" {
		t.Errorf("log = %+v", c.Log)
	}
	if len(c.Listen) != 2 {
		t.Errorf("listen = %+v, want the two default listeners", c.Listen)
	}
}

func wantFull() Config {
	return Config{
		Listen: []Listener{
			{Transport: "udp", Addr: "0.0.0.0:5060", Side: "external", Advertise: "sbc.example.com:5060"},
			{Transport: "tcp", Addr: "[2001:db8::10]:5062", Side: "external", Advertise: "[2001:db8::10]"},
			{Transport: "tls", Addr: "0.0.0.0:5061", Side: "external"},
			{Transport: "wss", Addr: "0.0.0.0:8443", Side: "external"},
			{Transport: "udp", Addr: "10.0.0.2:5080", Side: "internal", Advertise: "10.0.0.2"},
		},
		Upstreams: []Upstream{
			{Name: "pbx-a", URI: "sip:10.0.0.10:5060;transport=tcp", Priority: 1, Weight: 3},
			{Name: "pbx-b", URI: "sip:[fd00::20]:5071;transport=tls", Priority: 2, Weight: 2, TLSName: "pbx-b.inside.example"},
		},
		Health:   Health{Interval: Duration(5 * time.Second), Timeout: Duration(1500 * time.Millisecond), Failures: 4, Successes: 3},
		Outbound: &Outbound{URI: "sip:203.0.113.5:5060;transport=udp"},
		Limits: Limits{
			MaxInflight:    1000,
			MaxDialogs:     5000,
			MaxMessageSize: 16384,
			TCP: TCPLimits{
				MaxConns:          2048,
				MaxConnsPerSource: 16,
				IdleTimeout:       Duration(90 * time.Second),
				WriteTimeout:      Duration(5 * time.Second),
				MessageTimeout:    Duration(8 * time.Second),
			},
		},
		Calls: Calls{
			RingTimeout:     Duration(60 * time.Second),
			MaxDuration:     Duration(4 * time.Hour),
			SessionTimeout:  Duration(30 * time.Minute),
			FollowRedirects: true,
			DrainTimeout:    Duration(2 * time.Minute),
			MaxPerUser:      4,
			MaxPerSource:    50,
			MaxPerTrusted:   300,
		},
		Registrar: Registrar{
			Mode:              "local",
			Domains:           []string{"example.com", "[2001:db8::10]"},
			Users:             []string{"alice", "bob"},
			MinExpires:        Duration(30 * time.Second),
			MaxExpires:        Duration(2 * time.Hour),
			PhoneExpires:      Duration(45 * time.Second),
			UpstreamExpires:   Duration(30 * time.Minute),
			RefreshPercent:    40,
			MaxBindings:       3,
			MaxAORs:           500,
			WhenFull:          "replace_oldest",
			OtherDomainStatus: 404,
			Redirect:          true,
		},
		Auth: Auth{
			Mode:        "digest",
			Realm:       "example.com",
			UsersFile:   "users.yaml",
			Algorithms:  []string{"SHA-256", "MD5"},
			Profiles:    []AuthProfile{{Name: "old-desk-phones", UserAgent: `(?i)^acme-phone/[1-3]\.`, Algorithms: []string{"MD5"}}},
			NonceTTL:    Duration(120 * time.Second),
			MaxSkew:     Duration(2 * time.Second),
			KeyRotation: Duration(12 * time.Hour),
			Trusted: []Trusted{
				{Name: "carrier", CIDRs: []string{"203.0.113.0/24", "2001:db8:5::/48"},
					CertNames:        []string{"trunk.carrier.example"},
					CertFingerprints: []string{"5e:88:48:98:da:28:04:71:51:d0:e5:6f:8d:c6:29:27:73:60:3d:0d:6a:ab:bd:d6:2a:11:ef:72:1d:15:42:d8"},
					Encryption:       "sdes"},
			},
			AssertIdentity: "P-Asserted-Identity",
			SourceHeader:   "X-Source",
			SourceKeyFile:  "source.key",
		},
		Bans: Bans{
			Threshold: 3, Window: Duration(30 * time.Second), BanTime: Duration(30 * time.Minute),
			MaxBanTime: Duration(48 * time.Hour), Forget: Duration(12 * time.Hour),
			Prefix6Threshold: 10, UserThreshold: 15, UserLockTime: Duration(20 * time.Minute),
			ScannerAgents: []string{"friendly-scanner", "evil-dialer"},
		},
		Topology: Topology{
			UserAgent: "sbc", ToOutside: []string{"X-Call-Ref"}, ToInside: []string{"X-Customer"},
			InternalNets: []string{"10.0.0.0/8"}, InternalNames: []string{"pbx.corp.local"}, Guard: "log",
			KeepReasons: []int{480}, TextHeaders: TextHeaders{Reason: "keep", Warning: "drop", Subject: "drop", Organization: "keep"},
			DisplayNames: "drop", SDPAttributes: []string{"rtpmap", "fmtp", "ptime", "sendrecv", "ice-*"}, ProductWords: []string{"asterisk", "examplepbx"},
		},
		Media: Media{
			Mode: "relay", PortMin: 30000, PortMax: 30999, ExternalIP: "192.0.2.10", InternalIP: "10.0.0.2",
			AdvertiseExternal: "203.0.113.10", AdvertiseInternal: "10.0.0.2", Inactivity: Duration(90 * time.Second), MaxSessions: 500,
			FastPath:   "tc",
			Encryption: MediaEncryption{Outside: "dtls", Inside: "sdes", Require: true},
		},
		Policy: Policy{
			Mode: "shadow", Dir: "policies", Query: "data.acme.decision", Timeout: Duration(10 * time.Millisecond),
			FailStatus: 403, Zone: "Europe/London", Country: "GB", SampleAllows: 10,
		},
		Dialplan: Dialplan{Country: "GB", TrunkPrefix: "0", InternationalPrefix: "00", NationalLengths: []int{9, 10},
			Extensions: []string{`^[2-7][0-9]{3}$`}, Names: false, Emergency: []string{"999", "112"},
			ServiceCodes: []string{`^\*9[0-9]$`}, Features: []string{"141", "*67"}, TelURI: "refuse"},
		Rules: Rules{Builtin: false, File: "fraud.yaml", Webhook: "https://alerts.example.com/sipwall", WebhookTimeout: Duration(3 * time.Second)},
		TLS: TLS{
			ACME: ACME{Email: "ops@example.com", CA: "https://acme.example.com/directory", CARoot: "private-ca.pem",
				HTTPPort: 8080, RenewBefore: Duration(720 * time.Hour)},
			CertFile: "sbc.crt", KeyFile: "sbc.key", MinVersion: "1.3", HandshakeTimeout: Duration(3 * time.Second),
			HandshakeRate: 5, HandshakeBurst: 10, ClientCA: "trunks-ca.pem", CRLFile: "trunks.crl",
			UpstreamCA: "pbx-ca.pem", UpstreamCertFile: "sbc-client.crt", UpstreamKeyFile: "sbc-client.key",
		},
		Prefilter: Prefilter{
			Mode: "xdp", Interfaces: []string{"eth0", "eth1"}, Generic: true, PinPath: "/sys/fs/bpf/edge", Observe: true,
			Allow: []string{"192.0.2.0/24"}, Deny: []string{"203.0.113.0/24", "2001:db8:bad::/48"},
			VerifiedShare: 30, VerifiedTTL: Duration(2 * time.Hour),
			Rates: ClassRates{Request: Rate{100, 300}, Response: Rate{300, 600}, Keepalive: Rate{10, 20}, Stun: Rate{0, 40}, Junk: Rate{1, 2}, Syn: Rate{10, 30}},
			Caps:  ClassCaps{Request: 10000, Response: 20000, Keepalive: 5000, Stun: 0, Junk: 100, Syn: 2000},
		},
		Store: Store{Path: "state/sipwall", Backend: "redis", Redis: Redis{
			Addrs: []string{"10.0.0.60:26379", "10.0.0.61:26379"}, MasterName: "sipwall-main", Username: "sbc",
			PasswordFile: "redis.password", DB: 2, Prefix: "edge", Timeout: Duration(300 * time.Millisecond),
			Resync: Duration(20 * time.Second), Node: "sbc-a", FailClosed: []string{"fraud", "registrations"},
		}},
		Log:   Log{Level: "debug", Format: "json"},
		Admin: Admin{Addr: "10.0.0.2:9090", TokenFile: "admin.token", Pprof: true, Console: true, DecisionLog: 50000},
		HEP:   HEP{Addr: "10.0.0.50:9060", Transport: "tcp", AgentID: 7, PasswordFile: "hep.password"},
	}
}

func TestLoadFull(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "full.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	same(t, c, wantFull())
	if err := c.RequireUpstreams(); err != nil {
		t.Errorf("RequireUpstreams: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

// TestFullSetsEveryKey keeps testdata/full.yaml complete as keys are added.
func TestFullSetsEveryKey(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "full.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	for _, k := range schemaKeys(reflect.TypeFor[Config](), "") {
		path := strings.ReplaceAll(k.path, "[]", "[0]")
		if !c.pos.has(path) {
			t.Errorf("testdata/full.yaml does not set %s", k.path)
		}
	}
}

// schemaKey is one documented key: lists, optional mappings and leaves.
type schemaKey struct {
	path string
	typ  reflect.Type
}

// schemaKeys lists the keys of struct type t, with "[]" for list elements.
func schemaKeys(t reflect.Type, prefix string) []schemaKey {
	names, index := fieldsOf(t)
	var keys []schemaKey
	for _, name := range names {
		f := t.Field(index[name])
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		ft := f.Type
		switch {
		case ft == reflect.TypeFor[Duration]():
			keys = append(keys, schemaKey{path, ft})
		case ft.Kind() == reflect.Slice:
			keys = append(keys, schemaKey{path, ft})
			if ft.Elem().Kind() == reflect.Struct { // a list of strings has no keys below it
				keys = append(keys, schemaKeys(ft.Elem(), path+"[]")...)
			}
		case ft.Kind() == reflect.Pointer:
			keys = append(keys, schemaKey{path, ft})
			keys = append(keys, schemaKeys(ft.Elem(), path)...)
		case ft.Kind() == reflect.Struct:
			keys = append(keys, schemaKeys(ft, path)...)
		default:
			keys = append(keys, schemaKey{path, ft})
		}
	}
	return keys
}

func TestExplicitValuesOverDefaults(t *testing.T) {
	in := `
health:
  interval: 0      # checks off: the timeout no longer matters
  timeout: 0s
calls:
  max_duration: 0
  max_per_user: 0     # no cap, not the default 10
listen:
  - transport: udp
    addr: 127.0.0.1:0
  - transport: udp
    addr: 127.0.0.1:0   # port 0 twice is fine: each gets a free port
`
	c, err := Parse([]byte(in), "x.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.Health.Interval != 0 || c.Health.Timeout != 0 {
		t.Errorf("health = %+v, want interval and timeout 0", c.Health)
	}
	if c.Calls.MaxPerUser != 0 || c.Calls.MaxPerSource != 20 {
		t.Errorf("calls = %+v, want max_per_user 0 and max_per_source defaulted", c.Calls)
	}
	if len(c.Listen) != 2 || c.Listen[1].Side != "external" {
		t.Errorf("listen = %+v, want the two listeners given, side defaulted", c.Listen)
	}
}

func TestNullKeepsDefault(t *testing.T) {
	in := "listen:\nhealth:\n  interval: ~\nlimits:\n  tcp:\noutbound:\nstore:\n  path:\n"
	c, err := Parse([]byte(in), "x.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	same(t, c, wantDefault())
}

func TestAnchorsAndMerges(t *testing.T) {
	in := `
listen:
  - &l {transport: udp, addr: 10.0.0.1:5060, side: internal}
  - <<: *l
    transport: tcp
upstreams:
  - &u
    name: a
    uri: sip:10.0.0.10
    weight: 4
  - <<: [*u]
    name: b
health:
  interval: &iv 30s
calls:
  ring_timeout: *iv
`
	c, err := Parse([]byte(in), "x.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	wantListen := []Listener{
		{Transport: "udp", Addr: "10.0.0.1:5060", Side: "internal"},
		{Transport: "tcp", Addr: "10.0.0.1:5060", Side: "internal"},
	}
	if !reflect.DeepEqual(c.Listen, wantListen) {
		t.Errorf("listen = %+v", c.Listen)
	}
	if u := c.Upstreams[1]; u.Name != "b" || u.Weight != 4 || u.Priority != 1 {
		t.Errorf("upstreams[1] = %+v", u)
	}
	if c.Calls.RingTimeout.D() != 30*time.Second {
		t.Errorf("ring_timeout = %s", c.Calls.RingTimeout)
	}
}

func TestMergeCycleTerminates(t *testing.T) {
	in := "health: &h\n  <<: *h\n  failures: 5\n"
	c, err := Parse([]byte(in), "x.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.Health.Failures != 5 {
		t.Errorf("failures = %d", c.Health.Failures)
	}
}

func TestRequireUpstreams(t *testing.T) {
	tests := []struct {
		in   string
		line int
	}{
		{"log:\n  level: info\n", 1},    // no key: point at the file
		{"log: {}\nupstreams: []\n", 2}, // the key's own line
		{"log: {}\nupstreams:\n", 2},
	}
	for _, tt := range tests {
		c, err := Parse([]byte(tt.in), "sipwall.yaml")
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.in, err)
		}
		err = c.RequireUpstreams()
		want := "sipwall.yaml:" + strconv.Itoa(tt.line) + ": upstreams: at least one upstream is required"
		if err == nil || err.Error() != want {
			t.Errorf("RequireUpstreams(%q) = %v, want %q", tt.in, err, want)
		}
		var cerr *Error
		if !errors.As(err, &cerr) {
			t.Errorf("RequireUpstreams error is %T, want *Error", err)
		}
	}
	if err := Default().RequireUpstreams(); err == nil || err.Error() != "upstreams: at least one upstream is required" {
		t.Errorf("Default().RequireUpstreams() = %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(path)
	if err == nil {
		t.Fatal("Load of a missing file succeeded")
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name %s", err, path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error %v does not wrap os.ErrNotExist", err)
	}
}

func TestLoadReportsPathInProblems(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("log:\n  level: loud\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	want := path + `:2: log.level: "loud" is not one of debug, info, warn, error`
	if err == nil || err.Error() != want {
		t.Errorf("Load = %v, want %q", err, want)
	}
}

func TestMultipleErrorsSortedByLine(t *testing.T) {
	in := `log:
  format: xml
limits:
  max_dialogs: many
listen:
  - transport: sctp
    addr: 0.0.0.0:5060
upstream: []
health:
  interval: 10 sec
log:
  level: debug
`
	_, err := Parse([]byte(in), "sipwall.yaml")
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("Parse error = %v (%T), want *Error", err, err)
	}
	want := strings.Join([]string{
		`sipwall.yaml:2: log.format: "xml" is not one of text, json`,
		`sipwall.yaml:4: limits.max_dialogs: want an integer, got "many"`,
		`sipwall.yaml:6: listen[0].transport: "sctp" is not one of udp, tcp, tls, wss`,
		`sipwall.yaml:8: unknown key "upstream" (did you mean "upstreams"?)`,
		`sipwall.yaml:10: health.interval: "10 sec" is not a duration (use e.g. "300ms", "10s", "2h")`,
		`sipwall.yaml:11: duplicate key "log" (first set on line 1)`,
	}, "\n")
	if err.Error() != want {
		t.Errorf("error:\n%s\nwant:\n%s", err, want)
	}
	if cerr.File != "sipwall.yaml" || len(cerr.Problems) != 6 {
		t.Errorf("Error = %+v", cerr)
	}
}

func TestErrorFormat(t *testing.T) {
	ps := []Problem{{Line: 3, Key: "a.b", Msg: "bad"}, {Line: 0, Key: "c", Msg: "worse"}, {Line: 4, Msg: "top"}}
	tests := []struct {
		file string
		want string
	}{
		{"f.yaml", "f.yaml: c: worse\nf.yaml:3: a.b: bad\nf.yaml:4: top"},
		{"", "c: worse\nline 3: a.b: bad\nline 4: top"},
	}
	for _, tt := range tests {
		err := newError(tt.file, ps)
		if err.Error() != tt.want {
			t.Errorf("file %q:\n%s\nwant:\n%s", tt.file, err, tt.want)
		}
	}
	if newError("f", nil) != nil {
		t.Error("newError with no problems is not nil")
	}
}

func TestValidateBuiltInCode(t *testing.T) {
	c := Default()
	c.Listen[1].Transport = "sctp"
	c.Calls.MaxDuration = Duration(-time.Second)
	c.Outbound = &Outbound{}
	err := c.Validate()
	want := strings.Join([]string{
		`listen[1].transport: "sctp" is not one of udp, tcp, tls, wss`,
		`outbound.uri: is required (e.g. "sip:10.0.0.10:5060;transport=tcp")`,
		`calls.max_duration: must not be negative, got -1s`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("Validate:\n%v\nwant:\n%s", err, want)
	}
}

func TestDurationYAML(t *testing.T) {
	var v struct {
		D Duration `yaml:"d"`
	}
	if err := yaml.Unmarshal([]byte("d: 1m30s"), &v); err != nil || v.D.D() != 90*time.Second {
		t.Errorf("Unmarshal 1m30s = %s, %v", v.D, err)
	}
	for in, want := range map[string]string{
		"d: -1s":       `"-1s" is negative`,
		"d: 10":        `"10" is not a duration: it needs a unit`,
		"d: soon":      `"soon" is not a duration (use e.g.`,
		"d: [1s]":      `want a duration`,
		"d: {a: 1s}":   `want a duration`,
		"d: 9999999h0": `is not a duration`,
	} {
		if err := yaml.Unmarshal([]byte(in), &v); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Unmarshal(%q) = %v, want error containing %q", in, err, want)
		}
	}
	out, err := yaml.Marshal(v)
	if err != nil || string(out) != "d: 1m30s\n" {
		t.Errorf("Marshal = %q, %v", out, err)
	}
}

// TestMarshalRoundTrip checks that a dumped configuration reads back the
// same, which "print the effective config" features rely on.
func TestMarshalRoundTrip(t *testing.T) {
	for _, want := range []Config{wantDefault(), wantFull()} {
		out, err := yaml.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		c, err := Parse(out, "dump.yaml")
		if err != nil {
			t.Fatalf("Parse of dump:\n%s\n%v", out, err)
		}
		same(t, c, want)
	}
}

// TestAliasFanOut is a "billion laughs" built from merges: every level
// merges the previous one ten times. Merging a mapping once per target
// keeps the work linear; without that this would not finish.
func TestAliasFanOut(t *testing.T) {
	var b strings.Builder
	b.WriteString("listen:\n  - &l0 {transport: udp, addr: \"0.0.0.0:0\"}\n")
	for i := 1; i <= 12; i++ {
		b.WriteString("  - &l" + strconv.Itoa(i) + " {<<: [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*l" + strconv.Itoa(i-1))
		}
		b.WriteString("]}\n")
	}
	start := time.Now()
	c, err := Parse([]byte(b.String()), "bomb.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(c.Listen) != 13 || c.Listen[12].Transport != "udp" {
		t.Errorf("listen = %+v", c.Listen)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Parse took %v", d)
	}
}
