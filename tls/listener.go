package sbctls

import (
	"context"
	"crypto/tls"
	"errors"
	"math"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mholt/acmez/v3"
)

const (
	defaultHandshakeTimeout = 5 * time.Second
	// maxRateEntries bounds the per-source token buckets kept.
	maxRateEntries = 65536
)

type listener struct {
	net.Listener
	cfg     *tls.Config
	timeout time.Duration
	limit   *rateLimiter
	refused func()
}

func newListener(inner net.Listener, cfg *tls.Config, opt ListenerOptions) *listener {
	l := &listener{Listener: inner, cfg: cfg, timeout: opt.HandshakeTimeout, refused: opt.OnRefused}
	if l.timeout <= 0 {
		l.timeout = defaultHandshakeTimeout
	}
	if opt.Rate > 0 {
		burst := opt.Burst
		if burst <= 0 {
			burst = int(math.Max(1, math.Ceil(opt.Rate)))
		}
		l.limit = newRateLimiter(opt.Rate, burst, maxRateEntries)
	}
	return l
}

// Accept returns the next connection allowed by the rate limit, as a *Conn
// whose handshake has not run yet.
func (l *listener) Accept() (net.Conn, error) {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.limit != nil && !l.limit.allow(addrIP(raw.RemoteAddr()), time.Now()) {
			raw.Close()
			if l.refused != nil {
				l.refused()
			}
			continue
		}
		return newConn(raw, l.cfg, l.timeout), nil
	}
}

func addrIP(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort().Addr().Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// Conn is a server-side TLS connection from NewListener. It is the
// *tls.Conn (embedded) with a lazy handshake: the first Read, Write or
// Handshake runs it, bounded by the listener's HandshakeTimeout counted
// from Accept; then the deadline the handshake used is lifted (deadlines
// set by the user stay). A connection whose handshake has not finished by
// then is closed even if nobody reads it. A completed TLS-ALPN-01
// validation (ALPN acme-tls/1) is closed, as RFC 8737 asks: it is not a
// SIP peer.
type Conn struct {
	*tls.Conn
	raw      net.Conn
	deadline time.Time // end of the handshake budget
	timer    *time.Timer

	hsOnce sync.Once
	hsErr  error

	dmu    sync.Mutex
	hsDone bool
	rd, wd time.Time // deadlines set by the user
}

func newConn(raw net.Conn, cfg *tls.Config, timeout time.Duration) *Conn {
	c := &Conn{Conn: tls.Server(raw, cfg), raw: raw, deadline: time.Now().Add(timeout)}
	_ = raw.SetDeadline(c.deadline)
	c.timer = time.AfterFunc(timeout, func() {
		c.dmu.Lock()
		done := c.hsDone
		c.dmu.Unlock()
		if !done {
			raw.Close()
		}
	})
	return c
}

var errACMEValidation = errors.New("tls: acme-tls/1 validation connection closed")

// HandshakeContext runs the handshake once, under the handshake budget.
func (c *Conn) HandshakeContext(ctx context.Context) error {
	c.hsOnce.Do(func() {
		hctx, cancel := context.WithDeadline(ctx, c.deadline)
		err := c.Conn.HandshakeContext(hctx)
		cancel()
		c.timer.Stop()
		c.dmu.Lock()
		c.hsDone = true
		if err == nil {
			_ = c.raw.SetReadDeadline(c.rd)
			_ = c.raw.SetWriteDeadline(c.wd)
		}
		c.dmu.Unlock()
		if err == nil && c.Conn.ConnectionState().NegotiatedProtocol == acmez.ACMETLS1Protocol {
			c.Conn.Close()
			err = errACMEValidation
		}
		if err != nil {
			c.raw.Close()
		}
		c.hsErr = err
	})
	return c.hsErr
}

// Handshake runs the handshake if it has not run yet.
func (c *Conn) Handshake() error { return c.HandshakeContext(context.Background()) }

// Read reads after the handshake.
func (c *Conn) Read(b []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

// Write writes after the handshake.
func (c *Conn) Write(b []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// SetDeadline sets both deadlines; before the handshake has finished the
// handshake budget still applies when it is sooner.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline (see SetDeadline).
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.rd = t
	return c.raw.SetReadDeadline(c.effective(t))
}

// SetWriteDeadline sets the write deadline (see SetDeadline).
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.wd = t
	return c.raw.SetWriteDeadline(c.effective(t))
}

func (c *Conn) effective(t time.Time) time.Time {
	if c.hsDone || (!t.IsZero() && t.Before(c.deadline)) {
		return t
	}
	return c.deadline
}

// Close closes the connection (sending close_notify after a handshake).
func (c *Conn) Close() error {
	c.timer.Stop()
	return c.Conn.Close()
}

// rateLimiter is a token bucket per source address, in a bounded map.
type rateLimiter struct {
	mu      sync.Mutex
	rate    float64
	burst   float64
	max     int
	buckets map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(rate float64, burst, max int) *rateLimiter {
	return &rateLimiter{rate: rate, burst: float64(burst), max: max, buckets: make(map[netip.Addr]*bucket)}
}

func (r *rateLimiter) allow(ip netip.Addr, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.buckets[ip]
	if !ok {
		if len(r.buckets) >= r.max {
			r.evict(now)
		}
		b = &bucket{tokens: r.burst, last: now}
		r.buckets[ip] = b
	} else {
		b.tokens = math.Min(r.burst, b.tokens+now.Sub(b.last).Seconds()*r.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// evict drops the buckets that have refilled (the same as absent); if none
// has, it drops arbitrary ones down to three quarters of the bound.
func (r *rateLimiter) evict(now time.Time) {
	full := time.Duration(r.burst / r.rate * float64(time.Second))
	for ip, b := range r.buckets {
		if now.Sub(b.last) >= full {
			delete(r.buckets, ip)
		}
	}
	for ip := range r.buckets {
		if len(r.buckets) < r.max*3/4 {
			break
		}
		delete(r.buckets, ip)
	}
}
