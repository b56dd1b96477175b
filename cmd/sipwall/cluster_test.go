package main

// Scale-out (store.backend: redis) end to end: three sipwall nodes run in
// this process on 127.0.0.2, 127.0.0.3 and 127.0.0.4 (UDP), each with its
// own store directory, all sharing one throwaway redis-server
// (sbc/cluster/redistest), with the demo PBX as their upstream. Phones,
// callers and attackers are raw UDP SIP peers (sbc/siptest) on 127.0.0.20
// and up, answering digest challenges with MD5 (the demo users alice and
// bob, password "demo"); the outbound trunk of TestClusterRegisterGate is
// a peer on 127.0.0.12. Traffic stays on 127.0.0.0/8.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc/ban"
	"github.com/sipwall/sipwall/sbc/cluster/redistest"
	"github.com/sipwall/sipwall/sbc/config"
	"github.com/sipwall/sipwall/sbc/demo"
	"github.com/sipwall/sipwall/sbc/registrar"
	"github.com/sipwall/sipwall/sbc/siptest"
	"github.com/sipwall/sipwall/sbc/store"
)

// clusterDomain is the AOR host of the local registrar of every node.
const clusterDomain = "sip.test"

// clusterNodes are the nodes' names and SIP addresses (A, B, C).
var clusterNodes = []struct{ name, ip string }{
	{"node-a", "127.0.0.2"},
	{"node-b", "127.0.0.3"},
	{"node-c", "127.0.0.4"},
}

// clusterNode is one running sipwall of the cluster.
type clusterNode struct {
	name string
	app  *app
	st   *store.Store
	addr netip.AddrPort // the UDP listener
	logs *syncBuffer
	once sync.Once
}

// stop stops the node (as at shutdown) and closes its store; once.
func (n *clusterNode) stop() {
	n.once.Do(func() {
		n.app.stop()
		n.st.Close()
	})
}

// testCluster is a Redis server, the demo PBX and three nodes.
type testCluster struct {
	redis *redistest.Server
	pbx   *demo.PBX
	nodes []*clusterNode
}

// startCluster starts Redis, the demo PBX and the three nodes (A, B, C);
// adjust changes every node's configuration before it starts. Everything
// stops when the test ends.
func startCluster(t *testing.T, adjust ...func(*config.Config)) *testCluster {
	t.Helper()
	rs := redistest.Start(t) // skips without redis-server
	ctx, cancel := context.WithCancel(context.Background())
	pbx := demo.New(demo.Options{RingDelay: -1})
	if err := pbx.Start(ctx, demoPBXAddr, ""); err != nil {
		cancel()
		t.Fatalf("start the demo PBX: %v", err)
	}
	t.Cleanup(func() {
		pbx.Close()
		cancel()
	})
	c := &testCluster{redis: rs, pbx: pbx}
	for _, spec := range clusterNodes {
		dir := t.TempDir()
		cfg := config.Default()
		cfg.Listen = []config.Listener{{Transport: "udp", Addr: spec.ip + ":0", Side: "external"}}
		cfg.Health.Interval = 0
		cfg.Log.Level = "warn"
		cfg.Admin.Addr = "127.0.0.1:0"
		cfg.Policy.Timeout = config.Duration(time.Second) // as startDemo: not a latency test
		cfg.Store.Path = dir
		cfg.Store.Backend = config.BackendRedis
		cfg.Store.Redis.Addrs = []string{rs.Addr()}
		cfg.Store.Redis.Node = spec.name
		cfg.Store.Redis.Resync = config.Duration(time.Second)
		if err := demoAuth(cfg, dir); err != nil {
			t.Fatal(err)
		}
		cfg.Upstreams = []config.Upstream{{Name: "demo-pbx", URI: "sip:" + pbx.Addr("udp").String(), Priority: 1, Weight: 1}}
		// sipwall is the registrar: calls to a registered user go to its
		// bindings (as sbc/e2e TestRegistrarLocalCall).
		cfg.Registrar.Mode = config.RegistrarLocal
		cfg.Registrar.Domains = []string{clusterDomain}
		for _, f := range adjust {
			f(cfg)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		st, err := store.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		logs := &syncBuffer{}
		a, err := start(ctx, cfg, st, newLogger(cfg.Log, logs))
		if err != nil {
			st.Close()
			t.Fatalf("start %s: %v", spec.name, err)
		}
		n := &clusterNode{name: spec.name, app: a, st: st, logs: logs}
		t.Cleanup(func() {
			n.stop()
			if strings.Contains(logs.String(), "panic") {
				t.Errorf("%s logged a panic:\n%s", n.name, logs.String())
			}
		})
		n.addr = udpListener(t, a)
		c.nodes = append(c.nodes, n)
	}
	return c
}

// sipUA is a phone, caller or attacker: a raw UDP SIP peer on its own
// loopback address, whose user is user@clusterDomain.
type sipUA struct {
	t    *testing.T
	p    *siptest.Peer
	user string
}

func newUA(t *testing.T, ip, user string) *sipUA {
	t.Helper()
	p := siptest.NewPeer(t, ip+":0")
	p.User = user
	return &sipUA{t: t, p: p, user: user}
}

func (u *sipUA) aor() string { return "sip:" + u.user + "@" + clusterDomain }

// final waits up to within for the final response to req (same Call-ID,
// CSeq and method) and returns it; nil when none came. Whatever else
// arrives meanwhile is discarded.
func (u *sipUA) final(req *sip.Request, within time.Duration) *sip.Response {
	u.t.Helper()
	deadline := time.Now().Add(within)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil
		}
		// A UDP client retransmits after T1: an unauthenticated source's
		// first small request may go unanswered (the SBC never sends a
		// source more bytes than it sent).
		msg, err := u.p.Recv(min(left, 500*time.Millisecond))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			u.p.Resend()
			continue
		}
		if err != nil {
			u.t.Fatalf("%s: %v", u.p, err)
		}
		res, ok := msg.(*sip.Response)
		if !ok || res.StatusCode < 200 || res.CallID() == nil || res.CSeq() == nil ||
			res.CallID().Value() != req.CallID().Value() ||
			res.CSeq().SeqNo != req.CSeq().SeqNo || res.CSeq().MethodName != req.Method {
			continue
		}
		return res
	}
}

