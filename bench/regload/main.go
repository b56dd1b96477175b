// Command regload is the load generator of the authenticated registration
// benchmark (scripts/bench.sh, MODE=register AUTH=1): sipp 3.6 cannot take
// per-call digest credentials, so this program registers user1..userN, each
// with its own password, over UDP.
//
// For each user it sends a REGISTER, answers the 401 with a digest of the
// chosen algorithm (RFC 7616: qop=auth, nc=00000001, its own cnonce, uri =
// the Request-URI sip:<sbc>) and expects 200. Each of the two transactions
// is retransmitted per RFC 3261 17.1.2.2 (timer E from T1 = 500 ms doubling
// to T2 = 4 s, T2 once a provisional response came) and given up after
// timer F, 64*T1 = 32 s. New registrations start at a fixed rate, spread
// round-robin over several sockets bound to the source address.
//
// It prints a summary, one "key value" per line: attempted, succeeded,
// failed, elapsed, achieved rate (succeeded / elapsed), and the latency
// p50 / p99 of the authenticated round (first send of the REGISTER with
// Authorization to its 200) and of the whole registration. Everything is
// bounded by -deadline: registrations not finished by then count as failed.
//
//	regload -sbc 127.0.0.1:5060 -src 127.0.0.2 -users 10000 -rate 500
//
// With -write-users FILE it instead writes the users file of sipwall
// (sbc/auth/README.md) for user<start>..user<start+users-1>, password
// <password-prefix><n>, HA1 for -alg in -realm, and exits.
//
// Exit status: 0 when every registration succeeded, 1 when some failed, 2
// on a usage or setup error.
package main

import (
	"bufio"
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sipwall/sipwall/sbc/auth"
)

// RFC 3261 timers of a non-INVITE client transaction.
const (
	t1     = 500 * time.Millisecond
	t2     = 4 * time.Second
	timerF = 64 * t1
	// maxStale bounds the re-challenges (stale=true) one registration may
	// answer before it counts as failed.
	maxStale = 2
)

type options struct {
	sbc      netip.AddrPort
	src      netip.Addr
	users    int
	start    int
	rate     float64
	sockets  int
	deadline time.Duration
	realm    string
	alg      string
	prefix   string
	expires  int
	quiet    bool
}

func main() {
	os.Exit(run())
}

func run() int {
	var (
		o          options
		sbcAddr    string
		srcAddr    string
		writeUsers string
	)
	fs := flag.NewFlagSet("regload", flag.ContinueOnError)
	fs.StringVar(&sbcAddr, "sbc", "127.0.0.1:5060", "sipwall's UDP address `ip:port` (also the Request-URI and the AOR host)")
	fs.StringVar(&srcAddr, "src", "127.0.0.2", "source `IP` the sockets bind to")
	fs.IntVar(&o.users, "users", 10000, "number of distinct users to register (user<start>..)")
	fs.IntVar(&o.start, "start", 1, "number of the first user")
	fs.Float64Var(&o.rate, "rate", 500, "new registrations per second")
	fs.IntVar(&o.sockets, "sockets", 8, "UDP sockets the load is spread over")
	fs.DurationVar(&o.deadline, "deadline", 0, "bound on the whole run (default users/rate + 2*32s + 10s)")
	fs.StringVar(&o.realm, "realm", "sipwall", "realm of the users file (-write-users); challenges for another realm fail")
	fs.StringVar(&o.alg, "alg", auth.SHA256, "digest algorithm to answer with: SHA-256, SHA-512-256 or MD5")
	fs.StringVar(&o.prefix, "password-prefix", "bench-", "password of user<n> is <prefix><n>")
	fs.IntVar(&o.expires, "expires", 3600, "Expires of the REGISTERs")
	fs.BoolVar(&o.quiet, "q", false, "no progress lines on stderr")
	fs.StringVar(&writeUsers, "write-users", "", "write the users `file` and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "regload: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if o.users < 1 || o.start < 0 || o.sockets < 1 || o.sockets > 1024 || o.expires < 0 {
		fmt.Fprintln(os.Stderr, "regload: -users and -sockets (up to 1024) must be at least 1, -start and -expires not negative")
		return 2
	}
	if auth.HashPassword("u", "r", "p", o.alg) == "" {
		fmt.Fprintf(os.Stderr, "regload: unsupported -alg %q\n", o.alg)
		return 2
	}
	if writeUsers != "" {
		if err := writeUsersFile(writeUsers, o); err != nil {
			fmt.Fprintln(os.Stderr, "regload:", err)
			return 2
		}
		return 0
	}
	var err error
	if o.sbc, err = netip.ParseAddrPort(sbcAddr); err != nil {
		fmt.Fprintln(os.Stderr, "regload: -sbc:", err)
		return 2
	}
	if o.src, err = netip.ParseAddr(srcAddr); err != nil {
		fmt.Fprintln(os.Stderr, "regload: -src:", err)
		return 2
	}
	if !(o.rate > 0) || o.rate > 100000 {
		fmt.Fprintln(os.Stderr, "regload: -rate must be above 0 and at most 100000")
		return 2
	}
	if o.deadline <= 0 {
		o.deadline = time.Duration(float64(o.users)/o.rate*float64(time.Second)) + 2*timerF + 10*time.Second
	}
	s, err := newLoad(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "regload:", err)
		return 2
	}
	sum := s.run()
	sum.print(os.Stdout)
	if sum.failed > 0 || sum.succeeded != o.users {
		return 1
	}
	return 0
}

