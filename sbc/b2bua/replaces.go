package b2bua

import (
	"errors"
	"net/url"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
)

// Attended transfer across the SBC. A Replaces value (RFC 3891; in an
// INVITE's header, or percent-encoded in the Refer-To URI of a REFER)
// names a dialog by Call-ID and tags, from the point of view of the UA
// that is to accept the INVITE: to-tag is that UA's own tag. Each call is
// two dialogs with identifiers of their own, so a Replaces that crosses
// must name the other leg of the call. Two cases, tried in this order:
//
//   - the named dialog is a leg of ours on which the SBC stands where the
//     accepting UA would (our tag is the to-tag): the target is beyond
//     the call's other leg, so that leg is named with its peer's tag as
//     to-tag;
//   - the named dialog is a leg of ours whose peer is the accepting UA
//     (our tag is the from-tag): a Replaces the SBC handed out for that
//     leg in the first case, now coming back in the transferee's INVITE;
//     the other leg is named with our tag as to-tag.
//
// The two are each other's inverse, so the INVITE carries inward exactly
// what the REFER carried outward (and the other way round), whatever the
// far side does with it; through a proxy that calls back into the SBC both
// legs of the replaced dialog are ours, and the first case picks the one
// that leads on. Only a leg on the side the message goes to may be named.
// Toward the outside nothing unmapped is sent (an inside Call-ID must not
// leak): an INVITE gets 481, a REFER 403. Toward the inside an unknown
// dialog is passed as it came, for the far end to reject.

// errReplaces reports a Replaces value that cannot be read.
var errReplaces = errors.New("malformed Replaces")

// replacesValue is a parsed Replaces value. Its parameters are kept in
// the order they came (early-only and extensions included), so a mapped
// value differs from the original only in Call-ID and tags.
type replacesValue struct {
	callID string
	params []replacesParam
	to     int // index in params of to-tag
	from   int // index of from-tag
}

type replacesParam struct {
	name, value string
	hasValue    bool
	quoted      bool // the value came as a quoted string
}

// parseReplaces reads `callid;to-tag=x;from-tag=y[;early-only]`. Both
// tags must appear exactly once (RFC 3891 section 6.1).
func parseReplaces(v string) (replacesValue, error) {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 && v[i] != '\t' || v[i] == 0x7f {
			return replacesValue{}, errReplaces
		}
	}
	parts := strings.Split(v, ";")
	rp := replacesValue{callID: strings.TrimSpace(parts[0]), to: -1, from: -1}
	if rp.callID == "" || strings.ContainsAny(rp.callID, " \t\"") {
		return replacesValue{}, errReplaces
	}
	if len(parts) > 16 {
		return replacesValue{}, errReplaces
	}
	for _, p := range parts[1:] {
		name, value, has := strings.Cut(p, "=")
		prm := replacesParam{name: strings.TrimSpace(name), value: strings.TrimSpace(value), hasValue: has}
		if prm.name == "" || strings.ContainsAny(prm.name, " \t\"") {
			return replacesValue{}, errReplaces
		}
		if len(prm.value) >= 2 && prm.value[0] == '"' && prm.value[len(prm.value)-1] == '"' {
			prm.value, prm.quoted = prm.value[1:len(prm.value)-1], true
		}
		if strings.ContainsAny(prm.value, " \t\"\\") {
			return replacesValue{}, errReplaces
		}
		idx := &rp.to
		switch {
		case strings.EqualFold(prm.name, "to-tag"):
		case strings.EqualFold(prm.name, "from-tag"):
			idx = &rp.from
		default:
			idx = nil
		}
		if idx != nil {
			if *idx >= 0 || prm.value == "" {
				return replacesValue{}, errReplaces
			}
			*idx = len(rp.params)
		}
		rp.params = append(rp.params, prm)
	}
	if rp.to < 0 || rp.from < 0 {
		return replacesValue{}, errReplaces
	}
	return rp, nil
}

func (rp replacesValue) toTag() string   { return rp.params[rp.to].value }
func (rp replacesValue) fromTag() string { return rp.params[rp.from].value }

// with is rp naming another dialog; rp itself is unchanged.
func (rp replacesValue) with(callID, toTag, fromTag string) replacesValue {
	out := rp
	out.callID = callID
	out.params = append([]replacesParam(nil), rp.params...)
	out.params[rp.to].value = toTag
	out.params[rp.from].value = fromTag
	return out
}

