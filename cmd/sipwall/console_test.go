package main

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc/ban"
	"github.com/sipwall/sipwall/sbc/config"
	"github.com/sipwall/sipwall/sbc/decision"
	"github.com/sipwall/sipwall/sbc/e2e"
)

// consoleClient is a browser stand-in: a cookie jar, redirects not
// followed (the tests look at them), and the console's address.
type consoleClient struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newConsoleClient(t *testing.T, a *app) *consoleClient {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &consoleClient{t: t, base: "http://" + a.admin.Addr(), c: &http.Client{
		Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// do sends a request; hdr are header name/value pairs.
func (cc *consoleClient) do(method, path string, form url.Values, hdr ...string) (*http.Response, string) {
	cc.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, cc.base+path, body)
	if err != nil {
		cc.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := cc.c.Do(req)
	if err != nil {
		cc.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		cc.t.Fatal(err)
	}
	return res, string(b)
}

func (cc *consoleClient) get(path string) (*http.Response, string) {
	cc.t.Helper()
	return cc.do(http.MethodGet, path, nil)
}

// post sends a form as a same-origin browser would (Sec-Fetch-Site).
func (cc *consoleClient) post(path string, form url.Values) (*http.Response, string) {
	cc.t.Helper()
	return cc.do(http.MethodPost, path, form, "Sec-Fetch-Site", "same-origin", "Origin", cc.base)
}

// login logs in with token and returns the CSRF token of the session.
func (cc *consoleClient) login(token string) string {
	cc.t.Helper()
	res, body := cc.post("/console/login", url.Values{"token": {token}})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/console/overview" {
		cc.t.Fatalf("login: %d to %q, want 303 to /console/overview; %s", res.StatusCode, res.Header.Get("Location"), body)
	}
	_, page := cc.get("/console/overview")
	return csrfOf(cc.t, page)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", page)
	}
	return m[1]
}

// startConsole starts the demo app with the console on.
func startConsole(t *testing.T, adjust ...func(*config.Config)) *app {
	t.Helper()
	a, _ := startConsoleAddr(t, adjust...)
	return a
}

// startConsoleAddr is startConsole that also returns the SIP address.
func startConsoleAddr(t *testing.T, adjust ...func(*config.Config)) (*app, string) {
	t.Helper()
	tokenFile := writeTokenFile(t, opsToken)
	return startDemo(t, append([]func(*config.Config){func(c *config.Config) {
		c.Admin.TokenFile = tokenFile
		c.Admin.Console = true
	}}, adjust...)...)
}

// Off by default: no console route exists, the API is unchanged.
func TestConsoleOffByDefault(t *testing.T) {
	tokenFile := writeTokenFile(t, opsToken)
	a, _ := startDemo(t, func(c *config.Config) { c.Admin.TokenFile = tokenFile })
	cc := newConsoleClient(t, a)
	for _, p := range []string{"/console/", "/console/login", "/console/overview", "/console/static/console.js"} {
		if res, _ := cc.get(p); res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s with the console off: %d, want 404", p, res.StatusCode)
		}
	}
}

// The console needs a token: without admin.token_file it does not start.
func TestConsoleNeedsToken(t *testing.T) {
	cfg := config.Default()
	cfg.Admin.Console = true
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "admin.console") {
		t.Fatalf("console without a token: %v, want an error naming admin.console", err)
	}
}

