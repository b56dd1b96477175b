package siptest

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Dialog is a peer's view of one dialog, enough to script in-dialog
// requests: it keeps Call-ID, tags, the remote target and the local CSeq.
// It has no route set (the SBC under test does not Record-Route).
type Dialog struct {
	Peer *Peer
	// Dest is where requests of this dialog are sent.
	Dest      netip.AddrPort
	CallID    string
	LocalTag  string
	RemoteTag string
	// LocalURI and RemoteURI go in From and To of our requests.
	LocalURI  string
	RemoteURI string
	// Target is the Request-URI of in-dialog requests (the remote Contact).
	Target string
	// CSeq is the number of the last request we sent.
	CSeq uint32
	// Invite is the last INVITE we sent, for ACK and CANCEL.
	Invite *sip.Request
}

// Invite starts a dialog as UAC: it sends an INVITE for ruri to to. Header
// lines in headers are added, replacing defaults of the same name (so
// "Max-Forwards: 0" or a custom From works); body gets Content-Type
// application/sdp unless headers give one.
func (p *Peer) Invite(to netip.AddrPort, ruri string, headers []string, body string) *Dialog {
	p.t.Helper()
	d := p.NewDialog(to, ruri)
	d.Send("INVITE", headers, body)
	return d
}

// NewDialog starts a dialog as UAC without sending anything: a fresh
// Call-ID and From tag, requests for ruri sent to to. Its Send also serves
// out-of-dialog requests (MESSAGE, OPTIONS) as long as no remote tag is
// learned.
func (p *Peer) NewDialog(to netip.AddrPort, ruri string) *Dialog {
	return &Dialog{
		Peer:      p,
		Dest:      to,
		CallID:    randHex(8) + "@" + p.addr.Addr().String(),
		LocalTag:  "t" + randHex(5),
		LocalURI:  p.URI(),
		RemoteURI: ruri,
		Target:    ruri,
	}
}

// DialogFrom is the dialog a received initial INVITE (or other
// dialog-forming request) creates, seen by the peer as UAS. The local tag is
// the one Reply uses for that request.
func (p *Peer) DialogFrom(req *sip.Request) *Dialog {
	p.t.Helper()
	src, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		p.t.Fatalf("%s: request %s has no usable source %q", p, Describe(req), req.Source())
	}
	d := &Dialog{
		Peer:     p,
		Dest:     src,
		CallID:   req.CallID().Value(),
		LocalTag: p.ToTag(req),
		LocalURI: req.To().Address.String(),
		// Start far from the remote side's numbers so a mix-up shows.
		CSeq: 1000,
	}
	d.RemoteTag, _ = req.From().Params.Get("tag")
	d.RemoteURI = req.From().Address.String()
	d.Target = d.RemoteURI
	if c := req.Contact(); c != nil {
		d.Target = c.Address.String()
	}
	return d
}

// Learn takes the remote tag and target from a response to our request.
func (d *Dialog) Learn(res *sip.Response) {
	if to := res.To(); to != nil {
		if tag, ok := to.Params.Get("tag"); ok && tag != "" && (d.RemoteTag == "" || res.IsSuccess()) {
			d.RemoteTag = tag
		}
	}
	if c := res.Contact(); c != nil && res.StatusCode < 300 {
		d.Target = c.Address.String()
	}
}

func (d *Dialog) from() string {
	return "From: <" + d.LocalURI + ">;tag=" + d.LocalTag
}

func (d *Dialog) to() string {
	s := "To: <" + d.RemoteURI + ">"
	if d.RemoteTag != "" {
		s += ";tag=" + d.RemoteTag
	}
	return s
}

// Send sends a new request in the dialog with the next CSeq and returns it
// as sent. Target-refresh requests carry the peer's Contact.
func (d *Dialog) Send(method string, headers []string, body string) *sip.Request {
	d.Peer.t.Helper()
	method = strings.ToUpper(method)
	d.CSeq++
	hs := []string{
		d.Peer.Via(NewBranch()),
		"Max-Forwards: 70",
		d.from(),
		d.to(),
		"Call-ID: " + d.CallID,
		"CSeq: " + strconv.FormatUint(uint64(d.CSeq), 10) + " " + method,
	}
	switch method {
	case "INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER":
		hs = append(hs, d.Peer.Contact())
	}
	if body != "" && !hasHeader(headers, "Content-Type") {
		hs = append(hs, "Content-Type: application/sdp")
	}
	req := d.send(method+" "+d.Target+" SIP/2.0", merge(hs, headers), body)
	if method == "INVITE" {
		d.Invite = req
	}
	return req
}

func (d *Dialog) send(startLine string, headers []string, body string) *sip.Request {
	d.Peer.t.Helper()
	data := Build(startLine, headers, body)
	msg, err := d.Peer.parser.ParseSIP(data)
	if err != nil {
		d.Peer.t.Fatalf("%s: built an unparsable request: %v\n%s", d.Peer, err, data)
	}
	d.Peer.SendRaw(d.Dest, data)
	return msg.(*sip.Request)
}

// Ack acknowledges a 2xx to the last INVITE: a new transaction (new
// branch) with the INVITE's CSeq number, sent to the remote target.
func (d *Dialog) Ack(headers []string, body string) *sip.Request {
	d.Peer.t.Helper()
	if d.Invite == nil {
		d.Peer.t.Fatalf("%s: ACK without INVITE", d.Peer)
	}
	hs := []string{
		d.Peer.Via(NewBranch()),
		"Max-Forwards: 70",
		d.from(),
		d.to(),
		"Call-ID: " + d.CallID,
		"CSeq: " + strconv.FormatUint(uint64(d.Invite.CSeq().SeqNo), 10) + " ACK",
	}
	if body != "" && !hasHeader(headers, "Content-Type") {
		hs = append(hs, "Content-Type: application/sdp")
	}
	return d.send("ACK "+d.Target+" SIP/2.0", merge(hs, headers), body)
}

// AckFailure acknowledges a non-2xx final response to the last INVITE as
// its transaction requires (RFC 3261 17.1.1.3): same branch and Request-URI
// as the INVITE, the response's To.
func (d *Dialog) AckFailure(res *sip.Response) *sip.Request {
	d.Peer.t.Helper()
	inv := d.Invite
	if inv == nil {
		d.Peer.t.Fatalf("%s: ACK without INVITE", d.Peer)
	}
	hs := []string{
		"Via: " + inv.Via().Value(),
		"Max-Forwards: 70",
		"From: " + inv.From().Value(),
		"To: " + res.To().Value(),
		"Call-ID: " + d.CallID,
		"CSeq: " + strconv.FormatUint(uint64(inv.CSeq().SeqNo), 10) + " ACK",
	}
	return d.send("ACK "+inv.Recipient.String()+" SIP/2.0", hs, "")
}

// Cancel cancels the last INVITE: same branch, Request-URI, From, To and
// CSeq number (RFC 3261 9.1).
func (d *Dialog) Cancel() *sip.Request {
	d.Peer.t.Helper()
	inv := d.Invite
	if inv == nil {
		d.Peer.t.Fatalf("%s: CANCEL without INVITE", d.Peer)
	}
	hs := []string{
		"Via: " + inv.Via().Value(),
		"Max-Forwards: 70",
		"From: " + inv.From().Value(),
		"To: " + inv.To().Value(),
		"Call-ID: " + d.CallID,
		"CSeq: " + strconv.FormatUint(uint64(inv.CSeq().SeqNo), 10) + " CANCEL",
	}
	return d.send("CANCEL "+inv.Recipient.String()+" SIP/2.0", hs, "")
}
