package b2bua

import (
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/upstream"
)

// leg is one dialog of a call, seen from the SBC: the outside leg toward the
// caller (a) or the inside leg toward the callee (b). Fields are guarded by
// the call's mutex.
type leg struct {
	name       string // "a" or "b", for logs
	callID     string
	localTag   string
	remoteTag  string
	localURI   sip.Uri
	localName  string
	remoteURI  sip.Uri
	remoteName string
	localCSeq  uint32
	remoteCSeq uint32
	// remoteTarget is the peer's Contact; requests go to this URI but are
	// sent to dest, the transport address, so NATed phones are reached.
	remoteTarget sip.Uri
	routeSet     []sip.Uri
	dest         string // ip:port
	transport    string // "UDP" or "TCP"
	local        *sbc.Listener
	// side is where the leg's peer is: a request claiming to be on this
	// leg from the other side is refused, so knowing one leg's dialog
	// identifiers does not let an outside party act as the inside one.
	side sbc.Side
	// ackMap maps the CSeq of an INVITE received on this leg to the CSeq
	// of the INVITE we sent on the other leg, so the caller's ACK (with its
	// body) is relayed end to end.
	ackMap map[uint32]uint32
	// acked is closed when the ACK for a relayed 2xx arrived (per CSeq).
	acked map[uint32]chan struct{}
	// lastAck is the ACK we sent on this leg, re-sent on retransmitted 2xx,
	// kept as it went on the wire: a parsed request costs several times
	// its size in memory for every call, and is only needed again when a
	// 2xx is retransmitted. lastAckCSeq is its CSeq number.
	lastAck     []byte
	lastAckCSeq uint32
}

// keepAck remembers the ACK sent on this leg for retransmitted 2xx.
func (l *leg) keepAck(ack *sip.Request) {
	l.lastAck = sbc.Marshal(ack)
	l.lastAckCSeq = ack.CSeq().SeqNo
}

// resendAck is the remembered ACK, ready to send again; nil if it does not
// parse (it was built by us, so it does).
func (l *leg) resendAck() *sip.Request {
	msg, err := sip.ParseMessage(l.lastAck)
	if err != nil {
		return nil
	}
	ack, ok := msg.(*sip.Request)
	if !ok {
		return nil
	}
	ack.SetTransport(l.transport)
	ack.SetDestination(l.dest)
	return ack
}

func (l *leg) nextCSeq() uint32 {
	l.localCSeq++
	return l.localCSeq
}

type callState uint8

const (
	stateEarly callState = iota
	stateConfirmed
	stateEnded
)

// call is one B2BUA call: two dialogs and the mapping between them. mu
// serializes all work on the call's dialogs.
type call struct {
	mu    sync.Mutex
	id    uint64
	a, b  *leg
	state callState
	// forks are the To tags of forked 2xx ACKed and ended (forks.go).
	forks    map[string]bool
	created  time.Time
	answered time.Time
	activity time.Time
	// answer is the caller's body of the 2xx answer the relay took when
	// it was checked (answerRefused), kept for the response that relays it
	// so the relay does not rewrite the same answer twice (responseTo).
	answer struct {
		res  *sip.Response
		to   *leg
		body []byte
	}
	// inviteBusy is set while an INVITE transaction runs on the call, so a
	// crossing re-INVITE gets 491 (RFC 3261 14.2).
	inviteBusy bool
	// redirects counts followed 3xx; redirectTo holds the targets of the last.
	redirects  int
	redirectTo []upstream.Target
	maxTimer   *time.Timer
	// abort ends the ringing phase early (HangUp of an unanswered call).
	abort   func()
	ended   chan struct{}
	endOnce sync.Once
	// user is whom the call is attributed to (sbc.Identity.Attribution);
	// claimed is the From header's user, the caller's unchecked word.
	user    string
	claimed string
	dst     string
	// ident is the caller's identity, for destinations the caller names
	// later in the call (targets.go).
	ident *sbc.Identity
	// origin and the initial INVITE's CSeq and branch tell its
	// retransmissions from new requests (see table.byOrigin).
	origin       string
	originCSeq   uint32
	originBranch string
}

// key names the call toward the media relay.
func (c *call) key() string { return strconv.FormatUint(c.id, 10) }

func (c *call) other(l *leg) *leg {
	if l == c.a {
		return c.b
	}
	return c.a
}

func (c *call) end() bool {
	ended := false
	c.endOnce.Do(func() {
		ended = true
		close(c.ended)
		if c.maxTimer != nil {
			c.maxTimer.Stop()
		}
	})
	return ended
}

// key indexes a dialog by Call-ID and the tag the SBC chose on that leg.
func key(callID, localTag string) string { return callID + "\x00" + localTag }

// legKey finds a leg by its dialog identifiers: a struct, so that a
// lookup builds no string.
type legKey struct{ callID, localTag string }

