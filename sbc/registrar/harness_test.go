package registrar_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/b2bua"
	"github.com/sipwall/sipwall/sbc/registrar"
	"github.com/sipwall/sipwall/sbc/siptest"
	"github.com/sipwall/sipwall/sbc/store"
	"github.com/sipwall/sipwall/sbc/upstream"
)

// Timers shrunk so transaction timeouts (Timer F for an unanswered
// REGISTER) take about a second.
const (
	testT1 = 20 * time.Millisecond
	testT2 = 160 * time.Millisecond
	testT4 = 200 * time.Millisecond
)

// Bounds of waits: one message on loopback, and silence.
const (
	wait  = 3 * time.Second
	quiet = 150 * time.Millisecond
)

// Parties, all in 127.0.0.0/8; the SBC is on 127.0.0.1.
const (
	phoneIP  = "127.0.0.5"
	pbxIP    = "127.0.0.6"
	phone2IP = "127.0.0.7"
)

func TestMain(m *testing.M) {
	siptest.ShortTimers(testT1, testT2, testT4)
	sip.SetDefaultLogger(testLogger())
	os.Exit(m.Run())
}

func testLogger() *slog.Logger { return siptest.Logger() }

// clock is a settable clock shared by the registrar and the store, so
// expiry is tested without sleeping.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// harness is an in-process SBC wired like cmd/sipwall's start(): UDP and
// TCP listeners on 127.0.0.1, the PBX peer as the one upstream, the chain
// local + registrar + b2bua, Locate passed to the B2BUA.
type harness struct {
	Server *sbc.Server
	Reg    *registrar.Registrar
	B2B    *b2bua.B2BUA
	Store  *store.Store
	Clock  *clock
	UDP    netip.AddrPort
	TCP    netip.AddrPort
	dir    string
	cfg    registrar.Config
	stop   func()
}

// relayConfig is the registrar policy of the tests: the configuration
// file's defaults, with one domain.
func relayConfig() registrar.Config {
	return registrar.Config{
		Mode:              registrar.ModeRelay,
		Domains:           []string{"example.com"},
		MinExpires:        60 * time.Second,
		MaxExpires:        time.Hour,
		PhoneExpires:      60 * time.Second,
		UpstreamExpires:   time.Hour,
		RefreshPercent:    50,
		MaxBindings:       5,
		MaxAORs:           100,
		OtherDomainStatus: 403,
	}
}

func localConfig() registrar.Config {
	c := relayConfig()
	c.Mode = registrar.ModeLocal
	c.Users = []string{"alice", "bob"}
	return c
}

// startSBC starts an SBC with the given registrar policy and the PBX peer
// (nil: no upstream) as its upstream. dir is the store directory; "" makes
// a fresh one.
func startSBC(t *testing.T, cfg registrar.Config, pbx *siptest.Peer, dir string, clk *clock) *harness {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	if clk == nil {
		clk = newClock()
	}
	log := testLogger()
	st, err := store.Open(dir, store.WithClock(clk.Now), store.WithNoSync())
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	var targets []upstream.Target
	if pbx != nil {
		tg, err := upstream.ParseTarget("pbx", "sip:"+pbx.Addr().String(), 1, 1)
		if err != nil {
			t.Fatal(err)
		}
		targets = append(targets, tg)
	}
	pool := upstream.New(targets, upstream.Options{Logger: log})
	var b2bRef atomic.Pointer[b2bua.B2BUA]
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
		Logger: log,
	})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	rc := cfg
	rc.Client, rc.Endpoint, rc.Pool, rc.Store = srv.Client(), srv, pool, st
	rc.Logger, rc.Now = log, clk.Now
	reg, err := registrar.New(rc)
	if err != nil {
		t.Fatalf("registrar.New: %v", err)
	}
	b2b := b2bua.New(b2bua.Config{Client: srv.Client(), Endpoint: srv, Pool: pool, Locate: reg.Locate, Logger: log})
	b2bRef.Store(b2b)
	chain, err := sbc.BuildChain(map[string]sbc.Handler{"local": sbc.Local{}, "registrar": reg, "b2bua": b2b})
	if err != nil {
		t.Fatal(err)
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
	h := &harness{Server: srv, Reg: reg, B2B: b2b, Store: st, Clock: clk, dir: dir, cfg: cfg}
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			srv.Close()
			select {
			case <-runDone:
			case <-time.After(10 * time.Second):
				t.Errorf("B2BUA.Run did not return within 10s")
			}
			_ = st.Close()
		})
	}
	t.Cleanup(h.stop)
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

// restart stops the SBC and starts a new one on the same store directory
// and clock (new ports).
func (h *harness) restart(t *testing.T, pbx *siptest.Peer) *harness {
	t.Helper()
	h.stop()
	return startSBC(t, h.cfg, pbx, h.dir, h.Clock)
}

