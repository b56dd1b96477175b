package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

const testTimeout = 10 * time.Second

// testLogger discards logs unless DEMO_PBX_LOG is set, which helps when a
// test needs debugging.
func testLogger() *slog.Logger {
	if os.Getenv("DEMO_PBX_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func fastOptions() Options {
	return Options{
		Logger:      testLogger(),
		RingDelay:   10 * time.Millisecond,
		HangupAfter: 200 * time.Millisecond,
	}
}

func startPBX(t *testing.T, opts Options) *PBX {
	t.Helper()
	p := New(opts)
	if err := p.Start(context.Background(), "127.0.0.1:0", "127.0.0.1:0"); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond every 10ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !cond() {
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

const offerSDP = "v=0\r\n" +
	"o=tester 1 1 IN IP4 127.0.0.1\r\n" +
	"s=test\r\n" +
	"c=IN IP4 127.0.0.1\r\n" +
	"t=0 0\r\n" +
	"m=audio 40000 RTP/AVP 0 8 101\r\n" +
	"a=rtpmap:0 PCMU/8000\r\n" +
	"a=rtpmap:8 PCMA/8000\r\n" +
	"a=rtpmap:101 telephone-event/8000\r\n" +
	"a=fmtp:101 0-16\r\n"

func offerWith(dir string) string {
	return offerSDP + "a=" + dir + "\r\n"
}

// sdpLines splits a body into lines without CRLF.
func sdpLines(body []byte) []string {
	return strings.Split(strings.TrimRight(string(body), "\r\n"), "\r\n")
}

func hasLine(body []byte, want string) bool {
	for _, l := range sdpLines(body) {
		if l == want {
			return true
		}
	}
	return false
}

// mediaAddr reads c= and the audio m= port from an SDP body.
func mediaAddr(t *testing.T, body []byte) *net.UDPAddr {
	t.Helper()
	var ip net.IP
	port := 0
	for _, l := range sdpLines(body) {
		if v, ok := strings.CutPrefix(l, "c=IN IP4 "); ok {
			ip = net.ParseIP(v)
		}
		if v, ok := strings.CutPrefix(l, "m=audio "); ok {
			port, _ = strconv.Atoi(strings.Fields(v)[0])
		}
	}
	if ip == nil || port == 0 {
		t.Fatalf("no media address in SDP:\n%s", body)
	}
	return &net.UDPAddr{IP: ip, Port: port}
}

// ---- sipgo based test phone ----

type phone struct {
	ua       *sipgo.UserAgent
	cli      *sipgo.Client
	byes     chan *sip.Request
	notifies chan *sip.Request
}

func newPhone(t *testing.T) *phone {
	t.Helper()
	log := testLogger()
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent("tester"),
		sipgo.WithUserAgentHostname("127.0.0.1"),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(log)),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(log)),
	)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	ph := &phone{ua: ua, cli: cli, byes: make(chan *sip.Request, 8), notifies: make(chan *sip.Request, 8)}
	answer := func(ch chan *sip.Request) sipgo.RequestHandler {
		return func(req *sip.Request, tx sip.ServerTransaction) {
			_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
			select {
			case ch <- req:
			default:
			}
		}
	}
	srv.OnBye(answer(ph.byes))
	srv.OnNotify(answer(ph.notifies))
	t.Cleanup(func() { _ = ua.Close() })
	return ph
}

func pbxURI(p *PBX, transport, user string) sip.Uri {
	a := p.Addr(transport)
	u := sip.Uri{Scheme: "sip", User: user, Host: a.Addr().String(), Port: int(a.Port())}
	if transport == "tcp" {
		u.UriParams = sip.NewParams()
		u.UriParams.Add("transport", "tcp")
	}
	return u
}

type call struct {
	ph          *phone
	invite      *sip.Request
	tx          sip.ClientTransaction
	provisional []int
	final       *sip.Response
	cseq        uint32
}

func (ph *phone) invite(t *testing.T, p *PBX, transport, ext, sdp string) *call {
	t.Helper()
	req := sip.NewRequest(sip.INVITE, pbxURI(p, transport, ext))
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "tester", Host: "127.0.0.1", Port: 5999}})
	if sdp != "" {
		ct := sip.ContentTypeHeader("application/sdp")
		req.AppendHeader(&ct)
		req.SetBody([]byte(sdp))
	} else {
		req.SetBody(nil)
	}
	tx, err := ph.cli.TransactionRequest(testCtx(t), req)
	if err != nil {
		t.Fatalf("INVITE %s over %s: %v", ext, transport, err)
	}
	t.Cleanup(tx.Terminate)
	return &call{ph: ph, invite: req, tx: tx, cseq: req.CSeq().SeqNo}
}

