package sbc

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// flow is where a request came from and how an answer gets back to it:
// the listener socket and peer of a datagram, or the stream connection.
type flow struct {
	transport string // lower case: udp, tcp, tls, wss
	local     netip.AddrPort
	peer      netip.AddrPort
	// write sends one whole message (a WebSocket frame is built by it).
	write func([]byte) error
	// stream is the connection of a stream flow, nil for datagrams: it
	// counts the requests in progress so that it closes only after their
	// answers are written.
	stream *limitConn
}

func (f *flow) reliable() bool { return f.transport != "udp" }

// txKey identifies a server transaction at the edge: the RFC 3261 17.2.3
// fields, and the flow it arrived on, so that a request from another
// source never matches, whatever it copies.
type txKey struct {
	branch, sentBy, method string
	peer                   netip.AddrPort
	transport              string
}

// Transaction states (RFC 3261 17.2, RFC 6026 for Accepted).
const (
	txTrying = iota
	txProceeding
	txCompleted // final non-2xx sent (INVITE) or any final (non-INVITE)
	txAccepted  // INVITE 2xx sent: the TU retransmits it, ACKs go to Acks
	txConfirmed // INVITE non-2xx ACKed
	txTerminated
)

// edgeTx is a server transaction of the edge layer. It implements
// sip.ServerTransaction for the layers (the B2BUA sees CANCEL and ACKs
// through it) and answers retransmissions of its request itself.
type edgeTx struct {
	e     *edge
	key   txKey
	keyed bool // in the table (stateless answers never are)
	// req is the request until its final response; then nil, and id
	// keeps what matches an ACK or a CANCEL to it. Read both under mu
	// (request, dialog) on any goroutine but the one running the chain.
	req    *sip.Request
	id     dialogID
	isAck  bool
	flow   *flow
	invite bool
	size   int // of the request on the wire

	mu       sync.Mutex
	state    int
	last     []byte // last response sent, for retransmissions of the request
	toTag    string // of the final response, for matching its ACK
	onCancel []sip.FnTxCancel
	// cancelled is the CANCEL that ended the INVITE with 487; an OnCancel
	// registered after it runs at once.
	cancelled *sip.Request
	final     int // status of the final response sent
	onTerm    []sip.FnTxTerminate
	timers    []*time.Timer
	trying    *time.Timer
	interval  time.Duration // Timer G
	err       error

	acks chan *sip.Request
	done chan struct{}
}

var _ sip.ServerTransaction = (*edgeTx)(nil)

// errTerminated is returned by Respond after the transaction ended.
var errTerminated = errors.New("edge: transaction terminated")

func newEdgeTx(e *edge, key txKey, req *sip.Request, f *flow) *edgeTx {
	tx := &edgeTx{
		e: e, key: key, req: req, flow: f, invite: req.IsInvite(), isAck: req.IsAck(),
		done: make(chan struct{}),
	}
	if tx.invite {
		// Only an INVITE's transaction sees ACKs (nil: Acks never yields).
		tx.acks = make(chan *sip.Request, 4)
	}
	return tx
}

// Respond sends res in the transaction, keeping what the RFC asks: the
// last response answers retransmissions; a final non-2xx to an INVITE is
// retransmitted over UDP until its ACK.
func (tx *edgeTx) Respond(res *sip.Response) error {
	return tx.respond(res, false)
}

// respond sends res; once, with no state kept, when stateless (the
// caller ends the transaction).
func (tx *edgeTx) respond(res *sip.Response, stateless bool) error {
	data := Marshal(res)
	code := int(res.StatusCode)
	tx.mu.Lock()
	if tx.state == txTerminated {
		tx.mu.Unlock()
		return errTerminated
	}
	if tx.trying != nil {
		tx.trying.Stop()
		tx.trying = nil
	}
	switch {
	case code < 200:
		if tx.state > txProceeding {
			tx.mu.Unlock()
			return nil // a provisional after the final is never sent
		}
		tx.state = txProceeding
		tx.last = data
		if to := res.To(); to != nil && code > 100 {
			// The dialog's tag, for a 487 the edge sends on CANCEL.
			if t, ok := to.Params.Get("tag"); ok && t != "" {
				tx.toTag = t
			}
		}
	case tx.state == txAccepted:
		// The TU's retransmission of its 2xx (RFC 6026 7.1).
		if code >= 300 {
			tx.mu.Unlock()
			return nil
		}
	case tx.state >= txCompleted:
		tx.mu.Unlock()
		return nil // one final response per transaction
	default:
		tx.final = code
		if to := res.To(); to != nil {
			tx.toTag, _ = to.Params.Get("tag")
		}
		if stateless {
			// Sent once: a retransmission before the transaction is
			// dropped must not get a copy past the byte budget.
			tx.state = txCompleted
			break
		}
		// What answers a retransmission of the request. Nothing after a
		// 2xx to an INVITE: the transaction absorbs those (RFC 6026 7.1)
		// while the TU retransmits its 2xx, and 64×T1 of every call's
		// 2xx with its SDP was a tenth of the heap calls leave behind.
		tx.last = data
		if tx.invite && code < 300 {
			tx.last = nil
		}
		// The transaction outlives the request's handling by up to 64×T1
		// (Timers H, J, RFC 6026 Accepted): at hundreds of calls a second,
		// keeping whole requests that long was most of the live heap.
		tx.id, tx.req = dialogOf(tx.req), nil
		switch {
		case tx.invite && code < 300:
			tx.state = txAccepted
			tx.after(64*sip.T1, func() { tx.terminate(nil) })
		case tx.invite:
			tx.state = txCompleted
			if !tx.flow.reliable() {
				tx.interval = sip.T1
				tx.after(tx.interval, tx.retransmitFinal)
			}
			tx.after(64*sip.T1, func() { tx.terminate(sip.ErrTransactionTimeout) })
		default:
			tx.state = txCompleted
			wait := 64 * sip.T1
			if tx.flow.reliable() {
				wait = 0
			}
			tx.after(wait, func() { tx.terminate(nil) })
		}
	}
	tx.mu.Unlock()
	return tx.e.send(tx.flow, data)
}

