package sbc

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// limitListener caps inbound stream connections in total and per source
// address. Excess connections are closed at once, before any read, so a
// flood of connections cannot hold workers or file descriptors.
type limitListener struct {
	net.Listener
	max, perSource int
	refused        *atomic.Int64

	mu    sync.Mutex
	total int
	bySrc map[netip.Addr]int
}

func newLimitListener(l net.Listener, max, perSource int, refused *atomic.Int64) *limitListener {
	if max <= 0 {
		max = 4096
	}
	if perSource <= 0 {
		perSource = 32
	}
	return &limitListener{Listener: l, max: max, perSource: perSource, refused: refused, bySrc: map[netip.Addr]int{}}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var src netip.Addr
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			src = ta.AddrPort().Addr().Unmap()
		}
		l.mu.Lock()
		if l.total >= l.max || l.bySrc[src] >= l.perSource {
			l.mu.Unlock()
			l.refused.Add(1)
			c.Close()
			continue
		}
		l.total++
		l.bySrc[src]++
		l.mu.Unlock()
		return &limitConn{Conn: c, l: l, src: src}, nil
	}
}

func (l *limitListener) release(src netip.Addr) {
	l.mu.Lock()
	l.total--
	if l.bySrc[src]--; l.bySrc[src] <= 0 {
		delete(l.bySrc, src)
	}
	l.mu.Unlock()
}

type limitConn struct {
	net.Conn
	l    *limitListener
	src  netip.Addr
	once sync.Once
}

func (c *limitConn) Close() error {
	c.once.Do(func() { c.l.release(c.src) })
	return c.Conn.Close()
}