func TestConsoleLogin(t *testing.T) {
	a := startConsole(t)
	cc := newConsoleClient(t, a)

	res, body := cc.get("/console/login")
	if res.StatusCode != http.StatusOK || !strings.Contains(body, `name="token"`) {
		t.Fatalf("login page: %d\n%s", res.StatusCode, body)
	}
	for h, want := range map[string]string{
		"Content-Security-Policy": "default-src 'none'; script-src 'self'",
		"X-Frame-Options":         "DENY",
		"X-Content-Type-Options":  "nosniff",
		"Cache-Control":           "no-store",
	} {
		if !strings.Contains(res.Header.Get(h), want) {
			t.Errorf("header %s: %q, want %q in it", h, res.Header.Get(h), want)
		}
	}

	// A wrong token goes back to the login page with an error, no cookie.
	res, _ = cc.post("/console/login", url.Values{"token": {"not-the-token-at-all"}})
	if res.StatusCode != http.StatusSeeOther || !strings.Contains(res.Header.Get("Location"), "err=wrong+token") {
		t.Fatalf("wrong token: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	if len(res.Cookies()) != 0 {
		t.Fatalf("wrong token set cookies: %v", res.Cookies())
	}
	if res, _ := cc.get("/console/overview"); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("overview after a failed login: %d, want 303 to the login", res.StatusCode)
	}

	// The right token: a session cookie only scripts cannot read and only
	// same-site requests carry; next= is followed for console pages only.
	res, _ = cc.post("/console/login", url.Values{"token": {opsToken}, "next": {"/console/bans"}})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/console/bans" {
		t.Fatalf("login: %d to %q, want 303 to /console/bans", res.StatusCode, res.Header.Get("Location"))
	}
	var ck *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == sessionCookie {
			ck = c
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/console/" || len(ck.Value) < 40 {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/console/, a long random value", ck)
	}
	for _, next := range []string{"//evil.example/", "https://evil.example/console/overview", "/console/../metrics", "/api/bans"} {
		res, _ := cc.post("/console/login", url.Values{"token": {opsToken}, "next": {next}})
		if loc := res.Header.Get("Location"); loc != "/console/overview" {
			t.Errorf("next=%q redirected to %q, want /console/overview", next, loc)
		}
	}
	if res, _ := cc.get("/console/login"); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("login page while logged in: %d, want 303 to the overview", res.StatusCode)
	}

	// A login posted from another site is refused before the token is
	// looked at (login CSRF).
	other := newConsoleClient(t, a)
	res, _ = other.do(http.MethodPost, "/console/login", url.Values{"token": {opsToken}}, "Sec-Fetch-Site", "cross-site")
	if res.StatusCode != http.StatusForbidden || len(res.Cookies()) != 0 {
		t.Fatalf("cross-site login: %d, cookies %v; want 403 and none", res.StatusCode, res.Cookies())
	}
}

// Five wrong tokens from one address lock that address out of the login
// for a while, even with the right token; the API shares the count.
func TestConsoleLoginRateLimit(t *testing.T) {
	a := startConsole(t)
	cc := newConsoleClient(t, a)
	for i := range guardFailures {
		if res, _ := cc.post("/console/login", url.Values{"token": {"wrong-token-number-" + strconv.Itoa(i)}}); res.StatusCode != http.StatusSeeOther {
			t.Fatalf("failure %d: %d, want 303", i+1, res.StatusCode)
		}
	}
	res, body := cc.post("/console/login", url.Values{"token": {opsToken}})
	if res.StatusCode != http.StatusTooManyRequests || len(res.Cookies()) != 0 || !strings.Contains(body, "too many wrong tokens") ||
		!strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("after %d failures the right token: %d %q, want 429, an explanation and no session", guardFailures, res.StatusCode, res.Header.Get("Content-Type"))
	}
	if code, _ := apiCall(t, a, http.MethodGet, "/api/status", opsToken, nil); code != http.StatusTooManyRequests {
		t.Fatalf("the API from the locked-out address: %d, want 429", code)
	}
	// The lockout ends with its window.
	g := a.admin.guard
	g.mu.Lock()
	for _, r := range g.sources {
		r.first = r.first.Add(-guardWindow)
	}
	g.mu.Unlock()
	cc.login(opsToken)
}

var consoleGets = []string{"/console/overview", "/console/calls", "/console/registrations", "/console/bans",
	"/console/why", "/console/why?q=127.0.0.1", "/console/status"}

