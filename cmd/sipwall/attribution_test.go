package main

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc/config"
	"github.com/sipwall/sipwall/sbc/decision"
	"github.com/sipwall/sipwall/sbc/e2e"
	"github.com/sipwall/sipwall/sbc/registrar"
)

// A caller authenticated as alice whose From says "caller" (sipp's
// uac_auth_call.xml writes From: caller whatever -au says) is alice in
// every record: /api/calls, the CLI, the console's calls page, the
// decision log and the call log line; "caller" shows only as claimed.
// Registrations name who authenticated the REGISTER: alice for her own,
// trusted:office for one from a trusted peer that nobody challenged.
func TestAttributionIsTheAuthenticatedIdentity(t *testing.T) {
	e2e.SkipIfShort(t)
	e2e.RequireSipp(t)
	tokenFile := writeTokenFile(t, opsToken)
	a, addr, logs := startDemoLogs(t, func(c *config.Config) {
		c.Admin.TokenFile = tokenFile
		c.Admin.Console = true
		c.Log.Level = "info" // the call log line is at info
		c.Log.Calls = true
		c.Auth.Trusted = []config.Trusted{{Name: "office", CIDRs: []string{"127.0.0.3/32"}}}
	})
	admin := a.admin.Addr()

	sp := authCall(t, "alice-as-caller", addr, "1000", 30*time.Second)
	c := waitConfirmed(t, a, opsToken, 10*time.Second)

	// The API, raw: user and claimed, and no field that names the From
	// user as if it were the caller.
	_, raw := apiCall(t, a, http.MethodGet, "/api/calls", opsToken, nil)
	var calls []map[string]any
	if err := json.Unmarshal(raw, &calls); err != nil || len(calls) != 1 {
		t.Fatalf("/api/calls: %v\n%s", err, raw)
	}
	if calls[0]["user"] != "alice" || calls[0]["claimed"] != "caller" || calls[0]["from"] != nil {
		t.Errorf("/api/calls: %s\nwant user alice, claimed caller, no from", raw)
	}
	if md, ok := calls[0]["media"].(map[string]any); !ok || md["outside"] != "plain" || md["packets_in"] == nil {
		t.Errorf("/api/calls: %s\nwant the call's media (counters, encryption)", raw)
	}

	code, out, errOut := cli("calls", "-admin", admin, "-token-file", tokenFile)
	if code != 0 || !regexp.MustCompile(`(?m)^`+strconv.FormatUint(c.ID, 10)+` +confirmed +alice +caller +1000 `).MatchString(out) ||
		!strings.Contains(out, "USER") || !strings.Contains(out, "CLAIMED") {
		t.Errorf("sipwall calls: exit %d\n%s%s\nwant the call as alice, claimed caller", code, out, errOut)
	}

	cc := newConsoleClient(t, a)
	cc.login(opsToken)
	_, page := cc.get("/console/calls")
	if !strings.Contains(page, `<td class="user">alice</td><td class="claimed">caller</td>`) || !strings.Contains(page, "Claimed (From)") {
		t.Errorf("calls page does not show alice with caller as claimed:\n%s", page)
	}

	// The INVITE let through is alice's in the decision log.
	var entries []decision.Entry
	apiJSON(t, a, http.MethodGet, "/api/why?q=alice", opsToken, nil, http.StatusOK, &entries)
	found := false
	for _, e := range entries {
		found = found || (e.Method == "INVITE" && e.User == "alice" && e.To == "1000")
	}
	if !found {
		t.Errorf("decision log has no INVITE by alice to 1000: %+v", entries)
	}
	apiJSON(t, a, http.MethodGet, "/api/why?limit=1000", opsToken, nil, http.StatusOK, &entries)
	for _, e := range entries {
		if e.User == "caller" {
			t.Errorf("decision log names the From user as the user: %+v", e)
		}
	}

	// No metric carries a user, authenticated or claimed.
	res, err := opsHTTP.Do(mustRequest(t, "http://"+admin+"/metrics", opsToken))
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if s := string(metrics); strings.Contains(s, `"alice"`) || strings.Contains(s, `"caller"`) {
		t.Error("a metric label names a user")
	}

	// Hang up (the log line comes when the call ends).
	apiJSON(t, a, http.MethodDelete, "/api/calls/"+strconv.FormatUint(c.ID, 10), opsToken, nil, http.StatusOK, nil)
	sp.Wait(15 * time.Second)
	line := ""
	for deadline := time.Now().Add(5 * time.Second); line == "" && time.Now().Before(deadline); {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, `msg="call ended"`) {
				line = l
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(line, " user=alice claimed=caller destination=1000 ") || !strings.Contains(line, " reason=admin") {
		t.Errorf("call log line %q, want user=alice claimed=caller destination=1000 ... reason=admin", line)
	}
	// The relay's account of the call's media: counters, and plain RTP on
	// both sides (a plain offer, the default encryption).
	if !regexp.MustCompile(` media_pkts_in=\d+ media_pkts_out=\d+ .* media_outside=plain media_inside=plain`).MatchString(line) {
		t.Errorf("call log line %q lacks the media counters and encryption", line)
	}

	// Registrations: alice's own, and bob's from the trusted peer.
	reg := e2e.Sipp{Name: "alice-phone", Scenario: "uac_register_auth.xml", IP: "127.0.0.2", Remote: addr, Transport: e2e.Transports[0],
		Service: "alice", AuthUser: "alice", AuthPass: "demo", Timeout: 15 * time.Second}.Start(t)
	if r := reg.Wait(20 * time.Second); r.ExitCode != 0 {
		t.Fatalf("alice's REGISTER failed (exit %d)\n%s", r.ExitCode, reg.Messages())
	}
	office := e2e.Sipp{Name: "office-phone", Scenario: "uac_register.xml", IP: "127.0.0.3", Remote: addr, Transport: e2e.Transports[0],
		Service: "bob", Timeout: 15 * time.Second}.Start(t)
	if r := office.Wait(20 * time.Second); r.ExitCode != 0 {
		t.Fatalf("the trusted peer's REGISTER failed (exit %d)\n%s", r.ExitCode, office.Messages())
	}
	var regs map[string][]registrar.Binding
	apiJSON(t, a, http.MethodGet, "/api/registrations", opsToken, nil, http.StatusOK, &regs)
	for aor, want := range map[string]string{"alice@127.0.0.1": "alice", "bob@127.0.0.1": "trusted:office"} {
		if bs := regs[aor]; len(bs) != 1 || bs[0].RegisteredBy != want {
			t.Errorf("/api/registrations %s: %+v, want one binding registered by %s", aor, bs, want)
		}
	}
	_, raw = apiCall(t, a, http.MethodGet, "/api/registrations", opsToken, nil)
	if !strings.Contains(string(raw), `"registered_by": "trusted:office"`) {
		t.Errorf("/api/registrations lacks registered_by:\n%s", raw)
	}
	code, out, errOut = cli("registrations", "-admin", admin, "-token-file", tokenFile)
	if code != 0 || !regexp.MustCompile(`(?m)^alice@127\.0\.0\.1 +alice +sip:`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^bob@127\.0\.0\.1 +trusted:office +sip:`).MatchString(out) {
		t.Errorf("sipwall registrations: exit %d\n%s%s", code, out, errOut)
	}
	_, page = cc.get("/console/registrations")
	if !strings.Contains(page, `<td>alice@127.0.0.1</td><td class="user">alice</td>`) ||
		!strings.Contains(page, `<td>bob@127.0.0.1</td><td class="user">trusted:office</td>`) {
		t.Errorf("registrations page does not name who registered:\n%s", page)
	}
}

func mustRequest(t *testing.T, url, token string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return req
}
