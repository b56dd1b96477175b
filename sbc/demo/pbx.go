// Package demo is a tiny PBX that `sipwall demo` runs on loopback behind the
// SBC, so a newcomer can place a call without owning a real PBX. It is a
// plain SIP UAS on sipgo with a small dialog table of its own; see README.md
// for what each extension does.
package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Extensions the PBX answers. Any other Request-URI user gets 404.
const (
	ExtEcho   = "1000" // rings, answers, echoes RTP
	ExtBusy   = "1001" // rings, then 486 Busy Here
	ExtRing   = "1002" // rings until CANCEL or the ring timeout
	ExtHangup = "1003" // answers, then hangs up from the PBX side
)

const (
	defaultRingDelay       = 100 * time.Millisecond
	defaultHangupAfter     = 2 * time.Second
	defaultRingTimeout     = 3 * time.Minute
	defaultMaxCallDuration = time.Hour
	defaultMaxDialogs      = 256
	defaultUserAgent       = "sipwall-demo-pbx"

	// receivedCap is how many requests Received remembers.
	receivedCap = 256
	// ringRefresh re-sends 180 while ringing, as RFC 3261 section 13.3.1.1
	// asks, so stateful middleboxes keep the transaction.
	ringRefresh = time.Minute
)

// Options tunes the PBX. Zero values select the defaults noted per field.
type Options struct {
	// Logger receives PBX and sipgo logs; nil discards them.
	Logger *slog.Logger
	// RingDelay is the wait between the INVITE and 180 Ringing. Default
	// 100ms; a negative value sends 180 at once.
	RingDelay time.Duration
	// AnswerAfter is the wait between 180 and the final answer of 1000,
	// 1001 and 1003. Default 0.
	AnswerAfter time.Duration
	// HangupAfter is how long 1003 stays up after its ACK before the PBX
	// sends BYE. Default 2s.
	HangupAfter time.Duration
	// RingTimeout ends a 1002 call nobody cancels with 480. Default 3m.
	RingTimeout time.Duration
	// MaxCallDuration ends any established call with a BYE. Default 1h.
	MaxCallDuration time.Duration
	// MaxDialogs bounds ringing plus established calls; more get 503.
	// Default 256.
	MaxDialogs int
	// UserAgent goes into Server and User-Agent headers. Default
	// "sipwall-demo-pbx".
	UserAgent string
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.RingDelay == 0:
		o.RingDelay = defaultRingDelay
	case o.RingDelay < 0:
		o.RingDelay = 0
	}
	if o.AnswerAfter < 0 {
		o.AnswerAfter = 0
	}
	if o.HangupAfter <= 0 {
		o.HangupAfter = defaultHangupAfter
	}
	if o.RingTimeout <= 0 {
		o.RingTimeout = defaultRingTimeout
	}
	if o.MaxCallDuration <= 0 {
		o.MaxCallDuration = defaultMaxCallDuration
	}
	if o.MaxDialogs <= 0 {
		o.MaxDialogs = defaultMaxDialogs
	}
	if o.UserAgent == "" {
		o.UserAgent = defaultUserAgent
	}
	return o
}

// Stats counts what the PBX has seen since Start.
type Stats struct {
	Invites      uint64 // initial INVITEs (re-INVITEs are counted apart)
	Answered     uint64 // calls answered with 200 OK
	Busy         uint64 // calls refused with 486
	Cancels      uint64 // ringing calls ended by CANCEL
	ByesReceived uint64 // BYEs that matched a dialog
	ByesSent     uint64 // BYEs the PBX sent (1003, no ACK, max duration)
	ReInvites    uint64 // re-INVITEs that matched a dialog
	Active       int    // established dialogs right now
}

type lifecycle int

const (
	stateNew lifecycle = iota
	stateRunning
	stateClosed
)

// PBX is the demo PBX. Create it with New, then Start it.
type PBX struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	state     lifecycle
	dialogs   map[string]*dialog
	udpConn   *net.UDPConn
	tcpLn     *net.TCPListener
	udpBound  netip.AddrPort
	tcpBound  netip.AddrPort
	mediaIP   netip.Addr
	stopWatch func() bool

	// ctx ends when the PBX shuts down; every wait in a handler or dialog
	// goroutine selects on it.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts handlers in flight and the goroutines the PBX starts; Close
	// waits for it before tearing the transport down.
	wg      sync.WaitGroup
	serveWG sync.WaitGroup

	ua  *sipgo.UserAgent
	srv *sipgo.Server
	cli *sipgo.Client

	closeOnce sync.Once
	closeErr  error

	recvMu   sync.Mutex
	received [receivedCap]string
	recvNext int
	recvLen  int

	invites, answered, busy, cancels atomic.Uint64
	byesIn, byesOut, reinvites       atomic.Uint64
}

