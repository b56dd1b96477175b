// Package dialplan reads the destination an outside party names — the
// Request-URI of an INVITE, the Refer-To of a REFER, the Contact of a 3xx
// the SBC follows — the way the PBX or a carrier would dial it, and says
// what it is: an extension, a user name, an emergency number, a service
// code, a national or an international number in E.164, or not something
// sipwall can read (invalid). The policy input, the anti-fraud rules, the
// decision log and the call log all take their destination from Parse, so
// every written form of one number gets one verdict.
//
// Reading follows RFC 3966: visual separators are dropped, a global
// number starts with "+", a local number may carry a phone-context; the
// international and trunk prefixes of the plan's country turn dialled
// forms into E.164; a trunk zero written inside the international form
// ("+44 (0)20…") is dropped; CLIR and other feature prefixes ("*67",
// "#31#", "141") are stripped and recorded; the user part is
// percent-decoded once; anything not ASCII is refused.
package dialplan

import (
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Class is what a destination is.
type Class string

// Classes of destinations.
const (
	Extension     Class = "extension"     // an extension of the PBX
	Name          Class = "name"          // a SIP user name (alice)
	Emergency     Class = "emergency"     // an emergency number
	Service       Class = "service"       // a service code of the PBX (*97)
	National      Class = "national"      // a number of the plan's country
	International Class = "international" // a number of another country (or any, without a country)
	Invalid       Class = "invalid"       // none of the above
)

// Classes are every class, in the order above.
var Classes = []Class{Extension, Name, Emergency, Service, National, International, Invalid}

// Number is a destination as the dial plan reads it.
type Number struct {
	// Raw is the user part (or tel: number) as named, parameters
	// included, at most MaxRaw bytes: attacker text.
	Raw   string `json:"raw"`
	Class Class  `json:"class"`
	// E164 is "+<digits>" for national and international numbers, ""
	// otherwise.
	E164 string `json:"e164"`
	// Dialled is what was classified: the digits (and * #) after feature
	// prefixes were stripped; "" for names and invalid destinations.
	Dialled string `json:"dialled"`
	// Features are the feature prefixes stripped, in order ("*67").
	Features []string `json:"features,omitempty"`
	// Reason says why a destination is invalid, in our words.
	Reason string `json:"reason,omitempty"`
}

// Valid reports whether the number has an E.164 form.
func (n Number) Valid() bool { return n.E164 != "" }

// String describes the number for logs and the decision log without
// attacker text: the E.164 form, the class and digits of short numbers,
// "name" for a user name, "invalid (reason)".
func (n Number) String() string {
	var s string
	switch n.Class {
	case National, International:
		s = n.E164
	case Extension, Emergency, Service:
		s = string(n.Class) + " " + n.Dialled
	case Name:
		s = "name"
	default:
		s = "invalid (" + n.Reason + ")"
	}
	if len(n.Features) > 0 {
		s += " after " + strings.Join(n.Features, " ")
	}
	return s
}

// MaxRaw bounds the destination read; longer ones are invalid.
const MaxRaw = 256

// maxFeatures bounds how many feature prefixes are stripped in a row.
const maxFeatures = 4

// Plan is a compiled dial plan. It is immutable and safe for concurrent
// use.
type Plan struct {
	country   string
	cc        string
	trunk     string
	intl      []string
	lengths   []int
	exts      []*regexp.Regexp // configured extension patterns; nil: the default
	short     []string         // left out of the default extension pattern
	names     bool
	emergency map[string]bool
	services  []*regexp.Regexp
	features  []string // longest first
}

// Country is the plan's ISO country code, "" for none.
func (p *Plan) Country() string { return p.country }

// CountryCode is the calling code of the plan's country, "" for none.
func (p *Plan) CountryCode() string { return p.cc }

// Parse reads raw: the user part of a SIP URI or the number of a tel:
// URI, with its parameters.
func (p *Plan) Parse(raw string) Number {
	n := Number{Raw: raw}
	if len(raw) > MaxRaw {
		n.Raw = raw[:MaxRaw]
		return n.invalid("too long")
	}
	s := raw
	if strings.IndexByte(s, '%') >= 0 {
		d, err := url.PathUnescape(s)
		if err != nil {
			return n.invalid("bad percent-encoding")
		}
		s = d
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 0x80:
			// Full-width and other non-ASCII digits: a PBX may fold them
			// into digits we never checked.
			return n.invalid("non-ASCII character")
		case c < 0x20 || c == 0x7f:
			return n.invalid("control character")
		}
	}
	num, params, ok := splitParams(s)
	if !ok {
		return n.invalid("bad parameter")
	}
	num = strings.TrimSpace(num)
	if num == "" {
		return n.invalid("no number")
	}
	if isLetter(num[0]) {
		if p.names && len(params) == 0 && isName(num) {
			n.Class = Name
			return n
		}
		return n.invalid("letters")
	}
	for _, kv := range params {
		switch kv[0] {
		case "phone-context", "ext", "isub", "npdi":
		case "rn", "cic":
			// A routing number or a carrier code chooses a route of its
			// own that nobody checked.
			return n.invalid("parameter " + kv[0])
		default:
			return n.invalid("unknown parameter")
		}
	}
	d, ok := clean(num)
	if !ok {
		return n.invalid("not a number")
	}
	if ctx, has := param(params, "phone-context"); has {
		return p.local(n, d, ctx)
	}
	return p.classify(n, d)
}