// after runs f after d on the transaction's timers (mu held).
func (tx *edgeTx) after(d time.Duration, f func()) {
	if tx.state == txTerminated {
		return
	}
	tx.timers = append(tx.timers, time.AfterFunc(d, f))
}

// retransmitFinal is Timer G: the final non-2xx again, at doubling
// intervals up to T2, until the ACK (RFC 3261 17.2.1).
func (tx *edgeTx) retransmitFinal() {
	tx.mu.Lock()
	if tx.state != txCompleted {
		tx.mu.Unlock()
		return
	}
	data := tx.last
	tx.interval = min(2*tx.interval, sip.T2)
	tx.after(tx.interval, tx.retransmitFinal)
	tx.mu.Unlock()
	tx.e.retransmits.Add(1)
	_ = tx.e.send(tx.flow, data)
}

// armTrying sends 100 Trying if no response came within 200 ms (RFC 3261
// 17.2.1). Armed only once a request passed the edge's checks (see
// Server.dispatch), so nobody unauthenticated gets one.
func (tx *edgeTx) armTrying() {
	if !tx.invite {
		return
	}
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.state != txTrying || tx.trying != nil {
		return
	}
	tx.trying = time.AfterFunc(200*time.Millisecond, func() {
		if req := tx.request(); req != nil { // nil: answered meanwhile
			_ = tx.Respond(sip.NewResponseFromRequest(req, 100, "Trying", nil))
		}
	})
}

// retransmission answers the request again: the last response, if any.
// An INVITE whose 2xx was sent is the TU's business (it retransmits the
// 2xx itself): nothing is sent.
func (tx *edgeTx) retransmission() {
	tx.mu.Lock()
	data, state := tx.last, tx.state
	tx.mu.Unlock()
	if data == nil || state == txAccepted || state >= txConfirmed {
		return
	}
	tx.e.retransmits.Add(1)
	_ = tx.e.send(tx.flow, data)
}

// ack takes an ACK with the INVITE's branch from its flow: the ACK of a
// final non-2xx ends the retransmissions; one for a 2xx (a peer that
// reuses the INVITE's branch) goes to Acks.
func (tx *edgeTx) ack(ack *sip.Request) bool {
	// One lock for the check and the change: a Timer H or Terminate in
	// between must not bring a terminated transaction back.
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if !tx.dialogLocked().matches(ack) {
		return false
	}
	if to := ack.To(); to == nil || tx.toTag == "" || !hasTag(to.Params, tx.toTag) {
		return false
	}
	switch tx.state {
	case txCompleted:
		tx.state = txConfirmed
		wait := sip.T4
		if tx.flow.reliable() {
			wait = 0
		}
		tx.after(wait, func() { tx.terminate(nil) })
		return true
	case txAccepted:
		select {
		case tx.acks <- ack:
		default:
		}
		return true
	}
	return tx.state == txConfirmed // a retransmitted ACK
}

