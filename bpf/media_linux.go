//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// DefaultMediaRoutes is the capacity of the route map when
// MediaOptions.MaxRoutes is 0: a route per relay RTP socket.
const DefaultMediaRoutes = 65536

// MediaOptions configure OpenMedia.
type MediaOptions struct {
	// Interfaces the program is attached to, on TC ingress (tcx, Linux
	// 6.6 or later). None: loaded only (the program can still be run
	// with Program().Run).
	Interfaces []string
	// PortMin and PortMax are the relay's port range: datagrams to other
	// ports are passed at once.
	PortMin, PortMax uint16
	// MaxRoutes bounds the routes (0: DefaultMediaRoutes).
	MaxRoutes int
	Log       *slog.Logger
}

// MediaPath is the loaded media fast path. Safe for concurrent use.
type MediaPath struct {
	objs mediaObjects
	log  *slog.Logger
	// egress finds how a route leaves (a route lookup); tests replace it.
	egress func(src, dst netip.Addr) (MediaEgress, error)

	mu       sync.Mutex
	links    []link.Link
	attached []string
	closed   bool
}

// OpenMedia loads the media fast path, writes the port range and attaches
// it to opt.Interfaces. An error from any attachment closes everything:
// the caller reports it and relays in userspace.
func OpenMedia(opt MediaOptions) (*MediaPath, error) {
	if opt.PortMin == 0 || opt.PortMax < opt.PortMin {
		return nil, fmt.Errorf("media fast path: bad port range %d-%d", opt.PortMin, opt.PortMax)
	}
	if opt.MaxRoutes < 0 {
		return nil, fmt.Errorf("media fast path: negative MaxRoutes %d", opt.MaxRoutes)
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("media fast path: %w", err)
	}
	spec, err := loadMedia()
	if err != nil {
		return nil, fmt.Errorf("media fast path: load object: %w", err)
	}
	n := uint32(DefaultMediaRoutes)
	if opt.MaxRoutes > 0 {
		n = uint32(opt.MaxRoutes)
	}
	spec.Maps[mediaMapMediaRoutes].MaxEntries = n
	spec.Maps[mediaMapMediaStats].MaxEntries = n
	p := &MediaPath{log: log, egress: routeEgress}
	if err := spec.LoadAndAssign(&p.objs, nil); err != nil {
		return nil, fmt.Errorf("media fast path: load program: %w", err)
	}
	cfg := mediaSwMediaConfig{PortMin: opt.PortMin, PortMax: opt.PortMax}
	if err := p.objs.MediaConfig.Update(uint32(0), &cfg, ebpf.UpdateAny); err != nil {
		p.Close()
		return nil, fmt.Errorf("media fast path: config map: %w", err)
	}
	for _, name := range opt.Interfaces {
		if err := p.attach(name); err != nil {
			p.Close()
			return nil, err
		}
	}
	return p, nil
}

func (p *MediaPath) attach(name string) error {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return fmt.Errorf("media fast path: interface %s: %w", name, err)
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: p.objs.SipwallMedia, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return fmt.Errorf("media fast path: attach to %s (TC ingress, tcx): %w", name, err)
	}
	p.mu.Lock()
	p.links = append(p.links, l)
	p.attached = append(p.attached, name)
	p.mu.Unlock()
	p.log.Info("media fast path attached", "interface", name, "hook", "tc ingress")
	return nil
}

// Interfaces lists the interfaces the program is attached to.
func (p *MediaPath) Interfaces() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.attached)
}

// Program is the loaded program (for BPF_PROG_TEST_RUN).
func (p *MediaPath) Program() *ebpf.Program { return p.objs.SipwallMedia }

func mediaKey(ap netip.AddrPort) mediaSwMediaKey {
	return mediaSwMediaKey{Addr: mediaSwAddr{B: addr16(ap.Addr().Unmap())}, Port: ap.Port()}
}

func mediaAddr(a netip.Addr) mediaSwAddr { return mediaSwAddr{B: addr16(a.Unmap())} }

// Put installs or replaces the route of the socket local, after a route
// lookup for its destination. A new route's counters start at zero; a
// replaced route keeps them.
func (p *MediaPath) Put(local netip.AddrPort, r MediaRoute) error {
	if err := checkMediaRoute(local, r); err != nil {
		return err
	}
	e, err := p.egress(r.Src.Addr().Unmap(), r.Dst.Addr().Unmap())
	if err != nil {
		return fmt.Errorf("media fast path: route to %s: %w", r.Dst, err)
	}
	return p.put(local, r, e)
}

