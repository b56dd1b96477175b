package main

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc/decision"
	"github.com/sipwall/sipwall/sbc/e2e"
)

// readmeDemoAddr is the address the README's demo lines call: the
// default of `sipwall demo -listen`. The test's demo serves on a free
// port instead (another sipwall or test may hold 5060), and that address
// is the only thing substituted in the lines before they run.
const readmeDemoAddr = "127.0.0.1:5060"

// demoSection returns the README's "Place a call through the demo"
// section: its sipp lines (comments cut), and the lines of the first
// plain code block after them, which quotes sipp's output.
func demoSection(t *testing.T, root string) (lines, quoted []string, section string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i := strings.Index(s, "### Place a call through the demo\n")
	if i < 0 {
		t.Fatal(`README.md has no "### Place a call through the demo" section`)
	}
	s = s[i:]
	if j := strings.Index(s, "\n## "); j >= 0 {
		s = s[:j]
	}
	blocks := regexp.MustCompile("(?s)```(\\w*)\n(.*?)```").FindAllStringSubmatch(s, -1)
	for _, b := range blocks {
		switch {
		case b[1] == "sh" && lines == nil:
			for _, l := range strings.Split(b[2], "\n") {
				if !strings.HasPrefix(l, "sipp ") {
					continue
				}
				if k := strings.Index(l, " #"); k >= 0 {
					l = l[:k]
				}
				lines = append(lines, strings.Join(strings.Fields(l), " "))
			}
		case b[1] == "" && lines != nil && quoted == nil:
			for _, l := range strings.Split(b[2], "\n") {
				if l = strings.Join(strings.Fields(l), " "); l != "" {
					quoted = append(quoted, l)
				}
			}
		}
	}
	if len(lines) == 0 || len(quoted) == 0 {
		t.Fatalf("the demo section has %d sipp lines and %d quoted output lines, want both:\n%s", len(lines), len(quoted), s)
	}
	return lines, quoted, s
}

// runSipp runs one command line as a shell would (no quoting in these
// lines), from the source tree, bounded in time.
func runSipp(t *testing.T, root, line string) (int, string) {
	t.Helper()
	if strings.ContainsAny(line, `'"\$;&|<>*?`+"`") {
		t.Fatalf("line %q needs a shell; the test runs plain words", line)
	}
	f := strings.Fields(line)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, f[0], f[1:]...)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := cmd.ProcessState.ExitCode()
	if err != nil && code == 0 {
		code = -1
	}
	return code, out.String()
}

// Every sipp line of the README's quick start runs as written against the
// demo, one per extension of the demo PBX plus a registration, and prints
// what the README quotes; the demo's banner shows the same lines.
func TestReadmeDemoLines(t *testing.T) {
	e2e.SkipIfShort(t)
	e2e.RequireSipp(t)
	root, err := e2e.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	lines, quoted, section := demoSection(t, root)

	// The README's address is the demo's default.
	var help bytes.Buffer
	Main([]string{"demo", "-h"}, &help, &help)
	if !strings.Contains(help.String(), `(default "`+readmeDemoAddr+`")`) {
		t.Fatalf("sipwall demo -h does not give %s as the default -listen:\n%s", readmeDemoAddr, help.String())
	}

	// One line per extension of the README's table, and a registration.
	for _, ext := range regexp.MustCompile(`(?m)^\| (\d{4}) \|`).FindAllStringSubmatch(section, -1) {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, " -s "+ext[1]+" ") }) {
			t.Errorf("no sipp line calls extension %s", ext[1])
		}
	}
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "uac_register_auth.xml") }) {
		t.Error("no sipp line registers")
	}

	a, addr, _ := startDemoLogs(t)
	var run []string
	for _, l := range lines {
		if !strings.Contains(l, readmeDemoAddr) {
			t.Errorf("line %q does not call %s", l, readmeDemoAddr)
		}
		run = append(run, strings.ReplaceAll(l, readmeDemoAddr, addr))
	}

	// The banner has the same lines, with the address it serves.
	var banner bytes.Buffer
	printDemoHelp(&banner, a, netip.AddrPort{})
	var shown []string
	for _, l := range strings.Split(banner.String(), "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "sipp ") {
			if k := strings.Index(l, " #"); k >= 0 {
				l = l[:k]
			}
			shown = append(shown, strings.Join(strings.Fields(l), " "))
		}
	}
	if !slices.Equal(shown, run) {
		t.Errorf("the demo banner's sipp lines differ from the README's:\nbanner:\n%s\nREADME:\n%s",
			strings.Join(shown, "\n"), strings.Join(run, "\n"))
	}

	for _, l := range run {
		code, out := runSipp(t, root, l)
		if code != 0 {
			t.Errorf("%s\nexit %d, want 0:\n%s", l, code, out)
			continue
		}
		got := map[string]bool{}
		for _, ol := range strings.Split(out, "\n") {
			got[strings.Join(strings.Fields(ol), " ")] = true
		}
		for _, q := range quoted {
			if !got[q] {
				t.Errorf("%s\nprinted no line %q as the README quotes it:\n%s", l, q, out)
			}
		}
	}

	// What the README says of a line without -auth_uri: refused with
	// 400, uri-mismatch in the decision log.
	bare := regexp.MustCompile(` -auth_uri \S+`).ReplaceAllString(run[0], "")
	if bare == run[0] {
		t.Fatalf("line %q has no -auth_uri", run[0])
	}
	code, out := runSipp(t, root, bare)
	if code == 0 {
		t.Errorf("%s\nexit 0, want a failed call:\n%s", bare, out)
	}
	found := false
	for _, e := range a.decisions.Search(decision.Query{Text: "127.0.0.1", Limit: 100}) {
		found = found || (e.Status == 400 && strings.Contains(e.Why, "uri-mismatch"))
	}
	if !found {
		t.Errorf("no 400 for uri-mismatch in the decision log after the call without -auth_uri: %+v",
			a.decisions.Search(decision.Query{Text: "127.0.0.1", Limit: 100}))
	}
}
