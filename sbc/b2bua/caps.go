package b2bua

import (
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
)

// Caps bounds the calls in progress (ringing or answered) of one caller
// from outside, so that one account or one address cannot take the whole
// dialog table and media port range. Zero: no cap. Calls from the inside
// are never counted.
type Caps struct {
	// PerUser counts the calls of one authenticated user (sbc.Identity.User).
	PerUser int
	// PerSource counts the calls from one transport address, an IPv6 /64
	// as one, whoever they authenticate as; trusted peers are not counted.
	PerSource int
	// PerTrusted counts the calls of one trusted peer, by its name.
	PerTrusted int
}

// Cap names, as CapStats keys, metric labels and in the decision log.
const (
	CapUser    = "user"
	CapSource  = "source"
	CapTrusted = "trusted"
)

// capNames words each cap for the Warning header.
var capNames = map[string]string{CapUser: "user", CapSource: "address", CapTrusted: "trusted peer"}

// CapStats counts the calls refused at a cap.
type CapStats struct {
	User, Source, Trusted int64
}

// capKey is what one call counts against.
type capKey struct {
	user    string       // authenticated user, "" for none
	trusted string       // trusted peer name, "" for none
	source  netip.Prefix // invalid when not counted per source
}

// caps counts the calls admitted per key. Entries exist only for calls in
// the dialog table, so the maps are bounded by limits.max_dialogs.
type caps struct {
	cfg Caps

	mu      sync.Mutex
	held    map[*call]capKey
	users   map[string]int
	trusted map[string]int
	sources map[netip.Prefix]int

	refusedUser, refusedSource, refusedTrusted atomic.Int64
}

func newCaps(cfg Caps) *caps {
	return &caps{cfg: cfg, held: map[*call]capKey{}, users: map[string]int{},
		trusted: map[string]int{}, sources: map[netip.Prefix]int{}}
}

// keyOf is what a new call from r counts against. A call from the inside
// counts against nothing.
func (k *caps) keyOf(r *sbc.Request) (capKey, bool) {
	if r.Side != sbc.External {
		return capKey{}, false
	}
	var key capKey
	if id := r.Identity; id != nil {
		switch {
		case id.User != "":
			key.user = id.User
		case id.Trusted != "":
			// A trunk's address carries its whole traffic: it is
			// counted by name only.
			key.trusted = id.Trusted
			return key, k.cfg.PerTrusted > 0
		}
	}
	if k.cfg.PerSource > 0 {
		key.source = sourcePrefix(r.Peer.Addr())
	}
	return key, (key.user != "" && k.cfg.PerUser > 0) || key.source.IsValid()
}

// sourcePrefix is the address a per-source cap counts: the IPv4 address,
// or the /64 of an IPv6 address (one subscriber's LAN).
func sourcePrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}

// admit counts c, or names the cap that refuses it.
func (k *caps) admit(c *call, key capKey) (refused string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case key.trusted != "" && k.trusted[key.trusted] >= k.cfg.PerTrusted:
		k.refusedTrusted.Add(1)
		return CapTrusted
	case key.user != "" && k.cfg.PerUser > 0 && k.users[key.user] >= k.cfg.PerUser:
		k.refusedUser.Add(1)
		return CapUser
	case key.source.IsValid() && k.sources[key.source] >= k.cfg.PerSource:
		k.refusedSource.Add(1)
		return CapSource
	}
	if key.trusted != "" {
		k.trusted[key.trusted]++
	}
	if key.user != "" && k.cfg.PerUser > 0 {
		k.users[key.user]++
	} else {
		key.user = ""
	}
	if key.source.IsValid() {
		k.sources[key.source]++
	}
	k.held[c] = key
	return ""
}

// release uncounts c; calls never admitted, or already released, are
// ignored. finish calls it once per call, on every end path.
func (k *caps) release(c *call) {
	k.mu.Lock()
	defer k.mu.Unlock()
	key, ok := k.held[c]
	if !ok {
		return
	}
	delete(k.held, c)
	dec := func(m map[string]int, s string) {
		if s == "" {
			return
		}
		if m[s] <= 1 {
			delete(m, s)
		} else {
			m[s]--
		}
	}
	dec(k.users, key.user)
	dec(k.trusted, key.trusted)
	if key.source.IsValid() {
		if k.sources[key.source] <= 1 {
			delete(k.sources, key.source)
		} else {
			k.sources[key.source]--
		}
	}
}

// counted is the number of calls admitted under a cap (tests).
func (k *caps) counted() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.held)
}

// CapStats returns the refusals so far.
func (b *B2BUA) CapStats() CapStats {
	return CapStats{User: b.caps.refusedUser.Load(), Source: b.caps.refusedSource.Load(), Trusted: b.caps.refusedTrusted.Load()}
}

// CappedCalls is the number of calls in progress counted against a cap.
func (b *B2BUA) CappedCalls() int { return b.caps.counted() }

// overCap counts the new call c against its caller's caps. When one is
// reached, the call leaves the table (its end is reported like any other)
// and the caller gets 486 Busy Here: the caller is busy, not the SBC
// unavailable (a 503 would send phones to another server, RFC 3263, and
// some mark the proxy down for all their calls). The Warning says which
// cap, never how many calls are up.
func (b *B2BUA) overCap(w sbc.ResponseWriter, r *sbc.Request, c *call) (bool, error) {
	key, ok := b.caps.keyOf(r)
	if !ok {
		return false, nil
	}
	refused := b.caps.admit(c, key)
	if refused == "" {
		return false, nil
	}
	r.Why = "call limit per " + refused + " reached"
	b.finish(c, "call limit ("+refused+")")
	res := localResponse(r.Request, 486, "Busy Here", c.a)
	res.AppendHeader(sip.NewHeader("Warning", "399 "+warnAgent(c.a)+` "Too many calls in progress for this `+capNames[refused]+`"`))
	return true, b.respondOnce(w, r.Request, res)
}

// warnAgent is the warn-agent of the SBC's own Warning headers on leg l:
// the address the peer reached (RFC 3261 20.43), which it knows already.
func warnAgent(l *leg) string {
	if l == nil || l.local == nil {
		return "sbc"
	}
	h, p := hostPort(l.local.Advertise)
	if h == "" {
		return "sbc"
	}
	if a, err := netip.ParseAddr(h); err == nil && a.Is6() {
		h = "[" + h + "]"
	}
	if p > 0 {
		return h + ":" + strconv.Itoa(p)
	}
	return h
}
