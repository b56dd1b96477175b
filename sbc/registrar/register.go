package registrar

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
)

// reject is a REGISTER the SBC refuses: status, reason and extra headers.
type reject struct {
	code   int
	reason string
	hdrs   []sip.Header
}

func rejectf(code int, reason string, hdrs ...sip.Header) *reject {
	return &reject{code: code, reason: reason, hdrs: hdrs}
}

// errNotCacheable makes a cached commit give way to a relay: the bindings
// changed between the decision and the write.
var errNotCacheable = errors.New("registrar: binding changed, not cacheable")

// regRequest is a validated REGISTER.
type regRequest struct {
	aor      string
	user     string
	wildcard bool
	query    bool
	contacts []contactReq
	callID   string
	cseq     uint32
	peer     string
	peerIP   string
	tr       string
	// by is whom the REGISTER is attributed to (Binding.RegisteredBy).
	by string
	// tokens keeps the token chosen for each new binding key, so a commit
	// after the PBX answered reuses the token the PBX was given.
	tokens map[string]string
	// evicted are the bindings replace_oldest pushed out, told to the PBX.
	evicted []Binding
	// upCallID is the Call-ID the REGISTER went to the PBX with.
	upCallID string
}

// contactReq is one Contact of a REGISTER.
type contactReq struct {
	uri     string
	params  string
	key     string
	q       int
	expires time.Duration // 0 removes the binding
}

// register handles a REGISTER from the outside.
func (g *Registrar) register(ctx context.Context, w sbc.ResponseWriter, r *sbc.Request) (sbc.Verdict, error) {
	now := g.cfg.Now()
	req, rej := g.parse(r)
	if rej == nil {
		// The AOR's bindings, with Shared the cluster's (which also
		// brings the local table, read by the cache decision and the
		// answer, in line).
		old := g.fetch(req.aor, now)
		if !req.query {
			// A dry run against the current bindings catches ordering,
			// limits and capacity before anything is sent or written.
			var nb []Binding
			nb, rej = g.apply(old, req, now, nil, false)
			if rej == nil && len(old) == 0 && len(nb) > 0 && g.full() {
				rej = rejectf(503, "Service Unavailable", sip.NewHeader("Retry-After", "60"))
			}
		}
	}
	if rej != nil {
		g.stats.Rejected.Add(1)
		return sbc.Rejected, g.respondReject(w, r, rej)
	}
	if g.cfg.Mode == ModeLocal {
		if req.query {
			return g.answer(w, r, req, now)
		}
		return g.commitAndAnswer(w, r, req, now, nil, false, nil)
	}
	return g.relayRegister(ctx, w, r, req, now)
}

