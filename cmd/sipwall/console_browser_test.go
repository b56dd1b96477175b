package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc/config"
	"github.com/sipwall/sipwall/sbc/decision"
	"github.com/sipwall/sipwall/sbc/e2e"
)

// consoleRules blocks an account at its second call of the day, so that
// the test has a denied call to look for (calls_per_minute is a sliding
// estimate that can read low just after a minute boundary).
const consoleRules = `rule_sets:
  - name: customers
    applies_to: {users: ["*"]}
    rules:
      - name: burst
        measure: calls_per_day
        critical: 2
        action: block_account
        block_for: 1h
`

// The console as an operator uses it, in headless Chromium: log in, watch
// a call made with sipp appear and disappear without reloading the page,
// ban an address and lift the ban from the page, find a call the fraud
// rules refused with the "why" search and unblock its account, and check
// that the pages fit a phone's screen. Screenshots go to
// $SIPWALL_ARTEFACTS (see webdriver_test.go).
func TestConsoleInBrowser(t *testing.T) {
	e2e.SkipIfShort(t)
	e2e.RequireSipp(t)
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(consoleRules), 0o600); err != nil {
		t.Fatal(err)
	}
	a, addr := startConsoleAddr(t, func(c *config.Config) { c.Rules.File = rulesFile })
	base := "http://" + a.admin.Addr()
	b := startBrowser(t, 1280, 900)

	// Log in: a page that needs a session sends the browser to the login
	// form, and back to that page afterwards.
	b.open(base + "/console/calls")
	b.acceptAlerts()
	b.waitText("h1", "Log in", 10*time.Second)
	b.typeInto("#token", opsToken)
	b.click("#login")
	b.waitText("h1", "Calls in progress", 10*time.Second)
	b.acceptAlerts()
	if !strings.HasSuffix(b.url(), "/console/calls") {
		t.Fatalf("after the login the browser is at %s, want the calls page", b.url())
	}
	b.waitText("#calls", "No calls in progress.", 5*time.Second)

	// A call made with sipp shows up on the open page by itself (the page
	// refreshes its table every 2 s), then goes when sipp hangs up.
	call := authCall(t, "caller", addr, "1000", 6*time.Second)
	b.waitText("#calls", "confirmed", 10*time.Second)
	if got := b.text("#calls"); !strings.Contains(got, "caller") || !strings.Contains(got, "1000") {
		t.Errorf("call row %q: want the caller and the number", got)
	}
	b.screenshot("call-in-progress")
	b.waitText("#calls", "No calls in progress.", 20*time.Second)
	if r := call.Wait(20 * time.Second); r.ExitCode != 0 {
		t.Errorf("the sipp call failed (exit %d)", r.ExitCode)
	}
	if b.url() != base+"/console/calls" {
		t.Errorf("the page navigated to %s while refreshing", b.url())
	}

	// Ban an address from the bans page, then lift the ban with its button.
	b.click(`nav a[href="/console/bans"]`)
	b.waitText("h1", "Bans and blocks", 10*time.Second)
	b.acceptAlerts()
	b.typeInto("#ban-prefix", "203.0.113.50")
	b.typeInto("#ban-duration", "2h")
	b.typeInto("#ban-evidence", "seen in the browser test")
	b.click("#ban-add")
	b.waitText("#bans", "203.0.113.50", 10*time.Second)
	b.acceptAlerts()
	if _, ok := a.sec.bans.Banned(netip.MustParseAddr("203.0.113.50")); !ok {
		t.Fatal("the page says banned, the ban store does not")
	}
	if got := b.text("#bans"); !strings.Contains(got, "seen in the browser test") || !strings.Contains(got, "manual") {
		t.Errorf("ban row %q: want the reason and the note", got)
	}
	b.screenshot("banned")
	b.click(`tr[data-prefix="203.0.113.50"] button`)
	b.waitGone("#bans", "203.0.113.50", 10*time.Second)
	b.acceptAlerts()
	if _, ok := a.sec.bans.Banned(netip.MustParseAddr("203.0.113.50")); ok {
		t.Fatal("the page says unbanned, the ban store still bans")
	}

	// A second call by alice the same day is refused by the fraud rule,
	// which blocks the account. The "why" search finds it.
	refused := authCall(t, "refused", addr, "1000", 0)
	refused.Wait(20 * time.Second) // sipp gets a 403 it did not expect; the search tells what happened
	// The decision is recorded once the 403 is sent: sipp may have seen it
	// and ended a moment before.
	var got []decision.Entry
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if got = a.decisions.Search(decision.Query{Text: "alice", Limit: 5}); len(got) > 0 && got[0].Layer == "rules" {
			break
		}
	}
	if len(got) == 0 || got[0].Layer != "rules" {
		t.Fatalf("decision log about alice: %+v, want the rules' refusal first", got)
	}
	b.click(`nav a[href="/console/why"]`)
	b.waitText("h1", "Why?", 10*time.Second)
	b.typeInto("#why-q", "alice")
	b.click("#why-search")
	b.waitText("#decisions", "customers/burst", 10*time.Second)
	page := b.text("#decisions")
	for _, want := range []string{"rules", "rejected 403", "block_account", "INVITE", "127.0.0.2", "alice", "forwarded 200"} {
		if !strings.Contains(page, want) {
			t.Errorf("why alice: %q lacks %q", page, want)
		}
	}
	b.waitText("main", "is blocked by fraud rule customers/burst", 5*time.Second)
	b.screenshot("why-alice")
	// An address finds the same refusal.
	b.open(base + "/console/why?q=127.0.0.2")
	b.acceptAlerts()
	b.waitText("#decisions", "customers/burst", 10*time.Second)

	// The block is on the bans page; unblock it there.
	b.open(base + "/console/bans")
	b.acceptAlerts()
	b.waitText("#blocks", "alice", 10*time.Second)
	b.click("#blocks button")
	b.waitText("body", "unblocked alice", 10*time.Second)
	b.waitText("#blocks", "No account is blocked.", 10*time.Second)
	if n := len(a.fraud.Blocked()); n != 0 {
		t.Fatalf("%d accounts still blocked after the unblock", n)
	}

	// Every page fits a phone's width: nothing wider than the screen but
	// the tables, which scroll inside their own box.
	phone := startBrowser(t, 390, 844)
	phone.open(base + "/console/login")
	phone.typeInto("#token", opsToken)
	phone.click("#login")
	phone.waitText("h1", "Overview", 10*time.Second)
	for _, p := range []string{"overview", "calls", "registrations", "bans", "why?q=alice", "status"} {
		phone.open(base + "/console/" + p)
		phone.waitText("header", "Log out", 10*time.Second)
		w := phone.exec("return [document.documentElement.scrollWidth, window.innerWidth]")
		ws, ok := w.([]any)
		if !ok || len(ws) != 2 {
			t.Fatalf("widths: %v", w)
		}
		if ws[0].(float64) > ws[1].(float64) {
			t.Errorf("page %s is %v px wide on a %v px screen", p, ws[0], ws[1])
		}
	}
	phone.open(base + "/console/overview")
	phone.waitText("header", "Log out", 10*time.Second)
	phone.screenshot("phone-overview")
}
