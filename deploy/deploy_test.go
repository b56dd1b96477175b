// Package deploy_test checks the deployment material: every configuration
// parses and validates, the Kubernetes manifests are well-formed, the
// Grafana dashboard is JSON over sipwall's own metrics, and the systemd
// unit passes systemd-analyze.
package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sipwall/sipwall/sbc/config"
	"gopkg.in/yaml.v3"
)

// parseConfig parses one sipwall.yaml as `sipwall run` would: Parse
// validates, and run needs an upstream. nil (and the test marked failed)
// when it does not.
func parseConfig(t *testing.T, data []byte, name string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(data, name)
	if err != nil {
		t.Errorf("%s:\n%v", name, err)
		return nil
	}
	if err := cfg.RequireUpstreams(); err != nil {
		t.Errorf("%s: %v", name, err)
		return nil
	}
	return cfg
}

func TestConfigurations(t *testing.T) {
	files, err := filepath.Glob("examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("want at least 3 examples in examples/, found %v", files)
	}
	files = append(files, "sipwall.yaml")
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			parseConfig(t, data, f)
		})
	}
}

// manifests decodes every YAML document of every file in kubernetes/.
func manifests(t *testing.T) map[string][]map[string]any {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]map[string]any{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var doc map[string]any
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: document %d: %v", f, len(out[f])+1, err)
			}
			if doc == nil { // only comments, or an empty document
				continue
			}
			out[f] = append(out[f], doc)
		}
		if len(out[f]) == 0 {
			t.Errorf("%s: no documents", f)
		}
	}
	for _, want := range []string{"namespace.yaml", "configmap.yaml", "secret.yaml", "daemonset.yaml", "deployment.yaml"} {
		if _, ok := out[filepath.Join("kubernetes", want)]; !ok {
			t.Errorf("kubernetes/%s is missing", want)
		}
	}
	return out
}

// dig follows keys (string) and indexes (int) through decoded YAML.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func TestKubernetes(t *testing.T) {
	docs := manifests(t)
	configs := 0
	for f, list := range docs {
		for i, doc := range list {
			where := fmt.Sprintf("%s: document %d", f, i+1)
			api, _ := doc["apiVersion"].(string)
			kind, _ := doc["kind"].(string)
			if api == "" || kind == "" {
				t.Errorf("%s: want apiVersion and kind, got %q and %q", where, api, kind)
				continue
			}
			if name, _ := dig(doc, "metadata", "name").(string); name == "" {
				t.Errorf("%s (%s): no metadata.name", where, kind)
			}
			switch kind {
			case "ConfigMap":
				text, ok := dig(doc, "data", "sipwall.yaml").(string)
				if !ok {
					continue
				}
				configs++
				cfg := parseConfig(t, []byte(text), where+" sipwall.yaml")
				if cfg != nil && (cfg.Admin.Addr != "0.0.0.0:9090" || cfg.Admin.TokenFile == "") {
					t.Errorf("%s: want admin.addr 0.0.0.0:9090 with a token_file for the probes, got %q, %q", where, cfg.Admin.Addr, cfg.Admin.TokenFile)
				}
			case "DaemonSet", "Deployment":
				checkProbes(t, where, doc)
			}
		}
	}
	if configs < 2 {
		t.Errorf("want the sipwall.yaml of configmap.yaml and deployment.yaml, parsed %d", configs)
	}
	checkMediaPorts(t, docs[filepath.Join("kubernetes", "deployment.yaml")])
}

// checkProbes: readiness on /readyz and liveness on /healthz, admin port.
func checkProbes(t *testing.T, where string, doc map[string]any) {
	t.Helper()
	c := dig(doc, "spec", "template", "spec", "containers", 0)
	for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		got := dig(c, probe, "httpGet", "path")
		port := dig(c, probe, "httpGet", "port")
		if got != path || port != 9090 {
			t.Errorf("%s: %s: want GET %s on 9090, got %v on %v", where, probe, path, got, port)
		}
	}
}

// checkMediaPorts: a Service cannot forward a range, so the LoadBalancer
// Service of the Deployment must list every port of its media range.
func checkMediaPorts(t *testing.T, docs []map[string]any) {
	t.Helper()
	var cfg *config.Config
	udp := map[int]bool{}
	for _, doc := range docs {
		switch doc["kind"] {
		case "ConfigMap":
			if text, ok := dig(doc, "data", "sipwall.yaml").(string); ok {
				cfg, _ = config.Parse([]byte(text), "deployment.yaml")
			}
		case "Service":
			if dig(doc, "spec", "type") != "LoadBalancer" {
				continue
			}
			ports, _ := dig(doc, "spec", "ports").([]any)
			for _, p := range ports {
				if dig(p, "protocol") == "UDP" {
					n, _ := dig(p, "port").(int)
					udp[n] = true
				}
			}
		}
	}
	if cfg == nil {
		t.Fatal("deployment.yaml: no ConfigMap with a valid sipwall.yaml")
	}
	if !udp[5060] {
		t.Error("deployment.yaml: the LoadBalancer Service does not forward 5060/UDP")
	}
	for p := cfg.Media.PortMin; p <= cfg.Media.PortMax; p++ {
		if !udp[p] {
			t.Errorf("deployment.yaml: media port %d/UDP is not in the LoadBalancer Service", p)
		}
	}
}

