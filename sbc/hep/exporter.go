package hep

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultQueue is the queue length used when Options.Queue is 0.
const DefaultQueue = 4096

const (
	dialTimeout  = 3 * time.Second
	writeTimeout = 5 * time.Second
	minBackoff   = 100 * time.Millisecond
	maxBackoff   = 10 * time.Second
	// maxBatch bounds the bytes written to a TCP collector in one call.
	maxBatch = 64 << 10
)

// Options configures an Exporter.
type Options struct {
	Addr      string // collector host:port; the host must be an IP literal
	Transport string // "udp" (default) or "tcp"
	AgentID   uint32 // capture agent id sent in every packet
	Password  string // authentication key; "" omits the chunk
	Queue     int    // messages waiting to be sent; 0 means DefaultQueue
	Log       *slog.Logger
}

// Stats are the Exporter counters, in messages.
type Stats struct {
	Sent    uint64 // handed to the socket
	Dropped uint64 // refused by Send: queue full or exporter closed
	Errors  uint64 // lost to an encode, connect or write error
}

// Exporter sends messages to a HEP collector. Send queues, Run drains the
// queue onto the network. It is safe for concurrent use.
type Exporter struct {
	addr     netip.AddrPort
	network  string // "udp" or "tcp"
	agentID  uint32
	password string
	log      *slog.Logger
	queue    chan Message

	minBackoff, maxBackoff time.Duration

	sent, dropped, errs atomic.Uint64
	running             atomic.Bool

	closeOnce sync.Once
	done      chan struct{}
	mu        sync.Mutex
	closed    bool
	conn      net.Conn // current connection, owned by Run; closed by Close
}

