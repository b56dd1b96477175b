package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/netip"
	"sync"
	"time"
)

// tokenGuard checks the admin token for the API and the console's login,
// and limits the guesses: a source (an IPv4 address, an IPv6 /64) that
// gave a wrong token guardFailures times within guardWindow is refused
// until the window ends, as is everyone once guardGlobal wrong tokens
// came in one window (a guess spread over many addresses). When it tracks
// guardSources sources already, a new source is refused rather than let
// through untracked. A good token clears its source's count.
type tokenGuard struct {
	sum [sha256.Size]byte // of the token, compared in constant time
	set bool
	now func() time.Time

	mu      sync.Mutex
	sources map[netip.Prefix]*guardRecord
	global  guardRecord
}

type guardRecord struct {
	fails int
	first time.Time
}

const (
	guardFailures = 5
	guardWindow   = 5 * time.Minute
	guardGlobal   = 100
	guardSources  = 4096
)

func newTokenGuard(token string) *tokenGuard {
	g := &tokenGuard{now: time.Now, sources: map[netip.Prefix]*guardRecord{}, set: token != ""}
	g.sum = sha256.Sum256([]byte(token))
	return g
}

// guardKey is what a source is counted under.
func guardKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	p, _ := a.Prefix(32)
	return p
}

// check reports whether token is the admin token, and limited when src may
// not try now (then the token was not looked at). The attempt is counted
// as a failure before the comparison, so concurrent guesses cannot pass
// the limit between check and count; a good token takes it back.
//
// No token at all is no guess: it is refused without being counted.
func (g *tokenGuard) check(src netip.Addr, token string) (ok, limited bool) {
	if token == "" {
		return false, false
	}
	k := guardKey(src)
	now := g.now()
	g.mu.Lock()
	if now.Sub(g.global.first) >= guardWindow {
		g.global = guardRecord{first: now}
	}
	r, tracked := g.sources[k]
	if tracked && now.Sub(r.first) >= guardWindow {
		r.fails, r.first = 0, now
	}
	if !tracked {
		if len(g.sources) >= guardSources {
			g.sweep(now)
		}
		if len(g.sources) >= guardSources {
			g.mu.Unlock()
			return false, true
		}
		r = &guardRecord{first: now}
		g.sources[k] = r
	}
	if r.fails >= guardFailures || g.global.fails >= guardGlobal {
		g.mu.Unlock()
		return false, true
	}
	r.fails++
	g.global.fails++
	g.mu.Unlock()

	sum := sha256.Sum256([]byte(token))
	ok = g.set && subtle.ConstantTimeCompare(sum[:], g.sum[:]) == 1
	if ok {
		g.mu.Lock()
		if r.fails > 0 {
			r.fails--
		}
		if g.global.fails > 0 {
			g.global.fails--
		}
		if r.fails == 0 {
			delete(g.sources, k)
		}
		g.mu.Unlock()
	}
	return ok, false
}

// sweep drops the sources whose window ended (mu held).
func (g *tokenGuard) sweep(now time.Time) {
	for k, r := range g.sources {
		if now.Sub(r.first) >= guardWindow {
			delete(g.sources, k)
		}
	}
}