// mustFinal is final that fails the test when no final response comes.
func (u *sipUA) mustFinal(req *sip.Request, within time.Duration) *sip.Response {
	u.t.Helper()
	res := u.final(req, within)
	if res == nil {
		u.t.Fatalf("%s: no final response to %s within %s", u.p, siptest.Describe(req), within)
	}
	return res
}

// options sends an OPTIONS to the node itself (no user part: answered
// by the local layer without digest) and returns its final response, nil
// when none came within within.
func (u *sipUA) options(node netip.AddrPort, within time.Duration) *sip.Response {
	u.t.Helper()
	d := u.p.NewDialog(node, "sip:"+node.String())
	return u.final(d.Send("OPTIONS", nil, ""), within)
}

// registerDialog is the REGISTER "dialog" (Call-ID, From tag, CSeq) of the
// user's AOR, sent to node.
func (u *sipUA) registerDialog(node netip.AddrPort) *siptest.Dialog {
	d := u.p.NewDialog(node, "sip:"+clusterDomain)
	d.LocalURI, d.RemoteURI = u.aor(), u.aor()
	return d
}

// sendRegister sends the next REGISTER of d binding the peer's address for
// 60 s, with the credentials line authz if not empty.
func (u *sipUA) sendRegister(d *siptest.Dialog, authz string) *sip.Request {
	u.t.Helper()
	hs := []string{u.p.Contact(), "Expires: 60"}
	if authz != "" {
		hs = append(hs, authz)
	}
	return d.Send("REGISTER", hs, "")
}

// register registers the peer's address for the user through node,
// answering the 401 with pass, and returns the final response.
func (u *sipUA) register(node netip.AddrPort, pass string) *sip.Response {
	u.t.Helper()
	d := u.registerDialog(node)
	res := u.mustFinal(u.sendRegister(d, ""), 5*time.Second)
	if res.StatusCode != 401 {
		u.t.Fatalf("REGISTER without credentials through %s: %d, want 401", node, res.StatusCode)
	}
	chal := md5Challenge(u.t, res, "WWW-Authenticate")
	return u.mustFinal(u.sendRegister(d, credentials("Authorization", chal, u.user, pass, "REGISTER", d.Target)), 5*time.Second)
}

// inviteAuth sends an INVITE for ruri to node, acknowledges the 407 and
// sends the INVITE again with credentials (pass); it returns the dialog
// and that second INVITE, whose answer the caller waits for (finish).
func (u *sipUA) inviteAuth(node netip.AddrPort, ruri, pass string) (*siptest.Dialog, *sip.Request) {
	u.t.Helper()
	d := u.p.NewDialog(node, ruri)
	d.LocalURI = u.aor()
	sdp := clusterSDP(u.p.Addr())
	res := u.mustFinal(d.Send("INVITE", nil, sdp), 5*time.Second)
	if res.StatusCode != 407 {
		u.t.Fatalf("INVITE %s without credentials through %s: %d, want 407", ruri, node, res.StatusCode)
	}
	d.AckFailure(res)
	chal := md5Challenge(u.t, res, "Proxy-Authenticate")
	inv := d.Send("INVITE", []string{credentials("Proxy-Authorization", chal, u.user, pass, "INVITE", ruri)}, sdp)
	return d, inv
}

