package main

import (
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/config"
	"github.com/sipwall/sipwall/sbc/media"
	"github.com/sipwall/sipwall/sbc/upstream"
	"github.com/sipwall/sipwall/topology"
)

// buildTopology makes the topology policy: the configured inside networks
// and names, plus the upstreams' addresses, and the sanitisers toward the
// outside, reporting to report (the leak report).
func buildTopology(cfg config.Topology, pool func() *upstream.Pool, report *topology.Report) (*topology.Policy, error) {
	tc := topology.Config{
		UserAgent:     cfg.UserAgent,
		ToOutside:     cfg.ToOutside,
		ToInside:      cfg.ToInside,
		InternalNames: cfg.InternalNames,
		Guard:         cfg.Guard,
		KeepReasons:   cfg.KeepReasons,
		Text: map[string]string{
			"reason": cfg.TextHeaders.Reason, "warning": cfg.TextHeaders.Warning,
			"subject": cfg.TextHeaders.Subject, "organization": cfg.TextHeaders.Organization,
		},
		DisplayNames:  cfg.DisplayNames,
		SDPAttributes: cfg.SDPAttributes,
		ProductWords:  cfg.ProductWords,
		Report:        report,
	}
	for i, n := range cfg.InternalNets {
		p, err := config.ParsePrefix(n)
		if err != nil {
			return nil, fmt.Errorf("topology.internal_nets[%d]: %w", i, err)
		}
		tc.InternalNets = append(tc.InternalNets, p)
	}
	return topology.New(tc, func(a netip.Addr) bool {
		p := pool()
		if p == nil {
			return false
		}
		_, ok := p.Lookup(a)
		return ok
	})
}

// outboundFilter is the server's Outbound filter: the topology policy's
// last step for every message leaving toward the outside (the RFC reason
// phrase, then the guard; the leak report logs what it finds).
func outboundFilter(topo *topology.Policy) func(netip.AddrPort, []byte) ([]byte, bool) {
	return func(_ netip.AddrPort, msg []byte) ([]byte, bool) { return topo.Outbound(msg) }
}

// buildMedia makes the media relay from the media section, deriving the
// bind and advertised addresses from the listeners when not configured.
func buildMedia(cfg config.Media, peers map[string]string, ls []*sbc.Listener, topo *topology.Policy, report *topology.Report, fp media.FastPath, log *slog.Logger) (*media.Manager, error) {
	if cfg.Mode != config.MediaRelay {
		return nil, nil
	}
	ext, extAdv, okExt := sideAddrs(ls, sbc.External)
	in, inAdv, okIn := sideAddrs(ls, sbc.Internal)
	if !okIn {
		in, inAdv = ext, extAdv
	}
	if !okExt {
		return nil, fmt.Errorf("media: no external UDP listener to take the relay address from; set media.external_ip")
	}
	set := func(dst *netip.Addr, s string) {
		if s != "" {
			*dst = netip.MustParseAddr(s) // validated by config
		}
	}
	set(&ext, cfg.ExternalIP)
	set(&in, cfg.InternalIP)
	if cfg.ExternalIP != "" {
		extAdv = ext
	}
	if cfg.InternalIP != "" {
		inAdv = in
	}
	set(&extAdv, cfg.AdvertiseExternal)
	set(&inAdv, cfg.AdvertiseInternal)
	if !extAdv.IsValid() || extAdv.IsUnspecified() || !inAdv.IsValid() || inAdv.IsUnspecified() {
		return nil, fmt.Errorf("media: cannot tell which address to write in SDP (listeners bind a wildcard); set media.advertise_external and media.advertise_internal")
	}
	return media.New(media.Config{
		PortMin:           cfg.PortMin,
		PortMax:           cfg.PortMax,
		External:          ext,
		Internal:          in,
		AdvertiseExternal: extAdv,
		AdvertiseInternal: inAdv,
		Inactivity:        cfg.Inactivity.D(),
		MaxSessions:       cfg.MaxSessions,
		Logger:            log,
		// RTCP toward the outside is rewritten by the relay, reported
		// and guarded like SIP.
		OnRTCP:    report.RTCP,
		GuardRTCP: topo.GuardRTCP,
		// Latched RTP in the kernel (media.fastpath); nil: userspace.
		FastPath: fp,
		Encryption: media.Encryption{
			Outside: cfg.Encryption.Outside, Inside: cfg.Encryption.Inside, Require: cfg.Encryption.Require,
			Peers: peers,
		},
	})
}

// peerEncryption is the media encryption of the trusted peers that have
// a mode of their own, by name.
func peerEncryption(trusted []config.Trusted) map[string]string {
	m := map[string]string{}
	for _, t := range trusted {
		if t.Encryption != "" {
			m[t.Name] = t.Encryption
		}
	}
	return m
}

// sideAddrs returns the bind address of the first UDP listener of a side
// and the address it advertises (when that is an IP).
func sideAddrs(ls []*sbc.Listener, side sbc.Side) (bind, adv netip.Addr, ok bool) {
	for _, l := range ls {
		if l.Spec.Transport != "udp" || l.Spec.Side != side {
			continue
		}
		bind = l.Bound.Addr().Unmap()
		if ip, ok := netip.AddrFromSlice(l.Advertise.IP); ok && l.Advertise.IP != nil {
			adv = ip.Unmap()
		} else if a, err := netip.ParseAddr(l.Advertise.Hostname); err == nil {
			adv = a.Unmap()
		} else if !bind.IsUnspecified() {
			adv = bind
		}
		return bind, adv, true
	}
	return netip.Addr{}, netip.Addr{}, false
}
