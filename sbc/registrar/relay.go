package registrar

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/upstream"
)

// Headers of the phone's REGISTER relayed to the PBX. The credentials
// must pass unchanged for the PBX's digest to verify; the rest is built.
var relayRequestHeaders = []string{"Authorization", "Proxy-Authorization", "Allow", "Accept", "Date"}

// Headers of the PBX's answer relayed to the phone. Contacts never are:
// the phone gets its own bindings from the SBC, not the PBX's view.
var relayResponseHeaders = []string{"WWW-Authenticate", "Proxy-Authenticate", "Retry-After", "Date"}

// errNoUpstream means no PBX gave an answer the phone can use.
var errNoUpstream = errors.New("registrar: no upstream answered")

// relayRegister handles a REGISTER in relay mode: answered from the cache
// when it is a refresh inside the window, otherwise relayed to the PBX and
// committed on its 2xx.
func (g *Registrar) relayRegister(ctx context.Context, w sbc.ResponseWriter, r *sbc.Request, req *regRequest, now time.Time) (sbc.Verdict, error) {
	if !req.query && g.cacheable(g.snapshot(req.aor, now), req, now, false) {
		v, err := g.commitAndAnswer(w, r, req, now, nil, true, &g.stats.Cached)
		if !errors.Is(err, errNotCacheable) {
			return v, err
		}
	}
	if !req.query && !req.wildcard && !g.anyForPBX(req) {
		// Only removals of bindings the SBC never had: nothing to tell the
		// PBX, nothing to change.
		return g.answer(w, r, req, now)
	}
	req.upCallID = g.upCallIDFor(req)
	res, err := g.relay(ctx, r, req)
	if err != nil {
		// Survivability: while the PBX still holds the binding, a refresh
		// from the same flow is answered even though no PBX answered now.
		if at := g.cfg.Now(); !req.query && g.cacheable(g.snapshot(req.aor, at), req, at, true) {
			v, err := g.commitAndAnswer(w, r, req, at, nil, true, &g.stats.Fallback)
			if !errors.Is(err, errNotCacheable) {
				return v, err
			}
		}
		g.log.Warn("REGISTER not relayed", "aor", req.aor, "error", err)
		return sbc.Rejected, sbc.Respond(w, r, 503, "Service Unavailable", sip.NewHeader("Retry-After", "30"))
	}
	switch {
	case res.IsSuccess():
		if req.query {
			return g.answer(w, r, req, g.cfg.Now())
		}
		v, err := g.commitAndAnswer(w, r, req, g.cfg.Now(), g.granted(req, res), false, nil)
		if errors.Is(err, errNotCacheable) {
			err = nil // cannot happen for an uncached commit
		}
		return v, err
	case res.StatusCode == 423:
		// The PBX wants longer than registrar.upstream_expires; the phone
		// cannot fix that by asking for more, so it must not get the 423.
		g.log.Warn("PBX refuses the upstream expiry; raise registrar.upstream_expires",
			"upstream_expires", g.cfg.UpstreamExpires, "min_expires", headerValue(res, "Min-Expires"))
		return sbc.Rejected, sbc.Respond(w, r, 500, "Server Internal Error", sip.NewHeader("Retry-After", "300"))
	}
	phrase := res.Reason
	if g.cfg.Reason != nil {
		phrase = g.cfg.Reason(res.StatusCode, phrase)
	}
	out := sip.NewResponseFromRequest(r.Request, res.StatusCode, phrase, nil)
	for _, n := range relayResponseHeaders {
		for _, h := range res.GetHeaders(n) {
			out.AppendHeader(sip.NewHeader(h.Name(), h.Value()))
		}
	}
	return sbc.Rejected, w.Respond(out)
}

// granted reads from the PBX's 2xx how long it keeps each binding of the
// request: the expires of the token's Contact, else the Expires header,
// else what was asked.
func (g *Registrar) granted(req *regRequest, res *sip.Response) map[string]time.Duration {
	byToken := map[string]time.Duration{}
	hdr := g.cfg.UpstreamExpires
	if d, ok := parseDelta(headerValue(res, "Expires")); ok && d > 0 {
		hdr = d
	}
	for _, h := range res.GetHeaders("Contact") {
		ct, ok := h.(*sip.ContactHeader)
		if !ok || !isToken(ct.Address.User) {
			continue
		}
		d := hdr
		for _, kv := range ct.Params {
			if strings.EqualFold(kv.K, "expires") {
				if v, ok := parseDelta(kv.V); ok {
					d = v
				}
			}
		}
		byToken[ct.Address.User] = d
	}
	out := map[string]time.Duration{}
	for _, c := range req.contacts {
		if c.expires == 0 {
			continue
		}
		d, ok := byToken[g.tokenFor(req, c.key)]
		if !ok {
			d = hdr
		}
		if d > 0 {
			out[c.key] = d
		}
	}
	return out
}

// anyForPBX tells whether req has a Contact the PBX knows or will know by a
// token.
func (g *Registrar) anyForPBX(req *regRequest) bool {
	for _, c := range req.contacts {
		if g.tokenFor(req, c.key) != "" {
			return true
		}
	}
	return len(req.evicted) > 0
}

// tokenFor is the token of a binding key: the existing binding's, else
// the one chosen for the new binding.
func (g *Registrar) tokenFor(req *regRequest, key string) string {
	for _, b := range g.snapshot(req.aor, g.cfg.Now()) {
		if b.Key == key {
			return b.Token
		}
	}
	return req.tokens[key]
}

