package e2e

// The edge transaction layer (sbc/edge.go, sbc/edgetx.go) against the
// running binary: what reaches the chain, what is answered and how often,
// and what a PBX behind sipwall (a sipp UAS, whose message log records
// what reached it) gets. The peers are raw sockets written here, so that
// every byte sent and received can be counted and every header chosen.

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// edgeThiefIP is an outside source other than the caller's.
const edgeThiefIP = "127.0.0.5"

// edgePolicy gives the policy layer 1 s a decision: a race-built sipwall on
// two loaded cores outlasts the 50 ms default now and then, and fails the
// call closed with 500.
const edgePolicy = "policy: {timeout: 1s}\n"

// edgeTail is how long answers are read after the last request: past
// Timer G's copies at 0.5, 1.5 and 3.5 s, were anything retransmitted.
const edgeTail = 4 * time.Second

// ---------------------------------------------------------------------------
// A raw SIP peer over UDP or TCP

// edgePeer is a raw SIP client on one transport from a loopback address of
// its own. send is for one goroutine, next for one other: the byte counts
// are theirs alone.
type edgePeer struct {
	t     *testing.T
	tr    string // "udp" or "tcp"
	udp   *net.UDPConn
	dst   *net.UDPAddr
	tcp   net.Conn
	pend  []byte // TCP bytes read but not yet a whole message
	ended error  // the TCP connection's read ended (EOF, reset)
	local string // ip:port, for Via and Contact
	sent  int    // bytes written
	got   int    // bytes of the messages read
}

func newEdgePeer(t *testing.T, tr, ip, sbcAddr string) *edgePeer {
	t.Helper()
	p := &edgePeer{t: t, tr: tr}
	switch tr {
	case "udp":
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
		if err != nil {
			t.Fatalf("bind %s: %v", ip, err)
		}
		t.Cleanup(func() { c.Close() })
		if p.dst, err = net.ResolveUDPAddr("udp", sbcAddr); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadBuffer(1 << 20) // floods: room for every answer
		p.udp, p.local = c, c.LocalAddr().String()
	case "tcp":
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", sbcAddr)
		if err != nil {
			t.Fatalf("connect from %s to %s: %v", ip, sbcAddr, err)
		}
		t.Cleanup(func() { c.Close() })
		p.tcp, p.local = c, c.LocalAddr().String()
	default:
		t.Fatalf("transport %q", tr)
	}
	return p
}

func (p *edgePeer) via(branch string) string {
	return "SIP/2.0/" + strings.ToUpper(p.tr) + " " + p.local + ";rport;branch=" + branch
}

func (p *edgePeer) send(msg string) {
	p.t.Helper()
	if err := p.trySend(msg); err != nil {
		p.t.Fatal(err)
	}
}

// trySend is send for goroutines other than the test's.
func (p *edgePeer) trySend(msg string) error {
	var err error
	if p.udp != nil {
		_, err = p.udp.WriteToUDP([]byte(msg), p.dst)
	} else {
		_ = p.tcp.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, err = io.WriteString(p.tcp, msg)
	}
	if err != nil {
		return fmt.Errorf("%s send from %s: %w", p.tr, p.local, err)
	}
	p.sent += len(msg)
	return nil
}

// next returns the next message to arrive before deadline. ok is false
// at the deadline, or when a TCP connection has ended (p.ended set).
func (p *edgePeer) next(deadline time.Time) (msg string, ok bool) {
	if p.udp != nil {
		buf := make([]byte, 65536)
		_ = p.udp.SetReadDeadline(deadline)
		n, _, err := p.udp.ReadFromUDP(buf)
		if err != nil {
			return "", false
		}
		p.got += n
		return string(buf[:n]), true
	}
	buf := make([]byte, 64<<10)
	for range 4096 {
		p.pend = bytes.TrimLeft(p.pend, "\r\n") // keepalives
		if m, rest, ok := edgeFrame(p.pend); ok {
			p.pend = rest
			p.got += len(m)
			return string(m), true
		}
		if p.ended != nil {
			return "", false
		}
		_ = p.tcp.SetReadDeadline(deadline)
		n, err := p.tcp.Read(buf)
		p.pend = append(p.pend, buf[:n]...)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return "", false
			}
			p.ended = err
		}
	}
	return "", false
}

// recv returns the messages that arrive within d, ending early after one
// for which stop is true.
func (p *edgePeer) recv(d time.Duration, stop func(string) bool) []string {
	deadline := time.Now().Add(d)
	var got []string
	for range 10000 {
		m, ok := p.next(deadline)
		if !ok {
			break
		}
		got = append(got, m)
		if stop != nil && stop(m) {
			break
		}
	}
	return got
}

// ask sends msg and waits up to d for a final response to it (same
// branch). Over UDP it sends msg again every 500 ms as a phone does: the
// first small request of a source may go unanswered (sbc edge budget).
// It returns that response ("" if none) and everything read meanwhile.
func (p *edgePeer) ask(msg string, d time.Duration) (final string, all []string) {
	br := edgeBranch(msg)
	isFinal := func(m string) bool { return code(m) >= 200 && edgeBranch(m) == br }
	deadline := time.Now().Add(d)
	for try := 0; try < 10 && time.Now().Before(deadline); try++ {
		p.send(msg)
		wait := time.Until(deadline)
		if p.udp != nil {
			wait = min(wait, 500*time.Millisecond)
		}
		got := p.recv(wait, isFinal)
		all = append(all, got...)
		if n := len(got); n > 0 && isFinal(got[n-1]) {
			return got[n-1], all
		}
		if p.udp == nil {
			break
		}
	}
	return "", all
}

