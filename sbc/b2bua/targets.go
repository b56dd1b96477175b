package b2bua

import (
	"context"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/upstream"
)

// Destinations named inside a call. An initial INVITE's Request-URI is
// judged by the chain (policy, rules) before it reaches the B2BUA; two
// routes only appear here: the Refer-To of a REFER from outside, which
// the far side acts on by dialling it (the PBX places the transfer), and
// the Contact of a 3xx the B2BUA follows itself. Each is asked of
// Config.Targets before anything is sent, so that it is judged as a call
// to it would be.

// Routes of TargetRequest.
const (
	RouteRefer    = "refer"
	RouteRedirect = "redirect"
)

// TargetRequest is a destination named inside a call.
type TargetRequest struct {
	// Route is RouteRefer or RouteRedirect.
	Route string
	// URI is what was named: the Refer-To URI, the 3xx Contact.
	URI *sip.Uri
	// Request is the request that named it (the REFER), or for a redirect
	// the caller's INVITE.
	Request *sbc.Request
	// Side and Peer are where the party that named it is: the REFER's
	// transport peer, the target that answered the 3xx.
	Side sbc.Side
	Peer netip.AddrPort
	// Identity is whom the destination is attributed to: the caller's
	// identity when the caller sent the REFER, or when the call came from
	// outside (a redirect serves the caller); nil for the outside party
	// of a call the inside placed.
	Identity *sbc.Identity
	// Call is the key of the call (OriginKey of its INVITE).
	Call string
}

// TargetVerdict is the answer of a TargetCheck.
type TargetVerdict struct {
	Allow  bool
	Status int    // the refusal's status and reason phrase
	Reason string //
	// Why names the check for the decision log (Request.Why); set on a
	// refusal, and on an allow that a shadow check would have refused.
	Why string
}

// TargetCheck judges destinations named inside calls; cmd/sipwall puts
// the dial plan, the policy and the fraud rules behind it. It is called
// outside the call's lock and may take as long as a policy decision.
type TargetCheck interface {
	CheckTarget(ctx context.Context, t TargetRequest) TargetVerdict
}

// vetRefer asks Config.Targets about the Refer-To of a REFER from
// outside before it is relayed. refused: it was answered (400 for a
// REFER without exactly one readable Refer-To, RFC 3515 2.4.1; the
// check's status otherwise).
func (b *B2BUA) vetRefer(ctx context.Context, w sbc.ResponseWriter, r *sbc.Request, c *call) (refused bool, err error) {
	if b.cfg.Targets == nil || r.Method != sip.REFER || r.Side != sbc.External {
		return false, nil
	}
	hs := r.GetHeaders("Refer-To")
	var u sip.Uri
	params := sip.NewParams()
	if len(hs) != 1 {
		r.Why = "refer: not one Refer-To"
		return true, sbc.Respond(w, r, 400, "Bad Request")
	}
	if _, perr := sip.ParseAddressValue(hs[0].Value(), &u, &params); perr != nil {
		r.Why = "refer: unreadable Refer-To"
		return true, sbc.Respond(w, r, 400, "Bad Request")
	}
	c.mu.Lock()
	fromCaller := c.a != nil && c.a.callID == r.CallID().Value()
	id, key := c.ident, c.origin
	c.mu.Unlock()
	t := TargetRequest{Route: RouteRefer, URI: &u, Request: r, Side: r.Side, Peer: r.Peer, Call: key}
	if fromCaller {
		t.Identity = id
	}
	v := b.cfg.Targets.CheckTarget(ctx, t)
	if v.Why != "" {
		r.Why = v.Why
	}
	if v.Allow {
		return false, nil
	}
	status, reason := refusal(v)
	return true, sbc.Respond(w, r, status, reason)
}

// vetRedirects asks Config.Targets about each target of a 3xx that names
// a user of its own (a target without one keeps the caller's
// Request-URI user, which the chain judged). It returns those allowed;
// when there were some and none is, the call ends with the first
// refusal's status, answered here.
func (b *B2BUA) vetRedirects(ctx context.Context, c *call, r *sbc.Request, w sbc.ResponseWriter, from upstream.Target, ts []upstream.Target) []upstream.Target {
	if b.cfg.Targets == nil {
		return ts
	}
	c.mu.Lock()
	var id *sbc.Identity
	if c.a.side == sbc.External {
		id = c.ident
	}
	key := c.origin
	c.mu.Unlock()
	kept := ts[:0:0]
	var first *TargetVerdict
	for _, t := range ts {
		if !t.Exact || t.URI.User == "" {
			kept = append(kept, t)
			continue
		}
		u := t.URI
		v := b.cfg.Targets.CheckTarget(ctx, TargetRequest{Route: RouteRedirect, URI: &u, Request: r, Side: targetSide(from), Peer: from.Addr, Identity: id, Call: key})
		if v.Allow {
			if v.Why != "" && r.Why == "" {
				r.Why = v.Why
			}
			kept = append(kept, t)
			continue
		}
		if first == nil {
			first = &v
		}
	}
	if len(kept) == 0 && first != nil {
		r.Why = first.Why
		b.finish(c, "redirect refused")
		b.stats.Failed.Add(1)
		status, reason := refusal(*first)
		_ = b.respondOnce(w, r.Request, localResponse(r.Request, status, reason, c.a))
	}
	return kept
}

// refusal is the status and reason phrase a refused target is answered
// with: 403 Forbidden unless the check chose a final error status.
func refusal(v TargetVerdict) (int, string) {
	status, reason := v.Status, v.Reason
	if status < 400 || status > 699 {
		status, reason = 403, ""
	}
	if reason == "" {
		reason = sbc.ReasonPhrase(status, "Forbidden")
	}
	return status, reason
}

// withUser is the inside Request-URI for a request to ruri: the target's
// URI with ruri's user, or a tel: URI's number (RFC 3261 19.1.6: the
// telephone-subscriber as the user part, user=phone), so the PBX gets the
// number it was asked for. The target's parameters are not shared.
func withUser(target sip.Uri, ruri *sip.Uri) sip.Uri {
	if ruri.Scheme != "tel" {
		target.User = ruri.User
		return target
	}
	target.User = telUser(ruri.Raw())
	target.UriParams = target.UriParams.Clone()
	target.UriParams.Add("user", "phone")
	return target
}

// telUser escapes what a SIP user part may not hold unescaped ("#", a
// blank) in a telephone-subscriber; escapes it already has stay.
func telUser(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z',
			strings.IndexByte("-_.!~*'()&=+$,;?/", c) >= 0:
			b.WriteByte(c)
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	_, ok := unhex(c)
	return ok
}

// requestUser is the user a Request-URI names: a tel: URI's number too
// (the call record's destination).
func requestUser(u *sip.Uri) string {
	if u.Scheme == "tel" {
		return u.Raw()
	}
	return u.User
}