// relay sends the REGISTER to the upstreams in failover order and returns
// the first final answer other than 503.
func (g *Registrar) relay(ctx context.Context, r *sbc.Request, req *regRequest) (*sip.Response, error) {
	if g.cfg.Pool == nil {
		return nil, errNoUpstream
	}
	var last error = errNoUpstream
	for _, t := range g.cfg.Pool.Candidates() {
		out, err := g.upstreamRequest(r, req, t)
		if err != nil {
			last = err
			continue
		}
		g.stats.Relayed.Add(1)
		res, err := g.do(ctx, out)
		if err != nil || res.StatusCode == 503 {
			g.cfg.Pool.Mark(t.Name, false)
			if err != nil {
				last = err
			}
			continue
		}
		return res, nil
	}
	return nil, last
}

// upstreamRequest builds the REGISTER toward one PBX. The Request-URI is
// the phone's, unchanged, because the digest response covers it; only the
// destination differs. To and From are the phone's AOR; Call-ID and From
// tag are derived from the phone's, so refreshes stay one registration at
// the PBX; CSeq is the phone's, which only grows. Each Contact is a token
// at the SBC's inside address, asking for upstream_expires.
func (g *Registrar) upstreamRequest(r *sbc.Request, req *regRequest, t upstream.Target) (*sip.Request, error) {
	tr := strings.ToLower(t.Transport)
	if tr == "" {
		tr = "udp"
	}
	local, ok := g.cfg.Endpoint.Local(tr, sbc.Internal)
	if !ok {
		return nil, errors.New("registrar: no " + tr + " listener toward " + t.Name)
	}
	host, port := hostPort(local.Advertise)
	ruri := *r.Recipient.Clone()
	out := sip.NewRequest(sip.REGISTER, ruri)
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: strings.ToUpper(tr), Host: host, Port: port, Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranchN(16))
	via.Params.Add("rport", "")
	out.AppendHeader(via)
	mf := sip.MaxForwardsHeader(69)
	if h := r.MaxForwards(); h != nil && *h > 0 {
		mf = sip.MaxForwardsHeader(*h - 1)
	}
	out.AppendHeader(&mf)
	from := r.From()
	fromTag, _ := from.Params.Get("tag")
	f := &sip.FromHeader{DisplayName: from.DisplayName, Address: *from.Address.Clone(), Params: sip.NewParams()}
	f.Address.UriParams, f.Address.Headers = nil, nil
	f.Params.Add("tag", g.mapID("tag", fromTag)[:16])
	out.AppendHeader(f)
	to := r.To()
	tt := &sip.ToHeader{DisplayName: to.DisplayName, Address: *to.Address.Clone(), Params: sip.NewParams()}
	tt.Address.UriParams, tt.Address.Headers = nil, nil
	out.AppendHeader(tt)
	cid := sip.CallIDHeader(req.upCallID)
	out.AppendHeader(&cid)
	out.AppendHeader(&sip.CSeqHeader{SeqNo: req.cseq, MethodName: sip.REGISTER})
	switch {
	case req.wildcard:
		out.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Wildcard: true}})
		out.AppendHeader(sip.NewHeader("Expires", "0"))
	case !req.query:
		for _, c := range req.contacts {
			tok := g.tokenFor(req, c.key)
			if tok == "" {
				continue // a removal of a binding the PBX never got
			}
			exp := g.cfg.UpstreamExpires
			if c.expires == 0 {
				exp = 0
			}
			out.AppendHeader(tokenContact(tok, host, port, tr, exp))
		}
		for _, b := range req.evicted {
			out.AppendHeader(tokenContact(b.Token, host, port, tr, 0))
		}
	}
	for _, n := range relayRequestHeaders {
		for _, h := range r.GetHeaders(n) {
			out.AppendHeader(sip.NewHeader(h.Name(), h.Value()))
		}
	}
	for _, h := range r.Forward {
		out.AppendHeader(sip.HeaderClone(h))
	}
	out.SetBody(nil)
	out.SetTransport(strings.ToUpper(tr))
	out.SetDestination(t.Addr.String())
	if tr == "udp" {
		// Leave from the listener, so the PBX answers (and later calls)
		// the address in our Via and Contact.
		out.Laddr = sip.Addr{IP: net.IP(local.Bound.Addr().AsSlice()), Port: int(local.Bound.Port())}
	}
	return out, nil
}

// upCallIDFor is the Call-ID toward the PBX: the one already used for this
// phone registration if any binding has it (it survives restarts in the
// store, the HMAC key does not), else derived.
func (g *Registrar) upCallIDFor(req *regRequest) string {
	for _, b := range g.snapshot(req.aor, g.cfg.Now()) {
		if b.CallID == req.callID && b.UpCallID != "" {
			return b.UpCallID
		}
	}
	return g.mapID("call-id", req.callID)
}

func tokenContact(token, host string, port int, tr string, exp time.Duration) *sip.ContactHeader {
	u := sip.Uri{Scheme: "sip", User: token, Host: host, Port: port}
	if tr != "udp" {
		u.UriParams = sip.NewParams()
		u.UriParams.Add("transport", tr)
	}
	ct := &sip.ContactHeader{Address: u, Params: sip.NewParams()}
	ct.Params.Add("expires", strconv.FormatInt(int64(exp/time.Second), 10))
	return ct
}

// do sends a request in a client transaction and waits for its final
// response; the transaction is terminated before return.
func (g *Registrar) do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	return sbc.Do(ctx, g.cfg.Client, req)
}

func hostPort(a sip.Addr) (string, int) {
	if a.IP != nil {
		return a.IP.String(), a.Port
	}
	return a.Hostname, a.Port
}

func headerValue(m sip.Message, name string) string {
	if hs := m.GetHeaders(name); len(hs) > 0 {
		return hs[0].Value()
	}
	return ""
}
