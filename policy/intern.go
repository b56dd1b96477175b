package policy

import (
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
)

// internedTerms holds one shared term per key of the input document and
// per value of its small vocabularies (methods, transports, sides,
// weekdays, dialog states, classes): building the input then allocates
// only for what differs per request. OPA never changes a term it is given,
// and its own interned terms are shared the same way.
var internedTerms = func() map[string]*ast.Term {
	words := []string{
		// keys, every level of the document
		"method", "transport", "peer", "ip", "port", "side", "trusted",
		"identity", "user", "realm", "from", "to", "request_uri", "host",
		"route", "destination", "raw", "e164", "valid", "class", "features",
		"user_agent", "time", "utc", "local", "weekday", "hour", "zone",
		"dialog", "counters", "calls_in_progress", "calls_last_minute",
		// values
		"", "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "MESSAGE",
		"INFO", "UPDATE", "PRACK", "REFER", "NOTIFY", "SUBSCRIBE", "PUBLISH",
		"udp", "tcp", "tls", "ws", "wss", "external", "internal",
		"new", "in-dialog", "invite", "refer", "redirect", "UTC",
		"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday",
		"extension", "name", "emergency", "service", "national", "international", "invalid",
	}
	m := make(map[string]*ast.Term, len(words))
	for _, w := range words {
		m[w] = ast.StringTerm(w)
	}
	return m
}()

// stringTerm is ast.StringTerm, shared for the interned words.
func stringTerm(s string) *ast.Term {
	if t, ok := internedTerms[s]; ok {
		return t
	}
	return ast.StringTerm(s)
}

// lastTime is the time object of the latest input: every request within
// the same second (and zone) shares it.
var lastTime atomic.Pointer[timeTerm]

type timeTerm struct {
	t    Time
	term *ast.Term
}

func (t Time) term() *ast.Term {
	if l := lastTime.Load(); l != nil && l.t == t {
		return l.term
	}
	s := stringTerm
	term := ast.ObjectTerm(
		ast.Item(s("utc"), s(t.UTC)),
		ast.Item(s("local"), s(t.Local)),
		ast.Item(s("weekday"), s(t.Weekday)),
		ast.Item(s("hour"), ast.InternedTerm(t.Hour)),
		ast.Item(s("zone"), s(t.Zone)))
	lastTime.Store(&timeTerm{t: t, term: term})
	return term
}
