package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/sipwall/sipwall/sbc/auth"
	"github.com/sipwall/sipwall/sbc/config"
	"github.com/sipwall/sipwall/sbc/demo"
	"github.com/sipwall/sipwall/sbc/store"
)

// demoPBXAddr is where the embedded PBX listens: a loopback address of its
// own, so that a softphone on 127.0.0.1 is "outside" and the PBX "inside".
const demoPBXAddr = "127.0.0.10:0"

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:5060", "address the SBC serves on (UDP and TCP)")
	level := fs.String("log", "info", "log level: debug, info, warn, error")
	admin := fs.String("admin", "127.0.0.1:9090", "admin API address (\"\": off)")
	wss := fs.String("wss", "", "address of a SIP over secure WebSocket listener for browsers (\"\": none)")
	certFile := fs.String("cert", "", "PEM certificate of the -wss listener (default: self-signed for 127.0.0.1 and localhost)")
	keyFile := fs.String("key", "", "PEM key of -cert")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := config.Default()
	cfg.Listen = []config.Listener{
		{Transport: "udp", Addr: *listen, Side: "external"},
		{Transport: "tcp", Addr: *listen, Side: "external"},
	}
	cfg.Log.Level = *level
	cfg.Admin.Addr = *admin
	log := newLogger(cfg.Log, stderr)

	st, cleanup, err := store.OpenTemp()
	if err != nil {
		return fmt.Errorf("open demo store: %w", err)
	}
	defer cleanup()
	cfg.Store.Path = st.Dir()
	if err := demoAuth(cfg, st.Dir()); err != nil {
		return err
	}
	if *wss != "" {
		if err := demoWSS(cfg, *wss, *certFile, *keyFile, st.Dir()); err != nil {
			return err
		}
	} else if *certFile != "" || *keyFile != "" {
		return errors.New("demo: -cert and -key need -wss")
	}
	if cfg.Admin.Addr != "" {
		// The demo shows the web console: a fresh token for this run,
		// printed below (the store, and the token with it, is deleted
		// when the demo ends).
		if cfg.Admin.TokenFile, err = writeDemoToken(st.Dir()); err != nil {
			return fmt.Errorf("write demo admin token: %w", err)
		}
		cfg.Admin.Console = true
	}

	pbx := demo.New(demo.Options{Logger: log})
	if err := pbx.Start(ctx, demoPBXAddr, demoPBXAddr); err != nil {
		return fmt.Errorf("start demo PBX (needs 127.0.0.10 on loopback): %w", err)
	}
	defer pbx.Close()
	pbxUDP := pbx.Addr("udp")
	cfg.Upstreams = []config.Upstream{{Name: "demo-pbx", URI: "sip:" + pbxUDP.String(), Priority: 1, Weight: 1}}
	if err := cfg.Validate(); err != nil {
		return err
	}
	app, err := start(ctx, cfg, st, log)
	if err != nil {
		return err
	}
	printDemoHelp(stdout, app, pbxUDP)
	<-ctx.Done()
	app.stop()
	return nil
}

// demoUsers are the demo's users; all have the password "demo".
var demoUsers = []string{"alice", "bob"}

// demoAuth gives cfg the demo's users, written into dir.
func demoAuth(cfg *config.Config, dir string) error {
	usersFile, err := writeDemoUsers(dir, cfg.Auth.Realm)
	if err != nil {
		return fmt.Errorf("write demo users: %w", err)
	}
	cfg.Auth.UsersFile = usersFile
	// sipp 3.6 and many old phones read only the first challenge and know
	// only MD5: the demo offers it first so they can call it. Do not copy
	// this into a real configuration without that need.
	cfg.Auth.Algorithms = []string{config.AlgMD5, config.AlgSHA256, config.AlgSHA512256}
	return nil
}

// writeDemoToken writes a random admin token into dir.
func writeDemoToken(dir string) (string, error) {
	p := filepath.Join(dir, "admin.token")
	return p, os.WriteFile(p, []byte(randomToken()+"\n"), 0o600)
}