// local reads a local number with its phone-context (RFC 3966 5.1.5).
func (p *Plan) local(n Number, d, ctx string) Number {
	if strings.HasPrefix(d, "+") {
		return n.invalid("phone-context on a global number")
	}
	if !strings.HasPrefix(ctx, "+") {
		// A domain: the number is local to the caller's own domain, which
		// is what the PBX dials it in. Read it in the home plan.
		if ctx == "" {
			return n.invalid("empty phone-context")
		}
		return p.classify(n, d)
	}
	prefix, ok := clean(ctx[1:])
	if !ok || prefix == "" || strings.ContainsAny(prefix, "*#+") || len(prefix) > 15 {
		return n.invalid("bad phone-context")
	}
	home := p.cc != "" && strings.HasPrefix(prefix, p.cc)
	if home {
		// Feature prefixes of the home plan may come first in a local
		// number of the home country.
		var feats []string
		d, feats = p.strip(d)
		n.Features = feats
	}
	if strings.ContainsAny(d, "*#") {
		return n.invalid("star or hash in a number")
	}
	for _, ip := range p.intl {
		if strings.HasPrefix(d, ip) {
			return n.invalid("international prefix in a local number")
		}
	}
	switch {
	case home && p.trunk != "" && strings.HasPrefix(d, p.trunk):
		// The national form with the home country as context: the trunk
		// prefix is not part of the number.
		return p.number(n, d, p.cc+d[len(p.trunk):])
	case !home && p.cc != "" && p.trunk != "" && strings.HasPrefix(d, p.trunk):
		// The PBX may ignore the context and dial these digits as a
		// national number of its own: two readings, refuse both.
		return n.invalid("phone-context of another country")
	}
	return p.number(n, d, prefix+d)
}

// classify reads a dial string without phone-context: emergency and
// service codes, configured extensions and numbers, at each level of
// feature prefixes stripped; then default extensions the same way.
func (p *Plan) classify(n Number, d string) Number {
	levels := []string{d}
	for range maxFeatures {
		f := p.feature(levels[len(levels)-1])
		if f == "" {
			break
		}
		levels = append(levels, levels[len(levels)-1][len(f):])
	}
	why := ""
	feats := func(i int) []string {
		var fs []string
		for j := range i {
			fs = append(fs, levels[j][:len(levels[j])-len(levels[j+1])])
		}
		return fs
	}
	for i, rest := range levels {
		if c, ok := p.exact(rest); ok {
			n.Class, n.Dialled, n.Features = c, rest, feats(i)
			return n
		}
		if e, reason := p.e164(rest); e != "" {
			m := p.number(n, rest, e)
			if m.Class != Invalid {
				m.Features = feats(i)
				return m
			}
			reason = m.Reason
			if why == "" {
				why = reason
			}
		} else if why == "" {
			why = reason
		}
	}
	if p.exts == nil {
		for i, rest := range levels {
			if p.defaultExtension(rest) {
				n.Class, n.Dialled, n.Features = Extension, rest, feats(i)
				return n
			}
		}
	}
	n.Features = feats(len(levels) - 1)
	return n.invalid(why)
}

// exact matches the exact classes: emergency, service, configured
// extension.
func (p *Plan) exact(d string) (Class, bool) {
	switch {
	case p.emergency[d]:
		return Emergency, true
	case matchAny(p.services, d):
		return Service, true
	case matchAny(p.exts, d):
		return Extension, true
	}
	return "", false
}

// defaultExtension: 2 to 6 digits that are no number of the plan and do
// not begin with a public short code of the country.
func (p *Plan) defaultExtension(d string) bool {
	if len(d) < 2 || len(d) > 6 || !allDigits(d) {
		return false
	}
	for _, s := range p.short {
		if strings.HasPrefix(d, s) {
			return false
		}
	}
	return true
}

// feature returns the longest feature prefix of d that leaves something
// after it.
func (p *Plan) feature(d string) string {
	for _, f := range p.features {
		if len(d) > len(f) && strings.HasPrefix(d, f) {
			return f
		}
	}
	return ""
}

// strip removes leading feature prefixes.
func (p *Plan) strip(d string) (string, []string) {
	var feats []string
	for range maxFeatures {
		f := p.feature(d)
		if f == "" {
			break
		}
		feats = append(feats, f)
		d = d[len(f):]
	}
	return d, feats
}

