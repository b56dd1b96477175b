package policy

import (
	"net/url"
	"sort"
	"strings"
)

// countryCodes maps the ISO 3166 codes accepted in Options.Country to
// their calling codes, for national numbers written with a leading 0.
var countryCodes = map[string]string{
	"GB": "44",
	"US": "1",
	"DE": "49",
	"FR": "33",
	"IE": "353",
	"NL": "31",
	"BE": "32",
	"ES": "34",
	"IT": "39",
	"AT": "43",
	"CH": "41",
}

func countryList() string {
	var l []string
	for k := range countryCodes {
		l = append(l, k)
	}
	sort.Strings(l)
	return strings.Join(l, ", ")
}

// maxRawNumber bounds the work on an attacker's Request-URI user.
const maxRawNumber = 64

// NormalizeE164 turns the user part of a Request-URI (sip:…;user=phone or
// tel:, the caller passes the user part) into an E.164 number "+<digits>".
// Visual separators (- . ( ) space) are removed after percent-decoding;
// "+" is kept; the international prefix "00" becomes "+", and "011" too
// when country is "US" or empty; with a country configured, a national
// number with a leading 0 becomes "+<country code><rest>", and for "US"
// ten digits (or eleven starting with 1) are NANP numbers. The result must
// have 8 to 15 digits, the first not 0; anything else (letters, a short
// extension, bare digits, no country for a national number) is not a
// number: ok is false.
func NormalizeE164(raw, country string) (e164 string, ok bool) {
	if len(raw) > maxRawNumber {
		return "", false
	}
	s := raw
	if strings.ContainsRune(s, '%') {
		d, err := url.PathUnescape(s)
		if err != nil {
			return "", false
		}
		s = d
	}
	// tel: URI parameters (";phone-context=…", ";ext=…") are not digits.
	if i := strings.IndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSpace(s)
	var b strings.Builder
	for i, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' && i == 0:
			b.WriteRune(r)
		case r == '-' || r == '.' || r == '(' || r == ')' || r == ' ':
		default:
			return "", false
		}
	}
	n := b.String()
	var digits string
	switch {
	case strings.HasPrefix(n, "+"):
		digits = n[1:]
	case strings.HasPrefix(n, "00"):
		digits = n[2:]
	case strings.HasPrefix(n, "011") && (country == "" || country == "US"):
		// NANP international prefix; elsewhere 011… is a national number
		// (Leeds is 0113).
		digits = n[3:]
	case strings.HasPrefix(n, "0") && country != "US":
		cc, known := countryCodes[country]
		if !known {
			return "", false
		}
		digits = cc + n[1:]
	case country == "US" && len(n) == 10 && n[0] >= '2':
		digits = "1" + n // NANP dialled without the 1
	case country == "US" && len(n) == 11 && n[0] == '1':
		digits = n
	default:
		// Bare digits: a short extension or a number whose country we
		// cannot know.
		return "", false
	}
	if len(digits) < 8 || len(digits) > 15 || digits[0] == '0' {
		return "", false
	}
	return "+" + digits, true
}
