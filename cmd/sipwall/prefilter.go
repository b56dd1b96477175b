package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipwall/sipwall/bpf"
	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/ban"
	"github.com/sipwall/sipwall/sbc/config"
	"github.com/sipwall/sipwall/sbc/decision"
	"github.com/sipwall/sipwall/sbc/upstream"
)

// prefilter is the packet prefilter: the XDP program when it is attached,
// otherwise the Go model of the same decision run by the listeners on each
// datagram and connection. Bans and verified sources go to both, so a
// fallback finds the model current.
type prefilter struct {
	conf  config.Prefilter
	model *bpf.Model
	xdp   atomic.Pointer[bpf.Filter]
	// userspace is true while the model judges in the listeners.
	userspace atomic.Bool
	// verifiedTTL is prefilter.verified_ttl (a reload may change it).
	verifiedTTL atomic.Int64
	log         *slog.Logger
	// banMu orders Ban and Unban with the copy of the ban list into a
	// newly attached program, so neither is lost or undone by the copy.
	banMu sync.Mutex
	// decisions gets the userspace drops, at most dropRecords a second
	// (a flood must not turn into work on the log).
	decisions  *decision.Log
	dropSecond atomic.Int64
	dropN      atomic.Int32
}

// dropRecords bounds the prefilter drops written to the decision log per
// second; the decision log coalesces repeats from one source besides.
const dropRecords = 20

func (p *prefilter) recordDrop(src netip.Addr, r bpf.Reason, c bpf.Class) {
	if p.decisions == nil {
		return
	}
	now := time.Now().Unix()
	if sec := p.dropSecond.Load(); sec != now {
		if p.dropSecond.CompareAndSwap(sec, now) {
			p.dropN.Store(0)
		}
	}
	if p.dropN.Add(1) > dropRecords {
		return
	}
	p.decisions.Add(decision.Entry{Layer: "prefilter", Verdict: "dropped", Why: r.String() + " (" + c.String() + ")", Source: src.Unmap()})
}

// newPrefilter builds the model from the prefilter section; nil with mode
// off. Ports and allow-list come with start, once the listeners are bound.
func newPrefilter(cfg *config.Config, log *slog.Logger) (*prefilter, error) {
	c := cfg.Prefilter
	if c.Mode == config.PrefilterOff {
		return nil, nil
	}
	bc, err := bpfConfig(cfg, nil, nil)
	if err != nil {
		return nil, err
	}
	m, err := bpf.NewModel(bc)
	if err != nil {
		return nil, cfg.KeyError("prefilter", err)
	}
	p := &prefilter{conf: c, model: m, log: log.With("component", "prefilter")}
	p.userspace.Store(true)
	p.verifiedTTL.Store(int64(c.VerifiedTTL))
	return p, nil
}

// bpfConfig turns the prefilter section, the bound listeners and the
// always-allowed networks into the prefilter's configuration.
func bpfConfig(cfg *config.Config, listeners []*sbc.Listener, allow []netip.Prefix) (bpf.Config, error) {
	c := cfg.Prefilter
	out := bpf.Config{Observe: c.Observe, VerifiedShare: c.VerifiedShare, Allow: allow}
	for _, l := range listeners {
		port := l.Bound.Port()
		switch l.Spec.Transport {
		case "udp":
			out.UDPPorts = appendPort(out.UDPPorts, port)
		case "tcp":
			out.TCPPorts = appendPort(out.TCPPorts, port)
		}
	}
	for i, s := range c.Allow {
		p, err := config.ParsePrefix(s)
		if err != nil {
			return out, cfg.KeyError(fmt.Sprintf("prefilter.allow[%d]", i), err)
		}
		out.Allow = append(out.Allow, p)
	}
	for i, s := range c.Deny {
		p, err := config.ParsePrefix(s)
		if err != nil {
			return out, cfg.KeyError(fmt.Sprintf("prefilter.deny[%d]", i), err)
		}
		out.Deny = append(out.Deny, p)
	}
	r := c.Rates
	for cl, rt := range map[bpf.Class]config.Rate{
		bpf.ClassRequest: r.Request, bpf.ClassResponse: r.Response, bpf.ClassKeepalive: r.Keepalive,
		bpf.ClassStun: r.Stun, bpf.ClassJunk: r.Junk, bpf.ClassSyn: r.Syn,
	} {
		out.Source[cl] = bpf.Limit{Rate: float64(rt.Rate), Burst: rt.Burst}
	}
	cp := c.Caps
	for cl, v := range map[bpf.Class]int{
		bpf.ClassRequest: cp.Request, bpf.ClassResponse: cp.Response, bpf.ClassKeepalive: cp.Keepalive,
		bpf.ClassStun: cp.Stun, bpf.ClassJunk: cp.Junk, bpf.ClassSyn: cp.Syn,
	} {
		out.Cap[cl] = uint64(v)
	}
	return out, nil
}

func appendPort(ports []uint16, p uint16) []uint16 {
	for _, q := range ports {
		if q == p {
			return ports
		}
	}
	return append(ports, p)
}

