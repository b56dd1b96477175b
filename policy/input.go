package policy

import (
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/emiago/sipgo/sip"
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/sipwall/sipwall/dialplan"
	"github.com/sipwall/sipwall/sbc"
)

// Routes by which an outside party names a destination (input.route).
const (
	RouteInvite   = dialplan.RouteInvite
	RouteRefer    = dialplan.RouteRefer
	RouteRedirect = dialplan.RouteRedirect
)

// Input is the document given to Rego as `input`. Every string taken from
// the wire is truncated to maxField bytes and made valid UTF-8. See
// docs/policy-input.schema.json and README.md.
type Input struct {
	// Method is the SIP method ("INVITE", "REGISTER", …).
	Method string `json:"method"`
	// Transport is "udp", "tcp", "tls", "ws" or "wss".
	Transport string `json:"transport"`
	// Peer is the transport peer, captured at the socket (never Via).
	Peer Peer `json:"peer"`
	// Side is "external" or "internal".
	Side string `json:"side"`
	// Trusted is the name of the trusted peer (trunk, PBX) the request
	// came from, "" if none.
	Trusted string `json:"trusted"`
	// Identity is the digest-authenticated user, null if none.
	Identity *Identity `json:"identity"`
	// From, To and RequestURI are the user and host parts of those URIs
	// (From and To as claimed by the sender).
	From       Party `json:"from"`
	To         Party `json:"to"`
	RequestURI Party `json:"request_uri"`
	// Route is how the destination was named: "invite", "refer",
	// "redirect", or "" for requests that name none (REGISTER, MESSAGE,
	// OPTIONS).
	Route string `json:"route"`
	// Destination is what the route names (the Request-URI for other
	// requests), read by the dial plan.
	Destination Destination `json:"destination"`
	// UserAgent is the first User-Agent header, "" if none.
	UserAgent string `json:"user_agent"`
	// Time is when the request is decided.
	Time Time `json:"time"`
	// Dialog is "in-dialog" when the To header has a tag, else "new".
	Dialog string `json:"dialog"`
	// Counters come from the anti-fraud layer; null until it exists.
	Counters *Counters `json:"counters"`
}

// Peer is a transport address.
type Peer struct {
	IP   string `json:"ip"`
	Port int    `json:"port"`
}

// Identity is an authenticated user.
type Identity struct {
	User  string `json:"user"`
	Realm string `json:"realm"`
}

// Party is the user and host of a URI.
type Party struct {
	User string `json:"user"`
	Host string `json:"host"`
}

// Destination is a destination as the dial plan reads it (dialplan.Parse).
type Destination struct {
	Raw   string `json:"raw"`   // the user part (or tel: number) as received
	E164  string `json:"e164"`  // "+<digits>", "" when not a number
	Valid bool   `json:"valid"` // E164 is set
	// Class is extension, name, emergency, service, national,
	// international or invalid.
	Class string `json:"class"`
	// Features are the feature prefixes stripped before reading ("*67").
	Features []string `json:"features"`
}

// DestinationOf is the input form of a number read by the dial plan.
func DestinationOf(n dialplan.Number) Destination {
	d := Destination{Raw: trunc(n.Raw, maxField), E164: n.E164, Valid: n.Valid(), Class: string(n.Class), Features: []string{}}
	for _, f := range n.Features {
		d.Features = append(d.Features, trunc(f, 16))
	}
	return d
}

// Time is a moment in UTC and in the configured zone.
type Time struct {
	UTC     string `json:"utc"`     // RFC 3339, UTC
	Local   string `json:"local"`   // RFC 3339 in Zone
	Weekday string `json:"weekday"` // local: "Monday" … "Sunday"
	Hour    int    `json:"hour"`    // local, 0..23
	Zone    string `json:"zone"`    // IANA name of Zone ("UTC", "Europe/London")
}

// Counters are per-source call counters from the anti-fraud layer.
type Counters struct {
	CallsInProgress int `json:"calls_in_progress"`
	CallsLastMinute int `json:"calls_last_minute"`
}

// maxField bounds every string from the wire.
const maxField = 256

func trunc(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return s
}

func party(u *sip.Uri) Party {
	if u == nil {
		return Party{}
	}
	return Party{User: trunc(u.User, maxField), Host: trunc(u.Host, maxField)}
}

// NewInput builds the input document for r at now, its destination read
// by plan (Plan.Target). It never panics on odd requests: a missing header
// leaves its fields empty.
func NewInput(r *sbc.Request, now time.Time, zone *time.Location, plan *dialplan.Plan) *Input {
	if zone == nil {
		zone = time.UTC
	}
	in := &Input{
		Transport:   trunc(r.Transport, 8),
		Side:        r.Side.String(),
		Dialog:      "new",
		Destination: Destination{Features: []string{}},
		Time:        timeOf(now, zone),
	}
	if r.Peer.IsValid() {
		in.Peer = Peer{IP: r.Peer.Addr().Unmap().String(), Port: int(r.Peer.Port())}
	}
	if id := r.Identity; id != nil {
		in.Trusted = trunc(id.Trusted, maxField)
		if id.User != "" {
			in.Identity = &Identity{User: trunc(id.User, maxField), Realm: trunc(id.Realm, maxField)}
		}
	}
	req := r.Request
	if req == nil {
		return in
	}
	in.Method = trunc(string(req.Method), 32)
	in.RequestURI = party(&req.Recipient)
	if f := req.From(); f != nil {
		in.From = party(&f.Address)
	}
	if t := req.To(); t != nil {
		in.To = party(&t.Address)
		if tag, ok := t.Params.Get("tag"); ok && tag != "" {
			in.Dialog = "in-dialog"
		}
	}
	if h := header(req, "user-agent"); h != nil {
		in.UserAgent = trunc(h.Value(), maxField)
	}
	route, n := plan.Target(req)
	in.Route, in.Destination = route, DestinationOf(n)
	return in
}

// value is the input as an OPA value, built directly (no JSON round
// trip) as Decide builds it (inputDoc); TestInputValueMatchesJSON keeps it
// equal to the JSON encoding.
func (in *Input) value() ast.Value {
	return newInputDoc().fill(in)
}

// lastInputTime is the Time of the latest input: formatted once a second
// (and zone).
var lastInputTime atomic.Pointer[inputTime]

type inputTime struct {
	sec  int64
	zone *time.Location
	t    Time
}

// timeOf is input.time at now in zone.
func timeOf(now time.Time, zone *time.Location) Time {
	sec := now.Unix()
	if l := lastInputTime.Load(); l != nil && l.sec == sec && l.zone == zone {
		return l.t
	}
	local := now.In(zone)
	t := Time{
		UTC:     now.UTC().Format(time.RFC3339),
		Local:   local.Format(time.RFC3339),
		Weekday: local.Weekday().String(),
		Hour:    local.Hour(),
		Zone:    zone.String(),
	}
	lastInputTime.Store(&inputTime{sec: sec, zone: zone, t: t})
	return t
}

// header is the first header named lower (in ASCII lower case) as
// GetHeader finds it, without lowering every header name on the way (one
// allocation per name that has a capital).
func header(req *sip.Request, lower string) sip.Header {
	for _, h := range req.Headers() {
		if n := h.Name(); len(n) == len(lower) && strings.EqualFold(n, lower) {
			return h
		}
	}
	return nil
}