// writeUsersFile writes the users file atomically (temporary file, rename).
func writeUsersFile(path string, o options) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<16)
	fmt.Fprintf(w, "# written by bench/regload: user%d..user%d, password %s<n>, realm %s\nusers:\n",
		o.start, o.start+o.users-1, o.prefix, o.realm)
	for n := o.start; n < o.start+o.users; n++ {
		user := "user" + strconv.Itoa(n)
		ha1 := auth.HashPassword(user, o.realm, o.prefix+strconv.Itoa(n), o.alg)
		fmt.Fprintf(w, "  - name: %s\n    ha1: {%s: \"%s\"}\n", user, o.alg, ha1)
	}
	err = w.Flush()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write users file: %w", err)
	}
	return nil
}

// load is one run: the sockets and the results.
type load struct {
	o     options
	socks []*sock
	ruri  string // sip:<sbc>
	host  string // AOR host

	mu      sync.Mutex
	res     map[string]int // failures by reason
	ok      int
	failed  int
	retrans int
	authLat []time.Duration
	fullLat []time.Duration
	pending int
	// paced is set once no registration will start any more; allDone is
	// closed when paced and none is pending.
	paced    bool
	lastDone time.Time
	allDone  chan struct{}
}

// sock is one UDP socket and the registrations it carries, by Call-ID.
type sock struct {
	l     *load
	conn  *net.UDPConn
	local string // ip:port for Via and Contact
	mu    sync.Mutex
	regs  map[string]*reg
}

// reg is one user's registration: at most one transaction at a time.
type reg struct {
	s      *sock
	n      int
	user   string
	callID string
	tag    string
	cseq   int
	branch string
	msg    []byte
	// sent is the first send of the current transaction; interval the
	// current timer E; timer its pending retransmission.
	sent     time.Time
	interval time.Duration
	timer    *time.Timer
	gen      int // bumped at each new transaction, so old timers do nothing
	began    time.Time
	authAt   time.Time // first send of the last authenticated REGISTER
	stale    int
	done     bool
}

func newLoad(o options) (*load, error) {
	l := &load{
		o:       o,
		ruri:    "sip:" + o.sbc.String(),
		host:    o.sbc.Addr().String(),
		res:     map[string]int{},
		allDone: make(chan struct{}),
	}
	if o.sbc.Addr().Is6() {
		l.host = "[" + l.host + "]"
	}
	for range o.sockets {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(o.src, 0)))
		if err != nil {
			l.close()
			return nil, fmt.Errorf("bind %s: %w", o.src, err)
		}
		_ = c.SetReadBuffer(4 << 20)
		_ = c.SetWriteBuffer(4 << 20)
		l.socks = append(l.socks, &sock{l: l, conn: c, local: c.LocalAddr().String(), regs: map[string]*reg{}})
	}
	return l, nil
}

