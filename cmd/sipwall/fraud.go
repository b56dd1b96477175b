package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/rules"
	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/b2bua"
	"github.com/sipwall/sipwall/sbc/cluster"
	"github.com/sipwall/sipwall/sbc/config"
	"github.com/sipwall/sipwall/sbc/store"
)

// fraudLayer is the chain layer "rules": it asks the anti-fraud engine
// about every new call from outside and applies its verdict.
type fraudLayer struct {
	e *rules.Engine
}

var _ sbc.Handler = (*fraudLayer)(nil)

func (l *fraudLayer) Name() string { return "rules" }

func (l *fraudLayer) ServeSIP(_ context.Context, w sbc.ResponseWriter, r *sbc.Request) (sbc.Verdict, error) {
	if r.Method != sip.INVITE || r.Side != sbc.External {
		return sbc.Continue, nil
	}
	if r.HasToTag() {
		return sbc.Continue, nil // re-INVITE: decided when the call began
	}
	c := rules.Call{ID: b2bua.OriginKey(r), Source: r.Peer.Addr().Unmap(), Destination: r.Recipient.User}
	if id := r.Identity; id != nil {
		c.User, c.Trusted = id.User, id.Trusted
	}
	v := l.e.Check(c)
	switch {
	case v.Shadow && v.Rule != "":
		r.Why = "would " + v.Action + " (shadow): rule " + v.Rule
	case !v.Allow:
		r.Why = "rule " + v.Rule
		if v.Action != "" {
			r.Why += " (" + v.Action + ")"
		}
	case v.MaxDuration > 0 && v.Rule != "":
		r.Why = "rule " + v.Rule + ": limited to " + v.MaxDuration.Round(time.Second).String()
	}
	if !v.Allow {
		// The B2BUA never sees this call: end it in the counters now.
		l.e.Ended(c.ID, false, 0)
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

// buildRules loads the rule file and makes the anti-fraud engine; nil
// without a rule file.
func buildRules(cfg *config.Config, st *store.Store, shared *cluster.Client, sec *security, log *slog.Logger) (*rules.Engine, error) {
	if cfg.Rules.File == "" {
		return nil, nil
	}
	rs, err := rules.Load(cfg.Rules.File)
	if err != nil {
		return nil, cfg.KeyError("rules.file", err)
	}
	var sh rules.Shared
	if shared != nil {
		sh = shared
	}
	return rules.New(rules.Options{
		Rules:            rs,
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

// watchRules reloads the rule file when it changes, all-or-nothing.
// Each attempt's outcome goes to done (nil error for a good one).
func watchRules(ctx context.Context, e *rules.Engine, path string, log *slog.Logger, done func(error)) {
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
		err = reloadRules(e, path)
		if err != nil {
			log.Error("rule file reload failed; the rules before stay", "component", "rules", "error", err)
		} else {
			log.Info("rule file reloaded", "component", "rules", "file", path)
		}
		done(err)
	}
}

func reloadRules(e *rules.Engine, path string) error {
	rs, err := rules.Load(path)
	if err != nil {
		return fmt.Errorf("rules %s: %w", path, err)
	}
	e.Swap(rs)
	return nil
}