// writeDemoUsers writes a users file for demoUsers into dir.
func writeDemoUsers(dir, realm string) (string, error) {
	var b strings.Builder
	b.WriteString("users:\n")
	for _, u := range demoUsers {
		fmt.Fprintf(&b, "  - name: %s\n    ha1:\n", u)
		for _, alg := range []string{auth.SHA256, auth.SHA512256, auth.MD5} {
			fmt.Fprintf(&b, "      %s: %q\n", alg, auth.HashPassword(u, realm, "demo", alg))
		}
	}
	p := filepath.Join(dir, "demo-users.yaml")
	return p, os.WriteFile(p, []byte(b.String()), 0o600)
}

func printDemoHelp(w io.Writer, a *app, pbx netip.AddrPort) {
	var sbcAddr, wssLine string
	for _, l := range a.server.Listeners() {
		switch l.Spec.Transport {
		case "udp":
			sbcAddr = l.Bound.String()
		case "wss":
			wssLine = fmt.Sprintf("  SBC (browsers):  wss://%[1]s   — open https://%[1]s/ once to trust its certificate\n", l.Bound)
		}
	}
	host, port, _ := net.SplitHostPort(sbcAddr)
	fmt.Fprintf(w, `
sipwall demo is running.
  SBC (outside):   udp+tcp %s
%s  demo PBX (inside): %s   — never reached directly

Extensions on the demo PBX:
  1000  answers and echoes your audio
  1001  busy (486)
  1002  rings, never answers (CANCEL it, or wait for the ring timeout)
  1003  answers, then hangs up from the PBX side after 2 s

Users (digest, realm %q): alice and bob, password "demo".

Call it with sipp (Debian package sip-tester; "make tools" installs it), from
the source tree, one line per extension; sipp exits 0 when the call went as
its scenario expects (the busy, cancelled and hung-up calls too):
`, sbcAddr, wssLine, pbx, a.cfgRealm)
	// The same lines as the README's "Place a call through the demo",
	// with this demo's address (TestReadmeDemoLines runs both).
	for _, c := range []struct{ scenario, ext, flags, note string }{
		{"uac_auth_call.xml", "1000", "", "1000 answers (UDP)"},
		{"uac_auth_call.xml", "1000", " -t t1", "1000 over TCP"},
		{"uac_auth_busy.xml", "1001", "", "1001: 486 Busy Here"},
		{"uac_auth_cancel.xml", "1002", "", "1002 rings: CANCEL after 1 s, 487"},
		{"uac_auth_remote_bye.xml", "1003", "", "1003: the PBX hangs up after 2 s"},
	} {
		fmt.Fprintf(w, "  sipp -sf testdata/sipp/%s -au alice -ap demo -auth_uri %s@%s -s %s -m 1%s %s   # %s\n",
			c.scenario, c.ext, sbcAddr, c.ext, c.flags, sbcAddr, c.note)
	}
	fmt.Fprintf(w, `  sipp -sf testdata/sipp/uac_register_auth.xml -au alice -ap demo -s alice -m 1 %[1]s   # register alice

Or point a softphone at sip:1000@%[2]s (port %[3]s, UDP or TCP) as alice / demo.
Five wrong passwords within a minute ban the address for an hour.
Press Ctrl-C to stop.
`, sbcAddr, host, port)
	if a.admin != nil {
		tokenFile := a.cfg.Admin.TokenFile
		token, _ := readToken(tokenFile)
		fmt.Fprintf(w, `
Web console: http://%[1]s/console/  — log in with the token %[2]s
Admin API on %[1]s (same token, as "Authorization: Bearer ..."):
  sipwall calls -admin %[1]s -token-file %[3]s
  sipwall why alice -admin %[1]s -token-file %[3]s
`, a.admin.Addr(), token, tokenFile)
	}
}