// cancel applies a CANCEL that matched: 487 for the INVITE if it has no
// final response yet, then the OnCancel callbacks — only if the 487 is the
// final response (a 2xx sent meanwhile wins, and the call goes on).
func (tx *edgeTx) cancel(c *sip.Request) {
	tx.mu.Lock()
	if tx.state >= txCompleted || tx.cancelled != nil {
		tx.mu.Unlock()
		return
	}
	tx.cancelled = c
	res := sip.NewResponseFromRequest(tx.req, 487, "Request Terminated", nil)
	if tx.toTag != "" && res.To() != nil {
		// The tag of the provisional responses (RFC 3261 8.2.6.2).
		res.To().Params.Remove("tag")
		res.To().Params.Add("tag", tx.toTag)
	}
	tx.mu.Unlock()
	_ = tx.Respond(res)
	tx.mu.Lock()
	fns, won := tx.onCancel, tx.final == 487
	tx.mu.Unlock()
	if !won {
		return
	}
	for _, f := range fns {
		f(c)
	}
}

// Acks implements sip.ServerTransaction.
func (tx *edgeTx) Acks() <-chan *sip.Request { return tx.acks }

// OnCancel implements sip.ServerTransaction.
func (tx *edgeTx) OnCancel(f sip.FnTxCancel) bool {
	tx.mu.Lock()
	if c := tx.cancelled; c != nil && tx.final == 487 {
		// Cancelled before the layer asked: it learns at once.
		tx.mu.Unlock()
		f(c)
		return true
	}
	if tx.state == txTerminated {
		tx.mu.Unlock()
		return false
	}
	tx.onCancel = append(tx.onCancel, f)
	tx.mu.Unlock()
	return true
}

// OnTerminate implements sip.Transaction.
func (tx *edgeTx) OnTerminate(f sip.FnTxTerminate) bool {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.state == txTerminated {
		return false
	}
	tx.onTerm = append(tx.onTerm, f)
	return true
}

// Done implements sip.Transaction.
func (tx *edgeTx) Done() <-chan struct{} { return tx.done }

// Err implements sip.Transaction.
func (tx *edgeTx) Err() error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.err
}

// Terminate implements sip.Transaction.
func (tx *edgeTx) Terminate() { tx.terminate(nil) }

func (tx *edgeTx) terminate(err error) {
	tx.mu.Lock()
	if tx.state == txTerminated {
		tx.mu.Unlock()
		return
	}
	tx.state, tx.err = txTerminated, err
	for _, t := range tx.timers {
		t.Stop()
	}
	if tx.trying != nil {
		tx.trying.Stop()
	}
	tx.timers, tx.trying = nil, nil
	fns := tx.onTerm
	tx.mu.Unlock()
	if tx.keyed {
		tx.e.remove(tx)
	}
	close(tx.done)
	for _, f := range fns {
		f(tx.key.branch, err)
	}
}

// request is the transaction's request, nil once it has its final
// response.
func (tx *edgeTx) request() *sip.Request {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.req
}

// dialog is what matches an ACK or a CANCEL to the transaction's request.
func (tx *edgeTx) dialog() dialogID {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.dialogLocked()
}

func (tx *edgeTx) dialogLocked() dialogID {
	if tx.req != nil {
		return dialogOf(tx.req)
	}
	return tx.id
}

// dialogID is what names a request's transaction to a CANCEL or an ACK
// (RFC 3261 9.1 / 17.1.1.3): Call-ID, From tag, CSeq number and the To
// URI; whether the To has a tag tells a CANCEL of a re-INVITE apart.
type dialogID struct {
	ok             bool // the request has Call-ID, CSeq, From and To
	callID         string
	cseq           uint32
	fromTag        string
	toUser, toHost string
	toPort         int
	toTagged       bool
}

func dialogOf(req *sip.Request) dialogID {
	c, cs, f, t := req.CallID(), req.CSeq(), req.From(), req.To()
	if c == nil || cs == nil || f == nil || t == nil {
		return dialogID{}
	}
	d := dialogID{ok: true, callID: string(*c), cseq: cs.SeqNo,
		toUser: t.Address.User, toHost: t.Address.Host, toPort: t.Address.Port, toTagged: t.Params.Has("tag")}
	d.fromTag, _ = f.Params.Get("tag")
	return d
}

// matches reports whether m (a CANCEL or an ACK) names the request of d
// (the To tag is the caller's to check).
func (d dialogID) matches(m *sip.Request) bool {
	c, cs, f, t := m.CallID(), m.CSeq(), m.From(), m.To()
	if !d.ok || c == nil || cs == nil || f == nil || t == nil {
		return false
	}
	if string(*c) != d.callID || cs.SeqNo != d.cseq {
		return false
	}
	if tag, _ := f.Params.Get("tag"); tag != d.fromTag {
		return false
	}
	return strings.EqualFold(t.Address.Host, d.toHost) && t.Address.User == d.toUser && t.Address.Port == d.toPort
}

// sameDialogOf reports whether a CANCEL or ACK names req's transaction.
func sameDialogOf(req, m *sip.Request) bool { return dialogOf(req).matches(m) }

func hasTag(p sip.HeaderParams, tag string) bool {
	t, ok := p.Get("tag")
	return ok && t == tag
}