// e164 reads a dial string as a number of the plan: "+", an
// international prefix, the trunk prefix (or, in NANP, ten digits, and
// where there is no trunk prefix a national number in full). It returns
// the digits with country code, or "" and why not.
func (p *Plan) e164(d string) (string, string) {
	if d == "" {
		return "", "no number"
	}
	if strings.ContainsAny(d, "*#") {
		return "", "star or hash in a number"
	}
	if strings.HasPrefix(d, "+") {
		return d[1:], ""
	}
	if strings.Contains(d, "+") {
		return "", "plus inside a number"
	}
	for _, ip := range p.intl {
		if strings.HasPrefix(d, ip) {
			return d[len(ip):], ""
		}
	}
	switch {
	case p.cc == "":
		return "", "a national number, and no country in the dial plan"
	case p.trunk != "" && strings.HasPrefix(d, p.trunk):
		return p.cc + d[len(p.trunk):], ""
	case p.cc == "1" && len(d) == 10:
		return "1" + d, "" // NANP: ten digits without the 1
	case p.trunk == "" && slices.Contains(p.lengths, len(d)):
		return p.cc + d, ""
	}
	return "", "not a number of the dial plan"
}

// number completes n with the E.164 digits e (country code first): the
// trunk zero inside an international form goes, lengths are checked.
func (p *Plan) number(n Number, dialled, e string) Number {
	if e == "" || !allDigits(e) {
		return n.invalid("not a number")
	}
	if e[0] == '0' {
		return n.invalid("no country code")
	}
	cc := CountryCode(e)
	rest := e[len(cc):]
	if strings.HasPrefix(rest, "0") && !keepZero[cc] {
		rest = rest[1:]
		if strings.HasPrefix(rest, "0") {
			return n.invalid("zeros after the country code")
		}
	}
	lengths := []int(nil)
	if cc == p.cc {
		lengths = p.lengths
	} else if c, ok := byCode[cc]; ok {
		lengths = c.lengths
	}
	switch {
	case lengths != nil && !slices.Contains(lengths, len(rest)):
		return n.invalid("wrong length for +" + cc)
	case len(rest) < 4 || len(cc)+len(rest) < 7 || len(cc)+len(rest) > 15:
		return n.invalid("wrong length")
	}
	n.E164 = "+" + cc + rest
	n.Dialled = dialled
	n.Class = International
	if cc == p.cc {
		n.Class = National
	}
	return n
}

// Unreadable is an invalid destination for a reason of the caller's
// (a REFER without one Refer-To).
func Unreadable(reason string) Number { return Number{}.invalid(reason) }

func (n Number) invalid(reason string) Number {
	n.Class, n.E164, n.Dialled, n.Reason = Invalid, "", "", reason
	return n
}

// clean drops visual separators ("-", ".", "(", ")", space) and keeps
// digits, "*", "#" and one "+". Anything else: not ok.
func clean(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9', c == '*', c == '#':
			b.WriteByte(c)
		case c == '+' && !strings.Contains(s[:i], "+"):
			// Leading, or after feature prefixes ("*31#+44…"); a plus
			// anywhere else reads as no number.
			b.WriteByte(c)
		case c == '-' || c == '.' || c == '(' || c == ')' || c == ' ' || c == '\t':
		default:
			return "", false
		}
	}
	return b.String(), true
}

// splitParams cuts ";name=value" parameters off a telephone-subscriber;
// names are lower-cased, each may appear once.
func splitParams(s string) (string, [][2]string, bool) {
	parts := strings.Split(s, ";")
	if len(parts) > 9 {
		return "", nil, false
	}
	var params [][2]string
	for _, p := range parts[1:] {
		name, value, _ := strings.Cut(p, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "" {
			return "", nil, false
		}
		if _, dup := param(params, name); dup {
			return "", nil, false
		}
		params = append(params, [2]string{name, strings.TrimSpace(value)})
	}
	return parts[0], params, true
}

func param(params [][2]string, name string) (string, bool) {
	for _, kv := range params {
		if kv[0] == name {
			return kv[1], true
		}
	}
	return "", false
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// maxNameDigits: a user name with more digits than this is read as a
// number in disguise ("a09091234567"), not as a name.
const maxNameDigits = 6

// isName: a letter, then letters, digits, ".", "-" or "_", at most 64
// characters and maxNameDigits digits.
func isName(s string) bool {
	if len(s) > 64 || !isLetter(s[0]) {
		return false
	}
	digits := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isLetter(c), c == '.', c == '-', c == '_':
		case c >= '0' && c <= '9':
			digits++
		default:
			return false
		}
	}
	return digits <= maxNameDigits
}

func matchAny(res []*regexp.Regexp, s string) bool {
	for _, re := range res {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}