// allowed lists the networks the prefilter never limits: auth.trusted, the
// upstreams and the outbound trunk.
func allowed(cfg *config.Config, targets []upstream.Target, outbound *upstream.Target) []netip.Prefix {
	var out []netip.Prefix
	for _, t := range cfg.Auth.Trusted {
		for _, c := range t.CIDRs {
			if p, err := config.ParsePrefix(c); err == nil {
				out = append(out, p)
			}
		}
	}
	if outbound != nil {
		targets = append(targets, *outbound)
	}
	for _, t := range targets {
		a := t.Addr.Addr().Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out
}

// start configures the prefilter for the bound listeners and, in mode xdp,
// loads and attaches the XDP program. A failure to attach is reported and
// leaves the userspace limiter in charge; the bans in force (from bans,
// read once the program is in place) are copied into the kernel's map.
func (p *prefilter) start(cfg *config.Config, listeners []*sbc.Listener, allow []netip.Prefix, bans func() []ban.Entry) error {
	bc, err := bpfConfig(cfg, listeners, allow)
	if err != nil {
		return err
	}
	if err := p.model.Configure(bc); err != nil {
		return cfg.KeyError("prefilter", err)
	}
	if p.conf.Mode != config.PrefilterXDP {
		p.log.Info("userspace prefilter on", "udp_ports", bc.UDPPorts, "tcp_ports", bc.TCPPorts)
		return nil
	}
	// Bans and unbans wait while the program loads, then the list is read
	// and copied: none is lost, none undone.
	p.banMu.Lock()
	defer p.banMu.Unlock()
	f, err := bpf.Open(bpf.Options{
		Interfaces: p.conf.Interfaces, Generic: p.conf.Generic, PinPath: p.conf.PinPath,
		Config: bc, Log: p.log,
	})
	if err != nil {
		p.log.Error("XDP prefilter not attached; the userspace limiter runs instead", "interfaces", p.conf.Interfaces, "error", err)
		return nil
	}
	for _, e := range bans() {
		if err := f.Ban(e.Prefix, e.Until); err != nil {
			p.log.Warn("ban not copied to the XDP map", "prefix", e.Prefix, "error", err)
		}
	}
	p.xdp.Store(f)
	p.userspace.Store(false)
	return nil
}

// configure puts a new configuration in force in the model and, when
// attached, the XDP program's maps (no reload of the program).
func (p *prefilter) configure(bc bpf.Config, verifiedTTL time.Duration) {
	if err := p.model.Configure(bc); err != nil {
		p.log.Error("prefilter configuration refused", "error", err)
		return
	}
	p.verifiedTTL.Store(int64(verifiedTTL))
	if f := p.xdp.Load(); f != nil {
		if err := f.Configure(bc); err != nil {
			p.log.Error("XDP maps not updated", "error", err)
		}
	}
	p.log.Info("prefilter configuration updated")
}

// admit is the listeners' hook: the model's verdict while no XDP program
// is attached.
func (p *prefilter) admit(src netip.Addr, data []byte) bool {
	if !p.userspace.Load() {
		return true
	}
	c := bpf.ClassSyn
	if data != nil {
		c = bpf.Classify(data)
	}
	ok, r := p.model.Admit(src, c, bpf.MonoNow())
	if !ok {
		p.recordDrop(src, r, c)
	}
	return ok
}

// Ban and Unban make the prefilter the ban store's Sink.
func (p *prefilter) Ban(pr netip.Prefix, until time.Time) error {
	p.banMu.Lock()
	defer p.banMu.Unlock()
	if err := p.model.Ban(pr, bpf.Expiry(until)); err != nil {
		return err
	}
	if f := p.xdp.Load(); f != nil {
		return f.Ban(pr, until)
	}
	return nil
}

func (p *prefilter) Unban(pr netip.Prefix) error {
	p.banMu.Lock()
	defer p.banMu.Unlock()
	if err := p.model.Unban(pr); err != nil {
		return err
	}
	if f := p.xdp.Load(); f != nil {
		return f.Unban(pr)
	}
	return nil
}

// verified marks a source that authenticated, for the share of the class
// caps kept for known sources.
func (p *prefilter) verified(a netip.Addr) {
	until := time.Now().Add(time.Duration(p.verifiedTTL.Load()))
	p.model.Verify(a, bpf.Expiry(until))
	if f := p.xdp.Load(); f != nil {
		if err := f.Verify(a, until); err != nil {
			p.log.Debug("verified source not written to the XDP map", "error", err)
		}
	}
}

// counters are the decisions so far, from the kernel when attached.
func (p *prefilter) counters() (bpf.Counters, string) {
	if f := p.xdp.Load(); f != nil {
		if c, err := f.Counters(); err == nil {
			return c, "xdp"
		}
	}
	return p.model.Counters(), "userspace"
}

// run sweeps expired entries from the kernel's maps and logs what was
// dropped, once a minute, until ctx ends.
func (p *prefilter) run(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	var last uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if f := p.xdp.Load(); f != nil {
			f.Sweep()
		}
		c, where := p.counters()
		if d := c.TotalDropped(); d != last {
			last = d
			args := []any{"where", where, "dropped", d}
			for r := bpf.ReasonBan; r < bpf.NumReasons; r++ {
				if c.Reasons[r] > 0 {
					args = append(args, r.String(), c.Reasons[r])
				}
			}
			p.log.Info("prefilter drops", args...)
		}
	}
}

// close detaches the XDP program; its pinned maps stay for the next start.
// A nil prefilter does nothing.
func (p *prefilter) close() {
	if p == nil {
		return
	}
	if f := p.xdp.Swap(nil); f != nil {
		if err := f.Close(); err != nil {
			p.log.Warn("XDP detach", "error", err)
		}
	}
}