// waitFor reads responses until one with code arrives (or a final one).
func (c *call) waitFor(t *testing.T, code int) *sip.Response {
	t.Helper()
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	for {
		select {
		case res := <-c.tx.Responses():
			if res.IsProvisional() {
				c.provisional = append(c.provisional, res.StatusCode)
				if res.StatusCode == code {
					return res
				}
				continue
			}
			c.final = res
			if res.StatusCode != code {
				t.Fatalf("got %d %s, want %d", res.StatusCode, res.Reason, code)
			}
			return res
		case <-c.tx.Done():
			t.Fatalf("transaction ended waiting for %d: %v", code, c.tx.Err())
		case <-timer.C:
			t.Fatalf("no %d within %v", code, testTimeout)
		}
	}
}

// inDialog builds a request inside the call's dialog toward the PBX's
// Contact.
func (c *call) inDialog(method sip.RequestMethod) *sip.Request {
	req := sip.NewRequest(method, c.final.Contact().Address)
	req.AppendHeader(sip.HeaderClone(c.invite.From()))
	req.AppendHeader(sip.HeaderClone(c.final.To()))
	req.AppendHeader(sip.HeaderClone(c.invite.CallID()))
	seq := c.cseq
	if method != sip.ACK {
		c.cseq++
		seq = c.cseq
	}
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: method})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.HeaderClone(c.invite.Contact()))
	req.SetTransport(c.invite.Transport())
	return req
}

func (c *call) ack(t *testing.T) {
	t.Helper()
	if err := c.ph.cli.WriteRequest(c.inDialog(sip.ACK)); err != nil {
		t.Fatalf("ACK: %v", err)
	}
}

func (c *call) do(t *testing.T, req *sip.Request) *sip.Response {
	t.Helper()
	if req.Body() == nil {
		req.SetBody(nil)
	}
	res, err := c.ph.cli.Do(testCtx(t), req)
	if err != nil {
		t.Fatalf("%s: %v", req.Method, err)
	}
	return res
}

// reinvite sends an in-dialog INVITE with sdp, ACKs the 2xx and returns it.
func (c *call) reinvite(t *testing.T, sdp string) *sip.Response {
	t.Helper()
	req := c.inDialog(sip.INVITE)
	ct := sip.ContentTypeHeader("application/sdp")
	req.AppendHeader(&ct)
	req.SetBody([]byte(sdp))
	res := c.do(t, req)
	if res.StatusCode == sip.StatusOK {
		ack := c.inDialog(sip.ACK)
		if err := c.ph.cli.WriteRequest(ack); err != nil {
			t.Fatalf("ACK: %v", err)
		}
	}
	return res
}

