package sbc

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc/sanity/wire"
	sbctls "github.com/sipwall/sipwall/tls"
)

// ListenerSpec is one socket to serve.
type ListenerSpec struct {
	Transport string // udp or tcp
	Addr      string // host:port to bind
	Side      Side
	// Advertise is the host[:port] written into Via/Contact; empty = bound address.
	Advertise string
}

// Options configure a Server.
type Options struct {
	Listeners []ListenerSpec
	// Chain is the ordered list of layers (see Order in chain.go).
	Chain []Handler
	// MaxInflight bounds requests processed at once.
	MaxInflight int
	// MaxMessageSize drops larger messages before parsing.
	MaxMessageSize int
	// RequestTimeout bounds the chain for non-INVITE requests.
	RequestTimeout time.Duration
	// TCP limits.
	MaxConns, MaxConnsPerSource int
	IdleTimeout, WriteTimeout   time.Duration
	// MessageTimeout bounds first byte to last byte of one stream message.
	MessageTimeout time.Duration
	// IsInternal tells whether a peer address is on the inside (an upstream).
	IsInternal func(netip.Addr) bool
	// Outbound, when set, sees every message about to leave a UDP listener
	// or an inbound TCP connection toward a peer that is not internal
	// (IsInternal), serialized: the topology guard, the last line of
	// defence against leaking the inside. It returns the bytes to send
	// instead (msg itself when nothing changes: a substitute keeps a
	// transaction whole) or send false to stop the message, counted in
	// Stats.OutboundBlocked; messages sent changed are counted in
	// Stats.OutboundChanged.
	Outbound func(dst netip.AddrPort, msg []byte) (out []byte, send bool)
	// Blocked, when set, is asked for every datagram and every accepted
	// stream connection before anything is parsed: a banned source costs a
	// map lookup, nothing more. It must be fast and safe for concurrent use.
	Blocked func(netip.Addr) bool
	// Admit, when set, is asked after Blocked for every datagram (with its
	// bytes) and every accepted stream connection (data nil): the
	// userspace prefilter. false drops the datagram or closes the
	// connection, counted in Stats.Prefiltered.
	Admit func(src netip.Addr, data []byte) bool
	// TLS is the server configuration of the tls and wss listeners (nil:
	// such listeners cannot start). TLSListener bounds their handshakes.
	TLS         *tls.Config
	TLSListener sbctls.ListenerOptions
	// Capture, when set, sees a copy of every SIP message received or sent
	// on the listeners: UDP datagrams both ways (received ones after the
	// pre-parse filter accepted them) and messages on accepted stream
	// connections both ways. Connections the SBC opens itself (TCP/TLS
	// toward upstreams) are not seen. It must not keep data.
	Capture func(src, dst netip.AddrPort, transport string, data []byte)
	// ClientTLS is the configuration of TLS connections the SBC opens
	// (toward TLS upstreams and the trunk); nil: the SIP stack's default.
	ClientTLS *tls.Config
	// ResponseFilter, when set, vets every response datagram after parsing
	// (sanity.ValidateResponse); false drops it before any transaction.
	ResponseFilter func(*sip.Response) bool
	// DialAllowed decides whether the SBC may open a stream connection to
	// an address (upstreams, the trunk). Nil allows none: replies and
	// requests to outside peers reuse the connection they opened. This
	// keeps a Via or Contact from making the SBC connect where an attacker
	// points it.
	DialAllowed func(netip.AddrPort) bool
	// OnUnhandledResponse receives responses that match no transaction
	// (retransmitted 2xx the B2BUA must re-ACK).
	OnUnhandledResponse func(*sip.Response)
	// OnResponse, when set, sees every response the listeners read, in
	// the order each socket or connection delivered them, on the reading
	// goroutine, after the transaction layer was handed it. sipgo gives
	// each message its own goroutine on the way to its transaction, so
	// two responses read a millisecond apart can reach it in either order
	// (a 1xx behind the 2xx is dropped there); this is how the B2BUA
	// keeps their order. It must not block or change the response.
	OnResponse func(*sip.Response)
	// MaxTransactions bounds the edge's server transactions (default
	// 65536); beyond it requests are answered statelessly.
	MaxTransactions int
	// OnDecision, when set, is told of every request the chain finished
	// with: the layer that decided (empty when none took it), the verdict
	// and the final status sent (0 for none). Called on the request's own
	// goroutine after the answer was sent; it must be quick.
	OnDecision func(r *Request, layer string, v Verdict, status int)
	Logger     *slog.Logger
}

// Listener is a bound socket.
type Listener struct {
	Spec      ListenerSpec
	Bound     netip.AddrPort
	Advertise sip.Addr // host and port for Via/Contact
	closer    func() error
}

