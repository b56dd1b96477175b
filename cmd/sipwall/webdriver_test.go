package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc/siptest"
)

// A minimal W3C WebDriver client (https://www.w3.org/TR/webdriver2/) over
// plain HTTP and JSON, driving headless Chromium through chromedriver. It
// covers what the end-to-end test of the web console needs and no more:
// navigate, find, click, type, read text, run a script, take a screenshot.
// Every call fails the test with the W3C error it got.

const (
	// webElementKey is the W3C web element identifier: the key under which
	// an element reference is returned.
	webElementKey = "element-6066-11e4-a52e-4f735466cecf"
	// wdTimeout bounds each WebDriver command.
	wdTimeout = 30 * time.Second
	// wdSessionTimeout bounds the start of the browser.
	wdSessionTimeout = 60 * time.Second
	// wdFindTimeout is how long find, click and typeInto wait for their
	// element to appear and take input.
	wdFindTimeout = 10 * time.Second
	// wdPoll is the interval of every wait.
	wdPoll = 100 * time.Millisecond
)

// browser is one headless Chromium session driven over WebDriver.
type browser struct {
	t       *testing.T
	client  *http.Client
	session string // http://127.0.0.1:port/session/<id>
	shots   int    // timeout screenshots taken, to name them
}

// wdError is the error object of a failed WebDriver command.
type wdError struct {
	Status  int    // HTTP status
	Code    string `json:"error"` // e.g. "no such element"
	Message string `json:"message"`
}

func (e *wdError) Error() string {
	return fmt.Sprintf("webdriver: %s (HTTP %d): %s", e.Code, e.Status, e.Message)
}

// wdIs reports whether err is a WebDriver error with one of the codes.
func wdIs(err error, codes ...string) bool {
	var we *wdError
	if !errors.As(err, &we) {
		return false
	}
	for _, c := range codes {
		if we.Code == c {
			return true
		}
	}
	return false
}

// wdCall sends one WebDriver command and decodes its value into out (when
// not nil). A W3C error object comes back as a *wdError.
func wdCall(client *http.Client, timeout time.Duration, method, url string, body, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("webdriver: %s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("webdriver: %s %s: %w", method, url, err)
	}
	var reply struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(raw, &reply); err != nil {
		return fmt.Errorf("webdriver: %s %s: HTTP %d, undecodable reply %.200q", method, url, resp.StatusCode, raw)
	}
	if resp.StatusCode != http.StatusOK {
		we := &wdError{Status: resp.StatusCode}
		if err := json.Unmarshal(reply.Value, we); err != nil || we.Code == "" {
			we.Code, we.Message = "unknown error", string(raw)
		}
		return we
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(reply.Value, out); err != nil {
		return fmt.Errorf("webdriver: %s %s: decoding %.200q: %w", method, url, reply.Value, err)
	}
	return nil
}

// call sends a command of the session; path starts with "/" or is empty.
func (b *browser) call(method, path string, body, out any) error {
	return wdCall(b.client, wdTimeout, method, b.session+path, body, out)
}

// must is call that fails the test on error.
func (b *browser) must(method, path string, body, out any) {
	b.t.Helper()
	if err := b.call(method, path, body, out); err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
}

// startBrowser starts chromedriver on a free loopback port and opens a
// session with a headless Chromium of a width x height window (the page
// gets the full width but, under the window's emulated frame, some 140
// pixels less height). Both are stopped when the test ends. Without
// chromium or chromedriver the test is skipped.
// missingTool skips the test, or fails it where a missing tool must not
// pass for a green run (CI set, or SIPWALL_E2E_REQUIRED=1, as for sipp).
func missingTool(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" || os.Getenv("SIPWALL_E2E_REQUIRED") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func startBrowser(t *testing.T, width, height int) *browser {
	t.Helper()
	const install = "install the Debian packages chromium and chromium-driver (scripts/install-test-tools.sh)"
	driver, err := exec.LookPath("chromedriver")
	if err != nil {
		missingTool(t, "webdriver: chromedriver not found; "+install)
	}
	var chrome string
	for _, name := range []string{"chromium", "chromium-browser"} {
		if chrome, err = exec.LookPath(name); err == nil {
			break
		}
	}
	if err != nil {
		missingTool(t, "webdriver: chromium not found; "+install)
	}

	dir := t.TempDir() // removed after the cleanups below have run
	client := &http.Client{}
	var base string
	var logPath string
	// The port is free when FreePort looks but may be taken before
	// chromedriver binds it: try a few.
	for attempt := 1; ; attempt++ {
		port, err := siptest.FreePort("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		base = "http://127.0.0.1:" + strconv.Itoa(port)
		logPath = filepath.Join(dir, "chromedriver-"+strconv.Itoa(attempt)+".log")
		err = startDriver(t, client, driver, port, base, logPath)
		if err == nil {
			break
		}
		if attempt == 3 {
			t.Fatalf("webdriver: %v\n%s", err, readTail(logPath))
		}
	}

	args := []string{
		"--headless=new",
		"--no-sandbox", // the tests run as root
		"--disable-gpu",
		"--disable-dev-shm-usage",
		"--window-size=" + strconv.Itoa(width) + "," + strconv.Itoa(height),
		"--user-data-dir=" + filepath.Join(dir, "profile"),
		"--no-first-run",
		"--no-default-browser-check",
	}
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		// A dialog the page opens despite acceptAlerts is accepted at the
		// next command instead of failing it.
		"unhandledPromptBehavior": "accept",
		"goog:chromeOptions": map[string]any{
			"binary": chrome,
			"args":   args,
		},
	}}}
	var created struct {
		SessionID string `json:"sessionId"`
	}
	if err := wdCall(client, wdSessionTimeout, http.MethodPost, base+"/session", caps, &created); err != nil {
		t.Fatalf("webdriver: starting %s: %v\n%s", chrome, err, readTail(logPath))
	}
	b := &browser{t: t, client: client, session: base + "/session/" + created.SessionID}
	t.Cleanup(func() {
		// Quits Chromium; chromedriver itself is killed by the cleanup
		// of startDriver, which runs after this one.
		if err := b.call(http.MethodDelete, "", nil, nil); err != nil {
			t.Logf("webdriver: deleting the session: %v", err)
		}
	})
	return b
}

