package sanity

import (
	"strings"

	"github.com/emiago/sipgo/sip"
)

// normalize undoes what sipgo's parser leaves of the linear white space
// RFC 3261 allows around ";", "=" and "/" (SEMI, EQUAL, SLASH: SWS on both
// sides), in place. Without it the valid RFC 4475 wsinv loses its From and
// To tags (sipgo stores the key "   tag    ") and its second Via reads as
// transport "" and host "TCP     spindle.example.com". Trimming is all it
// does: LWS there is never part of a name or value, so meaning is kept.
// Quoted parameter values are left alone; sipgo cannot parse them
// (the key swallows the rest of the value) and the checks refuse them.
//
// Fields are written only when they change, so a request without such white
// space (any sane one) is only read: the transaction layer holds it too.
func normalize(req *sip.Request) {
	normURI(&req.Recipient)
	for _, h := range req.Headers() {
		switch h := h.(type) {
		case *sip.ViaHeader:
			trim(&h.ProtocolName)
			trim(&h.ProtocolVersion)
			trim(&h.Transport)
			trim(&h.Host)
			if h.Transport == "" {
				// "SIP/2.0/ TCP host": sipgo cuts the transport at the
				// first blank, which comes right after the slash.
				if i := strings.IndexAny(h.Host, " \t"); i > 0 {
					h.Transport, h.Host = h.Host[:i], strings.TrimSpace(h.Host[i+1:])
				}
			}
			normParams(&h.Params)
		case *sip.FromHeader:
			normURI(&h.Address)
			normParams(&h.Params)
		case *sip.ToHeader:
			normURI(&h.Address)
			normParams(&h.Params)
		case *sip.ContactHeader:
			normURI(&h.Address)
			normParams(&h.Params)
		case *sip.RouteHeader:
			normURI(&h.Address)
		case *sip.RecordRouteHeader:
			normURI(&h.Address)
		case *sip.ReferToHeader:
			normURI(&h.Address)
		case *sip.ReferredByHeader:
			normURI(&h.Address)
			normParams(&h.Params)
		}
	}
}

func normURI(u *sip.Uri) {
	trim(&u.Host)
	normParams(&u.UriParams)
	normParams(&u.Headers)
}

// trim removes white space around *s, writing only if there is some.
func trim(s *string) {
	if t := strings.TrimSpace(*s); len(t) != len(*s) {
		*s = t
	}
}

// normParams trims keys and values and removes empty parameters (a lone
// ";" between LWS), reusing the slice; it writes nothing when there is
// nothing to change.
func normParams(p *sip.HeaderParams) {
	clean := true
	for _, kv := range *p {
		if len(strings.TrimSpace(kv.K)) != len(kv.K) || len(strings.TrimSpace(kv.V)) != len(kv.V) || kv.K == "" && kv.V == "" {
			clean = false
			break
		}
	}
	if clean {
		return
	}
	out := (*p)[:0]
	for _, kv := range *p {
		kv.K, kv.V = strings.TrimSpace(kv.K), strings.TrimSpace(kv.V)
		if kv.K == "" && kv.V == "" {
			continue
		}
		out = append(out, kv)
	}
	*p = out
}