// finish waits for the final response to inv and acknowledges it.
func (u *sipUA) finish(d *siptest.Dialog, inv *sip.Request, within time.Duration) *sip.Response {
	u.t.Helper()
	res := u.mustFinal(inv, within)
	if res.IsSuccess() {
		d.Learn(res)
		d.Ack(nil, "")
	} else {
		d.AckFailure(res)
	}
	return res
}

// call places an authenticated call to ruri through node and returns the
// dialog and the final answer (acknowledged).
func (u *sipUA) call(node netip.AddrPort, ruri, pass string) (*siptest.Dialog, *sip.Response) {
	u.t.Helper()
	d, inv := u.inviteAuth(node, ruri, pass)
	return d, u.finish(d, inv, 10*time.Second)
}

// hangup sends BYE in d and wants 200.
func (u *sipUA) hangup(d *siptest.Dialog) {
	u.t.Helper()
	if res := u.mustFinal(d.Send("BYE", nil, ""), 5*time.Second); res.StatusCode != 200 {
		u.t.Errorf("BYE: %d, want 200", res.StatusCode)
	}
}

// clusterSDP is a minimal audio offer or answer from ap's address.
func clusterSDP(ap netip.AddrPort) string {
	ip := ap.Addr().String()
	return "v=0\r\no=- 1 1 IN IP4 " + ip + "\r\ns=-\r\nc=IN IP4 " + ip + "\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
}

// md5Challenge is the MD5 challenge among res's header values.
func md5Challenge(t *testing.T, res *sip.Response, header string) string {
	t.Helper()
	var all []string
	for _, h := range res.GetHeaders(header) {
		if strings.Contains(h.Value(), "algorithm=MD5") {
			return h.Value()
		}
		all = append(all, h.Value())
	}
	t.Fatalf("%d response without an MD5 %s among %q", res.StatusCode, header, all)
	return ""
}

// credentials is the header line (Authorization or Proxy-Authorization)
// answering chal.
func credentials(header, chal, user, pass, method, uri string) string {
	line := strings.TrimSuffix(digestMD5(chal, user, pass, method, uri), "\r\n")
	return header + strings.TrimPrefix(line, "Authorization")
}

// challengeNonce is the nonce of a digest challenge.
func challengeNonce(chal string) string {
	for _, m := range paramRE.FindAllStringSubmatch(strings.TrimPrefix(chal, "Digest "), -1) {
		if m[1] == "nonce" {
			return m[2]
		}
	}
	return ""
}

// waitFor polls cond every 10 ms until it holds or d has passed, and
// reports whether it held.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readyz is GET /readyz of a node: its status code and reason.
func readyz(t *testing.T, a *app) (int, string) {
	t.Helper()
	var rz struct {
		Ready  bool   `json:"ready"`
		Reason string `json:"reason"`
	}
	code, body := apiCall(t, a, http.MethodGet, "/readyz", "", nil)
	if err := json.Unmarshal(body, &rz); err != nil {
		t.Fatalf("GET /readyz: %v: %s", err, body)
	}
	if rz.Ready != (code == http.StatusOK) {
		t.Fatalf("GET /readyz: status %d but ready %v", code, rz.Ready)
	}
	return code, rz.Reason
}

// sharedStore is the shared_store section of a node's GET /api/status.
func sharedStore(t *testing.T, a *app) map[string]any {
	t.Helper()
	var st map[string]any
	apiJSON(t, a, http.MethodGet, "/api/status", "", nil, http.StatusOK, &st)
	ss, ok := st["shared_store"].(map[string]any)
	if !ok {
		t.Fatalf("GET /api/status has no shared_store section: %v", st)
	}
	return ss
}