func (l *load) close() {
	for _, s := range l.socks {
		s.conn.Close()
	}
}

// run starts the registrations at the rate and waits for all of them or
// the deadline, whichever comes first.
func (l *load) run() summary {
	begin := time.Now()
	end := begin.Add(l.o.deadline)
	var readers sync.WaitGroup
	for _, s := range l.socks {
		readers.Add(1)
		go func() {
			defer readers.Done()
			s.read()
		}()
	}
	progress := time.NewTicker(5 * time.Second)
	defer progress.Stop()
	attempted := 0
	interval := time.Duration(float64(time.Second) / l.o.rate)
pace:
	for i := range l.o.users {
		at := begin.Add(time.Duration(i) * interval)
		if at.After(end) {
			break
		}
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		select {
		case <-progress.C:
			l.progress(attempted, begin)
		default:
		}
		if time.Now().After(end) {
			break pace
		}
		l.mu.Lock()
		l.pending++
		l.mu.Unlock()
		l.socks[i%len(l.socks)].begin(l.o.start + i)
		attempted++
	}
	l.mu.Lock()
	l.paced = true
	l.checkDone()
	l.mu.Unlock()
	timeout := time.NewTimer(time.Until(end))
wait:
	for {
		select {
		case <-l.allDone:
			break wait
		case <-timeout.C:
			break wait
		case <-progress.C:
			l.progress(attempted, begin)
		}
	}
	timeout.Stop()
	// Whatever is still open failed: stop its timers, count it.
	for _, s := range l.socks {
		s.mu.Lock()
		for _, r := range s.regs {
			r.finish("deadline", false)
		}
		s.mu.Unlock()
	}
	l.close()
	readers.Wait()

	l.mu.Lock()
	defer l.mu.Unlock()
	last := l.lastDone
	if last.IsZero() {
		last = time.Now()
	}
	return summary{
		attempted: attempted,
		succeeded: l.ok,
		failed:    l.failed,
		elapsed:   last.Sub(begin),
		retrans:   l.retrans,
		reasons:   l.res,
		authLat:   l.authLat,
		fullLat:   l.fullLat,
		alg:       l.o.alg,
		sockets:   len(l.socks),
		rate:      l.o.rate,
	}
}

func (l *load) progress(attempted int, begin time.Time) {
	if l.o.quiet {
		return
	}
	l.mu.Lock()
	ok, failed := l.ok, l.failed
	l.mu.Unlock()
	fmt.Fprintf(os.Stderr, "regload: %5.1fs started %d, ok %d, failed %d\n",
		time.Since(begin).Seconds(), attempted, ok, failed)
}

// begin starts the registration of user<n> on s.
func (s *sock) begin(n int) {
	user := "user" + strconv.Itoa(n)
	r := &reg{
		s:      s,
		n:      n,
		user:   user,
		callID: fmt.Sprintf("rl-%d-%016x@%s", n, rand.Uint64(), s.l.o.src),
		tag:    fmt.Sprintf("rl%x", rand.Uint64()),
		began:  time.Now(),
	}
	s.mu.Lock()
	s.regs[r.callID] = r
	r.send(1, "")
	s.mu.Unlock()
}

