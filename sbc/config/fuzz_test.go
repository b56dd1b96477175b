package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds Parse arbitrary bytes. It must never panic, and its two
// outcomes must be consistent: a config it accepts passes Validate, and a
// rejection is an *Error listing at least one problem.
func FuzzParse(f *testing.F) {
	full, err := os.ReadFile(filepath.Join("testdata", "full.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(full),
		"",
		"listen:\n  - {transport: udp, addr: \"[::]:0\", advertise: \"[2001:db8::1]:5060\"}\n",
		"upstreams:\n  - &u {name: a, uri: \"sip:10.0.0.1;transport=tcp\"}\n  - <<: *u\n    name: b\n",
		"health: &h\n  <<: *h\n",
		"limits:\n  tcp: {max_conns: many}\nlog: {level: loud}\nlog: {}\n",
		"outbound:\n  uri: \"sips:[fe80::1%25eth0]:99999?x=y\"\n",
		"a: [\n",
		"--- 1\n--- 2\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if err == nil {
			if verr := c.Validate(); verr != nil {
				t.Fatalf("Parse accepted a config that Validate rejects: %v", verr)
			}
			return
		}
		var cerr *Error
		if !errors.As(err, &cerr) || len(cerr.Problems) == 0 {
			t.Fatalf("Parse error %v (%T) is not an *Error with problems", err, err)
		}
		for _, p := range cerr.Problems {
			if p.Msg == "" || p.Line < 0 {
				t.Fatalf("malformed problem %+v", p)
			}
		}
	})
}
