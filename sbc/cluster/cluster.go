// Package cluster shares state between sipwall nodes through Redis or Valkey:
// bans (with pub/sub and a periodic resync), registrations, the nonce keys of
// the digest layer, fraud counters, account blocks and the countries a user
// has called.
//
// The package knows nothing of the layers that use it: values are opaque
// bytes or the small plain structs defined here, and the caller adapts them.
// See README.md for the key layout and the behaviour when Redis is down.
package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Defaults and bounds.
const (
	DefaultPrefix  = "sipwall"
	DefaultTimeout = 500 * time.Millisecond
	DefaultResync  = 30 * time.Second

	// MaxValue is the largest value read from or written to Redis; larger
	// ones are refused (and, when read during a scan, skipped and counted).
	MaxValue = 64 << 10
	// MaxQueue is how many ban events wait locally while Redis is down.
	MaxQueue = 10000

	pingEvery   = time.Second
	retryEvery  = time.Second
	scanCount   = 500
	getBatch    = 200
	maxScanKeys = 200000
	maxKeys     = 1024
)

// ErrUnavailable is returned, without a round trip, while the client is
// unhealthy (Redis down or unreachable). The health check brings it back.
var ErrUnavailable = errors.New("cluster: redis unavailable")

// ErrTooLarge is returned for a value above MaxValue.
var ErrTooLarge = fmt.Errorf("cluster: value larger than %d bytes", MaxValue)

// Config says where Redis is and how to use it.
type Config struct {
	// Addrs are host:port. One address: standalone. MasterName set:
	// Sentinel (Addrs are the sentinels). Cluster: Redis Cluster (Addrs are
	// seed nodes).
	Addrs      []string
	MasterName string
	Cluster    bool
	Username   string
	Password   string
	// SentinelUsername and SentinelPassword authenticate to the sentinels
	// themselves (Sentinel only); empty when they have no ACL.
	SentinelUsername string
	SentinelPassword string
	// TLS, when set, is used for every connection.
	TLS *tls.Config
	// DB is the database number (standalone and Sentinel only).
	DB int
	// Prefix starts every key and channel name; default "sipwall". Letters,
	// digits, '_', '-' and '.' only.
	Prefix string
	// Timeout bounds every command; default 500ms.
	Timeout time.Duration
	// Resync is the period of the full bans resync; default 30s.
	Resync time.Duration
	// Node names this node (default hostname-pid); its own pub/sub messages
	// are ignored.
	Node string
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (cfg *Config) normalize() error {
	if len(cfg.Addrs) == 0 {
		return errors.New("cluster: no address")
	}
	for _, a := range cfg.Addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("cluster: address %q: %v", a, err)
		}
		if host == "" {
			return fmt.Errorf("cluster: address %q: no host", a)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("cluster: address %q: bad port", a)
		}
	}
	switch {
	case cfg.Cluster && cfg.MasterName != "":
		return errors.New("cluster: cluster and master_name are exclusive")
	case cfg.Cluster && cfg.DB != 0:
		return errors.New("cluster: Redis Cluster has only database 0")
	case !cfg.Cluster && cfg.MasterName == "" && len(cfg.Addrs) > 1:
		return errors.New("cluster: several addresses need cluster mode or a sentinel master_name")
	}
	if cfg.DB < 0 {
		return errors.New("cluster: negative database")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	for _, r := range cfg.Prefix {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.'
		if !ok {
			return fmt.Errorf("cluster: prefix %q: only letters, digits, '_', '-' and '.'", cfg.Prefix)
		}
	}
	if len(cfg.Prefix) > 64 {
		return errors.New("cluster: prefix longer than 64")
	}
	switch {
	case cfg.Timeout < 0:
		return errors.New("cluster: negative timeout")
	case cfg.Timeout == 0:
		cfg.Timeout = DefaultTimeout
	}
	switch {
	case cfg.Resync < 0:
		return errors.New("cluster: negative resync period")
	case cfg.Resync == 0:
		cfg.Resync = DefaultResync
	}
	if cfg.Node == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "node"
		}
		cfg.Node = host + "-" + strconv.Itoa(os.Getpid())
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return nil
}

