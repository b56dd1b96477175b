package bpf

import (
	"net/netip"
	"strings"
	"testing"
)

// state is what a case sets besides the configuration: bans and verified
// sources with raw monotonic expiries (0 never, 1 long past, far: an hour
// ahead). Both the model and the kernel maps implement it.
type state interface {
	ban(p netip.Prefix, expiry uint64)
	verify(a netip.Addr, expiry uint64)
}

type modelState struct{ m *Model }

func (s modelState) ban(p netip.Prefix, e uint64)  { s.m.Ban(p, e) }
func (s modelState) verify(a netip.Addr, e uint64) { s.m.Verify(a, e) }

const (
	never   = 0
	expired = 1
)

func far() uint64 { return MonoNow() + 3600e9 }

// step is one frame and what must become of it.
type step struct {
	f     frame
	want  Reason
	class Class // checked when want is ReasonPass, ReasonRate or ReasonGlobal
}

type decideCase struct {
	name  string
	cfg   func(*Config)
	setup func(s state)
	steps []step
}

func baseConfig() Config {
	return Config{UDPPorts: []uint16{5060, 5080}, TCPPorts: []uint16{5060, 5061}}
}

func pass(f frame, c Class) step { return step{f: f, want: ReasonPass, class: c} }
func is(f frame, r Reason) step  { return step{f: f, want: r} }
func times(n int, s step) []step {
	out := make([]step, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func req(src string) frame {
	return frame{src: netip.MustParseAddr(src), payload: sipOptions}
}

// decideCases cover every branch of the decision; the model is held to
// them here and the kernel program (and the model again, frame by frame)
// in xdp_linux_test.go.
func decideCases() []decideCase {
	opts := frame{payload: sipOptions}
	return []decideCase{
		{name: "request", steps: []step{pass(opts, ClassRequest)}},
		{name: "second SIP port", steps: []step{pass(frame{dport: 5080, payload: sipOptions}, ClassRequest)}},
		{name: "response", steps: []step{pass(frame{payload: "SIP/2.0 200 OK\r\n\r\n"}, ClassResponse)}},
		{name: "keepalive double CRLF", steps: []step{pass(frame{payload: "\r\n\r\n"}, ClassKeepalive)}},
		{name: "keepalive CRLF", steps: []step{pass(frame{payload: "\r\n"}, ClassKeepalive)}},
		{name: "long CRLF run is junk", steps: []step{pass(frame{payload: "\r\n\r\n\r\n"}, ClassJunk)}},
		{name: "CR then text is junk", steps: []step{pass(frame{payload: "\rX"}, ClassJunk)}},
		{name: "stun binding", steps: []step{pass(frame{payload: "\x00\x01\x00\x00\x21\x12\xa4\x42abcdefghijkl"}, ClassStun)}},
		{name: "short stun is junk", steps: []step{pass(frame{payload: "\x00\x01\x00\x00\x21\x12\xa4\x42abc"}, ClassJunk)}},
		{name: "binary without cookie is junk", steps: []step{pass(frame{payload: "\x00\x01\x00\x00\x00\x00\x00\x00abcdefghijkl"}, ClassJunk)}},
		{name: "empty payload is junk", steps: []step{pass(frame{}, ClassJunk)}},
		{name: "lower-case method is junk", steps: []step{pass(frame{payload: "options sip:x SIP/2.0\r\n"}, ClassJunk)}},
		{name: "leading space is junk", steps: []step{pass(frame{payload: " INVITE sip:x SIP/2.0\r\n"}, ClassJunk)}},
		{name: "16-letter method", steps: []step{pass(frame{payload: strings.Repeat("A", 16) + " sip:x SIP/2.0\r\n"}, ClassRequest)}},
		{name: "17-letter method is junk", steps: []step{pass(frame{payload: strings.Repeat("A", 17) + " sip:x SIP/2.0\r\n"}, ClassJunk)}},
		{name: "method without space is junk", steps: []step{pass(frame{payload: "INVITE"}, ClassJunk)}},
		{name: "SIP/2.0 without space is junk", steps: []step{pass(frame{payload: "SIP/2.0"}, ClassJunk)}},
		{name: "other UDP port untouched", steps: []step{is(frame{dport: 53, payload: "junk"}, ReasonOther)}},
		{name: "not IP untouched", steps: []step{is(frame{ethType: 0x0806, payload: sipOptions}, ReasonOther)}},
		{name: "other transport untouched", steps: []step{is(frame{proto: 47, payload: sipOptions}, ReasonOther)}},
		{name: "UDP length under header", steps: []step{is(frame{payload: sipOptions, udpLen: -1}, ReasonMalformed)}},
		{name: "UDP length over IP payload", steps: []step{is(frame{payload: sipOptions, udpLen: 8 + len(sipOptions) + 1}, ReasonMalformed)}},
		{name: "UDP length short of frame payload", steps: []step{pass(frame{payload: "OPTIONS sip:x", udpLen: 8 + 3}, ClassJunk)}},
		{name: "malformed to other port untouched", steps: []step{is(frame{dport: 53, udpLen: -1}, ReasonOther)}},
		{name: "bad IHL untouched", steps: []step{is(frame{ihl: 4, payload: sipOptions}, ReasonOther)}},
		{name: "IP total length under header untouched", steps: []step{is(frame{totLen: 19, payload: sipOptions}, ReasonOther)}},
		{name: "IHL beyond frame untouched", steps: []step{is(frame{ihl: 15, cut: 28 + len(sipOptions), payload: sipOptions}, ReasonOther)}},
		{name: "IP options", steps: []step{pass(frame{ihl: 6, payload: sipOptions}, ClassRequest)}},
		{name: "truncated UDP header untouched", steps: []step{is(frame{cut: len(sipOptions) + 4, payload: sipOptions}, ReasonOther)}},
		{name: "truncated payload", steps: []step{pass(frame{cut: len(sipOptions) - 10, payload: sipOptions}, ClassRequest)}},
		{name: "payload cut inside the method", steps: []step{pass(frame{cut: len(sipOptions) - 3, payload: sipOptions}, ClassJunk)}},
		{name: "truncated IPv4 header untouched", steps: []step{is(frame{cut: 22, payload: "\r\n\r\n"}, ReasonOther)}},
		{name: "one VLAN", steps: []step{pass(frame{vlans: 1, payload: sipOptions}, ClassRequest)}},
		{name: "two VLANs", steps: []step{pass(frame{vlans: 2, payload: sipOptions}, ClassRequest)}},
		{name: "three VLANs untouched", steps: []step{is(frame{vlans: 3, payload: sipOptions}, ReasonOther)}},
		{name: "IPv6 request", steps: []step{pass(frame{src: v6Src, payload: sipOptions}, ClassRequest)}},
		{name: "IPv6 extension headers", steps: []step{pass(frame{src: v6Src, ext: []uint8{ipv6HopOpts, ipv6DstOpts, ipv6Routing}, payload: sipOptions}, ClassRequest)}},
		{name: "IPv6 too many extension headers untouched", steps: []step{is(frame{src: v6Src, ext: []uint8{0, 60, 60, 60, 60, 60, 60}, payload: sipOptions}, ReasonOther)}},
		{name: "IPv6 first fragment", steps: []step{pass(frame{src: v6Src, ext: []uint8{ipv6Frag}, fragOff6: 1, payload: sipOptions, udpLen: 1400}, ClassRequest)}},
		{name: "IPv6 later fragment", steps: []step{is(frame{src: v6Src, ext: []uint8{ipv6Frag}, fragOff6: 185 << 3, payload: "tail of a message"}, ReasonFragment)}},
		{name: "IPv6 truncated extension untouched", steps: []step{is(frame{src: v6Src, ext: []uint8{ipv6HopOpts}, cut: 8 + len(sipOptions) + 2, payload: sipOptions}, ReasonOther)}},
		{name: "IPv4 first fragment", steps: []step{pass(frame{frag: 0x2000, payload: sipOptions, udpLen: 1400}, ClassRequest)}},
		{name: "IPv4 later fragment", steps: []step{is(frame{frag: 0x2000 | 185, payload: "tail"}, ReasonFragment)}},
		{name: "IPv4 last fragment to any port", steps: []step{is(frame{frag: 370, dport: 53, payload: "tail"}, ReasonFragment)}},
		{name: "TCP SYN", steps: []step{pass(frame{proto: ipProtoTCP, tcpFlags: 0x02}, ClassSyn)}},
		{name: "TCP SYN to second port", steps: []step{pass(frame{proto: ipProtoTCP, dport: 5061, tcpFlags: 0x02}, ClassSyn)}},
		{name: "TCP SYN-ACK is stream", steps: []step{is(frame{proto: ipProtoTCP, tcpFlags: 0x12}, ReasonStream)}},
		{name: "TCP data is stream", steps: []step{is(frame{proto: ipProtoTCP, tcpFlags: 0x18, payload: sipOptions}, ReasonStream)}},
		{name: "TCP to UDP-only port untouched", steps: []step{is(frame{proto: ipProtoTCP, dport: 5080, tcpFlags: 0x02}, ReasonOther)}},
		{name: "UDP to TCP-only port untouched", steps: []step{is(frame{dport: 5061, payload: sipOptions}, ReasonOther)}},
		{name: "truncated TCP header untouched", steps: []step{is(frame{proto: ipProtoTCP, tcpFlags: 0x02, cut: 4}, ReasonOther)}},

		{name: "banned host", setup: func(s state) { s.ban(netip.MustParsePrefix("192.0.2.10/32"), far()) },
			steps: []step{is(opts, ReasonBan), pass(req("192.0.2.11"), ClassRequest)}},
		{name: "ban for ever", setup: func(s state) { s.ban(netip.MustParsePrefix("192.0.2.10/32"), never) },
			steps: []step{is(opts, ReasonBan)}},
		{name: "expired ban", setup: func(s state) { s.ban(netip.MustParsePrefix("192.0.2.10/32"), expired) },
			steps: []step{pass(opts, ClassRequest)}},
		{name: "banned host on TCP stream", setup: func(s state) { s.ban(netip.MustParsePrefix("192.0.2.10/32"), far()) },
			steps: []step{is(frame{proto: ipProtoTCP, tcpFlags: 0x18}, ReasonBan)}},
		{name: "banned source's later fragment", setup: func(s state) { s.ban(netip.MustParsePrefix("192.0.2.10/32"), far()) },
			steps: []step{is(frame{frag: 185, payload: "tail"}, ReasonBan)}},
		{name: "banned IPv6 host", setup: func(s state) { s.ban(netip.MustParsePrefix("2001:db8:1:2::10/128"), far()) },
			steps: []step{is(frame{src: v6Src, payload: sipOptions}, ReasonBan), pass(frame{src: netip.MustParseAddr("2001:db8:1:2::11"), payload: sipOptions}, ClassRequest)}},
		{name: "banned IPv6 /64", setup: func(s state) { s.ban(netip.MustParsePrefix("2001:db8:1:2::/64"), far()) },
			steps: []step{is(frame{src: netip.MustParseAddr("2001:db8:1:2:aaaa::1"), payload: sipOptions}, ReasonBan), pass(frame{src: netip.MustParseAddr("2001:db8:1:3::1"), payload: sipOptions}, ClassRequest)}},
		{name: "banned /24 network", setup: func(s state) { s.ban(netip.MustParsePrefix("192.0.2.0/24"), far()) },
			steps: []step{is(req("192.0.2.77"), ReasonBan), pass(req("192.0.3.1"), ClassRequest)}},
		{name: "banned IPv6 /48", setup: func(s state) { s.ban(netip.MustParsePrefix("2001:db8:1::/48"), far()) },
			steps: []step{is(frame{src: v6Src, payload: sipOptions}, ReasonBan)}},
		{name: "expired network ban", setup: func(s state) { s.ban(netip.MustParsePrefix("192.0.2.0/24"), expired) },
			steps: []step{pass(opts, ClassRequest)}},
		{name: "denied network", cfg: func(c *Config) { c.Deny = []netip.Prefix{netip.MustParsePrefix("192.0.0.0/16")} },
			steps: []step{is(opts, ReasonDeny), pass(req("198.51.100.9"), ClassRequest)}},
		{name: "denied IPv6 network", cfg: func(c *Config) { c.Deny = []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")} },
			steps: []step{is(frame{src: v6Src, payload: sipOptions}, ReasonDeny)}},
		{name: "allow beats ban and deny",
			cfg: func(c *Config) {
				c.Allow = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/28")}
				c.Deny = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
			},
			setup: func(s state) { s.ban(netip.MustParsePrefix("192.0.2.10/32"), never) },
			steps: []step{is(opts, ReasonAllow), is(frame{dport: 53}, ReasonOther), is(req("192.0.2.20"), ReasonDeny)}},
		{name: "allow does not make malformed pass", cfg: func(c *Config) { c.Allow = []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")} },
			steps: []step{is(frame{udpLen: -1}, ReasonMalformed)}},
		{name: "per-source burst then rate",
			cfg:   func(c *Config) { c.Source[ClassRequest] = Limit{Rate: 0.01, Burst: 3} },
			steps: append(append(times(3, pass(opts, ClassRequest)), times(2, step{f: opts, want: ReasonRate, class: ClassRequest})...), pass(req("192.0.2.11"), ClassRequest), pass(frame{payload: "SIP/2.0 100 Trying\r\n\r\n"}, ClassResponse))},
		{name: "IPv6 rate counted per /64",
			cfg:   func(c *Config) { c.Source[ClassRequest] = Limit{Rate: 0.01, Burst: 2} },
			steps: []step{pass(frame{src: v6Src, payload: sipOptions}, ClassRequest), pass(frame{src: netip.MustParseAddr("2001:db8:1:2::99"), payload: sipOptions}, ClassRequest), {f: frame{src: netip.MustParseAddr("2001:db8:1:2:5::1"), payload: sipOptions}, want: ReasonRate, class: ClassRequest}, pass(frame{src: netip.MustParseAddr("2001:db8:1:3::1"), payload: sipOptions}, ClassRequest)}},
		{name: "junk budget",
			cfg:   func(c *Config) { c.Source[ClassJunk] = Limit{Rate: 0.01, Burst: 1} },
			steps: []step{pass(frame{payload: "xx"}, ClassJunk), {f: frame{payload: "yy"}, want: ReasonRate, class: ClassJunk}, pass(opts, ClassRequest)}},
		{name: "SYN budget",
			cfg:   func(c *Config) { c.Source[ClassSyn] = Limit{Rate: 0.01, Burst: 2} },
			steps: []step{pass(frame{proto: ipProtoTCP, tcpFlags: 2}, ClassSyn), pass(frame{proto: ipProtoTCP, tcpFlags: 2}, ClassSyn), {f: frame{proto: ipProtoTCP, tcpFlags: 2}, want: ReasonRate, class: ClassSyn}, is(frame{proto: ipProtoTCP, tcpFlags: 0x10}, ReasonStream)}},
		{name: "class cap with a verified share",
			cfg:   func(c *Config) { c.Cap[ClassRequest] = 5; c.VerifiedShare = 40 },
			setup: func(s state) { s.verify(netip.MustParseAddr("192.0.2.99"), far()) },
			steps: []step{
				pass(req("192.0.2.1"), ClassRequest), pass(req("192.0.2.2"), ClassRequest), pass(req("192.0.2.3"), ClassRequest),
				{f: req("192.0.2.4"), want: ReasonGlobal, class: ClassRequest},
				pass(req("192.0.2.99"), ClassRequest), pass(req("192.0.2.99"), ClassRequest),
				{f: req("192.0.2.99"), want: ReasonGlobal, class: ClassRequest},
				pass(frame{payload: "SIP/2.0 180 Ringing\r\n\r\n"}, ClassResponse),
			}},
		{name: "expired verification gets no share",
			cfg:   func(c *Config) { c.Cap[ClassRequest] = 2; c.VerifiedShare = 50 },
			setup: func(s state) { s.verify(netip.MustParseAddr("192.0.2.99"), expired) },
			steps: []step{pass(req("192.0.2.99"), ClassRequest), {f: req("192.0.2.99"), want: ReasonGlobal, class: ClassRequest}}},
		{name: "observe mode counts but passes",
			cfg:   func(c *Config) { c.Observe = true },
			setup: func(s state) { s.ban(netip.MustParsePrefix("192.0.2.10/32"), never) },
			steps: []step{is(opts, ReasonBan)}},
	}
}

func TestModelDecisions(t *testing.T) {
	for _, tc := range decideCases() {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			m, err := NewModel(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if tc.setup != nil {
				tc.setup(modelState{m})
			}
			for i, s := range tc.steps {
				drop, r, c := m.Decide(s.f.build(), MonoNow())
				if r != s.want {
					t.Fatalf("step %d: reason %s, want %s", i, r, s.want)
				}
				if wantDrop := s.want.Drops() && !cfg.Observe; drop != wantDrop {
					t.Fatalf("step %d: drop=%v, want %v", i, drop, wantDrop)
				}
				if (r == ReasonPass || r == ReasonRate || r == ReasonGlobal) && c != s.class {
					t.Fatalf("step %d: class %s, want %s", i, c, s.class)
				}
			}
			got := m.Counters()
			var sum uint64
			for _, v := range got.Reasons {
				sum += v
			}
			if sum != uint64(len(tc.steps)) {
				t.Fatalf("counted %d decisions for %d frames: %+v", sum, len(tc.steps), got)
			}
		})
	}
}

func TestAdmitUserspace(t *testing.T) {
	cfg := baseConfig()
	cfg.Source[ClassRequest] = Limit{Rate: 0.01, Burst: 2}
	cfg.Allow = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	m, err := NewModel(cfg)
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("::ffff:192.0.2.5") // as a dual-stack socket reports it
	now := MonoNow()
	for i, want := range []bool{true, true, false} {
		if ok, r := m.Admit(src, Classify([]byte(sipOptions)), now); ok != want {
			t.Fatalf("request %d: admitted=%v (%s), want %v", i, ok, r, want)
		}
	}
	if ok, r := m.Admit(src, ClassKeepalive, now); !ok || r != ReasonPass {
		t.Fatalf("keepalive after request budget: %v %s", ok, r)
	}
	for range 10 {
		if ok, r := m.Admit(netip.MustParseAddr("10.1.2.3"), ClassRequest, now); !ok || r != ReasonAllow {
			t.Fatalf("allow-listed source: %v %s", ok, r)
		}
	}
	m.Ban(netip.MustParsePrefix("192.0.2.5/32"), never)
	if ok, r := m.Admit(src, ClassKeepalive, now); ok || r != ReasonBan {
		t.Fatalf("banned: %v %s", ok, r)
	}
	m.Unban(netip.MustParsePrefix("192.0.2.5/32"))
	// An IPv4-mapped /128 is the IPv4 host; a mapped prefix under /96 is
	// ambiguous and refused rather than read as an IPv6 network.
	if err := m.Ban(netip.PrefixFrom(src, 128), never); err != nil {
		t.Fatal(err)
	}
	if ok, r := m.Admit(netip.MustParseAddr("192.0.2.5"), ClassKeepalive, now); ok || r != ReasonBan {
		t.Fatalf("mapped ban: %v %s", ok, r)
	}
	if err := m.Unban(netip.PrefixFrom(src, 128)); err != nil {
		t.Fatal(err)
	}
	if err := m.Ban(netip.PrefixFrom(src, 32), never); err == nil {
		t.Fatal("mapped /32 accepted")
	}
	if ok, _ := m.Admit(netip.MustParseAddr("198.51.100.7"), ClassKeepalive, now); !ok {
		t.Fatal("refused ban still banned someone")
	}
	// The budget refills with time: 0.01/s is one per 100 s.
	if ok, _ := m.Admit(src, ClassRequest, now+100e9); !ok {
		t.Fatal("budget did not refill")
	}
}

func TestConfigValidate(t *testing.T) {
	for name, c := range map[string]Config{
		"share":      {VerifiedShare: 101},
		"rate":       {Source: [NumClasses]Limit{{Rate: -1}}},
		"burst":      {Source: [NumClasses]Limit{{Rate: 10}}},
		"ports":      {UDPPorts: make([]uint16, 65)},
		"bad prefix": {Allow: []netip.Prefix{{}}},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted %+v", name, c)
		}
	}
	ok := baseConfig()
	ok.Source[ClassRequest] = Limit{Rate: 50, Burst: 100}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	raw := ok.raw()
	if raw.source[ClassRequest].interval != 20e6 || raw.source[ClassRequest].tolerance != 99*20e6 {
		t.Fatalf("GCRA of 50/s burst 100: %+v", raw.source[ClassRequest])
	}
}

func TestNamesRoundTrip(t *testing.T) {
	for c := range NumClasses {
		if got, ok := ParseClass(c.String()); !ok || got != c {
			t.Errorf("class %d", c)
		}
	}
	for r := range NumReasons {
		if got, ok := ParseReason(r.String()); !ok || got != r {
			t.Errorf("reason %d", r)
		}
	}
	if _, ok := ParseClass("nope"); ok {
		t.Error("unknown class parsed")
	}
}

// BenchmarkModelAdmit is the userspace limiter's cost per datagram: one
// source within budget, classified from its bytes.
func BenchmarkModelAdmit(b *testing.B) {
	cfg := baseConfig()
	cfg.Source[ClassRequest] = Limit{Rate: 1e9, Burst: 1 << 30}
	cfg.Cap[ClassRequest] = 1 << 62
	m, err := NewModel(cfg)
	if err != nil {
		b.Fatal(err)
	}
	src := netip.MustParseAddr("192.0.2.10")
	msg := []byte(sipOptions)
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := m.Admit(src, Classify(msg), MonoNow()); !ok {
			b.Fatal("refused")
		}
	}
}