// TestClusterRegisterAThenCallThroughB: alice registers through node A; a
// call to her placed through node B, which holds no binding of its own,
// reaches her phone: B finds A's binding in Redis.
func TestClusterRegisterAThenCallThroughB(t *testing.T) {
	c := startCluster(t)
	a, b := c.nodes[0], c.nodes[1]
	phone := newUA(t, "127.0.0.20", "alice")
	if res := phone.register(a.addr, "demo"); res.StatusCode != 200 {
		t.Fatalf("alice's REGISTER through %s: %d, want 200", a.name, res.StatusCode)
	}
	if aors, _ := b.app.reg.Count(); aors != 0 {
		t.Fatalf("%s holds %d AORs of its own before any lookup, want 0 (alice registered through %s)", b.name, aors, a.name)
	}

	bob := newUA(t, "127.0.0.21", "bob")
	ruri := "sip:alice@" + b.addr.String()
	d, inv := bob.inviteAuth(b.addr, ruri, "demo")
	in := phone.p.ExpectRequest("INVITE", 5*time.Second)
	if in.Source() != b.addr.String() {
		t.Errorf("alice's phone got the INVITE from %s, want it from %s (the node the call came through)", in.Source(), b.addr)
	}
	if want := "sip:alice@" + phone.p.Addr().String(); in.Recipient.String() != want {
		t.Errorf("INVITE to the phone for %s, want its registered Contact %s", in.Recipient.String(), want)
	}
	phone.p.ReplyBody(in, 200, "OK", clusterSDP(phone.p.Addr()))
	if res := bob.finish(d, inv, 5*time.Second); res.StatusCode != 200 {
		t.Fatalf("bob's call to alice through %s: %d, want 200 (answered by her phone)", b.name, res.StatusCode)
	}
	phone.p.ExpectRequest("ACK", 5*time.Second)
	bye := d.Send("BYE", nil, "")
	phone.p.Reply(phone.p.ExpectRequest("BYE", 5*time.Second), 200, "OK")
	if res := bob.mustFinal(bye, 5*time.Second); res.StatusCode != 200 {
		t.Errorf("BYE: %d, want 200", res.StatusCode)
	}

	bs := b.app.reg.Lookup("alice@" + clusterDomain)
	if len(bs) != 1 || bs[0].Node != a.name || bs[0].Peer != phone.p.Addr().String() {
		t.Fatalf("alice's bindings as %s sees them: %+v; want one, from %s, registered through %s", b.name, bs, phone.p.Addr(), a.name)
	}
	if n := b.app.reg.Stats().Located.Load(); n < 1 {
		t.Errorf("%s's registrar located %d calls, want at least 1", b.name, n)
	}
}

// TestClusterBanReachesAllNodes: wrong passwords to node A's challenges from
// one address, up to bans.threshold, ban it on A; within a second it is
// banned on B and C too (ban store and admin API), and they no longer
// answer it.
func TestClusterBanReachesAllNodes(t *testing.T) {
	c := startCluster(t)
	a := c.nodes[0]
	atk := newUA(t, "127.0.0.22", "alice")
	ip := atk.p.Addr().Addr()
	for _, n := range c.nodes {
		if res := atk.options(n.addr, 2*time.Second); res == nil || res.StatusCode != 200 {
			t.Fatalf("OPTIONS from %s to %s before the attack: %v, want 200", ip, n.name, res)
		}
	}

	threshold := a.app.cfg.Bans.Threshold
	d := atk.registerDialog(a.addr)
	res := atk.mustFinal(atk.sendRegister(d, ""), 5*time.Second)
	for i := range threshold {
		if res.StatusCode != 401 {
			t.Fatalf("attempt %d through %s: %d, want 401", i, a.name, res.StatusCode)
		}
		chal := md5Challenge(t, res, "WWW-Authenticate")
		req := atk.sendRegister(d, credentials("Authorization", chal, "alice", fmt.Sprintf("guess-%d", i), "REGISTER", d.Target))
		if i < threshold-1 {
			res = atk.mustFinal(req, 5*time.Second)
		}
	}
	if !waitFor(2*time.Second, func() bool { _, ok := a.app.sec.bans.Banned(ip); return ok }) {
		t.Fatalf("%s did not ban %s after %d wrong passwords (bans.threshold)", a.name, ip, threshold)
	}
	bannedAt := time.Now()
	for _, n := range c.nodes[1:] {
		if !waitFor(time.Until(bannedAt.Add(time.Second)), func() bool { _, ok := n.app.sec.bans.Banned(ip); return ok }) {
			t.Fatalf("%s not banned on %s within 1 s of the ban on %s", ip, n.name, a.name)
		}
	}
	t.Logf("banned on every node %s after the ban on %s", time.Since(bannedAt).Round(time.Millisecond), a.name)

	host := netip.PrefixFrom(ip, 32).String()
	for _, n := range c.nodes {
		e, ok := findBan(t, n.app, host)
		if !ok || e.Reason != ban.ReasonAuthFailures || !e.Until.After(time.Now().Add(30*time.Minute)) {
			t.Errorf("GET /api/bans on %s: %s %+v (listed %v); want it banned for auth failures, for about bans.ban_time", n.name, host, e, ok)
		}
	}
	// Nothing from the address is answered any more, on any node.
	for _, n := range c.nodes[1:] {
		if res := atk.options(n.addr, time.Second); res != nil {
			t.Errorf("OPTIONS from banned %s to %s answered %d, want no answer", ip, n.name, res.StatusCode)
		}
	}
	// Lifted on B, the ban is lifted everywhere.
	unbanAt := time.Now()
	apiJSON(t, c.nodes[1].app, http.MethodDelete, "/api/bans?prefix="+host, "", nil, http.StatusOK, nil)
	for _, n := range []*clusterNode{c.nodes[0], c.nodes[2]} {
		if !waitFor(time.Until(unbanAt.Add(time.Second)), func() bool { _, ok := n.app.sec.bans.Banned(ip); return !ok }) {
			t.Fatalf("%s still banned on %s 1 s after %s lifted the ban", ip, n.name, c.nodes[1].name)
		}
	}
	if res := atk.options(a.addr, 2*time.Second); res == nil || res.StatusCode != 200 {
		t.Errorf("OPTIONS from %s to %s after the unban on %s: %v, want 200", ip, a.name, c.nodes[1].name, res)
	}
	if v := metricValue(scrape(t, a.app, ""), "sipwall_store_shared_ban_events_total", map[string]string{"direction": "published"}); v < 1 {
		t.Errorf("%s: sipwall_store_shared_ban_events_total{direction=published} = %v, want at least 1", a.name, v)
	}
	for _, n := range c.nodes[1:] {
		if v := metricValue(scrape(t, n.app, ""), "sipwall_store_shared_ban_events_total", map[string]string{"direction": "received"}); v < 1 {
			t.Errorf("%s: sipwall_store_shared_ban_events_total{direction=received} = %v, want at least 1", n.name, v)
		}
	}
}

