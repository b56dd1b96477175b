package policy

import (
	"context"
	"os"
	"regexp"
	"testing"
)

// TestREADMEExamples compiles the Rego examples of README.md and checks
// what they decide, so the examples operators copy keep working.
func TestREADMEExamples(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```rego\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) != 2 {
		t.Fatalf("%d rego examples in README.md, want 2", len(blocks))
	}
	ext2xx := newEngine(t, Options{Dir: writeDir(t, map[string]string{"p.rego": blocks[0][1]})})
	office := newEngine(t, Options{Dir: writeDir(t, map[string]string{"p.rego": blocks[1][1]})})
	alice := &Identity{User: "alice"}
	uk := Destination{E164: "+442071234567", Valid: true}
	tests := []struct {
		name  string
		e     *Engine
		in    Input
		allow bool
		rule  string
	}{
		{"2xx dials out", ext2xx, Input{Dialog: "new", From: Party{User: "201"}, Identity: alice, Destination: uk}, false, "ext-2xx-no-outbound"},
		{"2xx dials extension", ext2xx, Input{Dialog: "new", From: Party{User: "201"}, Identity: alice, Destination: Destination{Raw: "301"}}, true, "authenticated"},
		{"3xx dials out", ext2xx, Input{Dialog: "new", From: Party{User: "301"}, Identity: alice, Destination: uk}, true, "authenticated"},
		{"carrier x office hours", office, Input{Trusted: "carrier-x", Destination: uk, Time: Time{Weekday: "Monday", Hour: 9}}, true, "carrier-x-uk"},
		{"carrier x evening", office, Input{Trusted: "carrier-x", Destination: uk, Time: Time{Weekday: "Monday", Hour: 18}}, false, "carrier-x-restricted"},
		{"carrier x sunday", office, Input{Trusted: "carrier-x", Destination: uk, Time: Time{Weekday: "Sunday", Hour: 9}}, false, "carrier-x-restricted"},
		{"carrier x to France", office, Input{Trusted: "carrier-x", Destination: Destination{E164: "+33123456789", Valid: true}, Time: Time{Weekday: "Monday", Hour: 9}}, false, "carrier-x-restricted"},
	}
	for _, tc := range tests {
		d, err := tc.e.Decide(context.Background(), &tc.in)
		if err != nil || d.Allow != tc.allow || d.Rule != tc.rule {
			t.Errorf("%s: got %+v %v, want allow=%v rule=%q", tc.name, d, err, tc.allow, tc.rule)
		}
	}
}
