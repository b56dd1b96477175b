package sbc

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipwall/sipwall/sbc/sanity/wire"
	sbctls "github.com/sipwall/sipwall/tls"
)

// limitListener caps inbound stream connections in total and per source
// address, and bounds how long one message may take to arrive. Excess
// connections are closed at once, before any read, so a flood of
// connections cannot hold workers or file descriptors.
type limitListener struct {
	net.Listener
	max, perSource int
	msgTimeout     time.Duration
	stats          *Stats
	blocked        func(netip.Addr) bool
	admit          func(netip.Addr, []byte) bool
	// peerCerts, on tls and wss listeners, receives each connection's
	// verified client certificate once its handshake is done.
	peerCerts *sync.Map
	// capture, when set, receives every message read or written (see
	// Options.Capture), from transport on local.
	capture   func(src, dst netip.AddrPort, transport string, data []byte)
	transport string
	local     netip.AddrPort
	outbound  func(netip.AddrPort, []byte) ([]byte, bool)
	// edge, on tcp and tls listeners, takes the requests read (responses
	// and keepalives go on to sipgo); idle renews the read deadline while
	// requests keep arriving, maxMsg bounds one message.
	edge   *edge
	idle   time.Duration
	maxMsg int
	// conns are the open connections by peer (the edge answers WebSocket
	// requests on them).
	conns sync.Map

	mu    sync.Mutex
	total int
	bySrc map[netip.Addr]int
}

func newLimitListener(l net.Listener, max, perSource int, msgTimeout time.Duration, stats *Stats) *limitListener {
	if max <= 0 {
		max = 4096
	}
	if perSource <= 0 {
		perSource = 32
	}
	return &limitListener{Listener: l, max: max, perSource: perSource, msgTimeout: msgTimeout, stats: stats, bySrc: map[netip.Addr]int{}}
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
		if l.blocked != nil && l.blocked(src) {
			l.stats.Blocked.Add(1)
			c.Close()
			continue
		}
		if l.admit != nil && !l.admit(src, nil) {
			l.stats.Prefiltered.Add(1)
			c.Close()
			continue
		}
		l.mu.Lock()
		if l.total >= l.max || l.bySrc[src] >= l.perSource {
			l.mu.Unlock()
			l.stats.ConnsRefused.Add(1)
			c.Close()
			continue
		}
		l.total++
		l.bySrc[src]++
		l.mu.Unlock()
		lc := &limitConn{Conn: c, l: l, src: src}
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			lc.peer = netip.AddrPortFrom(ta.AddrPort().Addr().Unmap(), ta.AddrPort().Port())
		}
		l.conns.Store(lc.peer, lc)
		return lc, nil
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
	peer netip.AddrPort
	once sync.Once
	fr   framer
	// capFr finds message ends for capture (fr's state is for deadlines).
	capFr framer
	// started is when the message now being received began; zero between
	// messages. Only the reading goroutine touches it.
	started time.Time
	// certChecked: the TLS peer certificate was looked at (reader only);
	// certKept: it was recorded in peerCerts and must be removed at Close.
	certChecked bool
	certKept    atomic.Bool
	// msg holds the bytes of the message being read, for capture.
	msg []byte
	// For the edge (tcp, tls): split frames what was read into messages;
	// cur holds the one being read, out what sipgo still has to read.
	split    framer
	cur, out []byte
	scratch  []byte
	// inflight counts requests of this connection in the chain: the
	// connection closes only after their answers (bounded by flushWait).
	inflight sync.WaitGroup
	pending  error // the read error to return once out is drained
}

// flushWait bounds how long a closing connection waits for the answers to
// the requests already read on it.
const flushWait = 2 * time.Second

