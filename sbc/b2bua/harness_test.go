package b2bua_test

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/b2bua"
	"github.com/sipwall/sipwall/sbc/siptest"
	"github.com/sipwall/sipwall/sbc/upstream"
)

// Timers shrunk so paths driven by 64*T1 (Timer B, a missing ACK, the
// lifetime of finished transactions) take about a second, not half a minute.
const (
	testT1 = 20 * time.Millisecond
	testT2 = 160 * time.Millisecond
	testT4 = 200 * time.Millisecond
)

// Bounds of waits in tests. wait is for one message on loopback; it is long
// only so a slow -race run does not flake.
const (
	wait  = 3 * time.Second
	quiet = 150 * time.Millisecond // silence asserted where nothing may come
)

// Addresses of the parties, all in 127.0.0.0/8. The SBC is on 127.0.0.1.
const (
	callerIP  = "127.0.0.5" // a phone outside
	pbxIP     = "127.0.0.6" // the upstream PBX (inside)
	pbx2IP    = "127.0.0.7" // a second upstream
	trunkIP   = "127.0.0.8" // the outbound trunk
	caller2IP = "127.0.0.9" // a second outside party
)

func TestMain(m *testing.M) {
	siptest.ShortTimers(testT1, testT2, testT4)
	sip.SetDefaultLogger(testLogger())
	os.Exit(m.Run())
}

func testLogger() *slog.Logger { return siptest.Logger() }

// harness is an in-process SBC wired like cmd/sipwall's start(): server
// with a UDP and a TCP listener on 127.0.0.1, the upstream pool deciding
// which side a peer is on, the chain "local" + "b2bua".
type harness struct {
	Server *sbc.Server
	B2B    *b2bua.B2BUA
	Pool   *upstream.Pool
	UDP    netip.AddrPort
	TCP    netip.AddrPort
}

type harnessConfig struct {
	targets  []upstream.Target
	outbound *upstream.Target
	cfg      b2bua.Config
	layers   map[string]sbc.Handler
}

type option func(t *testing.T, c *harnessConfig)

// withUpstream adds the peer as an upstream of the given priority.
func withUpstream(name string, p *siptest.Peer, priority int) option {
	return func(t *testing.T, c *harnessConfig) {
		tg, err := upstream.ParseTarget(name, "sip:"+p.Addr().String(), priority, 1)
		if err != nil {
			t.Fatalf("upstream %s: %v", name, err)
		}
		c.targets = append(c.targets, tg)
	}
}

// withOutbound makes the peer the trunk for calls from the inside.
func withOutbound(p *siptest.Peer) option {
	return func(t *testing.T, c *harnessConfig) {
		tg, err := upstream.ParseTarget("outbound", "sip:"+p.Addr().String(), 1, 1)
		if err != nil {
			t.Fatalf("outbound: %v", err)
		}
		tg.External = true
		c.outbound = &tg
	}
}

// withConfig edits the B2BUA configuration.
func withConfig(f func(*b2bua.Config)) option {
	return func(_ *testing.T, c *harnessConfig) { f(&c.cfg) }
}

// withLayer puts h in the chain under name (a name of sbc.Order), beside
// "local" and "b2bua": a stand-in for auth that sets Request.Identity.
func withLayer(name string, h sbc.Handler) option {
	return func(_ *testing.T, c *harnessConfig) {
		if c.layers == nil {
			c.layers = map[string]sbc.Handler{}
		}
		c.layers[name] = h
	}
}

