package sbc

import (
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The edge is sipwall's own server transaction layer for the requests its
// listeners read; sipgo keeps the client side (requests the SBC sends and
// their responses). Owning it is what lets the SBC
//
//   - run every request through the chain (ban check and sanity first)
//     before anything answers it: sipgo's layer answered malformed
//     requests with 400, matched CANCELs and absorbed retransmissions
//     before any layer saw them;
//   - match a transaction by the flow a request came on as well as its
//     branch and sent-by, so that a CANCEL, an ACK or a reused branch from
//     another source never touches another source's transaction;
//   - answer unauthenticated out-of-dialog requests statelessly, once: no
//     transaction kept, no retransmission, and over UDP never more bytes
//     than the request carried (no reflection amplifier);
//   - write the answers to requests already read on a stream connection
//     before that connection is closed.
type edge struct {
	s   *Server
	max int

	// run hands a new transaction to the chain (a goroutine each; tests
	// and the fuzz target run it in place).
	run func(*sip.Request, *edgeTx)

	mu  sync.Mutex
	txs map[txKey]*edgeTx
	// budget bounds the bytes of stateless answers per UDP source.
	budget *budget

	// Counters (EdgeStats).
	retransmits, absorbed, stateless, trimmed, amplification, full, cancelsMatched, cancelsRefused, acksRefused atomic.Int64
}

// EdgeStats counts what the edge transaction layer did.
type EdgeStats struct {
	// Transactions is the number held now.
	Transactions int
	// Retransmits counts responses sent again (Timer G, or for a
	// retransmitted request); Absorbed, request retransmissions answered
	// by the transaction without the chain.
	Retransmits, Absorbed int64
	// Stateless counts final responses sent once without a transaction;
	// Trimmed those cut to stay within the request's size over UDP, and
	// Amplification those not sent because even cut they were larger.
	Stateless, Trimmed, Amplification int64
	// Full counts requests handled statelessly because the table was full.
	Full int64
	// CancelsMatched and CancelsRefused count CANCELs that found their
	// INVITE, and those that did not (481); AcksRefused ACKs with an
	// INVITE's branch from its flow that did not match it (dropped).
	CancelsMatched, CancelsRefused, AcksRefused int64
}

func newEdge(s *Server, max int) *edge {
	if max <= 0 {
		max = 65536
	}
	e := &edge{s: s, max: max, txs: make(map[txKey]*edgeTx), budget: newBudget(max)}
	w := &workers{jobs: make(chan job), idle: workerIdle, do: func(j job) {
		if j.tx.flow.stream != nil {
			defer j.tx.flow.stream.inflight.Done()
		}
		s.dispatch(j.req, j.tx)
	}}
	e.run = w.run
	return e
}

// workerIdle is how long a worker waits for the next request before it
// ends.
const workerIdle = 5 * time.Second

// workers run the chain for each new transaction, each on a goroutine of
// its own, reusing the goroutines of requests done: a new goroutine's
// stack grows several times on the way through the chain (policy
// evaluation is deep), and those copies were 5 % of the CPU at 400
// calls/s. How many run at once is bounded by the admission limit
// (Options.MaxInflight) and the transaction table, as before.
type workers struct {
	jobs chan job // unbuffered: a send succeeds only to an idle worker
	idle time.Duration
	do   func(job)
}

type job struct {
	req *sip.Request
	tx  *edgeTx
}

func (w *workers) run(req *sip.Request, tx *edgeTx) {
	j := job{req, tx}
	select {
	case w.jobs <- j:
	default:
		go w.work(j)
	}
}

func (w *workers) work(j job) {
	t := time.NewTimer(w.idle)
	defer t.Stop()
	for {
		w.do(j)
		j = job{} // nothing of the request is kept while idle
		t.Reset(w.idle)
		select {
		case j = <-w.jobs:
		case <-t.C:
			return
		}
	}
}

// Stats returns the edge's counters.
func (e *edge) stats() EdgeStats {
	e.mu.Lock()
	n := len(e.txs)
	e.mu.Unlock()
	return EdgeStats{
		Transactions: n, Retransmits: e.retransmits.Load(), Absorbed: e.absorbed.Load(),
		Stateless: e.stateless.Load(), Trimmed: e.trimmed.Load(), Amplification: e.amplification.Load(),
		Full: e.full.Load(), CancelsMatched: e.cancelsMatched.Load(), CancelsRefused: e.cancelsRefused.Load(),
		AcksRefused: e.acksRefused.Load(),
	}
}

// keyOf computes the transaction key of a request (RFC 3261 17.2.3), with
// the flow. ok is false when the request has no Via, CSeq or branch to
// match on; such a request gets a transaction of its own, never shared.
func keyOf(req *sip.Request, f *flow) (txKey, bool) {
	via, cseq := req.Via(), req.CSeq()
	if via == nil || cseq == nil {
		return txKey{}, false
	}
	branch, _ := via.Params.Get("branch")
	if !strings.HasPrefix(branch, "z9hG4bK") || len(branch) <= len("z9hG4bK") {
		// RFC 2543 peers: no usable branch. Such requests are matched by
		// nothing, which costs them only retransmission handling.
		return txKey{}, false
	}
	method := string(req.Method)
	if req.Method == sip.ACK {
		method = string(sip.INVITE)
	}
	sentBy := strings.ToLower(via.Host)
	if via.Port != 0 {
		sentBy += ":" + itoa(via.Port)
	}
	return txKey{branch: branch, sentBy: sentBy, method: method, peer: f.peer, transport: f.transport}, true
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	if n == 0 {
		return "0"
	}
	for n > 0 && i > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// receive takes a request read on a listener. size is its length on the
// wire. It never blocks on the chain.
func (e *edge) receive(req *sip.Request, f *flow, size int) {
	if !f.reliable() {
		e.budget.add(f.peer.Addr(), size)
	}
	key, keyed := keyOf(req, f)
	if keyed && req.Method == sip.ACK {
		if tx := e.lookup(key); tx != nil {
			if !tx.ack(req) {
				e.acksRefused.Add(1)
			}
			return
		}
		// The ACK of a 2xx has a branch of its own: it is the chain's.
	}
	if keyed && req.Method != sip.ACK {
		if tx := e.lookup(key); tx != nil {
			e.absorbed.Add(1)
			tx.retransmission()
			return
		}
	}
	tx := newEdgeTx(e, key, req, f)
	tx.size = size
	if keyed && req.Method != sip.ACK {
		e.mu.Lock()
		if old, dup := e.txs[key]; dup {
			// Read twice at once (two goroutines of a stream): the
			// second is a retransmission.
			e.mu.Unlock()
			e.absorbed.Add(1)
			old.retransmission()
			return
		}
		if len(e.txs) < e.max {
			e.txs[key] = tx
			tx.keyed = true
		} else {
			e.full.Add(1)
		}
		e.mu.Unlock()
	}
	if f.stream != nil {
		f.stream.inflight.Add(1)
	}
	e.run(req, tx)
}

func (e *edge) lookup(k txKey) *edgeTx {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.txs[k]
}

func (e *edge) remove(tx *edgeTx) {
	e.mu.Lock()
	if e.txs[tx.key] == tx {
		delete(e.txs, tx.key)
	}
	e.mu.Unlock()
}

// findCancel finds the INVITE transaction a CANCEL names: same flow,
// branch and sent-by, Call-ID, From tag, CSeq number and To (RFC 3261
// 9.2). nil when none: the CANCEL gets 481.
func (e *edge) findCancel(c *sip.Request, f *flow) *edgeTx {
	key, ok := keyOf(c, f)
	if !ok {
		e.cancelsRefused.Add(1)
		return nil
	}
	key.method = string(sip.INVITE)
	tx := e.lookup(key)
	if tx == nil {
		e.cancelsRefused.Add(1)
		return nil
	}
	if d := tx.dialog(); !d.matches(c) || c.To().Params.Has("tag") != d.toTagged {
		e.cancelsRefused.Add(1)
		return nil
	}
	e.cancelsMatched.Add(1)
	return tx
}

// send writes a message to a flow; errors are the transport's (a closed
// connection, a full socket buffer) and leave the transaction as it is.
func (e *edge) send(f *flow, data []byte) error {
	if f.write == nil {
		return nil
	}
	return f.write(data)
}

// trimmable are the headers a stateless answer can lose, in that order,
// to stay within the size of the request it answers: what the client can
// do without.
var trimmable = []string{"Warning", "Server", "User-Agent", "Accept", "Accept-Encoding", "Accept-Language", "Supported", "Allow", "Retry-After"}

// fit returns res cut to at most limit bytes on the wire (over UDP, where
// Content-Length is optional): the trimmable headers go first, then the
// challenges after the first (the client answers the first it knows),
// then an empty body's Content-Length, until it fits; nil when even the
// rest is larger. An answer to an unauthenticated request over UDP must
// never be a reflection amplifier.
func fit(res *sip.Response, limit int) (*sip.Response, bool) {
	if wireLen(res) <= limit {
		return res, false
	}
	res = res.Clone()
	for _, name := range trimmable {
		removeAll(res, name)
		if wireLen(res) <= limit {
			return res, true
		}
	}
	for _, name := range []string{"WWW-Authenticate", "Proxy-Authenticate"} {
		hs := res.GetHeaders(name)
		if len(hs) <= 1 {
			continue
		}
		keep := make([]sip.Header, 0, len(hs))
		for _, h := range hs {
			keep = append(keep, sip.NewHeader(h.Name(), h.Value()))
		}
		for len(keep) > 1 && wireLen(res) > limit {
			keep = keep[:len(keep)-1]
			removeAll(res, name)
			for _, h := range keep {
				res.AppendHeader(h)
			}
		}
	}
	if wireLen(res) > limit && len(res.Body()) == 0 {
		removeAll(res, "Content-Length")
	}
	if wireLen(res) <= limit {
		return res, true
	}
	return nil, true
}

// removeAll removes every header named name, however it is spelled.
func removeAll(res *sip.Response, name string) {
	var spell []string
	for _, h := range res.Headers() {
		if strings.EqualFold(h.Name(), name) {
			spell = append(spell, h.Name())
		}
	}
	for _, s := range spell {
		res.RemoveHeader(s)
	}
}

// budget keeps, per source address, the bytes its UDP requests brought
// minus the bytes of stateless answers sent back to it: a source gets back
// at most what it sent, so a flood with a forged source address reflects
// no more than it carried (ratio ≤ 1). A small first request whose answer
// is larger goes unanswered until its retransmission adds to the balance
// (a phone retransmits after T1; a spoofer's victim gains nothing).
type budget struct {
	mu     sync.Mutex
	max    int
	m      map[netip.Addr]*credit
	pruned time.Time // last full scan
	now    func() time.Time
}

type credit struct {
	bal  int
	seen time.Time
}

// budgetIdle forgets a source after this long without a request; budgetCap
// bounds what one source can bank.
const (
	budgetIdle = time.Minute
	budgetCap  = 64 << 10
)

func newBudget(max int) *budget {
	return &budget{max: max, m: make(map[netip.Addr]*credit), now: time.Now}
}

// add credits a request of n bytes from ip.
func (b *budget) add(ip netip.Addr, n int) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.m[ip]
	if c == nil {
		if len(b.m) >= b.max && now.Sub(b.pruned) >= time.Second {
			// A full scan at most once a second: new sources beyond the
			// table are not tracked (their answers must fit their own
			// request), which a flood of them cannot turn into a cost.
			b.prune(now)
			b.pruned = now
		}
		if len(b.m) >= b.max {
			return // untracked: its answers must fit its own request (spend)
		}
		c = &credit{}
		b.m[ip] = c
	}
	if now.Sub(c.seen) > budgetIdle {
		c.bal = 0
	}
	c.bal, c.seen = min(c.bal+n, budgetCap), now
}

// available returns the bytes ip may still be sent, at least floor (the
// request being answered, for an untracked source).
func (b *budget) available(ip netip.Addr, floor int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c := b.m[ip]; c != nil {
		return c.bal
	}
	return floor
}

// spend takes n bytes from ip's balance; false when there are not as many
// (a concurrent answer took them).
func (b *budget) spend(ip netip.Addr, n, floor int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.m[ip]
	if c == nil {
		return n <= floor
	}
	if c.bal < n {
		return false
	}
	c.bal -= n
	return true
}

// prune drops sources idle for budgetIdle (mu held).
func (b *budget) prune(now time.Time) {
	for ip, c := range b.m {
		if now.Sub(c.seen) > budgetIdle {
			delete(b.m, ip)
		}
	}
}
