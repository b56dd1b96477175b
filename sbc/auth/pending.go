package auth

import (
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Defaults of the unanswered-challenge tracking.
const (
	// DefaultUnansweredAfter is how long a challenged source has to
	// answer before it counts as a client that cannot log in: a phone
	// answers in milliseconds (a UDP retransmission of its request within
	// a few seconds is answered by the same challenge).
	DefaultUnansweredAfter = 5 * time.Second
	// DefaultMaxPending bounds the sources tracked at once.
	DefaultMaxPending = 4096
)

// Unanswered describes a source that was challenged and never answered
// with credentials for our realm: a phone that cannot log in (it cannot
// answer the algorithms offered, or has no password for the realm), or a
// scanner.
type Unanswered struct {
	Peer       netip.Addr
	First      time.Time
	Count      int      // challenges sent without an answer
	Method     string   // of the last challenged request
	User       string   // claimed: From user (To user for REGISTER)
	To         string   // Request-URI user
	UserAgent  string   // as sent, cut to 128 bytes
	Offered    []string // algorithms of the last challenge
	ProfileFor string   // profile that chose them, "" for the configured list
}

// Summary is one line for the decision log.
func (u Unanswered) Summary() string {
	s := "challenge unanswered (offered " + strings.Join(u.Offered, ", ")
	if u.ProfileFor != "" {
		s += " by profile " + u.ProfileFor
	}
	return s + ")"
}

// pending tracks challenged sources until they answer or time out.
type pending struct {
	mu    sync.Mutex
	max   int
	after time.Duration
	m     map[netip.Addr]*Unanswered
}

func newPending(max int, after time.Duration) *pending {
	return &pending{max: max, after: after, m: make(map[netip.Addr]*Unanswered)}
}

// challenged notes a challenge sent to a request without our credentials.
// A full table does not take new sources: the ones tracked are reported
// in their time, and a flood of new sources is the ban layer's business.
func (p *pending) challenged(u Unanswered) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.m[u.Peer]; ok {
		e.Count++
		e.Method, e.User, e.To, e.UserAgent, e.Offered, e.ProfileFor = u.Method, u.User, u.To, u.UserAgent, u.Offered, u.ProfileFor
		return
	}
	if len(p.m) >= p.max {
		return
	}
	u.Count = 1
	p.m[u.Peer] = &u
}

// answered forgets a source that sent credentials for our realm.
func (p *pending) answered(peer netip.Addr) {
	p.mu.Lock()
	delete(p.m, peer)
	p.mu.Unlock()
}

// expired removes and returns the sources challenged more than after ago.
func (p *pending) expired(now time.Time) []Unanswered {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Unanswered
	for ip, e := range p.m {
		if now.Sub(e.First) >= p.after {
			out = append(out, *e)
			delete(p.m, ip)
		}
	}
	return out
}

func (p *pending) get(ip netip.Addr) (Unanswered, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.m[ip]; ok {
		return *e, true
	}
	return Unanswered{}, false
}

func (p *pending) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.m)
}

// Pending reports a challenge to ip not answered yet (and not yet reported
// by Sweep): what `sipwall why` shows before the decision log has it.
func (a *Auth) Pending(ip netip.Addr) (Unanswered, bool) { return a.pending.get(ip.Unmap()) }

// Sweep reports through Options.OnUnanswered every source challenged more
// than UnansweredAfter ago that has not answered since, and forgets it.
// The caller runs it periodically (every few seconds).
func (a *Auth) Sweep() {
	for _, u := range a.pending.expired(a.opt.Now()) {
		a.unanswered.Add(1)
		if a.opt.OnUnanswered != nil {
			a.opt.OnUnanswered(u)
		}
	}
}