// Read gives sipgo what it reads on the connection but the requests,
// which go to the edge transaction layer as whole messages.
func (c *limitConn) Read(b []byte) (int, error) {
	if c.l.edge == nil {
		return c.read(b)
	}
	if c.scratch == nil {
		c.scratch = make([]byte, 16<<10)
		c.split.ends = make([]int, 0, 4)
	}
	// Bounded: after this many reads that held only requests it returns
	// no bytes and sipgo, which skips an empty read, calls again.
	for range 1 << 10 {
		if len(c.out) > 0 {
			n := copy(b, c.out)
			c.out = c.out[n:]
			return n, nil
		}
		if c.pending != nil {
			c.flush()
			return 0, c.pending
		}
		n, err := c.read(c.scratch)
		if n > 0 {
			if perr := c.take(c.scratch[:n]); perr != nil {
				err = perr
			}
		}
		if err != nil {
			c.pending = err
			continue
		}
		if c.l.idle > 0 && c.started.IsZero() {
			// sipgo's idle deadline was set before its Read, which this
			// loop outlives while requests arrive.
			_ = c.Conn.SetReadDeadline(time.Now().Add(c.l.idle))
		}
	}
	return 0, nil
}

// errBrokenStream closes a connection whose bytes are no longer SIP
// messages (an unparsable request, a message over the size limit).
var errBrokenStream = errors.New("stream: not a SIP message")

// take frames bytes read: requests go to the edge, responses and the
// CRLF keepalives between messages to sipgo (out).
func (c *limitConn) take(p []byte) error {
	start := 0
	c.split.ends = c.split.ends[:0]
	c.split.feed(p)
	for _, end := range c.split.ends {
		c.cur = append(c.cur, p[start:end]...)
		start = end
		if err := c.message(); err != nil {
			return err
		}
	}
	c.cur = append(c.cur, p[start:]...)
	if c.l.maxMsg > 0 && len(c.cur) > c.l.maxMsg+4 {
		return errBrokenStream
	}
	if c.split.state == 0 && len(bytes.Trim(c.cur, "\r\n")) == 0 && len(c.cur) > 0 {
		// Keepalive only (RFC 5626 4.4.1): sipgo answers it.
		c.out = append(c.out, c.cur...)
		c.cur = c.cur[:0]
	}
	return nil
}

// message handles one complete message in cur.
func (c *limitConn) message() error {
	m := c.cur
	i := 0
	for i < len(m) && (m[i] == '\r' || m[i] == '\n') {
		i++
	}
	c.out = append(c.out, m[:i]...)
	m = m[i:]
	defer func() { c.cur = c.cur[:0] }()
	if len(m) == 0 {
		return nil
	}
	if c.l.maxMsg > 0 && len(m) > c.l.maxMsg {
		return errBrokenStream
	}
	if bytes.HasPrefix(m, []byte("SIP/")) {
		c.out = append(c.out, m...)
		return nil
	}
	data := bytes.Clone(m)
	f := &flow{transport: c.l.transport, local: c.l.local, peer: c.peer, write: c.l.edge.s.streamWriter(c.l.transport, c.peer), stream: c}
	req, err := c.l.edge.s.parseRequest(data, f)
	if err != nil {
		c.l.edge.s.countDrop(wire.ReasonNone)
		return errBrokenStream
	}
	c.l.edge.receive(req, f, len(data))
	return nil
}

