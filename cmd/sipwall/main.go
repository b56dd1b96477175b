// Command sipwall is a security-first SIP edge firewall and session border
// controller. See the README for the quick start.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `sipwall — SIP edge firewall and session border controller

Usage:
  sipwall run -config FILE     serve with the given configuration
  sipwall check -config FILE   validate a configuration; print what is wrong
  sipwall demo [-listen ADDR]  serve in front of an embedded demo PBX (no config needed)
  sipwall passwd -file F -realm R USER   set a user's password, read from stdin (-h: more)
  sipwall policy test DIR      run the Rego tests of a policy directory
  sipwall policy eval [-dir DIR] -input FILE.json   print the policy decision for an input
  sipwall rules builtin        print the built-in anti-fraud rules (rules.builtin)
  sipwall dialplan [-config FILE | -country CC] DEST...   how destinations are read
  sipwall version              print the version

Talking to a running sipwall (admin API; -config FILE, or -admin ADDR -token-file F):
  sipwall status | calls | registrations | bans | locks | blocks
  sipwall hangup ID            end a call in progress
  sipwall ban PREFIX [-for D]  ban an address or network
  sipwall unban PREFIX         lift a ban
  sipwall unblock USER         lift an anti-fraud account block
  sipwall reload               re-read configuration, rules, policy and users
`

func main() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs a sub-command and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(ctx, args[1:], stderr)
	case "check":
		err = cmdCheck(args[1:], stdout, stderr)
	case "demo":
		err = cmdDemo(ctx, args[1:], stdout, stderr)
	case "passwd":
		err = cmdPasswd(args[1:], os.Stdin, stdout, stderr)
	case "policy":
		err = cmdPolicy(args[1:], stdout, stderr)
	case "rules":
		err = cmdRules(args[1:], stdout, stderr)
	case "dialplan":
		err = cmdDialplan(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "sipwall", version)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		if _, ok := adminCommands[args[0]]; ok {
			err = cmdAdmin(args[0], args[1:], stdout, stderr)
			break
		}
		fmt.Fprintf(stderr, "sipwall: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 2
		}
		fmt.Fprintln(stderr, "sipwall:", err)
		return 1
	}
	return 0
}