// table is the bounded dialog table.
type table struct {
	mu    sync.Mutex
	max   int
	calls map[uint64]*call
	byKey map[legKey]*call
	// byOrigin finds a call by its initial INVITE's Call-ID and From tag,
	// so a retransmission of that INVITE arriving after its transaction
	// ended on the 2xx does not become a second call.
	byOrigin map[string]*call
	seq      uint64
	// gone remembers the initial INVITEs of calls that ended within the
	// last 64×T1 (RFC 6026's Accepted state, which the transaction layer
	// leaves to us): a retransmission of such an INVITE that was still on
	// its way (queued behind the ACK and BYE of a fast call) is dropped,
	// not made a second call nobody will ever ACK or end. goneOrder keeps
	// them oldest first, for expiry and the bound.
	gone      map[string]goneInvite
	goneOrder []string
}

type goneInvite struct {
	cseq   uint32
	branch string
	until  time.Time
}

func newTable(max int) *table {
	return &table{max: max, calls: map[uint64]*call{}, byKey: map[legKey]*call{}, byOrigin: map[string]*call{},
		gone: map[string]goneInvite{}}
}

// retransmitted reports whether a new INVITE with this origin, CSeq and
// branch repeats the initial INVITE of a call that ended lately (t.mu
// held). Expired entries go on the way.
func (t *table) retransmitted(origin string, cseq uint32, branch string, now time.Time) bool {
	for len(t.goneOrder) > 0 {
		g, ok := t.gone[t.goneOrder[0]]
		if ok && now.Before(g.until) {
			break
		}
		if ok {
			delete(t.gone, t.goneOrder[0])
		}
		t.goneOrder = t.goneOrder[1:]
	}
	g, ok := t.gone[origin]
	return ok && now.Before(g.until) && g.cseq == cseq && g.branch == branch
}

// forget remembers the initial INVITE of an ended call (t.mu held),
// within the table's bound.
func (t *table) forget(c *call, now time.Time) {
	if c.origin == "" || c.originBranch == "" {
		return
	}
	if _, ok := t.gone[c.origin]; !ok {
		if len(t.goneOrder) >= t.max {
			delete(t.gone, t.goneOrder[0])
			t.goneOrder = t.goneOrder[1:]
		}
		t.goneOrder = append(t.goneOrder, c.origin)
	}
	t.gone[c.origin] = goneInvite{cseq: c.originCSeq, branch: c.originBranch, until: now.Add(64 * sip.T1)}
}

// add reserves room for a call whose initial INVITE has the given origin
// (key of Call-ID and From tag). It fails when the table is full, returns
// the call that already has this origin, or reports retrans when c's
// INVITE repeats that of a call that just ended.
func (t *table) add(c *call, origin string, now time.Time) (ok bool, existing *call, retrans bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if prev := t.byOrigin[origin]; prev != nil {
		return false, prev, false
	}
	if t.retransmitted(origin, c.originCSeq, c.originBranch, now) {
		return false, nil, true
	}
	if len(t.calls) >= t.max {
		return false, nil, false
	}
	t.seq++
	c.id = t.seq
	c.origin = origin
	t.calls[c.id] = c
	t.byOrigin[origin] = c
	return true, nil, false
}

// index makes a leg findable by its dialog identifiers.
func (t *table) index(c *call, l *leg) {
	t.mu.Lock()
	t.byKey[legKey{l.callID, l.localTag}] = c
	t.mu.Unlock()
}

// unindex forgets one leg of c (a failed attempt toward an upstream).
func (t *table) unindex(c *call, l *leg) {
	t.mu.Lock()
	if k := (legKey{l.callID, l.localTag}); t.byKey[k] == c {
		delete(t.byKey, k)
	}
	t.mu.Unlock()
}

func (t *table) lookup(callID, localTag string) *call {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byKey[legKey{callID, localTag}]
}

func (t *table) remove(c *call, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.calls, c.id)
	if t.byOrigin[c.origin] == c {
		delete(t.byOrigin, c.origin)
		t.forget(c, now)
	}
	for _, l := range []*leg{c.a, c.b} {
		if l != nil {
			if k := (legKey{l.callID, l.localTag}); t.byKey[k] == c {
				delete(t.byKey, k)
			}
		}
	}
}

func (t *table) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.calls)
}

func (t *table) snapshot() []*call {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*call, 0, len(t.calls))
	for _, c := range t.calls {
		out = append(out, c)
	}
	return out
}

func hostPort(a sip.Addr) (string, int) {
	if a.IP != nil {
		return a.IP.String(), a.Port
	}
	return a.Hostname, a.Port
}

func addrString(a sip.Addr) string {
	h, p := hostPort(a)
	return net.JoinHostPort(h, strconv.Itoa(p))
}