// dump is the store's registrar bucket as text, to show nothing changed.
func (h *harness) dump(t *testing.T) string {
	t.Helper()
	b, err := store.NewBucket[map[string]any](h.Store, registrar.BucketName)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	err = b.ForEach(func(k string, v map[string]any, exp time.Time) error {
		fmt.Fprintf(&sb, "%s %v %v\n", k, v, exp)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

// register describes one REGISTER a phone sends.
type register struct {
	aor     string // user@host of To and From; default alice@example.com
	ruri    string // default sip:example.com
	callID  string
	cseq    int
	contact []string // Contact header values; nil: the peer's own
	expires string   // Expires header; "" none
	extra   []string
}

// sendRegister sends a REGISTER from p to the SBC's UDP listener.
func sendRegister(t *testing.T, p *siptest.Peer, to netip.AddrPort, r register) {
	t.Helper()
	p.SendRaw(to, registerMsg(p.Addr(), "UDP", r))
}

func registerMsg(from netip.AddrPort, tr string, r register) []byte {
	if r.aor == "" {
		r.aor = "alice@example.com"
	}
	if r.ruri == "" {
		r.ruri = "sip:example.com"
	}
	if r.cseq == 0 {
		r.cseq = 1
	}
	lines := []string{
		"REGISTER " + r.ruri + " SIP/2.0",
		"Via: SIP/2.0/" + tr + " " + from.String() + ";branch=" + siptest.NewBranch() + ";rport",
		"Max-Forwards: 70",
		"From: <sip:" + r.aor + ">;tag=ph" + strconv.Itoa(int(from.Port())),
		"To: <sip:" + r.aor + ">",
		"Call-ID: " + r.callID,
		"CSeq: " + strconv.Itoa(r.cseq) + " REGISTER",
	}
	contacts := r.contact
	if contacts == nil {
		user, _, _ := strings.Cut(r.aor, "@")
		contacts = []string{"<sip:" + user + "@192.168.1.10:5060>"}
	}
	for _, c := range contacts {
		lines = append(lines, "Contact: "+c)
	}
	if r.expires != "" {
		lines = append(lines, "Expires: "+r.expires)
	}
	lines = append(lines, r.extra...)
	lines = append(lines, "Content-Length: 0", "", "")
	return []byte(strings.Join(lines, "\r\n"))
}

// pbxAnswer answers a REGISTER at the PBX with 200 echoing its Contacts.
func pbxAnswer(t *testing.T, pbx *siptest.Peer, req *sip.Request) {
	t.Helper()
	var extra []string
	for _, h := range req.GetHeaders("Contact") {
		extra = append(extra, "Contact: "+h.Value())
	}
	pbx.Reply(req, 200, "OK", extra...)
}

// registerRelayed runs a REGISTER through the SBC to the PBX and back; it
// returns what the PBX received and what the phone got.
func registerRelayed(t *testing.T, h *harness, phone, pbx *siptest.Peer, r register) (*sip.Request, *sip.Response) {
	t.Helper()
	sendRegister(t, phone, h.UDP, r)
	up := pbx.ExpectRequest("REGISTER", wait)
	pbxAnswer(t, pbx, up)
	return up, phone.ExpectResponse(200, wait)
}

// tokenOf is the user part of the (first) Contact the PBX got.
func tokenOf(t *testing.T, req *sip.Request) string {
	t.Helper()
	ct := req.Contact()
	if ct == nil {
		t.Fatalf("no Contact in %s", siptest.Describe(req))
	}
	return ct.Address.User
}

func contactExpires(t *testing.T, m sip.Message) []int {
	t.Helper()
	var out []int
	for _, h := range m.GetHeaders("Contact") {
		ct, ok := h.(*sip.ContactHeader)
		if !ok {
			t.Fatalf("Contact %q not parsed", h.Value())
		}
		v, _ := ct.Params.Get("expires")
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("Contact %q: expires %q", h.Value(), v)
		}
		out = append(out, n)
	}
	return out
}

func header(m sip.Message, name string) string {
	if hs := m.GetHeaders(name); len(hs) > 0 {
		return hs[0].Value()
	}
	return ""
}

func offerSDP(ip string) string {
	return "v=0\r\no=- 1 1 IN IP4 " + ip + "\r\ns=-\r\nc=IN IP4 " + ip + "\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=sendrecv\r\n"
}

// tcpPhone is a phone on a TCP connection it opened to the SBC: the flow
// the SBC must reuse to reach it.
type tcpPhone struct {
	t    *testing.T
	conn net.Conn
	rd   *bufio.Reader
}

func dialTCP(t *testing.T, from string, to netip.AddrPort) *tcpPhone {
	t.Helper()
	laddr, err := net.ResolveTCPAddr("tcp", from)
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{LocalAddr: laddr, Timeout: wait}
	c, err := d.Dial("tcp", to.String())
	if err != nil {
		t.Fatalf("dial %s: %v", to, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &tcpPhone{t: t, conn: c, rd: bufio.NewReader(c)}
}

func (p *tcpPhone) Addr() netip.AddrPort {
	return p.conn.LocalAddr().(*net.TCPAddr).AddrPort()
}

func (p *tcpPhone) Send(data []byte) {
	p.t.Helper()
	if _, err := p.conn.Write(data); err != nil {
		p.t.Fatalf("tcp write: %v", err)
	}
}

// Recv reads one message off the stream: headers to the empty line, then
// Content-Length bytes of body.
func (p *tcpPhone) Recv(timeout time.Duration) sip.Message {
	p.t.Helper()
	_ = p.conn.SetReadDeadline(time.Now().Add(timeout))
	var head strings.Builder
	length := 0
	for i := 0; i < 200; i++ {
		line, err := p.rd.ReadString('\n')
		if err != nil {
			p.t.Fatalf("tcp read: %v", err)
		}
		if strings.TrimSpace(line) == "" {
			if head.Len() == 0 {
				continue // a CRLF keepalive between messages
			}
			break
		}
		head.WriteString(line)
		if k, v, ok := strings.Cut(line, ":"); ok {
			k = strings.ToLower(strings.TrimSpace(k))
			if k == "content-length" || k == "l" {
				length, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(p.rd, body); err != nil {
		p.t.Fatalf("tcp read body: %v", err)
	}
	msg, err := sip.NewParser().ParseSIP([]byte(head.String() + "\r\n" + string(body)))
	if err != nil {
		p.t.Fatalf("tcp parse: %v\n%s", err, head.String())
	}
	return msg
}
