package dialplan

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/quick"

	"github.com/emiago/sipgo/sip"
)

var (
	gb   = MustNew(Config{Country: "GB"})
	us   = MustNew(Config{Country: "US"})
	it   = MustNew(Config{Country: "IT"})
	none = MustNew(Config{})
)

type parseCase struct {
	name  string
	plan  *Plan
	raw   string
	class Class
	e164  string
	feats []string
}

func runCases(t *testing.T, cases []parseCase) {
	t.Helper()
	for _, tc := range cases {
		n := tc.plan.Parse(tc.raw)
		if n.Class != tc.class || n.E164 != tc.e164 || !slices.Equal(n.Features, tc.feats) {
			t.Errorf("%s: Parse(%q) = %+v; want class %s, e164 %q, features %q", tc.name, tc.raw, n, tc.class, tc.e164, tc.feats)
		}
		if n.Valid() != (n.E164 != "") || (n.Class == Invalid) != (n.Reason != "") {
			t.Errorf("%s: Parse(%q) = %+v: inconsistent", tc.name, tc.raw, n)
		}
	}
}

// RFC 3966: global and local numbers, visual separators, parameters.
func TestParseRFC3966(t *testing.T) {
	runCases(t, []parseCase{
		{"global number", gb, "+44-20-7946-0000", National, "+442079460000", nil},
		{"separators . ( ) and space", none, "+44.20.(7946) 0000", International, "+442079460000", nil},
		{"global, another country", gb, "+1-212-555-0100", International, "+12125550100", nil},
		{"local with a global context (country)", gb, "020-7946-0000;phone-context=+44", National, "+442079460000", nil},
		{"local with a global context (area)", gb, "7946-0000;phone-context=+44-20", National, "+442079460000", nil},
		{"local, context in another plan", none, "555-0100;phone-context=+1-212", International, "+12125550100", nil},
		{"local with a domain context: the home plan", gb, "02079460000;phone-context=example.com", National, "+442079460000", nil},
		{"extension with a domain context", gb, "1000;phone-context=pbx.example.com", Extension, "", nil},
		{"ext parameter ignored", gb, "+442079460000;ext=201", National, "+442079460000", nil},
		{"isub parameter ignored", gb, "+442079460000;isub=1234", National, "+442079460000", nil},
		{"parameter names in any case", gb, "7946-0000;Phone-Context=+44-20", National, "+442079460000", nil},
		{"phone-context on a global number", gb, "+442079460000;phone-context=+44", Invalid, "", nil},
		{"empty phone-context", gb, "79460000;phone-context=", Invalid, "", nil},
		{"bad phone-context", gb, "79460000;phone-context=+4x", Invalid, "", nil},
		{"national form in a foreign context: two readings", gb, "09091234567;phone-context=+33", Invalid, "", nil},
		{"international prefix in a local number", gb, "00449091234567;phone-context=+44", Invalid, "", nil},
		{"duplicate parameter", gb, "+442079460000;ext=1;ext=2", Invalid, "", nil},
		{"routing number", gb, "+442079460000;rn=+449091234567", Invalid, "", nil},
		{"carrier code", gb, "+442079460000;cic=+44-1234", Invalid, "", nil},
		{"unknown parameter", gb, "+442079460000;foo=bar", Invalid, "", nil},
		{"two pluses", none, "++442079460000", Invalid, "", nil},
		{"plus inside", none, "44+2079460000", Invalid, "", nil},
	})
}

