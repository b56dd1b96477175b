package demo

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// allowMethods is what the PBX answers; it goes into Allow headers.
const allowMethods = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, MESSAGE, UPDATE, PRACK, REFER"

const (
	// maxAckRetransmits bounds 2xx retransmissions over UDP; with T1 doubling
	// up to T2 the 64*T1 deadline is reached first anyway.
	maxAckRetransmits = 16
	// registerMaxExpires caps the binding lifetime echoed to REGISTER.
	registerMaxExpires = 7200
	registerDefExpires = 3600
)

var errUnsupportedBody = errors.New("body is not application/sdp")

func (p *PBX) routes() {
	h := p.handle
	p.srv.OnInvite(h(p.onInvite))
	p.srv.OnAck(h(p.onAck))
	p.srv.OnCancel(h(p.onCancel))
	p.srv.OnBye(h(p.onBye))
	p.srv.OnOptions(h(p.onOptions))
	p.srv.OnRegister(h(p.onRegister))
	p.srv.OnInfo(h(p.onInDialogOK))
	p.srv.OnPrack(h(p.onInDialogOK))
	p.srv.OnMessage(h(p.onMessage))
	p.srv.OnUpdate(h(p.onUpdate))
	p.srv.OnRefer(h(p.onRefer))
	p.srv.OnSubscribe(h(p.onNotAllowed))
	p.srv.OnNoRoute(h(p.onNotAllowed))
}

// handle records the request and keeps the handler inside wg, so Close
// waits for it; once closing, new requests get 503.
func (p *PBX) handle(f sipgo.RequestHandler) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		p.record(req)
		if !p.enter() {
			p.send(tx, req, p.response(req, sip.StatusServiceUnavailable, "Service Unavailable"))
			return
		}
		defer p.wg.Done()
		f(req, tx)
	}
}

func (p *PBX) response(req *sip.Request, code int, reason string) *sip.Response {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	res.AppendHeader(sip.NewHeader("Server", p.opts.UserAgent))
	return res
}

// send hands res to the transaction. ACKs never get a response. An error
// usually means a CANCEL already ended the INVITE transaction.
func (p *PBX) send(tx sip.ServerTransaction, req *sip.Request, res *sip.Response) error {
	if req.IsAck() {
		return nil
	}
	err := tx.Respond(res)
	if err != nil {
		p.log.Debug("response not sent", "status", res.StatusCode, "method", req.Method, "error", err)
	}
	return err
}

func setTag(res *sip.Response, tag string) {
	if to := res.To(); to != nil {
		to.Params.Add("tag", tag)
	}
}

func setSDP(res *sip.Response, body []byte) {
	ct := sip.ContentTypeHeader("application/sdp")
	res.AppendHeader(&ct)
	res.SetBody(body)
}

func hasToTag(req *sip.Request) bool {
	to := req.To()
	if to == nil {
		return false
	}
	tag, _ := to.Params.Get("tag")
	return tag != ""
}

// readOffer returns the SDP offer a request carries, if any.
func readOffer(req *sip.Request) (sdpOffer, bool, error) {
	body := req.Body()
	if len(body) == 0 {
		return sdpOffer{}, false, nil
	}
	if ct := req.ContentType(); ct != nil {
		mt, _, _ := strings.Cut(ct.Value(), ";")
		if !strings.EqualFold(strings.TrimSpace(mt), "application/sdp") {
			return sdpOffer{}, false, errUnsupportedBody
		}
	}
	off, err := parseSDP(body)
	if err != nil {
		return sdpOffer{}, false, err
	}
	if _, err := off.audio(); err != nil {
		return sdpOffer{}, false, err
	}
	return off, true, nil
}

// rejectOffer answers a request whose body the PBX cannot use.
func (p *PBX) rejectOffer(tx sip.ServerTransaction, req *sip.Request, err error, tag string) {
	res := p.response(req, sip.StatusNotAcceptableHere, "Not Acceptable Here")
	if errors.Is(err, errUnsupportedBody) {
		res = p.response(req, sip.StatusUnsupportedMediaType, "Unsupported Media Type")
		res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	}
	if tag != "" {
		setTag(res, tag)
	}
	p.send(tx, req, res)
}

type waitResult int

const (
	waitElapsed  waitResult = iota
	waitCanceled            // CANCEL arrived; sipgo has sent 487
	waitEnded               // the early dialog was ended (BYE from the caller)
	waitClosing             // the PBX is shutting down
	waitTxGone              // the transaction ended under us
)

