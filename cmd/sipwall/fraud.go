package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/dialplan"
	"github.com/sipwall/sipwall/rules"
	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/b2bua"
	"github.com/sipwall/sipwall/sbc/cluster"
	"github.com/sipwall/sipwall/sbc/config"
	"github.com/sipwall/sipwall/sbc/store"
)

// fraudLayer is the chain layer "rules": it asks the anti-fraud engine
// about every destination an outside party names outside a dialog (the
// Request-URI of a new INVITE, the Refer-To of a REFER), read by the
// dial plan, and applies its verdict. A REFER inside a call is judged by
// the B2BUA's target check, which knows the call's identity.
type fraudLayer struct {
	e    *rules.Engine
	plan *dialplan.Plan
}

var _ sbc.Handler = (*fraudLayer)(nil)

func (l *fraudLayer) Name() string { return "rules" }

func (l *fraudLayer) ServeSIP(_ context.Context, w sbc.ResponseWriter, r *sbc.Request) (sbc.Verdict, error) {
	if r.Side != sbc.External || r.HasToTag() || (r.Method != sip.INVITE && r.Method != sip.REFER) {
		return sbc.Continue, nil // a re-INVITE was decided when the call began
	}
	route, n := l.plan.Target(r.Request)
	c := rules.Call{Source: r.Peer.Addr().Unmap(), Destination: n.Raw, Number: &n, Route: route}
	if r.Method == sip.INVITE {
		c.ID = b2bua.OriginKey(r) // a REFER out of dialog is a one-off check
	}
	if id := r.Identity; id != nil {
		c.User, c.Trusted = id.User, id.Trusted
	}
	v := l.e.Check(c)
	switch {
	case v.Shadow && v.Rule != "":
		r.Why = fraudWhy(v) + ": " + n.String()
	case !v.Allow:
		r.Why = fraudWhy(v) + ": " + n.String()
	case v.MaxDuration > 0 && v.Rule != "":
		r.Why = "rule " + v.Rule + ": limited to " + v.MaxDuration.Round(time.Second).String()
	}
	if !v.Allow {
		if c.ID != "" {
			// The B2BUA never sees this call: end it in the counters now.
			l.e.Ended(c.ID, false, 0)
		}
		status, reason := v.Status, v.Reason
		if status < 400 || status > 699 {
			status = 403
		}
		if reason == "" {
			reason = "Forbidden"
		}
		return sbc.Rejected, sbc.Respond(w, r, status, reason)
	}
	if v.MaxDuration > 0 {
		r.MaxDuration = v.MaxDuration
	}
	return sbc.Continue, nil
}

// fraudWhy names a verdict's rule for the decision log.
func fraudWhy(v rules.Verdict) string {
	if v.Shadow {
		return "would " + v.Action + " (shadow): rule " + v.Rule
	}
	why := "rule " + v.Rule
	if v.Action != "" {
		why += " (" + v.Action + ")"
	}
	return why
}

// loadRules reads the rules of rules.file and rules.builtin: the
// built-in rules alone, the file alone, both (built-in first), or none
// (nil).
func loadRules(file string, builtin bool) (*rules.RuleSet, error) {
	switch {
	case file == "" && builtin:
		return rules.BuiltinRules(), nil
	case file == "":
		return nil, nil
	case builtin:
		return rules.LoadWithBuiltin(file)
	}
	return rules.Load(file)
}

// buildRules loads the rules (the built-in ones, the file) and makes the
// anti-fraud engine, reading destinations with plan; nil without rules.
func buildRules(cfg *config.Config, st *store.Store, shared *cluster.Client, sec *security, plan *dialplan.Plan, log *slog.Logger) (*rules.Engine, error) {
	rs, err := loadRules(cfg.Rules.File, cfg.Rules.Builtin)
	if err != nil {
		return nil, cfg.KeyError("rules.file", err)
	}
	if rs == nil {
		return nil, nil
	}
	if rs.Country != "" && plan.Country() != "" && rs.Country != plan.Country() {
		log.Warn("the rule file's country differs from the dial plan's; destinations are read with the dial plan's, \"international\" compares with the file's",
			"component", "rules", "file", cfg.Rules.File, "country", rs.Country, "dialplan.country", plan.Country())
	}
	var sh rules.Shared
	if shared != nil {
		sh = sharedFraud{shared}
	}
	return rules.New(rules.Options{
		Rules:            rs,
		Plan:             plan,
		Store:            st,
		Shared:           sh,
		SharedFailClosed: failClosed(cfg, config.FailClosedFraud),
		Ban:              sec.banAddr("rules", log),
		OnAlert: func(a rules.Alert) {
			log.Warn("fraud alert", "component", "rules", "rule", a.Rule, "level", a.Level, "measure", a.Measure,
				"key", strconv.Quote(a.Key), "value", a.Value, "limit", a.Limit, "user", strconv.Quote(a.Call.User))
		},
		Webhook:        cfg.Rules.Webhook,
		WebhookTimeout: cfg.Rules.WebhookTimeout.D(),
		Logger:         log,
	})
}

// watchRules reloads the rule file when it changes, all-or-nothing (with
// the built-in rules when builtin). Each attempt's outcome goes to done
// (nil error for a good one). Without a file there is nothing to watch.
func watchRules(ctx context.Context, e *rules.Engine, path string, builtin bool, log *slog.Logger, done func(error)) {
	if path == "" {
		return
	}
	var last os.FileInfo
	if fi, err := os.Stat(path); err == nil {
		last = fi
	}
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fi, err := os.Stat(path)
		if err != nil || (last != nil && fi.ModTime().Equal(last.ModTime()) && fi.Size() == last.Size()) {
			continue
		}
		last = fi
		err = reloadRules(e, path, builtin)
		if err != nil {
			log.Error("rule file reload failed; the rules before stay", "component", "rules", "error", err)
		} else {
			log.Info("rule file reloaded", "component", "rules", "file", path)
		}
		done(err)
	}
}

func reloadRules(e *rules.Engine, path string, builtin bool) error {
	rs, err := loadRules(path, builtin)
	if err != nil {
		return fmt.Errorf("rules %s: %w", path, err)
	}
	e.Swap(rs)
	return nil
}

const rulesUsage = `usage: sipwall rules builtin    print the built-in rule file (rules.builtin), to copy and edit
`

// cmdRules runs the rules sub-commands.
func cmdRules(args []string, stdout, stderr io.Writer) error {
	if len(args) == 1 && args[0] == "builtin" {
		_, err := stdout.Write(rules.Builtin())
		return err
	}
	fmt.Fprint(stderr, rulesUsage)
	return flag.ErrHelp
}
