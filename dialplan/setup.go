package dialplan

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Config describes a dial plan. The zero value is the default plan
// without a country: E.164 and international-prefix forms are read,
// national forms are not.
type Config struct {
	// Country is an ISO 3166 alpha-2 code of Countries(); "" for none.
	Country string
	// TrunkPrefix and InternationalPrefix replace the country's (digits);
	// "" keeps them.
	TrunkPrefix         string
	InternationalPrefix string
	// NationalLengths replaces the country's lengths of national
	// significant numbers (without the trunk prefix).
	NationalLengths []int
	// Extensions are regular expressions a whole dial string must match
	// to be an extension (anchored here); they are tried before number
	// readings. Nil: the default, 2 to 6 digits that read as no number
	// and do not begin with one of the country's public short codes;
	// empty: no extensions.
	Extensions []string
	// NoNames refuses SIP user names (a letter first) as destinations.
	NoNames bool
	// Emergency replaces the emergency numbers (nil: the country's, plus
	// 112 and 911; without a country 112, 911 and 999).
	Emergency []string
	// ServiceCodes are regular expressions of the PBX's own service codes
	// (nil: a star and two or three digits, "*97").
	ServiceCodes []string
	// Features replaces the feature prefixes stripped and recorded before
	// the check (nil: *67, *82, #31#, *31# and the country's, 141 and
	// 1470 in GB).
	Features []string
}

// ErrConfig wraps every problem of a Config.
var ErrConfig = errors.New("dial plan")

// DefaultServiceCode is the default service code pattern.
const DefaultServiceCode = `^\*[0-9]{2,3}$`

// New compiles a dial plan.
func New(c Config) (*Plan, error) {
	p := &Plan{country: c.Country, names: !c.NoNames, emergency: map[string]bool{}}
	var def country
	if c.Country != "" {
		var ok bool
		if def, ok = countries[c.Country]; !ok {
			return nil, fmt.Errorf("%w: country %q: want one of %s", ErrConfig, c.Country, strings.Join(Countries(), ", "))
		}
		p.cc, p.trunk, p.lengths, p.short = def.cc, def.trunk, def.lengths, def.short
		p.intl = []string{def.intl}
	} else {
		p.trunk = "0"
		p.intl = []string{"00", "011"}
		p.short = []string{"118"}
	}
	if c.TrunkPrefix != "" {
		if !allDigits(c.TrunkPrefix) || len(c.TrunkPrefix) > 3 {
			return nil, fmt.Errorf("%w: trunk prefix %q: want 1 to 3 digits", ErrConfig, c.TrunkPrefix)
		}
		p.trunk = c.TrunkPrefix
	}
	if c.InternationalPrefix != "" {
		if !allDigits(c.InternationalPrefix) || len(c.InternationalPrefix) > 4 {
			return nil, fmt.Errorf("%w: international prefix %q: want 1 to 4 digits", ErrConfig, c.InternationalPrefix)
		}
		p.intl = []string{c.InternationalPrefix}
	}
	if p.trunk != "" && slices.ContainsFunc(p.intl, func(ip string) bool { return ip == p.trunk }) {
		return nil, fmt.Errorf("%w: the trunk and international prefixes are both %q", ErrConfig, p.trunk)
	}
	if c.NationalLengths != nil {
		if c.Country == "" {
			return nil, fmt.Errorf("%w: national lengths need a country", ErrConfig)
		}
		for _, n := range c.NationalLengths {
			if n < 4 || n+len(p.cc) > 15 {
				return nil, fmt.Errorf("%w: national length %d: want 4 to %d", ErrConfig, n, 15-len(p.cc))
			}
		}
		p.lengths = slices.Clone(c.NationalLengths)
	}
	var err error
	if p.exts, err = compile("extension", c.Extensions); err != nil {
		return nil, err
	}
	services := c.ServiceCodes
	if services == nil {
		services = []string{DefaultServiceCode}
	}
	if p.services, err = compile("service code", services); err != nil {
		return nil, err
	}
	emergency := c.Emergency
	if emergency == nil {
		emergency = noCountry
		if c.Country != "" {
			emergency = append(slices.Clone(everywhere), def.emergency...)
		}
	}
	for _, e := range emergency {
		if !allDigits(e) || len(e) > 8 {
			return nil, fmt.Errorf("%w: emergency number %q: want 1 to 8 digits", ErrConfig, e)
		}
		p.emergency[e] = true
	}
	features := c.Features
	if features == nil {
		features = append(slices.Clone(starFeatures), def.features...)
	}
	for _, f := range features {
		if f == "" || len(f) > 8 || strings.Trim(f, "0123456789*#") != "" {
			return nil, fmt.Errorf("%w: feature prefix %q: want 1 to 8 digits, * or #", ErrConfig, f)
		}
	}
	p.features = slices.Clone(features)
	sort.SliceStable(p.features, func(i, j int) bool { return len(p.features[i]) > len(p.features[j]) })
	return p, nil
}

// maxPatterns bounds the patterns of one kind.
const maxPatterns = 64

func compile(what string, pats []string) ([]*regexp.Regexp, error) {
	if len(pats) > maxPatterns {
		return nil, fmt.Errorf("%w: more than %d %s patterns", ErrConfig, maxPatterns, what)
	}
	if pats == nil {
		return nil, nil
	}
	out := make([]*regexp.Regexp, 0, len(pats)) // empty, not nil: none
	for _, s := range pats {
		if len(s) > 256 {
			return nil, fmt.Errorf("%w: %s pattern longer than 256 characters", ErrConfig, what)
		}
		re, err := regexp.Compile(anchor(s))
		if err != nil {
			return nil, fmt.Errorf("%w: %s pattern %q: %v", ErrConfig, what, s, err)
		}
		out = append(out, re)
	}
	return out, nil
}

// anchor makes a pattern match whole dial strings.
func anchor(s string) string {
	if !strings.HasPrefix(s, "^") {
		s = "^(?:" + s + ")"
	}
	if !strings.HasSuffix(s, "$") || strings.HasSuffix(s, `\$`) {
		s = "(?:" + s + ")$"
	}
	return s
}

// MustNew is New for plans known to be valid (tests, defaults).
func MustNew(c Config) *Plan {
	p, err := New(c)
	if err != nil {
		panic(err)
	}
	return p
}