func (p *MediaPath) put(local netip.AddrPort, r MediaRoute, e MediaEgress) error {
	v := mediaSwMediaRoute{
		Peer: mediaAddr(r.Peer.Addr()), Src: mediaAddr(r.Src.Addr()), Dst: mediaAddr(r.Dst.Addr()),
		PeerPort: r.Peer.Port(), SrcPort: r.Src.Port(), DstPort: r.Dst.Port(),
		Expires: r.Expires,
	}
	if e.Local {
		v.Flags |= mediaRouteLocal
	} else {
		if e.MTU < 68 || !e.Nexthop.IsValid() || e.Nexthop.Unmap().Is4() != r.Dst.Addr().Unmap().Is4() {
			return fmt.Errorf("%w: egress %+v", ErrMediaRoute, e)
		}
		v.Ifindex, v.Nexthop, v.Mtu = e.Ifindex, mediaAddr(e.Nexthop), uint16(min(e.MTU, 65535))
	}
	k := mediaKey(local)
	if err := p.objs.MediaStats.Update(&k, &mediaSwMediaStats{}, ebpf.UpdateNoExist); err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
		return fmt.Errorf("media fast path: stats map: %w", err)
	}
	if err := p.objs.MediaRoutes.Update(&k, &v, ebpf.UpdateAny); err != nil {
		p.objs.MediaStats.Delete(&k)
		return fmt.Errorf("media fast path: routes map: %w", err)
	}
	return nil
}

// Delete removes the route of local and returns its last counters;
// removing one that is not there is no error.
func (p *MediaPath) Delete(local netip.AddrPort) (MediaStats, error) {
	k := mediaKey(local)
	if err := p.objs.MediaRoutes.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return MediaStats{}, fmt.Errorf("media fast path: routes map: %w", err)
	}
	var s mediaSwMediaStats
	if err := p.objs.MediaStats.Lookup(&k, &s); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return MediaStats{}, nil
		}
		return MediaStats{}, fmt.Errorf("media fast path: stats map: %w", err)
	}
	if err := p.objs.MediaStats.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return MediaStats{}, fmt.Errorf("media fast path: stats map: %w", err)
	}
	return MediaStats{Packets: s.Packets, Bytes: s.Bytes, LastSeen: s.LastSeen}, nil
}

// Stats returns the counters of local's route.
func (p *MediaPath) Stats(local netip.AddrPort) (MediaStats, error) {
	k := mediaKey(local)
	var s mediaSwMediaStats
	if err := p.objs.MediaStats.Lookup(&k, &s); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return MediaStats{}, ErrMediaNoRoute
		}
		return MediaStats{}, fmt.Errorf("media fast path: stats map: %w", err)
	}
	return MediaStats{Packets: s.Packets, Bytes: s.Bytes, LastSeen: s.LastSeen}, nil
}

// Counters sums the per-CPU decision counters.
func (p *MediaPath) Counters() (MediaCounters, error) {
	var c MediaCounters
	var per []uint64
	for r := range NumMediaReasons {
		if err := p.objs.MediaCounters.Lookup(uint32(r), &per); err != nil {
			return c, fmt.Errorf("media fast path: counters: %w", err)
		}
		for _, v := range per {
			c[r] += v
		}
	}
	return c, nil
}

// Close detaches the program from every interface and releases it and its
// maps: every route is gone, packets reach the userspace relay again.
func (p *MediaPath) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	p.links, p.attached = nil, nil
	errs = append(errs, p.objs.Close())
	return errors.Join(errs...)
}

// EnableRunStats makes the kernel time every BPF program run until the
// returned Closer is closed (it costs a little per run: for benchmarks).
func EnableRunStats() (io.Closer, error) {
	return ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
}

// RunStats returns how many times the program ran and for how long in
// all, counted while EnableRunStats was in force.
func (p *MediaPath) RunStats() (runs uint64, total time.Duration, err error) {
	s, err := p.objs.SipwallMedia.Stats()
	if err != nil {
		return 0, 0, err
	}
	return s.RunCount, s.Runtime, nil
}