// TestClusterNonceAcrossNodes: a nonce node A issued is accepted by node B
// (one nonce key ring for the fleet), still only from the address it was
// issued to.
func TestClusterNonceAcrossNodes(t *testing.T) {
	c := startCluster(t)
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
	phone := newUA(t, "127.0.0.23", "alice")
	d := phone.registerDialog(a.addr)
	res := phone.mustFinal(phone.sendRegister(d, ""), 5*time.Second)
	if res.StatusCode != 401 {
		t.Fatalf("REGISTER without credentials through %s: %d, want 401", a.name, res.StatusCode)
	}
	chal := md5Challenge(t, res, "WWW-Authenticate")
	authz := credentials("Authorization", chal, "alice", "demo", "REGISTER", d.Target)

	// The same answer from another address, to C: the nonce is bound to
	// the address it was issued to, on every node.
	other := newUA(t, "127.0.0.24", "alice")
	od := other.registerDialog(cc.addr)
	if res := other.mustFinal(other.sendRegister(od, authz), 5*time.Second); res.StatusCode != 401 {
		t.Errorf("%s's nonce answered from %s to %s: %d, want 401 (issued to %s)", a.name, other.p.Addr().Addr(), cc.name, res.StatusCode, phone.p.Addr().Addr())
	}

	d.Dest = b.addr
	res = phone.mustFinal(phone.sendRegister(d, authz), 5*time.Second)
	if res.StatusCode != 200 {
		t.Fatalf("answer to %s's challenge (nonce %s) sent to %s: %d %s, want 200", a.name, challengeNonce(chal), b.name, res.StatusCode, res.Reason)
	}
	if h := res.GetHeaders("WWW-Authenticate"); len(h) != 0 {
		t.Errorf("%s's 200 carries a new challenge: %v", b.name, h)
	}
	bs := b.app.reg.Lookup("alice@" + clusterDomain)
	if len(bs) != 1 || bs[0].Node != b.name {
		t.Errorf("alice's bindings: %+v; want one, registered through %s", bs, b.name)
	}
}