// send starts a new transaction (under s.mu): builds the REGISTER with CSeq
// cseq and the Authorization line authz (may be empty), sends it and arms
// timer E.
func (r *reg) send(cseq int, authz string) {
	r.cseq = cseq
	r.branch = fmt.Sprintf("z9hG4bK-rl%x", rand.Uint64())
	l := r.s.l
	var b strings.Builder
	b.Grow(512 + len(authz))
	fmt.Fprintf(&b, "REGISTER %s SIP/2.0\r\n", l.ruri)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s;rport;branch=%s\r\n", r.s.local, r.branch)
	fmt.Fprintf(&b, "From: <sip:%s@%s>;tag=%s\r\n", r.user, l.host, r.tag)
	fmt.Fprintf(&b, "To: <sip:%s@%s>\r\n", r.user, l.host)
	fmt.Fprintf(&b, "Call-ID: %s\r\n", r.callID)
	fmt.Fprintf(&b, "CSeq: %d REGISTER\r\n", cseq)
	fmt.Fprintf(&b, "Contact: <sip:%s@%s>\r\n", r.user, r.s.local)
	if authz != "" {
		b.WriteString(authz)
		b.WriteString("\r\n")
	}
	fmt.Fprintf(&b, "Expires: %d\r\n", l.o.expires)
	b.WriteString("Max-Forwards: 70\r\nUser-Agent: sipwall-bench regload\r\nContent-Length: 0\r\n\r\n")
	r.msg = []byte(b.String())
	r.gen++
	r.sent = time.Now()
	if authz != "" {
		r.authAt = r.sent
	}
	r.interval = t1
	r.transmit()
	r.arm()
}

func (r *reg) transmit() {
	// A failed write is like a lost datagram: the retransmissions and
	// timer F deal with it.
	_, _ = r.s.conn.WriteToUDPAddrPort(r.msg, r.s.l.o.sbc)
}

// arm schedules the next retransmission, or timer F if that comes first.
func (r *reg) arm() {
	gen := r.gen
	wait := r.interval
	if left := time.Until(r.sent.Add(timerF)); left < wait {
		wait = max(left, 0)
	}
	r.timer = time.AfterFunc(wait, func() { r.fire(gen) })
}

// fire is timer E or F of transaction gen.
func (r *reg) fire(gen int) {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.done || gen != r.gen {
		return
	}
	if time.Since(r.sent) >= timerF {
		r.finish(fmt.Sprintf("timeout-cseq%d", r.cseq), false)
		return
	}
	r.transmit()
	s.l.mu.Lock()
	s.l.retrans++
	s.l.mu.Unlock()
	r.interval = min(2*r.interval, t2)
	r.arm()
}

// finish ends the registration once (under s.mu) and records its result.
func (r *reg) finish(reason string, ok bool) {
	if r.done {
		return
	}
	r.done = true
	r.gen++
	if r.timer != nil {
		r.timer.Stop()
	}
	delete(r.s.regs, r.callID)
	now := time.Now()
	l := r.s.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if ok {
		l.ok++
		l.authLat = append(l.authLat, now.Sub(r.authAt))
		l.fullLat = append(l.fullLat, now.Sub(r.began))
	} else {
		l.failed++
		l.res[reason]++
	}
	l.lastDone = now
	l.pending--
	l.checkDone()
}

// checkDone closes allDone once every registration ended (under l.mu).
func (l *load) checkDone() {
	if !l.paced || l.pending > 0 {
		return
	}
	select {
	case <-l.allDone:
	default:
		close(l.allDone)
	}
}

// read handles the responses arriving on s until the socket is closed.
func (s *sock) read() {
	buf := make([]byte, 65536)
	for {
		n, _, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		resp, ok := parseResponse(buf[:n])
		if !ok {
			continue
		}
		s.mu.Lock()
		if r := s.regs[resp.callID]; r != nil {
			r.handle(resp)
		}
		s.mu.Unlock()
	}
}

// handle processes a response of r's current transaction (under s.mu).
func (r *reg) handle(resp response) {
	if r.done || resp.cseq != r.cseq || resp.method != "REGISTER" || resp.branch != r.branch {
		return // a late retransmission of an earlier transaction
	}
	switch {
	case resp.status < 200:
		// Proceeding: retransmit at T2 from now on (RFC 3261 17.1.2.2).
		r.interval = t2
	case resp.status == 200:
		if r.cseq == 1 {
			r.finish("200-without-challenge", false)
			return
		}
		r.finish("", true)
	case resp.status == 401:
		r.gen++ // this transaction is over
		if r.timer != nil {
			r.timer.Stop()
		}
		ch, ok := pickChallenge(resp.challenges, r.s.l.o.alg)
		if !ok {
			r.finish("401-no-"+r.s.l.o.alg+"-challenge", false)
			return
		}
		if r.cseq > 1 {
			if !ch.stale || r.stale >= maxStale {
				r.finish("401-after-credentials", false)
				return
			}
			r.stale++
		}
		r.send(r.cseq+1, r.authorization(ch))
	default:
		r.finish("status-"+strconv.Itoa(resp.status), false)
	}
}

