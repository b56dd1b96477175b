package main

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/dialplan"
	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/auth"
	"github.com/sipwall/sipwall/sbc/ban"
	"github.com/sipwall/sipwall/sbc/decision"
)

// chainDecisions records in l what the chain decided about a request:
// every rejection and drop (but a plain digest challenge, which every
// caller gets first), and the new calls, registrations and messages let
// through. In-dialog requests, ACKs and keepalives are not decisions
// anyone asks about, and are left out.
//
// To is the destination the request names (a REFER's Refer-To, a tel:
// number), in E.164 when the dial plan reads one, so that one number is
// found whatever form it was written in.
func chainDecisions(l *decision.Log, plan *dialplan.Plan) func(*sbc.Request, string, sbc.Verdict, int) {
	return func(r *sbc.Request, layer string, v sbc.Verdict, status int) {
		if r.Request == nil || r.IsAck() {
			return
		}
		switch v {
		case sbc.Rejected, sbc.Dropped:
			if layer == "auth" && r.Why == "" && (status == 401 || status == 407) {
				return // a challenge, not a refusal
			}
		default:
			if r.Why == "" && (!opensSomething(r.Method) || r.HasToTag()) {
				return
			}
		}
		e := decision.Entry{
			Layer: layer, Verdict: v.String(), Status: status, Why: r.Why, Method: string(r.Method),
			Source: r.Peer.Addr().Unmap(), To: r.Recipient.User,
		}
		if route, n := plan.Target(r.Request); route != "" || n.Valid() {
			e.To = n.Raw
			if n.Valid() {
				e.To = n.E164
			}
		}
		if layer == "" {
			e.Layer = "chain"
		}
		if e.Why == "" && status >= 300 {
			// No check named itself: the answer says what happened
			// (no registration, no upstream, no such dialog).
			e.Why = sbc.ReasonPhrase(status, "status "+strconv.Itoa(status))
		}
		switch {
		case r.Identity.Attribution() != "":
			e.User = r.Identity.Attribution()
		case r.Claimed != "":
			e.User = r.Claimed
		default:
			if f := r.From(); f != nil {
				e.User = f.Address.User
			}
		}
		l.Add(e)
	}
}

// unansweredDecisions records in l a source that was challenged and never
// answered: a phone that cannot log in (it cannot answer what it was
// offered, or has no password for our realm) or a scanner, so that
// `sipwall why` explains it.
func unansweredDecisions(l *decision.Log) func(auth.Unanswered) {
	if l == nil {
		return nil
	}
	return func(u auth.Unanswered) {
		detail := strconv.Itoa(u.Count) + " challenge(s) since " + u.First.UTC().Format("15:04:05 UTC")
		if u.UserAgent != "" {
			detail += "; User-Agent " + strconv.Quote(u.UserAgent)
		}
		l.Add(decision.Entry{
			Layer: "auth", Verdict: "unanswered", Why: u.Summary(), Method: u.Method,
			Source: u.Peer, User: u.User, To: u.To, Detail: detail,
		})
	}
}

// opensSomething: the methods whose out-of-dialog requests start
// something an operator asks about (a call, a binding, a message, a
// subscription, a transfer).
func opensSomething(m sip.RequestMethod) bool {
	switch m {
	case sip.INVITE, sip.REGISTER, sip.MESSAGE, sip.SUBSCRIBE, sip.REFER:
		return true
	}
	return false
}

// banDecisions records the ban store's bans, unbans and user locks in l.
func banDecisions(l *decision.Log) func(ban.Event) {
	return func(ev ban.Event) {
		e := decision.Entry{Layer: "ban", Verdict: ev.Kind}
		switch ev.Kind {
		case ban.EventLock:
			e.Layer, e.User, e.Why, e.Detail = "auth", ev.Lock.User, "user locked until "+ev.Lock.Until.UTC().Format("15:04:05 UTC"), ev.Lock.Evidence
		case ban.EventBan:
			e.Prefix, e.Why, e.Detail = ev.Entry.Prefix, ev.Entry.Reason, ev.Entry.Evidence
			e.Why += ", until " + ev.Entry.Until.UTC().Format("2006-01-02 15:04:05 UTC")
		default:
			e.Prefix = ev.Entry.Prefix
		}
		if e.Prefix.IsValid() && e.Prefix.IsSingleIP() {
			e.Source = e.Prefix.Addr()
		}
		if ev.Remote {
			e.Detail = "by another node; " + e.Detail
		}
		l.Add(e)
	}
}

// why searches the decision log for q and puts first, when q is an
// address the digest layer has challenged without an answer yet, that
// pending challenge: a phone that cannot log in is explained at once, not
// only after auth.DefaultUnansweredAfter.
func (a *app) why(q string, limit int) []decision.Entry {
	found := a.decisions.Search(decision.Query{Text: q, Limit: limit})
	ip, err := netip.ParseAddr(strings.TrimSpace(q))
	if err != nil || a.sec == nil || a.sec.auth == nil {
		return found
	}
	u, ok := a.sec.auth.Pending(ip)
	if !ok {
		return found
	}
	e := decision.Entry{
		Time: u.First, Last: u.First, Count: u.Count, Layer: "auth", Verdict: "challenged",
		Why:    strings.Replace(u.Summary(), "challenge unanswered", "challenged, no answer yet", 1),
		Method: u.Method, Source: u.Peer, User: u.User, To: u.To,
	}
	if u.UserAgent != "" {
		e.Detail = "User-Agent " + strconv.Quote(u.UserAgent)
	}
	return append([]decision.Entry{e}, found...)
}