// Server owns the sipgo user agent, the listeners and the chain.
type Server struct {
	opts   Options
	log    *slog.Logger
	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client
	sem    chan struct{}
	parser *sip.Parser

	edge *edge
	// udpConns are the UDP listener sockets by bound address, for the
	// edge's answers (through the Outbound guard and capture).
	udpConns sync.Map // netip.AddrPort -> net.PacketConn
	// streams are the stream listeners, for the edge's answers on WSS.
	streams []*limitListener

	mu        sync.Mutex
	listeners []*Listener
	names     []*string // of opts.Chain's layers (chain)
	// peerCerts maps the transport address of a tls/wss connection whose
	// peer presented a verified certificate to its *PeerCert.
	peerCerts sync.Map

	// Stats are counters for tests and, later, metrics.
	Stats Stats
	wg    sync.WaitGroup
}

// Stats counts what the root of the chain saw.
type Stats struct {
	Requests, Panics, Overload, Dropped, Rejected, Answered, Forwarded, Errors atomic.Int64
	ConnsRefused, SlowMessages, Keepalives, DialsRefused                       atomic.Int64
	// Blocked counts datagrams and connections dropped because Blocked
	// said so.
	Blocked atomic.Int64
	// HandshakesRefused counts TLS connections closed by the per-source
	// handshake rate limit.
	HandshakesRefused atomic.Int64
	// Prefiltered counts datagrams and connections Admit refused.
	Prefiltered atomic.Int64
	// OutboundBlocked counts messages the Outbound filter stopped;
	// OutboundChanged those it sent changed.
	OutboundBlocked, OutboundChanged atomic.Int64
	// PreParseDrops counts datagrams dropped before parsing, by
	// wire.Reason (index 0: responses refused by the response filter).
	PreParseDrops [32]atomic.Int64
	// Delivered counts responses handed to their client transaction
	// parsed once (deliver); the others were parsed again by sipgo.
	Delivered atomic.Int64
}

// NewServer constructs a server; nothing is bound until Start.
func NewServer(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxInflight <= 0 {
		opts.MaxInflight = 2000
	}
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = 65535
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 32 * time.Second
	}
	s := &Server{opts: opts, log: opts.Logger.With("component", "server"), sem: make(chan struct{}, opts.MaxInflight)}
	s.edge = newEdge(s, opts.MaxTransactions)

	tcp := &sip.TransportTCP{ReadTimeout: opts.IdleTimeout, WriteTimeout: opts.WriteTimeout, DialerCreate: s.dialer}
	// TLS and WSS get the same deadlines: a peer that stops reading must
	// not hold a writer (and its admission slot) for ever.
	tlsT := &sip.TransportTLS{TransportTCP: &sip.TransportTCP{ReadTimeout: opts.IdleTimeout, WriteTimeout: opts.WriteTimeout, DialerCreate: s.dialer}}
	wssT := &sip.TransportWSS{TransportWS: &sip.TransportWS{ReadTimeout: opts.IdleTimeout, WriteTimeout: opts.WriteTimeout}}
	txOpts := []sip.TransactionLayerOption{}
	if opts.OnUnhandledResponse != nil {
		txOpts = append(txOpts, sip.WithTransactionLayerUnhandledResponseHandler(opts.OnUnhandledResponse))
	}
	// The stream parser buffers at most one message of this size.
	parser := sip.NewParser()
	parser.MaxMessageLength = opts.MaxMessageSize
	s.parser = sip.NewParser()
	uaOpts := []sipgo.UserAgentOption{}
	if opts.ClientTLS != nil {
		uaOpts = append(uaOpts, sipgo.WithUserAgenTLSConfig(opts.ClientTLS))
	}
	ua, err := sipgo.NewUA(append(uaOpts,
		sipgo.WithUserAgent("sipwall"),
		// sipwall resolves no names: upstreams are IP literals, and a host
		// name in a Via or Contact must not make the SBC send DNS queries
		// an attacker chose.
		sipgo.WithUserAgentDNSResolver(noDNS),
		sipgo.WithUserAgentParser(parser),
		sipgo.WithUserAgentTransportLayerOptions(
			sip.WithTransportLayerReadFilter(s.readFilter),
			sip.WithTransportLayerTransports(sip.TransportsConfig{TCP: tcp, TLS: tlsT, WSS: wssT}),
		),
		sipgo.WithUserAgentTransactionLayerOptions(txOpts...),
	)...)
	if err != nil {
		return nil, fmt.Errorf("create user agent: %w", err)
	}
	if opts.OnResponse != nil {
		// Registered before any listener reads: the transport layer's
		// handler list is not guarded against concurrent changes.
		ua.TransportLayer().OnMessage(func(m sip.Message) {
			if res, ok := m.(*sip.Response); ok {
				opts.OnResponse(res)
			}
		})
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(opts.Logger.With("component", "sipgo")))
	if err != nil {
		return nil, fmt.Errorf("create server: %w", err)
	}
	client, err := sipgo.NewClient(ua, sipgo.WithClientLogger(opts.Logger.With("component", "sipgo")))
	if err != nil {
		return nil, fmt.Errorf("create client: %w", err)
	}
	srv.OnNoRoute(s.dispatch)
	s.ua, s.srv, s.client = ua, srv, client
	return s, nil
}

