//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// pinned are the maps kept on the bpf filesystem so a restart keeps their
// state: bans, limiter state, verified sources, counters. The config, the
// ports and the allow/deny lists are rewritten from the configuration at
// every start, and the per-CPU windows are a second long.
var pinned = []string{xdpMapBans, xdpMapBanNets, xdpMapSources, xdpMapVerified, xdpMapCounters, xdpMapClassCounters}

// Open loads the prefilter program and its maps, writes opt.Config into
// them and attaches the program to opt.Interfaces. With no interfaces it
// loads without attaching (the program can still be run with Program().Run).
// An error from any attachment closes everything: the caller reports it and
// runs with the userspace limiter.
func Open(opt Options) (*Filter, error) {
	if err := opt.Config.Validate(); err != nil {
		return nil, err
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("xdp: %w", err)
	}
	spec, err := loadXdp()
	if err != nil {
		return nil, fmt.Errorf("xdp: load object: %w", err)
	}
	copts := &ebpf.CollectionOptions{}
	if opt.PinPath != "" {
		if err := ensureBPFFS(opt.PinPath); err != nil {
			return nil, err
		}
		for _, name := range pinned {
			spec.Maps[name].Pinning = ebpf.PinByName
		}
		copts.Maps.PinPath = opt.PinPath
	}
	var objs xdpObjects
	err = spec.LoadAndAssign(&objs, copts)
	if errors.Is(err, ebpf.ErrMapIncompatible) && opt.PinPath != "" {
		// A map pinned by another version of the program: its state cannot
		// be read with this layout, so it starts afresh.
		log.Warn("xdp: pinned maps from another version replaced", "dir", opt.PinPath, "error", err)
		for _, name := range pinned {
			os.Remove(filepath.Join(opt.PinPath, name))
		}
		err = spec.LoadAndAssign(&objs, copts)
	}
	if err != nil {
		return nil, fmt.Errorf("xdp: load program: %w", err)
	}
	f := &Filter{objs: objs, log: log, pinPath: opt.PinPath}
	if err := f.Configure(opt.Config); err != nil {
		f.Close()
		return nil, err
	}
	for _, name := range opt.Interfaces {
		if err := f.attach(name, opt.Generic); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// Filter is the loaded XDP prefilter. Safe for concurrent use.
type Filter struct {
	objs    xdpObjects
	log     *slog.Logger
	pinPath string

	mu       sync.Mutex
	links    []link.Link
	attached []Attachment
	cfg      Config
	closed   bool
}

func (f *Filter) attach(name string, generic bool) error {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return fmt.Errorf("xdp: interface %s: %w", name, err)
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: f.objs.SipwallXdp, Interface: ifc.Index, Flags: link.XDPDriverMode})
	mode := "native"
	if err != nil && generic {
		f.log.Warn("xdp: native attach failed, using generic mode", "interface", name, "error", err)
		l, err = link.AttachXDP(link.XDPOptions{Program: f.objs.SipwallXdp, Interface: ifc.Index, Flags: link.XDPGenericMode})
		mode = "generic"
	}
	if err != nil {
		return fmt.Errorf("xdp: attach to %s: %w", name, err)
	}
	f.mu.Lock()
	f.links = append(f.links, l)
	f.attached = append(f.attached, Attachment{Interface: name, Mode: mode})
	f.mu.Unlock()
	f.log.Info("xdp prefilter attached", "interface", name, "mode", mode)
	return nil
}

// Attachments lists the interfaces the program is attached to.
func (f *Filter) Attachments() []Attachment {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.attached)
}

// Program is the loaded XDP program (for BPF_PROG_TEST_RUN).
func (f *Filter) Program() *ebpf.Program { return f.objs.SipwallXdp }