// startDriver runs chromedriver on port and waits until it is ready. On
// success a cleanup kills it when the test ends.
func startDriver(t *testing.T, client *http.Client, driver string, port int, base, logPath string) error {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(driver, "--port="+strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", driver, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		var status struct {
			Ready bool `json:"ready"`
		}
		err := wdCall(client, time.Second, http.MethodGet, base+"/status", nil, &status)
		if err == nil && status.Ready {
			break
		}
		select {
		case werr := <-exited:
			exited <- werr // for stop, should it be called
			return fmt.Errorf("chromedriver on port %d exited: %v", port, werr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("chromedriver on port %d not ready after 10s (last: %v)", port, err)
		}
	}
	t.Cleanup(stop)
	return nil
}

// readTail returns the end of a log file, for failure messages.
func readTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// open navigates to url and waits for the page to load.
func (b *browser) open(url string) {
	b.t.Helper()
	b.must(http.MethodPost, "/url", map[string]string{"url": url}, nil)
}

// url returns the address of the current page.
func (b *browser) url() string {
	b.t.Helper()
	var u string
	b.must(http.MethodGet, "/url", nil, &u)
	return u
}

// retry runs f until it succeeds, fails with an error other than the
// transient ones of a page still rendering, or wdFindTimeout passes.
func (b *browser) retry(what string, f func() error) {
	b.t.Helper()
	deadline := time.Now().Add(wdFindTimeout)
	for {
		err := f()
		if err == nil {
			return
		}
		transient := wdIs(err, "no such element", "stale element reference",
			"element not interactable", "element click intercepted")
		if !transient || time.Now().After(deadline) {
			b.t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(wdPoll)
	}
}

// findOnce returns the id of the first element matching css, without
// waiting.
func (b *browser) findOnce(css string) (string, error) {
	var ref map[string]string
	err := b.call(http.MethodPost, "/element", map[string]string{"using": "css selector", "value": css}, &ref)
	if err != nil {
		return "", err
	}
	if id, ok := ref[webElementKey]; ok {
		return id, nil
	}
	// Not the W3C key: take the only value there is.
	if len(ref) == 1 {
		for _, id := range ref {
			return id, nil
		}
	}
	return "", fmt.Errorf("webdriver: element reference %v has no %q", ref, webElementKey)
}

// find returns the element id of the first match of css, waiting up to
// 10 s for it to appear.
func (b *browser) find(css string) string {
	b.t.Helper()
	var id string
	b.retry("find "+css, func() (err error) {
		id, err = b.findOnce(css)
		return err
	})
	return id
}

// click clicks the first match of css, waiting for it to appear and take
// the click.
func (b *browser) click(css string) {
	b.t.Helper()
	b.retry("click "+css, func() error {
		id, err := b.findOnce(css)
		if err != nil {
			return err
		}
		return b.call(http.MethodPost, "/element/"+id+"/click", map[string]any{}, nil)
	})
}

// typeInto clears the first match of css and types text into it.
func (b *browser) typeInto(css, text string) {
	b.t.Helper()
	b.retry("type into "+css, func() error {
		id, err := b.findOnce(css)
		if err != nil {
			return err
		}
		if err := b.call(http.MethodPost, "/element/"+id+"/clear", map[string]any{}, nil); err != nil {
			return err
		}
		return b.call(http.MethodPost, "/element/"+id+"/value", map[string]string{"text": text}, nil)
	})
}

// textScript returns the rendered text of the first match of a selector,
// or "" when there is none or it is not visible. One script rather than a
// find and a Get Element Text: the console re-renders under the test,
// which would make the element stale in between.
const textScript = `const e = document.querySelector(arguments[0]);
if (!e || !e.checkVisibility({visibilityProperty: true})) return "";
return e.innerText;`

// textErr is text that returns its error.
func (b *browser) textErr(css string) (string, error) {
	var s string
	err := b.call(http.MethodPost, "/execute/sync", map[string]any{"script": textScript, "args": []any{css}}, &s)
	return s, err
}

// text returns the visible text of the first match of css; "" if there is
// none (it does not wait).
func (b *browser) text(css string) string {
	b.t.Helper()
	s, err := b.textErr(css)
	if err != nil {
		b.t.Fatalf("text of %s: %v", css, err)
	}
	return s
}

// waitText waits until the text of css contains substr.
func (b *browser) waitText(css, substr string, timeout time.Duration) {
	b.t.Helper()
	b.waitFor(css, substr, true, timeout)
}

// waitGone waits until the text of css no longer contains substr (which
// includes the element going away).
func (b *browser) waitGone(css, substr string, timeout time.Duration) {
	b.t.Helper()
	b.waitFor(css, substr, false, timeout)
}

// waitFor polls the text of css until containing substr is want. On
// timeout it takes a screenshot and fails with the last text seen.
func (b *browser) waitFor(css, substr string, want bool, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		// Errors (a page being replaced, say) are retried like a
		// mismatch and reported if they last.
		s, err := b.textErr(css)
		if err == nil && strings.Contains(s, substr) == want {
			return
		}
		if time.Now().After(deadline) {
			b.shots++
			if p, serr := b.saveScreenshot("timeout-" + strconv.Itoa(b.shots)); serr != nil {
				b.t.Logf("screenshot: %v", serr)
			} else {
				b.t.Logf("screenshot: %s", p)
			}
			verb := "contain"
			if !want {
				verb = "lose"
			}
			if err != nil {
				b.t.Fatalf("text of %s did not %s %q within %v: %v", css, verb, substr, timeout, err)
			}
			b.t.Fatalf("text of %s did not %s %q within %v; last text:\n%s", css, verb, substr, timeout, s)
		}
		time.Sleep(wdPoll)
	}
}

