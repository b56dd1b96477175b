package ban

import (
	"context"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
)

// Layer is the chain layer "ban": it silently drops requests from banned
// peers and bans peers whose User-Agent names a scanner.
type Layer struct {
	m *Manager
}

var _ sbc.Handler = (*Layer)(nil)

// Layer returns the chain layer of m.
func (m *Manager) Layer() *Layer { return &Layer{m: m} }

// Name implements sbc.Handler.
func (l *Layer) Name() string { return "ban" }

// ServeSIP implements sbc.Handler. Internal requests and trusted peers
// pass; a banned peer is dropped without a response (an answer would
// only confirm to a scanner that something listens); a scanner is banned
// and dropped. Only the transport peer is looked at.
func (l *Layer) ServeSIP(_ context.Context, _ sbc.ResponseWriter, r *sbc.Request) (sbc.Verdict, error) {
	if r.Side == sbc.Internal {
		return sbc.Continue, nil
	}
	ip := r.Peer.Addr().Unmap()
	if !ip.IsValid() || l.m.isTrusted(ip) {
		return sbc.Continue, nil
	}
	if e, ok := l.m.Banned(ip); ok {
		r.Why = "banned (" + e.Reason + ")"
		return sbc.Dropped, nil
	}
	if ua, ok := l.m.scanner(r.Request); ok {
		// A store error is logged and counted by ban; the ban holds in
		// memory, so the verdict stands.
		_, _ = l.m.ban(hostPrefix(ip), 0, ReasonScanner, "User-Agent "+quote(ua), l.m.opt.Now())
		r.Why = ReasonScanner
		return sbc.Dropped, nil
	}
	return sbc.Continue, nil
}

// maxUAScan is how much of a User-Agent is searched for scanner names.
const maxUAScan = 1024

// scanner returns the first User-Agent header (any spelling of the name)
// that contains one of the scanner agents.
func (m *Manager) scanner(req *sip.Request) (string, bool) {
	if len(m.agents) == 0 || req == nil {
		return "", false
	}
	for _, h := range req.Headers() {
		if !strings.EqualFold(h.Name(), "User-Agent") {
			continue
		}
		v := h.Value()
		if len(v) > maxUAScan {
			v = v[:maxUAScan] // bounds the work an attacker can ask for
		}
		for _, a := range m.agents {
			if containsFold(v, a) {
				return v, true
			}
		}
	}
	return "", false
}

// containsFold reports whether s contains sub (lower case), ignoring
// ASCII case, without allocating.
func containsFold(s, sub string) bool {
	n := len(sub)
	if n == 0 {
		return true
	}
	for i := 0; i+n <= len(s); i++ {
		j := 0
		for ; j < n; j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != sub[j] {
				break
			}
		}
		if j == n {
			return true
		}
	}
	return false
}
