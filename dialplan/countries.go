package dialplan

import (
	"slices"
	"sort"
	"strings"
)

// country is what the dial plan knows of a numbering plan by default.
type country struct {
	cc    string // ITU-T E.164 country code
	trunk string // national (trunk) prefix, "" where numbers are dialled in full
	intl  string // international prefix
	// lengths are the lengths of national significant numbers (without
	// the trunk prefix).
	lengths []int
	// emergency are the country's own emergency numbers (112 and 911 are
	// added everywhere).
	emergency []string
	// features are the country's digit feature prefixes (on top of the
	// star and hash codes stripped everywhere).
	features []string
	// short are prefixes of public short numbers (directory enquiries and
	// the like) billed by the carrier, which the default extension pattern
	// leaves out.
	short []string
}

func span(lo, hi int) []int {
	var l []int
	for n := lo; n <= hi; n++ {
		l = append(l, n)
	}
	return l
}

// countries are the numbering plans sipwall knows by ISO 3166 code.
var countries = map[string]country{
	"GB": {cc: "44", trunk: "0", intl: "00", lengths: span(7, 10), emergency: []string{"999"}, features: []string{"141", "1470"}, short: []string{"118"}},
	"IE": {cc: "353", trunk: "0", intl: "00", lengths: span(7, 9), emergency: []string{"999"}, short: []string{"118"}},
	"US": {cc: "1", trunk: "1", intl: "011", lengths: []int{10}, short: []string{"411"}},
	"CA": {cc: "1", trunk: "1", intl: "011", lengths: []int{10}, short: []string{"411"}},
	"DE": {cc: "49", trunk: "0", intl: "00", lengths: span(5, 13), emergency: []string{"110"}, short: []string{"118"}},
	"FR": {cc: "33", trunk: "0", intl: "00", lengths: []int{9}, emergency: []string{"15", "17", "18", "114", "115", "119", "191", "196"}, short: []string{"118"}},
	"NL": {cc: "31", trunk: "0", intl: "00", lengths: []int{9}},
	"BE": {cc: "32", trunk: "0", intl: "00", lengths: []int{8, 9}, emergency: []string{"100", "101"}},
	// Spain and Italy have no trunk prefix: national numbers are dialled
	// in full, and in Italy a landline number keeps its 0 after +39.
	"ES": {cc: "34", trunk: "", intl: "00", lengths: []int{9}, emergency: []string{"061", "062", "080", "085", "091", "092"}, short: []string{"118"}},
	"IT": {cc: "39", trunk: "", intl: "00", lengths: span(6, 11), emergency: []string{"113", "115", "117", "118", "1530"}, short: []string{"0", "3", "8", "12"}},
	"AT": {cc: "43", trunk: "0", intl: "00", lengths: span(4, 13), emergency: []string{"122", "128", "133", "140", "141", "144"}, short: []string{"118"}},
	"CH": {cc: "41", trunk: "0", intl: "00", lengths: []int{9}, emergency: []string{"117", "118", "144", "145", "1414"}},
}

// byCode are the plans above by country code (US and CA share 1).
var byCode = func() map[string]country {
	m := map[string]country{}
	for _, c := range countries {
		m[c.cc] = c
	}
	return m
}()

// everywhere are emergency numbers of every plan: 3GPP handsets treat
// 112 and 911 as emergency numbers in any country.
var everywhere = []string{"112", "911"}

// noCountry are the emergency numbers of a plan without a country.
var noCountry = []string{"112", "911", "999"}

// starFeatures are feature prefixes stripped in every plan: CLIR and
// CLIP per call (NANP *67 and *82, GSM #31# and *31#). They cannot be
// part of a number.
var starFeatures = []string{"*67", "*82", "#31#", "*31#"}

// keepZero are country codes whose national numbers may begin with 0, so
// a 0 after the country code is part of the number (Italy, San Marino,
// Vatican, Côte d'Ivoire, Congo, Gabon). Elsewhere a 0 written after the
// country code is the trunk prefix and is dropped: "+44 (0)20…" is
// +4420….
var keepZero = map[string]bool{"39": true, "378": true, "379": true, "225": true, "242": true, "241": true}

// Countries lists the ISO codes the dial plan knows, sorted.
func Countries() []string {
	l := make([]string, 0, len(countries))
	for k := range countries {
		l = append(l, k)
	}
	sort.Strings(l)
	return l
}

// CountryCode returns the ITU-T E.164 country code at the start of an
// international number's digits: 1 and 7 are one digit, a fixed set of
// two-digit codes, and every other code is three digits.
func CountryCode(d string) string {
	if d == "" {
		return ""
	}
	if d[0] == '1' || d[0] == '7' {
		return d[:1]
	}
	if len(d) >= 2 && slices.Contains(twoDigit, d[:2]) {
		return d[:2]
	}
	if len(d) >= 3 {
		return d[:3]
	}
	return d
}

var twoDigit = strings.Fields(`20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49
	51 52 53 54 55 56 57 58 60 61 62 63 64 65 66 81 82 84 86 90 91 92 93 94 95 98`)