// exec runs script in the page as the body of a function (arguments are
// in arguments[i]) and returns what it returns, decoded from JSON.
func (b *browser) exec(script string, args ...any) any {
	b.t.Helper()
	if args == nil {
		args = []any{} // the command wants an array, not null
	}
	var v any
	b.must(http.MethodPost, "/execute/sync", map[string]any{"script": script, "args": args}, &v)
	return v
}

// acceptAlerts makes window.confirm return true and window.alert return at
// once, without a dialog, on the current page; call it after each open.
// The messages are kept in window.__webdriverDialogs.
func (b *browser) acceptAlerts() {
	b.t.Helper()
	b.exec(`window.__webdriverDialogs = [];
window.confirm = (m) => { window.__webdriverDialogs.push(String(m)); return true; };
window.alert = (m) => { window.__webdriverDialogs.push(String(m)); };`)
}

// artefactDir is where screenshots go: $SIPWALL_ARTEFACTS, or
// sipwall-artefacts in the temporary directory.
func artefactDir() string {
	if d := os.Getenv("SIPWALL_ARTEFACTS"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "sipwall-artefacts")
}

// saveScreenshot writes a PNG of the window to the artefact directory as
// <test name>-<name>.png and returns its path.
func (b *browser) saveScreenshot(name string) (string, error) {
	var enc string
	if err := b.call(http.MethodGet, "/screenshot", nil, &enc); err != nil {
		return "", err
	}
	png, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return "", fmt.Errorf("decoding the screenshot: %w", err)
	}
	dir := artefactDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	file := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
			return r
		}
		return '_'
	}, b.t.Name()+"-"+name)
	p := filepath.Join(dir, file+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		return "", err
	}
	return p, nil
}