// NewExporter validates opt and returns an Exporter. Nothing is sent until
// Run is called.
func NewExporter(opt Options) (*Exporter, error) {
	ap, err := netip.ParseAddrPort(opt.Addr)
	if err != nil {
		return nil, fmt.Errorf("hep: collector address %q: %w", opt.Addr, err)
	}
	if ap.Port() == 0 || ap.Addr().IsUnspecified() {
		return nil, fmt.Errorf("hep: collector address %q: need a host and a port", opt.Addr)
	}
	network := opt.Transport
	switch network {
	case "":
		network = "udp"
	case "udp", "tcp":
	default:
		return nil, fmt.Errorf("hep: transport %q: want udp or tcp", opt.Transport)
	}
	if opt.Queue < 0 {
		return nil, fmt.Errorf("hep: negative queue length %d", opt.Queue)
	}
	q := opt.Queue
	if q == 0 {
		q = DefaultQueue
	}
	if len(opt.Password) > 1024 {
		return nil, errors.New("hep: password longer than 1024 bytes")
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Exporter{
		addr:       ap,
		network:    network,
		agentID:    opt.AgentID,
		password:   opt.Password,
		log:        log.With("component", "hep", "collector", ap.String(), "transport", network),
		queue:      make(chan Message, q),
		minBackoff: minBackoff,
		maxBackoff: maxBackoff,
		done:       make(chan struct{}),
	}, nil
}

// Send queues m for export. It never blocks: when the queue is full, or the
// exporter is closed, m is dropped and counted. The payload is copied, so the
// caller may reuse it; a zero Time is replaced by the current time.
func (e *Exporter) Send(m Message) {
	select {
	case <-e.done:
		e.dropped.Add(1)
		return
	default:
	}
	if len(e.queue) == cap(e.queue) { // cheap early out, skips the copy
		e.dropped.Add(1)
		return
	}
	if m.Time.IsZero() {
		m.Time = time.Now()
	}
	m.Payload = append([]byte(nil), m.Payload...)
	select {
	case e.queue <- m:
	default:
		e.dropped.Add(1)
	}
}

// Stats returns a snapshot of the counters.
func (e *Exporter) Stats() Stats {
	return Stats{Sent: e.sent.Load(), Dropped: e.dropped.Load(), Errors: e.errs.Load()}
}

// Close stops the exporter: Run returns, the connection is closed and later
// Sends are dropped. Messages still queued are discarded. Close is idempotent.
func (e *Exporter) Close() error {
	var err error
	e.closeOnce.Do(func() {
		close(e.done)
		e.mu.Lock()
		e.closed = true
		if e.conn != nil {
			err = e.conn.Close()
			e.conn = nil
		}
		e.mu.Unlock()
	})
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Run sends queued messages until ctx ends or Close is called. UDP errors
// are counted and the socket kept; a TCP connection that fails is dropped
// and redialled with exponential backoff (100ms up to 10s), the queue
// filling, then dropping, meanwhile. Only one Run may be active at a time;
// a second concurrent call returns at once.
func (e *Exporter) Run(ctx context.Context) {
	if !e.running.CompareAndSwap(false, true) {
		e.log.Warn("hep exporter already running")
		return
	}
	defer e.running.Store(false)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-e.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	defer e.setConn(nil)

	buf := make([]byte, 0, maxBatch+maxPacket)
	backoff := time.Duration(0)
	for {
		conn := e.currentConn()
		if conn == nil {
			if backoff > 0 && !sleep(ctx, backoff) {
				return
			}
			c, err := e.dial(ctx)
			if ctx.Err() != nil {
				if c != nil {
					c.Close()
				}
				return
			}
			if err != nil {
				backoff = nextBackoff(backoff, e.minBackoff, e.maxBackoff)
				e.log.Warn("hep collector connect failed", "err", err, "retry_in", backoff)
				continue
			}
			if !e.setConn(c) { // closed meanwhile
				return
			}
			if backoff > 0 {
				e.log.Info("hep collector connected")
			}
			backoff = 0
			conn = c
		}

		var m Message
		select {
		case <-ctx.Done():
			return
		case m = <-e.queue:
		}
		var n int
		buf, n = e.encode(buf[:0], m)
		// Packets are back to back on a stream: batch what is waiting.
		for batching := e.network == "tcp"; batching && len(buf) < maxBatch; {
			select {
			case m = <-e.queue:
				var k int
				buf, k = e.encode(buf, m)
				n += k
			default:
				batching = false
			}
		}
		if n == 0 {
			continue
		}
		if err := e.write(conn, buf); err != nil {
			e.errs.Add(uint64(n))
			if ctx.Err() != nil {
				return
			}
			if e.network == "tcp" {
				e.log.Warn("hep collector write failed, reconnecting", "err", err, "lost", n)
				e.setConn(nil)
				backoff = nextBackoff(0, e.minBackoff, e.maxBackoff)
			} else {
				e.log.Debug("hep send failed", "err", err)
			}
			continue
		}
		e.sent.Add(uint64(n))
	}
}

// encode appends m to buf, counting an error instead when it cannot be
// encoded. It returns the number of messages appended (0 or 1).
func (e *Exporter) encode(buf []byte, m Message) ([]byte, int) {
	out, err := Encode(buf, m, e.agentID, e.password)
	if err != nil {
		e.errs.Add(1)
		e.log.Debug("hep encode failed", "err", err)
		return buf, 0
	}
	return out, 1
}

func (e *Exporter) dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	return d.DialContext(ctx, e.network, e.addr.String())
}

func (e *Exporter) write(c net.Conn, b []byte) error {
	if e.network == "tcp" {
		c.SetWriteDeadline(time.Now().Add(writeTimeout))
	}
	_, err := c.Write(b)
	return err
}

func (e *Exporter) currentConn() net.Conn {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.conn
}

// setConn replaces the current connection, closing the old one. It refuses
// (closing c) and returns false once the exporter is closed.
func (e *Exporter) setConn(c net.Conn) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn != nil {
		e.conn.Close()
	}
	e.conn = nil
	if e.closed {
		if c != nil {
			c.Close()
		}
		return false
	}
	e.conn = c
	return true
}

func nextBackoff(cur, lo, hi time.Duration) time.Duration {
	if cur < lo {
		return lo
	}
	cur *= 2
	if cur > hi {
		cur = hi
	}
	return cur
}

// sleep waits d or until ctx ends; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
