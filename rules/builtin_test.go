package rules

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"testing/quick"
	"time"

	"github.com/sipwall/sipwall/dialplan"
)

var planGB = dialplan.MustNew(dialplan.Config{Country: "GB"})

// builtinHarness is an engine on the built-in rules (and file, if any)
// reading destinations with the GB dial plan.
func builtinHarness(t testing.TB, file string) *harness {
	t.Helper()
	rs, err := ParseWithBuiltin([]byte(file), "fraud.yaml")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{clk: newClock(monday10)}
	h.start(t, Options{Rules: rs, Plan: planGB})
	return h
}

func TestBuiltin(t *testing.T) {
	rs := BuiltinRules()
	if len(rs.Sets) != 2 || rs.Sets[0].Name != "builtin" || !rs.Sets[0].Anonymous || rs.Sets[1].Anonymous {
		t.Fatalf("built-in sets: %+v", rs.Sets)
	}
	for _, s := range rs.Sets {
		if !s.builtin || len(s.Trusted) != 0 {
			t.Errorf("set %s: builtin %v, trusted %v", s.Name, s.builtin, s.Trusted)
		}
	}
	if !strings.Contains(string(Builtin()), "rules.builtin: false") {
		t.Error("the built-in file does not say how to turn it off")
	}
	// The built-in file is the operator's starting point: it parses on
	// its own as a rule file.
	if _, err := Parse(Builtin(), "copy.yaml"); err != nil {
		t.Fatal(err)
	}
	// A file's set may not take a built-in set's name.
	_, err := ParseWithBuiltin([]byte("rule_sets:\n  - name: builtin\n    applies_to: {users: [\"*\"]}\n"), "fraud.yaml")
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "fraud.yaml:2") || !strings.Contains(err.Error(), "rules.builtin") {
		t.Fatalf("duplicate set name: %v", err)
	}
}

// What the built-in rules refuse and let through, for users and for
// callers with no identity; trusted peers are not theirs.
func TestBuiltinDestinations(t *testing.T) {
	h := builtinHarness(t, "")
	anon := func(c *Call) { c.User, c.Trusted = "", "" }
	for _, tc := range []struct {
		dest  string
		mod   func(*Call)
		allow bool
		rule  string
	}{
		{"09091234567", nil, false, "builtin/premium"},
		{"+44 (0)909 123 4567", nil, false, "builtin/premium"},
		{"*67+8816123456", nil, false, "builtin/premium"},
		{"+882123456789", anon, false, "builtin/premium"},
		{"*72 09091234567", nil, false, "builtin/unreadable"},
		{"０９０９１２３４５６７", anon, false, "builtin/unreadable"},
		{"118118", nil, false, "builtin/unreadable"},
		{"02079460000", nil, true, ""},
		{"+33 1 42 00 00 00", nil, true, ""},
		{"1000", nil, true, ""},
		{"alice", anon, true, ""},
		{"*97", nil, true, ""},
		{"999", nil, true, ""},
		{"09091234567", peer("carrier-a"), true, ""},
		{"449091234567", peer("carrier-a"), true, ""},
	} {
		mods := []func(*Call){to(tc.dest)}
		if tc.mod != nil {
			mods = append(mods, tc.mod)
		}
		h.clk.advance(time.Hour) // counters of one attempt at a time
		v, c := h.check(mods...)
		if v.Allow != tc.allow || v.Rule != tc.rule {
			t.Errorf("%q (user %q, trusted %q): %+v; want allow %v by %q", tc.dest, c.User, c.Trusted, v, tc.allow, tc.rule)
		}
	}
}

func TestBuiltinLimits(t *testing.T) {
	h := builtinHarness(t, "")
	for i := 1; i <= 20; i++ {
		v, _ := h.check(func(c *Call) { c.ID = "" }) // one-off checks: never in progress
		if want := i < 20; v.Allow != want {
			t.Fatalf("attempt %d: %+v, want allow %v", i, v, want)
		}
		if i == 20 && v.Rule != "builtin-limits/calls-per-minute" {
			t.Fatalf("attempt 20 refused by %q", v.Rule)
		}
	}
	if h.e.Stats().InProgress != 0 {
		t.Fatalf("one-off checks left calls in progress: %+v", h.e.Stats())
	}
	// Another user, calls kept up: the eleventh at once is refused.
	for i := 1; i <= 11; i++ {
		v, _ := h.check(user("bob"))
		if want := i <= 10; v.Allow != want || (!want && (v.Status != 486 || v.Rule != "builtin-limits/concurrent-calls")) {
			t.Fatalf("bob's call %d: %+v", i, v)
		}
	}
}

// Emergency calls are never refused by a rule, nor by a blocked account.
func TestEmergencyNeverRefused(t *testing.T) {
	h := newHarness(t, ruleFile(`
- {name: all, measure: calls_per_minute, critical: 1, action: block_account}
`), nil, nil)
	h.e.opt.Plan = planGB
	if v, _ := h.check(to("02079460000")); v.Allow || v.Action != ActBlockAccount {
		t.Fatalf("first call: %+v", v)
	}
	if v, _ := h.check(to("02079460000")); v.Allow || v.Reason != "Account Blocked" {
		t.Fatalf("blocked account: %+v", v)
	}
	for _, d := range []string{"999", "112", "*67999"} {
		if v, _ := h.check(to(d)); !v.Allow {
			t.Errorf("emergency %q from a blocked account: %+v", d, v)
		}
	}
	if h.e.Stats().Criticals == 0 {
		t.Error("emergency calls did not count or alert")
	}
}

