package bpf

import (
	"errors"
	"log/slog"
	"time"
)

// ErrNotSupported is returned where XDP is not available (not Linux).
var ErrNotSupported = errors.New("xdp: not supported on this platform")

// Options configure Open.
type Options struct {
	// Interfaces the program is attached to (none: loaded only).
	Interfaces []string
	// Generic allows the generic (skb) mode when native attach fails.
	Generic bool
	// PinPath is a directory on the bpf filesystem where the state maps are
	// pinned so a restart keeps them ("": not pinned). It is mounted as a
	// bpf filesystem when it is not on one.
	PinPath string
	// Config is what the program enforces.
	Config Config
	Log    *slog.Logger
}

// Attachment is an interface the program is attached to and how.
type Attachment struct {
	Interface string
	Mode      string // "native" or "generic"
}

// Expiry converts a wall-clock end to the maps' monotonic expiry; the zero
// time means never (0). An end already past gives 1, long expired.
func Expiry(until time.Time) uint64 {
	if until.IsZero() {
		return 0
	}
	d := time.Until(until)
	if d <= 0 {
		return 1
	}
	return MonoNow() + uint64(d)
}