// EdgeStats returns the counters of the edge transaction layer.
func (s *Server) EdgeStats() EdgeStats { return s.edge.stats() }

// Client is the sipgo client layers use to send requests.
func (s *Server) Client() *sipgo.Client { return s.client }

// SetChain replaces the chain (used once at start and by reloads).
func (s *Server) SetChain(chain []Handler) {
	names := layerNames(chain)
	s.mu.Lock()
	s.opts.Chain, s.names = chain, names
	s.mu.Unlock()
}

// chain is the chain and its layers' names (for writer.layer, one string
// per layer instead of one per request and layer).
func (s *Server) chain() ([]Handler, []*string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.names) != len(s.opts.Chain) { // a chain given in Options
		s.names = layerNames(s.opts.Chain)
	}
	return s.opts.Chain, s.names
}

func layerNames(chain []Handler) []*string {
	names := make([]*string, len(chain))
	for i, h := range chain {
		n := h.Name()
		names[i] = &n
	}
	return names
}

// Listeners returns the bound listeners.
func (s *Server) Listeners() []*Listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Listener(nil), s.listeners...)
}

// Local picks the listener to send from for a transport and side: a
// listener of that side if any, else any of that transport.
func (s *Server) Local(transport string, side Side) (*Listener, bool) {
	transport = strings.ToLower(transport)
	var fallback *Listener
	for _, l := range s.Listeners() {
		if l.Spec.Transport != transport {
			continue
		}
		if l.Spec.Side == side {
			return l, true
		}
		if fallback == nil {
			fallback = l
		}
	}
	return fallback, fallback != nil
}

// Start binds every listener and serves in the background. On error all
// listeners bound so far are closed.
func (s *Server) Start(ctx context.Context) error {
	for _, spec := range s.opts.Listeners {
		l, err := s.listen(spec)
		if err != nil {
			s.Close()
			return err
		}
		s.mu.Lock()
		s.listeners = append(s.listeners, l)
		s.mu.Unlock()
	}
	go func() {
		<-ctx.Done()
		s.Close()
	}()
	return nil
}

func (s *Server) listen(spec ListenerSpec) (*Listener, error) {
	spec.Transport = strings.ToLower(spec.Transport)
	l := &Listener{Spec: spec}
	switch spec.Transport {
	case "udp":
		pc, err := net.ListenPacket("udp", spec.Addr)
		if err != nil {
			return nil, fmt.Errorf("listen udp %s: %w", spec.Addr, err)
		}
		l.Bound = pc.LocalAddr().(*net.UDPAddr).AddrPort()
		l.closer = pc.Close
		if uc, ok := pc.(*net.UDPConn); ok {
			pc = newRawUDP(uc)
		}
		if s.opts.Outbound != nil || s.opts.Capture != nil {
			pc = &guardedPacketConn{PacketConn: pc, s: s, local: l.Bound}
		}
		s.udpConns.Store(l.Bound, pc)
		served := make(chan struct{})
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer close(served)
			if err := s.srv.ServeUDP(pc); err != nil && !errors.Is(err, net.ErrClosed) {
				s.log.Error("udp listener stopped", "addr", spec.Addr, "error", err)
			}
		}()
		if err := s.waitServing(pc.LocalAddr().String(), served); err != nil {
			l.closer()
			return nil, err
		}
	case "tcp", "tls", "wss":
		if spec.Transport != "tcp" && s.opts.TLS == nil {
			return nil, fmt.Errorf("listen %s %s: no certificate configured (tls section)", spec.Transport, spec.Addr)
		}
		ln, err := net.Listen("tcp", spec.Addr)
		if err != nil {
			return nil, fmt.Errorf("listen %s %s: %w", spec.Transport, spec.Addr, err)
		}
		l.Bound = ln.Addr().(*net.TCPAddr).AddrPort()
		inner, msgTimeout := ln, s.opts.MessageTimeout
		if spec.Transport != "tcp" {
			lo := s.opts.TLSListener
			onRefused := lo.OnRefused
			lo.OnRefused = func() {
				s.Stats.HandshakesRefused.Add(1)
				if onRefused != nil {
					onRefused()
				}
			}
			inner = sbctls.NewListener(ln, s.opts.TLS, lo)
		}
		if spec.Transport == "wss" {
			// WebSocket frames are not SIP text: the byte scan that bounds
			// a message's arrival does not apply; the idle deadline does.
			msgTimeout = 0
		}
		lim := newLimitListener(inner, s.opts.MaxConns, s.opts.MaxConnsPerSource, msgTimeout, &s.Stats)
		lim.transport, lim.local, lim.idle, lim.maxMsg = spec.Transport, l.Bound, s.opts.IdleTimeout, s.opts.MaxMessageSize
		if spec.Transport == "wss" {
			// WebSocket messages reach the read filter whole; the edge
			// answers them on the connection (see writeWS).
			s.mu.Lock()
			s.streams = append(s.streams, lim)
			s.mu.Unlock()
		} else {
			lim.edge = s.edge
		}
		lim.blocked = s.opts.Blocked
		lim.admit = s.opts.Admit
		if s.opts.Outbound != nil {
			lim.outbound = s.outbound
		}
		if spec.Transport != "tcp" {
			lim.peerCerts = &s.peerCerts
		}
		if s.opts.Capture != nil {
			lim.capture = s.opts.Capture
		}
		l.closer = lim.Close
		serve := map[string]func(net.Listener) error{"tcp": s.srv.ServeTCP, "tls": s.srv.ServeTLS, "wss": s.srv.ServeWSS}[spec.Transport]
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := serve(lim); err != nil && !errors.Is(err, net.ErrClosed) {
				s.log.Debug("stream listener stopped", "transport", spec.Transport, "addr", spec.Addr, "error", err)
			}
		}()
	default:
		return nil, fmt.Errorf("listen %s: transport %q not supported", spec.Addr, spec.Transport)
	}
	adv, err := advertiseAddr(spec.Advertise, l.Bound)
	if err != nil {
		l.closer()
		return nil, err
	}
	l.Advertise = adv
	return l, nil
}