// edgeFrame cuts one message (headers and Content-Length bytes of body)
// off the front of a stream.
func edgeFrame(b []byte) (msg, rest []byte, ok bool) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, b, false
	}
	cl := 0
	for _, line := range strings.Split(string(b[:end]), "\r\n")[1:] {
		k, v, found := strings.Cut(line, ":")
		if k = strings.TrimSpace(k); found && (strings.EqualFold(k, "Content-Length") || k == "l") {
			cl, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	total := end + 4 + cl
	if len(b) < total {
		return nil, b, false
	}
	return b[:total], b[total:], true
}

var edgeBranchRE = regexp.MustCompile(`;\s*branch=([^;,\s]+)`)

// edgeBranch is the branch of a message's top Via.
func edgeBranch(msg string) string {
	head, _, _ := strings.Cut(msg, "\r\n\r\n")
	for _, line := range strings.Split(head, "\r\n")[1:] {
		k, v, ok := strings.Cut(line, ":")
		if k = strings.TrimSpace(k); ok && (strings.EqualFold(k, "Via") || k == "v") {
			if m := edgeBranchRE.FindStringSubmatch(v); m != nil {
				return m[1]
			}
			return ""
		}
	}
	return ""
}

// edgeCSeqMethod is the method of a message's CSeq.
func edgeCSeqMethod(msg string) string {
	if v := headerValues(msg, "CSeq"); len(v) > 0 {
		if f := strings.Fields(v[0]); len(f) == 2 {
			return f[1]
		}
	}
	return ""
}

func edgeToken() string { return strings.ToLower(rand.Text()[:16]) }

// ---------------------------------------------------------------------------
// Requests as phones write them

// edgeReq is a request: its start line, the headers every request
// carries, more headers, and a body.
type edgeReq struct {
	method, ruri, via, from, to, callID string
	cseq                                int
	headers                             []string
	ctype, body                         string
}

func (r edgeReq) String() string {
	lines := []string{
		r.method + " " + r.ruri + " SIP/2.0",
		"Via: " + r.via,
		"Max-Forwards: 70",
		"From: " + r.from,
		"To: " + r.to,
		"Call-ID: " + r.callID,
		"CSeq: " + strconv.Itoa(r.cseq) + " " + r.method,
	}
	lines = append(lines, r.headers...)
	if r.body != "" {
		lines = append(lines, "Content-Type: "+r.ctype)
	}
	lines = append(lines, "Content-Length: "+strconv.Itoa(len(r.body)))
	return strings.Join(lines, "\r\n") + "\r\n\r\n" + r.body
}

// edgeSDP is an offer like a desk phone's.
func edgeSDP(ip string) string {
	return strings.Join([]string{
		"v=0",
		"o=alice 2890844526 2890844526 IN IP4 " + ip,
		"s=-",
		"c=IN IP4 " + ip,
		"t=0 0",
		"m=audio 49170 RTP/AVP 0 8 9 101",
		"a=rtpmap:0 PCMU/8000",
		"a=rtpmap:8 PCMA/8000",
		"a=rtpmap:9 G722/8000",
		"a=rtpmap:101 telephone-event/8000",
		"a=fmtp:101 0-16",
		"a=ptime:20",
		"a=sendrecv",
	}, "\r\n") + "\r\n"
}

// edgePhoneReq is an out-of-dialog request from alice on p to extension 1000
// behind sipwall at sbcAddr (REGISTER: for alice's AOR), with the headers
// and body an ordinary phone sends, a new branch, Call-ID and From tag.
func edgePhoneReq(p *edgePeer, method, sbcAddr string) edgeReq {
	ip, _, _ := net.SplitHostPort(p.local)
	aor := "sip:alice@" + SBCIP
	r := edgeReq{
		method: method, ruri: "sip:1000@" + sbcAddr, via: p.via("z9hG4bK-" + edgeToken()),
		from: "<" + aor + ">;tag=" + edgeToken()[:10], to: "<sip:1000@" + sbcAddr + ">",
		callID: edgeToken() + "@" + ip, cseq: 1,
	}
	contact := "Contact: <sip:alice@" + p.local + ";transport=" + p.tr + ">"
	phone := []string{
		"User-Agent: sipwall-e2e edge phone/1.0",
		"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, NOTIFY, REFER, UPDATE, INFO",
		"Supported: replaces, timer, path",
	}
	switch method {
	case "INVITE":
		r.headers = append([]string{contact}, phone...)
		r.ctype, r.body = "application/sdp", edgeSDP(ip)
	case "REGISTER":
		r.ruri, r.to = "sip:"+sbcAddr, "<"+aor+">"
		r.headers = append([]string{contact, "Expires: 3600"}, phone...)
	case "OPTIONS":
		r.headers = append([]string{contact, "Accept: application/sdp"}, phone...)
	case "SUBSCRIBE":
		r.headers = append([]string{contact, "Event: presence", "Expires: 3600", "Accept: application/pidf+xml"}, phone...)
	case "MESSAGE":
		r.headers = phone
		r.ctype, r.body = "text/plain;charset=UTF-8", "Are you at your desk? The review starts in five minutes."
	}
	return r
}

// next is r with a new branch and CSeq number, and more headers.
func (r edgeReq) next(p *edgePeer, cseq int, extra ...string) edgeReq {
	r.via = p.via("z9hG4bK-" + edgeToken())
	r.cseq = cseq
	r.headers = append(slices.Clone(r.headers), extra...)
	return r
}

// cancel is the CANCEL of INVITE r with CSeq number cseq (RFC 3261 9.1:
// r's Request-URI, top Via, From, To, Call-ID).
func (r edgeReq) cancel(cseq int) string {
	return edgeReq{method: "CANCEL", ruri: r.ruri, via: r.via, from: r.from, to: r.to, callID: r.callID, cseq: cseq}.String()
}

// ackFor is the ACK of a final non-2xx response res to INVITE r.
func (r edgeReq) ackFor(res string) string {
	to := r.to
	if v := headerValues(res, "To"); len(v) > 0 {
		to = v[0]
	}
	return edgeReq{method: "ACK", ruri: r.ruri, via: r.via, from: r.from, to: to, callID: r.callID, cseq: r.cseq}.String()
}

// edgeChallenge returns the SHA-256 challenge of a 401 or 407.
func edgeChallenge(t *testing.T, res string) string {
	t.Helper()
	for _, h := range []string{"Proxy-Authenticate", "WWW-Authenticate"} {
		for _, v := range headerValues(res, h) {
			if strings.Contains(v, "algorithm=SHA-256") {
				return v
			}
		}
	}
	t.Fatalf("no SHA-256 challenge in:\n%s", res)
	return ""
}

// ---------------------------------------------------------------------------
// sipwall's decision log and metrics, the PBX's message log

type edgeDecision struct {
	Layer   string `json:"layer"`
	Verdict string `json:"verdict"`
	Status  int    `json:"status"`
	Why     string `json:"why"`
	Method  string `json:"method"`
	Source  string `json:"source"`
	Count   int    `json:"count"`
}

// edgeAdmin GETs a path of sipwall's admin API (the address its log
// names; no token is configured).
func edgeAdmin(t *testing.T, s *SBC, path string) []byte {
	t.Helper()
	m := regexp.MustCompile(`admin API listening.* addr=(127\.0\.0\.1:[0-9]+)`).FindStringSubmatch(s.Log())
	if m == nil {
		t.Fatalf("sipwall's log names no admin address")
	}
	c := &http.Client{Timeout: 5 * time.Second}
	res, err := c.Get("http://" + m[1] + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 8<<20))
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", path, res.StatusCode, err)
	}
	return body
}