// Stats are counters for metrics and the admin API.
type Stats struct {
	Up        bool
	DownSince time.Time // zero while up
	// Errors counts failed commands (a missing key is no error).
	Errors uint64
	// Published counts ban events written to Redis and published.
	Published uint64
	// Received counts ban events received from other nodes by pub/sub.
	Received uint64
	// Resyncs counts completed full bans resyncs.
	Resyncs uint64
	// Queued is the number of ban events waiting locally now (Redis down).
	Queued uint64
	// Dropped counts ban events lost from the local queue (full, or refused
	// by Redis when pushed).
	Dropped uint64
	// Invalid counts values from Redis that were skipped: bad JSON, wrong
	// type, too large, key and value disagreeing.
	Invalid uint64
	// RoundTrips counts commands and pipelines sent to Redis (a pipeline
	// is one round trip), the health check's PINGs included.
	RoundTrips uint64
	LastError  string
}

// Client talks to Redis for one node. Its methods are safe for concurrent
// use. Run must run for the health check, pub/sub and the resync.
type Client struct {
	cfg  Config
	log  *slog.Logger
	rdb  redis.UniversalClient
	keys keyspace

	closing   chan struct{}
	closeOnce sync.Once
	running   atomic.Bool

	syncCh  chan struct{} // flush the queue then resync
	flushCh chan struct{} // flush the queue
	healthC chan struct{} // health changed: report it
	syncMu  sync.Mutex    // one flush or resync at a time

	// deliverMu makes OnBan deliveries serial and keeps them in the order
	// of the state changes decided under mu.
	deliverMu sync.Mutex

	mu        sync.Mutex
	up        bool
	reported  bool // last state given to OnHealth
	downSince time.Time
	lastErr   string
	onBan     []func(BanEvent)
	onHealth  []func(bool)
	seq       uint64
	known     map[netip.Prefix]banState
	queue     map[netip.Prefix]queued
	qorder    []netip.Prefix
	qver      uint64
	dropWarn  bool

	nErr, nPub, nRecv, nResync, nDrop, nInvalid, nRTT atomic.Uint64
}

var setLoggerOnce sync.Once

// Open validates cfg and builds the client. It does not fail when Redis is
// down: the client starts unhealthy and Run brings it back.
func Open(cfg Config, log *slog.Logger) (*Client, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "cluster")
	setLoggerOnce.Do(func() { redis.SetLogger(debugLogger{}) })
	opts := &redis.UniversalOptions{
		Addrs:                 cfg.Addrs,
		MasterName:            cfg.MasterName,
		IsClusterMode:         cfg.Cluster,
		Username:              cfg.Username,
		Password:              cfg.Password,
		SentinelUsername:      cfg.SentinelUsername,
		SentinelPassword:      cfg.SentinelPassword,
		TLSConfig:             cfg.TLS,
		DB:                    cfg.DB,
		Protocol:              2,
		DialTimeout:           cfg.Timeout,
		ReadTimeout:           cfg.Timeout,
		WriteTimeout:          cfg.Timeout,
		PoolTimeout:           cfg.Timeout,
		ContextTimeoutEnabled: true,
		// No client-side retries: INCRBYFLOAT is not idempotent, and the
		// health check decides when Redis is back.
		MaxRetries:               -1,
		DialerRetries:            1,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	c := &Client{
		cfg:     cfg,
		log:     log,
		rdb:     redis.NewUniversalClient(opts),
		keys:    keyspace{cfg.Prefix},
		closing: make(chan struct{}),
		syncCh:  make(chan struct{}, 1),
		flushCh: make(chan struct{}, 1),
		healthC: make(chan struct{}, 1),
		known:   make(map[netip.Prefix]banState),
		queue:   make(map[netip.Prefix]queued),
	}
	c.rdb.AddHook(roundTrips{&c.nRTT})
	ctx, cancel := c.ctx(context.Background())
	err := c.rdb.Ping(ctx).Err()
	cancel()
	if err != nil {
		c.downSince = cfg.Now()
		c.noteError("ping", err)
		log.Warn("redis unreachable, starting degraded", "addrs", cfg.Addrs, "err", err)
	} else {
		c.up = true
		c.reported = true
		log.Info("redis connected", "addrs", cfg.Addrs, "node", cfg.Node)
	}
	return c, nil
}

