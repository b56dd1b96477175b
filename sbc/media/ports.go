package media

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"
)

// Warm pairs. A released stream's sockets are not closed: its readers are
// stopped and its pairs rest in their pool's FIFO, to be handed out again
// without socket(2), bind(2), epoll_ctl(2) and close(2).
const (
	// warmQuarantine is how long a released pair rests before it is
	// reused ahead of a fresh bind: well beyond the late RTP of a peer
	// that got the BYE. Whatever arrived meanwhile is drained first.
	warmQuarantine = 2 * time.Second
	// warmMax bounds the warm pairs of a pool; a pair released beyond it
	// is closed. A pool holds the streams of the quarantine's last 2 s:
	// at 400 calls/s with both legs on one address that is 1,600 pairs,
	// and with the old bound of 1,024 a third of the streams bound fresh
	// sockets (socket, bind, epoll registration and close: 4 % of the
	// CPU of the full chain). Warm pairs are within the port range, whose
	// descriptors are provided for (RaiseDescriptorLimit).
	warmMax = 8192
	// drainMax bounds the datagrams drained from one socket before reuse
	// (more than a full receive buffer): what still arrives then is no
	// older than the new call.
	drainMax = 4096
)

// Pair states.
const (
	pairFree  = iota // not bound
	pairInUse        // bound, held by a stream
	pairWarm         // bound, idle in the warm FIFO
)

// warmPair is a released pair whose sockets stay bound, readers stopped.
type warmPair struct {
	rtp, rtcp *net.UDPConn
	port      int
	since     time.Time // released
}

// portPool hands out even/odd port pairs on one bind address. It is
// guarded by Manager.mu. Fresh pairs are bound round the range (next fit)
// and released pairs rest in a FIFO of warm pairs, reused oldest first
// once they have rested warmQuarantine: either way a pair just released is
// the last to be reused, and what late packets of a finished call reached
// its sockets is drained before the pair serves a new one.
type portPool struct {
	addr  netip.Addr
	first int // lowest even port
	state []uint8
	// bound mirrors state != pairFree, one bit per pair, for readers that
	// cannot take Manager.mu (the relay's readers: held reports whether
	// a datagram's source is a relay socket of ours).
	bound []atomic.Uint64
	next  int
	inUse int
	// warm is a ring of nwarm pairs from head, oldest first; it grows up
	// to maxWarm.
	warm       []warmPair
	head       int
	nwarm      int
	maxWarm    int           // warmMax; lowered by tests
	quarantine time.Duration // warmQuarantine
	// bindFailures counts pairs skipped because a bind failed (another
	// process holds the port).
	bindFailures uint64
	binds        uint64 // pairs bound
	reused       uint64 // warm pairs handed out again
	drained      uint64 // datagrams discarded from warm sockets
}

func newPortPool(addr netip.Addr, first, pairs int) *portPool {
	return &portPool{addr: addr, first: first, state: make([]uint8, pairs), bound: make([]atomic.Uint64, (pairs+63)/64),
		maxWarm: warmMax, quarantine: warmQuarantine}
}

// setState records a pair's state and mirrors it in bound. The caller
// holds Manager.mu.
func (p *portPool) setState(idx int, st uint8) {
	p.state[idx] = st
	w, bit := &p.bound[idx/64], uint64(1)<<(idx%64)
	if st == pairFree {
		w.And(^bit)
	} else {
		w.Or(bit)
	}
}

// held reports whether port (RTP or RTCP) belongs to a pair this pool
// has bound right now. Safe without Manager.mu.
func (p *portPool) held(port int) bool {
	idx := (port - p.first) / 2
	if port < p.first || idx >= len(p.state) {
		return false
	}
	return p.bound[idx/64].Load()&(uint64(1)<<(idx%64)) != 0
}