func (rp replacesValue) String() string {
	var b strings.Builder
	b.WriteString(rp.callID)
	for _, p := range rp.params {
		b.WriteByte(';')
		b.WriteString(p.name)
		if p.hasValue {
			b.WriteByte('=')
			if p.quoted {
				b.WriteByte('"')
			}
			b.WriteString(p.value)
			if p.quoted {
				b.WriteByte('"')
			}
		}
	}
	return b.String()
}

// replacement is a Replaces a request brought and what it maps to on each
// side. Built before any call's lock is taken (the named call may be any,
// the request's own included), applied under the lock.
type replacement struct {
	orig   replacesValue
	mapped []mappedReplaces // first case first (see above)
}

type mappedReplaces struct {
	value replacesValue
	side  sbc.Side
}

// mapReplaces finds the dialogs of ours that rp names.
func (b *B2BUA) mapReplaces(rp replacesValue) *replacement {
	r := &replacement{orig: rp}
	// Our tag is the to-tag: we stand where the accepting UA would.
	if m, ok := b.mapLeg(rp, rp.toTag(), rp.fromTag(), false); ok {
		r.mapped = append(r.mapped, m)
	}
	// Our tag is the from-tag: the leg's peer is the accepting UA.
	if m, ok := b.mapLeg(rp, rp.fromTag(), rp.toTag(), true); ok {
		r.mapped = append(r.mapped, m)
	}
	return r
}