// parse validates a REGISTER (RFC 3261 10.3 steps 3 to 6 and the SBC's own
// limits). Nothing is stored before it passes.
func (g *Registrar) parse(r *sbc.Request) (*regRequest, *reject) {
	if mf := r.MaxForwards(); mf != nil && *mf == 0 {
		return nil, rejectf(483, "Too Many Hops")
	}
	to, cid, cseq := r.To(), r.CallID(), r.CSeq()
	if to == nil || cid == nil || cseq == nil || r.From() == nil || cseq.MethodName != sip.REGISTER {
		return nil, rejectf(400, "Bad Request")
	}
	u := to.Address
	if (u.Scheme != "sip" && u.Scheme != "sips") || u.Wildcard {
		return nil, rejectf(404, "Not Found")
	}
	host := strings.ToLower(strings.TrimSuffix(u.Host, "."))
	if u.User == "" || host == "" || len(u.User) > maxUserLen || len(host) > maxHostLen {
		return nil, rejectf(400, "Bad Request (invalid address-of-record)")
	}
	if len(g.domains) > 0 && !g.domains[host] {
		return nil, rejectf(g.cfg.OtherDomainStatus, reasonFor(g.cfg.OtherDomainStatus))
	}
	if id := r.Identity; id != nil && id.User != "" && id.User != u.User {
		// Only the user itself may register its AOR. Checked before the
		// user list so that no authenticated user learns who else exists.
		return nil, rejectf(403, "Forbidden")
	}
	if g.cfg.Mode == ModeLocal && !g.isUser(u.User) {
		return nil, rejectf(404, "Not Found")
	}
	req := &regRequest{
		aor:    u.User + "@" + host,
		user:   u.User,
		callID: cid.Value(),
		cseq:   cseq.SeqNo,
		peer:   r.Peer.String(),
		peerIP: r.Peer.Addr().String(),
		tr:     r.Transport,
		by:     r.Identity.Attribution(),
		tokens: map[string]string{},
	}

	var hdrExpires *time.Duration
	if h := r.GetHeaders("Expires"); len(h) > 0 {
		if len(h) > 1 {
			return nil, rejectf(400, "Bad Request (several Expires)")
		}
		d, ok := parseDelta(h[0].Value())
		if !ok {
			return nil, rejectf(400, "Bad Request (invalid Expires)")
		}
		hdrExpires = &d
	}

	hs := r.GetHeaders("Contact")
	if len(hs) == 0 {
		req.query = true
		return req, nil
	}
	if len(hs) > g.cfg.MaxBindings {
		return nil, rejectf(403, "Forbidden (too many bindings)")
	}
	seen := map[string]int{}
	for _, h := range hs {
		ct, ok := h.(*sip.ContactHeader)
		if !ok {
			return nil, rejectf(400, "Bad Request (invalid Contact)")
		}
		if ct.Address.Wildcard {
			req.wildcard = true
			continue
		}
		c, rej := g.contact(ct, hdrExpires)
		if rej != nil {
			return nil, rej
		}
		if i, dup := seen[c.key]; dup {
			req.contacts[i] = c // the last of duplicates wins
			continue
		}
		seen[c.key] = len(req.contacts)
		req.contacts = append(req.contacts, c)
	}
	if req.wildcard {
		// "*" only alone and only with Expires: 0 (RFC 3261 10.3 step 6).
		if len(hs) != 1 || hdrExpires == nil || *hdrExpires != 0 {
			return nil, rejectf(400, "Bad Request (invalid wildcard)")
		}
	}
	return req, nil
}

// contact validates one Contact and works out its expiry.
func (g *Registrar) contact(ct *sip.ContactHeader, hdrExpires *time.Duration) (contactReq, *reject) {
	u := ct.Address
	if (u.Scheme != "sip" && u.Scheme != "sips") || u.Host == "" {
		// The SBC routes SIP only; a mailto: or tel: binding could never
		// be reached through it.
		return contactReq{}, rejectf(400, "Bad Request (unsupported Contact)")
	}
	clean := *u.Clone()
	clean.Headers = nil
	uri := clean.String()
	if len(uri) > maxContactLen {
		return contactReq{}, rejectf(400, "Bad Request (Contact too long)")
	}
	c := contactReq{uri: uri, q: 1000}
	exp := defaultExpires
	if hdrExpires != nil {
		exp = *hdrExpires
	}
	var keep sip.HeaderParams
	instance, regID := "", ""
	for _, kv := range ct.Params {
		switch strings.ToLower(kv.K) {
		case "expires":
			d, ok := parseDelta(kv.V)
			if !ok {
				return contactReq{}, rejectf(400, "Bad Request (invalid expires)")
			}
			exp = d
			continue
		case "q":
			q, ok := parseQ(kv.V)
			if !ok {
				return contactReq{}, rejectf(400, "Bad Request (invalid q)")
			}
			c.q = q
		case "+sip.instance":
			instance = kv.V
		case "reg-id":
			regID = kv.V
		}
		keep = append(keep, kv)
	}
	if len(keep) > 0 {
		c.params = keep.ToString(';')
		if len(c.params) > maxContactLen {
			return contactReq{}, rejectf(400, "Bad Request (Contact too long)")
		}
	}
	if exp > 0 && exp < g.cfg.MinExpires {
		return contactReq{}, rejectf(423, "Interval Too Brief",
			sip.NewHeader("Min-Expires", strconv.Itoa(int(g.cfg.MinExpires/time.Second))))
	}
	c.expires = min(exp, g.cfg.MaxExpires, g.cfg.PhoneExpires)
	if exp == 0 {
		c.expires = 0
	}
	c.key = bindingKey(clean, instance, regID)
	return c, nil
}