func edgeDecisions(t *testing.T, s *SBC) []edgeDecision {
	t.Helper()
	var ds []edgeDecision
	if err := json.Unmarshal(edgeAdmin(t, s, "/api/why?limit=1000"), &ds); err != nil {
		t.Fatalf("/api/why: %v", err)
	}
	return ds
}

// edgeMetric is the value of one metric line (name with labels) of
// /metrics, -1 when absent.
func edgeMetric(t *testing.T, s *SBC, series string) float64 {
	t.Helper()
	for line := range strings.SplitSeq(string(edgeAdmin(t, s, "/metrics")), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// edgeReceived counts the requests with this method in a sipp message log.
func edgeReceived(log, method string) int {
	return strings.Count(log, "\n"+method+" sip:")
}

// edgeWaitPBX polls the PBX's message log (a file sipp writes) until ok,
// at most d.
func edgeWaitPBX(pbx *SippProc, d time.Duration, ok func(string) bool) bool {
	deadline := time.Now().Add(d)
	for {
		if ok(pbx.Messages()) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func edgeStarts(msgs []string) []string {
	out := make([]string, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, startLine(m)+" ("+edgeCSeqMethod(m)+")")
	}
	return out
}

// ---------------------------------------------------------------------------
// 1. Amplification

// edgeFlood is what one flood sent and got back, per method.
type edgeFlood struct {
	in, out   map[string]int      // bytes
	sent      map[string]int      // requests
	answers   map[string][]string // branch → start lines of its responses
	methodOf  map[string]string   // branch → method
	statuses  map[string]map[int]int
	answered  map[string]int // requests with at least one answer
	totalIn   int
	totalOut  int
	tcpClosed bool
	err       error
}

// edgeFloodRun sends n requests of each method, interleaved and paced,
// from p, and reads everything that comes back until edgeTail after the
// last one (concurrently, so that no answer is lost in a full socket
// buffer). It runs on a goroutine of its own: errors go to f.err.
func edgeFloodRun(p *edgePeer, sbcAddr string, methods []string, n int) *edgeFlood {
	f := &edgeFlood{in: map[string]int{}, out: map[string]int{}, sent: map[string]int{}, answers: map[string][]string{},
		methodOf: map[string]string{}, statuses: map[string]map[int]int{}, answered: map[string]int{}}
	var until atomic.Int64 // end of reading, Unix ns: a hard bound until the last request is out
	until.Store(time.Now().Add(60 * time.Second).UnixNano())
	var got []string
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 100000 {
			end := time.Unix(0, until.Load())
			if !time.Now().Before(end) {
				return
			}
			step := time.Now().Add(200 * time.Millisecond)
			if end.Before(step) {
				step = end
			}
			m, ok := p.next(step)
			if ok {
				got = append(got, m)
			} else if p.ended != nil {
				return
			}
		}
	}()
send:
	for range n {
		for _, m := range methods {
			msg := edgePhoneReq(p, m, sbcAddr).String()
			if f.err = p.trySend(msg); f.err != nil {
				break send
			}
			f.methodOf[edgeBranch(msg)] = m
			f.in[m] += len(msg)
			f.sent[m]++
			// About 100 requests a second per flood, seven floods side
			// by side: what a race-built sipwall on two cores reads
			// without its socket buffer overflowing. A datagram the
			// kernel drops would only lower the measured ratio (the
			// test logs how many there were).
			time.Sleep(10 * time.Millisecond)
		}
	}
	until.Store(time.Now().Add(edgeTail).UnixNano())
	wg.Wait()
	f.tcpClosed = p.ended != nil
	for _, msg := range got {
		br := edgeBranch(msg)
		m := f.methodOf[br]
		if m == "" {
			m = "?"
		}
		f.out[m] += len(msg)
		f.totalOut += len(msg)
		if f.statuses[m] == nil {
			f.statuses[m] = map[int]int{}
		}
		f.statuses[m][code(msg)]++
		if len(f.answers[br]) == 0 {
			f.answered[m]++
		}
		f.answers[br] = append(f.answers[br], startLine(msg))
	}
	for _, v := range f.in {
		f.totalIn += v
	}
	return f
}

func edgeRatio(out, in int) float64 {
	if in == 0 {
		return 0
	}
	return float64(out) / float64(in)
}

// TestEdgeNoAmplification: floods of unauthenticated INVITE (with SDP),
// REGISTER, OPTIONS (to a user), SUBSCRIBE and MESSAGE over UDP, 200 of
// each from an address of its own and 100 of each interleaved from
// 127.0.0.2, get back no more bytes than they carried (per method, and
// per source), no answer more than once (none retransmitted, 4 s read
// after the last), no 1xx or 2xx, and the PBX gets nothing. Over TCP (no budget there) every request gets
// exactly one final answer, still none retransmitted and nothing to the
// PBX.
func TestEdgeNoAmplification(t *testing.T) {
	SkipIfShort(t)
	RequireSipp(t)
	pbx := Sipp{Name: "pbx", Scenario: "uas_answer.xml", IP: PBXIP, Transport: Transports[0], Timeout: 60 * time.Second}.Start(t)
	sbc := StartSBC(t, SBCConfig{Transport: Transports[0], PBXPort: pbx.Port, Users: demoUsers, Extra: edgePolicy})
	methods := []string{"INVITE", "REGISTER", "OPTIONS", "SUBSCRIBE", "MESSAGE"}

	check := func(t *testing.T, f *edgeFlood, tr string) {
		t.Helper()
		for br, a := range f.answers {
			if len(a) > 1 {
				t.Errorf("%s request %s (branch %s) answered %d times: %q", f.methodOf[br], tr, br, len(a), a)
			}
		}
		for m, st := range f.statuses {
			for c, k := range st {
				if c < 300 {
					t.Errorf("%s over %s: %d answers %d to unauthenticated requests", m, tr, k, c)
				}
			}
		}
	}
	// Seven floods side by side, each from a source of its own: one per
	// method (the byte budget is per source address, so that a method's
	// own ratio shows), all methods interleaved from 127.0.0.2, and all
	// over TCP.
	type run struct {
		name    string
		peer    *edgePeer
		methods []string
		n       int
		f       *edgeFlood
	}
	var runs []*run
	for i, m := range methods {
		ip := fmt.Sprintf("127.0.0.%d", 11+i)
		runs = append(runs, &run{name: "udp/" + m, peer: newEdgePeer(t, "udp", ip, sbc.Addr), methods: []string{m}, n: 200})
	}
	runs = append(runs,
		&run{name: "udp/mixed", peer: newEdgePeer(t, "udp", OutsideIP, sbc.Addr), methods: methods, n: 100},
		&run{name: "tcp/mixed", peer: newEdgePeer(t, "tcp", "127.0.0.16", sbc.Addr), methods: methods, n: 50})
	drops := edgeUDPRcvbufErrors()
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.f = edgeFloodRun(r.peer, sbc.Addr, r.methods, r.n)
		}()
	}
	wg.Wait()
	if drops >= 0 {
		t.Logf("datagrams the kernel dropped for full socket buffers meanwhile (whole host): %d", edgeUDPRcvbufErrors()-drops)
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			f, ip, tr := r.f, r.peer.local, r.peer.tr
			if f.err != nil {
				t.Fatal(f.err)
			}
			if tr == "udp" {
				// An answer lost in this test's own socket buffer would
				// understate the ratio.
				if n := edgeSocketDrops(ip); n != 0 {
					t.Errorf("the kernel dropped %d answers to %s (full socket buffer, or unknown: -1): the bytes out are not all counted", n, ip)
				}
			}
			check(t, f, tr)
			for _, m := range r.methods {
				rm := edgeRatio(f.out[m], f.in[m])
				t.Logf("%s %s from %s: %d requests, %d bytes in, %d bytes out, ratio %.3f, %d answered, statuses %v",
					tr, m, ip, f.sent[m], f.in[m], f.out[m], rm, f.answered[m], f.statuses[m])
				switch {
				case tr == "tcp" && f.answered[m] != f.sent[m]:
					t.Errorf("tcp: %d of %d %s requests answered, want each once", f.answered[m], f.sent[m], m)
				case len(r.methods) == 1 && rm > 1:
					t.Errorf("amplification: %s over UDP got %d bytes back for %d sent (%.3f)", m, f.out[m], f.in[m], rm)
				case f.answered[m] == 0:
					t.Errorf("no %s was answered at all: the test measured nothing", m)
				}
			}
			rt := edgeRatio(f.totalOut, f.totalIn)
			t.Logf("%s from %s in all: %d bytes in, %d bytes out, ratio %.3f", tr, ip, f.totalIn, f.totalOut, rt)
			if tr == "udp" && rt > 1 {
				t.Errorf("amplification: one source got %d bytes back for %d sent (%.3f)", f.totalOut, f.totalIn, rt)
			}
			if f.tcpClosed {
				t.Errorf("sipwall closed the connection of well-formed requests")
			}
		})
	}
	if log := pbx.Messages(); strings.Contains(log, "message received") {
		t.Errorf("unauthenticated requests reached the PBX:\n%s", edgeTailString(log, 3000))
	}
	// What kept requests unanswered besides the byte budget.
	var seen []string
	for line := range strings.SplitSeq(string(edgeAdmin(t, sbc, "/metrics")), "\n") {
		if strings.HasPrefix(line, "sipwall_") && !strings.HasSuffix(line, " 0") &&
			(strings.Contains(line, "dropped") || strings.Contains(line, "auth") || strings.Contains(line, "bans") ||
				strings.Contains(line, "prefilter") || strings.Contains(line, "verdicts")) {
			seen = append(seen, line)
		}
	}
	t.Logf("sipwall counters after the floods:\n%s", strings.Join(seen, "\n"))
}