// flush waits, bounded, for the answers to the requests already read.
func (c *limitConn) flush() {
	done := make(chan struct{})
	go func() { c.inflight.Wait(); close(done) }()
	t := time.NewTimer(flushWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// wsFrame is b in one unmasked WebSocket text frame (RFC 6455 5.2: a
// server never masks).
func wsFrame(b []byte) []byte {
	var h [10]byte
	h[0] = 0x81 // FIN, text
	n := 2
	switch {
	case len(b) < 126:
		h[1] = byte(len(b))
	case len(b) < 1<<16:
		h[1], h[2], h[3] = 126, byte(len(b)>>8), byte(len(b))
		n = 4
	default:
		h[1] = 127
		for i := range 8 {
			h[2+i] = byte(uint64(len(b)) >> (56 - 8*i))
		}
		n = 10
	}
	return append(h[:n:n], b...)
}

// read tightens the read deadline while a message is incomplete: sipgo sets
// an idle deadline before each read, which a client sending one byte now
// and then would renew forever.
func (c *limitConn) read(b []byte) (int, error) {
	if !c.started.IsZero() && c.l.msgTimeout > 0 {
		if err := c.Conn.SetReadDeadline(c.started.Add(c.l.msgTimeout)); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Read(b)
	if n > 0 && !c.certChecked && c.l.peerCerts != nil {
		c.certChecked = true
		c.recordCert()
	}
	if n > 0 && c.l.capture != nil && c.l.transport != "wss" {
		c.captureRead(b[:n])
	}
	if n > 0 {
		if c.fr.ends == nil {
			c.fr.ends = make([]int, 0, 4)
		}
		c.fr.ends = c.fr.ends[:0]
		switch inProgress := c.fr.feed(b[:n]); {
		case !inProgress:
			c.started = time.Time{}
		case c.started.IsZero() || len(c.fr.ends) > 0:
			// A message that began in this read (one ended before it):
			// its clock starts now, not with the message before.
			c.started = time.Now()
		}
	}
	if err != nil && !c.started.IsZero() {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			c.l.stats.SlowMessages.Add(1)
		}
	}
	return n, err
}

// Write passes what sipgo writes (one whole message per call, a text
// frame over WebSocket) through the Outbound filter; a stopped message is
// reported as written, and so is one sent changed.
func (c *limitConn) Write(b []byte) (int, error) {
	n := len(b)
	if c.l.outbound != nil {
		out, send := c.outbound(b)
		if !send {
			return n, nil
		}
		b = out
	}
	if c.l.capture != nil {
		msg := b
		if c.l.transport == "wss" {
			msg, _ = wsPayload(b)
		}
		if len(msg) > 0 {
			c.l.capture(c.l.local, c.peer, c.l.transport, msg)
		}
	}
	if _, err := c.Conn.Write(b); err != nil {
		return 0, err
	}
	return n, nil
}

// outbound applies the filter to a message; over WebSocket to the frame's
// payload, framed again when it changed (a frame it cannot read is
// judged as it is: sent whole or not at all).
func (c *limitConn) outbound(b []byte) ([]byte, bool) {
	if c.l.transport != "wss" {
		return c.l.outbound(c.peer, b)
	}
	payload, ok := wsPayload(b)
	if !ok {
		out, send := c.l.outbound(c.peer, b)
		return b, send && sameBytes(out, b)
	}
	out, send := c.l.outbound(c.peer, payload)
	if !send || sameBytes(out, payload) {
		return b, send
	}
	return wsFrame(out), true
}

// sameBytes tells whether a and b are the same slice (not just equal).
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func (c *limitConn) Close() error {
	c.once.Do(func() {
		c.l.conns.CompareAndDelete(c.peer, c)
		c.l.release(c.src)
		if c.certKept.Load() {
			c.l.peerCerts.Delete(c.peer)
		}
	})
	return c.Conn.Close()
}

// maxCapture bounds the bytes kept of one message being read for capture;
// longer messages are not captured (the parser refuses them anyway).
const maxCapture = 64 << 10

// captureRead cuts what was read into messages with a framer of its own
// and hands each complete one to the capture hook.
func (c *limitConn) captureRead(p []byte) {
	start := 0
	if c.capFr.ends == nil {
		c.capFr.ends = make([]int, 0, 4)
	}
	c.capFr.ends = c.capFr.ends[:0]
	c.capFr.feed(p)
	for _, end := range c.capFr.ends {
		if len(c.msg)+end-start <= maxCapture {
			c.msg = append(c.msg, p[start:end]...)
			if m := bytes.TrimLeft(c.msg, "\r\n"); len(m) > 0 {
				c.l.capture(c.peer, c.l.local, c.l.transport, m)
			}
		}
		c.msg, start = c.msg[:0], end
	}
	if rest := p[start:]; len(c.msg)+len(rest) <= maxCapture {
		c.msg = append(c.msg, rest...)
	} else {
		c.msg = c.msg[:0]
	}
}

// wsPayload returns the payload of one unmasked WebSocket text frame (what
// the server writes); ok is false for anything else.
func wsPayload(b []byte) ([]byte, bool) {
	if len(b) < 2 || b[0]&0x0f != 1 || b[1]&0x80 != 0 {
		return nil, false
	}
	n, h := int(b[1]&0x7f), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return nil, false
		}
		n, h = int(b[2])<<8|int(b[3]), 4
	case 127:
		return nil, false
	}
	if len(b) != h+n {
		return nil, false
	}
	return b[h:], true
}

