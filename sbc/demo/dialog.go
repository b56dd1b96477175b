package demo

import (
	"errors"
	"math/rand/v2"
	"sync"

	"github.com/emiago/sipgo/sip"
)

var errDialogEnded = errors.New("dialog has ended")

// dialog is the PBX's state for one call, from the first INVITE (early,
// while ringing) until BYE, CANCEL or a timeout removes it.
type dialog struct {
	key       string
	callID    string
	localTag  string
	remoteTag string
	ext       string
	transport string // sipgo's name of the transport the INVITE came on
	source    string // where that INVITE came from; requests we send go there
	local     sip.FromHeader
	remote    sip.ToHeader
	routes    []sip.Uri
	session   uint64

	ended   chan struct{} // closed once the dialog is over
	endOnce sync.Once

	mu          sync.Mutex
	finished    bool
	established bool
	target      sip.Uri // remote Contact, refreshed by re-INVITE and UPDATE
	localCSeq   uint32
	remoteCSeq  uint32
	sdpVersion  uint64
	echo        *echoSocket
	ackCSeq     uint32
	ackCh       chan struct{} // closed when the ACK for ackCSeq arrives
}

func dialogKey(callID, localTag, remoteTag string) string {
	// NUL cannot occur in a Call-ID or tag, so the key is unambiguous.
	return callID + "\x00" + localTag + "\x00" + remoteTag
}

// newDialog builds the early dialog for an initial INVITE, choosing the
// PBX's To tag.
func newDialog(req *sip.Request, ext string) (*dialog, error) {
	callID, from, to, cseq := req.CallID(), req.From(), req.To(), req.CSeq()
	if callID == nil || from == nil || to == nil || cseq == nil {
		return nil, errors.New("missing Call-ID, From, To or CSeq")
	}
	remoteTag, _ := from.Params.Get("tag")
	if remoteTag == "" {
		return nil, errors.New("From has no tag")
	}
	d := &dialog{
		callID:    callID.Value(),
		localTag:  sip.GenerateTagN(16),
		remoteTag: remoteTag,
		ext:       ext,
		transport: req.Transport(),
		source:    req.Source(),
		local:     to.AsFrom(),
		remote:    from.AsTo(),
		session:   newSessionID(),
		ended:     make(chan struct{}),
		target:    *from.Address.Clone(),
		// RFC 3261 section 8.1.1.5: our side's sequence starts anywhere below 2^31.
		localCSeq:  rand.Uint32N(1<<15) + 1,
		remoteCSeq: cseq.SeqNo,
	}
	d.local.Params.Add("tag", d.localTag)
	d.key = dialogKey(d.callID, d.localTag, d.remoteTag)
	if c := req.Contact(); c != nil {
		d.target = *c.Address.Clone()
	}
	// The UAS keeps Record-Route in the order received (RFC 3261 12.1.1).
	for _, h := range req.GetHeaders("Record-Route") {
		if rr, ok := h.(*sip.RecordRouteHeader); ok {
			d.routes = append(d.routes, *rr.Address.Clone())
		}
	}
	return d, nil
}

func (d *dialog) isEstablished() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.established
}

func (d *dialog) establish() {
	d.mu.Lock()
	d.established = true
	d.mu.Unlock()
}

// acceptCSeq applies RFC 3261 12.2.2: a request with a lower CSeq than the
// last one seen is out of order.
func (d *dialog) acceptCSeq(seq uint32) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if seq < d.remoteCSeq {
		return false
	}
	d.remoteCSeq = seq
	return true
}

// refreshTarget takes a new remote Contact from a target refresh request.
func (d *dialog) refreshTarget(req *sip.Request) {
	c := req.Contact()
	if c == nil || c.Address.Wildcard {
		return
	}
	d.mu.Lock()
	d.target = *c.Address.Clone()
	d.mu.Unlock()
}

// expectAck arms the wait for the ACK of the INVITE with CSeq seq. A newer
// INVITE means the peer got the older 2xx, so an older wait counts as done.
func (d *dialog) expectAck(seq uint32) <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ackCh != nil {
		close(d.ackCh)
	}
	d.ackCSeq = seq
	d.ackCh = make(chan struct{})
	return d.ackCh
}

func (d *dialog) ackReceived(seq uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ackCh != nil && seq == d.ackCSeq {
		close(d.ackCh)
		d.ackCh = nil
	}
}

// localSDP returns the body for the PBX's next 2xx: an answer to off, or an
// offer when the request carried none. The echo socket opens on first use.
func (d *dialog) localSDP(p *PBX, off sdpOffer, hasOffer bool) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.finished {
		return nil, errDialogEnded
	}
	if d.echo == nil {
		e, err := startEcho(p.mediaIP, &p.wg, p.log)
		if err != nil {
			return nil, err
		}
		d.echo = e
	}
	d.sdpVersion++
	params := sdpParams{ip: p.mediaIP, port: d.echo.port, session: d.session, version: d.sdpVersion}
	if !hasOffer {
		return buildOffer(params), nil
	}
	return buildAnswer(off, params)
}

// nextRequest reserves the next local CSeq and returns the current target.
func (d *dialog) nextRequest() (uint32, sip.Uri) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.localCSeq++
	return d.localCSeq, *d.target.Clone()
}

// finish releases the dialog's media and wakes everything waiting on it.
func (d *dialog) finish() {
	d.endOnce.Do(func() {
		d.mu.Lock()
		d.finished = true
		e := d.echo
		d.echo = nil
		d.mu.Unlock()
		e.close()
		close(d.ended)
	})
}

// addDialog stores d unless the table is full.
func (p *PBX) addDialog(d *dialog) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.dialogs) >= p.opts.MaxDialogs {
		return false
	}
	p.dialogs[d.key] = d
	return true
}

// lookupDialog finds the dialog of an in-dialog request: its To tag is ours
// and its From tag is the caller's.
func (p *PBX) lookupDialog(req *sip.Request) *dialog {
	callID, from, to := req.CallID(), req.From(), req.To()
	if callID == nil || from == nil || to == nil {
		return nil
	}
	localTag, _ := to.Params.Get("tag")
	remoteTag, _ := from.Params.Get("tag")
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dialogs[dialogKey(callID.Value(), localTag, remoteTag)]
}

// endDialog removes d from the table and releases it. It reports whether
// this call was the one that removed it, so exactly one path sends a BYE.
func (p *PBX) endDialog(d *dialog) bool {
	p.mu.Lock()
	removed := false
	if cur, ok := p.dialogs[d.key]; ok && cur == d {
		delete(p.dialogs, d.key)
		removed = true
	}
	p.mu.Unlock()
	d.finish()
	return removed
}

func (p *PBX) snapshotDialogs() []*dialog {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*dialog, 0, len(p.dialogs))
	for _, d := range p.dialogs {
		out = append(out, d)
	}
	return out
}