// Run runs the health check (PING every second), the pub/sub subscription
// and the bans resync until ctx is done or the client is closed.
func (c *Client) Run(ctx context.Context) {
	if !c.running.CompareAndSwap(false, true) {
		c.log.Error("cluster: Run called twice")
		return
	}
	defer c.running.Store(false)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	var wg sync.WaitGroup
	wg.Go(func() { c.healthLoop(ctx) })
	wg.Go(func() { c.subscribeLoop(ctx) })
	wg.Go(func() { c.syncLoop(ctx) })
	wg.Wait()
}

// Close closes the connections and stops Run. It does not wait for Run.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.closing)
		err = c.rdb.Close()
	})
	return err
}

func (c *Client) closed() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

// Healthy tells whether Redis answered the last health check and no command
// failed with a connection error since.
func (c *Client) Healthy() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.up
}

// OnHealth adds f, called with each health transition (not the initial
// state: see Healthy). Calls come from Run, serially.
func (c *Client) OnHealth(f func(up bool)) {
	if f == nil {
		return
	}
	c.mu.Lock()
	c.onHealth = append(c.onHealth, f)
	c.mu.Unlock()
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	s := Stats{
		Up:        c.up,
		DownSince: c.downSince,
		Queued:    uint64(len(c.queue)),
		LastError: c.lastErr,
	}
	c.mu.Unlock()
	s.Errors = c.nErr.Load()
	s.Published = c.nPub.Load()
	s.Received = c.nRecv.Load()
	s.Resyncs = c.nResync.Load()
	s.Dropped = c.nDrop.Load()
	s.Invalid = c.nInvalid.Load()
	s.RoundTrips = c.nRTT.Load()
	return s
}

// roundTrips is a go-redis hook that counts what goes to Redis: one per
// command sent alone, one per pipeline.
type roundTrips struct{ n *atomic.Uint64 }

func (h roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// Node returns this node's name.
func (c *Client) Node() string { return c.cfg.Node }

// ctx bounds one command by the Timeout.
func (c *Client) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, c.cfg.Timeout)
}

// ready fails fast while the client is closed or unhealthy.
func (c *Client) ready() error {
	if c.closed() {
		return redis.ErrClosed
	}
	if !c.Healthy() {
		return ErrUnavailable
	}
	return nil
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// isConnErr tells whether err means Redis is unreachable or not serving,
// as opposed to a missing key or a refused command.
func isConnErr(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, redis.ErrClosed) ||
		errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) {
		return redis.IsLoadingError(err) || redis.IsReadOnlyError(err) ||
			redis.IsClusterDownError(err) || redis.IsMasterDownError(err) ||
			redis.IsTryAgainError(err) || redis.IsMaxClientsError(err)
	}
	return true // network errors, timeouts, pool errors
}

func (c *Client) noteError(op string, err error) {
	c.nErr.Add(1)
	c.mu.Lock()
	c.lastErr = op + ": " + err.Error()
	c.mu.Unlock()
}

// opError is a failed command; conn tells a connection-class failure.
type opError struct {
	op   string
	err  error
	conn bool
}

func (e *opError) Error() string { return "cluster: " + e.op + ": " + e.err.Error() }
func (e *opError) Unwrap() error { return e.err }

// connFailed tells whether err (from this package) means Redis could not be
// reached, so that the operation may be retried later.
func connFailed(err error) bool {
	var oe *opError
	return errors.Is(err, ErrUnavailable) || errors.As(err, &oe) && oe.conn
}

// fail records a failed command and wraps its error; a connection error
// marks the client unhealthy. redis.Nil and redis.ErrClosed pass through
// untouched.
func (c *Client) fail(op string, err error) error {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, redis.ErrClosed) {
		return err
	}
	var oe *opError
	if errors.As(err, &oe) {
		return err // recorded already
	}
	c.noteError(op, err)
	conn := isConnErr(err)
	if conn {
		c.markDown(err)
	}
	return &opError{op: op, err: err, conn: conn}
}

func (c *Client) markDown(err error) {
	c.mu.Lock()
	changed := c.up
	if changed {
		c.up = false
		c.downSince = c.cfg.Now()
	}
	c.mu.Unlock()
	if changed {
		c.log.Warn("redis down, degraded mode", "err", err)
		signal(c.healthC)
	}
}