// Configure writes cfg into the maps of the running program: no reload, no
// moment without a filter. Entries of the port and allow/deny maps that cfg
// no longer names are removed.
func (f *Filter) Configure(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	raw := cfg.raw()
	var kc xdpSwConfig
	for i := range NumClasses {
		kc.Source[i] = xdpSwLimit{IntervalNs: raw.source[i].interval, ToleranceNs: raw.source[i].tolerance}
		kc.Cap[i] = raw.cap[i]
		kc.CapUnverified[i] = raw.capUnverified[i]
	}
	kc.Flags = raw.flags
	if err := f.objs.Config.Update(uint32(0), &kc, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("xdp: config map: %w", err)
	}
	if err := syncPorts(f.objs.Ports, cfg.portMap()); err != nil {
		return err
	}
	allow := map[xdpSwLpmKey]uint8{}
	for _, p := range cfg.Allow {
		p, _ = normPrefix(p) // Validate checked it
		allow[lpmKey(p)] = 1
	}
	if err := syncLPM(f.objs.Allow, allow); err != nil {
		return fmt.Errorf("xdp: allow map: %w", err)
	}
	deny := map[xdpSwLpmKey]uint64{}
	for _, p := range cfg.Deny {
		p, _ = normPrefix(p)
		deny[lpmKey(p)] = 0
	}
	if err := syncLPM(f.objs.Deny, deny); err != nil {
		return fmt.Errorf("xdp: deny map: %w", err)
	}
	f.cfg = cfg
	return nil
}

func syncPorts(m *ebpf.Map, want map[uint16]uint8) error {
	var k uint16
	var v uint8
	var stale []uint16
	it := m.Iterate()
	for it.Next(&k, &v) {
		if w, ok := want[k]; !ok || w != v {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("xdp: ports map: %w", err)
	}
	for _, k := range stale {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("xdp: ports map: %w", err)
		}
	}
	for k, v := range want {
		if err := m.Update(k, v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("xdp: ports map: %w", err)
		}
	}
	return nil
}

func syncLPM[V comparable](m *ebpf.Map, want map[xdpSwLpmKey]V) error {
	var k xdpSwLpmKey
	var v V
	var stale []xdpSwLpmKey
	it := m.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	for _, k := range stale {
		if err := m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	for k, v := range want {
		if err := m.Update(&k, v, ebpf.UpdateAny); err != nil {
			return err
		}
	}
	return nil
}

// lpmKey is the trie key of a normalised prefix (normPrefix).
func lpmKey(p netip.Prefix) xdpSwLpmKey {
	return xdpSwLpmKey{Prefixlen: uint32(lpmBits(p)), Addr: xdpSwAddr{B: addr16(p.Addr())}}
}

// MonoNow is the kernel's monotonic clock in nanoseconds, the clock of the
// expiries in the maps. It is read once with clock_gettime and then
// advanced with Go's monotonic clock (CLOCK_MONOTONIC as well, through the
// vDSO), which costs no system call.
func MonoNow() uint64 { return monoBase + uint64(time.Since(monoStart)) }

var monoStart, monoBase = func() (time.Time, uint64) {
	var ts unix.Timespec
	start := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return start, 0
	}
	return start, uint64(ts.Nano())
}()

// Ban drops every packet from p until the given time (zero: for ever). It
// implements the ban store's Sink.
func (f *Filter) Ban(p netip.Prefix, until time.Time) error {
	p, err := normPrefix(p)
	if err != nil {
		return err
	}
	exp := Expiry(until)
	if k, ok := hashBanKey(p); ok {
		return f.objs.Bans.Update(&xdpSwBanKey{Addr: xdpSwAddr{B: k.addr}, Plen: k.plen}, exp, ebpf.UpdateAny)
	}
	k := lpmKey(p)
	return f.objs.BanNets.Update(&k, exp, ebpf.UpdateAny)
}

// Unban lifts a ban; lifting one that is not there is no error.
func (f *Filter) Unban(p netip.Prefix) error {
	p, err := normPrefix(p)
	if err != nil {
		return err
	}
	if k, ok := hashBanKey(p); ok {
		err = f.objs.Bans.Delete(&xdpSwBanKey{Addr: xdpSwAddr{B: k.addr}, Plen: k.plen})
	} else {
		k := lpmKey(p)
		err = f.objs.BanNets.Delete(&k)
	}
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	return err
}