// recordCert notes the verified client certificate of a TLS connection,
// after its handshake (the first successful read), for the requests that
// arrive on it.
func (c *limitConn) recordCert() {
	tc, ok := c.Conn.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return
	}
	cs := tc.ConnectionState()
	name, ok := sbctls.Identity(cs)
	if !ok {
		return
	}
	c.l.peerCerts.Store(c.peer, &PeerCert{Name: name, Fingerprint: sbctls.Fingerprint(cs)})
	c.certKept.Store(true)
}

// framer follows SIP message boundaries on a stream with a byte scan: header
// block up to CRLFCRLF, then Content-Length bytes of body. It only needs to
// know whether a message is in progress; the real parsing is sipgo's.
type framer struct {
	// ends, when not nil, receives the offset after each message that
	// ends within the bytes of a feed call.
	ends    []int
	state   uint8 // 0 between messages, 1 in headers, 2 in body
	last4   uint32
	line    [32]byte // start of the current header line, for Content-Length
	lineLen int
	clen    int
	body    int
}

// feed consumes bytes and reports whether a message is incomplete after them.
func (f *framer) feed(p []byte) bool {
	for i := 0; i < len(p); i++ {
		ch := p[i]
		switch f.state {
		case 0:
			if ch == '\r' || ch == '\n' {
				continue // keepalives between messages
			}
			f.state, f.last4, f.lineLen, f.clen = 1, 0, 0, 0
			f.addLine(ch)
		case 1:
			f.last4 = f.last4<<8 | uint32(ch)
			if ch == '\n' {
				f.endLine()
				if f.last4 == 0x0d0a0d0a || f.last4&0xffff == 0x0a0a {
					if f.clen > 0 {
						f.state, f.body = 2, f.clen
					} else {
						f.state = 0
						if f.ends != nil {
							f.ends = append(f.ends, i+1)
						}
					}
				}
				continue
			}
			if ch != '\r' {
				f.addLine(ch)
			}
		case 2:
			n := min(f.body, len(p)-i)
			f.body -= n
			i += n - 1
			if f.body == 0 {
				f.state = 0
				if f.ends != nil {
					f.ends = append(f.ends, i+1)
				}
			}
		}
	}
	return f.state != 0
}

func (f *framer) addLine(ch byte) {
	if f.lineLen < len(f.line) {
		f.line[f.lineLen] = ch
	}
	f.lineLen++
}

// endLine picks up Content-Length (or its compact form l) from a finished
// header line. Anything odd leaves clen as it was: sipgo rejects the message.
func (f *framer) endLine() {
	n := min(f.lineLen, len(f.line))
	line := f.line[:n]
	f.lineLen = 0
	colon := -1
	for i, ch := range line {
		if ch == ':' {
			colon = i
			break
		}
	}
	if colon < 0 {
		return
	}
	name := trimSpace(line[:colon])
	if !(wire.EqualFoldLower(name, "content-length") || wire.EqualFoldLower(name, "l")) {
		return
	}
	v := 0
	for _, ch := range trimSpace(line[colon+1:]) {
		if ch < '0' || ch > '9' || v > 1<<20 {
			return
		}
		v = v*10 + int(ch-'0')
	}
	f.clen = v
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
