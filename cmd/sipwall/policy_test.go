package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPolicyTest(t *testing.T) {
	var out, errb bytes.Buffer
	if err := cmdPolicy([]string{"test", "../../policy/rego"}, &out, &errb); err != nil {
		t.Fatalf("%v\n%s%s", err, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "PASS sipwall_test.test_default_deny") || !strings.Contains(out.String(), " 0 failed") {
		t.Fatalf("output:\n%s", out.String())
	}

	dir := t.TempDir()
	writePolicyFile(t, filepath.Join(dir, "p.rego"), "package sipwall\ndecision := {\"allow\": true}\n")
	writePolicyFile(t, filepath.Join(dir, "p_test.rego"), "package sipwall_test\nimport data.sipwall\ntest_ok if { sipwall.decision.allow }\ntest_bad if { not sipwall.decision.allow }\n")
	out.Reset()
	if code := Main([]string{"policy", "test", dir}, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "FAIL sipwall_test.test_bad") || !strings.Contains(out.String(), "PASS sipwall_test.test_ok") {
		t.Fatalf("output:\n%s", out.String())
	}
}

func TestPolicyEval(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.json")
	writePolicyFile(t, in, `{"method": "INVITE", "side": "external", "identity": {"user": "alice", "realm": "example.com"}, "dialog": "new"}`)
	var out, errb bytes.Buffer
	if err := cmdPolicy([]string{"eval", "-input", in}, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	var d struct {
		Allow bool
		Rule  string
	}
	if err := json.Unmarshal(out.Bytes(), &d); err != nil || !d.Allow || d.Rule != "authenticated" {
		t.Fatalf("%v %+v\n%s", err, d, out.String())
	}

	writePolicyFile(t, in, `{"method": "INVITE", "metod": "x"}`)
	if err := cmdPolicy([]string{"eval", "-input", in}, &out, &errb); err == nil || !strings.Contains(err.Error(), "metod") {
		t.Fatalf("unknown field accepted: %v", err)
	}
}

func writePolicyFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
