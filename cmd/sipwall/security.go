package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sipwall/sipwall/policy"
	"github.com/sipwall/sipwall/rules"
	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/auth"
	"github.com/sipwall/sipwall/sbc/ban"
	"github.com/sipwall/sipwall/sbc/cluster"
	"github.com/sipwall/sipwall/sbc/config"
	"github.com/sipwall/sipwall/sbc/decision"
	"github.com/sipwall/sipwall/sbc/store"
	"github.com/sipwall/sipwall/sbc/upstream"
)

// security is the ban store and the digest layer built from auth and bans.
type security struct {
	// trusted matches peers by address (the B2BUA names a trusted peer
	// it calls to the media relay with it).
	trusted *trustedSet
	bans    *ban.Manager
	auth    *auth.Auth           // nil with auth.mode off
	users   *auth.ReloadingUsers // nil without a users file
	keys    *auth.KeyRing        // nil with auth.mode off
}

// trustedSet matches a peer against the configured trusted peers and the
// upstreams (which are always trusted). A peer entry names networks, a
// client certificate (names or fingerprints), or both, which must then
// both match.
type trustedSet struct {
	peers []trustedPeer
	pool  func() *upstream.Pool
}

type trustedPeer struct {
	name         string
	nets         []netip.Prefix
	certNames    []string
	fingerprints []string
}

func (p *trustedPeer) needsCert() bool { return len(p.certNames)+len(p.fingerprints) > 0 }

func (p *trustedPeer) addrOK(a netip.Addr) bool {
	if len(p.nets) == 0 {
		return true
	}
	for _, n := range p.nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

func (p *trustedPeer) certOK(pc *sbc.PeerCert) bool {
	return pc != nil && (slices.Contains(p.certNames, pc.Name) || slices.Contains(p.fingerprints, pc.Fingerprint))
}

func newTrustedSet(cfg config.Auth, pool func() *upstream.Pool) (*trustedSet, error) {
	ts := &trustedSet{pool: pool}
	for i, t := range cfg.Trusted {
		tp := trustedPeer{name: t.Name, certNames: t.CertNames}
		for k, c := range t.CIDRs {
			p, err := config.ParsePrefix(c)
			if err != nil {
				return nil, fmt.Errorf("auth.trusted[%d].cidrs[%d]: %w", i, k, err)
			}
			tp.nets = append(tp.nets, p)
		}
		for k, f := range t.CertFingerprints {
			n, ok := config.NormFingerprint(f)
			if !ok {
				return nil, fmt.Errorf("auth.trusted[%d].cert_fingerprints[%d]: not a SHA-256 fingerprint", i, k)
			}
			tp.fingerprints = append(tp.fingerprints, n)
		}
		ts.peers = append(ts.peers, tp)
	}
	return ts, nil
}

// trustedName is the trusted peer at address a (by address alone), or "".
func (s *security) trustedName(a netip.Addr) string {
	if s == nil || s.trusted == nil {
		return ""
	}
	name, _ := s.trusted.match(a)
	return name
}

// match trusts by address alone: the peers that need no certificate, and
// the upstreams.
func (ts *trustedSet) match(a netip.Addr) (string, bool) {
	a = a.Unmap()
	for i := range ts.peers {
		if p := &ts.peers[i]; !p.needsCert() && p.addrOK(a) {
			return p.name, true
		}
	}
	if p := ts.pool(); p != nil {
		if t, ok := p.Lookup(a); ok {
			return t.Name, true
		}
	}
	return "", false
}

// matchCert trusts a peer that presented a verified client certificate
// one of the certificate-identified peers names (at an address it allows).
func (ts *trustedSet) matchCert(a netip.Addr, pc *sbc.PeerCert) (string, bool) {
	a = a.Unmap()
	for i := range ts.peers {
		if p := &ts.peers[i]; p.needsCert() && p.certOK(pc) && p.addrOK(a) {
			return p.name, true
		}
	}
	return "", false
}

// buildSecurity builds the ban store and, unless auth.mode is off, the
// digest layer wired to it.
func buildSecurity(cfg *config.Config, st *store.Store, shared *cluster.Client, pool func() *upstream.Pool, owns func(*sbc.Request) bool, pf *prefilter, decisions *decision.Log, log *slog.Logger) (*security, error) {
	trusted, err := newTrustedSet(cfg.Auth, pool)
	if err != nil {
		return nil, err
	}
	b := cfg.Bans
	agents := b.ScannerAgents
	switch {
	case len(agents) == 0:
		agents = nil // the built-in list
	case len(agents) == 1 && strings.EqualFold(agents[0], "none"):
		agents = []string{}
	}
	var sink ban.Sink
	if pf != nil {
		sink = pf // never a typed nil
	}
	var sharedBan ban.Shared
	if shared != nil {
		sharedBan = sharedBans{shared}
	}
	bans, err := ban.New(ban.Options{
		Shared:           sharedBan,
		Sink:             sink,
		Store:            st,
		Threshold:        b.Threshold,
		Window:           b.Window.D(),
		BanTime:          b.BanTime.D(),
		MaxBanTime:       b.MaxBanTime.D(),
		Forget:           b.Forget.D(),
		Prefix6Threshold: b.Prefix6Threshold,
		UserThreshold:    b.UserThreshold,
		UserLockTime:     b.UserLockTime.D(),
		ScannerAgents:    agents,
		Trusted:          trusted.match,
		Logger:           log,
		OnEvent:          banDecisions(decisions),
	})
	if err != nil {
		return nil, fmt.Errorf("bans: %w", err)
	}
	sec := &security{bans: bans, trusted: trusted}
	if shared != nil {
		applyRemoteBans(shared, bans, log)
	}
	if cfg.Auth.Mode == config.AuthOff {
		return sec, nil
	}
	a := cfg.Auth
	var users auth.Users = emptyUsers{}
	if a.UsersFile != "" {
		ru, err := auth.WatchUsersFile(a.UsersFile, log)
		if err != nil {
			return nil, cfg.KeyError("auth.users_file", err)
		}
		sec.users, users = ru, ru
	}
	var keys *auth.KeyRing
	if shared != nil {
		// One key ring for the fleet: a nonce issued by one node verifies
		// on any other. Unreachable at start: this node's own keys, until
		// a restart (its nonces then verify here only).
		if keys, err = auth.NewSharedKeyRing(sharedKeys{shared}, a.KeyRotation.D(), nil); err != nil {
			log.Warn("shared nonce keys unavailable, using this node's own", "component", "auth", "err", err)
			keys = nil
		}
	}
	if keys == nil {
		if keys, err = auth.NewKeyRing(st, a.KeyRotation.D(), nil); err != nil {
			return nil, fmt.Errorf("auth: nonce keys: %w", err)
		}
	}
	sec.keys = keys
	fw := &auth.Forwarder{IdentityHeader: a.AssertIdentity, SourceHeader: a.SourceHeader}
	if a.SourceKeyFile != "" {
		key, err := os.ReadFile(a.SourceKeyFile)
		if err != nil {
			return nil, cfg.KeyError("auth.source_key_file", err)
		}
		fw.Key = []byte(strings.TrimSpace(string(key)))
		if err := fw.Check(); err != nil {
			return nil, cfg.KeyError("auth.source_key_file", err)
		}
	}
	var profiles []auth.Profile
	for i, p := range a.Profiles {
		ap, err := auth.CompileProfile(p.Name, p.UserAgent, p.Algorithms)
		if err != nil {
			return nil, cfg.KeyError(fmt.Sprintf("auth.profiles[%d]", i), err)
		}
		profiles = append(profiles, ap)
	}
	sec.auth, err = auth.New(auth.Options{
		Realm:        a.Realm,
		Users:        users,
		Keys:         keys,
		NonceTTL:     a.NonceTTL.D(),
		MaxSkew:      a.MaxSkew.D(),
		Algorithms:   a.Algorithms,
		Profiles:     profiles,
		OnUnanswered: unansweredDecisions(decisions),
		Trusted:      trusted.match,
		TrustedCert:  trusted.matchCert,
		OnFailure:    bans.Failure,
		OnSuccess: func(ip netip.Addr, user string) {
			bans.Success(ip, user)
			if pf != nil {
				pf.verified(ip)
			}
		},
		Locked:   bans.UserLocked,
		InDialog: owns,
		Forward:  fw,
	})
	if err != nil {
		return nil, cfg.KeyError("auth", err)
	}
	return sec, nil
}

// run keeps the users file, the nonce keys and the ban expiry going until
// ctx ends.
func (s *security) run(ctx context.Context, spawn func(func())) {
	spawn(func() { s.bans.Run(ctx) })
	if s.keys != nil {
		spawn(func() { s.keys.Run(ctx) })
	}
	if s.users != nil {
		spawn(func() { s.users.Run(ctx, 2*time.Second) })
	}
	if s.auth != nil {
		spawn(func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					s.auth.Sweep()
				}
			}
		})
	}
}