// ringWait sleeps dur unless something ends the ringing call first.
func (p *PBX) ringWait(dur time.Duration, canceled <-chan struct{}, d *dialog, tx sip.ServerTransaction) waitResult {
	var elapsed <-chan time.Time
	if dur > 0 {
		t := time.NewTimer(dur)
		defer t.Stop()
		elapsed = t.C
	} else {
		now := make(chan time.Time, 1)
		now <- time.Time{}
		elapsed = now
	}
	select {
	case <-canceled:
		return waitCanceled
	case <-d.ended:
		return waitEnded
	case <-p.ctx.Done():
		return waitClosing
	case <-tx.Done():
		return waitTxGone
	case <-elapsed:
		return waitElapsed
	}
}

func (p *PBX) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if hasToTag(req) {
		p.onReInvite(req, tx)
		return
	}
	p.invites.Add(1)
	ext := req.Recipient.User
	switch ext {
	case ExtEcho, ExtBusy, ExtRing, ExtHangup:
	default:
		p.send(tx, req, p.response(req, sip.StatusNotFound, "Not Found"))
		return
	}
	off, hasOffer, err := readOffer(req)
	if err != nil {
		p.rejectOffer(tx, req, err, "")
		return
	}

	// sipgo answers a matching CANCEL itself: 200 to the CANCEL, then 487 to
	// the INVITE from the transaction, once. The handler only has to stop
	// and must not send a final response of its own.
	canceled := make(chan struct{})
	var cancelOnce sync.Once
	markCanceled := func() {
		cancelOnce.Do(func() {
			p.cancels.Add(1)
			close(canceled)
		})
	}
	if !tx.OnCancel(func(c *sip.Request) {
		p.record(c)
		markCanceled()
	}) {
		if errors.Is(tx.Err(), sip.ErrTransactionCanceled) {
			p.recordLine(sip.CANCEL, req.Recipient)
			markCanceled()
		}
		return
	}

	d, err := newDialog(req, ext)
	if err != nil {
		p.send(tx, req, p.response(req, sip.StatusBadRequest, "Bad Request"))
		return
	}
	if !p.addDialog(d) {
		res := p.response(req, sip.StatusServiceUnavailable, "Service Unavailable")
		res.AppendHeader(sip.NewHeader("Retry-After", "5"))
		p.send(tx, req, res)
		return
	}
	answered := false
	defer func() {
		if !answered {
			p.endDialog(d)
		}
	}()
	log := p.log.With("call_id", d.callID, "ext", ext, "transport", d.transport)

	// sipgo would send 100 itself only after 200ms without a response; sending
	// it now stops UDP retransmissions of the INVITE at once.
	p.send(tx, req, p.response(req, sip.StatusTrying, "Trying"))

	tagged := func(code int, reason string) *sip.Response {
		res := p.response(req, code, reason)
		setTag(res, d.localTag)
		return res
	}
	// abandon answers the INVITE when ringing stopped for a reason other than
	// CANCEL, whose 487 is sipgo's to send.
	abandon := func(r waitResult) {
		switch r {
		case waitEnded:
			p.send(tx, req, tagged(sip.StatusRequestTerminated, "Request Terminated"))
		case waitClosing:
			p.send(tx, req, tagged(sip.StatusServiceUnavailable, "Service Unavailable"))
		}
		log.Info("call not answered", "reason", r.String())
	}

	if r := p.ringWait(p.opts.RingDelay, canceled, d, tx); r != waitElapsed {
		abandon(r)
		return
	}
	ringing := tagged(sip.StatusRinging, "Ringing")
	ringing.AppendHeader(p.contactFor(d.transport))
	if p.send(tx, req, ringing) != nil {
		return
	}
	log.Info("ringing")

	switch ext {
	case ExtBusy:
		if r := p.ringWait(p.opts.AnswerAfter, canceled, d, tx); r != waitElapsed {
			abandon(r)
			return
		}
		// Count before sending so a caller that sees the 486 sees the count.
		p.busy.Add(1)
		if p.send(tx, req, tagged(sip.StatusBusyHere, "Busy Here")) != nil {
			p.busy.Add(^uint64(0)) // CANCEL won; the 486 never went out
			return
		}
		log.Info("busy")
		return

	case ExtRing:
		// Ring until CANCEL or RingTimeout, repeating 180 every minute.
		deadline := time.Now().Add(p.opts.RingTimeout)
		for range int(p.opts.RingTimeout/ringRefresh) + 1 {
			left := time.Until(deadline)
			if left <= 0 {
				break
			}
			if r := p.ringWait(min(left, ringRefresh), canceled, d, tx); r != waitElapsed {
				abandon(r)
				return
			}
			if time.Until(deadline) > 0 {
				p.send(tx, req, ringing)
			}
		}
		p.send(tx, req, tagged(sip.StatusTemporarilyUnavailable, "Temporarily Unavailable"))
		log.Info("ring timeout")
		return
	}

	// ExtEcho and ExtHangup answer.
	if r := p.ringWait(p.opts.AnswerAfter, canceled, d, tx); r != waitElapsed {
		abandon(r)
		return
	}
	body, err := d.localSDP(p, off, hasOffer)
	if err != nil {
		log.Warn("cannot set up media", "error", err)
		p.send(tx, req, tagged(sip.StatusInternalServerError, "Server Internal Error"))
		return
	}
	ok := tagged(sip.StatusOK, "OK")
	ok.AppendHeader(p.contactFor(d.transport))
	ok.AppendHeader(sip.NewHeader("Allow", allowMethods))
	setSDP(ok, body)
	ackCh := d.expectAck(req.CSeq().SeqNo)
	d.establish()
	p.answered.Add(1)
	if p.send(tx, req, ok) != nil {
		// CANCEL got in first; its 487 already ended the transaction.
		p.answered.Add(^uint64(0))
		return
	}
	answered = true
	log.Info("answered")
	p.spawn(func() { p.runDialog(d, tx, ok, ackCh) })
}