// edgeSocketDrops is the kernel's count of datagrams dropped on the UDP
// socket bound to local (the drops column of /proc/net/udp), -1 when
// unknown.
func edgeSocketDrops(local string) int {
	ap, err := netip.ParseAddrPort(local)
	if err != nil || !ap.Addr().Is4() {
		return -1
	}
	a := ap.Addr().As4()
	// /proc/net shows the address as the in-memory u32 (little-endian here).
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", a[3], a[2], a[1], a[0], ap.Port())
	data, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return -1
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 12 && f[1] == want {
			n, err := strconv.Atoi(f[len(f)-1])
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// edgeUDPRcvbufErrors is the kernel's count of UDP datagrams dropped for
// a full receive buffer (/proc/net/snmp), -1 when unknown.
func edgeUDPRcvbufErrors() int {
	data, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return -1
	}
	var head []string
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		for i, k := range head {
			if k == "RcvbufErrors" && i < len(f) {
				n, err := strconv.Atoi(f[i])
				if err == nil {
					return n
				}
			}
		}
	}
	return -1
}

// ---------------------------------------------------------------------------
// 2, 3. CANCEL and branches from another source

// edgeRinging places an authenticated call from p to extension 1000 (INVITE,
// 407, ACK, INVITE with credentials) and returns the INVITE and its bytes
// once the PBX's 180 has reached p.
func edgeRinging(t *testing.T, p *edgePeer, sbcAddr string) (edgeReq, string) {
	t.Helper()
	first := edgePhoneReq(p, "INVITE", sbcAddr)
	res, all := p.ask(first.String(), 5*time.Second)
	if code(res) != 407 {
		t.Fatalf("unauthenticated INVITE: got %q, want 407", edgeStarts(all))
	}
	p.send(first.ackFor(res))
	authz := digestSHA256(t, edgeChallenge(t, res), "alice", demoUsers["alice"], "INVITE", first.ruri)
	inv := first.next(p, 2, "Proxy-Authorization: "+authz)
	wire := inv.String()
	p.send(wire)
	got := p.recv(8*time.Second, func(m string) bool { return code(m) == 180 || code(m) >= 200 })
	if len(got) == 0 || code(got[len(got)-1]) != 180 {
		t.Fatalf("authenticated INVITE: got %q, want 180 from the PBX", edgeStarts(got))
	}
	return inv, wire
}

