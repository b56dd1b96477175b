//go:build unix

package main

import (
	"log/slog"

	"github.com/sipwall/sipwall/sbc/config"
	"github.com/sipwall/sipwall/sbc/media"
)

// checkDescriptors raises the descriptor limit to what the media relay's
// port range can need (four descriptors per stream: the soft limit to the
// hard one, and beyond the hard one where the process may, as root) and,
// with the relay on, warns when the limit still leaves too few: beyond it
// new calls find no ports.
func checkDescriptors(cfg *config.Config, log *slog.Logger) {
	// Both sides' ranges (one pool when they share an address: a bound).
	relay := uint64(2 * (cfg.Media.PortMax - cfg.Media.PortMin + 1))
	const reserve = 1024 // listeners, connections, files
	need := uint64(0)
	if cfg.Media.Mode == config.MediaRelay {
		need = relay + reserve
	}
	limit, err := media.RaiseDescriptorLimit(need)
	if err != nil || cfg.Media.Mode != config.MediaRelay {
		return
	}
	if need > limit {
		log.Warn("the media relay's port range needs more descriptors than the limit leaves: calls beyond it get no relay ports",
			"component", "media", "descriptor_limit", limit, "relay_sockets_max", relay, "streams_max", (limit-min(limit, reserve))/4)
	}
}
