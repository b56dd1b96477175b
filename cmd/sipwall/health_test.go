package main

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc/config"
	"github.com/sipwall/sipwall/sbc/e2e"
)

// Health check timing of TestReadinessFollowsUpstream: short, so that the
// test takes seconds beyond its two minutes of steady state.
const (
	hcInterval = time.Second
	hcTimeout  = 800 * time.Millisecond
	hcFailures = 3
)

// /readyz follows the upstream's real state from start to stop, with sipp
// as a plain PBX that answers OPTIONS 200 echoing the Via it got: ready
// within 15 s of the start, ready for two minutes without one state
// change, and not ready within failures × interval + timeout once the PBX
// is gone (not before failures − 1 intervals: one lost answer is no
// verdict). The health checks must leave from the listener and name it in
// their Via; a Via naming 0.0.0.0 or a fresh socket's port made the
// response filter drop every answer, and the upstream went down 30 s after
// every start.
//
// The two subtests run in parallel, two minutes in all. The test itself is
// not parallel: a parallel top-level test runs after every sequential one of
// the package, where it would overlap nothing (no other test here is
// parallel) and would meet the process as those tests leave it. A test
// using bpf/netlab can leave the main thread in its network namespace
// (Lab.Do locks a thread there for good, and Go parks rather than ends the
// main thread), after which the harness, reading /proc/net/udp, no longer
// sees sipp listen.
func TestReadinessFollowsUpstream(t *testing.T) {
	if testing.Short() {
		t.Skip("runs sipp and two in-process sipwalls for over two minutes; skipped under -short")
	}
	e2e.RequireSipp(t)
	tests := []struct {
		name string
		// inside adds a UDP listener on the internal side, which the
		// checks must use; without it they use the only UDP listener.
		inside bool
		local  bool // registrar.mode local: no REGISTER ever reaches the PBX
	}{
		{name: "inside listener", inside: true},
		{name: "registrar local", local: true},
	}
	// Two subtests: -parallel defaults to GOMAXPROCS, two cores in CI, so
	// both run at once. Checks over TCP are unit-tested in sbc/upstream;
	// UDP is where a wrong socket or Via loses the answer.
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testReadinessFollowsUpstream(t, tc.inside, tc.local)
		})
	}
}

// startMu makes the parallel subtests start their apps one at a time: the
// first start in a process sets sipgo's package globals (setGlobals), which
// another app starting beside it reads.
var startMu sync.Mutex

// startApp is startDemo under startMu; start is when the app began starting.
func startApp(t *testing.T, start *time.Time, adjust func(*config.Config)) (*app, string) {
	t.Helper()
	startMu.Lock()
	defer startMu.Unlock()
	*start = time.Now()
	return startDemo(t, adjust)
}

func testReadinessFollowsUpstream(t *testing.T, inside, local bool) {
	tr := e2e.Transports[0] // udp
	pbx := e2e.Sipp{Name: "pbx", Scenario: "uas_options.xml", IP: e2e.PBXIP, Transport: tr,
		Calls: 100000, Timeout: 5 * time.Minute}.Start(t)
	insideAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	var start time.Time
	a, addr := startApp(t, &start, func(c *config.Config) {
		c.Upstreams = []config.Upstream{{Name: "pbx", URI: "sip:" + pbx.Addr() + tr.URIParam(), Priority: 1, Weight: 1}}
		c.Health = config.Health{Interval: config.Duration(hcInterval), Timeout: config.Duration(hcTimeout),
			Failures: hcFailures, Successes: 2}
		if inside {
			c.Listen = append(c.Listen, config.Listener{Transport: "udp", Addr: insideAddr, Side: "internal"})
		}
		if local {
			c.Registrar.Mode = config.RegistrarLocal
			c.Registrar.Domains = []string{"127.0.0.1"}
		}
	})

	// Ready within 15 s of the start.
	var code int
	var why string
	if !waitFor(15*time.Second-time.Since(start), func() bool { code, why = readyz(t, a); return code == http.StatusOK }) {
		t.Fatalf("/readyz %d (%s) 15 s after start, want 200; upstreams %+v", code, why, a.pool.Status())
	}
	t.Logf("ready %v after start: %s", time.Since(start).Round(time.Millisecond), why)
	if why != "upstream pbx up" {
		t.Errorf("/readyz reason %q, want %q", why, "upstream pbx up")
	}

	// The checks name the listener they leave from, never a wildcard.
	from := addr
	if inside {
		from = insideAddr
	}
	wantVia := "SIP/2.0/" + strings.ToUpper(tr.Name) + " " + from + ";"
	if via := e2e.MessageHeader(pbx.Messages(), "OPTIONS ", "Via"); len(via) != 1 || !strings.HasPrefix(via[0], wantVia) {
		t.Errorf("the PBX got Via %q, want one %s...", via, wantVia)
	}

	// Ready for two minutes, without a single change of state between polls.
	const steady, poll = 2 * time.Minute, 2 * time.Second
	steadyEnd := time.Now().Add(steady)
	for n := 0; n < int(steady/poll)+1 && time.Now().Before(steadyEnd); n++ {
		if code, why = readyz(t, a); code != http.StatusOK {
			t.Fatalf("/readyz %d (%s) %v into the steady state, want 200; upstreams %+v",
				code, why, time.Since(steadyEnd.Add(-steady)).Round(time.Second), a.pool.Status())
		}
		time.Sleep(poll)
	}
	st := a.pool.Stats()
	if st.StateChangesTotal != 0 {
		t.Errorf("upstream state changed %d times while the PBX answered: %+v", st.StateChangesTotal, a.pool.Status())
	}
	if min := uint64(steady / hcInterval / 2); st.ChecksTotal < min {
		t.Errorf("%d health checks in %v, want at least %d", st.ChecksTotal, steady, min)
	}
	t.Logf("steady: %d checks, %d failed", st.ChecksTotal, st.FailuresTotal)

	// The PBX goes away: not ready within failures × interval + timeout.
	stopped := time.Now()
	pbx.Wait(0) // kills it and waits until it has exited
	gone := time.Now()
	limit := gone.Add(hcFailures*hcInterval + hcTimeout + time.Second) // + slack for a loaded machine
	var down time.Time
	for n := 0; n < 1000 && time.Now().Before(limit); n++ {
		if code, why = readyz(t, a); code == http.StatusServiceUnavailable {
			down = time.Now()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if down.IsZero() {
		t.Fatalf("/readyz %d (%s) %v after the PBX stopped, want 503 within %v; upstreams %+v",
			code, why, time.Since(gone).Round(time.Millisecond), hcFailures*hcInterval+hcTimeout, a.pool.Status())
	}
	took := down.Sub(stopped)
	t.Logf("not ready %v after the PBX was stopped: %s", took.Round(time.Millisecond), why)
	if why != "no upstream up" {
		t.Errorf("/readyz reason %q, want %q", why, "no upstream up")
	}
	if early := (hcFailures - 1) * hcInterval; took < early {
		t.Errorf("not ready %v after the PBX stopped: before %d failed checks could have happened (%v)", took, hcFailures, early)
	}
}
