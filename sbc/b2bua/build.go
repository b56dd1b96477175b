package b2bua

import (
	"net"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/topology"
)

// dirOf is the topology direction of messages sent on leg l.
func dirOf(l *leg) topology.Direction {
	if l.side == sbc.External {
		return topology.ToOutside
	}
	return topology.ToInside
}

// copyFor copies the headers the topology policy lets cross onto a message
// for leg to. Everything else is dropped: a B2BUA builds each leg's
// messages itself, so nothing leaks by default.
func (b *B2BUA) copyFor(to *leg, from, out sip.Message) {
	var host string
	var port int
	if to.local != nil {
		host, port = hostPort(to.local.Advertise)
	}
	b.cfg.Topology.CopyHeaders(dirOf(to), from, out, host, port)
}

// bodyFor is the body of from as it may be sent on leg to: SDP from outside
// checked (sdp.Check: refused, or lines dropped), SDP through the media
// relay (when there is one and the message belongs to call c), then every
// body through the topology policy (toward the outside: SDP attributes by
// allow-list, sipfrag scrubbed).
// With a call, c.mu is held.
func (b *B2BUA) bodyFor(c *call, to *leg, from sip.Message) ([]byte, error) {
	return b.bodyFrom(c, to, from, fromOutside(c, to))
}

// bodyFrom is bodyFor when the caller knows whether from came from
// outside.
func (b *B2BUA) bodyFrom(c *call, to *leg, from sip.Message, outside bool) ([]byte, error) {
	body := from.Body()
	if len(body) == 0 {
		return nil, nil
	}
	ct := ""
	if hs := from.GetHeaders("Content-Type"); len(hs) > 0 {
		ct = hs[0].Value()
	}
	if outside && isSDP(ct) {
		var err error
		if body, err = b.checkInbound(body); err != nil {
			return nil, err
		}
	}
	if b.cfg.Media != nil && c != nil && isSDP(ct) {
		var err error
		if body, err = b.cfg.Media.Rewrite(c.key(), to.side, body); err != nil {
			return nil, err
		}
	}
	return append([]byte(nil), b.cfg.Topology.Body(dirOf(to), ct, body)...), nil
}

func isSDP(ct string) bool {
	ct, _, _ = strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(ct), "application/sdp")
}

// requireFiltered copies Require values the B2BUA can honour end to end.
// 100rel is terminated per leg, so it is never relayed.
func requireFiltered(from, to sip.Message) {
	var keep []string
	for _, h := range from.GetHeaders("Require") {
		for _, v := range strings.Split(h.Value(), ",") {
			v = strings.TrimSpace(v)
			if v != "" && !strings.EqualFold(v, "100rel") {
				keep = append(keep, v)
			}
		}
	}
	if len(keep) > 0 {
		to.AppendHeader(sip.NewHeader("Require", strings.Join(keep, ", ")))
	}
}

func (b *B2BUA) contact(l *leg, user string) *sip.ContactHeader {
	h, p := hostPort(l.local.Advertise)
	u := sip.Uri{Scheme: "sip", User: user, Host: h, Port: p}
	if !strings.EqualFold(l.transport, "UDP") {
		u.UriParams = sip.NewParams()
		u.UriParams.Add("transport", strings.ToLower(l.transport))
	}
	return &sip.ContactHeader{Address: u}
}

// newRequest builds a request on leg l with the given CSeq. The caller adds
// the body and extra headers.
func (b *B2BUA) newRequest(l *leg, method sip.RequestMethod, cseq uint32, branch string) *sip.Request {
	req := sip.NewRequest(method, l.remoteTarget)
	h, p := hostPort(l.local.Advertise)
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: l.transport, Host: h, Port: p, Params: sip.NewParams()}
	if branch == "" {
		branch = sip.GenerateBranchN(16)
	}
	via.Params.Add("branch", branch)
	via.Params.Add("rport", "")
	req.AppendHeader(via)
	for _, r := range l.routeSet {
		req.AppendHeader(&sip.RouteHeader{Address: r})
	}
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	from := &sip.FromHeader{DisplayName: l.localName, Address: l.localURI, Params: sip.NewParams()}
	from.Params.Add("tag", l.localTag)
	req.AppendHeader(from)
	to := &sip.ToHeader{DisplayName: l.remoteName, Address: l.remoteURI, Params: sip.NewParams()}
	if l.remoteTag != "" {
		to.Params.Add("tag", l.remoteTag)
	}
	req.AppendHeader(to)
	cid := sip.CallIDHeader(l.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: method})
	req.SetTransport(l.transport)
	req.SetDestination(l.dest)
	b.bindLocal(req, l)
	return req
}

// bindLocal makes UDP requests leave from the listener socket, so peers
// see (and answer to) the address in our Via and Contact.
func (b *B2BUA) bindLocal(req *sip.Request, l *leg) {
	if strings.EqualFold(l.transport, "UDP") && l.local != nil {
		ap := l.local.Bound
		req.Laddr = sip.Addr{IP: net.IP(ap.Addr().AsSlice()), Port: int(ap.Port())}
	}
}