// mapLeg looks for our leg with the Call-ID and tags of rp and names the
// other leg of its call instead. peerAccepts: the found leg's peer is the
// UA that accepts the INVITE, so on the other leg we are (to-tag ours).
func (b *B2BUA) mapLeg(rp replacesValue, local, remote string, peerAccepts bool) (mappedReplaces, bool) {
	c := b.table.lookup(rp.callID, local)
	if c == nil {
		return mappedReplaces{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateEnded {
		return mappedReplaces{}, false
	}
	for _, l := range []*leg{c.a, c.b} {
		if l == nil || l.callID != rp.callID || l.localTag != local || l.remoteTag != remote {
			continue
		}
		o := c.other(l)
		if o == nil || o.remoteTag == "" {
			// The other leg has no dialog yet (no tagged response).
			return mappedReplaces{}, false
		}
		v := rp.with(o.callID, o.remoteTag, o.localTag)
		if peerAccepts {
			v = rp.with(o.callID, o.localTag, o.remoteTag)
		}
		return mappedReplaces{value: v, side: o.side}, true
	}
	return mappedReplaces{}, false
}

// valueFor is the Replaces value to send toward side: a dialog of ours on
// that side, else toward the inside the value as it came. ok is false
// toward the outside when nothing of ours there is named.
func (r *replacement) valueFor(side sbc.Side) (replacesValue, bool) {
	for _, m := range r.mapped {
		if m.side == side {
			return m.value, true
		}
	}
	return r.orig, side == sbc.Internal
}

// inviteReplaces reads and maps the Replaces header of an initial INVITE;
// nil when it has none. Two headers, or one that cannot be read, are an
// error (400, RFC 3891 section 3).
func (b *B2BUA) inviteReplaces(req *sip.Request) (*replacement, error) {
	hs := req.GetHeaders("Replaces")
	switch len(hs) {
	case 0:
		return nil, nil
	case 1:
	default:
		return nil, errReplaces
	}
	rp, err := parseReplaces(hs[0].Value())
	if err != nil {
		return nil, err
	}
	return b.mapReplaces(rp), nil
}

// reaches tells whether a new call with this Replaces may be sent to every
// target: toward the outside only a dialog of ours there may be named.
func (r *replacement) reaches(sides ...sbc.Side) bool {
	if r == nil {
		return true
	}
	for _, s := range sides {
		if _, ok := r.valueFor(s); !ok {
			return false
		}
	}
	return true
}

// rewriteInvite puts the Replaces for leg side into out (copied from the
// caller's INVITE by the topology policy). nil r: nothing to do.
func (r *replacement) rewriteInvite(out *sip.Request, side sbc.Side) bool {
	if r == nil {
		return true
	}
	v, ok := r.valueFor(side)
	if !ok {
		return false
	}
	removeAll(out, "Replaces")
	out.AppendHeader(sip.NewHeader("Replaces", v.String()))
	return true
}

// referReplaces reads and maps the Replaces inside the Refer-To of a
// REFER; nil when there is none (a blind transfer).
func (b *B2BUA) referReplaces(req *sip.Request) (*replacement, error) {
	hs := req.GetHeaders("Refer-To")
	if len(hs) != 1 {
		return nil, nil // none, or several: the far end judges
	}
	raw, ok, err := referToReplaces(hs[0].Value())
	if err != nil || !ok {
		return nil, err
	}
	rp, err := parseReplaces(raw)
	if err != nil {
		return nil, err
	}
	return b.mapReplaces(rp), nil
}

// rewriteRefer puts the Replaces for leg side into the Refer-To of out
// (copied, hosts rewritten, by the topology policy). false: nothing may
// be sent toward that side.
func (r *replacement) rewriteRefer(out *sip.Request, side sbc.Side) bool {
	if r == nil {
		return true
	}
	v, ok := r.valueFor(side)
	if !ok {
		return false
	}
	hs := out.GetHeaders("Refer-To")
	if len(hs) != 1 {
		return false // the policy dropped it (unparsable): nothing to fix
	}
	nv, err := setReferToReplaces(hs[0].Value(), v.String())
	if err != nil {
		return false
	}
	removeAll(out, "Refer-To")
	out.AppendHeader(sip.NewHeader("Refer-To", nv))
	return true
}

// removeAll removes every header called name (any case); bounded by the
// headers the message has.
func removeAll(m *sip.Request, name string) {
	for _, h := range m.GetHeaders(name) {
		m.RemoveHeader(h.Name())
	}
}

// referURIHeaders finds the header part (after '?') of the URI in a
// Refer-To value: its start and end offsets in v, or ok false when the
// URI has none. The URI is the one in angle brackets (a display name
// before it may be quoted and hold anything).
func referURIHeaders(v string) (start, end int, ok bool, err error) {
	lt, quoted := -1, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == '<' && !quoted:
			lt = i
		}
		if lt >= 0 {
			break
		}
	}
	if lt < 0 {
		// An addr-spec without brackets cannot carry URI headers
		// (RFC 3261 20.10): nothing to map.
		return 0, 0, false, nil
	}
	gt := strings.IndexByte(v[lt:], '>')
	if gt < 0 {
		return 0, 0, false, errReplaces
	}
	uri := v[lt+1 : lt+gt]
	q := strings.IndexByte(uri, '?')
	if q < 0 {
		return 0, 0, false, nil
	}
	return lt + 1 + q + 1, lt + gt, true, nil
}

// referToReplaces returns the decoded Replaces in a Refer-To URI.
func referToReplaces(v string) (string, bool, error) {
	start, end, ok, err := referURIHeaders(v)
	if err != nil || !ok {
		return "", false, err
	}
	found, val := false, ""
	for _, h := range strings.Split(v[start:end], "&") {
		name, value, _ := strings.Cut(h, "=")
		if !strings.EqualFold(name, "Replaces") {
			continue
		}
		if found {
			return "", false, errReplaces
		}
		dec, err := url.PathUnescape(value)
		if err != nil {
			return "", false, errReplaces
		}
		found, val = true, dec
	}
	return val, found, nil
}

// setReferToReplaces returns v with the Replaces in its URI set to rp,
// escaped; the URI's other headers and everything else stay as they are.
func setReferToReplaces(v, rp string) (string, error) {
	start, end, ok, err := referURIHeaders(v)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", errReplaces
	}
	hs := strings.Split(v[start:end], "&")
	for i, h := range hs {
		name, _, _ := strings.Cut(h, "=")
		if strings.EqualFold(name, "Replaces") {
			hs[i] = name + "=" + escape(rp)
		}
	}
	return v[:start] + strings.Join(hs, "&") + v[end:], nil
}

// escape percent-encodes a URI header value (RFC 3261 hvalue: unreserved
// and hnv-unreserved characters stay as they are).
func escape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isHvalueChar(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

func isHvalueChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-_.!~*'()[]/?:+$", c) >= 0
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