// waitServing waits until sipgo serves the UDP socket bound to addr. A
// request sent from the socket (Laddr) before that would make sipgo bind a
// second socket to the same address, and fail: health checks go out as soon
// as the server has started.
func (s *Server) waitServing(addr string, served <-chan struct{}) error {
	tl := s.ua.TransportLayer()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for range 5000 {
		if _, err := tl.GetConnection("udp", addr); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-served:
			return fmt.Errorf("listen udp %s: listener stopped at start", addr)
		case <-tick.C:
		}
	}
	return fmt.Errorf("listen udp %s: not served within 5s", addr)
}

// advertiseAddr resolves the host:port written in our headers.
func advertiseAddr(adv string, bound netip.AddrPort) (sip.Addr, error) {
	port := int(bound.Port())
	if adv != "" {
		host, p, err := net.SplitHostPort(adv)
		if err != nil {
			host = strings.Trim(adv, "[]")
		} else if n, err := strconv.Atoi(p); err == nil {
			port = n
		}
		ip := net.ParseIP(host)
		if ip == nil {
			return sip.Addr{Hostname: host, Port: port}, nil
		}
		return sip.Addr{IP: ip, Port: port}, nil
	}
	ip := bound.Addr()
	if ip.IsUnspecified() {
		ip = firstHostAddr(ip.Is6() && !ip.Is4In6())
	}
	return sip.Addr{IP: net.IP(ip.AsSlice()), Port: port}, nil
}

// firstHostAddr finds an address to advertise when bound to a wildcard.
func firstHostAddr(v6 bool) netip.Addr {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := pfx.Addr()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.Is6() != v6 {
			continue
		}
		return ip
	}
	if v6 {
		return netip.IPv6Loopback()
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1})
}

// Close stops the listeners and the user agent. Safe to call twice.
func (s *Server) Close() {
	s.mu.Lock()
	ls := s.listeners
	s.listeners = nil
	s.mu.Unlock()
	for _, l := range ls {
		l.closer()
	}
	if len(ls) > 0 {
		s.ua.Close()
	}
	s.wg.Wait()
}

// readFilter runs before parsing. It must never return an error: on UDP an
// error stops sipgo's listener.
func (s *Server) readFilter(props sip.TransportReadProps, data []byte) ([]byte, error) {
	if (s.opts.Blocked != nil || s.opts.Admit != nil) && !wire.IsStream(props.Transport) {
		if ua, ok := props.RemoteAddr.(*net.UDPAddr); ok {
			src := ua.AddrPort().Addr().Unmap()
			if s.opts.Blocked != nil && s.opts.Blocked(src) {
				s.Stats.Blocked.Add(1)
				return nil, nil
			}
			if s.opts.Admit != nil && !s.opts.Admit(src, data) {
				s.Stats.Prefiltered.Add(1)
				return nil, nil
			}
		}
	}
	if wire.IsStream(props.Transport) {
		// Stream reads are arbitrary segments, not messages: the parser's
		// size cap and the sanity layer judge them after framing.
		return data, nil
	}
	res := wire.PreParse(props.Transport, data, s.opts.MaxMessageSize)
	switch res.Action {
	case wire.Accept:
		var resp *sip.Response
		if res.Response && s.opts.ResponseFilter != nil {
			if resp = s.responseOK(res.Data); resp == nil {
				s.countDrop(wire.ReasonNone)
				return nil, nil
			}
		}
		if s.opts.Capture != nil {
			s.captureRead(props, res.Data)
		}
		if resp != nil && s.deliver(props, resp) {
			return nil, nil
		}
		if !res.Response {
			// Requests are the edge's: sipgo's transaction layer never
			// sees them.
			s.receiveMessage(props, res.Data)
			return nil, nil
		}
		return res.Data, nil
	case wire.Keepalive:
		s.Stats.Keepalives.Add(1)
		return nil, nil
	}
	s.countDrop(res.Reason)
	return nil, nil
}

