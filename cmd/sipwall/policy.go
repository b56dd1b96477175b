package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sipwall/sipwall/policy"
)

const policyUsage = `usage: sipwall policy test DIR                       run the Rego tests of a policy directory
       sipwall policy eval [-dir DIR] -input FILE.json  print the decision for an input document
`

// errPolicyTests: some Rego test failed (already reported on stdout).
var errPolicyTests = errors.New("policy: tests failed")

// cmdPolicy runs the policy sub-commands (package policy).
func cmdPolicy(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, policyUsage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "test":
		return cmdPolicyTest(args[1:], stdout, stderr)
	case "eval":
		return cmdPolicyEval(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, policyUsage)
		return nil
	}
	fmt.Fprint(stderr, policyUsage)
	return fmt.Errorf("policy: unknown command %q", args[0])
}

func cmdPolicyTest(args []string, stdout, stderr io.Writer) error {
	if len(args) != 1 {
		fmt.Fprint(stderr, policyUsage)
		return errors.New("policy test: need exactly one directory")
	}
	res, err := policy.TestDir(context.Background(), args[0])
	if err != nil {
		return err
	}
	failed := 0
	for _, r := range res {
		if r.Pass {
			fmt.Fprintf(stdout, "PASS %s\n", r.Name)
			continue
		}
		failed++
		fmt.Fprintf(stdout, "FAIL %s: %s\n", r.Name, r.Error)
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", len(res)-failed, failed)
	if len(res) == 0 {
		fmt.Fprintln(stdout, "no tests found")
	}
	if failed > 0 {
		return errPolicyTests
	}
	return nil
}

func cmdPolicyEval(args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("policy eval", flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.Usage = func() {
		fmt.Fprint(stderr, policyUsage)
		flags.PrintDefaults()
	}
	dir := flags.String("dir", "", "policy directory (default: the embedded default bundle)")
	file := flags.String("input", "", "input document, JSON (docs/policy-input.schema.json)")
	timeout := flags.Duration("timeout", time.Second, "evaluation timeout")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *file == "" || flags.NArg() != 0 {
		flags.Usage()
		return errors.New("policy eval: -input is required")
	}
	raw, err := os.ReadFile(*file)
	if err != nil {
		return fmt.Errorf("policy eval: %w", err)
	}
	var in policy.Input
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return fmt.Errorf("policy eval: input %s: %w", *file, err)
	}
	e, err := policy.New(policy.Options{Dir: *dir, Timeout: *timeout})
	if err != nil {
		return err
	}
	d, derr := e.Decide(context.Background(), &in)
	out, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", out)
	if derr != nil {
		return fmt.Errorf("policy eval: %w", derr)
	}
	return nil
}
