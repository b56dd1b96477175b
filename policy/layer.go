package policy

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
)

// Layer is the chain layer "policy".
type Layer struct {
	e *Engine
}

var _ sbc.Handler = (*Layer)(nil)

// Layer returns the chain layer of e.
func (e *Engine) Layer() *Layer { return &Layer{e: e} }

// Name implements sbc.Handler.
func (l *Layer) Name() string { return "policy" }

// ServeSIP implements sbc.Handler. ACK and CANCEL belong to a transaction
// or dialog already decided, and the internal side is trusted: they pass.
// Everything else from outside is decided by the policy; an error fails
// closed with FailStatus. In shadow mode nothing is enforced.
func (l *Layer) ServeSIP(ctx context.Context, w sbc.ResponseWriter, r *sbc.Request) (sbc.Verdict, error) {
	if r.Request == nil || r.IsAck() || r.IsCancel() || r.Side == sbc.Internal {
		return sbc.Continue, nil
	}
	if r.HasToTag() {
		// Inside an accepted dialog only a transfer can take the call
		// somewhere new, and the B2BUA asks about its target (Judge) with
		// the call's identity, which this request does not carry. BYE,
		// re-INVITE, UPDATE, INFO, PRACK and NOTIFY are never refused
		// (refusing a BYE would only leave calls up).
		return sbc.Continue, nil
	}
	e := l.e
	in := NewInput(r, e.opt.Now(), e.opt.Zone, e.opt.Plan)
	if e.opt.Counters != nil && in.Identity != nil && in.Identity.User != "" {
		p, m := e.opt.Counters(in.Identity.User)
		in.Counters = &Counters{CallsInProgress: p, CallsLastMinute: m}
	}
	d, err := e.Decide(ctx, in)
	if err != nil {
		e.logDeny(in, d, err)
		r.Why = whyDeny(e.opt.Shadow, "evaluation failed")
		if e.opt.Shadow {
			e.c.shadowDenies.Add(1)
			return sbc.Continue, nil
		}
		return sbc.Rejected, sbc.Respond(w, r, d.Status, d.Reason)
	}
	if d.Allow && d.Redirect == "" {
		e.logAllow(in, d)
		for k, v := range d.Tags {
			if r.Tags == nil {
				r.Tags = map[string]string{}
			}
			r.Tags[k] = v
		}
		return sbc.Continue, nil
	}
	e.logDeny(in, d, nil)
	r.Why = whyDeny(e.opt.Shadow, "rule "+d.Rule)
	if e.opt.Shadow {
		e.c.shadowDenies.Add(1)
		return sbc.Continue, nil
	}
	if d.Ban != "" && e.opt.Ban != nil {
		if dur, perr := time.ParseDuration(d.Ban); perr == nil { // checked by parseDecision
			e.c.bans.Add(1)
			e.opt.Ban(r.Peer.Addr().Unmap(), dur, "policy", "rule "+strconv.Quote(d.Rule))
		}
	}
	if d.Redirect != "" {
		e.c.redirects.Add(1)
		return sbc.Rejected, sbc.Respond(w, r, 302, "Moved Temporarily", sip.NewHeader("Contact", "<"+d.Redirect+">"))
	}
	return sbc.Rejected, sbc.Respond(w, r, d.Status, d.Reason)
}

// whyDeny is the decision log's name of a denial.
func whyDeny(shadow bool, what string) string {
	if shadow {
		return "would deny (shadow): " + what
	}
	return what
}

func (e *Engine) logAllow(in *Input, d Decision) {
	if e.opt.SampleAllows < 0 || !e.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	if e.allowN.Add(1)%uint64(e.opt.SampleAllows) != 1%uint64(e.opt.SampleAllows) {
		return
	}
	e.log.Debug("policy allow", e.attrs(in, d, nil)...)
}

func (e *Engine) logDeny(in *Input, d Decision, err error) {
	if !e.denyLog.allow() {
		e.c.logsDropped.Add(1)
		return
	}
	msg := "policy deny"
	if e.opt.Shadow {
		msg = "policy would deny (shadow)"
	}
	level := slog.LevelInfo
	if err != nil {
		level = slog.LevelWarn
	}
	e.log.Log(context.Background(), level, msg, e.attrs(in, d, err)...)
}

// attrs are the decision log fields. Wire strings are quoted (and were
// truncated by NewInput).
func (e *Engine) attrs(in *Input, d Decision, err error) []any {
	a := []any{
		"rule", d.Rule, "status", d.Status, "method", in.Method, "peer", in.Peer.IP,
		"side", in.Side, "dialog", in.Dialog,
		"from", strconv.Quote(in.From.User), "to", strconv.Quote(in.RequestURI.User),
	}
	if in.Route != "" {
		a = append(a, "route", in.Route, "class", in.Destination.Class)
		if in.Destination.E164 != "" {
			a = append(a, "e164", in.Destination.E164)
		}
	}
	if in.Identity != nil {
		a = append(a, "user", strconv.Quote(in.Identity.User))
	}
	if in.Trusted != "" {
		a = append(a, "trusted", in.Trusted)
	}
	if d.Redirect != "" {
		a = append(a, "redirect", d.Redirect)
	}
	if d.Ban != "" {
		a = append(a, "ban", d.Ban)
	}
	if t := tagString(d.Tags); t != "" {
		a = append(a, "tags", t)
	}
	if err != nil {
		a = append(a, "err", err)
	}
	return a
}