// edgeStillRinging: the caller's INVITE retransmitted (same bytes) is
// absorbed by its transaction, which answers with its last provisional
// response: the call rings, nothing final was sent.
func edgeStillRinging(t *testing.T, p *edgePeer, wire string) {
	t.Helper()
	p.send(wire)
	got := p.recv(time.Second, func(m string) bool { return code(m) >= 100 })
	if len(got) == 0 || code(got[len(got)-1]) >= 200 || code(got[len(got)-1]) < 100 {
		t.Errorf("the caller's INVITE again: got %q, want its last provisional response (the call still rings)", edgeStarts(got))
	}
}

// edgeQuiet: nothing but provisional responses to its INVITE reached the
// caller within d.
func edgeQuiet(t *testing.T, p *edgePeer, d time.Duration, why string) {
	t.Helper()
	for _, m := range p.recv(d, nil) {
		if c := code(m); c < 100 || c >= 200 || edgeCSeqMethod(m) != "INVITE" {
			t.Errorf("the caller was sent %q (%s)", startLine(m), why)
		}
	}
}

// edgeTransports runs f over UDP and TCP as parallel subtests.
func edgeTransports(t *testing.T, f func(t *testing.T, tr Transport)) {
	SkipIfShort(t)
	RequireSipp(t)
	for _, tr := range Transports {
		t.Run(tr.Name, func(t *testing.T) {
			t.Parallel()
			f(t, tr)
		})
	}
}