// receiveMessage parses a request read whole (a datagram, a WebSocket
// message) and hands it to the edge. An unparsable one is dropped and
// counted: there is nothing to answer it with.
func (s *Server) receiveMessage(props sip.TransportReadProps, data []byte) {
	peer, ok1 := addrPortOf(props.RemoteAddr)
	local, ok2 := addrPortOf(props.LocalAddr)
	if !ok1 || !ok2 {
		s.countDrop(wire.ReasonNone)
		return
	}
	f := &flow{transport: lowerTransport(props.Transport), peer: peer}
	switch f.transport {
	case "udp":
		pcv, found := s.udpConns.Load(s.udpBound(local))
		if !found {
			s.countDrop(wire.ReasonNone)
			return
		}
		pc, dst := pcv.(net.PacketConn), net.UDPAddrFromAddrPort(peer)
		f.local = local
		f.write = func(b []byte) error { _, err := pc.WriteTo(b, dst); return err }
	case "ws", "wss":
		c := s.streamConn(peer)
		if c == nil {
			s.countDrop(wire.ReasonNone)
			return
		}
		f.local, f.stream = c.l.local, c
		f.write = s.streamWriter(f.transport, peer)
	default:
		s.countDrop(wire.ReasonNone)
		return
	}
	// The read buffer is the transport's, reused for the next datagram;
	// the parser copies what it keeps (header values, body) and parses
	// before this returns, so no copy of data is needed.
	req, err := s.parseRequest(data, f)
	if err != nil {
		s.countDrop(wire.ReasonNone)
		return
	}
	s.edge.receive(req, f, len(data))
}

// parseRequest parses one whole request and sets what sipgo's transport
// would have: transport name and source.
func (s *Server) parseRequest(data []byte, f *flow) (*sip.Request, error) {
	msg, err := s.reqParser().ParseSIP(data)
	if err != nil {
		return nil, err
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		return nil, errors.New("not a request")
	}
	req.SetTransport(strings.ToUpper(f.transport))
	req.SetSource(f.peer.String())
	req.SetDestination(f.local.String())
	return req, nil
}

// streamWriter writes the edge's answers on a stream flow through sipgo's
// own connection for it, which serialises them with sipgo's writes (a
// WebSocket frame is two writes), frames them for WebSocket and sets the
// write deadline (limits.tcp.write_timeout): a peer that stops reading
// makes the write fail, it does not hold the answering goroutine.
func (s *Server) streamWriter(transport string, peer netip.AddrPort) func([]byte) error {
	return func(b []byte) error {
		c, err := s.ua.TransportLayer().GetConnection(transport, peer.String())
		if err != nil {
			return err
		}
		w, ok := c.(io.Writer)
		if !ok {
			return errors.New("edge: connection cannot write")
		}
		_, err = w.Write(b)
		return err
	}
}

// reqParser returns the parser for whole requests (it keeps no state
// between calls and is safe for concurrent use).
func (s *Server) reqParser() *sip.Parser { return s.parser }

// udpBound maps the local address a datagram arrived on to the bound
// address of its listener (a wildcard listener reports the wildcard).
func (s *Server) udpBound(local netip.AddrPort) netip.AddrPort {
	if _, ok := s.udpConns.Load(local); ok {
		return local
	}
	found := local
	s.udpConns.Range(func(k, _ any) bool {
		if b := k.(netip.AddrPort); b.Port() == local.Port() && b.Addr().IsUnspecified() {
			found = b
			return false
		}
		return true
	})
	return found
}

// streamConn finds the accepted WebSocket connection of a peer.
func (s *Server) streamConn(peer netip.AddrPort) *limitConn {
	s.mu.Lock()
	ls := s.streams
	s.mu.Unlock()
	for _, l := range ls {
		if c, ok := l.conns.Load(peer); ok {
			return c.(*limitConn)
		}
	}
	return nil
}