// bindingKey identifies a binding in its AOR: the instance and reg-id when
// the phone gives them (RFC 5626: a re-registration from a new address
// replaces the old flow), else the Contact URI compared loosely (case of
// scheme and host, parameter order).
func bindingKey(u sip.Uri, instance, regID string) string {
	if instance != "" {
		return "instance:" + instance + ";" + regID
	}
	var params []string
	for _, kv := range u.UriParams {
		params = append(params, strings.ToLower(kv.K)+"="+kv.V)
	}
	slices.Sort(params)
	return fmt.Sprintf("uri:%s:%s@%s:%d;%s", strings.ToLower(u.Scheme), u.User, strings.ToLower(u.Host), u.Port, strings.Join(params, ";"))
}

// apply computes the bindings of an AOR after req (RFC 3261 10.3 step 7).
// up holds what the PBX granted per binding key (relay mode, after its
// 2xx); cached caps expiries at what the PBX still holds. It changes
// nothing itself.
func (g *Registrar) apply(old []Binding, req *regRequest, now time.Time, up map[string]time.Duration, cached bool) ([]Binding, *reject) {
	out := liveBindings(old, now)
	req.evicted = nil
	if req.wildcard {
		for _, b := range out {
			if b.CallID == req.callID && req.cseq <= b.CSeq {
				return nil, rejectf(400, "Bad Request (CSeq out of order)")
			}
		}
		return nil, nil
	}
	touched := map[string]bool{}
	for _, c := range req.contacts {
		i := slices.IndexFunc(out, func(b Binding) bool { return b.Key == c.key })
		if i >= 0 && out[i].CallID == req.callID && req.cseq <= out[i].CSeq {
			return nil, rejectf(400, "Bad Request (CSeq out of order)")
		}
		d, bound := up[c.key]
		if c.expires == 0 || (up != nil && !bound) {
			// Removed by the phone, or refused by the PBX (expires=0 in
			// its 2xx): the SBC must not route to what the PBX dropped.
			if i >= 0 {
				out = slices.Delete(out, i, i+1)
			}
			continue
		}
		var b Binding
		if i >= 0 {
			b = out[i]
		} else {
			tok, ok := req.tokens[c.key]
			if !ok {
				tok = newToken()
				req.tokens[c.key] = tok
			}
			b = Binding{Token: tok, Key: c.key, Created: now}
		}
		exp := c.expires
		if bound {
			b.UpCallID = req.upCallID
			b.UpExpires = now.Add(d)
			b.UpRefreshed = now
			exp = min(exp, d)
		}
		if cached {
			exp = min(exp, b.UpExpires.Sub(now))
		}
		b.Contact, b.Params, b.Q = c.uri, c.params, c.q
		b.CallID, b.CSeq = req.callID, req.cseq
		b.Peer, b.Transport = req.peer, req.tr
		b.Node = g.cfg.Node
		b.RegisteredBy = req.by
		b.Expires = now.Add(exp)
		b.Updated = now
		touched[c.key] = true
		if i >= 0 {
			out[i] = b
		} else {
			out = append(out, b)
		}
	}
	if len(out) > g.cfg.MaxBindings {
		if !g.cfg.ReplaceOldest {
			return nil, rejectf(403, "Forbidden (too many bindings)")
		}
		for len(out) > g.cfg.MaxBindings {
			oldest := -1
			for i, b := range out {
				if !touched[b.Key] && (oldest < 0 || b.Updated.Before(out[oldest].Updated)) {
					oldest = i
				}
			}
			if oldest < 0 {
				return nil, rejectf(403, "Forbidden (too many bindings)")
			}
			req.evicted = append(req.evicted, out[oldest])
			out = slices.Delete(out, oldest, oldest+1)
		}
	}
	return out, nil
}

