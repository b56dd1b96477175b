package upstream

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Run performs active health checks until ctx is done: one goroutine per
// target. Each checks its target at once, so that readiness (Ready) follows
// the upstreams within one round trip of the start; the second check comes
// a random delay within one interval later (so checks of many targets do not
// go out in bursts), and from then on a check starts every interval, each
// bounded by the timeout. It returns once ctx is done and every checker has
// exited. With checks disabled (zero interval or no Pinger) or while another
// Run of the same pool is active, it returns at once.
func (p *Pool) Run(ctx context.Context) {
	if p.interval <= 0 || len(p.members) == 0 {
		return
	}
	if p.pinger == nil {
		p.log.Warn("health checks disabled: no pinger")
		return
	}
	if !p.running.CompareAndSwap(false, true) {
		p.log.Warn("health checks already running")
		return
	}
	defer p.running.Store(false)

	var wg sync.WaitGroup
	for _, m := range p.members {
		wg.Go(func() { p.checkLoop(ctx, m) })
	}
	wg.Wait()
}

// checkLoop checks one target until ctx is done. Checks start at a fixed
// rate, not an interval after the previous one ended: a dead upstream, whose
// checks each last the timeout, is then marked down within failures ×
// interval + timeout. Checks of one target never overlap: one that outlasts
// the interval (a timeout longer than it) is followed by the next at once.
func (p *Pool) checkLoop(ctx context.Context, m *member) {
	if ctx.Err() != nil {
		return
	}
	p.checkOnce(ctx, m)
	next := time.Now().Add(p.jitter())
	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		p.checkOnce(ctx, m)
		next = next.Add(p.interval)
		if now := time.Now(); next.Before(now) {
			next = now
		}
		timer.Reset(time.Until(next))
	}
}

// jitter returns a random delay in [0, interval).
func (p *Pool) jitter() time.Duration {
	if p.interval <= 1 {
		return 0
	}
	p.randMu.Lock()
	defer p.randMu.Unlock()
	return time.Duration(p.intn(int(p.interval)))
}

// checkOnce pings m once and records the result. Any final response below 500
// counts as alive: a PBX answering 404 or 405 to OPTIONS is up, it merely
// does not like OPTIONS.
func (p *Pool) checkOnce(ctx context.Context, m *member) {
	cctx, cancel := context.WithTimeout(ctx, p.timeout)
	status, err := p.pinger.Ping(cctx, m.t.clone())
	cancel()
	if ctx.Err() != nil {
		// Shutting down: the outcome says nothing about the target.
		return
	}
	p.checks.Add(1)
	ok, reason := judge(status, err)
	p.observe(m, ok, reason, true)
}

// judge maps a ping outcome to alive or not, with a reason when not.
func judge(status int, err error) (bool, string) {
	switch {
	case err != nil:
		return false, err.Error()
	case status < 100 || status > 699:
		return false, fmt.Sprintf("invalid status %d", status)
	case status >= 500:
		return false, fmt.Sprintf("status %d", status)
	}
	return true, ""
}
