package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"

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
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := config.Default()
	cfg.Listen = []config.Listener{
		{Transport: "udp", Addr: *listen, Side: "external"},
		{Transport: "tcp", Addr: *listen, Side: "external"},
	}
	cfg.Log.Level = *level
	log := newLogger(cfg.Log, stderr)

	st, cleanup, err := store.OpenTemp()
	if err != nil {
		return fmt.Errorf("open demo store: %w", err)
	}
	defer cleanup()
	cfg.Store.Path = st.Dir()

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

func printDemoHelp(w io.Writer, a *app, pbx netip.AddrPort) {
	var sbcAddr string
	for _, l := range a.server.Listeners() {
		if l.Spec.Transport == "udp" {
			sbcAddr = l.Bound.String()
		}
	}
	host, port, _ := net.SplitHostPort(sbcAddr)
	fmt.Fprintf(w, `
sipwall demo is running.
  SBC (outside):   udp+tcp %s
  demo PBX (inside): %s   — never reached directly

Extensions on the demo PBX:
  1000  answers and echoes your audio
  1001  busy (486)
  1002  rings, never answers (CANCEL it, or wait for the ring timeout)
  1003  answers, then hangs up from the PBX side after 2 s

Call it with sipp (Debian package sip-tester):
  sipp -sn uac -s 1000 -m 1 %s
  sipp -sn uac -s 1000 -m 1 -t t1 %s      # over TCP

Or point a softphone at sip:1000@%s (port %s, UDP or TCP).
Press Ctrl-C to stop.
`, sbcAddr, pbx, sbcAddr, sbcAddr, host, port)
}