func TestMatchClassesAndAnonymous(t *testing.T) {
	src := `rule_sets:
  - name: anon
    applies_to: {anonymous: true}
    rules:
      - {name: no-intl, match: {classes: [international]}, measure: calls_per_minute, per: user, critical: 2, action: reject}
`
	rs, err := Parse([]byte(src), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{clk: newClock(monday10)}
	h.start(t, Options{Rules: rs, Plan: planGB})
	anonFrom := func(a string) func(*Call) {
		return func(c *Call) { c.User, c.Trusted, c.Source = "", "", netip.MustParseAddr(a) }
	}
	if v, _ := h.check(to("+33142000000"), anonFrom("192.0.2.7")); !v.Allow {
		t.Fatalf("first: %+v", v)
	}
	// Counted per address: another address has its own count.
	if v, _ := h.check(to("+33142000000"), anonFrom("192.0.2.8")); !v.Allow {
		t.Fatalf("other address: %+v", v)
	}
	if v, _ := h.check(to("+33142000000"), anonFrom("192.0.2.7")); v.Allow || v.Rule != "anon/no-intl" {
		t.Fatalf("second from one address: %+v", v)
	}
	if v, _ := h.check(to("02079460000"), anonFrom("192.0.2.7")); !v.Allow {
		t.Fatalf("national: %+v", v)
	}
	if v, _ := h.check(to("+33142000000")); !v.Allow {
		t.Fatalf("an authenticated user is not anonymous: %+v", v)
	}
	// A reading given by the caller is used as it is.
	n := planGB.Parse("+33142000000")
	if v, _ := h.check(to("ignored"), anonFrom("192.0.2.7"), func(c *Call) { c.Number = &n }); v.Allow {
		t.Fatalf("Call.Number not used: %+v", v)
	}
	_, err = Parse([]byte(strings.Replace(src, "[international]", "[premium]", 1)), "r.yaml")
	if err == nil || !strings.Contains(err.Error(), "r.yaml:5") || !strings.Contains(err.Error(), "match.classes") {
		t.Fatalf("unknown class: %v", err)
	}
}

// The file's list edits apply to the built-in rules too.
func TestBuiltinUsesFileLists(t *testing.T) {
	h := builtinHarness(t, "lists:\n  premium: [\"-44909\", \"3712\"]\n")
	if v, _ := h.check(to("09091234567")); !v.Allow {
		t.Errorf("a prefix the file removed still refused: %+v", v)
	}
	h.clk.advance(time.Hour)
	if v, _ := h.check(to("+37121234567")); v.Allow || v.Rule != "builtin/premium" {
		t.Errorf("a prefix the file added: %+v", v)
	}
}

// forms writes one E.164 number (of the GB plan's view) several ways.
func forms(e string, r *rand.Rand) []string {
	d := e[1:]
	cc := dialplan.CountryCode(d)
	nsn := d[len(cc):]
	sep := func(s string) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			b.WriteByte(s[i])
			if i > 0 && i < len(s)-1 && r.IntN(3) == 0 {
				b.WriteByte(" -.()"[r.IntN(5)])
			}
		}
		return b.String()
	}
	out := []string{e, "00" + d, sep(e), "+" + cc + " (0)" + nsn, "%2B" + d, "*67" + e, "#31#00" + d, sep(nsn) + ";phone-context=+" + cc}
	if cc == "44" {
		out = append(out, "0"+nsn, sep("0"+nsn), "141"+"0"+nsn, "0"+nsn+";phone-context=+44")
	}
	return out
}

// Property: any two forms that read as one E.164 number get one verdict.
func TestSameNumberSameVerdict(t *testing.T) {
	h := builtinHarness(t, "")
	r := rand.New(rand.NewPCG(3, 4))
	starts := []string{"44909", "44871", "4470", "4420", "447", "33", "1212", "881", "882", "979", "53", "370"}
	f := func(pick uint8, tail uint32) bool {
		start := starts[int(pick)%len(starts)]
		e := "+" + start + fmt.Sprintf("%010d", tail)[:12-len(start)]
		n := planGB.Parse(e)
		if !n.Valid() {
			return true
		}
		var first *Verdict
		for _, form := range forms(n.E164, r) {
			if got := planGB.Parse(form); got.E164 != n.E164 {
				t.Logf("%q reads as %+v, not %s", form, got, n.E164)
				return false
			}
			h.clk.advance(time.Hour) // no limit reached between forms
			v, _ := h.check(to(form), func(c *Call) { c.ID = "" })
			if first == nil {
				first = &v
			} else if v.Allow != first.Allow || v.Rule != first.Rule {
				t.Logf("%s: %q got %+v, another form %+v", n.E164, form, v, *first)
				return false
			}
		}
		return true
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 200}); err != nil {
		t.Error(err)
	}
}

func TestEngineBuiltin(t *testing.T) {
	h := builtinHarness(t, "")
	if !h.e.Builtin() {
		t.Error("Builtin() false with the built-in rules")
	}
	h.e.Swap(mustParse(t, ruleFile("- {name: r, measure: calls_per_minute, critical: 3}")))
	if h.e.Builtin() {
		t.Error("Builtin() true after a swap to a file alone")
	}
}