// New returns a PBX that is not yet listening.
func New(opts Options) *PBX {
	opts = opts.withDefaults()
	return &PBX{
		opts:    opts,
		log:     opts.Logger.With("component", "demo-pbx"),
		dialogs: make(map[string]*dialog),
	}
}

// Start binds udpAddr and tcpAddr (host:port; port 0 picks a free one, an
// empty address skips that transport) and serves in the background. It
// returns once both are bound. The PBX stops when ctx is done or Close is
// called, whichever comes first.
func (p *PBX) Start(ctx context.Context, udpAddr, tcpAddr string) (err error) {
	if udpAddr == "" && tcpAddr == "" {
		return errors.New("demo pbx: no address to listen on")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != stateNew {
		return errors.New("demo pbx: Start called twice or after Close")
	}
	// A failed Start leaves the PBX closed: nothing half-bound survives.
	p.state = stateClosed
	defer func() {
		if err != nil {
			if p.udpConn != nil {
				_ = p.udpConn.Close()
			}
			if p.tcpLn != nil {
				_ = p.tcpLn.Close()
			}
			if p.ua != nil {
				_ = p.ua.Close()
			}
		}
	}()

	if udpAddr != "" {
		a, err := net.ResolveUDPAddr("udp", udpAddr)
		if err != nil {
			return fmt.Errorf("demo pbx: udp address: %w", err)
		}
		if p.udpConn, err = net.ListenUDP("udp", a); err != nil {
			return fmt.Errorf("demo pbx: listen udp: %w", err)
		}
		p.udpBound = unmapped(p.udpConn.LocalAddr().(*net.UDPAddr).AddrPort())
	}
	if tcpAddr != "" {
		a, err := net.ResolveTCPAddr("tcp", tcpAddr)
		if err != nil {
			return fmt.Errorf("demo pbx: tcp address: %w", err)
		}
		if p.tcpLn, err = net.ListenTCP("tcp", a); err != nil {
			return fmt.Errorf("demo pbx: listen tcp: %w", err)
		}
		p.tcpBound = unmapped(p.tcpLn.Addr().(*net.TCPAddr).AddrPort())
	}
	p.mediaIP = pickMediaIP(p.udpBound, p.tcpBound)

	log := p.opts.Logger.With("component", "demo-pbx-sip")
	p.ua, err = sipgo.NewUA(
		sipgo.WithUserAgent(p.opts.UserAgent),
		sipgo.WithUserAgentHostname(p.mediaIP.String()),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(log)),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(log)),
	)
	if err != nil {
		return fmt.Errorf("demo pbx: user agent: %w", err)
	}
	if p.srv, err = sipgo.NewServer(p.ua, sipgo.WithServerLogger(log)); err != nil {
		return fmt.Errorf("demo pbx: server: %w", err)
	}
	if p.cli, err = sipgo.NewClient(p.ua,
		sipgo.WithClientLogger(log),
		// Via sent-by of requests the PBX sends; the port comes from the socket.
		sipgo.WithClientHostname(p.mediaIP.String()),
	); err != nil {
		return fmt.Errorf("demo pbx: client: %w", err)
	}
	p.routes()

	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.state = stateRunning
	if p.udpConn != nil {
		p.serveWG.Add(1)
		go func() {
			defer p.serveWG.Done()
			_ = p.srv.ServeUDP(p.udpConn)
		}()
	}
	if p.tcpLn != nil {
		p.serveWG.Add(1)
		go func() {
			defer p.serveWG.Done()
			// Accept fails once Close shuts the listener; that is the normal exit.
			_ = p.srv.ServeTCP(p.tcpLn)
		}()
	}
	// AfterFunc starts no goroutine until ctx ends; Close cancels it.
	p.stopWatch = context.AfterFunc(ctx, func() { _ = p.Close() })
	p.log.Info("demo pbx listening", "udp", p.udpBound, "tcp", p.tcpBound, "media_ip", p.mediaIP)
	return nil
}

// Close stops the PBX: pending INVITEs get 503, established calls are
// dropped without BYE, echo sockets and listeners close, and every goroutine
// the PBX started has ended when Close returns. It is safe to call more than
// once and from several goroutines.
func (p *PBX) Close() error {
	p.closeOnce.Do(func() { p.closeErr = p.shutdown() })
	return p.closeErr
}

