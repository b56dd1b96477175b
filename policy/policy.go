// Package policy is the chain layer "policy": every new call and
// registration is decided by an OPA Rego policy, failing closed. See
// README.md.
package policy

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/sipwall/sipwall/dialplan"
)

//go:embed rego/*.rego
var defaultBundle embed.FS

// Defaults of Options.
const (
	DefaultQuery        = "data.sipwall.decision"
	DefaultTimeout      = 50 * time.Millisecond
	DefaultFailStatus   = 500
	DefaultSampleAllows = 100
	// denyLogsPerSecond bounds the decision log lines for denials.
	denyLogsPerSecond = 10
)

// Options configure an Engine. The zero value evaluates the embedded
// default bundle.
type Options struct {
	// Dir is the policy directory (.rego files, data.json / data.yaml,
	// recursively; directories starting with "." or "_" are skipped).
	// "" = the embedded default bundle (policy/rego).
	Dir string
	// Query is the decision to evaluate. Default "data.sipwall.decision".
	Query string
	// Timeout bounds one evaluation. Default 20ms.
	Timeout time.Duration
	// Shadow evaluates and counts/logs would-be denials but never
	// enforces anything (no reject, redirect or ban; errors let the
	// request pass too).
	Shadow bool
	// FailStatus is the response on evaluation error or timeout: 500
	// (default) or 403.
	FailStatus int
	// Zone is the time zone of input.time.local (default UTC).
	Zone *time.Location
	// Plan reads input.destination (the dial plan every layer shares);
	// nil: a plan of Country alone (dialplan.Config{Country: Country}).
	Plan *dialplan.Plan
	// Country is the ISO code of the plan built when Plan is nil.
	Country string
	// Ban, when set, receives Decision.Ban: ban ip for d.
	Ban func(ip netip.Addr, d time.Duration, reason, evidence string)
	// SampleAllows logs one allow in N. 0 = DefaultSampleAllows (100);
	// negative = no allow is logged. Denies are always logged, at most
	// 10 lines a second.
	SampleAllows int
	// Counters fills input.counters for an authenticated user from the
	// anti-fraud layer; nil leaves it null.
	Counters func(user string) (inProgress, lastMinute int)
	// Logger gets the decision log (component "policy").
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Engine evaluates the policy. It is safe for concurrent use; Reload
// swaps the compiled policy atomically.
type Engine struct {
	opt     Options
	log     *slog.Logger
	cur     atomic.Pointer[compiled]
	reload  sync.Mutex // one Reload at a time
	lastErr atomic.Pointer[errBox]
	c       counters
	denyLog *limiter
	allowN  atomic.Uint64
}

type errBox struct{ err error }

// New compiles the bundle (once), runs its Rego tests and refuses it if
// one fails. It starts nothing: call Run for reloads.
func New(opt Options) (*Engine, error) {
	if opt.Query == "" {
		opt.Query = DefaultQuery
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultTimeout
	}
	switch opt.FailStatus {
	case 0:
		opt.FailStatus = DefaultFailStatus
	case 403, 500:
	default:
		return nil, fmt.Errorf("policy: fail status %d: want 403 or 500", opt.FailStatus)
	}
	if opt.Zone == nil {
		opt.Zone = time.UTC
	}
	if opt.Plan == nil {
		p, err := dialplan.New(dialplan.Config{Country: opt.Country})
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		opt.Plan = p
	}
	if opt.SampleAllows == 0 {
		opt.SampleAllows = DefaultSampleAllows
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{opt: opt, log: opt.Logger.With("component", "policy")}
	e.denyLog = newLimiter(denyLogsPerSecond, opt.Now)
	c, err := e.build()
	if err != nil {
		return nil, err
	}
	e.cur.Store(c)
	return e, nil
}

func dirName(dir string) string {
	if dir == "" {
		return "(embedded)"
	}
	return dir
}

func bundleFS(dir string) (fs.FS, error) {
	if dir == "" {
		return fs.Sub(defaultBundle, "rego")
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("load policy %s: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("load policy %s: not a directory", dir)
	}
	return os.DirFS(dir), nil
}

func (e *Engine) build() (*compiled, error) {
	fsys, err := bundleFS(e.opt.Dir)
	if err != nil {
		return nil, err
	}
	var fp string
	if e.opt.Dir != "" {
		// Taken before reading: a change during the read is seen by the
		// next poll.
		fp, _ = fingerprint(e.opt.Dir)
	}
	c, err := build(context.Background(), fsys, e.opt.Query, e.opt.Now())
	if err != nil {
		return nil, fmt.Errorf("load policy %s: %w", dirName(e.opt.Dir), err)
	}
	c.fingerprint = fp
	return c, nil
}

// Reload builds the policy again beside the one in use and swaps it in
// when everything (parse, compile, tests, prepare) succeeded; on error the
// old policy stays and the error is returned, logged, counted and kept in
// Status().LastError.
func (e *Engine) Reload() error {
	e.reload.Lock()
	defer e.reload.Unlock()
	c, err := e.build()
	if err != nil {
		e.c.reloadsFailed.Add(1)
		e.lastErr.Store(&errBox{err})
		e.log.Error("policy reload failed, keeping the loaded policy", "version", e.cur.Load().version, "err", err)
		return err
	}
	old := e.cur.Swap(c)
	e.c.reloadsOK.Add(1)
	e.lastErr.Store(nil)
	e.log.Info("policy loaded", "version", c.version, "previous", old.version, "tests", c.tests)
	return nil
}

// Run polls the policy directory every interval (default 2s) and reloads
// when a file's name, size or modification time changed. It returns when
// ctx ends; for the embedded bundle it returns at once.
func (e *Engine) Run(ctx context.Context, interval time.Duration) {
	if e.opt.Dir == "" {
		return
	}
	if interval <= 0 {
		interval = 2 * time.Second
	}
	last := e.cur.Load().fingerprint
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fp, err := fingerprint(e.opt.Dir)
		if err != nil || fp == last {
			// An unreadable directory keeps the loaded policy; the next
			// readable state that differs is loaded.
			continue
		}
		last = fp
		_ = e.Reload() // logged and counted by Reload
	}
}

// fingerprint lists the names, sizes and mtimes of the policy files.
func fingerprint(dir string) (string, error) {
	var lines []string
	err := walkFiles(os.DirFS(dir), func(p string, d fs.DirEntry) error {
		if len(lines) > maxFiles {
			return fs.SkipAll
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		lines = append(lines, fmt.Sprintf("%s\x00%d\x00%d", p, info.Size(), info.ModTime().UnixNano()))
		return nil
	})
	sort.Strings(lines)
	return fmt.Sprint(lines), err
}

// ErrUndefined: the decision query had no result.
var ErrUndefined = errors.New("policy decision undefined")

// ErrTimeout: the evaluation did not end within Options.Timeout.
var ErrTimeout = errors.New("policy evaluation timed out")

// Decide evaluates the policy for in within Options.Timeout. On error,
// timeout, an undefined or a malformed decision it returns the fail-closed
// decision (Allow false, Status FailStatus, Rule "fail-closed") and the
// error. Counters are updated; logging is the layer's.
func (e *Engine) Decide(ctx context.Context, in *Input) (Decision, error) {
	start := time.Now()
	d, err := e.decide(ctx, in)
	e.c.latency.observe(time.Since(start))
	if err != nil {
		return e.failClosed(err), err
	}
	return d, nil
}

func (e *Engine) failClosed(err error) Decision {
	if errors.Is(err, ErrTimeout) {
		e.c.timeouts.Add(1)
	} else {
		e.c.errors.Add(1)
	}
	reason := "Server Internal Error"
	if e.opt.FailStatus == 403 {
		reason = "Forbidden"
	}
	return Decision{Allow: false, Status: e.opt.FailStatus, Reason: reason, Rule: "fail-closed"}
}

func (e *Engine) decide(ctx context.Context, in *Input) (Decision, error) {
	if in == nil {
		return Decision{}, errors.New("policy: nil input")
	}
	c := e.cur.Load()
	// The deadline cancels the evaluation through a timer: without an
	// external cancel OPA starts a goroutine per evaluation to watch ctx.
	// The timer, the cancel, the input document and the other options are
	// kept from one evaluation to the next (evalState).
	s := evalStates.Get().(*evalState)
	defer s.release()
	s.doc.fill(in)
	s.arm(e.opt.Timeout)
	stopCtx := s.watch(ctx)
	rs, err := c.pq.Eval(ctx, s.opts...)
	s.stop(stopCtx)
	if err != nil {
		if isCancel(err) {
			return Decision{}, fmt.Errorf("%w (%s): %v", ErrTimeout, e.opt.Timeout, err)
		}
		return Decision{}, fmt.Errorf("evaluate policy: %w", err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return Decision{}, ErrUndefined
	}
	if len(rs) > 1 {
		return Decision{}, fmt.Errorf("%w: %d results", ErrMalformed, len(rs))
	}
	// The value may hold terms of the input document: it is read before
	// the state is released.
	t, ok := rs[0].Expressions[0].Value.(*ast.Term)
	if !ok {
		return Decision{}, fmt.Errorf("%w: %T, want an object", ErrMalformed, rs[0].Expressions[0].Value)
	}
	d, err := parseDecision(t.Value)
	if err != nil {
		return Decision{}, err
	}
	if d.Allow {
		e.c.allows.Add(1)
	} else {
		e.c.denies.Add(1)
	}
	return d, nil
}

func isCancel(err error) bool {
	var te *topdown.Error
	return errors.As(err, &te) && te.Code == topdown.CancelErr
}