// alloc returns the sockets of a pair for a new stream: the oldest warm
// pair if it rested the quarantine, else a fresh pair bound by next fit
// (pairs whose bind fails are skipped, not marked: the other holder may
// let go), else the oldest warm pair anyway: every other free pair failed,
// and a fresh bind would have reused that port just the same.
func (p *portPool) alloc(now time.Time) (rtp, rtcp *net.UDPConn, port int, err error) {
	for p.nwarm > 0 && now.Sub(p.warm[p.head].since) >= p.quarantine {
		if rtp, rtcp, port, ok := p.takeWarm(); ok {
			return rtp, rtcp, port, nil
		}
	}
	n := len(p.state)
	for i := 0; i < n; i++ {
		idx := (p.next + i) % n
		if p.state[idx] != pairFree {
			continue
		}
		port = p.first + 2*idx
		if rtp, err = listen(p.addr, port); err != nil {
			p.bindFailures++
			if outOfSockets(err) {
				// No other port will do better: stop at once instead of
				// trying every pair of the range under the Manager's lock.
				return nil, nil, 0, err
			}
			continue
		}
		if rtcp, err = listen(p.addr, port+1); err != nil {
			rtp.Close()
			p.bindFailures++
			if outOfSockets(err) {
				return nil, nil, 0, err
			}
			continue
		}
		p.setState(idx, pairInUse)
		p.inUse++
		p.binds++
		p.next = (idx + 1) % n
		return rtp, rtcp, port, nil
	}
	for p.nwarm > 0 {
		if rtp, rtcp, port, ok := p.takeWarm(); ok {
			return rtp, rtcp, port, nil
		}
	}
	return nil, nil, 0, ErrNoPorts
}

// outOfSockets tells a failure no other port avoids (the process or the
// host is out of descriptors or buffers) from a port held by someone else.
func outOfSockets(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// takeWarm pops the oldest warm pair, drains what its sockets received
// while idle and clears their deadlines. A pair that fails that is closed
// and freed: ok false.
func (p *portPool) takeWarm() (rtp, rtcp *net.UDPConn, port int, ok bool) {
	w := p.warm[p.head]
	p.warm[p.head] = warmPair{}
	p.head = (p.head + 1) % len(p.warm)
	p.nwarm--
	idx := (w.port - p.first) / 2
	n, err := drainPair(w.rtp, w.rtcp)
	p.drained += uint64(n)
	if err != nil {
		w.rtp.Close()
		w.rtcp.Close()
		p.setState(idx, pairFree)
		return nil, nil, 0, false
	}
	p.setState(idx, pairInUse)
	p.inUse++
	p.reused++
	return w.rtp, w.rtcp, w.port, true
}

// put takes back a pair from a stream whose readers have exited: it goes
// warm, or is closed when the FIFO is full (or the platform cannot drain
// a socket).
func (p *portPool) put(rtp, rtcp *net.UDPConn, port int, now time.Time) {
	idx := (port - p.first) / 2
	if idx < 0 || idx >= len(p.state) || p.state[idx] != pairInUse {
		rtp.Close()
		rtcp.Close()
		return
	}
	p.inUse--
	if !canDrain || p.nwarm >= p.maxWarm {
		rtp.Close()
		rtcp.Close()
		p.setState(idx, pairFree)
		return
	}
	if p.nwarm == len(p.warm) {
		grown := make([]warmPair, min(max(16, 2*len(p.warm)), p.maxWarm))
		for i := range p.nwarm {
			grown[i] = p.warm[(p.head+i)%len(p.warm)]
		}
		p.warm, p.head = grown, 0
	}
	p.warm[(p.head+p.nwarm)%len(p.warm)] = warmPair{rtp: rtp, rtcp: rtcp, port: port, since: now}
	p.nwarm++
	p.setState(idx, pairWarm)
}

// free returns a pair whose sockets are closed.
func (p *portPool) free(port int) {
	idx := (port - p.first) / 2
	if idx < 0 || idx >= len(p.state) || p.state[idx] != pairInUse {
		return
	}
	p.setState(idx, pairFree)
	p.inUse--
}

// closeWarm closes every warm pair.
func (p *portPool) closeWarm() {
	for p.nwarm > 0 {
		w := p.warm[p.head]
		p.warm[p.head] = warmPair{}
		p.head = (p.head + 1) % len(p.warm)
		p.nwarm--
		w.rtp.Close()
		w.rtcp.Close()
		p.setState((w.port-p.first)/2, pairFree)
	}
	p.warm, p.head = nil, 0
}

func listen(addr netip.Addr, port int) (*net.UDPConn, error) {
	// udp4/udp6, not udp: a dual-stack socket would report IPv4 peers as
	// IPv4-mapped IPv6 addresses and accept both families.
	network := "udp6"
	if addr.Is4() {
		network = "udp4"
	}
	return net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, uint16(port))))
}