func (r waitResult) String() string {
	switch r {
	case waitElapsed:
		return "elapsed"
	case waitCanceled:
		return "canceled"
	case waitEnded:
		return "ended by caller"
	case waitClosing:
		return "pbx closing"
	case waitTxGone:
		return "transaction ended"
	}
	return "unknown"
}

// runDialog owns an answered call until it ends: it waits for the ACK, then
// for BYE, the 1003 hangup timer, the call length limit, or shutdown.
func (p *PBX) runDialog(d *dialog, tx sip.ServerTransaction, ok *sip.Response, ackCh <-chan struct{}) {
	if !p.awaitAck(d, tx, ok, ackCh) {
		p.afterMissingAck(d)
		return
	}
	var hangupC <-chan time.Time
	if d.ext == ExtHangup {
		t := time.NewTimer(p.opts.HangupAfter)
		defer t.Stop()
		hangupC = t.C
	}
	limit := time.NewTimer(p.opts.MaxCallDuration)
	defer limit.Stop()
	select {
	case <-d.ended:
	case <-p.ctx.Done():
		p.endDialog(d)
	case <-hangupC:
		p.hangup(d, "hangup extension")
	case <-limit.C:
		p.hangup(d, "max call duration")
	}
}

// afterMissingAck ends a dialog whose 2xx was never acknowledged; RFC 3261
// 13.3.1.4 asks the UAS to send BYE then.
func (p *PBX) afterMissingAck(d *dialog) {
	select {
	case <-d.ended:
		return
	case <-p.ctx.Done():
		p.endDialog(d)
		return
	default:
	}
	p.hangup(d, "no ACK")
}

// awaitAck waits for the ACK of a 2xx, retransmitting the 2xx over UDP
// (T1 doubling up to T2), which RFC 3261 13.3.1.4 leaves to the UAS core.
func (p *PBX) awaitAck(d *dialog, tx sip.ServerTransaction, res *sip.Response, ackCh <-chan struct{}) bool {
	deadline := time.NewTimer(64 * sip.T1)
	defer deadline.Stop()
	var retransmit <-chan time.Time
	interval := sip.T1
	var rt *time.Timer
	if !sip.IsReliable(d.transport) {
		rt = time.NewTimer(interval)
		defer rt.Stop()
		retransmit = rt.C
	}
	sent := 0
	for {
		select {
		case <-ackCh:
			return true
		case <-tx.Acks():
			// An ACK that reused the INVITE's branch lands on the transaction.
			return true
		case <-d.ended:
			return false
		case <-p.ctx.Done():
			return false
		case <-deadline.C:
			return false
		case <-retransmit:
			_ = tx.Respond(res)
			sent++
			interval = min(2*interval, sip.T2)
			if sent < maxAckRetransmits {
				rt.Reset(interval)
			} else {
				retransmit = nil
			}
		}
	}
}

// hangup ends d from the PBX side with a BYE, unless something else ended
// it first.
func (p *PBX) hangup(d *dialog, reason string) {
	if !p.endDialog(d) {
		return
	}
	p.log.Info("hanging up", "call_id", d.callID, "ext", d.ext, "reason", reason)
	req := p.inDialogRequest(d, sip.BYE)
	if _, err := p.sendRequest(req, &p.byesOut); err != nil {
		p.log.Debug("BYE failed", "call_id", d.callID, "error", err)
	}
}

