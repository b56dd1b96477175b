package auth

import (
	"fmt"
	"regexp"
	"slices"
)

// Profile offers a family of clients, recognised by their User-Agent, the
// algorithms they can answer. Clients disagree on RFC 8760: some answer
// the first challenge they support, some answer every challenge at once,
// and some give up on the first challenge whose algorithm they do not
// know. A profile only chooses among the configured algorithms; it never
// adds one.
//
// The User-Agent is the client's claim, so a profile is a convenience,
// not a control: anyone can ask for an MD5 challenge by claiming to be an
// old phone. What an account accepts is decided by the HA1 values stored
// for it: an account without an MD5 HA1 never authenticates with MD5,
// whatever it is offered.
type Profile struct {
	// Name shows in the decision log.
	Name string
	// UserAgent matches the User-Agent (or Server) header.
	UserAgent *regexp.Regexp
	// Algorithms are offered, in this order, to matching clients.
	Algorithms []string
}

// CompileProfile builds a profile from configuration text.
func CompileProfile(name, userAgent string, algorithms []string) (Profile, error) {
	re, err := regexp.Compile(userAgent)
	if err != nil {
		return Profile{}, fmt.Errorf("user_agent: %w", err)
	}
	if len(algorithms) == 0 {
		return Profile{}, fmt.Errorf("algorithms: none")
	}
	for _, alg := range algorithms {
		if hexLen(alg) == 0 {
			return Profile{}, fmt.Errorf("algorithm %q unknown", alg)
		}
	}
	return Profile{Name: name, UserAgent: re, Algorithms: slices.Clone(algorithms)}, nil
}

// maxUALen bounds the User-Agent text matched and recorded.
const maxUALen = 128

// offer returns the algorithms to challenge a client with and the profile
// that chose them ("" for the configured list).
func (a *Auth) offer(userAgent string) ([]string, string) {
	if userAgent == "" {
		return a.algs, ""
	}
	if len(userAgent) > maxUALen {
		userAgent = userAgent[:maxUALen]
	}
	for _, p := range a.opt.Profiles {
		if p.UserAgent == nil || !p.UserAgent.MatchString(userAgent) {
			continue
		}
		var algs []string
		for _, alg := range p.Algorithms {
			if slices.Contains(a.algs, alg) {
				algs = append(algs, alg)
			}
		}
		if len(algs) > 0 {
			return algs, p.Name
		}
	}
	return a.algs, ""
}

// strength orders algorithms by the strength of their hash, strongest
// first: the one verified when a client answers several challenges.
func strength(alg string) int {
	switch alg {
	case SHA512256:
		return 3
	case SHA256:
		return 2
	case MD5:
		return 1
	}
	return 0
}
