//go:build !linux

package bpf

import (
	"net/netip"
	"time"
)

// Open fails: the XDP prefilter needs Linux. The userspace limiter (Model)
// works everywhere.
func Open(Options) (*Filter, error) { return nil, ErrNotSupported }

// Filter is the XDP prefilter; on this platform none can be opened.
type Filter struct{}

func (*Filter) Configure(Config) error             { return ErrNotSupported }
func (*Filter) Ban(netip.Prefix, time.Time) error  { return ErrNotSupported }
func (*Filter) Unban(netip.Prefix) error           { return ErrNotSupported }
func (*Filter) Verify(netip.Addr, time.Time) error { return ErrNotSupported }
func (*Filter) Counters() (Counters, error)        { return Counters{}, ErrNotSupported }
func (*Filter) Attachments() []Attachment          { return nil }
func (*Filter) Sweep() int                         { return 0 }
func (*Filter) Close() error                       { return nil }
func Unpin(string) error                           { return ErrNotSupported }
func MonoNow() uint64                              { return uint64(time.Since(start)) }

var start = time.Now()