// TestClusterFraudCountedAcrossNodes: with calls_per_minute critical 4
// (reject 603) for every user, alice's first three calls, one through each
// node, are allowed and answered; the fourth and fifth, through A and B,
// are refused with the rule's status: the fleet counts once. With Redis
// down, a new call is refused with 503 (fail_closed: [fraud], the default).
func TestClusterFraudCountedAcrossNodes(t *testing.T) {
	const limit = 4
	rulesFile := filepath.Join(t.TempDir(), "fraud.yaml")
	writePolicyFile(t, rulesFile, fmt.Sprintf(`rule_sets:
  - name: phones
    applies_to: {users: ["*"]}
    rules:
      - {name: burst, measure: calls_per_minute, per: user, critical: %d, action: reject, status: 603}
`, limit))
	c := startCluster(t, func(cfg *config.Config) { cfg.Rules.File = rulesFile })
	// calls_per_minute weighs the previous minute by its overlap: calls
	// split by a minute boundary count a little less than they are. Keep
	// the calls inside one minute.
	if s := time.Now().Second(); s >= 55 {
		time.Sleep(time.Duration(60-s)*time.Second + 200*time.Millisecond)
	}
	alice := newUA(t, "127.0.0.25", "alice")
	order := []*clusterNode{c.nodes[0], c.nodes[1], c.nodes[2], c.nodes[0], c.nodes[1]}
	for i, n := range order {
		d, res := alice.call(n.addr, "sip:1000@"+n.addr.String(), "demo")
		if i < limit-1 {
			if res.StatusCode != 200 {
				t.Fatalf("call %d through %s: %d %s, want 200 (under the limit of %d)", i+1, n.name, res.StatusCode, res.Reason, limit)
			}
			alice.hangup(d)
			continue
		}
		if res.StatusCode != 603 {
			t.Fatalf("call %d through %s: %d %s, want 603 from the fraud rule (calls_per_minute %d reached across the nodes)",
				i+1, n.name, res.StatusCode, res.Reason, limit)
		}
	}
	for _, n := range order[limit-1:] {
		if st := n.app.fraud.Stats(); st.Rejected < 1 {
			t.Errorf("%s's fraud engine rejected %d calls, want at least 1", n.name, st.Rejected)
		}
	}

	// Without Redis the fleet cannot count: fail_closed lists fraud (the
	// default), so a new call of a user under rules is refused with 503.
	c.redis.Stop()
	bob := newUA(t, "127.0.0.30", "bob")
	n := c.nodes[2]
	if _, res := bob.call(n.addr, "sip:1000@"+n.addr.String(), "demo"); res.StatusCode != 503 || res.Reason != "Fraud Counters Unavailable" {
		t.Errorf("bob's call through %s with Redis down: %d %s, want 503 Fraud Counters Unavailable", n.name, res.StatusCode, res.Reason)
	}
}

// TestClusterNodeDown: alice registers through A, A stops; her binding is
// still served: B finds it, and a call through B reaches her phone.
func TestClusterNodeDown(t *testing.T) {
	c := startCluster(t)
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
	phone := newUA(t, "127.0.0.26", "alice")
	if res := phone.register(a.addr, "demo"); res.StatusCode != 200 {
		t.Fatalf("alice's REGISTER through %s: %d, want 200", a.name, res.StatusCode)
	}
	a.stop()
	probe := newUA(t, "127.0.0.27", "probe")
	if res := probe.options(a.addr, 500*time.Millisecond); res != nil {
		t.Fatalf("%s answered OPTIONS (%d) after it stopped", a.name, res.StatusCode)
	}

	if bs := cc.app.reg.Lookup("alice@" + clusterDomain); len(bs) != 1 || bs[0].Node != a.name {
		t.Errorf("alice's bindings as %s sees them with %s down: %+v; want the one registered through %s", cc.name, a.name, bs, a.name)
	}
	bob := newUA(t, "127.0.0.28", "bob")
	d, inv := bob.inviteAuth(b.addr, "sip:alice@"+b.addr.String(), "demo")
	in := phone.p.ExpectRequest("INVITE", 5*time.Second)
	if in.Source() != b.addr.String() {
		t.Errorf("the phone got the INVITE from %s, want %s", in.Source(), b.addr)
	}
	phone.p.ReplyBody(in, 200, "OK", clusterSDP(phone.p.Addr()))
	if res := bob.finish(d, inv, 5*time.Second); res.StatusCode != 200 {
		t.Fatalf("call to alice through %s with %s down: %d, want 200", b.name, a.name, res.StatusCode)
	}
	phone.p.ExpectRequest("ACK", 5*time.Second)
	bye := d.Send("BYE", nil, "")
	phone.p.Reply(phone.p.ExpectRequest("BYE", 5*time.Second), 200, "OK")
	if res := bob.mustFinal(bye, 5*time.Second); res.StatusCode != 200 {
		t.Errorf("BYE: %d, want 200", res.StatusCode)
	}
}