// authorization is the Authorization header line answering ch.
func (r *reg) authorization(ch challenge) string {
	l := r.s.l
	alg := l.o.alg
	ha1 := auth.HashPassword(r.user, ch.realm, l.o.prefix+strconv.Itoa(r.n), alg)
	cnonce := fmt.Sprintf("%016x", rand.Uint64())
	const nc = "00000001"
	ha2 := hexHash(alg, "REGISTER:"+l.ruri)
	resp := hexHash(alg, ha1+":"+ch.nonce+":"+nc+":"+cnonce+":auth:"+ha2)
	var b strings.Builder
	fmt.Fprintf(&b, `Authorization: Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=%s, cnonce="%s", qop=auth, nc=%s`,
		r.user, ch.realm, ch.nonce, l.ruri, resp, alg, cnonce, nc)
	if ch.opaque != "" {
		fmt.Fprintf(&b, `, opaque="%s"`, ch.opaque)
	}
	return b.String()
}

func hexHash(alg, data string) string {
	var h hash.Hash
	switch alg {
	case auth.SHA256:
		h = sha256.New()
	case auth.SHA512256:
		h = sha512.New512_256()
	default:
		h = md5.New()
	}
	h.Write([]byte(data))
	return hex.EncodeToString(h.Sum(nil))
}

// response is what regload reads of a SIP response.
type response struct {
	status     int
	callID     string
	cseq       int
	method     string
	branch     string // of the top Via
	challenges []challenge
}

type challenge struct {
	realm, nonce, opaque, alg, qop string
	stale                          bool
}

// parseResponse reads the status line and the headers regload needs. It
// does not unfold continuation lines (sipwall writes none).
func parseResponse(b []byte) (response, bool) {
	var r response
	text := string(b)
	head, _, _ := strings.Cut(text, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	first := lines[0]
	if !strings.HasPrefix(first, "SIP/2.0 ") || len(first) < 11 {
		return r, false
	}
	code, err := strconv.Atoi(first[8:11])
	if err != nil {
		return r, false
	}
	r.status = code
	sawVia := false
	for _, line := range lines[1:] {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		name = strings.ToLower(strings.TrimSpace(name))
		value = strings.TrimSpace(value)
		switch name {
		case "call-id", "i":
			r.callID = value
		case "cseq":
			num, method, _ := strings.Cut(value, " ")
			r.cseq, _ = strconv.Atoi(num)
			r.method = strings.TrimSpace(method)
		case "via", "v":
			if !sawVia {
				sawVia = true
				r.branch = viaBranch(value)
			}
		case "www-authenticate":
			r.challenges = append(r.challenges, parseChallenges(value)...)
		}
	}
	return r, r.callID != ""
}

// viaBranch is the branch parameter of the first Via value in v.
func viaBranch(v string) string {
	v, _, _ = strings.Cut(v, ",")
	for p := range strings.SplitSeq(v, ";") {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, "branch") {
			return strings.TrimSpace(val)
		}
	}
	return ""
}

