package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// BanEvent is a ban (or its removal) shared between nodes. It is the JSON
// value of "<p>:ban:<prefix>" and the payload published on "<p>:bans".
type BanEvent struct {
	Prefix netip.Prefix `json:"prefix"`
	// Until is when the ban ends; zero means no end.
	Until    time.Time `json:"until,omitzero"`
	Reason   string    `json:"reason,omitempty"`
	Evidence string    `json:"evidence,omitempty"`
	Level    int       `json:"level,omitempty"`
	Removed  bool      `json:"removed,omitempty"`
	// Node is the node that wrote the event; PublishBan sets it.
	Node string `json:"node,omitempty"`
}

// banState is what this client last knew of a prefix: seq orders the
// changes, present is whether the ban is on.
type banState struct {
	seq     uint64
	present bool
}

type queued struct {
	ev  BanEvent
	ver uint64
}

// OnBan adds f, called with ban events from other nodes and from the
// resync. Calls are serial and made without the client's state locks held,
// so f may call the client (but not Sync, which waits for deliveries); a
// slow f delays the next events.
func (c *Client) OnBan(f func(BanEvent)) {
	if f == nil {
		return
	}
	c.mu.Lock()
	c.onBan = append(c.onBan, f)
	c.mu.Unlock()
}

// PublishBan writes a ban to Redis (SET with PXAT Until; DEL when
// ev.Removed) and publishes it to the other nodes. While Redis is down the
// event is queued locally (bounded by MaxQueue, the newest event per prefix
// wins) and pushed when Redis is back, before the resync; PublishBan then
// returns nil. A ban whose Until has passed is not written.
func (c *Client) PublishBan(ev BanEvent) error {
	if !ev.Prefix.IsValid() {
		return errors.New("cluster: ban without a valid prefix")
	}
	if c.closed() {
		return redis.ErrClosed
	}
	ev.Prefix = ev.Prefix.Masked()
	ev.Node = c.cfg.Node
	if ev.Removed {
		ev.Until, ev.Reason, ev.Evidence, ev.Level = time.Time{}, "", "", 0
	} else if !ev.Until.IsZero() && !ev.Until.After(c.cfg.Now()) {
		return nil
	}
	if b, err := json.Marshal(ev); err != nil {
		return fmt.Errorf("cluster: ban: %w", err)
	} else if len(b) > MaxValue {
		return ErrTooLarge
	}
	c.mu.Lock()
	// Events go through the queue while it is not empty, so that an older
	// queued event never overwrites a newer one.
	if !c.up || len(c.queue) > 0 {
		c.enqueueLocked(ev)
		up := c.up
		c.mu.Unlock()
		if up {
			signal(c.flushCh)
		}
		return nil
	}
	c.mu.Unlock()
	err := c.sendBan(context.Background(), ev)
	if err != nil && connFailed(err) {
		c.mu.Lock()
		c.enqueueLocked(ev)
		c.mu.Unlock()
		return nil
	}
	return err
}

func (c *Client) enqueueLocked(ev BanEvent) {
	c.qver++
	if _, ok := c.queue[ev.Prefix]; !ok {
		for len(c.queue) >= MaxQueue && len(c.qorder) > 0 {
			old := c.qorder[0]
			c.qorder = c.qorder[1:]
			delete(c.queue, old)
			c.nDrop.Add(1)
			if !c.dropWarn {
				c.dropWarn = true
				c.log.Warn("ban queue full, dropping the oldest events", "bound", MaxQueue)
			}
		}
		c.qorder = append(c.qorder, ev.Prefix)
	}
	c.queue[ev.Prefix] = queued{ev: ev, ver: c.qver}
}

// sendBan writes and publishes one event in one round trip.
func (c *Client) sendBan(parent context.Context, ev BanEvent) error {
	payload, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("cluster: ban: %w", err)
	}
	key := c.keys.ban(ev.Prefix)
	ctx, cancel := c.ctx(parent)
	defer cancel()
	_, err = c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		switch {
		case ev.Removed:
			p.Del(ctx, key)
		case ev.Until.IsZero():
			p.Set(ctx, key, payload, 0)
		default:
			p.Do(ctx, "set", key, payload, "pxat", ceilMilli(ev.Until))
		}
		p.Publish(ctx, c.keys.banChannel(), payload)
		return nil
	})
	if err != nil {
		return c.fail("publish ban", err)
	}
	c.nPub.Add(1)
	c.mu.Lock()
	c.seq++
	c.known[ev.Prefix] = banState{seq: c.seq, present: !ev.Removed}
	c.mu.Unlock()
	return nil
}

