package upstream

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// SIPPinger is a Pinger that sends SIP OPTIONS through a sipgo client.
type SIPPinger struct {
	// Client sends the requests; its user agent must not be closed while
	// the pinger is in use.
	Client *sipgo.Client
	// FromHost is the host of the From URI. Empty means the client's
	// hostname, else the user agent's hostname.
	FromHost string
}

// NewSIPPinger returns a pinger sending through c.
func NewSIPPinger(c *sipgo.Client) *SIPPinger {
	return &SIPPinger{Client: c}
}

// Ping sends OPTIONS to t and returns the status of the final response.
// Provisional responses are skipped; when ctx ends first, it returns ctx's
// error wrapped.
func (p *SIPPinger) Ping(ctx context.Context, t Target) (int, error) {
	if p == nil || p.Client == nil {
		return 0, errors.New("sip pinger: no client")
	}
	if !t.Addr.IsValid() {
		return 0, fmt.Errorf("sip pinger: upstream %q has no address", t.Name)
	}
	req := p.newOptions(t)
	res, err := p.Client.Do(ctx, req)
	if err != nil {
		return 0, fmt.Errorf("options to %s (%s): %w", t.Name, t.Addr, err)
	}
	return res.StatusCode, nil
}

// newOptions builds a complete OPTIONS request so nothing depends on what
// sipgo would fill in: Via with rport (the answer must come back to the port
// we sent from, whatever NAT sits between), fresh tags, Max-Forwards 70 and an
// explicit Content-Length of 0.
func (p *SIPPinger) newOptions(t Target) *sip.Request {
	ruri := t.URI
	// URI headers ("?x=y") describe a request to build, they are not part of
	// a Request-URI (RFC 3261 19.1.5).
	ruri.Headers = nil
	req := sip.NewRequest(sip.OPTIONS, ruri) // copies the URI's params

	transport := strings.ToUpper(t.Transport) // sipgo names transports in upper case
	if transport == "" {
		transport = "UDP"
	}
	// Destination and transport are set explicitly so sipgo neither resolves
	// nor guesses: Addr is already the resolved IP and port.
	req.SetTransport(transport)
	req.SetDestination(t.Addr.String())

	via := &sip.ViaHeader{
		ProtocolName:    "SIP",
		ProtocolVersion: "2.0",
		Transport:       transport,
		// Empty host and zero port are filled by sipgo from the socket.
		Host:   p.Client.Hostname(),
		Params: sip.NewParams(),
	}
	via.Params.Add("branch", sip.GenerateBranch())
	via.Params.Add("rport", "")

	from := &sip.FromHeader{
		Address: sip.Uri{Scheme: "sip", User: "sipwall", Host: p.fromHost()},
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
	return req
}

func (p *SIPPinger) fromHost() string {
	switch {
	case p.FromHost != "":
		return p.FromHost
	case p.Client.Hostname() != "":
		return p.Client.Hostname()
	case p.Client.UserAgent != nil && p.Client.UserAgent.Hostname() != "":
		return p.Client.UserAgent.Hostname()
	}
	return "localhost"
}
