package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/policy"
	"github.com/sipwall/sipwall/rules"
	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/b2bua"
	"github.com/sipwall/sipwall/sbc/cluster"
	"github.com/sipwall/sipwall/sbc/config"
	"github.com/sipwall/sipwall/sbc/decision"
	"github.com/sipwall/sipwall/sbc/hep"
	"github.com/sipwall/sipwall/sbc/media"
	"github.com/sipwall/sipwall/sbc/procs"
	"github.com/sipwall/sipwall/sbc/registrar"
	"github.com/sipwall/sipwall/sbc/sanity"
	"github.com/sipwall/sipwall/sbc/store"
	"github.com/sipwall/sipwall/sbc/upstream"
	sbctls "github.com/sipwall/sipwall/tls"
	"github.com/sipwall/sipwall/topology"
)

// loadConfig parses the -config flag of a sub-command and loads the file
// as `run` needs it.
func loadConfig(name string, args []string, stderr io.Writer) (*config.Config, string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/sipwall/sipwall.yaml", "configuration file")
	if err := fs.Parse(args); err != nil {
		return nil, "", err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return nil, *path, err
	}
	if err := cfg.RequireUpstreams(); err != nil {
		return nil, *path, err
	}
	if err := cfg.RequireUsers(); err != nil {
		return nil, *path, err
	}
	return cfg, *path, nil
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, path, err := loadConfig("run", args, stderr)
	if err != nil {
		return err
	}
	st, err := store.Open(cfg.Store.Path)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer st.Close()
	log := newLogger(cfg.Log, stderr)
	app, err := start(ctx, cfg, st, log)
	if err != nil {
		return err
	}
	app.cfgPath = path
	// SIGHUP re-reads the configuration file, the rule file and the
	// policy, all or nothing, and the users file. SIGTERM (or SIGINT)
	// drains: new calls are refused while calls in progress end, up to
	// calls.drain_timeout.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			app.drain(cfg.Calls.DrainTimeout.D(), log)
			app.stop()
			return nil
		case <-hup:
			app.reload(log)
		}
	}
}

