package policy

import (
	"context"
	"net/netip"
	"strconv"
	"time"
)

// Judgement is a decision as enforced on a destination the B2BUA asks
// about: the target of a transfer inside a call, the Contact of a 3xx it
// would follow.
type Judgement struct {
	Allow  bool
	Status int    // the refusal's status (403 unless the policy says)
	Reason string // and reason phrase
	// Why names the rule for the decision log ("rule premium", "would
	// deny (shadow): rule premium"); "" for a plain allow.
	Why string
}

// Judge decides in the way the layer decides a request: input.counters
// filled for an authenticated user, shadow mode, the ban of peer, the
// decision log, fail closed. The caller builds in with NewInput from the
// request that named the target and sets Route, Destination and whom the
// call is attributed to. A redirect decision refuses (403): a target is
// not redirected.
func (e *Engine) Judge(ctx context.Context, in *Input, peer netip.Addr) Judgement {
	if e.opt.Counters != nil && in.Identity != nil && in.Identity.User != "" {
		p, m := e.opt.Counters(in.Identity.User)
		in.Counters = &Counters{CallsInProgress: p, CallsLastMinute: m}
	}
	d, err := e.Decide(ctx, in)
	if err != nil {
		e.logDeny(in, d, err)
		if e.opt.Shadow {
			e.c.shadowDenies.Add(1)
			return Judgement{Allow: true, Why: whyDeny(true, "evaluation failed")}
		}
		return Judgement{Status: d.Status, Reason: d.Reason, Why: "evaluation failed"}
	}
	if d.Allow && d.Redirect == "" {
		e.logAllow(in, d)
		return Judgement{Allow: true}
	}
	e.logDeny(in, d, nil)
	why := whyDeny(e.opt.Shadow, "rule "+d.Rule)
	if e.opt.Shadow {
		e.c.shadowDenies.Add(1)
		return Judgement{Allow: true, Why: why}
	}
	if d.Ban != "" && e.opt.Ban != nil && peer.IsValid() {
		if dur, perr := time.ParseDuration(d.Ban); perr == nil { // checked by parseDecision
			e.c.bans.Add(1)
			e.opt.Ban(peer.Unmap(), dur, "policy", "rule "+strconv.Quote(d.Rule))
		}
	}
	status, reason := d.Status, d.Reason
	if d.Redirect != "" {
		status, reason = 403, "Forbidden"
	}
	return Judgement{Status: status, Reason: reason, Why: why}
}