// The written forms: every one is the premium number +449091234567.
func TestParseForms(t *testing.T) {
	const prem = "+449091234567"
	runCases(t, []parseCase{
		{"E.164", gb, "+449091234567", National, prem, nil},
		{"spaced", gb, "+44 909 123 4567", National, prem, nil},
		{"trunk zero in the international form", gb, "+44 (0)909 123 4567", National, prem, nil},
		{"trunk zero after 00", gb, "0044 0909 123 4567", National, prem, nil},
		{"trunk zero, no country", none, "+4409091234567", International, prem, nil},
		{"00", none, "00449091234567", International, prem, nil},
		{"011 without a country", none, "011449091234567", International, prem, nil},
		{"national", gb, "09091234567", National, prem, nil},
		{"percent-encoded plus", gb, "%2B449091234567", National, prem, nil},
		{"percent-encoded separators", gb, "%2B44%20909%20123%204567", National, prem, nil},
		{"CLIR *67", gb, "*6709091234567", National, prem, []string{"*67"}},
		{"CLIR #31#", gb, "#31#09091234567", National, prem, []string{"#31#"}},
		{"CLIP *31#", gb, "*31#+449091234567", National, prem, []string{"*31#"}},
		{"UK CLIR 141", gb, "14109091234567", National, prem, []string{"141"}},
		{"two features", gb, "141*6709091234567", National, prem, []string{"141", "*67"}},
		{"percent-encoded star", gb, "%2A67%2B449091234567", National, prem, []string{"*67"}},
		{"phone-context +44", gb, "09091234567;phone-context=+44", National, prem, nil},
		{"phone-context +44 without trunk", gb, "9091234567;phone-context=+44", National, prem, nil},
		{"phone-context with a feature", gb, "*6709091234567;phone-context=+44", National, prem, []string{"*67"}},
	})
}

func TestParseRefused(t *testing.T) {
	runCases(t, []parseCase{
		{"full-width digits", gb, "０９０９１２３４５６７", Invalid, "", nil},
		{"Arabic-Indic digits", gb, "٠٩٠٩١٢٣٤٥٦٧", Invalid, "", nil},
		{"double percent-encoding", gb, "%252B449091234567", Invalid, "", nil},
		{"broken escape", gb, "%2", Invalid, "", nil},
		{"bad escape", gb, "+44909%ZZ", Invalid, "", nil},
		{"national form without a country", none, "09091234567", Invalid, "", nil},
		{"bare national form of another plan", gb, "33142000000", Invalid, "", nil},
		{"bare E.164 without plus", gb, "449091234567", Invalid, "", nil},
		{"feature code and junk", gb, "*72 09091234567", Invalid, "", nil},
		{"hash terminator", gb, "09091234567#", Invalid, "", nil},
		{"star inside", gb, "0909*1234567", Invalid, "", nil},
		{"too short", gb, "+441234", Invalid, "", nil},
		{"NANP length", none, "+1234567", Invalid, "", nil},
		{"too long", none, "+1234567890123456", Invalid, "", nil},
		{"no country code", none, "+0442079460000", Invalid, "", nil},
		{"letters in a number", none, "+44207abc4567", Invalid, "", nil},
		{"a number in a name", gb, "a09091234567", Invalid, "", nil},
		{"empty", gb, "", Invalid, "", nil},
		{"only a feature", gb, "#31#", Invalid, "", nil},
		{"control character", gb, "0909\x001234567", Invalid, "", nil},
		{"directory enquiries are no extension", gb, "118118", Invalid, "", nil},
		{"too long input", gb, strings.Repeat("1", MaxRaw+1), Invalid, "", nil},
	})
}