// outbound applies the Outbound filter to a message for dst: the bytes
// to send, or false; messages to internal peers are not judged.
func (s *Server) outbound(dst netip.AddrPort, msg []byte) ([]byte, bool) {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if s.opts.IsInternal != nil && s.opts.IsInternal(dst.Addr()) {
		return msg, true
	}
	out, send := s.opts.Outbound(dst, msg)
	if !send {
		s.Stats.OutboundBlocked.Add(1)
		return nil, false
	}
	if out == nil {
		return msg, true
	}
	if !sameBytes(out, msg) {
		s.Stats.OutboundChanged.Add(1)
	}
	return out, true
}

// guardedPacketConn passes every datagram written through the Outbound
// filter. A stopped datagram is reported as written: the transaction layer
// retransmits or times out as if it were lost.
type guardedPacketConn struct {
	net.PacketConn
	s     *Server
	local netip.AddrPort
}

func (c *guardedPacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	n := len(b)
	if ua, ok := addr.(*net.UDPAddr); ok {
		dst := ua.AddrPort()
		if c.s.opts.Outbound != nil {
			out, send := c.s.outbound(dst, b)
			if !send {
				return n, nil
			}
			b = out
		}
		if c.s.opts.Capture != nil {
			c.s.opts.Capture(c.local, netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()), "udp", b)
		}
	}
	if _, err := c.PacketConn.WriteTo(b, addr); err != nil {
		return 0, err
	}
	return n, nil // what the caller gave was written, as far as it knows
}

// captureRead copies a datagram (or WebSocket message) accepted by the
// pre-parse filter to Options.Capture.
func (s *Server) captureRead(props sip.TransportReadProps, data []byte) {
	src, ok1 := addrPortOf(props.RemoteAddr)
	dst, ok2 := addrPortOf(props.LocalAddr)
	if ok1 && ok2 {
		s.opts.Capture(src, dst, strings.ToLower(props.Transport), data)
	}
}