func (c *Client) markUp() {
	c.mu.Lock()
	changed := !c.up
	var since time.Time
	if changed {
		c.up = true
		since = c.downSince
		c.downSince = time.Time{}
	}
	c.mu.Unlock()
	if changed {
		c.log.Info("redis back", "down_for", c.cfg.Now().Sub(since).Round(time.Millisecond))
		signal(c.healthC)
		signal(c.syncCh)
	}
}

func (c *Client) healthLoop(ctx context.Context) {
	t := time.NewTicker(pingEvery)
	defer t.Stop()
	for {
		c.reportHealth()
		select {
		case <-ctx.Done():
			return
		case <-c.healthC:
			continue
		case <-t.C:
		}
		pctx, cancel := c.ctx(ctx)
		err := c.rdb.Ping(pctx).Err()
		cancel()
		switch {
		case ctx.Err() != nil || errors.Is(err, redis.ErrClosed):
			return
		case err != nil:
			c.noteError("ping", err)
			c.markDown(err)
		default:
			c.markUp()
		}
	}
}

// reportHealth calls the OnHealth callbacks when the state differs from the
// last one reported.
func (c *Client) reportHealth() {
	c.mu.Lock()
	up := c.up
	if up == c.reported {
		c.mu.Unlock()
		return
	}
	c.reported = up
	fns := slices.Clone(c.onHealth)
	c.mu.Unlock()
	for _, f := range fns {
		f(up)
	}
}

// scan returns the keys matching pattern, at most maxScanKeys; complete is
// false when it stopped at that bound. On Redis Cluster every master is
// scanned.
func (c *Client) scan(parent context.Context, pattern string) (keys []string, complete bool, err error) {
	ctx, cancel := context.WithTimeout(parent, max(30*time.Second, 100*c.cfg.Timeout))
	defer cancel()
	var mu sync.Mutex
	seen := make(map[string]struct{})
	full := false
	one := func(ctx context.Context, cl redis.Cmdable) error {
		var cursor uint64
		for {
			cctx, ccancel := c.ctx(ctx)
			ks, next, err := cl.Scan(cctx, cursor, pattern, scanCount).Result()
			ccancel()
			if err != nil {
				return err
			}
			mu.Lock()
			for _, k := range ks {
				if len(seen) >= maxScanKeys {
					full = true
					break
				}
				seen[k] = struct{}{}
			}
			stop := full
			mu.Unlock()
			if stop || next == 0 {
				return nil
			}
			cursor = next
		}
	}
	if cc, ok := c.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return one(ctx, n) })
	} else {
		err = one(ctx, c.rdb)
	}
	if err != nil {
		return nil, false, c.fail("scan", err)
	}
	keys = make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	if full {
		c.log.Warn("scan stopped at its bound", "pattern", pattern, "bound", maxScanKeys)
	}
	return keys, !full, nil
}

// getMany reads string keys in pipelined batches and calls fn for each one
// present. Values of the wrong type or too large are skipped and counted.
func (c *Client) getMany(parent context.Context, keys []string, fn func(key string, v []byte) error) error {
	for i := 0; i < len(keys); i += getBatch {
		part := keys[i:min(i+getBatch, len(keys))]
		cmds := make([]*redis.StringCmd, len(part))
		ctx, cancel := c.ctx(parent)
		_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for j, k := range part {
				cmds[j] = p.Get(ctx, k)
			}
			return nil
		})
		cancel()
		if err != nil && isConnErr(err) {
			return c.fail("get", err)
		}
		for j, cmd := range cmds {
			v, err := cmd.Bytes()
			switch {
			case errors.Is(err, redis.Nil):
				continue // gone since the scan
			case isConnErr(err):
				return c.fail("get", err)
			case err != nil:
				c.nInvalid.Add(1)
				c.log.Debug("skipping unreadable value", "key", part[j], "err", err)
				continue
			case len(v) > MaxValue:
				c.nInvalid.Add(1)
				c.log.Debug("skipping oversized value", "key", part[j], "len", len(v))
				continue
			}
			if err := fn(part[j], v); err != nil {
				return err
			}
		}
	}
	return nil
}

// debugLogger sends go-redis' own messages to slog at debug level; the
// client logs the transitions that matter itself.
type debugLogger struct{}

func (debugLogger) Printf(ctx context.Context, format string, v ...any) {
	slog.Default().DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}
