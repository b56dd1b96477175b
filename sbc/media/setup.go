package media

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"
)

// Defaults applied by New to zero Config fields, except DefaultInactivity:
// a zero Inactivity is off, and the configuration applies the default.
const (
	DefaultPortMin     = 40000
	DefaultPortMax     = 44999
	DefaultInactivity  = 60 * time.Second
	DefaultMaxSessions = 10000
)

// Limits. A call has at most sdp.MaxMedia streams (16): the parser
// refuses more m= lines.
const (
	// MaxDatagram is the largest datagram relayed; bigger ones are dropped
	// (reason too-large). RTP over UDP stays well below the path MTU.
	MaxDatagram = 2048
)

// Sentinel errors; test with errors.Is. Malformed bodies return an error
// wrapping sdp.ErrMalformed.
var (
	// ErrFull means MaxSessions calls already have a relay.
	ErrFull = errors.New("media: too many sessions")
	// ErrNoPorts means no free port pair is left in the range.
	ErrNoPorts = errors.New("media: no free relay ports")
	// ErrClosed means the Manager was closed.
	ErrClosed = errors.New("media: manager closed")
)

// Config of the media relay. Addresses must be set; everything else has a
// default.
type Config struct {
	// PortMin and PortMax bound the UDP ports of relay sockets, both
	// included. RTP takes an even port, RTCP the odd one above it. Both
	// zero: DefaultPortMin-DefaultPortMax.
	PortMin, PortMax int
	// External and Internal are the bind addresses of the outside-facing
	// and inside-facing sockets. Required; they may be equal.
	External, Internal netip.Addr
	// AdvertiseExternal and AdvertiseInternal are the addresses written in
	// SDP toward each side (a public address behind 1:1 NAT, say). Zero:
	// the bind address, which must then not be unspecified.
	AdvertiseExternal, AdvertiseInternal netip.Addr
	// Inactivity is how long a session may relay no packet, in either
	// direction, before Run reports it. Zero or negative: never reported.
	// DefaultInactivity is the configuration's default, not New's.
	Inactivity time.Duration
	// MaxSessions bounds the calls with a relay; beyond it Rewrite fails
	// with ErrFull. Zero: DefaultMaxSessions.
	MaxSessions int
	// Logger receives session and latching events at Debug. Nil: discard.
	Logger *slog.Logger
	// Now is the clock of the inactivity checks and of the quarantine of
	// released port pairs. Nil: time.Now.
	Now func() time.Time
	// OnRTCP hears what the rewriting of RTCP toward the outside changed
	// in one packet: an item of RTCPItems and how many times. Called from
	// the relay goroutines: it must be fast and safe for concurrent use.
	// Nil: only Stats.RTCP counts.
	OnRTCP func(item string, n int)
	// GuardRTCP, when set, sees every RTCP packet about to leave toward
	// the outside once rewritten, and returns false to drop it (reason
	// rtcp): the topology guard. Same constraints as OnRTCP.
	GuardRTCP func(pkt []byte) bool
	// FastPath, when set, forwards the RTP of streams latched on both
	// sides in the kernel (a *bpf.MediaPath attached to the interfaces
	// media arrives on, with this port range). Used only when both sides
	// bind an address, of one family. Nil: every packet is relayed here.
	FastPath FastPath
	// Encryption is what the relay speaks with each side (secure.go):
	// the zero value passes SDP security lines and SRTP through.
	Encryption Encryption
}

// New validates cfg, applies the defaults and returns a Manager. It binds
// nothing: sockets are opened by Rewrite.
func New(cfg Config) (*Manager, error) {
	if cfg.PortMin == 0 && cfg.PortMax == 0 {
		cfg.PortMin, cfg.PortMax = DefaultPortMin, DefaultPortMax
	}
	if err := cfg.Encryption.Validate(); err != nil {
		return nil, err
	}
	if cfg.PortMin < 1 || cfg.PortMax > 65535 || cfg.PortMin > cfg.PortMax {
		return nil, fmt.Errorf("media: bad port range %d-%d", cfg.PortMin, cfg.PortMax)
	}
	first := cfg.PortMin + cfg.PortMin%2
	pairs := (cfg.PortMax - first + 1) / 2
	if pairs < 1 {
		return nil, fmt.Errorf("media: port range %d-%d holds no even/odd pair", cfg.PortMin, cfg.PortMax)
	}
	var err error
	if cfg.AdvertiseExternal, err = advertised("external", cfg.External, cfg.AdvertiseExternal); err != nil {
		return nil, err
	}
	if cfg.AdvertiseInternal, err = advertised("internal", cfg.Internal, cfg.AdvertiseInternal); err != nil {
		return nil, err
	}
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.MaxSessions < 0 {
		return nil, fmt.Errorf("media: negative MaxSessions %d", cfg.MaxSessions)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		cfg:      cfg,
		log:      log.With("component", "media"),
		sessions: make(map[string]*session),
		tick:     time.Second,
		done:     make(chan struct{}),
	}
	ext := newPortPool(cfg.External.Unmap(), first, pairs)
	m.pools[0] = ext
	m.pools[1] = ext
	// Separate pools only when the two binds cannot collide: a wildcard
	// bind holds the port on every address of the host.
	in := cfg.Internal.Unmap()
	if in != ext.addr && !in.IsUnspecified() && !ext.addr.IsUnspecified() {
		m.pools[1] = newPortPool(in, first, pairs)
	}
	for _, a := range []netip.Addr{cfg.External, cfg.Internal, cfg.AdvertiseExternal, cfg.AdvertiseInternal} {
		if a = a.Unmap(); !a.IsUnspecified() {
			m.own = append(m.own, a)
		}
	}
	if cfg.External.Unmap().IsUnspecified() || cfg.Internal.Unmap().IsUnspecified() {
		// A wildcard socket answers on every local address: none of them
		// may be a peer on a relay port.
		m.own = append(m.own, localAddrs()...)
	}
	m.fastOK = cfg.FastPath != nil && fastUsable(cfg)
	if cfg.FastPath != nil && !m.fastOK {
		m.log.Info("media fast path not used: a side binds a wildcard address, or the sides differ in family", "external", cfg.External, "internal", cfg.Internal)
	}
	m.loopback[0] = cfg.External.Unmap().IsLoopback()
	m.loopback[1] = cfg.Internal.Unmap().IsLoopback()
	m.v4[0] = cfg.External.Unmap().Is4()
	m.v4[1] = cfg.Internal.Unmap().Is4()
	return m, nil
}

func advertised(name string, bind, adv netip.Addr) (netip.Addr, error) {
	if !bind.IsValid() {
		return adv, fmt.Errorf("media: %s bind address is required", name)
	}
	bind = bind.Unmap()
	if !adv.IsValid() {
		if bind.IsUnspecified() {
			return adv, fmt.Errorf("media: %s bind address %s is unspecified: set its advertised address", name, bind)
		}
		return bind, nil
	}
	adv = adv.Unmap()
	if adv.IsUnspecified() || adv.IsMulticast() {
		return adv, fmt.Errorf("media: advertised %s address %s cannot be reached", name, adv)
	}
	if adv.Is4() != bind.Is4() {
		return adv, fmt.Errorf("media: advertised %s address %s and bind address %s differ in family", name, adv, bind)
	}
	return adv, nil
}

func localAddrs() []netip.Addr {
	ifas, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, ifa := range ifas {
		if p, err := netip.ParsePrefix(ifa.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out
}