func (p *PBX) shutdown() error {
	p.mu.Lock()
	wasRunning := p.state == stateRunning
	p.state = stateClosed
	stop := p.stopWatch
	p.mu.Unlock()
	if stop != nil {
		stop()
	}
	if !wasRunning {
		return nil
	}

	// Wake every wait; handlers answer or drop and dialog goroutines end
	// their dialogs. No handler can join after state became closed.
	p.cancel()
	p.wg.Wait()
	for _, d := range p.snapshotDialogs() {
		p.endDialog(d)
	}

	var errs []error
	if p.udpConn != nil {
		errs = append(errs, ignoreClosed(p.udpConn.Close()))
	}
	if p.tcpLn != nil {
		errs = append(errs, ignoreClosed(p.tcpLn.Close()))
	}
	p.serveWG.Wait()
	errs = append(errs, p.ua.Close())
	p.log.Info("demo pbx stopped")
	return errors.Join(errs...)
}

// Addr returns the bound address for "udp" or "tcp" (any case); it is the
// zero AddrPort before Start or for a transport that is not served.
func (p *PBX) Addr(transport string) netip.AddrPort {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch strings.ToLower(transport) {
	case "udp":
		return p.udpBound
	case "tcp":
		return p.tcpBound
	}
	return netip.AddrPort{}
}

// Stats returns a snapshot of the counters.
func (p *PBX) Stats() Stats {
	s := Stats{
		Invites:      p.invites.Load(),
		Answered:     p.answered.Load(),
		Busy:         p.busy.Load(),
		Cancels:      p.cancels.Load(),
		ByesReceived: p.byesIn.Load(),
		ByesSent:     p.byesOut.Load(),
		ReInvites:    p.reinvites.Load(),
	}
	p.mu.Lock()
	for _, d := range p.dialogs {
		if d.isEstablished() {
			s.Active++
		}
	}
	p.mu.Unlock()
	return s
}

// Received returns "METHOD Request-URI" for the most recent requests that
// reached the PBX's handlers, oldest first (at most 256). A CANCEL that
// matches a ringing call is listed too. Retransmissions the transaction
// layer absorbs, and ACKs of non-2xx answers, are not.
func (p *PBX) Received() []string {
	p.recvMu.Lock()
	defer p.recvMu.Unlock()
	out := make([]string, 0, p.recvLen)
	start := (p.recvNext - p.recvLen + receivedCap) % receivedCap
	for i := range p.recvLen {
		out = append(out, p.received[(start+i)%receivedCap])
	}
	return out
}

func (p *PBX) record(req *sip.Request) {
	p.recordLine(req.Method, req.Recipient)
}

func (p *PBX) recordLine(method sip.RequestMethod, uri sip.Uri) {
	line := string(method) + " " + uri.String()
	p.recvMu.Lock()
	p.received[p.recvNext] = line
	p.recvNext = (p.recvNext + 1) % receivedCap
	if p.recvLen < receivedCap {
		p.recvLen++
	}
	p.recvMu.Unlock()
}

// enter admits a handler or goroutine into wg unless the PBX is closing,
// so that wg.Add never races Close's wg.Wait.
func (p *PBX) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != stateRunning {
		return false
	}
	p.wg.Add(1)
	return true
}

// spawn runs f on wg. Callers already hold a wg slot (they run inside a
// handler or a dialog goroutine), so the counter is above zero and Add is
// safe even while Close waits.
func (p *PBX) spawn(f func()) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
}

// contactFor is the PBX's own Contact for a request that came in on
// transport; in-dialog requests come back to the same listener.
func (p *PBX) contactFor(transport string) *sip.ContactHeader {
	p.mu.Lock()
	bound := p.udpBound
	if sip.IsReliable(transport) {
		bound = p.tcpBound
	}
	p.mu.Unlock()
	host := bound.Addr()
	if !host.IsValid() || host.IsUnspecified() {
		host = p.mediaIP
	}
	uri := sip.Uri{Scheme: "sip", User: "pbx", Host: host.String(), Port: int(bound.Port())}
	if sip.IsReliable(transport) {
		uri.UriParams = sip.NewParams()
		uri.UriParams.Add("transport", "tcp")
	}
	return &sip.ContactHeader{Address: uri}
}

// pickMediaIP chooses the address put in SDP c= lines and used for echo
// sockets: the UDP listener's IP, else the TCP one, else loopback when the
// PBX listens on a wildcard address.
func pickMediaIP(udp, tcp netip.AddrPort) netip.Addr {
	for _, a := range []netip.AddrPort{udp, tcp} {
		if a.IsValid() && !a.Addr().IsUnspecified() {
			return a.Addr()
		}
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1})
}

func unmapped(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// newSessionID gives each dialog's SDP origin a distinct session id.
func newSessionID() uint64 {
	return rand.Uint64N(1<<62) + 1
}
