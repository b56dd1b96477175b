package config

import (
	"errors"
	"strings"
	"testing"
)

func TestRequireUsers(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		wantErr    string
	}{
		{"digest without users or trusted", "log: {level: info}\nauth:\n  realm: x\n", "test.yaml:3: auth.users_file: is required"},
		{"digest with users file", "auth:\n  users_file: u.yaml\n", ""},
		{"digest with trusted only", "auth:\n  trusted: [{name: c, cidrs: [10.0.0.0/8]}]\n", ""},
		{"off", "auth: {mode: \"off\"}\npolicy: {mode: \"off\"}\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml), "test.yaml")
			if err != nil {
				t.Fatal(err)
			}
			err = c.RequireUsers()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("RequireUsers: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantErr)):
				t.Errorf("RequireUsers = %v, want prefix %q", err, tc.wantErr)
			}
		})
	}
}

func TestKeyErrorNamesLine(t *testing.T) {
	c, err := Parse([]byte("log: {level: info}\nauth:\n  users_file: /nope.yaml\n"), "s.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := c.KeyError("auth.users_file", errors.New("cannot read")).Error()
	if got != "s.yaml:3: auth.users_file: cannot read" {
		t.Errorf("KeyError = %q", got)
	}
}

func TestParsePrefix(t *testing.T) {
	for in, want := range map[string]string{
		"10.1.2.3":             "10.1.2.3/32",
		"10.1.2.3/8":           "10.0.0.0/8",
		"2001:db8::1":          "2001:db8::1/128",
		"2001:db8::1/48":       "2001:db8::/48",
		"::ffff:192.0.2.1":     "192.0.2.1/32",
		"::ffff:192.0.2.0/120": "192.0.2.0/24",
	} {
		p, err := ParsePrefix(in)
		if err != nil || p.String() != want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, in := range []string{"", "10.0.0.0/33", "fe80::1%eth0", "::ffff:0:0/80", "host.example", "10.0.0.1/"} {
		if p, err := ParsePrefix(in); err == nil {
			t.Errorf("ParsePrefix(%q) = %v, want an error", in, p)
		}
	}
}
