package ban

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Store layout: bucket "bans" maps a prefix ("192.0.2.1/32") to its Entry
// with TTL = until - now; bucket "ban-level" maps a prefix to its
// escalation level with TTL = until + Forget - now. Expiry is decided on
// the values (Until), with the Manager's clock; the TTLs only let the
// store's Sweeper reclaim the space.

// persist writes the current memory state of p to the store and the sink:
// the ban if in force, else its removal; with level, also its escalation
// level. Writes for one prefix are serialised by its stripe and read the
// state when they run, so whatever the interleaving of concurrent bans
// and unbans, the last write leaves store and sink as memory is.
func (m *Manager) persist(p netip.Prefix, level bool) error {
	return m.sync(p, level, false)
}

// sync is persist, and with publish also tells the other nodes
// (Options.Shared) the state of p, under the same stripe: events of one
// prefix leave in the order of the memory changes, and the last one is
// the state here. Publish errors are joined to the store errors.
func (m *Manager) sync(p netip.Prefix, level, publish bool) error {
	s := &m.stripes[stripe(p)]
	s.Lock()
	defer s.Unlock()
	now := m.opt.Now()
	m.mu.RLock()
	e, end, banned := m.bans.get(p)
	m.mu.RUnlock()
	banned = banned && now.Before(end)
	var (
		lv    levelState
		lvEnd time.Time
		hasLv bool
	)
	if level && m.levelsB != nil {
		m.cmu.Lock()
		lv, lvEnd, hasLv = m.levels.get(p)
		m.cmu.Unlock()
	}

	key := p.String()
	// The sink first: it is the fast path, the store only the memory
	// across restarts.
	if m.opt.Sink != nil {
		var err error
		if banned {
			err = m.opt.Sink.Ban(p, end)
		} else {
			err = m.opt.Sink.Unban(p)
		}
		if err != nil {
			// Never fatal: the in-memory ban still drops the peer's
			// requests.
			m.sinkErrors.Add(1)
			m.warn("ban sink failed", "prefix", key, "banned", banned, "err", err)
		}
	}
	var errs []error
	if m.bansB != nil {
		var err error
		if banned {
			err = m.bansB.PutTTL(key, e, end.Sub(now))
		} else {
			err = m.bansB.Delete(key)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("store ban: %w", err))
		}
		if hasLv && now.Before(lvEnd) {
			if err := m.levelsB.PutTTL(key, lv, lvEnd.Sub(now)); err != nil {
				errs = append(errs, fmt.Errorf("store level: %w", err))
			}
		}
	}
	if len(errs) > 0 {
		m.storeErrors.Add(1)
		m.warn("ban store write failed", "prefix", key, "err", errors.Join(errs...))
	}
	if publish && m.opt.Shared != nil {
		ev := Entry{Prefix: p}
		if banned {
			ev = e
		}
		if err := m.publish(ev, !banned); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// publish sends one event to Options.Shared, counting and logging a
// failure.
func (m *Manager) publish(e Entry, removed bool) error {
	if err := m.opt.Shared.Publish(e, removed); err != nil {
		m.sharedErrors.Add(1)
		m.warn("ban publish failed", "prefix", e.Prefix.String(), "removed", removed, "err", err)
		return fmt.Errorf("publish: %w", err)
	}
	return nil
}

func stripe(p netip.Prefix) int {
	h := uint32(p.Bits())
	for _, b := range p.Addr().As16() {
		h = h*31 + uint32(b)
	}
	return int(h % nStripes)
}

// load reads the persisted levels and bans into memory and pushes the
// bans to the sink. Entries that ended, that name a now trusted address or
// that do not decode as a prefix are deleted from the store.
func (m *Manager) load() error {
	now := m.opt.Now()
	type lvRec struct {
		p  netip.Prefix
		st levelState
	}
	var lvs []lvRec
	var badLv []string
	err := m.levelsB.ForEach(func(key string, st levelState, _ time.Time) error {
		p, err := parseKey(key)
		switch {
		case err != nil:
			badLv = append(badLv, key)
		case now.Before(st.Until.Add(m.opt.Forget)):
			lvs = append(lvs, lvRec{p, st})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ban: load levels: %w", err)
	}
	var entries []Entry
	var stale []string
	err = m.bansB.ForEach(func(key string, e Entry, _ time.Time) error {
		p, err := parseKey(key)
		if err != nil || !now.Before(e.Until) {
			stale = append(stale, key)
			return nil
		}
		e.Prefix = p
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return fmt.Errorf("ban: load bans: %w", err)
	}

	m.cmu.Lock()
	for _, r := range lvs {
		r.st.Level = min(max(r.st.Level, 0), m.maxLevel)
		m.setLevelLoaded(r.p, r.st, now)
	}
	m.cmu.Unlock()
	var kept []Entry
	for _, e := range entries {
		if m.isTrusted(e.Prefix.Addr()) || m.isTrusted(lastAddr(e.Prefix)) {
			m.log.Info("dropping persisted ban of a trusted address", "prefix", e.Prefix.String())
			stale = append(stale, e.Prefix.String())
			continue
		}
		kept = append(kept, e)
	}
	m.mu.Lock()
	for _, e := range kept {
		for _, q := range m.insertBan(e, now) {
			stale = append(stale, q.String())
		}
	}
	m.mu.Unlock()
	m.cmu.Lock()
	for _, e := range kept {
		// A level lost (or evicted) while its ban survived comes back
		// from the ban itself.
		if _, _, ok := m.levels.get(e.Prefix); !ok {
			m.setLevelLoaded(e.Prefix, levelState{Level: min(max(e.Level, 0), m.maxLevel), Until: e.Until}, now)
		}
	}
	m.cmu.Unlock()

	if len(stale) > 0 {
		if _, err := m.bansB.DeleteMany(stale...); err != nil {
			m.storeErrors.Add(1)
			m.warn("ban store cleanup failed", "err", err)
		}
	}
	if len(badLv) > 0 {
		if _, err := m.levelsB.DeleteMany(badLv...); err != nil {
			m.storeErrors.Add(1)
			m.warn("ban store cleanup failed", "err", err)
		}
	}
	bans := m.Bans()
	if m.opt.Sink != nil {
		for _, e := range bans {
			if err := m.opt.Sink.Ban(e.Prefix, e.Until); err != nil {
				m.sinkErrors.Add(1)
				m.warn("ban sink failed", "prefix", e.Prefix.String(), "banned", true, "err", err)
			}
		}
	}
	if len(bans) > 0 || len(lvs) > 0 {
		m.log.Info("loaded bans", "bans", len(bans), "levels", len(lvs))
	}
	return nil
}

// setLevelLoaded stores a level read back at start (cmu held), within
// MaxTracked.
func (m *Manager) setLevelLoaded(p netip.Prefix, st levelState, now time.Time) {
	forget := st.Until.Add(m.opt.Forget)
	if !now.Before(forget) {
		return
	}
	if _, _, ok := m.levels.get(p); !ok && m.levels.len() >= m.opt.MaxTracked {
		k, _, end, _ := m.levels.first()
		if !end.Before(forget) {
			return // keep the ones remembered longest
		}
		m.levels.del(k)
		m.evicted.Add(1)
	}
	m.levels.set(p, st, forget)
}

// parseKey reads a store key back; it must be the canonical form that
// persist writes.
func parseKey(key string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(key)
	if err != nil {
		return netip.Prefix{}, err
	}
	q, err := normPrefix(p)
	if err != nil {
		return netip.Prefix{}, err
	}
	if q.String() != key {
		return netip.Prefix{}, fmt.Errorf("%w: %q is not canonical", ErrBadPrefix, key)
	}
	return q, nil
}

// Run sweeps every SweepInterval (see Sweep) until ctx is done.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(m.opt.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.Sweep()
		}
	}
}
