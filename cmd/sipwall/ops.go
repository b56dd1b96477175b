package main

import (
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"time"

	"github.com/sipwall/sipwall/bpf"
	"github.com/sipwall/sipwall/dialplan"
	"github.com/sipwall/sipwall/rules"
	"github.com/sipwall/sipwall/sbc/b2bua"
	"github.com/sipwall/sipwall/sbc/config"
)

// callLog receives the B2BUA's call events: the anti-fraud counters, the
// call setup histogram and, with log.calls, one line per ended call.
type callLog struct {
	fraud   *rules.Engine
	metrics *metrics
	log     *slog.Logger
	on      bool
	plan    *dialplan.Plan // reads the destination as every layer did
}

func (l *callLog) event(e b2bua.CallEvent) {
	if l.fraud != nil {
		switch {
		case e.Ended:
			l.fraud.Ended(e.Key, e.Answered, e.Duration)
		case e.Answered:
			l.fraud.Answered(e.Key)
		}
	}
	if e.Answered && !e.Ended {
		l.metrics.observeSetup(e.Setup)
	}
	if e.Ended && e.Info != nil && l.on {
		i := e.Info
		n := dialplan.Number{Class: dialplan.Invalid}
		if l.plan != nil {
			n = l.plan.Parse(i.To)
		}
		// user is the authenticated identity; claimed, the caller's From,
		// is kept apart so that the log cannot be made to blame another.
		attrs := []any{"component", "calls", "call", i.ID, "user", i.User, "claimed", i.Claimed, "destination", i.To,
			"e164", n.E164, "class", string(n.Class),
			"a_call_id", i.ACallID, "b_call_id", i.BCallID, "answered", e.Answered,
			"setup_ms", e.Setup.Milliseconds(), "duration_s", int64(e.Duration.Seconds()), "reason", e.Reason}
		if md := i.Media; md != nil {
			attrs = append(attrs, "media_pkts_in", md.PacketsIn, "media_pkts_out", md.PacketsOut,
				"media_bytes_in", md.BytesIn, "media_bytes_out", md.BytesOut, "media_fastpath_pkts", md.FastPath,
				"media_dropped", md.Dropped, "media_outside", md.Outside, "media_inside", md.Inside)
		}
		l.log.Info("call ended", attrs...)
	}
}

// ready tells the readiness probe whether to send traffic here.
func (a *app) ready() (bool, string) {
	if a.draining.Load() {
		return false, "draining"
	}
	if ok, why := sharedReady(a.shared, a.sharedFailClosed); !ok {
		return false, why
	}
	return a.pool.Ready()
}

// status is GET /api/status.
func (a *app) status() map[string]any {
	var listeners []map[string]string
	for _, l := range a.server.Listeners() {
		listeners = append(listeners, map[string]string{"transport": l.Spec.Transport, "addr": l.Bound.String(), "side": l.Spec.Side.String()})
	}
	out := map[string]any{
		"version":      version,
		"uptime_s":     int64(time.Since(a.started).Seconds()),
		"draining":     a.draining.Load(),
		"listeners":    listeners,
		"upstreams":    a.pool.Status(),
		"calls_active": a.b2b.Active(),
		"bans_active":  a.sec.bans.Stats().Active,
	}
	if a.shared != nil {
		out["shared_store"] = sharedStatus(a.shared)
	}
	if a.reg != nil {
		aors, bindings := a.reg.Count()
		out["registrations"] = map[string]int{"aors": aors, "bindings": bindings}
	}
	if a.pf != nil {
		c, where := a.pf.counters()
		pf := map[string]any{"mode": a.pf.conf.Mode, "judging": where, "dropped": c.TotalDropped()}
		if f := a.pf.xdp.Load(); f != nil {
			pf["attachments"] = f.Attachments()
		}
		out["prefilter"] = pf
	}
	if a.certs != nil {
		ts := a.certs.Stats()
		out["tls"] = map[string]any{"not_after": ts.NotAfter, "last_error": ts.LastError}
	}
	if a.pol != nil {
		ps := a.pol.Status()
		p := map[string]any{"version": ps.Version, "loaded": ps.Loaded}
		if ps.LastError != nil {
			p["last_error"] = ps.LastError.Error()
		}
		out["policy"] = p
	}
	if a.fraud != nil {
		out["rules"] = map[string]any{"file": a.rulesFile, "builtin": a.fraud.Builtin(), "blocked_accounts": a.fraud.Stats().BlockedAccounts}
	}
	return out
}

// reloadRecord is the last reload and when it ran (for the console).
type reloadRecord struct {
	Time   time.Time
	Result reloadResult
}

// rulesRecord is the last automatic reload of the rule file.
type rulesRecord struct {
	Time  time.Time
	Error string
}