// parseChallenges parses one WWW-Authenticate value, which may hold several
// comma-joined Digest challenges.
func parseChallenges(v string) []challenge {
	var out []challenge
	var cur *challenge
	i := 0
	for i < len(v) {
		for i < len(v) && (v[i] == ' ' || v[i] == '\t' || v[i] == ',') {
			i++
		}
		j := i
		for j < len(v) && v[j] != '=' && v[j] != ' ' && v[j] != ',' {
			j++
		}
		tok := v[i:j]
		i = j
		for i < len(v) && v[i] == ' ' {
			i++
		}
		if i >= len(v) || v[i] != '=' {
			// A scheme name starts a new challenge.
			if tok == "" {
				i++
				continue
			}
			if strings.EqualFold(tok, "Digest") {
				out = append(out, challenge{})
				cur = &out[len(out)-1]
			} else {
				cur = nil
			}
			continue
		}
		i++ // '='
		for i < len(v) && v[i] == ' ' {
			i++
		}
		var val string
		if i < len(v) && v[i] == '"' {
			i++
			var sb strings.Builder
			for i < len(v) && v[i] != '"' {
				if v[i] == '\\' && i+1 < len(v) {
					i++
				}
				sb.WriteByte(v[i])
				i++
			}
			i++ // closing quote
			val = sb.String()
		} else {
			j = i
			for j < len(v) && v[j] != ',' {
				j++
			}
			val = strings.TrimSpace(v[i:j])
			i = j
		}
		if cur == nil {
			continue
		}
		switch strings.ToLower(tok) {
		case "realm":
			cur.realm = val
		case "nonce":
			cur.nonce = val
		case "opaque":
			cur.opaque = val
		case "algorithm":
			cur.alg = val
		case "qop":
			cur.qop = val
		case "stale":
			cur.stale = strings.EqualFold(val, "true")
		}
	}
	return out
}

// pickChallenge returns the challenge for alg (absent algorithm means MD5)
// that offers qop auth.
func pickChallenge(chs []challenge, alg string) (challenge, bool) {
	for _, c := range chs {
		a := c.alg
		if a == "" {
			a = auth.MD5
		}
		if !strings.EqualFold(a, alg) || c.nonce == "" {
			continue
		}
		for q := range strings.SplitSeq(c.qop, ",") {
			if strings.TrimSpace(q) == "auth" {
				return c, true
			}
		}
	}
	return challenge{}, false
}

type summary struct {
	attempted, succeeded, failed, retrans int
	elapsed                               time.Duration
	reasons                               map[string]int
	authLat, fullLat                      []time.Duration
	alg                                   string
	sockets                               int
	rate                                  float64
}

func (s summary) print(w *os.File) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	sec := s.elapsed.Seconds()
	achieved := 0.0
	if sec > 0 {
		achieved = float64(s.succeeded) / sec
	}
	fmt.Fprintf(bw, "algorithm %s\n", s.alg)
	fmt.Fprintf(bw, "sockets %d\n", s.sockets)
	fmt.Fprintf(bw, "offered_rate %g\n", s.rate)
	fmt.Fprintf(bw, "attempted %d\n", s.attempted)
	fmt.Fprintf(bw, "succeeded %d\n", s.succeeded)
	fmt.Fprintf(bw, "failed %d\n", s.failed)
	fmt.Fprintf(bw, "elapsed_s %.2f\n", sec)
	fmt.Fprintf(bw, "achieved_rate %.1f\n", achieved)
	fmt.Fprintf(bw, "retransmissions %d\n", s.retrans)
	fmt.Fprintf(bw, "auth_p50_ms %s\n", pct(s.authLat, 50))
	fmt.Fprintf(bw, "auth_p99_ms %s\n", pct(s.authLat, 99))
	fmt.Fprintf(bw, "register_p50_ms %s\n", pct(s.fullLat, 50))
	fmt.Fprintf(bw, "register_p99_ms %s\n", pct(s.fullLat, 99))
	reasons := make([]string, 0, len(s.reasons))
	for k := range s.reasons {
		reasons = append(reasons, k)
	}
	slices.Sort(reasons)
	parts := make([]string, 0, len(reasons))
	for _, k := range reasons {
		parts = append(parts, fmt.Sprintf("%s=%d", k, s.reasons[k]))
	}
	if len(parts) == 0 {
		parts = append(parts, "none")
	}
	fmt.Fprintf(bw, "failures %s\n", strings.Join(parts, ","))
}

// pct is the p-th percentile (nearest rank) in milliseconds, "-" if empty.
func pct(d []time.Duration, p int) string {
	if len(d) == 0 {
		return "-"
	}
	slices.Sort(d)
	k := (len(d)*p + 99) / 100 // ceil(n*p/100), the nearest rank
	k = min(max(k, 1), len(d))
	return fmt.Sprintf("%.2f", float64(d[k-1].Microseconds())/1000)
}