// promIdent finds PromQL identifiers; the expression is cleaned of strings,
// label matchers, range selectors and grouping clauses first.
var (
	promStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	promKeywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true,
		"group_left": true, "group_right": true, "offset": true, "bool": true,
		"and": true, "or": true, "unless": true, "inf": true, "nan": true}
)

// metricNames returns the metric names a PromQL expression reads.
func metricNames(expr string) []string {
	e := promStrings.ReplaceAllString(expr, `""`)
	e = promMatchers.ReplaceAllString(e, " ")
	e = promGrouping.ReplaceAllString(e, " ")
	var names []string
	for _, m := range promIdent.FindAllStringSubmatch(e, -1) {
		if m[1] != "" || promKeywords[strings.ToLower(m[0])] {
			continue // a function call or a keyword
		}
		names = append(names, m[0])
	}
	return names
}

func TestMetricNames(t *testing.T) {
	got := metricNames(`histogram_quantile(0.99, sum by (le) (rate(sipwall_call_setup_seconds_bucket{instance=~"a|b"}[5m]))) - time() / 86400 and on (x) go_goroutines`)
	want := []string{"sipwall_call_setup_seconds_bucket", "go_goroutines"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("metricNames: got %v, want %v", got, want)
	}
}

func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile("grafana/sipwall-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		SchemaVersion int `json:"schemaVersion"`
		Panels        []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("grafana/sipwall-dashboard.json: %v", err)
	}
	if dash.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d: want a current dashboard (39)", dash.SchemaVersion)
	}
	hasDS := false
	for _, v := range dash.Templating.List {
		if v.Name == "DS_PROMETHEUS" && v.Type == "datasource" && v.Query == "prometheus" {
			hasDS = true
		}
	}
	if !hasDS {
		t.Error("no datasource variable DS_PROMETHEUS of type prometheus")
	}
	used := map[string]bool{}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			names := metricNames(tg.Expr)
			if len(names) == 0 {
				t.Errorf("panel %q: %q reads no metric", p.Title, tg.Expr)
			}
			for _, n := range names {
				used[n] = true
				if !strings.HasPrefix(n, "sipwall_") && !strings.HasPrefix(n, "go_") && !strings.HasPrefix(n, "process_") {
					t.Errorf("panel %q: metric %q is none of sipwall's (sipwall_, go_, process_)", p.Title, n)
				}
			}
		}
	}
	for _, n := range []string{
		"sipwall_calls_active", "sipwall_calls_total", "sipwall_call_setup_seconds_bucket",
		"sipwall_registrations_active", "sipwall_server_requests_total", "sipwall_server_dropped_total",
		"sipwall_auth_failures_total", "sipwall_bans_active", "sipwall_prefilter_packets_total",
		"sipwall_policy_decisions_total", "sipwall_fraud_actions_total",
		"sipwall_tls_certificate_expiry_timestamp_seconds", "sipwall_upstream_up",
		"go_goroutines", "process_resident_memory_bytes",
	} {
		if !used[n] {
			t.Errorf("no panel shows %s", n)
		}
	}
}

// TestContainerfileGoVersion: the build image follows go.mod.
func TestContainerfileGoVersion(t *testing.T) {
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	recipe, err := os.ReadFile("container/Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	arg := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\S+)$`).FindSubmatch(recipe)
	if goLine == nil || arg == nil {
		t.Fatalf("go directive %q, Containerfile ARG GO_VERSION %q: one is missing", goLine, arg)
	}
	if !bytes.Equal(goLine[1], arg[1]) {
		t.Errorf("Containerfile builds with Go %s, go.mod says %s", arg[1], goLine[1])
	}
}

// TestSystemdUnit runs systemd-analyze verify on the unit, alone and with
// the XDP drop-in. The unit's binary is a freshly built sipwall in a temp
// dir, so verify judges the unit, not a missing /usr/local/bin/sipwall.
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian package: systemd); unit not verified")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not in PATH: cannot build the binary the unit runs")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sipwall")
	build := exec.Command(goTool, "build", "-o", bin, "github.com/sipwall/sipwall/cmd/sipwall")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	unit, err := os.ReadFile("systemd/sipwall.service")
	if err != nil {
		t.Fatal(err)
	}
	const installed = "/usr/local/bin/sipwall"
	if !bytes.Contains(unit, []byte(installed)) {
		t.Fatalf("systemd/sipwall.service does not run %s", installed)
	}
	unit = bytes.ReplaceAll(unit, []byte(installed), []byte(bin))
	dropIn, err := os.ReadFile("systemd/xdp.conf")
	if err != nil {
		t.Fatal(err)
	}

	for _, withXDP := range []bool{false, true} {
		name := "plain"
		if withXDP {
			name = "xdp"
		}
		t.Run(name, func(t *testing.T) {
			d := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Join(d, "sipwall.service.d"), 0o755); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(d, "sipwall.service")
			if err := os.WriteFile(path, unit, 0o644); err != nil {
				t.Fatal(err)
			}
			if withXDP {
				if err := os.WriteFile(filepath.Join(d, "sipwall.service.d", "xdp.conf"), dropIn, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(analyze, "verify", path)
			cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
			}
			// Unknown keys and bad values are warnings with exit status 0:
			// any line about our files fails the test. Lines about the
			// host's own units are not ours to judge.
			for _, line := range strings.Split(string(out), "\n") {
				if strings.Contains(line, "sipwall.service") || strings.Contains(line, "xdp.conf") {
					t.Errorf("systemd-analyze verify: %s", line)
				}
			}
		})
	}
}