// Every page and every action wants a session; a fragment request (the
// page's own refresh) gets 401 instead of a redirect so its script can
// send the user to the login page.
func TestConsoleNeedsSession(t *testing.T) {
	a := startConsole(t)
	cc := newConsoleClient(t, a)
	for _, p := range consoleGets {
		res, _ := cc.get(p)
		if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/console/login?next=") {
			t.Errorf("GET %s without a session: %d to %q", p, res.StatusCode, res.Header.Get("Location"))
		}
		sep := "?"
		if strings.Contains(p, "?") {
			sep = "&"
		}
		if res, _ := cc.get(p + sep + "fragment=1"); res.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s fragment without a session: %d, want 401", p, res.StatusCode)
		}
	}
	for _, p := range []string{"/console/logout", "/console/calls/1/hangup", "/console/bans", "/console/bans/unban", "/console/blocks/unblock"} {
		if res, _ := cc.post(p, url.Values{"csrf": {"x"}, "prefix": {"192.0.2.1"}}); res.StatusCode != http.StatusUnauthorized {
			t.Errorf("POST %s without a session: %d, want 401", p, res.StatusCode)
		}
	}
	// A made-up session cookie is no session.
	u, _ := url.Parse(cc.base + "/console/")
	cc.c.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: "forged-session-value-forged-session-value"}})
	if res, _ := cc.get("/console/overview"); res.StatusCode != http.StatusSeeOther {
		t.Errorf("forged session: %d, want 303 to the login", res.StatusCode)
	}
	if _, ok := bannedNow(a, "192.0.2.1"); ok {
		t.Fatal("a POST without a session banned an address")
	}
}

// Each page renders with a session, whole or as the fragment the refresh
// asks for, and the static files are served from the binary.
func TestConsolePages(t *testing.T) {
	a := startConsole(t)
	cc := newConsoleClient(t, a)
	cc.login(opsToken)
	want := map[string]string{
		"/console/overview":        "Calls in progress",
		"/console/calls":           "No calls in progress.",
		"/console/registrations":   "No phone is registered.",
		"/console/bans":            "No address is banned.",
		"/console/why":             "Address, network, user or number",
		"/console/why?q=127.0.0.1": "Decisions about",
		"/console/status":          "Policy (OPA)",
	}
	for _, p := range consoleGets {
		res, body := cc.get(p)
		if res.StatusCode != http.StatusOK || !strings.Contains(body, want[p]) || !strings.Contains(body, "<html") {
			t.Errorf("GET %s: %d, want 200 with %q in a whole page:\n%.400s", p, res.StatusCode, want[p], body)
		}
		sep := "?"
		if strings.Contains(p, "?") {
			sep = "&"
		}
		res, body = cc.get(p + sep + "fragment=1")
		if res.StatusCode != http.StatusOK || !strings.Contains(body, want[p]) || strings.Contains(body, "<html") {
			t.Errorf("GET %s fragment: %d, want the main part only:\n%.400s", p, res.StatusCode, body)
		}
	}
	if res, _ := cc.get("/console/"); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/console/overview" {
		t.Errorf("GET /console/: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	for p, ct := range map[string]string{"/console/static/console.css": "text/css", "/console/static/console.js": "text/javascript"} {
		res, body := cc.get(p)
		if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), ct) || len(body) < 100 {
			t.Errorf("GET %s: %d %q (%d bytes)", p, res.StatusCode, res.Header.Get("Content-Type"), len(body))
		}
	}
	// The overview shows the demo PBX's health and the prefilter.
	_, body := cc.get("/console/overview")
	for _, s := range []string{"demo-pbx", "Mode <strong>userspace</strong>", "No TLS certificate in use"} {
		if !strings.Contains(body, s) {
			t.Errorf("overview lacks %q", s)
		}
	}
}