// inDialogRequest builds a request the PBX sends in d: From is our side
// with our tag, To the caller's with theirs, the Request-URI is the remote
// target, and it goes to the address the INVITE came from.
func (p *PBX) inDialogRequest(d *dialog, method sip.RequestMethod) *sip.Request {
	seq, target := d.nextRequest()
	req := sip.NewRequest(method, target)
	// Deep copies: the dialog's headers are shared by every request it sends.
	from := d.local
	from.Address, from.Params = *d.local.Address.Clone(), d.local.Params.Clone()
	to := d.remote
	to.Address, to.Params = *d.remote.Address.Clone(), d.remote.Params.Clone()
	callID := sip.CallIDHeader(d.callID)
	cseq := sip.CSeqHeader{SeqNo: seq, MethodName: method}
	maxFwd := sip.MaxForwardsHeader(70)
	req.AppendHeader(&from)
	req.AppendHeader(&to)
	req.AppendHeader(&callID)
	req.AppendHeader(&cseq)
	req.AppendHeader(&maxFwd)
	for _, r := range d.routes {
		req.AppendHeader(&sip.RouteHeader{Address: *r.Clone()})
	}
	req.AppendHeader(p.contactFor(d.transport))
	req.AppendHeader(sip.NewHeader("User-Agent", p.opts.UserAgent))
	req.SetTransport(d.transport)
	req.SetDestination(d.source)
	return req
}