// TestClusterRedisRestart: with Redis down the nodes keep serving (OPTIONS,
// REGISTER) and report not ready (fail_closed defaults to [fraud]); a ban
// made on A meanwhile waits in A's queue and reaches B and C once Redis is
// back, and every node is ready again.
func TestClusterRedisRestart(t *testing.T) {
	c := startCluster(t)
	a := c.nodes[0]
	for _, n := range c.nodes {
		if code, why := readyz(t, n.app); code != http.StatusOK {
			t.Fatalf("%s /readyz %d (%s) with Redis up, want 200", n.name, code, why)
		}
		if ss := sharedStore(t, n.app); ss["up"] != true || ss["node"] != n.name || ss["backend"] != config.BackendRedis {
			t.Fatalf("%s shared_store %v, want up, node %s, backend redis", n.name, ss, n.name)
		}
	}

	c.redis.Stop()
	const wantWhy = "shared store unreachable (fail_closed: fraud)"
	for _, n := range c.nodes {
		var code int
		var why string
		if !waitFor(5*time.Second, func() bool { code, why = readyz(t, n.app); return code == http.StatusServiceUnavailable }) {
			t.Fatalf("%s /readyz %d (%s) 5 s after Redis stopped, want 503", n.name, code, why)
		}
		if why != wantWhy {
			t.Errorf("%s /readyz reason %q, want %q", n.name, why, wantWhy)
		}
	}
	// Still serving from local state.
	ua := newUA(t, "127.0.0.29", "bob")
	for _, n := range c.nodes {
		if res := ua.options(n.addr, 2*time.Second); res == nil || res.StatusCode != 200 {
			t.Errorf("OPTIONS to %s with Redis down: %v, want 200", n.name, res)
		}
	}
	if res := ua.register(c.nodes[1].addr, "demo"); res.StatusCode != 200 {
		t.Errorf("REGISTER through %s with Redis down: %d, want 200 (fail_closed does not list registrations)", c.nodes[1].name, res.StatusCode)
	}

	const prefix = "198.51.100.7/32"
	target := netip.MustParseAddr("198.51.100.7")
	apiJSON(t, a.app, http.MethodPost, "/api/bans", "", banRequest{Prefix: prefix, Duration: "1h", Evidence: "while redis was down"}, http.StatusOK, nil)
	if _, ok := a.app.sec.bans.Banned(target); !ok {
		t.Fatalf("%s not banned on %s itself", prefix, a.name)
	}
	if ss := sharedStore(t, a.app); ss["up"] != false || ss["queued"] != float64(1) {
		t.Errorf("%s shared_store with Redis down after a ban: %v; want up false, queued 1", a.name, ss)
	}
	fams := scrape(t, a.app, "")
	if v := metricValue(fams, "sipwall_store_shared_up", nil); v != 0 {
		t.Errorf("%s: sipwall_store_shared_up = %v with Redis down, want 0", a.name, v)
	}
	if v := metricValue(fams, "sipwall_store_shared_queued", nil); v != 1 {
		t.Errorf("%s: sipwall_store_shared_queued = %v, want 1", a.name, v)
	}
	for _, n := range c.nodes[1:] {
		if _, ok := n.app.sec.bans.Banned(target); ok {
			t.Fatalf("%s banned on %s while Redis is down: it cannot have come through Redis", prefix, n.name)
		}
	}

	c.redis.Restart()
	restarted := time.Now()
	for _, n := range c.nodes[1:] {
		if !waitFor(5*time.Second, func() bool { _, ok := n.app.sec.bans.Banned(target); return ok }) {
			t.Fatalf("%s, banned on %s while Redis was down, not banned on %s 5 s after Redis came back", prefix, a.name, n.name)
		}
		if e, ok := findBan(t, n.app, prefix); !ok || e.Evidence != "while redis was down" {
			t.Errorf("GET /api/bans on %s: %+v (listed %v), want the ban from %s", n.name, e, ok, a.name)
		}
	}
	t.Logf("the queued ban reached every node %s after Redis came back", time.Since(restarted).Round(time.Millisecond))
	for _, n := range c.nodes {
		var code int
		var why string
		if !waitFor(5*time.Second, func() bool { code, why = readyz(t, n.app); return code == http.StatusOK }) {
			t.Errorf("%s /readyz %d (%s) 5 s after Redis came back, want 200", n.name, code, why)
		}
	}
	if !waitFor(2*time.Second, func() bool { ss := sharedStore(t, a.app); return ss["up"] == true && ss["queued"] == float64(0) }) {
		t.Errorf("%s shared_store after Redis came back: %v; want up and nothing queued", a.name, sharedStore(t, a.app))
	}
	if _, ok := a.app.sec.bans.Banned(target); !ok {
		t.Errorf("%s no longer banned on %s after Redis came back", prefix, a.name)
	}
	// bob registered through B while Redis was down: B writes his binding
	// back when Redis returns, so C finds it without waiting for his
	// next refresh.
	b, cc := c.nodes[1], c.nodes[2]
	var bs []registrar.Binding
	if !waitFor(3*time.Second, func() bool { bs = cc.app.reg.Lookup("bob@" + clusterDomain); return len(bs) == 1 }) {
		t.Errorf("bob's bindings as %s sees them 3 s after Redis came back: %+v; want the one registered through %s during the outage", cc.name, bs, b.name)
	} else if bs[0].Node != b.name {
		t.Errorf("bob's binding on %s names node %q, want %q", cc.name, bs[0].Node, b.name)
	}
}