// reloadResult reports a reload (SIGHUP, POST /api/reload).
type reloadResult struct {
	Config string `json:"config,omitempty"`
	Policy string `json:"policy,omitempty"`
	Rules  string `json:"rules,omitempty"`
	Users  string `json:"users,omitempty"`
	// Restart lists changed configuration sections that take effect only
	// at the next start.
	Restart []string `json:"restart_needed,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// reload re-reads the configuration file, the rule file and the policy,
// all or nothing: each is read and checked before any is put in force, so
// a bad one leaves everything as it was. The users file (also reloaded on
// change by its watcher) is re-read after them, on its own.
func (a *app) reload(log *slog.Logger) (res reloadResult) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	defer func() { a.lastReload.Store(&reloadRecord{Time: time.Now(), Result: res}) }()
	fail := func(what string, err error) reloadResult {
		res.Error = fmt.Sprintf("%s: %v", what, err)
		log.Error("reload refused; everything stays as it was", "component", "reload", "error", res.Error)
		return res
	}
	next := a.cfg
	if a.cfgPath != "" {
		c, err := config.Load(a.cfgPath)
		if err == nil {
			err = c.RequireUpstreams()
		}
		if err == nil {
			err = c.RequireUsers()
		}
		if err != nil {
			return fail("configuration", err)
		}
		next = c
	}
	var rs *rules.RuleSet
	if a.fraud != nil {
		var err error
		// What is in force: rules.* changes wait for a restart.
		if rs, err = loadRules(a.rulesFile, a.fraud.Builtin()); err != nil {
			return fail("rule file "+a.rulesFile, err)
		}
	}
	var pfCfg *bpf.Config
	if a.pf != nil && next != a.cfg {
		bc, err := bpfConfig(next, a.server.Listeners(), allowed(next, a.targets, a.outbound))
		if err == nil {
			err = bc.Validate()
		}
		if err != nil {
			return fail("prefilter", err)
		}
		pfCfg = &bc
	}
	// The policy compiles and runs its tests before it is swapped in;
	// after it nothing can fail.
	if a.pol != nil {
		if err := a.pol.Reload(); err != nil {
			return fail("policy", err)
		}
		res.Policy = "reloaded " + a.pol.Status().Version
	}
	if rs != nil {
		a.fraud.Swap(rs)
		res.Rules = "reloaded"
	}
	if next != a.cfg {
		if pfCfg != nil {
			a.pf.configure(*pfCfg, next.Prefilter.VerifiedTTL.D())
		}
		setLogLevel(next.Log.Level)
		res.Restart = restartNeeded(a.cfg, next)
		a.cfg = next
		res.Config = "reloaded"
	}
	if a.sec.users != nil {
		if err := a.sec.users.Reload(); err != nil {
			res.Users = "kept: " + err.Error()
			log.Error("users file reload failed; the previous users stay", "component", "auth", "error", err)
		} else {
			res.Users = "reloaded"
		}
	}
	log.Info("reloaded", "component", "reload", "config", res.Config, "policy", res.Policy, "rules", res.Rules,
		"users", res.Users, "restart_needed", res.Restart)
	return res
}

// liveKeys are the settings a reload puts in force; every other change
// waits for a restart.
var liveKeys = map[string]bool{"prefilter": true, "log": true}

// restartNeeded names the top-level sections that differ between the
// running and the new configuration and are not applied live; of the
// prefilter, its mode, interfaces, generic and pin_path need a restart.
func restartNeeded(old, next *config.Config) []string {
	var out []string
	ov, nv := reflect.ValueOf(old).Elem(), reflect.ValueOf(next).Elem()
	t := ov.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if liveKeys[name] {
			continue
		}
		if !reflect.DeepEqual(ov.Field(i).Interface(), nv.Field(i).Interface()) {
			out = append(out, name)
		}
	}
	op, np := old.Prefilter, next.Prefilter
	if op.Mode != np.Mode || !reflect.DeepEqual(op.Interfaces, np.Interfaces) || op.Generic != np.Generic || op.PinPath != np.PinPath {
		out = append(out, "prefilter (mode, interfaces, generic, pin_path)")
	}
	if old.Log.Format != next.Log.Format || old.Log.Calls != next.Log.Calls {
		out = append(out, "log (format, calls)")
	}
	return out
}

// drain refuses new calls and waits, up to d, for the calls in progress
// to end; readiness reports not ready meanwhile.
func (a *app) drain(d time.Duration, log *slog.Logger) {
	a.draining.Store(true)
	a.b2b.SetDraining(true)
	n := a.b2b.Active()
	if n == 0 || d <= 0 {
		return
	}
	log.Info("draining: new calls refused, waiting for calls in progress", "calls", n, "up_to", d)
	deadline := time.Now().Add(d)
	for a.b2b.Active() > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := a.b2b.Active(); n > 0 {
		log.Warn("drain timeout: stopping with calls in progress", "calls", n)
	} else {
		log.Info("drained: no call in progress")
	}
}