// cancel sends CANCEL for the pending INVITE, reusing its Via branch.
func (c *call) cancel(t *testing.T) *sip.Response {
	t.Helper()
	inv := c.invite
	req := sip.NewRequest(sip.CANCEL, inv.Recipient)
	req.AppendHeader(inv.Via().Clone())
	req.AppendHeader(sip.HeaderClone(inv.From()))
	req.AppendHeader(sip.HeaderClone(inv.To()))
	req.AppendHeader(sip.HeaderClone(inv.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.SetBody(nil)
	req.SetTransport(inv.Transport())
	req.SetDestination(inv.Destination())
	// The request is complete; an option stops sipgo adding a second Via.
	keep := func(*sipgo.Client, *sip.Request) error { return nil }
	res, err := c.ph.cli.Do(testCtx(t), req, keep)
	if err != nil {
		t.Fatalf("CANCEL: %v", err)
	}
	return res
}

// ---- raw UDP test phone, for exact control over what is on the wire ----

type rawPhone struct {
	conn   *net.UDPConn
	pbx    *net.UDPAddr
	parser *sip.Parser
	port   int
}

func newRawPhone(t *testing.T, p *PBX) *rawPhone {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &rawPhone{
		conn:   conn,
		pbx:    net.UDPAddrFromAddrPort(p.Addr("udp")),
		parser: sip.NewParser(),
		port:   conn.LocalAddr().(*net.UDPAddr).Port,
	}
}

// msg joins a start line and headers with CRLF and appends the body.
func msg(start string, headers []string, body string) string {
	lines := append([]string{start}, headers...)
	lines = append(lines, "Content-Length: "+strconv.Itoa(len(body)))
	return strings.Join(lines, "\r\n") + "\r\n\r\n" + body
}

func (r *rawPhone) send(t *testing.T, m string) {
	t.Helper()
	if _, err := r.conn.WriteToUDP([]byte(m), r.pbx); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// recv returns the next SIP message, or nil when none comes within d.
func (r *rawPhone) recv(t *testing.T, d time.Duration) sip.Message {
	t.Helper()
	buf := make([]byte, 65535)
	if err := r.conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	n, _, err := r.conn.ReadFromUDP(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		t.Fatalf("recv: %v", err)
	}
	m, err := r.parser.ParseSIP(buf[:n])
	if err != nil {
		t.Fatalf("parse %q: %v", buf[:n], err)
	}
	return m
}

// recvResponse skips messages until a response with code and CSeq method.
func (r *rawPhone) recvResponse(t *testing.T, code int, method sip.RequestMethod) *sip.Response {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for time.Now().Before(deadline) {
		m := r.recv(t, time.Until(deadline))
		res, ok := m.(*sip.Response)
		if !ok || res.CSeq().MethodName != method {
			continue
		}
		if res.StatusCode == code {
			return res
		}
		if !res.IsProvisional() {
			t.Fatalf("got %d %s for %s, want %d", res.StatusCode, res.Reason, method, code)
		}
	}
	t.Fatalf("no %d for %s", code, method)
	return nil
}

func (r *rawPhone) recvRequest(t *testing.T, method sip.RequestMethod) *sip.Request {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for time.Now().Before(deadline) {
		if req, ok := r.recv(t, time.Until(deadline)).(*sip.Request); ok && req.Method == method {
			return req
		}
	}
	t.Fatalf("no %s request", method)
	return nil
}

// reply answers a request the PBX sent.
func (r *rawPhone) reply(t *testing.T, req *sip.Request, code int, reason string) {
	t.Helper()
	r.send(t, sip.NewResponseFromRequest(req, code, reason, nil).String())
}

// rawDialog holds the identifiers of one raw call.
type rawDialog struct {
	ext, callID, fromTag, branch string
}

func newRawDialog(ext string) rawDialog {
	return rawDialog{
		ext:     ext,
		callID:  fmt.Sprintf("raw-%d@127.0.0.1", rand.Uint64()),
		fromTag: fmt.Sprintf("ft%d", rand.Uint32()),
		branch:  newBranch(),
	}
}

func newBranch() string { return fmt.Sprintf("z9hG4bK-%d", rand.Uint64()) }

func (r *rawPhone) ruri(ext string) string {
	return fmt.Sprintf("sip:%s@%s", ext, r.pbx.AddrPort())
}

// headers builds the common header lines; toTag may be empty.
func (r *rawPhone) headers(d rawDialog, branch, toTag string, cseq int, method string) []string {
	to := fmt.Sprintf("<sip:%s@127.0.0.1>", d.ext)
	if toTag != "" {
		to += ";tag=" + toTag
	}
	return []string{
		fmt.Sprintf("Via: SIP/2.0/UDP 127.0.0.1:%d;branch=%s", r.port, branch),
		"Max-Forwards: 70",
		fmt.Sprintf("From: <sip:raw@127.0.0.1>;tag=%s", d.fromTag),
		"To: " + to,
		"Call-ID: " + d.callID,
		fmt.Sprintf("CSeq: %d %s", cseq, method),
		fmt.Sprintf("Contact: <sip:raw@127.0.0.1:%d>", r.port),
	}
}

func (r *rawPhone) sendInvite(t *testing.T, d rawDialog) {
	t.Helper()
	h := append(r.headers(d, d.branch, "", 1, "INVITE"), "Content-Type: application/sdp")
	r.send(t, msg("INVITE "+r.ruri(d.ext)+" SIP/2.0", h, offerSDP))
}

func toTag(m sip.Message) string {
	tag, _ := m.To().Params.Get("tag")
	return tag
}
