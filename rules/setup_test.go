package rules

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string // substring of the error
	}{
		{"unknown top key", "country: GB\ncountyr: GB\n", `rules.yaml:2: unknown key "countyr"`},
		{"unknown rule key", ruleFile("- name: r\n  measure: calls_per_minute\n  critcal: 3\n"), `rules.yaml:9: unknown key "critcal" in rule_sets[0].rules[0]`},
		{"unknown match key", ruleFile("- name: r\n  measure: calls_per_minute\n  critical: 3\n  match: {list: [premium]}\n"), `rules.yaml:10: unknown key "list" in rule_sets[0].rules[0].match`},
		{"unknown applies_to key", "rule_sets:\n  - name: s\n    applies_to: {user: [a]}\n", `rules.yaml:3: unknown key "user"`},
		{"bad measure", ruleFile("- name: r\n  measure: calls_per_hour\n  critical: 3\n"), `rules.yaml:8: rule "default/r": measure: "calls_per_hour"`},
		{"bad action", ruleFile("- name: r\n  measure: calls_per_minute\n  critical: 3\n  action: drop\n"), `rules.yaml:10: rule "default/r": action: "drop"`},
		{"unknown list", ruleFile("- name: r\n  match: {lists: [premuim]}\n  measure: calls_per_minute\n  critical: 3\n"), `rules.yaml:8: rule "default/r": match.lists: no list "premuim"`},
		{"bad block_for", ruleFile("- name: r\n  measure: calls_per_minute\n  critical: 3\n  action: block_account\n  block_for: 1 hour\n"), `rules.yaml:11: rule "default/r": block_for`},
		{"warning above critical", ruleFile("- name: r\n  measure: calls_per_minute\n  warning: 5\n  critical: 3\n"), `rules.yaml:9: rule "default/r": warning 5 must be below critical 3`},
		{"no threshold", ruleFile("- name: r\n  measure: calls_per_minute\n"), `rules.yaml:7: rule "default/r": needs warning or critical`},
		{"bad day", ruleFile("- name: r\n  measure: outside_hours\n  critical: 1\n  hours: {days: [mon, fry], from: \"08:00\", to: \"18:00\"}\n"), `rules.yaml:10: rule "default/r": hours.days: "fry"`},
		{"bad hour", ruleFile("- name: r\n  measure: outside_hours\n  critical: 1\n  hours: {from: \"8\", to: \"18:00\"}\n"), `hours.from: "8"`},
		{"teardown on counts", ruleFile("- name: r\n  measure: calls_per_minute\n  critical: 1\n  action: teardown\n"), `rules.yaml:10: rule "default/r": teardown needs`},
		{"bad country", "country: XX\n", `rules.yaml:1: country: unknown country "XX"`},
		{"bad zone", "zone: Mars/Base\n", `rules.yaml:1: zone:`},
		{"bad list prefix", "lists:\n  premium: [\"+44909\"]\n", `rules.yaml:2: lists.premium: "+44909"`},
		{"duplicate rule", ruleFile("- {name: r, measure: calls_per_minute, critical: 3}\n- {name: r, measure: calls_per_minute, critical: 3}\n"), `rules.yaml:8: rule set "default": duplicate rule name "r"`},
		{"status", ruleFile("- {name: r, measure: calls_per_minute, critical: 3, action: reject, status: 200}\n"), `status 200`},
		{"wrong type", ruleFile("- {name: r, measure: calls_per_minute, critical: lots}\n"), "line 7: cannot unmarshal !!str `lots`"},
		{"no applies_to", "rule_sets:\n  - name: s\n    rules: []\n", `applies_to names no users`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src), "rules.yaml")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q\n%s", err, tt.want, tt.src)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err %v is not ErrInvalid", err)
			}
		})
	}
}

func TestParseFull(t *testing.T) {
	src := `
country: GB
zone: Europe/London
lists:
  premium: [44871, "-44872"]   # extend and remove
  mine: ["3712"]
rule_sets:
  - name: default
    applies_to: {users: ["*"], trusted: ["carrier-a"]}
    rules:
      - name: intl-burst
        match: {lists: [irsf, premium, mine], prefixes: ["53"], international: true, unnormalisable: true}
        measure: calls_per_minute
        per: user
        warning: 5
        critical: 10
        action: reject
        status: 403
        block_for: 1h
        shadow: false
      - name: office
        measure: outside_hours
        critical: 1
        action: alert
        hours: {days: [mon, tue, wed, thu, fri], from: "08:00", to: "18:00"}
      - {name: short, measure: short_calls, critical: 3, action: block_account, block_for: 24h}
`
	rs := mustParse(t, src)
	if rs.Zone.String() != "Europe/London" || rs.home != "44" || len(rs.Sets) != 1 || len(rs.Sets[0].Rules) != 3 {
		t.Fatalf("%+v", rs)
	}
	prem := strings.Join(rs.Lists["premium"], " ")
	if !strings.Contains(prem, "44909") || !strings.Contains(prem, "44871") || strings.Contains(prem, "44872") {
		t.Fatalf("premium = %s", prem)
	}
	if len(rs.Lists["irsf"]) < 10 || rs.Lists["mine"][0] != "3712" {
		t.Fatalf("lists %v", rs.Lists)
	}
	r := rs.Sets[0].Rules[2]
	if r.ShortSeconds != 10 || r.BlockFor != 24*time.Hour || r.Status != 403 || r.Per != "user" {
		t.Fatalf("defaults %+v", r)
	}

	p := filepath.Join(t.TempDir(), "fraud.yaml")
	os.WriteFile(p, []byte(src), 0o600)
	if _, err := Load(p); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p + ".missing"); err == nil || errors.Is(err, ErrInvalid) {
		t.Fatalf("missing file: %v", err)
	}
	if rs, err := Parse(nil, "empty"); err != nil || len(rs.Sets) != 0 {
		t.Fatalf("empty file: %v", err)
	}
}

func TestShippedLists(t *testing.T) {
	rs := mustParse(t, "")
	for _, want := range []struct{ list, prefix string }{
		{"premium", "979"}, {"premium", "808"}, {"premium", "881"}, {"premium", "44909"}, {"premium", "44908"},
		{"irsf", "882"}, {"irsf", "883"},
	} {
		found := false
		for _, p := range rs.Lists[want.list] {
			found = found || p == want.prefix
		}
		if !found {
			t.Errorf("%s lacks %s", want.list, want.prefix)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(ruleFile("- {name: r, measure: calls_per_minute, critical: 3}")))
	f.Add([]byte("lists: {premium: [\"1\"]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Parse(data, "fuzz")
		if err == nil && rs == nil {
			t.Fatal("nil RuleSet without error")
		}
	})
}