// screenshot saves a PNG of the window to the artefact directory.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	p, err := b.saveScreenshot(name)
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	b.t.Logf("screenshot: %s", p)
}

// webdriverSelfPage exercises every call of the client: a form input, a
// button that changes a div's text later, an element that appears late, a
// hidden element, and a confirm before a delete.
const webdriverSelfPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>webdriver self-test</title></head>
<body>
<form id="form" onsubmit="return false">
  <input id="name" value="old">
  <button id="greet" type="button">Greet</button>
  <button id="del" type="button">Delete</button>
</form>
<div id="out">idle</div>
<div id="victim">delete me</div>
<div id="hidden" style="display: none">secret</div>
<script>
document.getElementById("greet").onclick = () => setTimeout(() => {
  document.getElementById("out").textContent = "hello " + document.getElementById("name").value;
  const late = document.createElement("p");
  late.id = "late";
  late.textContent = "arrived";
  document.body.appendChild(late);
}, 300);
document.getElementById("del").onclick = () => {
  if (confirm("Delete the victim?")) {
    setTimeout(() => { document.getElementById("victim").remove(); location.hash = "deleted"; }, 200);
  }
};
</script>
</body></html>`

// The WebDriver client drives a real headless Chromium through a small page.
func TestWebDriverSelf(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, webdriverSelfPage)
	}))
	defer srv.Close()
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("test server on %s, want 127.0.0.1", srv.URL)
	}
	artefacts := t.TempDir()
	t.Setenv("SIPWALL_ARTEFACTS", artefacts)

	b := startBrowser(t, 1024, 700)
	b.open(srv.URL + "/page")
	b.acceptAlerts()
	if got, want := b.url(), srv.URL+"/page"; got != want {
		t.Fatalf("url %q, want %q", got, want)
	}
	if w := b.exec(`return window.innerWidth`); w != float64(1024) {
		t.Errorf("window.innerWidth %v, want 1024", w)
	}
	if got := b.exec(`return arguments[0] + arguments[1]`, 2, 3); got != float64(5) {
		t.Errorf("exec 2+3 = %v (%T)", got, got)
	}
	if got := b.exec(`return document.title`); got != "webdriver self-test" {
		t.Errorf("title %v", got)
	}

	// Texts: present, hidden, missing.
	if got := b.text("#out"); got != "idle" {
		t.Errorf("text #out %q, want idle", got)
	}
	if got := b.text("#hidden"); got != "" {
		t.Errorf("text of a hidden element %q, want empty", got)
	}
	if got := b.text("#nothing"); got != "" {
		t.Errorf("text of a missing element %q, want empty", got)
	}
	if b.find("#name") == "" {
		t.Fatal("find #name: empty element id")
	}

	// Typing replaces the value; the button's text appears after a delay,
	// as does an element find has to wait for.
	b.typeInto("#name", "Alice")
	if got := b.exec(`return document.getElementById("name").value`); got != "Alice" {
		t.Fatalf("input value %v after typeInto, want Alice", got)
	}
	b.click("#greet")
	b.waitText("#out", "hello Alice", 5*time.Second)
	if b.find("#late") == "" {
		t.Fatal("find #late: empty element id")
	}
	if got := b.text("#late"); got != "arrived" {
		t.Errorf("text #late %q", got)
	}

	// The confirm is answered yes without a dialog, and the page acts on it.
	b.click("#del")
	b.waitGone("#victim", "delete me", 5*time.Second)
	dialogs := b.exec(`return window.__webdriverDialogs`)
	if l, ok := dialogs.([]any); !ok || len(l) != 1 || l[0] != "Delete the victim?" {
		t.Errorf("dialogs %#v, want the one confirm", dialogs)
	}
	if got := b.url(); !strings.HasSuffix(got, "/page#deleted") {
		t.Errorf("url %q after delete, want #deleted", got)
	}

	b.screenshot("final")
	png, err := os.ReadFile(filepath.Join(artefacts, "TestWebDriverSelf-final.png"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot is not a PNG: % x", png[:min(len(png), 8)])
	}
}