// cacheable tells whether a refresh can be answered without the PBX: every
// Contact refreshes a binding of the same registration (Call-ID) over the
// same flow, and the PBX's binding is fresh enough (inside the refresh
// window; with fallback, merely still valid). A REGISTER from another
// address always goes to the PBX, so its challenge guards every change of
// flow.
func (g *Registrar) cacheable(old []Binding, req *regRequest, now time.Time, fallback bool) bool {
	if g.cfg.Mode != ModeRelay || req.wildcard || req.query || len(req.contacts) == 0 {
		return false
	}
	if !fallback && g.cfg.RefreshPercent <= 0 {
		return false
	}
	for _, c := range req.contacts {
		i := slices.IndexFunc(old, func(b Binding) bool { return b.Key == c.key })
		if i < 0 || c.expires == 0 {
			return false
		}
		b := old[i]
		if b.CallID != req.callID || req.cseq <= b.CSeq || b.Peer != req.peer || b.Transport != req.tr || b.UpExpires.IsZero() {
			return false
		}
		if !fallback {
			window := b.UpExpires.Sub(b.UpRefreshed) * time.Duration(g.cfg.RefreshPercent) / 100
			if !now.Before(b.UpRefreshed.Add(window)) {
				return false
			}
		}
		if b.UpExpires.Sub(now) < g.cfg.MinExpires {
			return false
		}
	}
	return true
}

// commitAndAnswer applies req, writes the result and answers 200 with the
// AOR's bindings. count, if not nil, is incremented before the answer
// goes out.
func (g *Registrar) commitAndAnswer(w sbc.ResponseWriter, r *sbc.Request, req *regRequest, now time.Time, up map[string]time.Duration, cached bool, count *atomic.Int64) (sbc.Verdict, error) {
	removed := 0
	rej, err := g.commit(req.aor, func(old []Binding, at time.Time) ([]Binding, *reject, error) {
		now = at // the answer states expiries from the time they were set
		if cached && !g.cacheable(old, req, now, true) {
			return nil, nil, errNotCacheable
		}
		nb, rj := g.apply(old, req, now, up, cached)
		if rj != nil {
			return nil, rj, nil
		}
		removed = countRemoved(old, req)
		return nb, nil, nil
	})
	if err != nil {
		if errors.Is(err, errNotCacheable) {
			return 0, err
		}
		g.stats.StoreErrors.Add(1)
		return sbc.Rejected, fmt.Errorf("registrar: save %s: %w", req.aor, err)
	}
	if rej != nil {
		g.stats.Rejected.Add(1)
		return sbc.Rejected, g.respondReject(w, r, rej)
	}
	g.stats.Removed.Add(int64(removed))
	g.stats.Evicted.Add(int64(len(req.evicted)))
	g.log.Debug("bindings updated", "aor", req.aor, "peer", req.peer, "transport", req.tr,
		"contacts", len(req.contacts), "removed", removed, "evicted", len(req.evicted), "cached", cached)
	if count != nil {
		count.Add(1)
	}
	return g.answer(w, r, req, now)
}

// countRemoved counts the bindings of old that req removes on purpose.
func countRemoved(old []Binding, req *regRequest) int {
	if req.wildcard {
		return len(old)
	}
	n := 0
	for _, c := range req.contacts {
		if c.expires == 0 && slices.ContainsFunc(old, func(b Binding) bool { return b.Key == c.key }) {
			n++
		}
	}
	return n
}

// answer sends 200 with the AOR's current bindings. Without an
// authenticated identity, local mode lists only the bindings registered
// from the requester's own IP: an open query must not map a user's devices.
func (g *Registrar) answer(w sbc.ResponseWriter, r *sbc.Request, req *regRequest, now time.Time) (sbc.Verdict, error) {
	bs := g.snapshot(req.aor, now)
	if g.cfg.Mode == ModeLocal && (r.Identity == nil || r.Identity.User != req.user) {
		bs = slices.DeleteFunc(bs, func(b Binding) bool { return !samePeerIP(b.Peer, req.peerIP) })
	}
	res := sip.NewResponseFromRequest(r.Request, 200, "OK", nil)
	for _, b := range bs {
		v := "<" + b.Contact + ">"
		if b.Params != "" {
			v += ";" + b.Params
		}
		secs := int64((b.Expires.Sub(now) + time.Second/2) / time.Second)
		v += ";expires=" + strconv.FormatInt(secs, 10)
		res.AppendHeader(sip.NewHeader("Contact", v))
	}
	res.AppendHeader(sip.NewHeader("Date", now.UTC().Format(http.TimeFormat)))
	g.stats.Registered.Add(1)
	return sbc.Answered, w.Respond(res)
}