func addrPortOf(a net.Addr) (netip.AddrPort, bool) {
	var ap netip.AddrPort
	switch v := a.(type) {
	case *net.UDPAddr:
		ap = v.AddrPort()
	case *net.TCPAddr:
		ap = v.AddrPort()
	default:
		return ap, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// responseOK parses a response datagram and asks the response filter: a
// response never reaches a transaction unless it is well-formed. It
// returns the parsed response, or nil.
func (s *Server) responseOK(data []byte) *sip.Response {
	msg, err := s.parser.ParseSIP(data)
	if err != nil {
		return nil
	}
	res, ok := msg.(*sip.Response)
	if !ok || !s.opts.ResponseFilter(res) {
		return nil
	}
	return res
}

// deliver hands a response read whole (a datagram, a WebSocket
// message), already parsed and vetted, to the client transaction waiting
// for it (started with Send on this server's client), as sipgo's
// transport and transaction layers would: source and transport set,
// OnResponse in read order, the transaction fed on a goroutine of its
// own (it blocks until its owner takes the response). It reports false
// when no such transaction is registered; the message then goes to
// sipgo, which parses it again.
func (s *Server) deliver(props sip.TransportReadProps, res *sip.Response) bool {
	key, err := sip.ClientTxKeyMake(res)
	if err != nil {
		return false
	}
	v, ok := pending.Load(key)
	if !ok || v.(pendingTx).c != s.client {
		return false
	}
	res.SetTransport(props.Transport)
	res.SetSource(props.RemoteAddr.String())
	if s.opts.OnResponse != nil {
		s.opts.OnResponse(res)
	}
	s.Stats.Delivered.Add(1)
	go v.(pendingTx).tx.Receive(res)
	return true
}

func (s *Server) countDrop(r wire.Reason) {
	s.Stats.Dropped.Add(1)
	if int(r) < len(s.Stats.PreParseDrops) {
		s.Stats.PreParseDrops[r].Add(1)
	}
}

type writer struct {
	tx      sip.ServerTransaction
	etx     *edgeTx
	r       *Request
	written atomic.Int32
	// stateless: the final answer went out once, without a transaction.
	stateless atomic.Bool
	// layer is the chain layer now serving the request ("" at the root).
	layer atomic.Pointer[string]
	// sem is the admission semaphore the request holds a slot of, until
	// release (once).
	sem  chan struct{}
	once sync.Once
}

// release frees the request's admission slot, once.
func (w *writer) release() {
	w.once.Do(func() { <-w.sem })
}

// lowerTransport is strings.ToLower for the transports' names, without
// an allocation for the usual ones.
func lowerTransport(t string) string {
	switch t {
	case "UDP", "udp":
		return "udp"
	case "TCP", "tcp":
		return "tcp"
	case "TLS", "tls":
		return "tls"
	case "WS", "ws":
		return "ws"
	case "WSS", "wss":
		return "wss"
	}
	return strings.ToLower(t)
}

// gatekeeper reports whether a layer (name, nil for the root) decides
// whether a request may pass at all. Its refusals of unvouched requests
// are stateless; what the forwarding layers (registrar, b2bua) send,
// the upstream's answers among it, goes in a transaction.
func gatekeeper(name *string) bool {
	if name == nil {
		return true
	}
	switch *name {
	case "registrar", "b2bua":
		return false
	}
	return true
}

func (w *writer) Respond(res *sip.Response) error {
	if w.tx == nil {
		return errors.New("no transaction to respond in")
	}
	if res.StatusCode >= 200 && w.etx != nil && w.unvouched() {
		switch {
		case gatekeeper(w.layer.Load()):
			return w.respondStateless(res, true)
		case !w.etx.invite:
			// Relayed or answered by a forwarding layer for a request
			// nobody vouched for (auth off, a CANCEL, a stray BYE): sent
			// once, no transaction held, so such requests cannot fill the
			// table; an INVITE keeps its transaction (its 2xx and ACK).
			return w.respondStateless(res, false)
		}
	}
	if res.StatusCode >= 200 {
		w.written.CompareAndSwap(0, int32(res.StatusCode))
	}
	return w.tx.Respond(res)
}

// unvouched: a request from outside that nobody vouches for yet — not
// authenticated, not from a trusted peer, not inside a dialog the SBC
// owns. Its final answer is sent statelessly, once.
func (w *writer) unvouched() bool {
	r := w.r
	return r != nil && r.Side == External && r.Identity == nil && !r.Owned
}

// respondStateless sends a final answer once and keeps no transaction:
// nothing retransmits it, and over UDP a source is never sent more bytes
// than its requests brought (cut by fit, else not sent: see budget), so
// that a forged source address cannot turn the SBC into an amplifier.
func (w *writer) respondStateless(res *sip.Response, budgeted bool) error {
	if !w.written.CompareAndSwap(0, int32(res.StatusCode)) {
		return nil
	}
	e := w.etx.e
	if !budgeted {
		e.stateless.Add(1)
		w.stateless.Store(true)
		return w.etx.respond(res, true)
	}
	if to := res.To(); to != nil && res.StatusCode != 100 {
		// A short tag: nothing ever refers back to it (the next request
		// is a new transaction), and every byte counts below.
		to.Params.Remove("tag")
		to.Params.Add("tag", shortTag())
	}
	if f := w.etx.flow; !f.reliable() {
		// Within the request's own size if it can be cut to that; only an
		// answer that cannot (a challenge to a small request) draws on what
		// the source sent before, so that a burst of requests is answered
		// one each rather than the first ones in full and the rest not.
		ip, size := f.peer.Addr(), w.etx.size
		cut, trimmed := fit(res, size)
		if cut == nil {
			cut, trimmed = fit(res, e.budget.available(ip, size))
		}
		if cut == nil || !e.budget.spend(ip, wireLen(cut), size) {
			e.amplification.Add(1)
			w.stateless.Store(true)
			return nil
		}
		if trimmed {
			e.trimmed.Add(1)
		}
		res = cut
	}
	e.stateless.Add(1)
	w.stateless.Store(true)
	return w.etx.respond(res, true)
}

// shortTag is a random tag of 8 hex digits.
func shortTag() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// finish ends the edge transaction after the chain: at once when its
// answer was stateless or nothing final was sent for an unvouched
// request; otherwise the transaction runs its timers (a request left
// without a final answer is held 32 s, so its retransmissions are
// absorbed, then dropped).
func (w *writer) finish() {
	tx := w.etx
	switch {
	case w.stateless.Load():
		tx.terminate(nil)
	case w.Written() == 0 && (w.unvouched() || tx.isAck):
		tx.terminate(nil)
	case w.Written() == 0:
		tx.mu.Lock()
		if tx.state < txCompleted {
			tx.after(64*sip.T1, func() { tx.terminate(nil) })
		}
		tx.mu.Unlock()
	}
}

// MatchCancel applies the CANCEL answered through w to the INVITE
// transaction it names (same flow, branch, Call-ID, From tag, CSeq
// number, To): the CANCEL gets 200, then the INVITE 487 and its OnCancel
// callbacks run. It reports whether one matched; when none did, nothing
// was sent and the caller answers 481.
func MatchCancel(w ResponseWriter) bool {
	ww, ok := w.(*writer)
	if !ok || ww.etx == nil {
		return false
	}
	// Taken before the 200 below makes it slim.
	creq := ww.etx.request()
	if !creq.IsCancel() {
		return false
	}
	tx := ww.etx.e.findCancel(creq, ww.etx.flow)
	if tx == nil {
		return false
	}
	_ = w.Respond(sip.NewResponseFromRequest(creq, 200, "OK", nil))
	tx.cancel(creq)
	return true
}
func (w *writer) Tx() sip.ServerTransaction { return w.tx }
func (w *writer) Written() int              { return int(w.written.Load()) }

type releaseKey struct{}

// ReleaseAdmission frees the request's admission slot early. The B2BUA calls
// it once a call is in the (separately bounded) dialog table, so ringing
// calls do not hold in-flight slots.
func ReleaseAdmission(ctx context.Context) {
	if w, ok := ctx.Value(releaseKey{}).(*writer); ok {
		w.release()
	}
}

// dispatch is the root of the chain: recover, admission, peer, order.
// tx is an edge transaction for requests read on the listeners, sipgo's
// for requests on connections the SBC opened itself (an upstream's
// requests on our TCP/TLS connection to it).
func (s *Server) dispatch(req *sip.Request, tx sip.ServerTransaction) {
	s.Stats.Requests.Add(1)
	et, _ := tx.(*edgeTx)
	w := &writer{tx: tx, etx: et}
	if et != nil {
		// Whatever the chain did, the transaction ends as it must: at
		// once when nothing was sent or the answer was stateless.
		defer w.finish()
	}
	r := &Request{Request: req, Transport: lowerTransport(req.Transport())}
	w.r = r
	if et != nil {
		r.Local = et.flow.local
	}
	if ap, err := netip.ParseAddrPort(req.MessageData.Source()); err == nil {
		r.Peer = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	} else {
		// Without a transport peer no decision can be made safely.
		s.Stats.Dropped.Add(1)
		return
	}
	if s.opts.IsInternal != nil && s.opts.IsInternal(r.Peer.Addr()) {
		r.Side = Internal
	}
	select {
	case s.sem <- struct{}{}:
	default:
		s.Stats.Overload.Add(1)
		if !req.IsAck() && sip.IsReliable(req.Transport()) && tx != nil {
			_ = w.Respond(sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil))
		}
		return
	}
	w.sem = s.sem
	defer w.release()
	defer func() {
		if v := recover(); v != nil {
			s.Stats.Panics.Add(1)
			s.log.Error("panic in chain", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
	}()

	if r.Transport == "tls" || r.Transport == "wss" {
		if pc, ok := s.peerCerts.Load(r.Peer); ok {
			r.PeerCert = pc.(*PeerCert)
		}
	}
	ctx := context.WithValue(context.Background(), releaseKey{}, w)
	if !req.IsInvite() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.RequestTimeout)
		defer cancel()
	}
	chain, names := s.chain()
	for i, h := range chain {
		w.layer.Store(names[i])
		v, err := h.ServeSIP(ctx, w, r)
		if err != nil {
			s.Stats.Errors.Add(1)
			s.log.Warn("layer failed", "layer", h.Name(), "method", string(req.Method), "error", err)
			if w.Written() == 0 && !req.IsAck() && tx != nil {
				_ = w.Respond(sip.NewResponseFromRequest(req, 500, "Server Internal Error", nil))
			}
			if r.Why == "" {
				r.Why = "error"
			}
			s.decided(r, h.Name(), Rejected, w)
			return
		}
		switch v {
		case Continue:
			if et != nil && !w.unvouched() {
				// Past the edge's checks and known: a slow answer gets
				// 100 Trying from here on.
				et.armTrying()
			}
			continue
		case Forwarded:
			s.Stats.Forwarded.Add(1)
		case Answered:
			s.Stats.Answered.Add(1)
		case Rejected:
			s.Stats.Rejected.Add(1)
		case Dropped:
			s.Stats.Dropped.Add(1)
		}
		s.decided(r, h.Name(), v, w)
		return
	}
	// No layer took it: nothing in the chain serves this method.
	if !req.IsAck() && tx != nil && w.Written() == 0 {
		s.Stats.Rejected.Add(1)
		_ = tx.Respond(sip.NewResponseFromRequest(req, 501, "Not Implemented", nil))
		r.Why = "method not served"
		s.decided(r, "", Rejected, w)
	}
}

// decided tells Options.OnDecision about a finished request.
func (s *Server) decided(r *Request, layer string, v Verdict, w *writer) {
	if s.opts.OnDecision != nil {
		s.opts.OnDecision(r, layer, v, w.Written())
	}
}

// ErrDialRefused is returned for a stream connection to an address that is
// not an upstream or trunk.
var ErrDialRefused = errors.New("connection to this address not allowed")

// dialer is sipgo's TCP dialer with the destination vetted before connect.
func (s *Server) dialer(laddr net.Addr) net.Dialer {
	return net.Dialer{
		Timeout:   10 * time.Second,
		LocalAddr: laddr,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || s.opts.DialAllowed == nil || !s.opts.DialAllowed(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())) {
				s.Stats.DialsRefused.Add(1)
				return fmt.Errorf("dial %s: %w", address, ErrDialRefused)
			}
			return nil
		},
	}
}

// noDNS is a resolver that never sends a query.
var noDNS = &net.Resolver{
	PreferGo: true,
	Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("name resolution is disabled")
	},
}
