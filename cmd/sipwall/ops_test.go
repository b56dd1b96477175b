package main

// End-to-end tests of the operations layer (admin API, CLI, metrics,
// reload, drain, restart, HEP) against the real app in process, with real
// sipp where a call is needed. Traffic stays on 127.0.0.0/8.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/sipwall/sipwall/sbc/b2bua"
	"github.com/sipwall/sipwall/sbc/ban"
	"github.com/sipwall/sipwall/sbc/config"
	"github.com/sipwall/sipwall/sbc/demo"
	"github.com/sipwall/sipwall/sbc/e2e"
	"github.com/sipwall/sipwall/sbc/hep"
	"github.com/sipwall/sipwall/sbc/procs"
	"github.com/sipwall/sipwall/sbc/registrar"
	"github.com/sipwall/sipwall/sbc/store"
)

// opsToken is a valid admin token (one word, at least 16 characters).
const opsToken = "ops-test-token-0123456789abcdef"

// writeTokenFile writes a token file into a fresh temporary directory.
func writeTokenFile(t *testing.T, token string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(p, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var opsHTTP = &http.Client{Timeout: 10 * time.Second}

// apiCall sends one request to the admin API of a and returns the status
// and body. token "" sends no Authorization header.
func apiCall(t *testing.T, a *app, method, path, token string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+a.admin.Addr()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := opsHTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return res.StatusCode, data
}

// apiJSON is apiCall that wants status want and decodes the body into out.
func apiJSON(t *testing.T, a *app, method, path, token string, body any, want int, out any) {
	t.Helper()
	code, data := apiCall(t, a, method, path, token, body)
	if code != want {
		t.Fatalf("%s %s: status %d, want %d; body %s", method, path, code, want, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
}

// cli runs the sipwall command line in process and returns its exit code,
// stdout and stderr.
func cli(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Main(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// authCall starts sipp placing one authenticated call (alice / demo) to ext
// through addr from 127.0.0.2 over UDP; the call pauses for pause between
// ACK and BYE.
func authCall(t *testing.T, name, addr, ext string, pause time.Duration) *e2e.SippProc {
	t.Helper()
	return e2e.Sipp{Name: name, Scenario: "uac_auth_call.xml", IP: "127.0.0.2", Remote: addr, Transport: e2e.Transports[0],
		Service: ext, AuthUser: "alice", AuthPass: "demo", AuthURI: ext + "@" + addr, Pause: pause, Timeout: 30 * time.Second}.Start(t)
}

// waitConfirmed polls GET /api/calls until one call is confirmed.
func waitConfirmed(t *testing.T, a *app, token string, within time.Duration) b2bua.CallInfo {
	t.Helper()
	deadline := time.Now().Add(within)
	var calls []b2bua.CallInfo
	for time.Now().Before(deadline) {
		calls = nil
		apiJSON(t, a, http.MethodGet, "/api/calls", token, nil, http.StatusOK, &calls)
		for _, c := range calls {
			if c.State == "confirmed" {
				return c
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no confirmed call in /api/calls within %s; last %+v", within, calls)
	return b2bua.CallInfo{}
}

// The admin API answers health and readiness to anyone; everything else
// wants the bearer token from admin.token_file, and a token too short to be
// one stops the start with an error naming the key.
func TestAdminAPIAuth(t *testing.T) {
	tokenFile := writeTokenFile(t, opsToken)
	a, _ := startDemo(t, func(c *config.Config) { c.Admin.TokenFile = tokenFile })

	code, body := apiCall(t, a, http.MethodGet, "/healthz", "", nil)
	if code != http.StatusOK || string(body) != "ok\n" {
		t.Fatalf("GET /healthz without token: %d %q, want 200 \"ok\\n\"", code, body)
	}
	// Health checks are off (interval 0): the pool starts every upstream
	// up, so the app is ready at once and says which upstream makes it so.
	var rz struct {
		Ready  bool   `json:"ready"`
		Reason string `json:"reason"`
	}
	apiJSON(t, a, http.MethodGet, "/readyz", "", nil, http.StatusOK, &rz)
	if !rz.Ready || rz.Reason != "upstream demo-pbx up" {
		t.Fatalf("GET /readyz: %+v, want ready with reason %q", rz, "upstream demo-pbx up")
	}

	for _, path := range []string{"/api/status", "/metrics"} {
		for _, tc := range []struct {
			name, token string
			want        int
		}{
			{"no token", "", http.StatusUnauthorized},
			{"wrong token", "ops-test-token-0123456789abcdeX", http.StatusUnauthorized},
			{"right token", opsToken, http.StatusOK},
		} {
			code, body := apiCall(t, a, http.MethodGet, path, tc.token, nil)
			if code != tc.want {
				t.Errorf("GET %s with %s: status %d, want %d; body %.200s", path, tc.name, code, tc.want, body)
			}
		}
	}
	// The token's prefix alone, or the token in another scheme, is no token.
	req, _ := http.NewRequest(http.MethodGet, "http://"+a.admin.Addr()+"/api/status", nil)
	req.Header.Set("Authorization", "Basic "+opsToken)
	if res, err := opsHTTP.Do(req); err != nil {
		t.Fatal(err)
	} else {
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("token in the Basic scheme: %d, WWW-Authenticate %q; want 401 with a Bearer challenge", res.StatusCode, res.Header.Get("WWW-Authenticate"))
		}
	}
	var st map[string]any
	apiJSON(t, a, http.MethodGet, "/api/status", opsToken, nil, http.StatusOK, &st)
	if st["draining"] != false || st["version"] != version {
		t.Errorf("GET /api/status: %v; want draining false and version %q", st, version)
	}
	// The CLI takes the token from -token-file.
	if code, out, errOut := cli("status", "-admin", a.admin.Addr(), "-token-file", tokenFile); code != 0 || !strings.Contains(out, `"calls_active"`) {
		t.Errorf("sipwall status with the token file: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, _, errOut := cli("status", "-admin", a.admin.Addr()); code != 1 || !strings.Contains(errOut, "401") {
		t.Errorf("sipwall status without a token: exit %d, stderr %q; want 1 and the 401", code, errOut)
	}

	// A short token refuses the start.
	cfg := config.Default()
	cfg.Listen = []config.Listener{{Transport: "udp", Addr: "127.0.0.1:" + strconv.Itoa(freePort(t)), Side: "external"}}
	cfg.Health.Interval = 0
	cfg.Admin.Addr = "127.0.0.1:0"
	cfg.Admin.TokenFile = writeTokenFile(t, "short")
	cfg.Upstreams = []config.Upstream{{Name: "pbx", URI: "sip:127.0.0.10:5060", Priority: 1, Weight: 1}}
	st2, cleanup, err := store.OpenTemp()
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	cfg.Store.Path = st2.Dir()
	if err := demoAuth(cfg, st2.Dir()); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := start(context.Background(), cfg, st2, newLogger(cfg.Log, &syncBuffer{}))
	if err == nil {
		b.stop()
		t.Fatal("start with a 5-character token succeeded, want an error")
	}
	if !strings.Contains(err.Error(), "admin.token_file") || !strings.Contains(err.Error(), "16 characters") {
		t.Fatalf("start with a short token: %v; want an error naming admin.token_file and the 16-character minimum", err)
	}
}

// admin.pprof serves the runtime profiles behind the token; without it
// there are none.
func TestAdminPprof(t *testing.T) {
	tokenFile := writeTokenFile(t, opsToken)
	off, _ := startDemo(t, func(c *config.Config) { c.Admin.TokenFile = tokenFile })
	if code, _ := apiCall(t, off, http.MethodGet, "/debug/pprof/cmdline", opsToken, nil); code != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/cmdline with admin.pprof off: %d, want 404", code)
	}
	on, _ := startDemo(t, func(c *config.Config) { c.Admin.TokenFile = tokenFile; c.Admin.Pprof = true })
	if code, _ := apiCall(t, on, http.MethodGet, "/debug/pprof/cmdline", "", nil); code != http.StatusUnauthorized {
		t.Errorf("GET /debug/pprof/cmdline without the token: %d, want 401", code)
	}
	code, body := apiCall(t, on, http.MethodGet, "/debug/pprof/heap?debug=1", opsToken, nil)
	if code != http.StatusOK || !bytes.Contains(body, []byte("heap profile:")) {
		t.Errorf("GET /debug/pprof/heap?debug=1: %d %.100q, want 200 with a heap profile", code, body)
	}
	code, body = apiCall(t, on, http.MethodGet, "/debug/pprof/profile?seconds=1", opsToken, nil)
	// A CPU profile is gzip-compressed protobuf.
	if code != http.StatusOK || len(body) < 2 || body[0] != 0x1f || body[1] != 0x8b {
		t.Errorf("GET /debug/pprof/profile?seconds=1: %d, %d bytes, want 200 and a gzip stream", code, len(body))
	}
}

// scrape reads /metrics and parses it.
func scrape(t *testing.T, a *app, token string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := apiCall(t, a, http.MethodGet, "/metrics", token, nil)
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// metricValue is the value of the counter or gauge of family name whose
// labels include want; -1 when there is none.
func metricValue(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	return -1
}

// One authenticated call moves the call, setup, request and auth metrics,
// and every sipwall family is documented.
func TestMetricsMoveAfterCall(t *testing.T) {
	e2e.SkipIfShort(t)
	a, addr := startDemo(t)
	sp := authCall(t, "metrics-call", addr, "1000", 0)
	if r := sp.Wait(30 * time.Second); r.ExitCode != 0 || r.Count("SuccessfulCall(C)") != 1 {
		t.Fatalf("sipp exit %d, stats %v\n%s", r.ExitCode, r.Stats, sp.Messages())
	}
	fams := scrape(t, a, "")
	for _, c := range []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"sipwall_calls_total", map[string]string{"result": "answered"}, 1},
		{"sipwall_calls_total", map[string]string{"result": "started"}, 1},
		{"sipwall_server_requests_total", nil, 3},
		{"sipwall_auth_total", map[string]string{"event": "challenge"}, 1},
		{"sipwall_auth_total", map[string]string{"event": "success"}, 1},
		{"sipwall_upstream_up", map[string]string{"upstream": "demo-pbx"}, 1},
	} {
		if v := metricValue(fams, c.name, c.labels); v < c.min {
			t.Errorf("%s%v = %v, want at least %v", c.name, c.labels, v, c.min)
		}
	}
	setup := fams["sipwall_call_setup_seconds"]
	if setup == nil || len(setup.GetMetric()) != 1 || setup.GetMetric()[0].GetHistogram().GetSampleCount() < 1 {
		t.Errorf("sipwall_call_setup_seconds: %v, want a histogram with at least one sample", setup)
	} else if s := setup.GetMetric()[0].GetHistogram().GetSampleSum(); s <= 0 || s > 10 {
		t.Errorf("sipwall_call_setup_seconds sum %v, want a setup time above 0 and at most 10 s", s)
	}
	// The call's INVITE was decided by the policy (demo mode enforces it).
	pol := fams["sipwall_policy_decision_seconds"]
	if pol == nil || len(pol.GetMetric()) != 1 || pol.GetMetric()[0].GetHistogram().GetSampleCount() < 1 {
		t.Errorf("sipwall_policy_decision_seconds: %v, want a histogram with at least one decision", pol)
	} else if h := pol.GetMetric()[0].GetHistogram(); h.GetSampleSum() <= 0 || h.GetSampleSum() > 1 {
		t.Errorf("sipwall_policy_decision_seconds sum %v, want above 0 and at most 1 s", h.GetSampleSum())
	}
	if fams["go_goroutines"] == nil {
		t.Error("go_goroutines missing: want the Go runtime metrics")
	}
	// The processor controller runs in every node of this binary unless
	// GOMAXPROCS is set or the machine has one CPU (procs.Enabled).
	if procs.Read().Running {
		if v := metricValue(fams, "sipwall_procs_narrow", nil); v != 0 && v != 1 {
			t.Errorf("sipwall_procs_narrow = %v, want 0 or 1", v)
		}
		if v := metricValue(fams, "sipwall_procs_changes_total", map[string]string{"to": "one"}); v < 0 {
			t.Error("sipwall_procs_changes_total{to=one} missing while the controller runs")
		}
	}
	n := 0
	for name, f := range fams {
		if !strings.HasPrefix(name, "sipwall_") {
			continue
		}
		n++
		if strings.TrimSpace(f.GetHelp()) == "" {
			t.Errorf("metric family %s has no HELP text", name)
		}
	}
	if n < 10 {
		t.Errorf("%d sipwall_* metric families, want at least 10", n)
	}
}

// A call in progress is listed by the API and the CLI, and the CLI hangs
// it up: it leaves the table at once and the caller is released long
// before its own BYE was due.
func TestAdminCallsAndHangup(t *testing.T) {
	e2e.SkipIfShort(t)
	a, addr := startDemo(t)
	admin := a.admin.Addr()
	began := time.Now()
	sp := authCall(t, "long-call", addr, "1000", 20*time.Second)
	c := waitConfirmed(t, a, "", 10*time.Second)
	if c.User != "alice" || c.Claimed != "caller" || c.To != "1000" || c.ACallID == "" || c.BCallID == "" || c.ACallID == c.BCallID {
		t.Errorf("call %+v: want alice (claiming caller) to 1000 with two different Call-IDs", c)
	}
	id := strconv.FormatUint(c.ID, 10)

	code, out, errOut := cli("calls", "-admin", admin)
	if code != 0 {
		t.Fatalf("sipwall calls: exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") {
		t.Fatalf("sipwall calls printed %q, want a header and one call", out)
	}
	if f := strings.Fields(lines[1]); len(f) != 7 || f[0] != id || f[1] != "confirmed" || f[2] != "alice" || f[3] != "caller" || f[4] != "1000" || f[6] != c.ACallID {
		t.Fatalf("sipwall calls row %q, want id %s, confirmed, alice, caller, 1000, a-leg Call-ID %s", lines[1], id, c.ACallID)
	}

	code, out, errOut = cli("hangup", "-admin", admin, id)
	if code != 0 || !strings.Contains(out, `"hung_up": `+id) {
		t.Fatalf("sipwall hangup %s: exit %d, stdout %q, stderr %q", id, code, out, errOut)
	}
	hungUp := time.Now()
	deadline := hungUp.Add(5 * time.Second)
	for {
		var calls []b2bua.CallInfo
		apiJSON(t, a, http.MethodGet, "/api/calls", "", nil, http.StatusOK, &calls)
		if len(calls) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("call still listed 5 s after the hangup: %+v", calls)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r := sp.Wait(15 * time.Second)
	if !r.Finished {
		t.Fatal("sipp still running 15 s after the hangup; want it released by the BYE")
	}
	if d := time.Since(began); d > 15*time.Second {
		t.Fatalf("sipp ended %s after it started, want well before its 20 s pause", d)
	}
	if !strings.Contains(sp.Messages(), "BYE sip:") {
		t.Errorf("sipp's message log shows no BYE received:\n%s", sp.Messages())
	}

	// Unknown and malformed call ids.
	if code, body := apiCall(t, a, http.MethodDelete, "/api/calls/987654321", "", nil); code != http.StatusNotFound {
		t.Errorf("DELETE of an unknown call: %d %s, want 404", code, body)
	}
	if code, body := apiCall(t, a, http.MethodDelete, "/api/calls/"+id, "", nil); code != http.StatusNotFound {
		t.Errorf("DELETE of the call already hung up: %d %s, want 404", code, body)
	}
	if code, body := apiCall(t, a, http.MethodDelete, "/api/calls/x1", "", nil); code != http.StatusBadRequest {
		t.Errorf("DELETE of call id x1: %d %s, want 400", code, body)
	}
	if code, _, errOut := cli("hangup", "-admin", admin, "987654321"); code != 1 || !strings.Contains(errOut, "no such call") {
		t.Errorf("sipwall hangup of an unknown call: exit %d, stderr %q; want 1 and \"no such call\"", code, errOut)
	}

	// A call still ringing (1002 never answers) is abandoned: CANCEL to
	// the PBX and 487 Request Terminated to the caller.
	ringing := authCall(t, "ringing-call", addr, "1002", 0)
	var early b2bua.CallInfo
	deadline = time.Now().Add(10 * time.Second)
	for early.ID == 0 {
		var calls []b2bua.CallInfo
		apiJSON(t, a, http.MethodGet, "/api/calls", "", nil, http.StatusOK, &calls)
		for _, c := range calls {
			if c.State == "early" && c.To == "1002" {
				early = c
			}
		}
		if early.ID == 0 && time.Now().After(deadline) {
			t.Fatalf("no early call to 1002 in /api/calls within 10 s; last %+v", calls)
		}
		time.Sleep(50 * time.Millisecond)
	}
	apiJSON(t, a, http.MethodDelete, "/api/calls/"+strconv.FormatUint(early.ID, 10), "", nil, http.StatusOK, nil)
	r = ringing.Wait(10 * time.Second)
	if msgs := ringing.Messages(); !r.Finished || r.Count("SuccessfulCall(C)") > 0 ||
		!strings.Contains(msgs, "SIP/2.0 487 ") {
		t.Fatalf("ringing call hung up: sipp finished %v, stats %v; want it ended by a 487\n%s", r.Finished, r.Stats, msgs)
	}
	deadline = time.Now().Add(5 * time.Second)
	for a.b2b.Active() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls in the table 5 s after the ringing call was hung up: %+v", a.b2b.Active(), a.b2b.Calls())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// findBan returns the ban of prefix p in the API's list.
func findBan(t *testing.T, a *app, p string) (ban.Entry, bool) {
	t.Helper()
	var bans []ban.Entry
	apiJSON(t, a, http.MethodGet, "/api/bans", "", nil, http.StatusOK, &bans)
	for _, e := range bans {
		if e.Prefix.String() == p {
			return e, true
		}
	}
	return ban.Entry{}, false
}

// Bans through the CLI and the API: add, list, lift; an upstream cannot be
// banned; bad prefixes are 400.
func TestAdminBans(t *testing.T) {
	a, _ := startDemo(t)
	admin := a.admin.Addr()

	// Flags after the prefix, as the usage shows them.
	code, out, errOut := cli("ban", "192.0.2.77", "-admin", admin, "-for", "1h")
	if code != 0 || !strings.Contains(out, `"192.0.2.77/32"`) {
		t.Fatalf("sipwall ban 192.0.2.77 -for 1h: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = cli("bans", "-admin", admin)
	if code != 0 || !strings.Contains(out, "192.0.2.77/32") || !strings.Contains(out, "manual") || !strings.Contains(out, "sipwall ban") {
		t.Fatalf("sipwall bans: exit %d, stdout %q, stderr %q; want 192.0.2.77/32, manual, sipwall ban", code, out, errOut)
	}
	e, ok := findBan(t, a, "192.0.2.77/32")
	if !ok {
		t.Fatal("GET /api/bans lacks 192.0.2.77/32")
	}
	if d := e.Until.Sub(e.Since); d != time.Hour || e.Reason != ban.ReasonManual {
		t.Errorf("ban %+v: want reason manual for 1h, got %s", e, d)
	}
	if _, banned := a.sec.bans.Banned(netip.MustParseAddr("192.0.2.77")); !banned {
		t.Error("192.0.2.77 listed, but the ban store does not report it banned")
	}

	code, out, errOut = cli("unban", "-admin", admin, "192.0.2.77")
	if code != 0 || !strings.Contains(out, `"unbanned": "192.0.2.77/32"`) {
		t.Fatalf("sipwall unban 192.0.2.77: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, ok := findBan(t, a, "192.0.2.77/32"); ok {
		t.Fatal("192.0.2.77/32 still listed after the unban")
	}
	if code, out, _ = cli("bans", "-admin", admin); code != 0 || strings.Contains(out, "192.0.2.77") {
		t.Fatalf("sipwall bans after the unban: exit %d, %q", code, out)
	}
	if code, _, errOut = cli("unban", "-admin", admin, "192.0.2.77"); code != 1 || !strings.Contains(errOut, "404") || !strings.Contains(errOut, "no such ban") {
		t.Errorf("second unban: exit %d, stderr %q; want 1, 404, no such ban", code, errOut)
	}

	// The demo PBX is an upstream, always trusted: no ban, and it says why.
	pbx := a.targets[0].Addr.Addr().String()
	code, _, errOut = cli("ban", "-admin", admin, pbx)
	if code != 1 || !strings.Contains(errOut, "400") || !strings.Contains(errOut, "trusted") {
		t.Fatalf("sipwall ban %s (the upstream): exit %d, stderr %q; want 1 and a 400 saying it is trusted", pbx, code, errOut)
	}
	var berr map[string]string
	apiJSON(t, a, http.MethodPost, "/api/bans", "", banRequest{Prefix: pbx + "/32", Duration: "1h"}, http.StatusBadRequest, &berr)
	if !strings.Contains(berr["error"], ban.ErrTrusted.Error()) {
		t.Errorf("POST /api/bans of the upstream: error %q, want it to say %q", berr["error"], ban.ErrTrusted)
	}
	// A network covering the upstream is refused too.
	apiJSON(t, a, http.MethodPost, "/api/bans", "", banRequest{Prefix: "127.0.0.10/31"}, http.StatusBadRequest, nil)
	if _, ok := findBan(t, a, pbx+"/32"); ok {
		t.Fatal("the upstream is listed as banned")
	}

	// Bad input.
	for _, tc := range []struct {
		method, path string
		body         any
	}{
		{http.MethodPost, "/api/bans", banRequest{Prefix: "not-an-address"}},
		{http.MethodPost, "/api/bans", banRequest{Prefix: "192.0.2.0/33"}},
		{http.MethodPost, "/api/bans", banRequest{Prefix: "192.0.2.78", Duration: "-1h"}},
		{http.MethodPost, "/api/bans", map[string]string{"prefix": "192.0.2.78", "color": "red"}},
		{http.MethodDelete, "/api/bans?prefix=not-an-address", nil},
		{http.MethodDelete, "/api/bans", nil},
	} {
		if code, body := apiCall(t, a, tc.method, tc.path, "", tc.body); code != http.StatusBadRequest {
			t.Errorf("%s %s %v: %d %s, want 400", tc.method, tc.path, tc.body, code, body)
		}
	}
	if code, _, errOut = cli("ban", "-admin", admin, "999.1.2.3"); code != 1 || !strings.Contains(errOut, "400") {
		t.Errorf("sipwall ban 999.1.2.3: exit %d, stderr %q; want 1 and 400", code, errOut)
	}
	if _, ok := findBan(t, a, "192.0.2.78/32"); ok {
		t.Error("a refused ban of 192.0.2.78 is in force")
	}
}

// writeYAML marshals cfg into path.
func writeYAML(t *testing.T, path string, cfg *config.Config) string {
	t.Helper()
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lineOf is the 1-based number of the first line of text holding s.
func lineOf(text, s string) int {
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	return 0
}

// A reload puts a good configuration file in force (the prefilter's
// rates at once), names sections that need a restart, and refuses a bad
// file whole: nothing of it is applied and the error names key and line.
func TestReloadAllOrNothing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	pbx := demo.New(demo.Options{})
	if err := pbx.Start(ctx, demoPBXAddr, demoPBXAddr); err != nil {
		t.Fatal(err)
	}
	defer pbx.Close()

	base := config.Default()
	port := freePort(t)
	base.Listen = []config.Listener{{Transport: "udp", Addr: "127.0.0.1:" + strconv.Itoa(port), Side: "external"}}
	base.Upstreams = []config.Upstream{{Name: "demo-pbx", URI: "sip:" + pbx.Addr("udp").String(), Priority: 1, Weight: 1}}
	base.Health.Interval = 0
	base.Log.Level = "warn"
	base.Admin.Addr = "127.0.0.1:0"
	base.Store.Path = filepath.Join(dir, "store")
	if err := demoAuth(base, dir); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "sipwall.yaml")
	writeYAML(t, cfgPath, base)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatalf("the marshalled default configuration does not load: %v", err)
	}
	st, err := store.Open(cfg.Store.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	logs := &syncBuffer{}
	a, err := start(ctx, cfg, st, newLogger(cfg.Log, logs))
	if err != nil {
		t.Fatal(err)
	}
	defer a.stop()
	// As cmdRun does; under reloadMu so the API's reload sees it (the race
	// detector knows nothing of the HTTP request in between).
	a.reloadMu.Lock()
	a.cfgPath = cfgPath
	a.reloadMu.Unlock()
	cfgInForce := func() *config.Config {
		a.reloadMu.Lock()
		defer a.reloadMu.Unlock()
		return a.cfg
	}
	dst := udpListener(t, a)
	if n := exchangeOptions(t, loopbackSender(t, "127.0.0.31"), dst, "before reload", 3); n != 3 {
		t.Fatalf("%d of 3 OPTIONS answered with the default rates, want 3", n)
	}

	// (a) A live setting.
	next := *base
	next.Prefilter.Rates.Request = config.Rate{Rate: 1, Burst: 2}
	writeYAML(t, cfgPath, &next)
	var res reloadResult
	apiJSON(t, a, http.MethodPost, "/api/reload", "", nil, http.StatusOK, &res)
	if res.Config != "reloaded" || len(res.Restart) != 0 || res.Error != "" || res.Users != "reloaded" || !strings.HasPrefix(res.Policy, "reloaded") {
		t.Fatalf("reload of prefilter.rates.request: %+v; want config, policy and users reloaded, no restart needed", res)
	}
	good := cfgInForce()
	if good == cfg || good.Prefilter.Rates.Request != (config.Rate{Rate: 1, Burst: 2}) {
		t.Fatalf("config in force after the reload: request rate %+v, want the new file's {1 2}", good.Prefilter.Rates.Request)
	}
	if n := exchangeOptions(t, loopbackSender(t, "127.0.0.32"), dst, "after reload", 3); n != 2 {
		t.Fatalf("%d of 3 OPTIONS answered after the reload to rate 1 burst 2, want 2", n)
	}

	// (c) A bad file: verified_share out of range, plus a change that would
	// lift the limit again. Nothing of it may be applied.
	bad := next
	bad.Prefilter.Rates.Request = config.Rate{Rate: 1000, Burst: 1000}
	bad.Prefilter.VerifiedShare = 200
	bad.Log.Level = "debug"
	text := writeYAML(t, cfgPath, &bad)
	line := lineOf(text, "verified_share: 200")
	var badRes reloadResult
	apiJSON(t, a, http.MethodPost, "/api/reload", "", nil, http.StatusUnprocessableEntity, &badRes)
	wantErr := fmt.Sprintf("sipwall.yaml:%d: prefilter.verified_share", line)
	if line == 0 || !strings.Contains(badRes.Error, wantErr) || badRes.Config != "" || badRes.Policy != "" || badRes.Users != "" {
		t.Fatalf("reload of a bad file: %+v; want only an error containing %q", badRes, wantErr)
	}
	if cfgInForce() != good {
		t.Fatal("a refused reload replaced the configuration in force")
	}
	if logLevel.Level() != slog.LevelWarn {
		t.Fatalf("log level %v after a refused reload, want warn (the bad file's debug must not apply)", logLevel.Level())
	}
	if n := exchangeOptions(t, loopbackSender(t, "127.0.0.33"), dst, "after refused reload", 3); n != 2 {
		t.Fatalf("%d of 3 OPTIONS answered after a refused reload, want 2: the bad file's rates were applied", n)
	}
	if !strings.Contains(logs.String(), "reload refused") {
		t.Errorf("log lacks the refused reload:\n%s", logs.String())
	}
	// The CLI says the same, with exit 1.
	if code, _, errOut := cli("reload", "-admin", a.admin.Addr()); code != 1 || !strings.Contains(errOut, "422") || !strings.Contains(errOut, "prefilter.verified_share") {
		t.Errorf("sipwall reload of a bad file: exit %d, stderr %q", code, errOut)
	}

	// (b) A listener's port: reloaded, but named as needing a restart.
	moved := next
	moved.Listen = []config.Listener{{Transport: "udp", Addr: "127.0.0.1:" + strconv.Itoa(freePort(t)), Side: "external"}}
	writeYAML(t, cfgPath, &moved)
	code, out, errOut := cli("reload", "-admin", a.admin.Addr())
	if code != 0 {
		t.Fatalf("sipwall reload after a listener change: exit %d, stderr %q", code, errOut)
	}
	var mres reloadResult
	if err := json.Unmarshal([]byte(out), &mres); err != nil {
		t.Fatalf("sipwall reload printed %q: %v", out, err)
	}
	if mres.Config != "reloaded" || len(mres.Restart) != 1 || mres.Restart[0] != "listen" {
		t.Fatalf("reload with a new listener port: %+v, want config reloaded and restart_needed [listen]", mres)
	}
	// The listener is where it was.
	if udpListener(t, a) != dst {
		t.Fatalf("listener moved to %s on reload, want it kept at %s until a restart", udpListener(t, a), dst)
	}
}

// Draining refuses new calls with 503 and readiness turns 503, while a
// call in progress finishes normally; drain returns once it has.
func TestDrainLetsCallsFinish(t *testing.T) {
	e2e.SkipIfShort(t)
	a, addr := startDemo(t)
	first := authCall(t, "drained-call", addr, "1000", 4*time.Second)
	waitConfirmed(t, a, "", 10*time.Second)

	drained := make(chan time.Duration, 1)
	began := time.Now()
	go func() {
		a.drain(10*time.Second, slog.New(slog.DiscardHandler))
		drained <- time.Since(began)
	}()
	deadline := time.Now().Add(2 * time.Second)
	for {
		code, body := apiCall(t, a, http.MethodGet, "/readyz", "", nil)
		if code == http.StatusServiceUnavailable {
			if !strings.Contains(string(body), `"draining"`) {
				t.Errorf("/readyz while draining: %s, want reason draining", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d 2 s into the drain, want 503", code)
		}
		time.Sleep(20 * time.Millisecond)
	}

	second := authCall(t, "refused-call", addr, "1000", 0)
	r2 := second.Wait(15 * time.Second)
	if r2.ExitCode == 0 || r2.Count("SuccessfulCall(C)") > 0 {
		t.Fatalf("a new call during the drain: sipp exit %d, stats %v; want it refused", r2.ExitCode, r2.Stats)
	}
	msgs := second.Messages()
	if !strings.Contains(msgs, "SIP/2.0 503 ") || !strings.Contains(msgs, "Retry-After: 30") {
		t.Fatalf("no 503 with Retry-After to the INVITE during the drain:\n%s", msgs)
	}
	select {
	case d := <-drained:
		t.Fatalf("drain returned after %s with the first call still up", d)
	default:
	}
	if code, _ := apiCall(t, a, http.MethodGet, "/readyz", "", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d during the drain, want 503", code)
	}

	r1 := first.Wait(20 * time.Second)
	if r1.ExitCode != 0 || r1.Count("SuccessfulCall(C)") != 1 {
		t.Fatalf("the call in progress: sipp exit %d, stats %v; want it to finish normally\n%s", r1.ExitCode, r1.Stats, first.Messages())
	}
	select {
	case d := <-drained:
		if d > 8*time.Second {
			t.Errorf("drain took %s, want it to return soon after the call's BYE (4 s pause)", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("drain did not return within 5 s of the last call's end")
	}
	if n := a.b2b.Active(); n != 0 {
		t.Fatalf("%d calls in the table after the drain, want 0", n)
	}
}

// A restart on the same store keeps registrations and bans.
func TestRestartKeepsState(t *testing.T) {
	e2e.SkipIfShort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	storeDir := filepath.Join(t.TempDir(), "store")
	pbx := demo.New(demo.Options{})
	if err := pbx.Start(ctx, demoPBXAddr, demoPBXAddr); err != nil {
		t.Fatal(err)
	}
	defer pbx.Close()

	cfg := config.Default()
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cfg.Listen = []config.Listener{{Transport: "udp", Addr: addr, Side: "external"}}
	cfg.Upstreams = []config.Upstream{{Name: "demo-pbx", URI: "sip:" + pbx.Addr("udp").String(), Priority: 1, Weight: 1}}
	cfg.Health.Interval = 0
	cfg.Log.Level = "warn"
	cfg.Admin.Addr = "127.0.0.1:0"
	cfg.Store.Path = storeDir
	if err := demoAuth(cfg, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	run := func() (*app, *store.Store) {
		t.Helper()
		st, err := store.Open(storeDir)
		if err != nil {
			t.Fatal(err)
		}
		a, err := start(ctx, cfg, st, newLogger(cfg.Log, logs))
		if err != nil {
			st.Close()
			t.Fatal(err)
		}
		return a, st
	}
	aliceBindings := func(regs map[string][]registrar.Binding) []registrar.Binding {
		for aor, bs := range regs {
			if strings.HasPrefix(aor, "alice@") {
				return bs
			}
		}
		return nil
	}

	a, st := run()
	sp := e2e.Sipp{Name: "register", Scenario: "uac_register_auth.xml", IP: "127.0.0.2", Remote: addr, Transport: e2e.Transports[0],
		Service: "alice", AuthUser: "alice", AuthPass: "demo", Timeout: 20 * time.Second}.Start(t)
	if r := sp.Wait(30 * time.Second); r.ExitCode != 0 || r.Count("SuccessfulCall(C)") != 1 {
		a.stop()
		st.Close()
		t.Fatalf("register: sipp exit %d, stats %v\n%s", r.ExitCode, r.Stats, sp.Messages())
	}
	before := aliceBindings(a.reg.All(0))
	apiJSON(t, a, http.MethodPost, "/api/bans", "", banRequest{Prefix: "192.0.2.99", Duration: "2h", Evidence: "restart test"}, http.StatusOK, nil)
	a.stop()
	if err := st.Close(); err != nil {
		t.Fatalf("close the store: %v", err)
	}
	if len(before) != 1 {
		t.Fatalf("alice's bindings before the restart: %+v, want one", before)
	}

	a, st = run()
	defer func() {
		a.stop()
		st.Close()
	}()
	var regs map[string][]registrar.Binding
	apiJSON(t, a, http.MethodGet, "/api/registrations", "", nil, http.StatusOK, &regs)
	after := aliceBindings(regs)
	if len(after) != 1 || after[0].Contact != before[0].Contact || after[0].Token != before[0].Token {
		t.Fatalf("alice's bindings after the restart: %+v, want %+v", after, before)
	}
	if bs := aliceBindings(a.reg.All(0)); len(bs) != 1 {
		t.Fatalf("registrar after the restart: %+v, want alice's binding", a.reg.All(0))
	}
	e, ok := findBan(t, a, "192.0.2.99/32")
	if !ok || e.Evidence != "restart test" {
		t.Fatalf("ban of 192.0.2.99 after the restart: %+v (found %v), want it kept", e, ok)
	}
	if _, banned := a.sec.bans.Banned(netip.MustParseAddr("192.0.2.99")); !banned {
		t.Fatal("192.0.2.99 listed but not banned after the restart")
	}
	var st2 map[string]any
	apiJSON(t, a, http.MethodGet, "/api/status", "", nil, http.StatusOK, &st2)
	if regs, _ := st2["registrations"].(map[string]any); regs["bindings"] != float64(1) {
		t.Errorf("/api/status registrations %v after the restart, want 1 binding", st2["registrations"])
	}
}

// With hep.addr every SIP message on the listeners, both legs, reaches the
// collector as HEP v3.
func TestHEPExport(t *testing.T) {
	e2e.SkipIfShort(t)
	col, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer col.Close()
	a, addr := startDemo(t, func(c *config.Config) {
		c.HEP.Addr = col.LocalAddr().String()
		c.HEP.AgentID = 4242
	})
	sbcAddr := udpListener(t, a)
	pbxAddr := a.targets[0].Addr
	sp := authCall(t, "hep-call", addr, "1000", 0)
	if r := sp.Wait(30 * time.Second); r.ExitCode != 0 || r.Count("SuccessfulCall(C)") != 1 {
		t.Fatalf("sipp exit %d, stats %v\n%s", r.ExitCode, r.Stats, sp.Messages())
	}
	caller := netip.MustParseAddrPort(sp.Addr())

	type seen struct{ inviteIn, inviteOut, okFromPBX, okToCaller, byeIn bool }
	var s seen
	var got []string
	buf := make([]byte, 65536)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && !(s.inviteIn && s.inviteOut && s.okFromPBX && s.okToCaller && s.byeIn && len(got) >= 8) {
		col.SetReadDeadline(deadline)
		n, _, err := col.ReadFromUDP(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		d, err := hep.Decode(buf[:n])
		if err != nil {
			t.Fatalf("packet %d is not HEP v3: %v", len(got)+1, err)
		}
		if d.AgentID != 4242 || d.ProtoType != hep.ProtoSIP || d.Transport != "udp" {
			t.Errorf("packet %d: agent %d, proto %d, transport %q; want 4242, SIP, udp", len(got)+1, d.AgentID, d.ProtoType, d.Transport)
		}
		first, _, _ := strings.Cut(string(d.Payload), "\r\n")
		got = append(got, fmt.Sprintf("%s -> %s %s", d.Src, d.Dst, first))
		switch {
		case strings.HasPrefix(first, "INVITE ") && d.Src == caller && d.Dst == sbcAddr:
			s.inviteIn = true
		case strings.HasPrefix(first, "INVITE ") && d.Dst == pbxAddr && d.Src.Addr() == sbcAddr.Addr():
			s.inviteOut = true
		case strings.HasPrefix(first, "SIP/2.0 200 ") && d.Src == pbxAddr && d.Dst.Addr() == sbcAddr.Addr():
			s.okFromPBX = true
		case strings.HasPrefix(first, "SIP/2.0 200 ") && d.Src == sbcAddr && d.Dst == caller:
			s.okToCaller = true
		case strings.HasPrefix(first, "BYE ") && d.Src == caller && d.Dst == sbcAddr:
			s.byeIn = true
		}
	}
	if !(s.inviteIn && s.inviteOut && s.okFromPBX && s.okToCaller && s.byeIn) || len(got) < 8 {
		t.Fatalf("collector got %d messages, found %+v (caller %s, sipwall %s, PBX %s); want INVITE in and out, 200 from the PBX and to the caller, the BYE, 8 or more:\n%s",
			len(got), s, caller, sbcAddr, pbxAddr, strings.Join(got, "\n"))
	}
	fams := scrape(t, a, "")
	if v := metricValue(fams, "sipwall_hep_messages_total", map[string]string{"result": "sent"}); v < 8 {
		t.Errorf("sipwall_hep_messages_total{result=sent} = %v, want at least 8", v)
	}
}
