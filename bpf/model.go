package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sync"
)

// Class is what the first bytes of a packet say it is. Each class has its
// own budgets.
type Class uint8

// The classes, numbered as in xdp.c.
const (
	ClassRequest   Class = iota // a SIP request line: METHOD SP
	ClassResponse               // "SIP/2.0 "
	ClassKeepalive              // CRLF keepalive (1..4 bytes of CR/LF)
	ClassStun                   // a STUN message (magic cookie)
	ClassJunk                   // anything else sent to a SIP UDP port
	ClassSyn                    // a TCP SYN to a SIP port
	NumClasses
)

var classNames = [NumClasses]string{"request", "response", "keepalive", "stun", "junk", "syn"}

func (c Class) String() string {
	if c < NumClasses {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// Reason is why a packet passed or was dropped; every packet is counted
// under exactly one.
type Reason uint8

// The reasons, numbered as in xdp.c. Those from ReasonBan on drop.
const (
	ReasonOther     Reason = iota // not for a SIP port (or not IP): untouched
	ReasonAllow                   // allow-listed source
	ReasonPass                    // judged and passed
	ReasonFragment                // non-first fragment from an unbanned source
	ReasonStream                  // TCP segment other than a SYN
	ReasonBan                     // banned source
	ReasonDeny                    // denied network
	ReasonRate                    // per-source rate limit
	ReasonGlobal                  // per-CPU cap of the class
	ReasonMalformed               // UDP header to a SIP port that cannot be right
	NumReasons
)

var reasonNames = [NumReasons]string{"other", "allow", "pass", "fragment", "stream", "ban", "deny", "rate", "global", "malformed"}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Drops reports whether packets counted under r are dropped.
func (r Reason) Drops() bool { return r >= ReasonBan && r < NumReasons }

// ParseClass and ParseReason turn names back into values.
func ParseClass(s string) (Class, bool) {
	i := slices.Index(classNames[:], s)
	return Class(i), i >= 0
}

// ParseReason is the inverse of Reason.String.
func ParseReason(s string) (Reason, bool) {
	i := slices.Index(reasonNames[:], s)
	return Reason(i), i >= 0
}

// Limit is a per-source budget: Rate packets per second on average with
// bursts of Burst packets. Rate 0 means no limit.
type Limit struct {
	Rate  float64
	Burst int
}

// Config is what the prefilter enforces.
type Config struct {
	// UDPPorts and TCPPorts are the SIP ports judged; packets to other
	// ports pass untouched.
	UDPPorts, TCPPorts []uint16
	// Allow lists sources that pass without further checks (trusted peers,
	// upstreams). Deny lists networks always dropped.
	Allow, Deny []netip.Prefix
	// Source is the per-source budget of each class, per IPv4 address and
	// per IPv6 /64.
	Source [NumClasses]Limit
	// Cap is the packets per second per CPU of each class from all sources
	// together (0: no cap). VerifiedShare percent of it is kept for sources
	// that authenticated recently.
	Cap           [NumClasses]uint64
	VerifiedShare int
	// Observe counts every decision but drops nothing.
	Observe bool
}

// Validate reports the first thing wrong with c.
func (c *Config) Validate() error {
	if c.VerifiedShare < 0 || c.VerifiedShare > 100 {
		return fmt.Errorf("verified share %d: must be 0..100", c.VerifiedShare)
	}
	for i, l := range c.Source {
		if l.Rate < 0 || math.IsNaN(l.Rate) || math.IsInf(l.Rate, 0) || l.Rate > 1e9 {
			return fmt.Errorf("%s rate %v: must be 0..1e9", Class(i), l.Rate)
		}
		if l.Rate > 0 && l.Burst < 1 {
			return fmt.Errorf("%s burst %d: must be at least 1", Class(i), l.Burst)
		}
	}
	if len(c.UDPPorts)+len(c.TCPPorts) > maxPorts {
		return fmt.Errorf("%d ports: at most %d", len(c.UDPPorts)+len(c.TCPPorts), maxPorts)
	}
	for _, p := range slices.Concat(c.Allow, c.Deny) {
		if _, err := normPrefix(p); err != nil {
			return err
		}
	}
	return nil
}

const (
	maxPorts    = 64 // ports map size in xdp.c
	portUDP     = 1
	portTCP     = 2
	flagObserve = 1
	maxVLAN     = 2
	maxExtHdr   = 6
	maxMethod   = 16
	windowNs    = 1_000_000_000
)

// limit and rawConfig are the kernel's form of Config (struct sw_limit,
// struct sw_config).
type limit struct{ interval, tolerance uint64 }

type rawConfig struct {
	source        [NumClasses]limit
	cap           [NumClasses]uint64
	capUnverified [NumClasses]uint64
	flags         uint32
}

func (c *Config) raw() rawConfig {
	var r rawConfig
	for i, l := range c.Source {
		if l.Rate <= 0 {
			continue
		}
		iv := uint64(1e9 / l.Rate)
		if iv == 0 {
			iv = 1
		}
		r.source[i] = limit{interval: iv, tolerance: iv * uint64(max(l.Burst-1, 0))}
	}
	for i, cp := range c.Cap {
		r.cap[i] = cp
		keep := uint64(100 - c.VerifiedShare) // percent unverified sources may use; no overflow for any cap
		r.capUnverified[i] = cp/100*keep + cp%100*keep/100
	}
	if c.Observe {
		r.flags |= flagObserve
	}
	return r
}

func (c *Config) portMap() map[uint16]uint8 {
	m := map[uint16]uint8{}
	for _, p := range c.UDPPorts {
		m[p] |= portUDP
	}
	for _, p := range c.TCPPorts {
		m[p] |= portTCP
	}
	return m
}

// ErrPrefix is returned for a prefix the maps cannot hold: invalid, or an
// IPv4-mapped address with fewer than 96 bits (ambiguous: an IPv6 network
// over the mapped range, or an IPv4 network written the long way?).
var ErrPrefix = errors.New("xdp: invalid or ambiguous prefix")

// normPrefix gives IPv4 prefixes in their 4-byte form (an IPv4-mapped
// /96../128 becomes /0../32) and masks the host bits.
func normPrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return p, ErrPrefix
	}
	a, bits := p.Addr().WithZone(""), p.Bits()
	if a.Is4In6() {
		if bits < 96 {
			return p, fmt.Errorf("%w: %s", ErrPrefix, p)
		}
		a, bits = a.Unmap(), bits-96
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

// Addr16 is an address in the kernel's 16-byte form (IPv4 mapped).
func addr16(a netip.Addr) [16]byte { return netip.AddrFrom16(a.As16()).As16() }

// lpmBits is a prefix's length on the 16-byte form.
func lpmBits(p netip.Prefix) int {
	if p.Addr().Is4() {
		return p.Bits() + 96
	}
	return p.Bits()
}

// Packet is what the parser found in a frame.
type Packet struct {
	Src      netip.Addr // unmapped
	V4       bool
	Fragment bool // a non-first fragment: no transport header
	Proto    uint8
	DstPort  uint16
	// Malformed: UDP length shorter than its header or longer than the IP
	// payload (outside a first fragment).
	Malformed bool
	// Class of the payload (UDP) or ClassSyn; Stream: a TCP segment other
	// than a SYN.
	Class  Class
	Stream bool
}

const (
	ipProtoUDP  = 17
	ipProtoTCP  = 6
	ethIPv4     = 0x0800
	ethIPv6     = 0x86dd
	eth8021Q    = 0x8100
	eth8021AD   = 0x88a8
	ipv6HopOpts = 0
	ipv6Routing = 43
	ipv6Frag    = 44
	ipv6AH      = 51
	ipv6DstOpts = 60
)

// ParseFrame parses an Ethernet frame as xdp.c does. ok is false when the
// frame is not one the prefilter judges by address (not IP, truncated
// headers, bad IHL, another transport, a transport header cut short).
func ParseFrame(f []byte) (p Packet, ok bool) {
	if len(f) < 14 {
		return p, false
	}
	proto := binary.BigEndian.Uint16(f[12:])
	cur := 14
	for range maxVLAN {
		if proto != eth8021Q && proto != eth8021AD {
			break
		}
		if cur+4 > len(f) {
			return p, false
		}
		proto = binary.BigEndian.Uint16(f[cur+2:])
		cur += 4
	}
	firstFragment := false
	var l4 uint8
	var l3Payload int
	switch proto {
	case ethIPv4:
		if cur+20 > len(f) {
			return p, false
		}
		hl := int(f[cur]&0x0f) * 4
		tot := int(binary.BigEndian.Uint16(f[cur+2:]))
		if hl < 20 || tot < hl || cur+hl > len(f) {
			return p, false
		}
		p.V4 = true
		p.Src = netip.AddrFrom4([4]byte(f[cur+12 : cur+16]))
		frag := binary.BigEndian.Uint16(f[cur+6:])
		if frag&0x1fff != 0 {
			p.Fragment = true
		} else if frag&0x2000 != 0 {
			firstFragment = true
		}
		l4 = f[cur+9]
		l3Payload = tot - hl
		cur += hl
	case ethIPv6:
		if cur+40 > len(f) {
			return p, false
		}
		// Not unmapped: an IPv4-mapped source in an IPv6 header is an
		// IPv6 source to the kernel program (limited per /64).
		p.Src = netip.AddrFrom16([16]byte(f[cur+8 : cur+24]))
		l4 = f[cur+6]
		l3Payload = int(binary.BigEndian.Uint16(f[cur+4:]))
		cur += 40
		for range maxExtHdr {
			var n int
			switch l4 {
			case ipv6HopOpts, ipv6Routing, ipv6DstOpts:
				if cur+2 > len(f) {
					return p, false
				}
				n = (int(f[cur+1]) + 1) * 8
			case ipv6Frag:
				if cur+8 > len(f) {
					return p, false
				}
				off := binary.BigEndian.Uint16(f[cur+2:])
				if off&0xfff8 != 0 {
					p.Fragment = true
				} else if off&1 != 0 {
					firstFragment = true
				}
				n = 8
			case ipv6AH:
				if cur+2 > len(f) {
					return p, false
				}
				n = (int(f[cur+1]) + 2) * 4
			default:
				n = -1
			}
			if n < 0 || p.Fragment {
				break
			}
			if n > l3Payload {
				return p, false
			}
			l4 = f[cur]
			l3Payload -= n
			cur += n
		}
	default:
		return p, false
	}
	p.Proto = l4
	if p.Fragment {
		return p, true
	}
	switch l4 {
	case ipProtoUDP:
		if cur+8 > len(f) {
			return p, false
		}
		p.DstPort = binary.BigEndian.Uint16(f[cur+2:])
		ulen := int(binary.BigEndian.Uint16(f[cur+4:]))
		if ulen < 8 || (!firstFragment && ulen > l3Payload) {
			p.Malformed = true
			return p, true
		}
		p.Class = classify(f[cur+8:], ulen-8)
	case ipProtoTCP:
		if cur+20 > len(f) {
			return p, false
		}
		p.DstPort = binary.BigEndian.Uint16(f[cur+2:])
		flags := f[cur+13]
		if flags&0x02 == 0 || flags&0x10 != 0 {
			p.Stream = true
		}
		p.Class = ClassSyn
	default:
		return p, false
	}
	return p, true
}

// Classify tells the class of a UDP payload from its first bytes.
func Classify(b []byte) Class { return classify(b, len(b)) }

// classify is Classify for a payload whose UDP header announces n bytes
// while b holds what the frame has (either may be the shorter).
func classify(b []byte, n int) Class {
	if n <= 0 || len(b) == 0 {
		return ClassJunk
	}
	if b[0] == '\r' || b[0] == '\n' {
		if n > 4 {
			return ClassJunk
		}
		for i := 0; i < 4 && i < n; i++ {
			if i >= len(b) || (b[i] != '\r' && b[i] != '\n') {
				return ClassJunk
			}
		}
		return ClassKeepalive
	}
	if b[0]&0xc0 == 0 {
		if n >= 20 && len(b) >= 20 && b[4] == 0x21 && b[5] == 0x12 && b[6] == 0xa4 && b[7] == 0x42 {
			return ClassStun
		}
		return ClassJunk
	}
	if n >= 8 && len(b) >= 8 && string(b[:8]) == "SIP/2.0 " {
		return ClassResponse
	}
	for i := 0; i <= maxMethod; i++ {
		if i >= n || i >= len(b) {
			return ClassJunk
		}
		if b[i] == ' ' {
			if i > 0 {
				return ClassRequest
			}
			return ClassJunk
		}
		if b[i] < 'A' || b[i] > 'Z' {
			return ClassJunk
		}
	}
	return ClassJunk
}

// Counters are the decisions counted, per reason and per class.
type Counters struct {
	Reasons [NumReasons]uint64
	// Passed and Dropped count judged packets per class (drops by the rate
	// limit and the caps).
	Passed, Dropped [NumClasses]uint64
}

// TotalDropped sums the reasons that drop.
func (c *Counters) TotalDropped() uint64 {
	var n uint64
	for r, v := range c.Reasons {
		if Reason(r).Drops() {
			n += v
		}
	}
	return n
}

// Model is the prefilter's decision in Go: the same checks, in the same
// order, with the same arithmetic as xdp.c, for one CPU. It serves as the
// userspace limiter when no XDP program is attached, and as the reference
// the kernel program is tested against. Safe for concurrent use.
type Model struct {
	mu       sync.Mutex
	cfg      rawConfig
	ports    map[uint16]uint8
	allow    prefixes[struct{}]
	deny     prefixes[uint64]
	banNets  prefixes[uint64]
	bans     map[banKey]uint64
	verified map[[16]byte]uint64
	sources  map[[16]byte]*[NumClasses]uint64
	windows  [NumClasses]struct{ start, count uint64 }
	counters Counters
	// maxSources bounds sources; when full, an arbitrary entry goes (the
	// kernel's LRU hash forgets the least recently used).
	maxSources, maxVerified int
}

type banKey struct {
	addr [16]byte
	plen uint32
}

// NewModel returns a model enforcing cfg.
func NewModel(cfg Config) (*Model, error) {
	m := &Model{
		bans: map[banKey]uint64{}, verified: map[[16]byte]uint64{},
		sources: map[[16]byte]*[NumClasses]uint64{}, maxSources: 262144, maxVerified: 65536,
	}
	return m, m.Configure(cfg)
}

// Configure replaces the configuration; bans, verified sources and
// limiter state stay.
func (m *Model) Configure(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cfg = cfg.raw()
	m.ports = cfg.portMap()
	m.allow = prefixes[struct{}]{}
	for _, p := range cfg.Allow {
		p, _ = normPrefix(p)
		m.allow.set(p, struct{}{})
	}
	m.deny = prefixes[uint64]{}
	for _, p := range cfg.Deny {
		p, _ = normPrefix(p)
		m.deny.set(p, 0)
	}
	return nil
}

// Ban bans p until the monotonic time expiry (0: never), as the kernel's
// ban maps hold it.
func (m *Model) Ban(p netip.Prefix, expiry uint64) error {
	p, err := normPrefix(p)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if k, ok := hashBanKey(p); ok {
		m.bans[k] = expiry
		return nil
	}
	m.banNets.set(p, expiry)
	return nil
}

// Unban lifts a ban on p.
func (m *Model) Unban(p netip.Prefix) error {
	p, err := normPrefix(p)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if k, ok := hashBanKey(p); ok {
		delete(m.bans, k)
		return nil
	}
	m.banNets.del(p)
	return nil
}

// Verify marks a source as authenticated until expiry (0: never).
func (m *Model) Verify(a netip.Addr, expiry uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := addr16(a)
	if _, ok := m.verified[k]; !ok && len(m.verified) >= m.maxVerified {
		for old := range m.verified {
			delete(m.verified, old)
			break
		}
	}
	m.verified[k] = expiry
}

// hashBanKey is the ban hash's key for hosts and IPv6 /64s; other prefix
// lengths go to the ban_nets trie. p is normalised (normPrefix).
func hashBanKey(p netip.Prefix) (banKey, bool) {
	switch {
	case p.Addr().Is4() && p.Bits() == 32, p.Addr().Is6() && p.Bits() == 128:
		return banKey{addr16(p.Addr()), 128}, true
	case p.Addr().Is6() && p.Bits() == 64:
		return banKey{addr16(p.Addr()), 64}, true
	}
	return banKey{}, false
}

// Counters returns the decisions counted so far.
func (m *Model) Counters() Counters {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counters
}

// Decide judges an Ethernet frame at monotonic time now, as xdp.c does.
func (m *Model) Decide(frame []byte, now uint64) (drop bool, r Reason, c Class) {
	p, ok := ParseFrame(frame)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !ok {
		return m.verdict(ReasonOther), ReasonOther, ClassJunk
	}
	if !p.Fragment {
		mask := m.ports[p.DstPort]
		want := uint8(portUDP)
		if p.Proto == ipProtoTCP {
			want = portTCP
		}
		if mask&want == 0 {
			return m.verdict(ReasonOther), ReasonOther, p.Class
		}
		if p.Malformed {
			return m.verdict(ReasonMalformed), ReasonMalformed, p.Class
		}
	}
	r = m.judge(p.Src, p.V4, p.Fragment, p.Stream, p.Class, now)
	return m.verdict(r), r, p.Class
}

// Admit judges a packet that reached a SIP listener (the userspace
// limiter): class c from src. It reports whether to keep it.
func (m *Model) Admit(src netip.Addr, c Class, now uint64) (bool, Reason) {
	m.mu.Lock()
	defer m.mu.Unlock()
	src = src.Unmap()
	r := m.judge(src, src.Is4(), false, false, c, now)
	return !m.verdict(r), r
}

func (m *Model) verdict(r Reason) bool {
	m.counters.Reasons[r]++
	return r.Drops() && m.cfg.flags&flagObserve == 0
}

func live(expiry uint64, ok bool, now uint64) bool { return ok && (expiry == 0 || expiry > now) }

// judge runs the checks after parsing; m.mu is held.
func (m *Model) judge(src netip.Addr, v4, fragment, stream bool, c Class, now uint64) Reason {
	a := addr16(src)
	if _, ok := m.allow.find(src); ok {
		return ReasonAllow
	}
	if m.banned(src, v4, a, now) {
		return ReasonBan
	}
	if e, ok := m.deny.find(src); live(e, ok, now) {
		return ReasonDeny
	}
	if fragment {
		return ReasonFragment
	}
	if stream {
		return ReasonStream
	}
	if c >= NumClasses {
		return ReasonOther
	}
	if m.limited(v4, a, c, now) {
		m.counters.Dropped[c]++
		return ReasonRate
	}
	if m.capped(a, c, now) {
		m.counters.Dropped[c]++
		return ReasonGlobal
	}
	m.counters.Passed[c]++
	return ReasonPass
}

func (m *Model) banned(src netip.Addr, v4 bool, a [16]byte, now uint64) bool {
	if e, ok := m.bans[banKey{a, 128}]; live(e, ok, now) {
		return true
	}
	if !v4 {
		k := banKey{a, 64}
		clear(k.addr[8:])
		if e, ok := m.bans[k]; live(e, ok, now) {
			return true
		}
	}
	e, ok := m.banNets.find(src)
	return live(e, ok, now)
}

func (m *Model) limited(v4 bool, a [16]byte, c Class, now uint64) bool {
	lim := m.cfg.source[c]
	if lim.interval == 0 {
		return false
	}
	if !v4 {
		clear(a[8:])
	}
	s := m.sources[a]
	if s == nil {
		if len(m.sources) >= m.maxSources {
			for k := range m.sources {
				delete(m.sources, k)
				break
			}
		}
		s = new([NumClasses]uint64)
		m.sources[a] = s
	}
	tat := max(s[c], now)
	if tat-now > lim.tolerance {
		return true
	}
	s[c] = tat + lim.interval
	return false
}

func (m *Model) capped(a [16]byte, c Class, now uint64) bool {
	cp := m.cfg.cap[c]
	if cp == 0 {
		return false
	}
	w := &m.windows[c]
	if now-w.start >= windowNs {
		w.start, w.count = now, 0
	}
	if w.count >= m.cfg.capUnverified[c] {
		if w.count >= cp {
			return true
		}
		if e, ok := m.verified[a]; !live(e, ok, now) {
			return true
		}
	}
	w.count++
	return false
}

// prefixes is a longest-prefix-match table over a handful of prefix
// lengths, the Go stand-in for an LPM trie.
type prefixes[V any] struct {
	m    map[netip.Prefix]V
	lens []int // distinct lengths on the 16-byte form, longest first
}

func (t *prefixes[V]) set(p netip.Prefix, v V) {
	p = netip.PrefixFrom(netip.AddrFrom16(addr16(p.Addr())), lpmBits(p)).Masked()
	if t.m == nil {
		t.m = map[netip.Prefix]V{}
	}
	t.m[p] = v
	if !slices.Contains(t.lens, p.Bits()) {
		t.lens = append(t.lens, p.Bits())
		slices.Sort(t.lens)
		slices.Reverse(t.lens)
	}
}

func (t *prefixes[V]) del(p netip.Prefix) {
	delete(t.m, netip.PrefixFrom(netip.AddrFrom16(addr16(p.Addr())), lpmBits(p)).Masked())
}

func (t *prefixes[V]) find(a netip.Addr) (V, bool) {
	var zero V
	if len(t.m) == 0 {
		return zero, false
	}
	a16 := netip.AddrFrom16(addr16(a))
	for _, l := range t.lens {
		p, _ := a16.Prefix(l)
		if v, ok := t.m[p]; ok {
			return v, true
		}
	}
	return zero, false
}
