package main

import (
	"log/slog"

	"github.com/sipwall/sipwall/bpf"
	"github.com/sipwall/sipwall/sbc/config"
	"github.com/sipwall/sipwall/sbc/media"
)

// mediaFast is the media relay's kernel fast path (media.fastpath): the
// TC program of bpf/media.c on prefilter.interfaces, or nothing.
type mediaFast struct {
	path *bpf.MediaPath // nil: not wanted, or not attached
	// wanted: media.fastpath asked for it (tc, or auto with XDP), so its
	// absence is a failure to report (sipwall_media_fastpath_up 0).
	wanted bool
}

// openMediaFast opens the fast path as media.fastpath says: tc always,
// auto when prefilter.mode is xdp (BPF is in use on those NICs already),
// off never; and only with the relay on. When it cannot load or attach it
// says so at error level and the relay carries every packet in userspace.
func openMediaFast(cfg *config.Config, log *slog.Logger) *mediaFast {
	c := cfg.Media
	mf := &mediaFast{}
	if c.Mode != config.MediaRelay || c.FastPath == config.MediaFastOff ||
		c.FastPath == config.MediaFastAuto && cfg.Prefilter.Mode != config.PrefilterXDP {
		return mf
	}
	mf.wanted = true
	ifs := cfg.Prefilter.Interfaces
	p, err := bpf.OpenMedia(bpf.MediaOptions{
		Interfaces: ifs,
		PortMin:    uint16(c.PortMin),
		PortMax:    uint16(c.PortMax),
		// A route per RTP socket: one per port pair and side, so no more
		// than the range has ports.
		MaxRoutes: min(c.PortMax-c.PortMin+1, bpf.DefaultMediaRoutes),
		Log:       log.With("component", "media"),
	})
	if err != nil {
		log.Error("media fast path not attached; the relay carries media in userspace", "component", "media", "interfaces", ifs, "error", err)
		return mf
	}
	mf.path = p
	return mf
}

// fastPath is what media.Config takes: nil, not a nil pointer in an
// interface, when there is none.
func (f *mediaFast) fastPath() media.FastPath {
	if f == nil || f.path == nil {
		return nil
	}
	return f.path
}

// up is sipwall_media_fastpath_up: 1 attached, 0 wanted but not attached;
// ok false when not wanted (no series).
func (f *mediaFast) up() (v float64, ok bool) {
	switch {
	case f == nil || !f.wanted:
		return 0, false
	case f.path != nil:
		return 1, true
	}
	return 0, true
}

// close detaches the program; its routes go with it (after the relay has
// removed them). A nil mediaFast does nothing.
func (f *mediaFast) close() {
	if f != nil && f.path != nil {
		f.path.Close()
	}
}
