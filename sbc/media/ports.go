package media

import (
	"net"
	"net/netip"
)

// portPool hands out even/odd port pairs on one bind address. It is
// guarded by Manager.mu. Allocation goes round the range (next fit) so a
// pair just released is the last to be reused: late packets of a finished
// call do not land in a new one.
type portPool struct {
	addr  netip.Addr
	first int // lowest even port
	used  []bool
	next  int
	inUse int
	// bindFailures counts pairs skipped because a bind failed (another
	// process holds the port).
	bindFailures uint64
}

func newPortPool(addr netip.Addr, first, pairs int) *portPool {
	return &portPool{addr: addr, first: first, used: make([]bool, pairs)}
}

// alloc binds the RTP and RTCP sockets of the next free pair. Pairs whose
// bind fails are skipped, not marked: the other holder may let go.
func (p *portPool) alloc() (rtp, rtcp *net.UDPConn, port int, err error) {
	n := len(p.used)
	for i := 0; i < n; i++ {
		idx := (p.next + i) % n
		if p.used[idx] {
			continue
		}
		port = p.first + 2*idx
		if rtp, err = listen(p.addr, port); err != nil {
			p.bindFailures++
			continue
		}
		if rtcp, err = listen(p.addr, port+1); err != nil {
			rtp.Close()
			p.bindFailures++
			continue
		}
		p.used[idx] = true
		p.inUse++
		p.next = (idx + 1) % n
		return rtp, rtcp, port, nil
	}
	return nil, nil, 0, ErrNoPorts
}

// free returns a pair whose sockets are closed.
func (p *portPool) free(port int) {
	idx := (port - p.first) / 2
	if idx < 0 || idx >= len(p.used) || !p.used[idx] {
		return
	}
	p.used[idx] = false
	p.inUse--
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