func samePeerIP(peer, ip string) bool {
	i := strings.LastIndexByte(peer, ':')
	if i < 0 {
		return false
	}
	return strings.Trim(peer[:i], "[]") == ip
}

func (g *Registrar) respondReject(w sbc.ResponseWriter, r *sbc.Request, rej *reject) error {
	return sbc.Respond(w, r, rej.code, rej.reason, rej.hdrs...)
}

// full reports whether a new AOR would pass MaxAORs, after dropping the
// expired ones it finds.
func (g *Registrar) full() bool {
	g.mu.RLock()
	n := len(g.aors) + g.pending
	g.mu.RUnlock()
	if n < g.cfg.MaxAORs {
		return false
	}
	g.Sweep()
	g.mu.RLock()
	defer g.mu.RUnlock()
	return len(g.aors)+g.pending >= g.cfg.MaxAORs
}

// commit changes one AOR: fn computes the new bindings from the current
// ones; the result is written to the store and, only once that succeeded,
// to memory. A reject or error from fn, a full store or a failed write
// change nothing.
func (g *Registrar) commit(aor string, fn func(old []Binding, now time.Time) ([]Binding, *reject, error)) (*reject, error) {
	s := &g.stripe[stripeOf(aor)]
	s.Lock()
	defer s.Unlock()
	now := g.cfg.Now()
	old := g.fetchLocked(aor, now)
	nb, rej, err := fn(old, now)
	if err != nil || rej != nil {
		return rej, err
	}
	if len(nb) > 0 && (len(old) == 0 || !g.holds(aor)) {
		// A new AOR takes a slot before its write, so concurrent new AORs
		// cannot overshoot MaxAORs together. (With Shared, an AOR may
		// have bindings in the cluster that the full table did not
		// take: it is new here all the same.)
		if g.full() {
			return rejectf(503, "Service Unavailable", sip.NewHeader("Retry-After", "60")), nil
		}
		g.mu.Lock()
		g.pending++
		g.mu.Unlock()
		defer func() {
			g.mu.Lock()
			g.pending--
			g.mu.Unlock()
		}()
	}
	var ttl time.Duration
	if len(nb) == 0 {
		err = g.bucket.Delete(aor)
	} else {
		ttl = lastExpiry(nb).Sub(now)
		err = g.bucket.PutTTL(aor, record{Bindings: nb}, ttl)
	}
	if err != nil {
		return nil, err
	}
	g.share(aor, nb, ttl)
	g.mu.Lock()
	for _, b := range g.aors[aor] {
		delete(g.tokens, b.Token)
	}
	if len(nb) == 0 {
		delete(g.aors, aor)
	} else {
		g.aors[aor] = nb
		for _, b := range nb {
			g.tokens[b.Token] = aor
		}
	}
	g.mu.Unlock()
	return nil, nil
}

// holds reports whether the local table has an entry for aor.
func (g *Registrar) holds(aor string) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	_, ok := g.aors[aor]
	return ok
}

func stripeOf(aor string) int {
	h := fnv.New32a()
	h.Write([]byte(aor))
	return int(h.Sum32() % stripes)
}

// parseDelta reads delta-seconds; values beyond 2^32-1 mean 2^32-1
// (RFC 3261 20.19).
func parseDelta(s string) (time.Duration, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 20 || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > maxDelta {
		n = maxDelta
	}
	return time.Duration(n) * time.Second, true
}

// parseQ reads a q value (RFC 3261 20.10: 0 to 1, three decimals) in
// thousandths.
func parseQ(s string) (int, bool) {
	s = strings.TrimSpace(s)
	whole, frac, _ := strings.Cut(s, ".")
	if (whole != "0" && whole != "1") || len(frac) > 3 || strings.Trim(frac, "0123456789") != "" {
		return 0, false
	}
	q := 0
	if whole == "1" {
		q = 1000
	}
	for i, m := 0, 100; i < len(frac); i, m = i+1, m/10 {
		q += int(frac[i]-'0') * m
	}
	if q > 1000 {
		return 0, false
	}
	return q, true
}

func formatQ(q int) string {
	if q >= 1000 {
		return "1"
	}
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("0.%03d", q), "0"), ".")
}

func reasonFor(code int) string {
	if code == 404 {
		return "Not Found"
	}
	return "Forbidden"
}