func ceilMilli(t time.Time) int64 {
	ns := t.UnixNano()
	ms := ns / int64(time.Millisecond)
	if ns%int64(time.Millisecond) > 0 {
		ms++
	}
	return ms
}

// Bans returns the bans now in Redis (SCAN), skipping and counting values
// that do not parse.
func (c *Client) Bans() ([]BanEvent, error) {
	bans, _, err := c.bans(context.Background())
	return bans, err
}

func (c *Client) bans(ctx context.Context) ([]BanEvent, bool, error) {
	if err := c.ready(); err != nil {
		return nil, false, err
	}
	keys, complete, err := c.scan(ctx, c.keys.banMatch())
	if err != nil {
		return nil, false, err
	}
	now := c.cfg.Now()
	var out []BanEvent
	err = c.getMany(ctx, keys, func(key string, v []byte) error {
		ev, ok := c.decodeBan(v)
		if !ok {
			return nil
		}
		if p, ok := c.keys.banPrefix(key); !ok || p != ev.Prefix || ev.Removed {
			c.nInvalid.Add(1)
			c.log.Debug("skipping ban whose key and value disagree", "key", key)
			return nil
		}
		if !ev.Until.IsZero() && !ev.Until.After(now) {
			return nil
		}
		out = append(out, ev)
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return out, complete, nil
}

// decodeBan parses a ban value or message; a bad one is counted.
func (c *Client) decodeBan(v []byte) (BanEvent, bool) {
	var ev BanEvent
	if len(v) > MaxValue {
		c.nInvalid.Add(1)
		return ev, false
	}
	if err := json.Unmarshal(v, &ev); err != nil || !ev.Prefix.IsValid() {
		c.nInvalid.Add(1)
		c.log.Debug("skipping bad ban value", "err", err)
		return BanEvent{}, false
	}
	ev.Prefix = ev.Prefix.Masked()
	return ev, true
}

// Sync pushes the queued ban events and then runs a full resync now. Run
// does the same every Resync period and when Redis comes back.
func (c *Client) Sync(ctx context.Context) error {
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	if err := c.flushQueue(ctx); err != nil {
		return err
	}
	return c.resync(ctx)
}

func (c *Client) syncLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.Resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.syncCh:
		case <-c.flushCh:
			c.syncMu.Lock()
			if err := c.flushQueue(ctx); err != nil && ctx.Err() == nil {
				c.log.Debug("ban queue not pushed", "err", err)
			}
			c.syncMu.Unlock()
			continue
		}
		if !c.Healthy() {
			continue
		}
		if err := c.Sync(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("bans resync failed", "err", err)
		}
	}
}

// flushQueue pushes the queued events, oldest first. It stops at the first
// connection error; an event Redis refuses is dropped and counted.
func (c *Client) flushQueue(ctx context.Context) error {
	pushed := 0
	for {
		if err := c.ready(); err != nil {
			return err
		}
		c.mu.Lock()
		if len(c.qorder) == 0 {
			c.dropWarn = false
			c.mu.Unlock()
			if pushed > 0 {
				c.log.Info("queued bans pushed", "count", pushed)
			}
			return nil
		}
		p := c.qorder[0]
		q := c.queue[p]
		c.mu.Unlock()
		var err error
		sent := false
		// A ban that ended while it waited is simply forgotten.
		if q.ev.Removed || q.ev.Until.IsZero() || q.ev.Until.After(c.cfg.Now()) {
			err = c.sendBan(ctx, q.ev)
			if err != nil && (connFailed(err) || ctx.Err() != nil) {
				return err
			}
			sent = err == nil
		}
		c.mu.Lock()
		if err != nil {
			c.nDrop.Add(1)
			c.log.Warn("queued ban refused by redis, dropped", "prefix", p, "err", err)
		} else if sent {
			pushed++
		}
		// A newer event for the prefix may have replaced this one while it
		// was sent: then it stays, at the front, and goes next.
		if cur, ok := c.queue[p]; ok && cur.ver == q.ver {
			delete(c.queue, p)
			c.qorder = c.qorder[1:]
		}
		c.mu.Unlock()
	}
}

