//go:build !linux

package bpf

import (
	"io"
	"log/slog"
	"net/netip"
	"time"
)

// DefaultMediaRoutes is the capacity of the route map when
// MediaOptions.MaxRoutes is 0.
const DefaultMediaRoutes = 65536

// MediaOptions configure OpenMedia.
type MediaOptions struct {
	Interfaces       []string
	PortMin, PortMax uint16
	MaxRoutes        int
	Log              *slog.Logger
}

// MediaPath is the media fast path; on this platform none can be opened.
type MediaPath struct{}

// OpenMedia fails: the media fast path needs Linux (TC and BPF). The
// userspace relay carries the media.
func OpenMedia(MediaOptions) (*MediaPath, error) { return nil, ErrNotSupported }

func (*MediaPath) Put(netip.AddrPort, MediaRoute) error { return ErrNotSupported }
func (*MediaPath) Delete(netip.AddrPort) (MediaStats, error) {
	return MediaStats{}, ErrNotSupported
}
func (*MediaPath) Stats(netip.AddrPort) (MediaStats, error) { return MediaStats{}, ErrNotSupported }
func (*MediaPath) Counters() (MediaCounters, error)         { return MediaCounters{}, ErrNotSupported }
func (*MediaPath) Interfaces() []string                     { return nil }
func (*MediaPath) Close() error                             { return nil }

// EnableRunStats fails: no BPF here.
func EnableRunStats() (io.Closer, error) { return nil, ErrNotSupported }

func (*MediaPath) RunStats() (uint64, time.Duration, error) { return 0, 0, ErrNotSupported }