// Nothing in the console comes from elsewhere: no URL with a scheme or
// a protocol-relative one in any embedded file, no inline script or style
// (the Content-Security-Policy would block them anyway).
func TestConsoleAssetsAreSelfContained(t *testing.T) {
	bad := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|<script>|\sstyle=|\son[a-z]+=`)
	err := fs.WalkDir(consoleFiles, "console", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := consoleFiles.ReadFile(p)
		if err != nil {
			return err
		}
		if m := bad.Find(b); m != nil {
			t.Errorf("%s holds %q: the console must not load or inline anything", p, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// State-changing requests need the session's CSRF token and must come
// from the console's own origin.
func TestConsoleCSRF(t *testing.T) {
	a := startConsole(t)
	cc := newConsoleClient(t, a)
	csrf := cc.login(opsToken)
	ban := func(tok string, hdr ...string) int {
		res, _ := cc.do(http.MethodPost, "/console/bans", url.Values{"csrf": {tok}, "prefix": {"192.0.2.9"}, "duration": {"1h"}}, hdr...)
		return res.StatusCode
	}
	same := []string{"Sec-Fetch-Site", "same-origin", "Origin", cc.base}
	for _, tc := range []struct {
		name string
		code int
	}{
		{"no token", ban("", same...)},
		{"wrong token", ban("0123456789abcdef0123456789abcdef", same...)},
		{"cross-site", ban(csrf, "Sec-Fetch-Site", "cross-site")},
		{"other origin", ban(csrf, "Origin", "http://evil.example")},
	} {
		if tc.code != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", tc.name, tc.code)
		}
	}
	if _, ok := bannedNow(a, "192.0.2.9"); ok {
		t.Fatal("a refused POST banned the address")
	}
	// A GET changes nothing even with every token.
	if res, _ := cc.get("/console/bans/unban?prefix=192.0.2.9&csrf=" + csrf); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET on an action: %d, want 405", res.StatusCode)
	}
	if code := ban(csrf, same...); code != http.StatusSeeOther {
		t.Fatalf("same-origin POST with the token: %d, want 303", code)
	}
	if _, ok := bannedNow(a, "192.0.2.9"); !ok {
		t.Fatal("the good POST did not ban")
	}
	// Another session's token is not this one's.
	other := newConsoleClient(t, a)
	otherCSRF := other.login(opsToken)
	if otherCSRF == csrf {
		t.Fatal("two sessions share a CSRF token")
	}
	if code := ban(otherCSRF, same...); code != http.StatusForbidden {
		t.Errorf("another session's CSRF token: %d, want 403", code)
	}
}

// Ban, unban, logout through the forms; messages come back on the page.
func TestConsoleBanUnbanLogout(t *testing.T) {
	a := startConsole(t)
	cc := newConsoleClient(t, a)
	csrf := cc.login(opsToken)

	res, _ := cc.post("/console/bans", url.Values{"csrf": {csrf}, "back": {"/console/bans"}, "prefix": {"198.51.100.0/24"},
		"duration": {"30m"}, "evidence": {"seen scanning <script>"}})
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/console/bans?msg=banned+198.51.100.0%2F24") {
		t.Fatalf("ban: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	e, ok := bannedNow(a, "198.51.100.0/24")
	if !ok || e.Reason != ban.ReasonManual || time.Until(e.Until) > 31*time.Minute || time.Until(e.Until) < 29*time.Minute {
		t.Fatalf("ban in force: %+v %v", e, ok)
	}
	_, page := cc.get(res.Header.Get("Location"))
	if !strings.Contains(page, "✓ banned 198.51.100.0/24") || !strings.Contains(page, "seen scanning &lt;script&gt;") || strings.Contains(page, "seen scanning <script>") {
		t.Fatalf("bans page after the ban:\n%s", page)
	}
	// The decision log has it, found by an address inside the network.
	if got := a.decisions.Search(decision.Query{Text: "198.51.100.77"}); len(got) == 0 || got[0].Verdict != "banned" {
		t.Fatalf("why 198.51.100.77: %+v", got)
	}

	for _, bad := range []url.Values{{"prefix": {"not-an-address"}}, {"prefix": {"192.0.2.1"}, "duration": {"-5m"}}, {"prefix": {"0.0.0.0/0"}}} {
		bad.Set("csrf", csrf)
		res, _ := cc.post("/console/bans", bad)
		if res.StatusCode != http.StatusSeeOther || !strings.Contains(res.Header.Get("Location"), "err=") {
			t.Errorf("bad ban %v: %d to %q, want an error message", bad, res.StatusCode, res.Header.Get("Location"))
		}
	}

	res, _ = cc.post("/console/bans/unban", url.Values{"csrf": {csrf}, "prefix": {"198.51.100.0/24"}})
	if res.StatusCode != http.StatusSeeOther || !strings.Contains(res.Header.Get("Location"), "msg=unbanned") {
		t.Fatalf("unban: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	if _, ok := bannedNow(a, "198.51.100.0/24"); ok {
		t.Fatal("still banned after the unban")
	}
	res, _ = cc.post("/console/bans/unban", url.Values{"csrf": {csrf}, "prefix": {"198.51.100.0/24"}})
	if !strings.Contains(res.Header.Get("Location"), "err=") {
		t.Errorf("unban of nothing: %q, want an error message", res.Header.Get("Location"))
	}
	// back= only goes to console pages.
	res, _ = cc.post("/console/bans/unban", url.Values{"csrf": {csrf}, "prefix": {"198.51.100.0/24"}, "back": {"https://evil.example/"}})
	if !strings.HasPrefix(res.Header.Get("Location"), "/console/bans?") {
		t.Errorf("back to another site: %q", res.Header.Get("Location"))
	}

	res, _ = cc.post("/console/logout", url.Values{"csrf": {csrf}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", res.StatusCode)
	}
	if res, _ := cc.get("/console/bans"); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("after logout: %d, want 303 to the login", res.StatusCode)
	}
}

// A call in progress shows up with a hang-up button that ends it.
func TestConsoleCallsAndHangup(t *testing.T) {
	e2e.RequireSipp(t)
	a, addr := startConsoleAddr(t)
	cc := newConsoleClient(t, a)
	csrf := cc.login(opsToken)
	p := authCall(t, "caller", addr, "1000", 30*time.Second)
	call := waitConfirmed(t, a, opsToken, 10*time.Second)
	_, page := cc.get("/console/calls")
	if !strings.Contains(page, call.ACallID) || !strings.Contains(page, "/console/calls/") {
		t.Fatalf("calls page lacks the call %s:\n%s", call.ACallID, page)
	}
	res, _ := cc.post("/console/calls/"+strconv.FormatUint(call.ID, 10)+"/hangup", url.Values{"csrf": {csrf}, "back": {"/console/calls"}})
	if res.StatusCode != http.StatusSeeOther || !strings.Contains(res.Header.Get("Location"), "msg=call") {
		t.Fatalf("hang up: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.b2b.Active() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := a.b2b.Active(); n != 0 {
		t.Fatalf("%d calls left after the hang-up", n)
	}
	p.Wait(15 * time.Second) // sipp sees the BYE and ends (its exit status is not the point here)
	res, _ = cc.post("/console/calls/"+strconv.FormatUint(call.ID, 10)+"/hangup", url.Values{"csrf": {csrf}})
	if !strings.Contains(res.Header.Get("Location"), "err=") {
		t.Errorf("hang up of an ended call: %q, want an error message", res.Header.Get("Location"))
	}
	if res, _ := cc.post("/console/calls/abc/hangup", url.Values{"csrf": {csrf}}); res.StatusCode != http.StatusBadRequest {
		t.Errorf("hang up of call abc: %d, want 400", res.StatusCode)
	}
}

// The API and the CLI answer the same "why" question.
func TestWhyAPIAndCLI(t *testing.T) {
	a := startConsole(t)
	a.decisions.Add(decision.Entry{Layer: "policy", Verdict: "rejected", Status: 403, Why: "rule premium", Method: "INVITE",
		User: "mallory", To: "+44900123"})
	var got []decision.Entry
	apiJSON(t, a, http.MethodGet, "/api/why?q=mallory", opsToken, nil, http.StatusOK, &got)
	if len(got) != 1 || got[0].Why != "rule premium" || got[0].Count != 1 {
		t.Fatalf("/api/why?q=mallory: %+v", got)
	}
	if code, _ := apiCall(t, a, http.MethodGet, "/api/why?q=mallory", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("/api/why without the token: %d", code)
	}
	if code, _ := apiCall(t, a, http.MethodGet, "/api/why?limit=0", opsToken, nil); code != http.StatusBadRequest {
		t.Fatalf("/api/why?limit=0: %d", code)
	}
	tokenFile := filepath.Join(t.TempDir(), "t")
	if err := os.WriteFile(tokenFile, []byte(opsToken), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := cli("why", "900123", "-admin", a.admin.Addr(), "-token-file", tokenFile)
	if code != 0 || !strings.Contains(out, "rule premium") || !strings.Contains(out, "mallory") {
		t.Fatalf("sipwall why: %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = cli("why", "nobody-at-all", "-admin", a.admin.Addr(), "-token-file", tokenFile)
	if code != 0 || !strings.Contains(out, "no decision") {
		t.Fatalf("sipwall why nobody: %d\n%s", code, out)
	}
	var raw json.RawMessage
	apiJSON(t, a, http.MethodGet, "/api/why", opsToken, nil, http.StatusOK, &raw)
}

// Sessions are bounded: logging in again and again does not grow memory.
func TestConsoleSessionsBounded(t *testing.T) {
	a := startConsole(t)
	for range maxSessions + 10 {
		newConsoleClient(t, a).login(opsToken)
	}
	a.admin.console.mu.Lock()
	n := len(a.admin.console.sessions)
	a.admin.console.mu.Unlock()
	if n > maxSessions {
		t.Fatalf("%d sessions held, want at most %d", n, maxSessions)
	}
}

// bannedNow finds the ban of exactly p (an address or network) in force.
func bannedNow(a *app, p string) (ban.Entry, bool) {
	for _, e := range a.sec.bans.Bans() {
		if e.Prefix.String() == p || (e.Prefix.IsSingleIP() && e.Prefix.Addr().String() == p) {
			return e, true
		}
	}
	return ban.Entry{}, false
}

// The overview shows the served certificate's expiry, the registrations
// page a phone registered with sipp, and the status page the policy's
// loaded version, its shadow hits and the last reload errors.
func TestConsoleRegistrationsCertificateAndStatus(t *testing.T) {
	e2e.SkipIfShort(t)
	e2e.RequireSipp(t)
	p := newPKI(t)
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(consoleRules), 0o600); err != nil {
		t.Fatal(err)
	}
	adjust, _, _ := withTLS(t, p, func(c *config.Config) { c.Rules.File = rulesFile })
	a, addr := startConsoleAddr(t, adjust)
	cc := newConsoleClient(t, a)
	cc.login(opsToken)

	_, page := cc.get("/console/overview")
	days := strconv.Itoa(int(time.Until(a.certs.Stats().NotAfter).Hours() / 24))
	if !strings.Contains(page, "Expires "+stamp(a.certs.Stats().NotAfter)) || !strings.Contains(page, days+" days") {
		t.Errorf("overview lacks the certificate's expiry (%s, %s days):\n%s", stamp(a.certs.Stats().NotAfter), days, page)
	}

	reg := e2e.Sipp{Name: "phone", Scenario: "uac_register_auth.xml", IP: "127.0.0.2", Remote: addr, Transport: e2e.Transports[0],
		Service: "alice", AuthUser: "alice", AuthPass: "demo", Timeout: 15 * time.Second}.Start(t)
	if r := reg.Wait(20 * time.Second); r.ExitCode != 0 {
		t.Fatalf("sipp REGISTER failed (exit %d)", r.ExitCode)
	}
	_, page = cc.get("/console/registrations")
	if !strings.Contains(page, "alice") || !strings.Contains(page, "127.0.0.2:") || !strings.Contains(page, "(1 addresses of record)") {
		t.Errorf("registrations page lacks alice's binding from 127.0.0.2:\n%s", page)
	}

	a.rulesReloaded(errors.New("rules.yaml:3: rule_sets[0].name: required"))
	a.reload(a.admin.log)
	_, page = cc.get("/console/status")
	for _, want := range []string{
		a.pol.Status().Version, "shadow-mode hits", "refused: rules.yaml:3: rule_sets[0].name: required",
		rulesFile, "Last reload", "good",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q:\n%s", want, page)
		}
	}
}