// startSBC starts an SBC that is stopped when the test ends.
func startSBC(t *testing.T, opts ...option) *harness {
	t.Helper()
	var hc harnessConfig
	for _, o := range opts {
		o(t, &hc)
	}
	log := testLogger()
	var b2bRef atomic.Pointer[b2bua.B2BUA]
	var pool *upstream.Pool
	srv, err := sbc.NewServer(sbc.Options{
		Listeners: []sbc.ListenerSpec{
			{Transport: "udp", Addr: "127.0.0.1:0", Side: sbc.External},
			{Transport: "tcp", Addr: "127.0.0.1:0", Side: sbc.External},
		},
		IsInternal: func(a netip.Addr) bool {
			_, ok := pool.Lookup(a)
			return ok
		},
		OnUnhandledResponse: func(res *sip.Response) {
			if b := b2bRef.Load(); b != nil {
				b.OnUnhandledResponse(res)
			}
		},
		OnResponse: func(res *sip.Response) {
			if b := b2bRef.Load(); b != nil {
				b.OnResponse(res)
			}
		},
		Logger: log,
	})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	// No active checks: the tests decide what each upstream answers.
	pool = upstream.New(hc.targets, upstream.Options{Logger: log})
	cfg := hc.cfg
	cfg.Client = srv.Client()
	cfg.Endpoint = srv
	cfg.Pool = pool
	cfg.Outbound = hc.outbound
	cfg.Logger = log
	b2b := b2bua.New(cfg)
	b2bRef.Store(b2b)
	layers := map[string]sbc.Handler{"local": sbc.Local{}, "b2bua": b2b}
	for name, l := range hc.layers {
		layers[name] = l
	}
	chain, err := sbc.BuildChain(layers)
	if err != nil {
		t.Fatalf("BuildChain: %v", err)
	}
	srv.SetChain(chain)

	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Start(ctx); err != nil {
		cancel()
		t.Fatalf("Start: %v", err)
	}
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		b2b.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		srv.Close()
		select {
		case <-runDone:
		case <-time.After(10 * time.Second):
			t.Errorf("B2BUA.Run did not return within 10s of shutdown")
		}
	})
	h := &harness{Server: srv, B2B: b2b, Pool: pool}
	for _, l := range srv.Listeners() {
		switch l.Spec.Transport {
		case "udp":
			h.UDP = l.Bound
		case "tcp":
			h.TCP = l.Bound
		}
	}
	return h
}

// URI is a Request-URI for user at the SBC's UDP listener.
func (h *harness) URI(user string) string {
	if user == "" {
		return "sip:" + h.UDP.String()
	}
	return "sip:" + user + "@" + h.UDP.String()
}

// waitIdle polls until the dialog table is empty.
func (h *harness) waitIdle(t *testing.T) {
	t.Helper()
	eventually(t, wait, "dialog table empty", func() bool { return h.B2B.Active() == 0 })
}

// eventually polls cond every few milliseconds until it holds or the
// deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %v", what, within)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for logic
	}
}

// Session descriptions; their content only has to arrive intact.
func offerSDP(ip string) string {
	return "v=0\r\no=- 1 1 IN IP4 " + ip + "\r\ns=-\r\nc=IN IP4 " + ip + "\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=sendrecv\r\n"
}

func holdSDP(ip string) string {
	return "v=0\r\no=- 1 2 IN IP4 " + ip + "\r\ns=-\r\nc=IN IP4 " + ip + "\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=sendonly\r\n"
}

// call is one established call seen by the two peers.
type call struct {
	A      *siptest.Dialog // the caller's dialog with the SBC
	B      *siptest.Dialog // the PBX's dialog with the SBC
	AInv   *sip.Request    // INVITE the caller sent
	BInv   *sip.Request    // INVITE the PBX received
	A200   *sip.Response   // 200 the caller received
	caller *siptest.Peer
	pbx    *siptest.Peer
}

// establish runs INVITE/200/ACK from caller through the SBC to pbx.
func establish(t *testing.T, h *harness, caller, pbx *siptest.Peer) *call {
	t.Helper()
	c := &call{caller: caller, pbx: pbx}
	c.A = caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
	c.AInv = c.A.Invite
	c.BInv = pbx.ExpectRequest("INVITE", wait)
	pbx.ReplyBody(c.BInv, 200, "OK", offerSDP(pbxIP))
	c.B = pbx.DialogFrom(c.BInv)
	c.A200 = caller.ExpectResponse(200, wait)
	c.A.Learn(c.A200)
	c.A.Ack(nil, "")
	pbx.ExpectRequest("ACK", wait)
	return c
}

// hangup ends the call with a BYE from the caller.
func (c *call) hangup(t *testing.T) {
	t.Helper()
	c.A.Send("BYE", nil, "")
	bye := c.pbx.ExpectRequest("BYE", wait)
	c.pbx.Reply(bye, 200, "OK")
	c.caller.ExpectResponse(200, wait)
}

// Header helpers.

func tagOf(p sip.HeaderParams) string {
	v, _ := p.Get("tag")
	return v
}

func fromTag(m sip.Message) string { return tagOf(m.From().Params) }
func toTag(m sip.Message) string   { return tagOf(m.To().Params) }

func branchOf(m sip.Message) string {
	v, _ := m.Via().Params.Get("branch")
	return v
}

func header(m sip.Message, name string) string {
	if hs := m.GetHeaders(name); len(hs) > 0 {
		return hs[0].Value()
	}
	return ""
}
