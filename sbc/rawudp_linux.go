//go:build linux

package sbc

import (
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawUDP is a SIP UDP listener's socket, read up to udpBatch datagrams a
// system call (recvmmsg(2)) and written with sendto(2), both made as raw
// system calls: without the runtime's bookkeeping around a call that may
// block. Neither can block here (MSG_DONTWAIT; the runtime's poller waits
// when a socket is not ready, as for any socket of the net package), and
// the bookkeeping was what cost: entering a system call wakes the
// runtime's monitor thread when it sleeps, and a call it finds still
// running hands the processor to another thread (a futex wake-up each)
// — on one processor (sbc/procs) 5 to 8 % of the CPU at 400 calls/s,
// for calls of 2 to 15 µs. A batch read also makes a burst of datagrams,
// a flood among them, one system call instead of one each.
//
// Reads are by one goroutine (sipgo's reader of the listener); writes by
// any.
type rawUDP struct {
	// The socket's other methods (Close, LocalAddr, deadlines), and the
	// writes the raw send does not take. Only net.PacketConn's: the
	// UDPConn's own reads would bypass the batch.
	net.PacketConn
	rc     syscall.RawConn
	family int // AF_INET or AF_INET6: the socket's
	closed atomic.Bool

	// The reader's.
	msgs   [udpBatch]unix.Mmsghdr
	iovs   [udpBatch]unix.Iovec
	names  [udpBatch]unix.RawSockaddrInet6 // large enough for either family
	bufs   [][]byte
	n      int // datagrams in the batch
	next   int // the next to hand out
	rerr   unix.Errno
	readFn func(uintptr) bool
}

const (
	// udpBatch is how many datagrams one recvmmsg(2) reads at most.
	udpBatch = 16
	// udpReadSize is a read buffer: the largest UDP payload.
	udpReadSize = 65535
)

// newRawUDP wraps c; it returns c itself when its socket cannot be had.
func newRawUDP(c *net.UDPConn) net.PacketConn {
	rc, err := c.SyscallConn()
	if err != nil {
		return c
	}
	family := 0
	if err := rc.Control(func(fd uintptr) {
		if sa, err := unix.Getsockname(int(fd)); err == nil {
			switch sa.(type) {
			case *unix.SockaddrInet4:
				family = unix.AF_INET
			case *unix.SockaddrInet6:
				family = unix.AF_INET6
			}
		}
	}); err != nil || family == 0 {
		return c
	}
	u := &rawUDP{PacketConn: c, rc: rc, family: family, bufs: make([][]byte, udpBatch)}
	for i := range u.msgs {
		u.bufs[i] = make([]byte, udpReadSize)
		u.iovs[i] = unix.Iovec{Base: &u.bufs[i][0]}
		u.iovs[i].SetLen(udpReadSize)
		u.msgs[i].Hdr.Iov = &u.iovs[i]
		u.msgs[i].Hdr.SetIovlen(1)
		u.msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(&u.names[i]))
	}
	u.readFn = u.recv
	return u
}

// recv is the read callback: one recvmmsg(2), false when nothing is
// queued (the poller then waits for the socket).
func (u *rawUDP) recv(fd uintptr) bool {
	for i := range u.msgs {
		u.msgs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		u.msgs[i].Hdr.Flags = 0
		u.msgs[i].Len = 0
	}
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&u.msgs[0])), udpBatch, unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			u.n = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		u.rerr = e
		return true
	}
}

// transientRead: errors a UDP socket reports that concern one datagram
// or one moment, not the socket: the reader goes on.
func transientRead(e unix.Errno) bool {
	switch e {
	case unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH, unix.ENOBUFS, unix.ENOMEM:
		return true
	}
	return false
}

// Close closes the socket; what a batch still holds is not handed out.
func (u *rawUDP) Close() error {
	u.closed.Store(true)
	return u.PacketConn.Close()
}

// ReadFrom hands out the next datagram of the batch, reading a new batch
// when the last is used up.
func (u *rawUDP) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		if u.closed.Load() {
			u.n, u.next = 0, 0
			return 0, nil, &net.OpError{Op: "read", Net: "udp", Source: u.LocalAddr(), Err: net.ErrClosed}
		}
		for u.next < u.n {
			i := u.next
			u.next++
			addr := sockaddrUDP(&u.names[i])
			if addr == nil {
				continue
			}
			return copy(b, u.bufs[i][:u.msgs[i].Len]), addr, nil
		}
		u.n, u.next, u.rerr = 0, 0, 0
		if err := u.rc.Read(u.readFn); err != nil {
			return 0, nil, err
		}
		if u.rerr != 0 && !transientRead(u.rerr) {
			return 0, nil, &net.OpError{Op: "read", Net: "udp", Source: u.LocalAddr(), Err: os.NewSyscallError("recvmmsg", u.rerr)}
		}
	}
}