// sendRequest runs a client transaction to its final response, bounded by
// Timer F and by shutdown. counter, if set, counts requests put on the wire.
func (p *PBX) sendRequest(req *sip.Request, counter *atomic.Uint64) (*sip.Response, error) {
	ctx, cancel := context.WithTimeout(p.ctx, 64*sip.T1)
	defer cancel()
	tx, err := p.cli.TransactionRequest(ctx, req)
	if err != nil {
		return nil, err
	}
	defer tx.Terminate()
	if counter != nil {
		counter.Add(1)
	}
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return res, nil
		case <-tx.Done():
			return nil, tx.Err()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// inDialog finds the dialog of req, answering 481 or 500 when there is none
// or the CSeq is out of order.
func (p *PBX) inDialog(req *sip.Request, tx sip.ServerTransaction) *dialog {
	d := p.lookupDialog(req)
	if d == nil {
		p.send(tx, req, p.response(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist"))
		return nil
	}
	if cseq := req.CSeq(); cseq == nil || !d.acceptCSeq(cseq.SeqNo) {
		p.send(tx, req, p.response(req, sip.StatusInternalServerError, "CSeq Out Of Order"))
		return nil
	}
	return d
}

func (p *PBX) onReInvite(req *sip.Request, tx sip.ServerTransaction) {
	d := p.inDialog(req, tx)
	if d == nil {
		return
	}
	p.reinvites.Add(1)
	off, hasOffer, err := readOffer(req)
	if err != nil {
		p.rejectOffer(tx, req, err, "")
		return
	}
	d.refreshTarget(req)
	body, err := d.localSDP(p, off, hasOffer)
	if err != nil {
		p.send(tx, req, p.response(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist"))
		return
	}
	ok := p.response(req, sip.StatusOK, "OK")
	ok.AppendHeader(p.contactFor(d.transport))
	ok.AppendHeader(sip.NewHeader("Allow", allowMethods))
	setSDP(ok, body)
	ackCh := d.expectAck(req.CSeq().SeqNo)
	if p.send(tx, req, ok) != nil {
		return
	}
	if !p.awaitAck(d, tx, ok, ackCh) {
		p.afterMissingAck(d)
	}
}

func (p *PBX) onAck(req *sip.Request, _ sip.ServerTransaction) {
	d := p.lookupDialog(req)
	if d == nil || req.CSeq() == nil {
		return // stray ACK, nothing to confirm
	}
	d.ackReceived(req.CSeq().SeqNo)
}

// onCancel only sees CANCELs sipgo could not match to a pending INVITE.
func (p *PBX) onCancel(req *sip.Request, tx sip.ServerTransaction) {
	p.send(tx, req, p.response(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist"))
}

func (p *PBX) onBye(req *sip.Request, tx sip.ServerTransaction) {
	d := p.inDialog(req, tx)
	if d == nil {
		return
	}
	p.byesIn.Add(1)
	// Remove first, so whoever sees the 200 also sees the dialog gone.
	p.endDialog(d)
	p.send(tx, req, p.response(req, sip.StatusOK, "OK"))
	p.log.Info("call ended by caller", "call_id", d.callID, "ext", d.ext)
}

func (p *PBX) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	res := p.response(req, sip.StatusOK, "OK")
	res.AppendHeader(sip.NewHeader("Allow", allowMethods))
	res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	p.send(tx, req, res)
}

// onRegister accepts any binding without storing it: the demo routes by
// extension, not by registration.
func (p *PBX) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	def := registerDefExpires
	if h := req.GetHeader("Expires"); h != nil {
		if v, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil {
			def = v
		}
	}
	res := p.response(req, sip.StatusOK, "OK")
	for _, h := range req.GetHeaders("Contact") {
		c, ok := h.(*sip.ContactHeader)
		if !ok || c.Address.Wildcard {
			continue
		}
		exp := def
		if v, ok := c.Params.Get("expires"); ok {
			if n, err := strconv.Atoi(v); err == nil {
				exp = n
			}
		}
		if exp <= 0 {
			continue // a removal: nothing to echo
		}
		echoed := c.Clone()
		echoed.Params.Add("expires", strconv.Itoa(min(exp, registerMaxExpires)))
		res.AppendHeader(echoed)
	}
	p.send(tx, req, res)
}

// onInDialogOK answers INFO and PRACK inside a known dialog.
func (p *PBX) onInDialogOK(req *sip.Request, tx sip.ServerTransaction) {
	if p.inDialog(req, tx) == nil {
		return
	}
	p.send(tx, req, p.response(req, sip.StatusOK, "OK"))
}

func (p *PBX) onMessage(req *sip.Request, tx sip.ServerTransaction) {
	if hasToTag(req) && p.inDialog(req, tx) == nil {
		return
	}
	p.send(tx, req, p.response(req, sip.StatusOK, "OK"))
}

func (p *PBX) onUpdate(req *sip.Request, tx sip.ServerTransaction) {
	d := p.inDialog(req, tx)
	if d == nil {
		return
	}
	off, hasOffer, err := readOffer(req)
	if err != nil {
		p.rejectOffer(tx, req, err, "")
		return
	}
	d.refreshTarget(req)
	res := p.response(req, sip.StatusOK, "OK")
	res.AppendHeader(p.contactFor(d.transport))
	if hasOffer {
		body, err := d.localSDP(p, off, true)
		if err != nil {
			p.send(tx, req, p.response(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist"))
			return
		}
		setSDP(res, body)
	}
	p.send(tx, req, res)
}

// onRefer accepts a transfer request and reports it done at once; the
// demo does not actually place the transferred call.
func (p *PBX) onRefer(req *sip.Request, tx sip.ServerTransaction) {
	if !hasToTag(req) {
		p.send(tx, req, p.response(req, sip.StatusForbidden, "Out-of-dialog REFER Not Supported"))
		return
	}
	d := p.inDialog(req, tx)
	if d == nil {
		return
	}
	if req.ReferTo() == nil {
		p.send(tx, req, p.response(req, sip.StatusBadRequest, "Missing Refer-To"))
		return
	}
	res := p.response(req, sip.StatusAccepted, "Accepted")
	res.AppendHeader(p.contactFor(d.transport))
	if p.send(tx, req, res) != nil {
		return
	}
	// The NOTIFY must follow the 202, so it goes out only after Respond.
	p.spawn(func() { p.notifyReferDone(d) })
}

func (p *PBX) notifyReferDone(d *dialog) {
	select {
	case <-d.ended:
		return
	default:
	}
	req := p.inDialogRequest(d, sip.NOTIFY)
	req.AppendHeader(sip.NewHeader("Event", "refer"))
	req.AppendHeader(sip.NewHeader("Subscription-State", "terminated;reason=noresource"))
	ct := sip.ContentTypeHeader("message/sipfrag;version=2.0")
	req.AppendHeader(&ct)
	req.SetBody([]byte("SIP/2.0 200 OK\r\n"))
	if _, err := p.sendRequest(req, nil); err != nil {
		p.log.Debug("NOTIFY failed", "call_id", d.callID, "error", err)
	}
}

func (p *PBX) onNotAllowed(req *sip.Request, tx sip.ServerTransaction) {
	res := p.response(req, sip.StatusMethodNotAllowed, "Method Not Allowed")
	res.AppendHeader(sip.NewHeader("Allow", allowMethods))
	p.send(tx, req, res)
}