func TestParseShortNumbers(t *testing.T) {
	runCases(t, []parseCase{
		{"extension", gb, "1000", Extension, "", nil},
		{"two digits", gb, "21", Extension, "", nil},
		{"six digits", gb, "123456", Extension, "", nil},
		{"seven digits are no extension", gb, "1234567", Invalid, "", nil},
		{"one digit is no extension", gb, "7", Invalid, "", nil},
		{"extension after CLIR", gb, "*671000", Extension, "", []string{"*67"}},
		{"extension without a country", none, "1000", Extension, "", nil},
		{"NANP: the 1 is a trunk prefix, not an extension's", us, "1000", Extension, "", nil},
		{"NANP ten digits", us, "2125550100", National, "+12125550100", nil},
		{"NANP eleven digits", us, "12125550100", National, "+12125550100", nil},
		{"NANP 011", us, "011449091234567", International, "+449091234567", nil},
		{"NANP CLIR", us, "*672125550100", National, "+12125550100", []string{"*67"}},
		{"NANP directory", us, "411", Invalid, "", nil},
		{"UK emergency", gb, "999", Emergency, "", nil},
		{"112 everywhere", us, "112", Emergency, "", nil},
		{"911 everywhere", gb, "911", Emergency, "", nil},
		{"emergency after CLIR", gb, "141999", Emergency, "", []string{"141"}},
		{"no country: 999", none, "999", Emergency, "", nil},
		{"service code", gb, "*97", Service, "", nil},
		{"star code alone is a service code, not CLIR", us, "*67", Service, "", nil},
		{"name", gb, "alice", Name, "", nil},
		{"name with digits and dots", gb, "alice.smith-2", Name, "", nil},
		{"Italy keeps the zero", it, "0612345678", National, "+390612345678", nil},
		{"Italy international form keeps the zero", it, "+39 06 1234 5678", National, "+390612345678", nil},
		{"Italy mobile", it, "3123456789", National, "+393123456789", nil},
		{"Italy: a short 0 number is no extension", it, "061234", National, "+39061234", nil},
	})
}

func TestPlanConfig(t *testing.T) {
	p := MustNew(Config{Country: "GB", Extensions: []string{`[2-4][0-9]{3}`}, Emergency: []string{"999", "112"},
		ServiceCodes: []string{}, Features: []string{"*67"}, NoNames: true, NationalLengths: []int{10}})
	runCases(t, []parseCase{
		{"configured extension", p, "2000", Extension, "", nil},
		{"not a configured extension", p, "1000", Invalid, "", nil},
		{"911 not configured", p, "911", Invalid, "", nil},
		{"no service codes", p, "*97", Invalid, "", nil},
		{"141 not a feature here", p, "14109091234567", Invalid, "", nil},
		{"names refused", p, "alice", Invalid, "", nil},
		{"national length 9 refused", p, "0123456789", Invalid, "", nil},
		{"national length 10", p, "02079460000", National, "+442079460000", nil},
	})
	none := MustNew(Config{Country: "GB", Extensions: []string{}})
	if n := none.Parse("1000"); n.Class != Invalid {
		t.Errorf("no extensions: 1000 is %s", n.Class)
	}
	for _, c := range []Config{
		{Country: "XX"},
		{Country: "GB", TrunkPrefix: "0a"},
		{Country: "GB", InternationalPrefix: "0"},
		{NationalLengths: []int{9}},
		{Country: "GB", NationalLengths: []int{2}},
		{Extensions: []string{"("}},
		{Emergency: []string{"9a"}},
		{Features: []string{"*6x"}},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

func TestParseURI(t *testing.T) {
	for _, tc := range []struct {
		uri   string
		class Class
		e164  string
	}{
		{"sip:+449091234567@sbc;user=phone", National, "+449091234567"},
		{"sips:09091234567@sbc", National, "+449091234567"},
		{"tel:+44-909-123-4567", National, "+449091234567"},
		{"tel:0909-123-4567;phone-context=+44", National, "+449091234567"},
		{"sip:1000@sbc", Extension, ""},
		{"sip:sbc", Invalid, ""},
		{"http://example.com/x", Invalid, ""},
	} {
		var u sip.Uri
		if err := sip.ParseUri(tc.uri, &u); err != nil {
			t.Fatal(err)
		}
		if n := gb.ParseURI(&u); n.Class != tc.class || n.E164 != tc.e164 {
			t.Errorf("ParseURI(%s) = %+v", tc.uri, n)
		}
	}
	for _, tc := range []struct {
		value string
		e164  string
	}{
		{"<sip:+449091234567@sbc?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2>", "+449091234567"},
		{`"Premium" <tel:09091234567>`, "+449091234567"},
		{"sip:09091234567@sbc", "+449091234567"},
		{"<sip:bob@sbc>;method=INVITE", ""},
		{"<", ""},
	} {
		if n := gb.ParseAddress(tc.value); n.E164 != tc.e164 {
			t.Errorf("ParseAddress(%s) = %+v, want %s", tc.value, n, tc.e164)
		}
	}
	var tel sip.Uri
	_ = sip.ParseUri("tel:+44-20-7946-0000", &tel)
	if u := User(&tel); u != "+44-20-7946-0000" {
		t.Errorf("User(tel) = %q", u)
	}
}

func TestString(t *testing.T) {
	for raw, want := range map[string]string{
		"*6709091234567": "+449091234567 after *67",
		"1000":           "extension 1000",
		"alice":          "name",
		"０９":             "invalid (non-ASCII character)",
	} {
		if got := gb.Parse(raw).String(); got != want {
			t.Errorf("%q: %q, want %q", raw, got, want)
		}
	}
}

// forms writes the E.164 number e (country code cc) the ways a caller
// may, for a plan of country code home with trunk prefix "0".
func forms(e, cc, home string, r *rand.Rand) []string {
	d := e[1:]
	nsn := d[len(cc):]
	sep := func(s string) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			b.WriteByte(s[i])
			if i > 0 && i < len(s)-1 && r.IntN(4) == 0 {
				b.WriteByte(" -.()"[r.IntN(5)])
			}
		}
		return b.String()
	}
	out := []string{
		e, "00" + d, "+" + cc + " (0)" + nsn, "00" + cc + "0" + nsn, sep("+" + d),
		"%2B" + d, "*67" + e, "#31#00" + d, nsn + ";phone-context=+" + cc,
	}
	if cc == home {
		out = append(out, "0"+nsn, sep("0"+nsn), "141"+"0"+nsn, "0"+nsn+";phone-context=+"+cc, "0"+nsn+";phone-context=example.com")
	}
	return out
}

