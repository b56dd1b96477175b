//go:build unix

package main

import (
	"log/slog"
	"syscall"

	"github.com/sipwall/sipwall/sbc/config"
)

// checkDescriptors raises the descriptor limit to its hard limit (the Go
// runtime does so at start on Linux; this makes it so wherever Setrlimit
// works) and, with the media relay on, warns when the relay's port range
// could need more descriptors than the limit leaves: it binds a socket per
// port of its range and side at most (four per stream), and beyond the
// limit new calls find no ports.
func checkDescriptors(cfg *config.Config, log *slog.Logger) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return
	}
	if l.Cur < l.Max {
		raised := l
		raised.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			l = raised
		}
	}
	if cfg.Media.Mode != config.MediaRelay {
		return
	}
	// Both sides' ranges (one pool when they share an address: a bound).
	relay := uint64(2 * (cfg.Media.PortMax - cfg.Media.PortMin + 1))
	const reserve = 1024 // listeners, connections, files
	if relay+reserve > l.Cur {
		log.Warn("the media relay's port range needs more descriptors than the limit leaves: calls beyond it get no relay ports",
			"component", "media", "descriptor_limit", l.Cur, "relay_sockets_max", relay, "streams_max", (l.Cur-min(l.Cur, reserve))/4)
	}
}