// TestEdgeCancelOnlyFromItsCaller: an authenticated call rings at a PBX
// that never answers. A CANCEL copying the caller's Via, branch, Call-ID,
// tags, To and CSeq, sent from another outside address and from the
// PBX's own address, gets 481: the PBX sees no CANCEL and the call still
// rings. The caller's CANCEL gets 200, the INVITE 487, and the PBX its
// CANCEL. On a second call, the caller's CANCEL with another CSeq number
// gets 481 and the call rings on.
func TestEdgeCancelOnlyFromItsCaller(t *testing.T) {
	edgeTransports(t, func(t *testing.T, tr Transport) {
		pbx := Sipp{Name: "pbx", Scenario: "uas_noanswer.xml", IP: PBXIP, Transport: tr, Calls: 2, Timeout: 40 * time.Second}.Start(t)
		sbc := StartSBC(t, SBCConfig{Transport: tr, PBXPort: pbx.Port, Users: demoUsers, Extra: edgePolicy})
		caller := newEdgePeer(t, tr.Name, OutsideIP, sbc.Addr)
		inv, wire := edgeRinging(t, caller, sbc.Addr)
		if !edgeWaitPBX(pbx, 3*time.Second, func(l string) bool { return edgeReceived(l, "INVITE") == 1 }) {
			t.Fatalf("the PBX did not get the INVITE")
		}

		forged := inv.cancel(inv.cseq)
		for _, ip := range []string{edgeThiefIP, PBXIP} {
			thief := newEdgePeer(t, tr.Name, ip, sbc.Addr)
			res, all := thief.ask(forged, 3*time.Second)
			if code(res) != 481 {
				t.Errorf("CANCEL copied from the caller's, sent from %s: got %q, want 481", ip, edgeStarts(all))
			}
			if more := thief.recv(700*time.Millisecond, nil); len(more) > 0 {
				t.Errorf("%s was sent more: %q", ip, edgeStarts(more))
			}
			edgeQuiet(t, caller, 300*time.Millisecond, "after the CANCEL from "+ip)
		}
		if l := pbx.Messages(); edgeReceived(l, "CANCEL") != 0 {
			t.Fatalf("a CANCEL from another source reached the PBX:\n%s", edgeTailString(l, 3000))
		}
		edgeStillRinging(t, caller, wire)

		// The caller's own CANCEL.
		caller.send(forged)
		got := caller.recv(3*time.Second, func(m string) bool { return code(m) == 487 })
		var ok200, res487 string
		for _, m := range got {
			switch {
			case code(m) == 200 && edgeCSeqMethod(m) == "CANCEL":
				ok200 = m
			case code(m) == 487 && edgeCSeqMethod(m) == "INVITE":
				res487 = m
			}
		}
		if res487 != "" && ok200 == "" {
			// The 200 may follow the 487 (either order is allowed).
			for _, m := range caller.recv(time.Second, func(m string) bool { return code(m) == 200 }) {
				if code(m) == 200 && edgeCSeqMethod(m) == "CANCEL" {
					ok200 = m
				}
			}
		}
		if ok200 == "" || res487 == "" {
			t.Fatalf("the caller's CANCEL: got %q, want 200 (CANCEL) and 487 (INVITE)", edgeStarts(got))
		}
		caller.send(inv.ackFor(res487))
		if !edgeWaitPBX(pbx, 3*time.Second, func(l string) bool { return edgeReceived(l, "CANCEL") == 1 }) {
			t.Errorf("the PBX did not get the caller's CANCEL")
		}

		// A second call, cancelled with the wrong CSeq number. The CANCEL
		// keeps the INVITE's branch, so the caller cannot send the right
		// one after it over UDP: it would be a retransmission of this
		// CANCEL's transaction (RFC 3261 17.2.3) and get the same 481.
		inv2, wire2 := edgeRinging(t, caller, sbc.Addr)
		if !edgeWaitPBX(pbx, 3*time.Second, func(l string) bool { return edgeReceived(l, "INVITE") == 2 }) {
			t.Fatalf("the PBX did not get the second INVITE")
		}
		res, all := caller.ask(inv2.cancel(inv2.cseq+1), 3*time.Second)
		if code(res) != 481 {
			t.Errorf("the caller's CANCEL with CSeq %d for INVITE CSeq %d: got %q, want 481", inv2.cseq+1, inv2.cseq, edgeStarts(all))
		}
		for _, m := range all {
			if code(m) >= 200 && edgeCSeqMethod(m) == "INVITE" {
				t.Errorf("the INVITE was ended by a CANCEL with another CSeq: %q", startLine(m))
			}
		}
		edgeStillRinging(t, caller, wire2)
		time.Sleep(300 * time.Millisecond) // for a CANCEL on its way to the PBX
		if n := edgeReceived(pbx.Messages(), "CANCEL"); n != 1 {
			t.Errorf("the PBX got %d CANCELs, want 1 (the first call's)", n)
		}
	})
}

// TestEdgeBranchReuseFromAnotherSource: while an authenticated call rings,
// the caller's INVITE (the same bytes, branch and credentials) sent from
// another address is a request of its own, not a retransmission: it is
// challenged (407), the PBX does not get it, and the caller is sent
// nothing because of it; the caller's call goes on and ends with its
// CANCEL.
func TestEdgeBranchReuseFromAnotherSource(t *testing.T) {
	edgeTransports(t, func(t *testing.T, tr Transport) {
		pbx := Sipp{Name: "pbx", Scenario: "uas_noanswer.xml", IP: PBXIP, Transport: tr, Timeout: 30 * time.Second}.Start(t)
		sbc := StartSBC(t, SBCConfig{Transport: tr, PBXPort: pbx.Port, Users: demoUsers, Extra: edgePolicy})
		caller := newEdgePeer(t, tr.Name, OutsideIP, sbc.Addr)
		inv, wire := edgeRinging(t, caller, sbc.Addr)
		if !edgeWaitPBX(pbx, 3*time.Second, func(l string) bool { return edgeReceived(l, "INVITE") == 1 }) {
			t.Fatalf("the PBX did not get the INVITE")
		}

		other := newEdgePeer(t, tr.Name, edgeThiefIP, sbc.Addr)
		res, all := other.ask(wire, 3*time.Second)
		switch {
		case len(all) > 0 && code(all[0]) < 200:
			t.Errorf("the copy from %s got %q: answered as the caller's transaction", edgeThiefIP, edgeStarts(all))
		case code(res) != 407:
			t.Errorf("the copy from %s: got %q, want 407 (challenged itself)", edgeThiefIP, edgeStarts(all))
		}
		edgeQuiet(t, caller, 700*time.Millisecond, "after the copy of its INVITE from "+edgeThiefIP)
		if n := edgeReceived(pbx.Messages(), "INVITE"); n != 1 {
			t.Errorf("the PBX got %d INVITEs, want 1", n)
		}
		edgeStillRinging(t, caller, wire)

		caller.send(inv.cancel(inv.cseq))
		got := caller.recv(3*time.Second, func(m string) bool { return code(m) == 487 })
		if len(got) == 0 || code(got[len(got)-1]) != 487 {
			t.Fatalf("the caller's CANCEL: got %q, want 487 for its INVITE", edgeStarts(got))
		}
		caller.send(inv.ackFor(got[len(got)-1]))
		if !edgeWaitPBX(pbx, 3*time.Second, func(l string) bool { return edgeReceived(l, "CANCEL") == 1 }) {
			t.Errorf("the PBX did not get the caller's CANCEL")
		}
	})
}

// ---------------------------------------------------------------------------
// 4. Malformed requests reach the sanity layer

func edgeSetHeader(name, value string) func(string) string {
	return func(msg string) string {
		head, body, _ := strings.Cut(msg, "\r\n\r\n")
		lines := strings.Split(head, "\r\n")
		out := lines[:1]
		for _, l := range lines[1:] {
			k, _, _ := strings.Cut(l, ":")
			if strings.EqualFold(strings.TrimSpace(k), name) {
				if value == "" {
					continue
				}
				l = name + ": " + value
			}
			out = append(out, l)
		}
		return strings.Join(out, "\r\n") + "\r\n\r\n" + body
	}
}