// isUser reports whether the users file knows user (for the local
// registrar's user list).
func (s *security) isUser(user string) bool {
	if s.users == nil {
		return false
	}
	_, _, ok := s.users.Lookup(user, "")
	return ok
}

// emptyUsers is the users source when only trusted peers may pass.
type emptyUsers struct{}

func (emptyUsers) Lookup(string, string) (map[string]string, bool, bool) { return nil, false, false }

// buildPolicy makes the OPA policy engine from the policy section; its
// bans go to the ban store.
func buildPolicy(cfg *config.Config, sec *security, fraud *rules.Engine, log *slog.Logger) (*policy.Engine, error) {
	p := cfg.Policy
	zone, err := time.LoadLocation(p.Zone)
	if err != nil {
		return nil, cfg.KeyError("policy.zone", err)
	}
	// The dial plan every layer reads destinations with (built alike
	// from the same configuration).
	plan, err := buildDialPlan(cfg)
	if err != nil {
		return nil, err
	}
	sample := p.SampleAllows
	if sample == 0 {
		sample = -1 // config: 0 logs no allows; policy.Options: negative does
	}
	opts := policy.Options{
		Dir:          p.Dir,
		Query:        p.Query,
		Timeout:      p.Timeout.D(),
		Shadow:       p.Mode == config.PolicyShadow,
		FailStatus:   p.FailStatus,
		Zone:         zone,
		Plan:         plan,
		SampleAllows: sample,
		Ban:          sec.banAddr("policy", log),
		Logger:       log,
	}
	if fraud != nil {
		opts.Counters = fraud.Counters
	}
	eng, err := policy.New(opts)
	if err != nil {
		key := "policy.dir"
		if p.Dir == "" {
			key = "policy"
		}
		return nil, cfg.KeyError(key, err)
	}
	return eng, nil
}

// banAddr is the ban sink of a layer (policy, rules): one address banned
// through the ban store, which refuses trusted peers.
func (s *security) banAddr(component string, log *slog.Logger) func(netip.Addr, time.Duration, string, string) {
	return func(ip netip.Addr, d time.Duration, reason, evidence string) {
		ip = ip.Unmap()
		if _, err := s.bans.Ban(netip.PrefixFrom(ip, ip.BitLen()), d, reason, evidence); err != nil {
			log.Warn("ban refused", "component", component, "peer", ip.String(), "error", err)
		}
	}
}