func cmdCheck(args []string, stdout, stderr io.Writer) error {
	cfg, path, err := loadConfig("check", args, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok (%d listeners, %d upstreams)\n", path, len(cfg.Listen), len(cfg.Upstreams))
	return nil
}

// logLevel is the level of the loggers newLogger makes; a reload changes
// it in place.
var logLevel = new(slog.LevelVar)

func setLogLevel(level string) {
	var lvl slog.Level
	if lvl.UnmarshalText([]byte(level)) == nil {
		logLevel.Set(lvl)
	}
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	setLogLevel(c.Level)
	opts := &slog.HandlerOptions{Level: logLevel}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// sipgo reads datagrams into a 32 KiB buffer and cuts longer ones: the
// largest UDP payload fits whole, and limits.max_message_size decides (the
// pre-parse filter drops what is over it). Set before any goroutine reads
// it (an embedded demo PBX is already listening when setGlobals runs).
func init() { sip.TransportBufferReadSize = 65535 }

var globalsOnce sync.Once

// setGlobals sets sipgo's package-level knobs, once per process.
func setGlobals(cfg *config.Config, log *slog.Logger) {
	globalsOnce.Do(func() {
		// sipgo refuses UDP writes near 1300 bytes; SDP-rich INVITEs pass
		// that, and the peers we talk to reassemble IP fragments.
		sip.UDPMTUSize = cfg.Limits.MaxMessageSize + 200
		// sipgo logs parse failures with the raw bytes at error level: keep
		// its chatter at warn unless debugging.
		lvl := slog.LevelWarn
		if strings.EqualFold(cfg.Log.Level, "debug") {
			lvl = slog.LevelDebug
		}
		// Its records can carry raw wire bytes: quote, truncate, rate-limit.
		h := sbc.SafeHandler(levelFloor{log.Handler(), lvl}, 10, nil)
		sip.SetDefaultLogger(slog.New(h).With("component", "sipgo"))
	})
}

// levelFloor drops records below a level.
type levelFloor struct {
	slog.Handler
	min slog.Level
}

func (h levelFloor) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

// app is a running sipwall.
type app struct {
	server *sbc.Server
	b2b    *b2bua.B2BUA
	reg    *registrar.Registrar // nil when registrar.mode is off
	pool   *upstream.Pool
	sec    *security
	relay  *media.Manager // nil with media.mode off
	fast   *mediaFast     // the relay's kernel fast path (media.fastpath)
	// leaks is the leak report of topology hiding (metrics).
	leaks  *topology.Report
	shared *cluster.Client // nil with store.backend embedded
	// sharedFailClosed is store.redis.fail_closed as started.
	sharedFailClosed []string
	pol              *policy.Engine  // nil with policy.mode off
	fraud            *rules.Engine   // nil without rules.file
	pf               *prefilter      // nil with prefilter.mode off
	certs            *sbctls.Manager // nil without a certificate
	metrics          *metrics
	hep              *hep.Exporter // nil with hep.addr empty
	admin            *adminServer  // nil with admin.addr empty
	// decisions is the log behind the "why" search.
	decisions *decision.Log
	// policyMode is policy.mode as started (a reload does not change it).
	policyMode string
	// lastReload and lastRules are the last reload (SIGHUP, API) and the
	// last automatic reload of the rule file, nil before the first.
	lastReload atomic.Pointer[reloadRecord]
	lastRules  atomic.Pointer[rulesRecord]
	// cfg is the configuration in force (replaced by a reload); cfgPath
	// the file it came from ("" when built in code: demo, tests).
	cfg     *config.Config
	cfgPath string
	// targets and outbound are the upstreams and trunk as started.
	targets   []upstream.Target
	outbound  *upstream.Target
	started   time.Time
	draining  atomic.Bool
	reloadMu  sync.Mutex
	rulesFile string
	// cfgRealm is auth.realm, for the demo's help text.
	cfgRealm string
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

func (a *app) rulesReloaded(err error) {
	r := &rulesRecord{Time: time.Now()}
	if err != nil {
		r.Error = err.Error()
	}
	a.lastRules.Store(r)
}

func (a *app) stop() {
	a.admin.close()
	a.cancel()
	a.server.Close()
	if a.shared != nil {
		// Before the wait: Close ends the client's blocking reads at once.
		a.shared.Close()
	}
	a.wg.Wait()
	if a.relay != nil {
		a.relay.Close()
	}
	a.fast.close()
	a.pf.close()
	if a.hep != nil {
		a.hep.Close()
	}
	if a.certs != nil {
		a.certs.Close()
	}
}

// start builds and starts every part from a validated configuration.
func start(parent context.Context, cfg *config.Config, st *store.Store, log *slog.Logger) (*app, error) {
	setGlobals(cfg, log)
	plan, err := buildDialPlan(cfg)
	if err != nil {
		return nil, err
	}
	var targets []upstream.Target
	for _, u := range cfg.Upstreams {
		t, err := upstream.ParseTarget(u.Name, u.URI, u.Priority, u.Weight)
		if err != nil {
			return nil, fmt.Errorf("upstreams: %w", err)
		}
		targets = append(targets, t)
	}
	var outbound *upstream.Target
	if cfg.Outbound != nil {
		t, err := upstream.ParseTarget("outbound", cfg.Outbound.URI, 1, 1)
		if err != nil {
			return nil, fmt.Errorf("outbound: %w", err)
		}
		t.External = true
		outbound = &t
	}

	var b2bRef atomic.Pointer[b2bua.B2BUA]
	var pool *upstream.Pool
	var specs []sbc.ListenerSpec
	for _, l := range cfg.Listen {
		side := sbc.External
		if l.Side == "internal" {
			side = sbc.Internal
		}
		specs = append(specs, sbc.ListenerSpec{Transport: l.Transport, Addr: l.Addr, Side: side, Advertise: l.Advertise})
	}
	owns := func(r *sbc.Request) bool {
		b := b2bRef.Load()
		return b != nil && b.Owns(r)
	}
	decisions := decision.New(cfg.Admin.DecisionLog)
	pf, err := newPrefilter(cfg, log)
	if err != nil {
		return nil, err
	}
	if pf != nil {
		pf.decisions = decisions
	}
	shared, err := openShared(cfg, log)
	if err != nil {
		return nil, err
	}
	running := false
	defer func() {
		if !running && shared != nil {
			shared.Close()
		}
	}()
	sec, err := buildSecurity(cfg, st, shared, func() *upstream.Pool { return pool }, owns, pf, decisions, log)
	if err != nil {
		return nil, err
	}
	var admit func(netip.Addr, []byte) bool
	if pf != nil {
		admit = pf.admit
	}
	leaks := topology.NewReport(log, nil)
	topo, err := buildTopology(cfg.Topology, func() *upstream.Pool { return pool }, leaks)
	if err != nil {
		return nil, err
	}
	m := newMetrics()
	hepx, err := buildHEP(cfg, log)
	if err != nil {
		return nil, err
	}
	certs, err := buildTLS(cfg, log)
	if err != nil {
		return nil, err
	}
	var serverTLS *tls.Config
	if certs != nil {
		serverTLS = certs.ServerConfig()
	}
	clientTLS, err := upstreamTLS(cfg, targets, outbound)
	if err != nil {
		return nil, err
	}
	san := sanity.New(sanity.Options{RefuseTel: cfg.Dialplan.TelURI == config.TelRefuse})
	srv, err := sbc.NewServer(sbc.Options{
		TLS:               serverTLS,
		ClientTLS:         clientTLS,
		TLSListener:       tlsListenerOptions(cfg.TLS),
		ResponseFilter:    san.AllowResponse,
		Listeners:         specs,
		MaxInflight:       cfg.Limits.MaxInflight,
		MaxMessageSize:    cfg.Limits.MaxMessageSize,
		MaxConns:          cfg.Limits.TCP.MaxConns,
		MaxConnsPerSource: cfg.Limits.TCP.MaxConnsPerSource,
		IdleTimeout:       cfg.Limits.TCP.IdleTimeout.D(),
		WriteTimeout:      cfg.Limits.TCP.WriteTimeout.D(),
		MessageTimeout:    cfg.Limits.TCP.MessageTimeout.D(),
		// Stream connections are opened only toward the upstreams and the
		// trunk; everyone else is answered on the connection they opened.
		DialAllowed: func(ap netip.AddrPort) bool {
			if _, ok := pool.Lookup(ap.Addr()); ok {
				return true
			}
			return outbound != nil && outbound.Addr == ap
		},
		IsInternal: func(a netip.Addr) bool {
			_, ok := pool.Lookup(a)
			return ok
		},
		Blocked: func(a netip.Addr) bool {
			_, banned := sec.bans.Banned(a)
			return banned
		},
		Admit:    admit,
		Capture:  hepCapture(hepx),
		Outbound: outboundFilter(topo),
		OnUnhandledResponse: func(res *sip.Response) {
			if b := b2bRef.Load(); b != nil {
				b.OnUnhandledResponse(res)
			}
		},
		OnResponse: func(res *sip.Response) {
			if b := b2bRef.Load(); b != nil {
				b.OnResponse(res)
			}
		},
		OnDecision: chainDecisions(decisions, plan),
		Logger:     log,
	})
	if err != nil {
		return nil, err
	}
	// Health checks leave from the listeners, as calls do, so that the
	// answers come back where the server reads and pass its filter.
	pool = upstream.New(targets, upstream.Options{
		HealthInterval: cfg.Health.Interval.D(),
		HealthTimeout:  cfg.Health.Timeout.D(),
		Failures:       cfg.Health.Failures,
		Successes:      cfg.Health.Successes,
		Pinger:         upstream.NewSIPPinger(srv.Client(), srv),
		Logger:         log,
	})
	layers := map[string]sbc.Handler{"ban": sec.bans.Layer(), "sanity": san, "local": sbc.Local{}}
	if sec.auth != nil {
		layers["auth"] = sec.auth
	}
	fraud, err := buildRules(cfg, st, shared, sec, plan, log)
	if err != nil {
		return nil, err
	}
	if fraud != nil {
		layers["rules"] = &fraudLayer{e: fraud, plan: plan}
	}
	var pol *policy.Engine
	if cfg.Policy.Mode != config.PolicyOff {
		if pol, err = buildPolicy(cfg, sec, fraud, log); err != nil {
			return nil, err
		}
		layers["policy"] = pol.Layer()
	}
	var reg *registrar.Registrar
	var locate func(*sbc.Request) ([]upstream.Target, bool)
	var unreachable func(upstream.Target)
	if cfg.Registrar.Mode != config.RegistrarOff {
		rc := registrar.FromConfig(cfg.Registrar)
		rc.Client, rc.Endpoint, rc.Pool, rc.Store, rc.Logger = srv.Client(), srv, pool, st, log
		rc.Reason = func(code int, phrase string) string { return topo.Reason(topology.ToOutside, code, phrase) }
		if shared != nil {
			rc.Shared, rc.Node = sharedRegistrations{shared}, shared.Node()
		}
		if sec.users != nil {
			rc.IsUser = sec.isUser
		}
		if reg, err = registrar.New(rc); err != nil {
			return nil, err
		}
		layers["registrar"], locate, unreachable = reg, reg.Locate, reg.Unreachable
		if shared != nil && failClosed(cfg, config.FailClosedRegistrations) {
			layers["registrar"] = &registerGate{next: reg, c: shared}
		}
	}
	// Listen first: the media relay takes its addresses from the bound
	// listeners. Until the chain is set, requests get 501.
	ctx, cancel := context.WithCancel(parent)
	if err := srv.Start(ctx); err != nil {
		cancel()
		return nil, err
	}
	if pf != nil {
		if err := pf.start(cfg, srv.Listeners(), allowed(cfg, targets, outbound), sec.bans.Bans); err != nil {
			cancel()
			srv.Close()
			return nil, err
		}
	}
	checkDescriptors(cfg, log)
	fast := openMediaFast(cfg, log)
	relay, err := buildMedia(cfg.Media, peerEncryption(cfg.Auth.Trusted), srv.Listeners(), topo, leaks, fast.fastPath(), log)
	if err != nil {
		cancel()
		srv.Close()
		fast.close()
		pf.close()
		return nil, err
	}
	var mediaHook b2bua.Media
	if relay != nil {
		mediaHook = relay
	}
	b2b := b2bua.New(b2bua.Config{
		Client:          srv.Client(),
		Endpoint:        srv,
		Pool:            pool,
		Outbound:        outbound,
		Locate:          locate,
		Unreachable:     unreachable,
		Topology:        topo,
		Media:           mediaHook,
		TrustedPeer:     sec.trustedName,
		Events:          (&callLog{fraud: fraud, metrics: m, log: log, on: cfg.Log.Calls, plan: plan}).event,
		MaxDialogs:      cfg.Limits.MaxDialogs,
		RingTimeout:     cfg.Calls.RingTimeout.D(),
		MaxDuration:     cfg.Calls.MaxDuration.D(),
		SessionTimeout:  cfg.Calls.SessionTimeout.D(),
		FollowRedirects: cfg.Calls.FollowRedirects,
		Caps:            b2bua.Caps{PerUser: cfg.Calls.MaxPerUser, PerSource: cfg.Calls.MaxPerSource, PerTrusted: cfg.Calls.MaxPerTrusted},
		Targets:         newTargetCheck(cfg, plan, pol, fraud, log),
		Logger:          log,
	})
	b2bRef.Store(b2b)
	layers["b2bua"] = b2b
	// undo stops what has started so far when a later step fails.
	undo := func() {
		cancel()
		srv.Close()
		if relay != nil {
			relay.Close()
		}
		fast.close()
		pf.close()
	}
	chain, err := sbc.BuildChain(layers)
	if err != nil {
		undo()
		return nil, err
	}
	srv.SetChain(chain)
	a := &app{server: srv, b2b: b2b, reg: reg, pool: pool, sec: sec, relay: relay, fast: fast, leaks: leaks, pol: pol, fraud: fraud, rulesFile: cfg.Rules.File,
		cfgRealm: cfg.Auth.Realm, pf: pf, certs: certs, cancel: cancel, metrics: m, hep: hepx, cfg: cfg, targets: targets, outbound: outbound, started: time.Now(), decisions: decisions, policyMode: cfg.Policy.Mode}
	m.a = a
	if a.admin, err = startAdmin(cfg, a, log); err != nil {
		undo()
		return nil, err
	}
	a.wg.Add(3)
	go func() { defer a.wg.Done(); pool.Run(ctx) }()
	go func() { defer a.wg.Done(); b2b.Run(ctx) }()
	go func() { defer a.wg.Done(); _ = st.Sweeper(ctx, time.Minute) }()
	if reg != nil {
		a.wg.Add(1)
		go func() { defer a.wg.Done(); reg.Run(ctx) }()
	}
	if relay != nil {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			relay.Run(ctx, func(key string) { b2b.EndCall(key, "media inactivity") })
		}()
	}
	if pf != nil {
		a.wg.Add(1)
		go func() { defer a.wg.Done(); pf.run(ctx) }()
	}
	if certs != nil {
		a.wg.Add(1)
		go func() { defer a.wg.Done(); certs.Run(ctx) }()
	}
	if hepx != nil {
		a.wg.Add(1)
		go func() { defer a.wg.Done(); hepx.Run(ctx) }()
	}
	if pol != nil {
		a.wg.Add(1)
		go func() { defer a.wg.Done(); pol.Run(ctx, 2*time.Second) }()
	}
	if fraud != nil {
		a.wg.Add(2)
		go func() { defer a.wg.Done(); fraud.Run(ctx) }()
		go func() {
			defer a.wg.Done()
			watchRules(ctx, fraud, cfg.Rules.File, cfg.Rules.Builtin, log, a.rulesReloaded)
		}()
	}
	sec.run(ctx, func(f func()) {
		a.wg.Add(1)
		go func() { defer a.wg.Done(); f() }()
	})
	if procs.Enabled() {
		// One processor while the load fits in one CPU, all of them
		// above (sbc/procs); GOMAXPROCS in the environment turns it off.
		procs.Start(ctx, procs.Options{Log: log.With("component", "procs")})
	}
	if shared != nil {
		a.shared, a.sharedFailClosed = shared, cfg.Store.Redis.FailClosed
		if reg != nil {
			// Registrations made here during an outage reach the others
			// as soon as the shared store is back.
			shared.OnHealth(func(up bool) {
				if up {
					reg.SyncShared()
				}
			})
		}
		a.wg.Add(2)
		go func() { defer a.wg.Done(); shared.Run(ctx) }()
		// The bans already in the shared store, at once rather than at
		// the first periodic resync.
		go func() {
			defer a.wg.Done()
			if err := shared.Sync(ctx); err != nil && ctx.Err() == nil {
				log.Warn("first bans resync failed", "component", "cluster", "err", err)
			}
		}()
	}
	running = true
	for _, l := range srv.Listeners() {
		log.Info("listening", "component", "server", "transport", l.Spec.Transport, "addr", l.Bound.String(), "side", l.Spec.Side.String())
	}
	return a, nil
}

// exists reports whether a file exists; used by demo to find configs.
func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
