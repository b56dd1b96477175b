package media

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipwall/sipwall/bpf"
	"github.com/sipwall/sipwall/sbc"
)

// FastPath forwards latched RTP in the kernel: *bpf.MediaPath (the TC
// program), or *bpf.MediaModel in tests. The relay installs a route per
// RTP socket once the stream has latched on both sides, replaces it when
// a side re-latches, renews its lease while the call lasts and removes it
// when the stream stops or the call ends. Whatever the kernel does not
// forward (RTCP, STUN, DTLS, other sources, an expired lease) reaches the
// relay's sockets as before.
type FastPath interface {
	Put(local netip.AddrPort, r bpf.MediaRoute) error
	Delete(local netip.AddrPort) (bpf.MediaStats, error)
	Stats(local netip.AddrPort) (bpf.MediaStats, error)
}

// fastLease is how long a route forwards without being renewed: Run
// renews it at half-time, and a packet that reaches the relay on a
// stream whose route is due renews it too. If sipwall stops renewing
// (stuck, or its state lost), the kernel stops forwarding within a lease.
// A variable for tests.
var fastLease = 60 * time.Second

// fastState is a stream's routes in the kernel. Guarded by mu, except
// the atomics, which the readers check without it.
type fastState struct {
	mu sync.Mutex
	on atomic.Bool // routes installed
	// peers are the latched RTP peers the routes were made from; failed,
	// the peers whose installation failed (not tried again until a side
	// latches anew).
	peers, failed [2]*peerState
	leaseEnd      atomic.Int64 // MonoNow of the lease's end
	// done are the counters of removed routes, by the side the packets
	// arrived on.
	done [2]bpf.MediaStats
}

// fastLocal is the relay's RTP socket of a side as the kernel sees it.
func (st *stream) fastLocal(side int) netip.AddrPort {
	return netip.AddrPortFrom(st.m.pools[side].addr, uint16(st.port[side]))
}

// fastSync brings the stream's kernel routes in line with its state: both
// RTP peers latched and the stream running → routes from those peers
// (replaced when a peer changed, renewed when renew and the lease is past
// half-time); otherwise no routes. Safe from any goroutine.
func (st *stream) fastSync(renew bool) {
	fp := st.m.cfg.FastPath
	if fp == nil || !st.m.fastOK {
		return
	}
	f := &st.fast
	f.mu.Lock()
	defer f.mu.Unlock()
	p := [2]*peerState{st.peer[0][rtp].Load(), st.peer[1][rtp].Load()}
	want := !st.halt.Load() && !st.stopped.Load() && p[0].latched && p[1].latched && st.kernelCarries()
	if f.on.Load() {
		if want && p == f.peers {
			if renew && time.Duration(f.leaseEnd.Load()-int64(bpf.MonoNow())) < fastLease/2 {
				st.fastPut(fp, p)
			}
			return
		}
		st.fastRemove(fp)
	}
	if want && p != f.failed {
		st.fastPut(fp, p)
	}
}

// fastPut installs (or renews) both routes from the latched peers p.
// The caller holds st.fast.mu.
func (st *stream) fastPut(fp FastPath, p [2]*peerState) {
	f := &st.fast
	end := int64(bpf.MonoNow()) + int64(fastLease)
	for side := range 2 {
		r := bpf.MediaRoute{Peer: p[side].dst, Src: st.fastLocal(1 - side), Dst: p[1-side].dst, Expires: uint64(end)}
		if err := fp.Put(st.fastLocal(side), r); err != nil {
			st.m.fastErrors.Add(1)
			st.m.log.Debug("media fast path: route not installed; relayed in userspace", "key", st.key, "side", sbc.Side(side), "error", err)
			if f.on.Load() || side == 1 {
				st.fastRemove(fp)
			}
			f.failed = p
			return
		}
	}
	if !f.on.Load() {
		st.m.log.Debug("media fast path on", "key", st.key, "outside", p[sbc.External].dst, "inside", p[sbc.Internal].dst)
	}
	f.peers, f.failed = p, [2]*peerState{}
	f.leaseEnd.Store(end)
	f.on.Store(true)
}

// fastRemove deletes both routes and keeps their counters. The caller
// holds st.fast.mu.
func (st *stream) fastRemove(fp FastPath) {
	f := &st.fast
	for side := range 2 {
		s, err := fp.Delete(st.fastLocal(side))
		if err != nil {
			st.m.fastErrors.Add(1)
			st.m.log.Warn("media fast path: route not removed", "key", st.key, "side", sbc.Side(side), "error", err)
		}
		f.done[side].Packets += s.Packets
		f.done[side].Bytes += s.Bytes
	}
	f.on.Store(false)
	f.peers = [2]*peerState{}
}

// fastStop removes the routes of a stream being released (its readers
// have exited, no Rewrite reaches it any more).
func (st *stream) fastStop() {
	fp := st.m.cfg.FastPath
	if fp == nil {
		return
	}
	st.fast.mu.Lock()
	defer st.fast.mu.Unlock()
	if st.fast.on.Load() {
		st.fastRemove(fp)
	}
}

// fastDue tells a reader that its packet came up while the stream's
// routes are installed and their lease is past half-time (or over): the
// reader calls fastSync(true). Cheap enough for every packet.
func (st *stream) fastDue() bool {
	f := &st.fast
	return f.on.Load() && time.Duration(f.leaseEnd.Load()-int64(bpf.MonoNow())) < fastLease/2
}

// fastCounters returns what the kernel forwarded for the stream, removed
// routes included, and whether routes are installed now (one lookup per
// side then).
func (st *stream) fastCounters() (packets, bytes uint64, on bool) {
	fp := st.m.cfg.FastPath
	if fp == nil {
		return 0, 0, false
	}
	f := &st.fast
	f.mu.Lock()
	defer f.mu.Unlock()
	for side := range 2 {
		packets += f.done[side].Packets
		bytes += f.done[side].Bytes
	}
	if !f.on.Load() {
		return packets, bytes, false
	}
	for side := range 2 {
		if s, err := fp.Stats(st.fastLocal(side)); err == nil {
			packets += s.Packets
			bytes += s.Bytes
		}
	}
	return packets, bytes, true
}

// fastUsable tells whether the kernel can forward for this configuration:
// both sides bound to an address (a wildcard socket has no address for the
// kernel to match) of one family (the kernel does not translate).
func fastUsable(cfg Config) bool {
	e, i := cfg.External.Unmap(), cfg.Internal.Unmap()
	return !e.IsUnspecified() && !i.IsUnspecified() && e.Is4() == i.Is4()
}

// kernelCarries: the kernel copies RTP as it is, so a stream whose SRTP
// the SBC terminates on either side stays in userspace, and so does one
// whose sides disagree on rtcp-mux (RTCP changes sockets on the way).
func (st *stream) kernelCarries() bool {
	for side := range 2 {
		if s := st.sec[side].Load(); s != nil && s.kind != secPlain {
			return false
		}
	}
	return st.muxed[0].Load() == st.muxed[1].Load()
}
