package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
)

// Endpoint gives the listener a check is sent from. *sbc.Server has it.
type Endpoint interface {
	Local(transport string, side sbc.Side) (*sbc.Listener, bool)
}

// ErrNoListener is returned by SIPPinger.Ping when no listener serves the
// target's transport: calls could not reach the target either.
var ErrNoListener = errors.New("no listener for the upstream's transport")

// ErrUnspecifiedVia is returned by SIPPinger.Ping when the listener's
// advertised address is a wildcard (0.0.0.0, ::): a PBX echoes the Via into
// its answer, and the server's response filter drops any response whose
// Via names such an address.
var ErrUnspecifiedVia = errors.New("listener advertises an unspecified address")

// SIPPinger is a Pinger that sends SIP OPTIONS the way the B2BUA sends its
// requests toward the upstreams: over the target's transport, from the
// listener of the target's side (over UDP from that listener's socket), with
// a Via naming the listener's advertised address. The answer comes back to
// the listener and passes the same response filter as the answers to calls.
type SIPPinger struct {
	// Client sends the requests; its user agent must not be closed while
	// the pinger is in use. It must be the client of the user agent that
	// serves Endpoint's listeners, so that their sockets are its own.
	Client *sipgo.Client
	// Endpoint gives the listener to send from.
	Endpoint Endpoint
	// FromHost is the host of the From URI. Empty means the listener's
	// advertised host.
	FromHost string
}

// NewSIPPinger returns a pinger sending through c from e's listeners.
func NewSIPPinger(c *sipgo.Client, e Endpoint) *SIPPinger {
	return &SIPPinger{Client: c, Endpoint: e}
}

// Ping sends OPTIONS to t and returns the status of the final response.
// Provisional responses are skipped; when ctx ends first, it returns ctx's
// error wrapped.
func (p *SIPPinger) Ping(ctx context.Context, t Target) (int, error) {
	if p == nil || p.Client == nil || p.Endpoint == nil {
		return 0, errors.New("sip pinger: no client or endpoint")
	}
	if !t.Addr.IsValid() {
		return 0, fmt.Errorf("sip pinger: upstream %q has no address", t.Name)
	}
	req, err := p.newOptions(t)
	if err != nil {
		return 0, fmt.Errorf("options to %s (%s): %w", t.Name, t.Addr, err)
	}
	res, err := sbc.Do(ctx, p.Client, req)
	if err != nil {
		return 0, fmt.Errorf("options to %s (%s): %w", t.Name, t.Addr, err)
	}
	return res.StatusCode, nil
}

// local picks the listener toward t: one of t's side (inside for upstreams)
// and transport, else any of that transport.
func (p *SIPPinger) local(t Target) (*sbc.Listener, string, error) {
	transport := strings.ToLower(t.Transport)
	if transport == "" {
		transport = "udp"
	}
	side := sbc.Internal
	if t.External {
		side = sbc.External
	}
	l, ok := p.Endpoint.Local(transport, side)
	if !ok || l == nil {
		return nil, "", fmt.Errorf("%w (%s)", ErrNoListener, transport)
	}
	return l, transport, nil
}

// viaHostPort is the sent-by of l: its advertised host and port, never a
// wildcard and never left for sipgo to fill in from a socket.
func viaHostPort(l *sbc.Listener) (string, int, error) {
	a := l.Advertise
	host := a.Hostname
	if a.IP != nil {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap().IsUnspecified() {
			return "", 0, fmt.Errorf("%w: %s", ErrUnspecifiedVia, a.IP)
		}
		host = ip.Unmap().String()
	}
	if host == "" || a.Port <= 0 || a.Port > 65535 {
		return "", 0, fmt.Errorf("%w: %q port %d", ErrUnspecifiedVia, host, a.Port)
	}
	return host, a.Port, nil
}

// newOptions builds a complete OPTIONS request so nothing depends on what
// sipgo would fill in: Via with the listener's advertised address and rport
// (the answer must come back to the port we sent from, whatever NAT sits
// between), fresh tags, Max-Forwards 70 and an explicit Content-Length of 0.
func (p *SIPPinger) newOptions(t Target) (*sip.Request, error) {
	l, transport, err := p.local(t)
	if err != nil {
		return nil, err
	}
	host, port, err := viaHostPort(l)
	if err != nil {
		return nil, err
	}
	ruri := t.URI
	// URI headers ("?x=y") describe a request to build, they are not part of
	// a Request-URI (RFC 3261 19.1.5).
	ruri.Headers = nil
	req := sip.NewRequest(sip.OPTIONS, ruri) // copies the URI's params

	wire := strings.ToUpper(transport) // sipgo names transports in upper case
	// Destination and transport are set explicitly so sipgo neither resolves
	// nor guesses: Addr is already the resolved IP and port.
	req.SetTransport(wire)
	req.SetDestination(t.Addr.String())
	if transport == "udp" {
		// Leave from the listener's socket: the PBX answers (to the source
		// or to the Via, both the listener) where the server reads.
		req.Laddr = sip.Addr{IP: net.IP(l.Bound.Addr().AsSlice()), Port: int(l.Bound.Port())}
	}

	via := &sip.ViaHeader{
		ProtocolName:    "SIP",
		ProtocolVersion: "2.0",
		Transport:       wire,
		Host:            host,
		Port:            port,
		Params:          sip.NewParams(),
	}
	via.Params.Add("branch", sip.GenerateBranchN(16))
	via.Params.Add("rport", "")

	fromHost := p.FromHost
	if fromHost == "" {
		fromHost = host // sipgo brackets an IPv6 address when writing
	}
	from := &sip.FromHeader{
		Address: sip.Uri{Scheme: "sip", User: "sipwall", Host: fromHost},
		Params:  sip.NewParams(),
	}
	from.Params.Add("tag", sip.GenerateTagN(16))

	to := &sip.ToHeader{
		Address: sip.Uri{Scheme: "sip", User: ruri.User, Host: ruri.Host, Port: ruri.Port},
	}
	callID := sip.CallIDHeader(sip.GenerateTagN(32))
	cseq := &sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS}
	maxFwd := sip.MaxForwardsHeader(70)

	req.AppendHeader(via)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&callID)
	req.AppendHeader(cseq)
	req.AppendHeader(&maxFwd)
	req.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	req.SetBody(nil) // adds Content-Length: 0
	return req, nil
}