// resync reads every ban in Redis, delivers each one, and delivers a
// removal for every prefix this client knew as banned that Redis no longer
// has (unless an event for it is still queued here). Prefixes changed by a
// message or a publish while the scan ran keep that newer state.
func (c *Client) resync(ctx context.Context) error {
	c.mu.Lock()
	start := c.seq
	c.mu.Unlock()
	bans, complete, err := c.bans(ctx)
	if err != nil {
		return err
	}
	c.deliverMu.Lock()
	defer c.deliverMu.Unlock()
	c.mu.Lock()
	out := make([]BanEvent, 0, len(bans))
	found := make(map[netip.Prefix]struct{}, len(bans))
	for _, ev := range bans {
		found[ev.Prefix] = struct{}{}
		if st, ok := c.known[ev.Prefix]; ok && st.seq > start {
			continue
		}
		c.seq++
		c.known[ev.Prefix] = banState{seq: c.seq, present: true}
		out = append(out, ev)
	}
	removed := 0
	if complete {
		for p, st := range c.known {
			if st.seq > start {
				continue
			}
			if _, ok := found[p]; ok {
				continue
			}
			if _, ok := c.queue[p]; ok {
				continue
			}
			if st.present {
				out = append(out, BanEvent{Prefix: p, Removed: true})
				removed++
			}
			delete(c.known, p)
		}
	}
	fns := slices.Clone(c.onBan)
	c.mu.Unlock()
	c.nResync.Add(1)
	c.log.Debug("bans resync", "bans", len(bans), "removed", removed, "complete", complete)
	for _, ev := range out {
		for _, f := range fns {
			f(ev)
		}
	}
	return nil
}

// subscribeLoop keeps a subscription to the bans channel, subscribing
// again after any failure; every (re)subscription asks for a resync, since
// messages may have been missed.
func (c *Client) subscribeLoop(ctx context.Context) {
	for ctx.Err() == nil {
		if err := c.subscribeOnce(ctx); err != nil && ctx.Err() == nil {
			c.log.Debug("bans subscription lost", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(retryEvery):
		}
	}
}

func (c *Client) subscribeOnce(ctx context.Context) error {
	channel := c.keys.banChannel()
	ps := c.rdb.Subscribe(ctx, channel)
	defer ps.Close()
	// Wait for the confirmation.
	for {
		msg, err := ps.ReceiveTimeout(ctx, c.cfg.Timeout)
		if err != nil {
			return err
		}
		if s, ok := msg.(*redis.Subscription); ok && s.Kind == "subscribe" {
			break
		}
	}
	c.log.Debug("subscribed", "channel", channel)
	signal(c.syncCh)
	const idle = time.Second
	const dead = 5 * time.Second
	last := time.Now()
	for {
		msg, err := ps.ReceiveTimeout(ctx, idle)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() || ctx.Err() != nil {
				return err
			}
			if time.Since(last) > dead {
				return errors.New("no answer to ping")
			}
			pctx, cancel := c.ctx(ctx)
			err := ps.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
			continue
		}
		last = time.Now()
		if m, ok := msg.(*redis.Message); ok {
			c.handleMessage([]byte(m.Payload))
		}
	}
}

func (c *Client) handleMessage(payload []byte) {
	ev, ok := c.decodeBan(payload)
	if !ok || ev.Node == c.cfg.Node {
		return
	}
	if !ev.Removed && !ev.Until.IsZero() && !ev.Until.After(c.cfg.Now()) {
		return
	}
	c.nRecv.Add(1)
	c.deliverMu.Lock()
	defer c.deliverMu.Unlock()
	c.mu.Lock()
	c.seq++
	c.known[ev.Prefix] = banState{seq: c.seq, present: !ev.Removed}
	fns := slices.Clone(c.onBan)
	c.mu.Unlock()
	for _, f := range fns {
		f(ev)
	}
}
