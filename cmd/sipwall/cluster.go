package main

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/rules"
	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/auth"
	"github.com/sipwall/sipwall/sbc/ban"
	"github.com/sipwall/sipwall/sbc/cluster"
	"github.com/sipwall/sipwall/sbc/config"
)

// openShared connects to the shared store of store.backend redis; nil
// with the embedded backend. A server that does not answer yet is no
// error: the client starts degraded and recovers once Run runs.
func openShared(cfg *config.Config, log *slog.Logger) (*cluster.Client, error) {
	if cfg.Store.Backend != config.BackendRedis {
		return nil, nil
	}
	r := cfg.Store.Redis
	var password string
	if r.PasswordFile != "" {
		b, err := os.ReadFile(r.PasswordFile)
		if err != nil {
			return nil, cfg.KeyError("store.redis.password_file", err)
		}
		password, _, _ = strings.Cut(string(b), "\n")
		password = strings.TrimSpace(password)
	}
	c, err := cluster.Open(cluster.Config{
		Addrs:      r.Addrs,
		MasterName: r.MasterName,
		Cluster:    r.Cluster,
		Username:   r.Username,
		Password:   password,
		DB:         r.DB,
		Prefix:     r.Prefix,
		Timeout:    r.Timeout.D(),
		Resync:     r.Resync.D(),
		Node:       r.Node,
	}, log.With("component", "cluster"))
	if err != nil {
		return nil, cfg.KeyError("store.redis.addrs", err)
	}
	return c, nil
}

// failClosed tells whether store.redis.fail_closed lists kind.
func failClosed(cfg *config.Config, kind string) bool {
	return cfg.Store.Backend == config.BackendRedis && slices.Contains(cfg.Store.Redis.FailClosed, kind)
}

// sharedBans publishes this node's bans and unbans to the other nodes.
type sharedBans struct{ c *cluster.Client }

func (s sharedBans) Publish(e ban.Entry, removed bool) error {
	return s.c.PublishBan(cluster.BanEvent{
		Prefix: e.Prefix, Until: e.Until, Reason: e.Reason, Evidence: e.Evidence,
		Level: e.Level, Removed: removed,
	})
}

// applyRemoteBans puts the other nodes' bans into force here (ban cache,
// and through the ban Sink the XDP map), and lifts those lifted elsewhere.
func applyRemoteBans(c *cluster.Client, bans *ban.Manager, log *slog.Logger) {
	c.OnBan(func(ev cluster.BanEvent) {
		var err error
		if ev.Removed {
			_, err = bans.RemoveRemote(ev.Prefix)
		} else {
			err = bans.ApplyRemote(ban.Entry{
				Prefix: ev.Prefix, Reason: ev.Reason, Evidence: ev.Evidence,
				Since: time.Now(), Until: ev.Until, Level: ev.Level,
			})
		}
		if err != nil {
			log.Debug("ban from another node not applied", "component", "cluster", "prefix", ev.Prefix, "node", ev.Node, "err", err)
		}
	})
}

// sharedKeys is the digest layer's nonce key source in the shared store.
type sharedKeys struct{ c *cluster.Client }

func (s sharedKeys) Keys() ([]auth.SharedKey, error) {
	ks, err := s.c.Keys()
	out := make([]auth.SharedKey, 0, len(ks))
	for _, k := range ks {
		out = append(out, auth.SharedKey{ID: k.ID, Seq: k.Seq, Secret: k.Secret, Created: k.Created})
	}
	return out, err
}

func (s sharedKeys) AddKey(k auth.SharedKey) (bool, error) {
	return s.c.AddKey(cluster.Key{ID: k.ID, Seq: k.Seq, Secret: k.Secret, Created: k.Created})
}

func (s sharedKeys) DeleteKey(id string) error { return s.c.DeleteKey(id) }

func (s sharedKeys) TryLock(name string, ttl time.Duration) (bool, error) {
	return s.c.TryLock(name, ttl)
}

// sharedRegistrations is the registrar's view of the shared store.
// sharedFraud is the client as the fraud rules see it: rules.Shared, and
// rules.SharedBatch through one pipeline per batch.
type sharedFraud struct{ *cluster.Client }

var _ rules.SharedBatch = sharedFraud{}

func (s sharedFraud) Batch(ops []rules.SharedOp) error {
	cops := make([]cluster.Op, len(ops))
	for i, o := range ops {
		cops[i] = cluster.Op{Key: o.Key, Start: o.Start, End: o.End, PrevStart: o.PrevStart, TTL: o.TTL, Delta: o.Delta}
	}
	err := s.Client.Batch(cops)
	for i := range ops {
		ops[i].Cur, ops[i].Prev, ops[i].Err = cops[i].Cur, cops[i].Prev, cops[i].Err
	}
	return err
}

type sharedRegistrations struct{ c *cluster.Client }

func (s sharedRegistrations) Put(aor string, v []byte, ttl time.Duration) error {
	return s.c.PutRegistration(aor, v, ttl)
}

func (s sharedRegistrations) Get(aor string) ([]byte, bool, error) {
	return s.c.GetRegistration(aor)
}

func (s sharedRegistrations) Delete(aor string) error { return s.c.DeleteRegistration(aor) }

// registerGate answers REGISTER with 503 while the shared store is
// unreachable (store.redis.fail_closed lists registrations): a binding
// stored on this node alone would not be found by the others.
type registerGate struct {
	next sbc.Handler
	c    *cluster.Client
}

func (g *registerGate) Name() string { return g.next.Name() }

func (g *registerGate) ServeSIP(ctx context.Context, w sbc.ResponseWriter, r *sbc.Request) (sbc.Verdict, error) {
	if r.Method == sip.REGISTER && r.Side == sbc.External && !g.c.Healthy() {
		return sbc.Rejected, sbc.Respond(w, r, 503, "Service Unavailable", sip.NewHeader("Retry-After", "30"))
	}
	return g.next.ServeSIP(ctx, w, r)
}

// sharedReady is the readiness of a node whose shared store is down: not
// ready when it refuses some work (fail_closed lists something), so a
// load balancer prefers nodes that can serve everything.
func sharedReady(c *cluster.Client, failClosed []string) (bool, string) {
	if c == nil || c.Healthy() || len(failClosed) == 0 {
		return true, ""
	}
	return false, "shared store unreachable (fail_closed: " + strings.Join(failClosed, ", ") + ")"
}

// sharedStatus is the shared store's part of GET /api/status.
func sharedStatus(c *cluster.Client) map[string]any {
	st := c.Stats()
	out := map[string]any{
		"backend": config.BackendRedis, "node": c.Node(), "up": st.Up,
		"errors": st.Errors, "ban_events_published": st.Published, "ban_events_received": st.Received,
		"resyncs": st.Resyncs, "queued": st.Queued, "dropped": st.Dropped,
	}
	if !st.Up && !st.DownSince.IsZero() {
		out["down_since"] = st.DownSince
	}
	if st.LastError != "" {
		out["last_error"] = st.LastError
	}
	return out
}