// Verify marks a source as authenticated until the given time, giving it
// the share of the class caps kept for verified sources.
func (f *Filter) Verify(a netip.Addr, until time.Time) error {
	return f.objs.Verified.Update(&xdpSwAddr{B: addr16(a.Unmap())}, Expiry(until), ebpf.UpdateAny)
}

// Bans lists the ban entries in the maps with their monotonic expiry.
func (f *Filter) Bans() (map[netip.Prefix]uint64, error) {
	out := map[netip.Prefix]uint64{}
	var k xdpSwBanKey
	var v uint64
	it := f.objs.Bans.Iterate()
	for it.Next(&k, &v) {
		a := netip.AddrFrom16(k.Addr.B)
		out[netip.PrefixFrom(a.Unmap(), prefixBits(a, int(k.Plen)))] = v
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	var lk xdpSwLpmKey
	it = f.objs.BanNets.Iterate()
	for it.Next(&lk, &v) {
		a := netip.AddrFrom16(lk.Addr.B)
		out[netip.PrefixFrom(a.Unmap(), prefixBits(a, int(lk.Prefixlen)))] = v
	}
	return out, it.Err()
}

func prefixBits(a netip.Addr, bits16 int) int {
	if a.Is4In6() {
		return bits16 - 96
	}
	return bits16
}

// Sweep deletes bans and verified entries that have expired (the program
// ignores them already; this returns their room). It returns how many went.
func (f *Filter) Sweep() int {
	now := MonoNow()
	n := 0
	var k xdpSwBanKey
	var v uint64
	var old []xdpSwBanKey
	it := f.objs.Bans.Iterate()
	for it.Next(&k, &v) {
		if v != 0 && v <= now {
			old = append(old, k)
		}
	}
	for _, k := range old {
		if f.objs.Bans.Delete(&k) == nil {
			n++
		}
	}
	var lk xdpSwLpmKey
	var oldNets []xdpSwLpmKey
	it = f.objs.BanNets.Iterate()
	for it.Next(&lk, &v) {
		if v != 0 && v <= now {
			oldNets = append(oldNets, lk)
		}
	}
	for _, k := range oldNets {
		if f.objs.BanNets.Delete(&k) == nil {
			n++
		}
	}
	var a xdpSwAddr
	var oldAddrs []xdpSwAddr
	it = f.objs.Verified.Iterate()
	for it.Next(&a, &v) {
		if v != 0 && v <= now {
			oldAddrs = append(oldAddrs, a)
		}
	}
	for _, a := range oldAddrs {
		if f.objs.Verified.Delete(&a) == nil {
			n++
		}
	}
	return n
}

// Counters sums the per-CPU counters.
func (f *Filter) Counters() (Counters, error) {
	var c Counters
	var per []uint64
	for r := range NumReasons {
		if err := f.objs.Counters.Lookup(uint32(r), &per); err != nil {
			return c, fmt.Errorf("xdp: counters: %w", err)
		}
		for _, v := range per {
			c.Reasons[r] += v
		}
	}
	for cl := range NumClasses {
		for i, dst := range []*uint64{&c.Passed[cl], &c.Dropped[cl]} {
			if err := f.objs.ClassCounters.Lookup(uint32(2*int(cl)+i), &per); err != nil {
				return c, fmt.Errorf("xdp: class counters: %w", err)
			}
			for _, v := range per {
				*dst += v
			}
		}
	}
	return c, nil
}

// Close detaches the program from every interface and releases it. Pinned
// maps stay on the bpf filesystem for the next start; Unpin removes them.
func (f *Filter) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	var errs []error
	for _, l := range f.links {
		errs = append(errs, l.Close())
	}
	f.links, f.attached = nil, nil
	errs = append(errs, f.objs.Close())
	return errors.Join(errs...)
}

// Unpin removes the pinned maps (their state is lost at the next start).
func Unpin(dir string) error {
	var errs []error
	for _, name := range pinned {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ensureBPFFS makes dir exist on a bpf filesystem, mounting one at dir when
// no bpf filesystem holds it.
func ensureBPFFS(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("xdp: pin path: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("xdp: pin path: %w", err)
	}
	if st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("xdp: pin path %s is not on a bpf filesystem and mounting one failed: %w", dir, err)
	}
	return nil
}