// TestClusterRegisterGate: with fail_closed [fraud, registrations] and
// Redis down, a phone's REGISTER is refused with 503 and Retry-After
// (its binding would live on one node only) and readiness names both
// kinds; a REGISTER from the inside (the PBX registering at its trunk),
// which stores nothing, still passes to the trunk. Once Redis is back
// phones register again.
func TestClusterRegisterGate(t *testing.T) {
	trunk := siptest.NewPeer(t, "127.0.0.12:0")
	c := startCluster(t, func(cfg *config.Config) {
		cfg.Store.Redis.FailClosed = []string{config.FailClosedFraud, config.FailClosedRegistrations}
		cfg.Outbound = &config.Outbound{URI: "sip:" + trunk.Addr().String()}
	})
	a := c.nodes[0]
	phone := newUA(t, "127.0.0.31", "alice")
	if res := phone.register(a.addr, "demo"); res.StatusCode != 200 {
		t.Fatalf("REGISTER through %s with Redis up: %d, want 200", a.name, res.StatusCode)
	}
	// The PBX (an upstream's address: inside, no digest) registering at
	// its trunk through the node.
	pbx := &insidePBX{ua: newUA(t, c.pbx.Addr("udp").Addr().String(), "pbx"), trunk: trunk}
	if res := pbx.registerAtTrunk(a.addr); res == nil || res.StatusCode != 200 {
		t.Fatalf("the PBX's REGISTER through %s with Redis up: %v; want it relayed to the trunk and its 200 back", a.name, res)
	}

	c.redis.Stop()
	if !waitFor(5*time.Second, func() bool { return !a.app.shared.Healthy() }) {
		t.Fatalf("%s still reports the shared store healthy 5 s after Redis stopped", a.name)
	}
	if code, why := readyz(t, a.app); code != http.StatusServiceUnavailable || why != "shared store unreachable (fail_closed: fraud, registrations)" {
		t.Errorf("%s /readyz with Redis down: %d %q; want 503 naming fraud and registrations", a.name, code, why)
	}
	d := phone.registerDialog(a.addr)
	res := phone.mustFinal(phone.sendRegister(d, ""), 5*time.Second)
	if res.StatusCode != 401 {
		t.Fatalf("REGISTER without credentials with Redis down: %d, want 401 (the digest layer comes first)", res.StatusCode)
	}
	chal := md5Challenge(t, res, "WWW-Authenticate")
	res = phone.mustFinal(phone.sendRegister(d, credentials("Authorization", chal, "alice", "demo", "REGISTER", d.Target)), 5*time.Second)
	if ra := res.GetHeader("Retry-After"); res.StatusCode != 503 || ra == nil || ra.Value() != "30" {
		t.Errorf("phone's REGISTER with Redis down and fail_closed registrations: %d %s (Retry-After %v), want 503 with Retry-After 30", res.StatusCode, res.Reason, ra)
	}

	// The PBX registers at its trunk through the node (as it did with
	// Redis up): nothing of it is stored or shared, it must pass.
	if res := pbx.registerAtTrunk(a.addr); res == nil || res.StatusCode != 200 {
		t.Errorf("the PBX's REGISTER (from the inside) through %s with Redis down: %v; want it relayed to the trunk and its 200 back: the registrations gate must refuse only phones' REGISTERs", a.name, res)
	}

	c.redis.Restart()
	if !waitFor(5*time.Second, func() bool { return a.app.shared.Healthy() }) {
		t.Fatalf("%s does not report the shared store healthy 5 s after Redis came back", a.name)
	}
	if res := phone.register(a.addr, "demo"); res.StatusCode != 200 {
		t.Errorf("REGISTER through %s after Redis came back: %d, want 200", a.name, res.StatusCode)
	}
}

// insidePBX is a peer on the upstream's address registering at the
// outbound trunk through a node.
type insidePBX struct {
	ua    *sipUA
	trunk *siptest.Peer
}

// registerAtTrunk sends a REGISTER from the inside to node; when it
// reaches the trunk, the trunk answers 200. It returns the PBX's final
// response (nil: none).
func (p *insidePBX) registerAtTrunk(node netip.AddrPort) *sip.Response {
	t := p.ua.t
	t.Helper()
	d := p.ua.p.NewDialog(node, "sip:trunk.test")
	d.LocalURI, d.RemoteURI = "sip:pbx@trunk.test", "sip:pbx@trunk.test"
	// A Contact naming no inside address: the topology guard blocks
	// messages to the outside that show one.
	req := d.Send("REGISTER", []string{"Contact: <sip:pbx@pbx.example.net>", "Expires: 300"}, "")
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		msg, err := p.trunk.Recv(time.Until(deadline))
		if err != nil {
			break
		}
		if r, ok := msg.(*sip.Request); ok && r.Method == sip.REGISTER {
			p.trunk.Reply(r, 200, "OK")
			break
		}
	}
	return p.ua.final(req, 2*time.Second)
}