// TestEdgeMalformedReachSanity: well-framed but invalid requests are
// judged by the sanity layer, whose verdict is what the sender sees —
// nothing answers them before it (sipgo's own transaction layer used to):
// 483 for Max-Forwards 0, 400 for a CSeq method that is not the request's,
// for a missing Max-Forwards and for an INVITE without Contact, silence
// for a missing Call-ID or From. Over UDP and TCP, each once, none
// retransmitted, nothing to the PBX; the decision log names sanity and
// the rule.
func TestEdgeMalformedReachSanity(t *testing.T) {
	SkipIfShort(t)
	RequireSipp(t)
	pbx := Sipp{Name: "pbx", Scenario: "uas_answer.xml", IP: PBXIP, Transport: Transports[0], Timeout: 40 * time.Second}.Start(t)
	sbc := StartSBC(t, SBCConfig{Transport: Transports[0], PBXPort: pbx.Port, Users: demoUsers, Extra: edgePolicy})
	cases := []struct {
		name, method string
		edit         func(string) string
		status       int // 0: silence
		rule         string
	}{
		{"Max-Forwards 0", "INVITE", edgeSetHeader("Max-Forwards", "0"), 483, "too-many-hops"},
		{"Max-Forwards 0 OPTIONS", "OPTIONS", edgeSetHeader("Max-Forwards", "0"), 483, "too-many-hops"},
		{"CSeq method mismatch", "INVITE", edgeSetHeader("CSeq", "1 OPTIONS"), 400, "cseq-method"},
		{"no Max-Forwards", "MESSAGE", edgeSetHeader("Max-Forwards", ""), 400, "max-forwards"},
		{"INVITE without Contact", "INVITE", edgeSetHeader("Contact", ""), 400, "contact"},
		{"no Call-ID", "INVITE", edgeSetHeader("Call-ID", ""), 0, "missing-header"},
		{"no From", "REGISTER", edgeSetHeader("From", ""), 0, "missing-header"},
	}
	// One socket (connection) per case, so that a closed connection shows
	// against the case that closed it; all sent at once, then read past
	// Timer G's first copy (0.5 s).
	type sent struct {
		tr   string
		i    int
		peer *edgePeer
	}
	var all []sent
	for _, tr := range Transports {
		for i, tc := range cases {
			p := newEdgePeer(t, tr.Name, OutsideIP, sbc.Addr)
			p.send(tc.edit(edgePhoneReq(p, tc.method, sbc.Addr).String()))
			all = append(all, sent{tr.Name, i, p})
		}
	}
	deadline := time.Now().Add(1500 * time.Millisecond)
	for _, s := range all {
		tc, p := cases[s.i], s.peer
		got := p.recv(max(time.Until(deadline), 100*time.Millisecond), nil)
		var codes []int
		for _, m := range got {
			codes = append(codes, code(m))
		}
		switch {
		case tc.status == 0 && len(got) != 0:
			t.Errorf("%s, %s: got %q, want no answer", s.tr, tc.name, edgeStarts(got))
		case tc.status != 0 && (len(codes) != 1 || codes[0] != tc.status):
			t.Errorf("%s, %s: got %q, want one %d", s.tr, tc.name, edgeStarts(got), tc.status)
		}
		if p.ended != nil {
			t.Errorf("%s, %s: sipwall closed the connection (%v)", s.tr, tc.name, p.ended)
		}
	}
	ds := edgeDecisions(t, sbc)
	for _, tc := range cases {
		n := 0
		for _, d := range ds {
			if d.Layer == "sanity" && d.Why == tc.rule && d.Method == tc.method && d.Source == OutsideIP {
				n += d.Count
			}
		}
		if n != len(Transports) {
			t.Errorf("%s: the decision log holds %d sanity decisions %q for %s from %s, want %d (UDP and TCP)", tc.name, n, tc.rule, tc.method, OutsideIP, len(Transports))
		}
	}
	if t.Failed() {
		j, _ := json.MarshalIndent(ds, "", " ")
		t.Logf("decision log:\n%s", edgeTailString(string(j), 6000))
	}
	if log := pbx.Messages(); strings.Contains(log, "message received") {
		t.Errorf("a malformed request reached the PBX:\n%s", edgeTailString(log, 3000))
	}
}

// ---------------------------------------------------------------------------
// 5. A stream closed for a broken message answers what it read before

// edgeBroken is a request the parser refuses: the connection it comes on
// is closed.
func edgeBroken(sbcAddr string) string {
	return "INVITE sip:1000@" + sbcAddr + " SIP/2.0\r\nVia: not a via at all\r\nContent-Length: 0\r\n\r\n"
}

