package dialplan

import (
	"github.com/emiago/sipgo/sip"
)

// ParseURI reads the destination of a URI: the user part of a sip: or
// sips: URI, the number of a tel: URI (RFC 3966). Other schemes and a
// SIP URI without a user part are invalid.
func (p *Plan) ParseURI(u *sip.Uri) Number {
	switch u.Scheme {
	case "sip", "sips", "":
		if u.User == "" {
			return Number{}.invalid("no user part")
		}
		return p.Parse(u.User)
	case "tel":
		return p.Parse(u.Raw())
	}
	return Number{}.invalid("scheme not sip, sips or tel")
}

// ParseAddress reads the destination of a header value holding a name-addr
// or addr-spec (Refer-To, Contact).
func (p *Plan) ParseAddress(value string) Number {
	if len(value) > 4*MaxRaw {
		return Number{}.invalid("too long")
	}
	var u sip.Uri
	params := sip.NewParams()
	if _, err := sip.ParseAddressValue(value, &u, &params); err != nil {
		return Number{}.invalid("unreadable URI")
	}
	return p.ParseURI(&u)
}

// Routes by which an outside party names a destination.
const (
	RouteInvite   = "invite"   // the Request-URI of a new INVITE
	RouteRefer    = "refer"    // the Refer-To of a REFER, in a dialog or not
	RouteRedirect = "redirect" // the Contact of a 3xx the SBC follows
)

// Target is the route and destination a request names: the Request-URI
// of a new INVITE (no To tag), the single Refer-To of a REFER (a missing
// or repeated one is invalid), else no route and the Request-URI.
func (p *Plan) Target(r *sip.Request) (route string, n Number) {
	switch {
	case r.Method == sip.REFER:
		hs := r.GetHeaders("Refer-To")
		if len(hs) != 1 {
			return RouteRefer, Unreadable("not one Refer-To")
		}
		return RouteRefer, p.ParseAddress(hs[0].Value())
	case r.Method == sip.INVITE && !hasToTag(r):
		return RouteInvite, p.ParseURI(&r.Recipient)
	}
	return "", p.ParseURI(&r.Recipient)
}

func hasToTag(r *sip.Request) bool {
	if t := r.To(); t != nil {
		tag, ok := t.Params.Get("tag")
		return ok && tag != ""
	}
	return false
}

// User is what a URI names as the user of the request the SBC builds from
// it: the user part of a SIP URI, the number of a tel: URI.
func User(u *sip.Uri) string {
	if u.Scheme == "tel" {
		return u.Raw()
	}
	return u.User
}