// sockaddrUDP is the address recvmmsg(2) wrote, as the net package gives
// it (a 4-byte IP for IPv4 sockets, 16 bytes for IPv6 ones).
func sockaddrUDP(sa *unix.RawSockaddrInet6) *net.UDPAddr {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		ip := make(net.IP, 4)
		copy(ip, sa4.Addr[:])
		return &net.UDPAddr{IP: ip, Port: int(p[0])<<8 | int(p[1])}
	case unix.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		ip := make(net.IP, 16)
		copy(ip, sa.Addr[:])
		a := &net.UDPAddr{IP: ip, Port: int(p[0])<<8 | int(p[1])}
		if sa.Scope_id != 0 {
			a.Zone = zoneName(sa.Scope_id)
		}
		return a
	}
	return nil
}

// zones caches interface names by index, for link-local sources.
var zones sync.Map // uint32 → string

// zoneName is the name of the interface of index i, as the net package
// gives a source's zone; its number if it has none (any more).
func zoneName(i uint32) string {
	if z, ok := zones.Load(i); ok {
		return z.(string)
	}
	if ifi, err := net.InterfaceByIndex(int(i)); err == nil {
		zones.Store(i, ifi.Name)
		return ifi.Name
	}
	return strconv.FormatUint(uint64(i), 10)
}

// rawSend is one sendto(2): its destination and bytes, and the callback
// bound once (pooled, so that a write allocates nothing).
type rawSend struct {
	sa4  unix.RawSockaddrInet4
	sa6  unix.RawSockaddrInet6
	name unsafe.Pointer
	size uintptr
	b    []byte
	err  unix.Errno
	fn   func(uintptr) bool
}

var rawSends = sync.Pool{New: func() any {
	s := &rawSend{}
	s.fn = s.send
	return s
}}

func (s *rawSend) send(fd uintptr) bool {
	var p unsafe.Pointer
	if len(s.b) > 0 {
		p = unsafe.Pointer(unsafe.SliceData(s.b))
	}
	for {
		_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(p), uintptr(len(s.b)), unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, uintptr(s.name), s.size)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // the send buffer is full: wait until it is not
		}
		s.err = e
		return true
	}
}

// to sets the destination for a socket of the family; false when the
// net package should handle it (a zone, a family the socket lacks).
func (s *rawSend) to(family int, a *net.UDPAddr) bool {
	if a == nil || a.Zone != "" || a.Port < 0 || a.Port > 0xffff {
		return false
	}
	port := uint16(a.Port)
	ip4 := a.IP.To4()
	switch {
	case family == unix.AF_INET && ip4 != nil:
		s.sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: [4]byte(ip4)}
		p := (*[2]byte)(unsafe.Pointer(&s.sa4.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		s.name, s.size = unsafe.Pointer(&s.sa4), unix.SizeofSockaddrInet4
	case family == unix.AF_INET6 && len(a.IP) == net.IPv6len || family == unix.AF_INET6 && ip4 != nil:
		s.sa6 = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: [16]byte(a.IP.To16())}
		p := (*[2]byte)(unsafe.Pointer(&s.sa6.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		s.name, s.size = unsafe.Pointer(&s.sa6), unix.SizeofSockaddrInet6
	default:
		return false
	}
	return true
}

// WriteTo sends b to addr in one datagram.
func (u *rawUDP) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return u.PacketConn.WriteTo(b, addr)
	}
	s := rawSends.Get().(*rawSend)
	if !s.to(u.family, ua) {
		rawSends.Put(s)
		return u.PacketConn.WriteTo(b, addr)
	}
	s.b, s.err = b, 0
	err := u.rc.Write(s.fn)
	errno := s.err
	s.b, s.name = nil, nil
	rawSends.Put(s)
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: u.LocalAddr(), Addr: addr, Err: os.NewSyscallError("sendto", errno)}
	}
	return len(b), nil
}
