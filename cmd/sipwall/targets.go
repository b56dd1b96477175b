package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/dialplan"
	"github.com/sipwall/sipwall/policy"
	"github.com/sipwall/sipwall/rules"
	"github.com/sipwall/sipwall/sbc/b2bua"
	"github.com/sipwall/sipwall/sbc/config"
)

// buildDialPlan is the dial plan of the configuration: the policy input,
// the fraud rules, the B2BUA's target check, the decision log and the
// call log all read destinations with it.
//
// Its country is dialplan.country, else policy.country, else the rule
// file's country (files written before the dial plan existed read
// national numbers with it; a file that does not load leaves none here
// and fails in buildRules with its own error).
func buildDialPlan(cfg *config.Config) (*dialplan.Plan, error) {
	c := cfg.Dialplan.Plan(cfg.Policy.Country)
	if c.Country == "" && cfg.Rules.File != "" {
		if rs, err := rules.Load(cfg.Rules.File); err == nil {
			c.Country = rs.Country
		}
	}
	p, err := dialplan.New(c)
	if err != nil {
		return nil, cfg.KeyError("dialplan", err)
	}
	return p, nil
}

// targetCheck judges a destination named inside a call (a REFER's
// Refer-To, a 3xx Contact the B2BUA follows) as a new call to it would
// be judged: the policy with input.route set, then the fraud rules, as a
// one-off check (counted, never in progress).
type targetCheck struct {
	plan  *dialplan.Plan
	pol   *policy.Engine // nil with policy.mode off
	fraud *rules.Engine  // nil without rules
	zone  *time.Location
	log   *slog.Logger
}

var _ b2bua.TargetCheck = (*targetCheck)(nil)

// newTargetCheck is nil when neither policy nor rules would judge.
func newTargetCheck(cfg *config.Config, plan *dialplan.Plan, pol *policy.Engine, fraud *rules.Engine, log *slog.Logger) b2bua.TargetCheck {
	if pol == nil && fraud == nil {
		return nil
	}
	zone, err := time.LoadLocation(cfg.Policy.Zone)
	if err != nil {
		zone = time.UTC // validated: cannot happen
	}
	return &targetCheck{plan: plan, pol: pol, fraud: fraud, zone: zone, log: log.With("component", "targets")}
}

func (t *targetCheck) CheckTarget(ctx context.Context, q b2bua.TargetRequest) b2bua.TargetVerdict {
	n := t.plan.ParseURI(q.URI)
	what := q.Route + " to " + n.String()
	var shadow string
	if t.pol != nil {
		in := policy.NewInput(q.Request, time.Now(), t.zone, t.plan)
		in.Route, in.Destination, in.Side = q.Route, policy.DestinationOf(n), q.Side.String()
		in.Peer = policy.Peer{}
		if q.Peer.IsValid() {
			in.Peer = policy.Peer{IP: q.Peer.Addr().Unmap().String(), Port: int(q.Peer.Port())}
		}
		// Whom the destination is attributed to, not who sent the request.
		in.Identity, in.Trusted = nil, ""
		if id := q.Identity; id != nil {
			in.Trusted = id.Trusted
			if id.User != "" {
				in.Identity = &policy.Identity{User: id.User, Realm: id.Realm}
			}
		}
		j := t.pol.Judge(ctx, in, q.Peer.Addr())
		if !j.Allow {
			t.log.Debug("target refused", "route", q.Route, "destination", n.String(), "by", "policy", "why", j.Why)
			return b2bua.TargetVerdict{Status: j.Status, Reason: j.Reason, Why: what + ": " + j.Why}
		}
		if j.Why != "" {
			shadow = what + ": " + j.Why
		}
	}
	if t.fraud != nil {
		c := rules.Call{Destination: n.Raw, Number: &n, Route: q.Route, Source: q.Peer.Addr().Unmap()}
		if id := q.Identity; id != nil {
			c.User, c.Trusted = id.User, id.Trusted
			if q.Request != nil && q.Request.Peer.IsValid() {
				c.Source = q.Request.Peer.Addr().Unmap() // the caller's address
			}
		}
		v := t.fraud.Check(c)
		switch {
		case !v.Allow:
			t.log.Debug("target refused", "route", q.Route, "destination", n.String(), "by", "rules", "rule", v.Rule)
			return b2bua.TargetVerdict{Status: v.Status, Reason: v.Reason, Why: what + ": " + fraudWhy(v)}
		case v.Shadow && v.Rule != "" && shadow == "":
			shadow = what + ": " + fraudWhy(v)
		}
	}
	return b2bua.TargetVerdict{Allow: true, Why: shadow}
}

// cmdDialplan prints how the dial plan of a configuration (or of a
// country) reads each destination given: the class, the E.164 form, the
// feature prefixes stripped, why it is invalid.
func cmdDialplan(args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("dialplan", flag.ContinueOnError)
	flags.SetOutput(stderr)
	cfgPath := flags.String("config", "", "configuration file (its dialplan section)")
	country := flags.String("country", "", "country of the plan, without -config")
	flags.Usage = func() {
		fmt.Fprintln(stderr, "usage: sipwall dialplan [-config FILE | -country CC] DESTINATION...")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() == 0 {
		flags.Usage()
		return flag.ErrHelp
	}
	cfg := config.Default()
	if *cfgPath != "" {
		c, err := config.Load(*cfgPath)
		if err != nil {
			return err
		}
		cfg = c
	} else {
		cfg.Dialplan.Country = strings.ToUpper(*country)
	}
	plan, err := buildDialPlan(cfg)
	if err != nil {
		return err
	}
	for _, d := range flags.Args() {
		var n dialplan.Number
		var u sip.Uri
		if strings.Contains(d, ":") && sip.ParseUri(d, &u) == nil {
			n = plan.ParseURI(&u)
		} else {
			n = plan.Parse(d)
		}
		fmt.Fprintf(stdout, "%q\t%s\t%s\n", d, n.Class, n.String())
	}
	return nil
}