// responseTo builds our response on leg l to req, carrying what the other
// leg answered in res. c.mu must not be held.
func (b *B2BUA) responseTo(c *call, l *leg, req *sip.Request, res *sip.Response, withContact bool) *sip.Response {
	// Toward the outside, the RFC phrase of the code, not the inside's words.
	out := sip.NewResponseFromRequest(req, res.StatusCode, b.cfg.Topology.Reason(dirOf(l), res.StatusCode, res.Reason), nil)
	setToTag(req, out, l)
	b.copyFor(l, res, out)
	requireFiltered(res, out)
	if res.StatusCode >= 300 && res.StatusCode < 400 {
		// Redirect targets are the point of a 3xx; toward the outside,
		// those naming an inside host are rewritten to the SBC (which
		// routes them inside again), the others pass.
		var host string
		var port int
		if l.local != nil {
			host, port = hostPort(l.local.Advertise)
		}
		for _, h := range res.GetHeaders("Contact") {
			ct, ok := h.(*sip.ContactHeader)
			if !ok {
				continue
			}
			nc := ct.Clone()
			nc.Address = b.cfg.Topology.URI(dirOf(l), ct.Address, host, port)
			out.AppendHeader(nc)
		}
	}
	if withContact && (res.StatusCode >= 101 && res.StatusCode < 300) {
		out.AppendHeader(b.contact(l, ""))
	}
	outside := fromOutside(nil, l)
	var body []byte
	prepared := false
	if c != nil {
		c.mu.Lock()
		outside = fromOutside(c, l)
		if c.answer.res == res && c.answer.to == l {
			// Rewritten when the answer was checked (answerRefused).
			body, prepared = c.answer.body, true
			c.answer.res, c.answer.to, c.answer.body = nil, nil, nil
		}
		c.mu.Unlock()
	}
	var err error
	if !prepared {
		body, err = b.bodyFrom(c, l, res, outside)
	}
	if err != nil {
		// An answer the relay cannot read must not cross as it is: it
		// names the other side's media address.
		b.log.Warn("response body dropped", "status", res.StatusCode, "error", err)
		out.RemoveHeader("Content-Type")
		body = nil
	}
	out.SetBody(body)
	return out
}

// localResponse builds a response generated by the SBC itself.
func localResponse(req *sip.Request, code int, reason string, l *leg) *sip.Response {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	setToTag(req, res, l)
	return res
}

// setToTag puts the leg's tag in the To of a response to a request that had
// none (sipgo would invent a random one per response otherwise, RFC 3261
// 8.2.6.2 wants one tag for all responses of a request).
func setToTag(req *sip.Request, res *sip.Response, l *leg) {
	if l == nil || res.StatusCode == 100 {
		return
	}
	if rt := req.To(); rt != nil && rt.Params.Has("tag") {
		return
	}
	if to := res.To(); to != nil {
		to.Params.Add("tag", l.localTag)
	}
}

func isTargetRefresh(m sip.RequestMethod) bool {
	return m == sip.INVITE || m == sip.UPDATE || m == sip.SUBSCRIBE || m == sip.NOTIFY || m == sip.REFER
}

func hasOption(msg sip.Message, header, option string) bool {
	for _, h := range msg.GetHeaders(header) {
		for _, v := range strings.Split(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(v), option) {
				return true
			}
		}
	}
	return false
}

// legFromRequest builds the leg toward the sender of an initial INVITE (the
// SBC is UAS on it).
func legFromRequest(r *sbc.Request, local *sbc.Listener) *leg {
	req := r.Request
	l := &leg{
		name:       "a",
		callID:     req.CallID().Value(),
		localTag:   sip.GenerateTagN(16),
		remoteCSeq: req.CSeq().SeqNo,
		localCSeq:  1 + uint32(randN(1<<15)),
		dest:       r.Peer.String(),
		transport:  strings.ToUpper(r.Transport),
		local:      local,
		side:       r.Side,
		ackMap:     map[uint32]uint32{},
		acked:      map[uint32]chan struct{}{},
	}
	if f := req.From(); f != nil {
		l.remoteURI, l.remoteName = f.Address, f.DisplayName
		l.remoteTag, _ = f.Params.Get("tag")
	}
	if t := req.To(); t != nil {
		l.localURI, l.localName = t.Address, t.DisplayName
	}
	if c := req.Contact(); c != nil {
		l.remoteTarget = c.Address
	} else if f := req.From(); f != nil {
		l.remoteTarget = f.Address
	}
	for _, h := range req.GetHeaders("Record-Route") {
		if rr, ok := h.(*sip.RecordRouteHeader); ok {
			l.routeSet = append(l.routeSet, rr.Address)
		}
	}
	return l
}