// TestEdgeStreamAnswersBeforeClose: on one TCP connection, requests
// followed by a message the parser refuses, all in one write. sipwall
// closes the connection, but only after the answers to the requests it
// had read: 20 unauthenticated OPTIONS get their 20 challenges; an
// authenticated OPTIONS relayed to a PBX that takes a second to answer
// gets the PBX's 200.
func TestEdgeStreamAnswersBeforeClose(t *testing.T) {
	SkipIfShort(t)
	RequireSipp(t)
	tr := Transports[1]
	pbx := Sipp{Name: "pbx", Scenario: "uas_options_slow.xml", IP: PBXIP, Transport: tr, Pause: time.Second, Timeout: 30 * time.Second}.Start(t)
	sbc := StartSBC(t, SBCConfig{Transport: tr, PBXPort: pbx.Port, Users: demoUsers, Extra: edgePolicy})

	t.Run("challenges", func(t *testing.T) {
		p := newEdgePeer(t, "tcp", OutsideIP, sbc.Addr)
		var burst strings.Builder
		want := map[string]bool{}
		for range 20 {
			r := edgePhoneReq(p, "OPTIONS", sbc.Addr).String()
			want[edgeBranch(r)] = true
			burst.WriteString(r)
		}
		burst.WriteString(edgeBroken(sbc.Addr))
		p.send(burst.String())
		got := p.recv(5*time.Second, nil)
		answered := map[string]int{}
		for _, m := range got {
			if code(m) >= 200 {
				answered[edgeBranch(m)]++
			}
		}
		for br := range want {
			if answered[br] != 1 {
				t.Errorf("request %s answered %d times before the connection ended, want once", br, answered[br])
			}
		}
		if p.ended == nil {
			t.Errorf("the connection is still open 5 s after the broken message")
		}
		t.Logf("%d answers, then the connection ended (%v)", len(got), p.ended)
	})

	t.Run("relayed", func(t *testing.T) {
		p := newEdgePeer(t, "tcp", OutsideIP, sbc.Addr)
		first := edgePhoneReq(p, "OPTIONS", sbc.Addr)
		res, all := p.ask(first.String(), 5*time.Second)
		if code(res) != 407 {
			t.Fatalf("OPTIONS: got %q, want 407", edgeStarts(all))
		}
		authz := digestSHA256(t, edgeChallenge(t, res), "alice", demoUsers["alice"], "OPTIONS", first.ruri)
		opt := first.next(p, 2, "Proxy-Authorization: "+authz)
		start := time.Now()
		p.send(opt.String() + edgeBroken(sbc.Addr))
		got := p.recv(6*time.Second, nil)
		took := time.Since(start)
		var final string
		for _, m := range got {
			if code(m) >= 200 && edgeBranch(m) == edgeBranch(opt.String()) {
				final = m
			}
		}
		if code(final) != 200 {
			t.Errorf("authenticated OPTIONS before a broken message: got %q (connection ended: %v), want the PBX's 200", edgeStarts(got), p.ended)
		}
		if p.ended == nil {
			t.Errorf("the connection is still open 6 s after the broken message")
		}
		if edgeReceived(pbx.Messages(), "OPTIONS") != 1 {
			t.Errorf("the PBX did not get the OPTIONS")
		}
		t.Logf("answers %q, connection ended %v after %s", edgeStarts(got), p.ended, took.Round(10*time.Millisecond))
	})
}

// ---------------------------------------------------------------------------
// 6. Large datagrams

// edgePadded is an INVITE of size bytes: a phone's, padded with headers of
// at most 7000 bytes each (the sanity layer refuses a header over 8 KiB).
func edgePadded(p *edgePeer, sbcAddr string, size int) edgeReq {
	r := edgePhoneReq(p, "INVITE", sbcAddr)
	for i := 0; i < 100; i++ {
		rest := size - len(r.String()) - len(fmt.Sprintf("X-Pad-%d: \r\n", i))
		if rest <= 0 {
			break
		}
		r.headers = append(r.headers, fmt.Sprintf("X-Pad-%d: %s", i, strings.Repeat("0123456789abcdef", 7000/16+1)[:min(rest, 7000)]))
	}
	return r
}

// TestEdgeLargeMessage: a 60 KB INVITE (UDP: one datagram) is processed —
// challenged with 407 — with limits.max_message_size 65535, over UDP and
// TCP. With 16384 it is dropped unanswered over UDP (counted as
// preparse_too-large) while a phone-sized INVITE from the same socket is
// challenged, and over TCP the connection is closed without an answer.
func TestEdgeLargeMessage(t *testing.T) {
	SkipIfShort(t)
	const size = 60000
	for _, limit := range []int{65535, 16384} {
		t.Run(fmt.Sprintf("max_%d", limit), func(t *testing.T) {
			t.Parallel()
			sbc := StartSBC(t, SBCConfig{Transport: Transports[0], PBXPort: AllocPorts(t, PBXIP), Users: demoUsers,
				Extra: edgePolicy + fmt.Sprintf("limits: {max_message_size: %d}\n", limit)})
			for _, tr := range Transports {
				p := newEdgePeer(t, tr.Name, OutsideIP, sbc.Addr)
				big := edgePadded(p, sbc.Addr, size).String()
				if len(big) != size {
					t.Fatalf("padded INVITE is %d bytes, want %d", len(big), size)
				}
				p.send(big)
				got := p.recv(2*time.Second, func(m string) bool { return code(m) >= 200 })
				t.Logf("%s: %d-byte INVITE, max_message_size %d: %q (connection ended: %v)", tr.Name, len(big), limit, edgeStarts(got), p.ended)
				if limit >= len(big) {
					if len(got) == 0 || code(got[len(got)-1]) != 407 {
						t.Errorf("%s: %d-byte INVITE with max_message_size %d: got %q (connection ended: %v), want 407",
							tr.Name, len(big), limit, edgeStarts(got), p.ended)
					}
					continue
				}
				if len(got) != 0 {
					t.Errorf("%s: %d-byte INVITE with max_message_size %d: got %q, want no answer", tr.Name, len(big), limit, edgeStarts(got))
				}
				if tr.Name == "tcp" {
					if p.recv(3*time.Second, nil); p.ended == nil {
						t.Errorf("tcp: the connection of a %d-byte message stayed open with max_message_size %d", len(big), limit)
					}
					continue
				}
				// The same socket is answered when it sends what fits.
				res, all := p.ask(edgePhoneReq(p, "INVITE", sbc.Addr).String(), 3*time.Second)
				if code(res) != 407 {
					t.Errorf("udp: a phone-sized INVITE after the large one: got %q, want 407", edgeStarts(all))
				}
				if v := edgeMetric(t, sbc, `sipwall_server_dropped_total{reason="preparse_too-large"}`); v != 1 {
					t.Errorf("sipwall_server_dropped_total{reason=\"preparse_too-large\"} = %v, want 1", v)
				}
			}
		})
	}
}

// edgeTailString is the end of s, at most n bytes.
func edgeTailString(s string, n int) string {
	if len(s) > n {
		return "...\n" + s[len(s)-n:]
	}
	return s
}