// Any two written forms of one number read as that number, with one class.
func TestFormsAgree(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	prefixes := []struct{ cc, start string }{{"44", "909"}, {"44", "20"}, {"44", "7"}, {"33", "1"}, {"49", "30"}, {"881", ""}, {"1", "212"}}
	f := func(seed uint32) bool {
		pr := prefixes[int(seed)%len(prefixes)]
		nsnLen := 10 - len(pr.start)
		if pr.cc == "33" {
			nsnLen = 9 - len(pr.start)
		}
		nsn := pr.start
		for range nsnLen {
			nsn += string(rune('0' + r.IntN(10)))
		}
		if pr.cc == "1" {
			nsn = pr.start + "5550" + nsn[len(pr.start)+4:]
		}
		want := gb.Parse("+" + pr.cc + nsn)
		if !want.Valid() {
			return true // not a number of its plan: nothing to compare
		}
		e := want.E164
		for _, form := range forms(e, pr.cc, "44", r) {
			n := gb.Parse(form)
			if n.E164 != e || n.Class != want.Class {
				t.Logf("%q: %+v, want %s %s", form, n, e, want.Class)
				return false
			}
		}
		return true
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 300}); err != nil {
		t.Error(err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"+44 (0)909 123 4567", "*67%2B44909", "1000;phone-context=x", "0909;phone-context=+44-20", "alice", "#31#141999", "%", "+"} {
		f.Add(s)
	}
	plans := []*Plan{gb, us, it, none}
	f.Fuzz(func(t *testing.T, raw string) {
		for _, p := range plans {
			n := p.Parse(raw)
			if !slices.Contains(Classes, n.Class) || n.Class == "" {
				t.Fatalf("%q: class %q", raw, n.Class)
			}
			if n.Valid() != (n.Class == National || n.Class == International) {
				t.Fatalf("%q: %+v", raw, n)
			}
			if n.Valid() {
				// The E.164 form reads as itself.
				if again := p.Parse(n.E164); again.E164 != n.E164 {
					t.Fatalf("%q: %s reads as %+v", raw, n.E164, again)
				}
				if len(n.E164) < 8 || len(n.E164) > 16 {
					t.Fatalf("%q: %s", raw, n.E164)
				}
			}
			_ = fmt.Sprint(n)
		}
	})
}
