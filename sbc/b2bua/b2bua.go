// Package b2bua is the back-to-back user agent at the heart of sipwall. Every
// call is two independent dialogs — the outside leg toward the caller and the
// inside leg toward the callee — each with its own Call-ID, tags, CSeq and
// Via. Nothing passes from one leg to the other unless this package copies it.
package b2bua

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/upstream"
	"github.com/sipwall/sipwall/topology"
)

// Endpoint gives the listener to send from on a side. *sbc.Server has it.
type Endpoint interface {
	Local(transport string, side sbc.Side) (*sbc.Listener, bool)
}

// Config is what the B2BUA needs; see setup.go for building it from the file.
type Config struct {
	// TrustedPeer names the trusted peer at an address, "" for none: the
	// media relay is told whom a call goes to (its encryption mode).
	TrustedPeer func(netip.Addr) string
	Client      *sipgo.Client
	Endpoint    Endpoint
	// Pool are the upstreams calls from outside go to.
	Pool *upstream.Pool
	// Outbound is the trunk for calls from the inside; nil = none.
	Outbound *upstream.Target
	// Locate is the registrar's hook: where a registered user is. Nil until
	// the registrar exists.
	Locate func(r *sbc.Request) ([]upstream.Target, bool)
	// Unreachable is told about a target that gave no answer at all to an
	// INVITE (transport error, Timer B without even 100): the registrar
	// drops a binding whose flow is dead. Nil: nobody listens.
	Unreachable func(upstream.Target)

	// Topology decides which headers cross between legs and rewrites
	// inside URIs toward the outside. Nil: topology.New's defaults.
	Topology *topology.Policy
	// Media rewrites SDP bodies between legs (the media relay). Nil: SDP
	// crosses unchanged and media flows end to end.
	Media Media
	// Events hears of every call from outside that the chain let through,
	// when it is answered and when it ends (the anti-fraud counters).
	// Called outside locks; must not block.
	Events func(CallEvent)
	// Caps bounds the calls in progress per caller from outside (caps.go).
	Caps Caps
	// Targets judges the destinations named inside calls (a REFER's
	// Refer-To from outside, a 3xx Contact followed) before they are
	// relayed or followed (targets.go). Nil: none is judged.
	Targets TargetCheck

	MaxDialogs      int
	RingTimeout     time.Duration
	MaxDuration     time.Duration
	SessionTimeout  time.Duration
	FollowRedirects bool
	Logger          *slog.Logger
	Now             func() time.Time
}

// CallEvent tells Config.Events about a call. Key is the Call-ID and From
// tag of the caller's INVITE, joined by a NUL: what a layer before the
// B2BUA can compute from the same request (OriginKey).
type CallEvent struct {
	Key      string
	Answered bool          // the call was answered (on the answer, and on its end)
	Ended    bool          // the call is over
	Duration time.Duration // from answer to end; 0 if never answered
	// Setup is from the INVITE to the answer (set when Answered).
	Setup time.Duration
	// Info describes the call (for the call log) on the answer and the
	// end of a call that had a place in the table; Reason is why it ended.
	Info   *CallInfo
	Reason string
}

// ReasonRingTimeout is CallEvent.Reason for a call the SBC gave up on
// because it rang longer than calls.ring_timeout (the caller got 408),
// as opposed to "cancelled" by the caller.
const ReasonRingTimeout = "ring-timeout"

// OriginKey is the key of the call an initial INVITE starts.
func OriginKey(r *sbc.Request) string {
	tag := ""
	if f := r.From(); f != nil {
		tag, _ = f.Params.Get("tag")
	}
	cid := ""
	if h := r.CallID(); h != nil {
		cid = h.Value()
	}
	return key(cid, tag)
}

// legHinter is a media relay that wants to know who each side's
// endpoint is before the call's SDP crosses (*media.Manager: the
// encryption it speaks with a browser or a trusted peer).
type legHinter interface {
	Leg(key string, side sbc.Side, transport, peer string)
}

// mediaLegs tells the relay, if it asks, the transport of both legs and
// the trusted peer the call came from.
func (b *B2BUA) mediaLegs(c *call, r *sbc.Request, bl *leg) {
	h, ok := b.cfg.Media.(legHinter)
	if !ok {
		return
	}
	peer := ""
	if r.Identity != nil {
		peer = r.Identity.Trusted
	}
	h.Leg(c.key(), c.a.side, r.Transport, peer)
	bpeer := ""
	if ap, err := netip.ParseAddrPort(bl.dest); err == nil && b.cfg.TrustedPeer != nil && bl.side == sbc.External {
		bpeer = b.cfg.TrustedPeer(ap.Addr())
	}
	h.Leg(c.key(), bl.side, bl.transport, bpeer)
}

// Media is the media relay as the B2BUA sees it (*media.Manager).
type Media interface {
	// Rewrite turns an SDP body from the other side into the body for the
	// side toward, with the relay's address and ports.
	Rewrite(key string, toward sbc.Side, body []byte) ([]byte, error)
	// Release frees the call's relay ports.
	Release(key string)
}

// B2BUA is the "b2bua" layer: the last layer of the chain.
type B2BUA struct {
	cfg    Config
	log    *slog.Logger
	table  *table
	secret []byte
	wg     sync.WaitGroup
	closed chan struct{}
	// spawnMu orders every wg.Add before Run's wg.Wait, as sync.WaitGroup
	// requires; stopping refuses new goroutines once Run is shutting down.
	spawnMu  sync.Mutex
	stopping bool
	// draining refuses new calls (503) while calls in progress go on.
	draining atomic.Bool
	// orders holds the read order of responses to INVITEs in progress,
	// by our branch (order.go).
	orders sync.Map

	stats Stats
	// caps counts calls against Config.Caps; sdpStats counts the inbound
	// SDP check (sdpcheck.go).
	caps     *caps
	sdpStats SDPStats
}

// SetDraining makes the B2BUA refuse new calls with 503 and Retry-After
// (true) or take them again (false); calls in progress are not touched.
func (b *B2BUA) SetDraining(on bool) { b.draining.Store(on) }

// Stats counts calls.
type Stats struct {
	Calls, Answered, Failed, Cancelled, NoAck, Timeouts, Failovers, Redirects, Rejected481 atomic.Int64
	// Retransmissions counts INVITEs dropped as repeats of a call in
	// progress, or of one ended within 64×T1, whose transaction had
	// already ended.
	Retransmissions atomic.Int64
	// Forks counts 2xx from a second dialog of the inside (a forking
	// proxy), ACKed and ended with BYE.
	Forks atomic.Int64
}

var _ sbc.Handler = (*B2BUA)(nil)

// New builds the layer. Call Run to start its timers.
func New(cfg Config) *B2BUA {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxDialogs <= 0 {
		cfg.MaxDialogs = 20000
	}
	if cfg.RingTimeout <= 0 {
		cfg.RingTimeout = 120 * time.Second
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 2 * time.Hour
	}
	if cfg.Topology == nil {
		cfg.Topology, _ = topology.New(topology.Config{}, nil) // the defaults are valid
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	return &B2BUA{cfg: cfg, log: cfg.Logger.With("component", "b2bua"), table: newTable(cfg.MaxDialogs), secret: secret, closed: make(chan struct{}), caps: newCaps(cfg.Caps)}
}

// Name implements sbc.Handler.
func (b *B2BUA) Name() string { return "b2bua" }

// Active is the number of calls in the table.
func (b *B2BUA) Active() int { return b.table.len() }

// Stats returns the counters.
func (b *B2BUA) Stats() *Stats { return &b.stats }

func randN(n int) int {
	var buf [8]byte
	_, _ = rand.Read(buf[:])
	return int(binary.LittleEndian.Uint64(buf[:]) % uint64(n))
}

func newCallID() string {
	var buf [16]byte
	_, _ = rand.Read(buf[:])
	return hex.EncodeToString(buf[:])
}

// mapID derives a stable identifier from an outside one, so refreshes of
// out-of-dialog requests (REGISTER) keep one Call-ID inside while the inside
// value reveals nothing of the outside one.
func (b *B2BUA) mapID(kind, v string) string {
	m := hmac.New(sha256.New, b.secret)
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// ServeSIP implements sbc.Handler.
func (b *B2BUA) ServeSIP(ctx context.Context, w sbc.ResponseWriter, r *sbc.Request) (sbc.Verdict, error) {
	to := r.To()
	if to == nil || r.CallID() == nil || r.CSeq() == nil || r.From() == nil {
		if r.IsAck() {
			return sbc.Dropped, nil
		}
		return sbc.Rejected, sbc.Respond(w, r, 400, "Bad Request")
	}
	if tag, ok := to.Params.Get("tag"); ok && tag != "" {
		return b.inDialog(ctx, w, r, tag)
	}
	switch r.Method {
	case sip.INVITE:
		return b.invite(ctx, w, r)
	case sip.ACK:
		// An ACK outside any dialog has no transaction to match: drop.
		return sbc.Dropped, nil
	case sip.CANCEL:
		// Matched by the edge transaction layer to the INVITE of the same
		// flow, branch, Call-ID, tags and CSeq: anything else is 481.
		if sbc.MatchCancel(w) {
			return sbc.Answered, nil
		}
		return sbc.Rejected, sbc.Respond(w, r, 481, "Call/Transaction Does Not Exist")
	case sip.BYE, sip.PRACK, sip.UPDATE, sip.INFO, sip.NOTIFY, sip.REFER:
		// These only exist inside a dialog (NOTIFY of an unknown subscription too).
		b.stats.Rejected481.Add(1)
		return sbc.Rejected, sbc.Respond(w, r, 481, "Call/Transaction Does Not Exist")
	case sip.MESSAGE, sip.OPTIONS, sip.REGISTER:
		return b.forward(ctx, w, r)
	}
	return sbc.Rejected, sbc.Respond(w, r, 405, "Method Not Allowed", sip.NewHeader("Allow", strings.Join(sbc.AllowedMethods, ", ")))
}

// route picks where a new request goes.
func (b *B2BUA) route(r *sbc.Request) ([]upstream.Target, int, string) {
	if b.cfg.Locate != nil {
		if ts, ok := b.cfg.Locate(r); ok && len(ts) > 0 {
			return ts, 0, ""
		}
	}
	if r.Side == sbc.External {
		if b.cfg.Pool == nil {
			return nil, 503, "Service Unavailable"
		}
		ts := b.cfg.Pool.Candidates()
		if len(ts) == 0 {
			return nil, 503, "Service Unavailable"
		}
		return ts, 0, ""
	}
	if b.cfg.Outbound != nil {
		return []upstream.Target{*b.cfg.Outbound}, 0, ""
	}
	return nil, 404, "Not Found"
}

// targetSide is the side a target lives on: upstreams inside; trunks,
// registered phones and redirect targets reached from outside are outside.
func targetSide(t upstream.Target) sbc.Side {
	if t.External {
		return sbc.External
	}
	return sbc.Internal
}

func (b *B2BUA) newLeg(r *sbc.Request, t upstream.Target, side sbc.Side) (*leg, error) {
	tr := strings.ToUpper(t.Transport)
	if tr == "" {
		tr = "UDP"
	}
	local, ok := b.cfg.Endpoint.Local(strings.ToLower(tr), side)
	if !ok {
		return nil, fmt.Errorf("no %s listener to reach %s", tr, t.Name)
	}
	target := t.URI
	if !t.Exact {
		target = withUser(target, &r.Recipient) // a tel: number too (targets.go)
	}
	target.Headers = nil
	from, to := r.From(), r.To()
	// From and To name the caller's and callee's hosts: toward the outside
	// an inside host becomes the SBC's address.
	dir := topology.ToInside
	if side == sbc.External {
		dir = topology.ToOutside
	}
	host, port := hostPort(local.Advertise)
	return &leg{
		name:         "b",
		callID:       newCallID(),
		localTag:     sip.GenerateTagN(16),
		localURI:     b.cfg.Topology.URI(dir, from.Address, host, port),
		localName:    b.cfg.Topology.DisplayName(dir, from.DisplayName),
		remoteURI:    b.cfg.Topology.URI(dir, to.Address, host, port),
		remoteName:   b.cfg.Topology.DisplayName(dir, to.DisplayName),
		localCSeq:    uint32(randN(1 << 15)),
		remoteTarget: target,
		dest:         t.Addr.String(),
		transport:    tr,
		local:        local,
		side:         side,
		ackMap:       map[uint32]uint32{},
		acked:        map[uint32]chan struct{}{},
	}, nil
}

func maxForwards(req *sip.Request) (uint32, bool) {
	h := req.MaxForwards()
	if h == nil {
		return 70, true
	}
	if *h == 0 {
		return 0, false
	}
	return uint32(*h) - 1, true
}

type outcome uint8

const (
	done outcome = iota
	next
	// redirect: try call.redirectTo instead of the remaining targets.
	redirect
)

// redirectName names targets taken from a 3xx.
const redirectName = "redirect"

// ackOvertakeWait bounds how long an in-dialog request waits for the ACK
// of a 2xx that it may have overtaken.
const ackOvertakeWait = 500 * time.Millisecond

// maxRedirects bounds how many 3xx one call follows (loop protection).
const maxRedirects = 3

// invite handles an initial INVITE: it blocks until the call is answered,
// rejected or cancelled, as sipgo expects of a server transaction handler.
func (b *B2BUA) invite(ctx context.Context, w sbc.ResponseWriter, r *sbc.Request) (sbc.Verdict, error) {
	mf, ok := maxForwards(r.Request)
	if !ok {
		return sbc.Rejected, sbc.Respond(w, r, 483, "Too Many Hops")
	}
	if b.draining.Load() {
		b.endedEarly(r)
		return sbc.Rejected, sbc.Respond(w, r, 503, "Service Unavailable", sip.NewHeader("Retry-After", "30"))
	}
	targets, code, reason := b.route(r)
	if len(targets) == 0 {
		b.endedEarly(r)
		return sbc.Rejected, sbc.Respond(w, r, code, reason)
	}
	// An attended transfer's INVITE names the dialog it replaces in the
	// caller's terms; each leg gets it in its own (replaces.go).
	rp, err := b.inviteReplaces(r.Request)
	if err != nil {
		b.endedEarly(r)
		return sbc.Rejected, sbc.Respond(w, r, 400, "Bad Request")
	}
	aLocal, ok := b.cfg.Endpoint.Local(r.Transport, r.Side)
	if !ok {
		return sbc.Rejected, sbc.Respond(w, r, 500, "Server Internal Error")
	}
	now := b.cfg.Now()
	c := &call{a: legFromRequest(r, aLocal), created: now, activity: now, ended: make(chan struct{}), user: r.Identity.Attribution(), claimed: r.From().Address.User, dst: requestUser(&r.Recipient), ident: r.Identity}
	// A hang-up (admin) may come as soon as the call is in the table.
	hung, hangUp := context.WithCancelCause(context.Background())
	defer hangUp(nil)
	c.abort = func() { hangUp(errHungUp) }
	c.originCSeq = r.CSeq().SeqNo
	if via := r.Via(); via != nil {
		c.originBranch, _ = via.Params.Get("branch")
	}
	added, prev, retrans := b.table.add(c, key(c.a.callID, c.a.remoteTag), now)
	if prev != nil {
		return b.repeatedInvite(w, r, prev)
	}
	if retrans {
		// The INVITE of a call that has just ended, late: its transaction
		// and its call are over.
		b.stats.Retransmissions.Add(1)
		return sbc.Dropped, nil
	}
	if !added {
		b.endedEarly(r)
		return sbc.Rejected, sbc.Respond(w, r, 503, "Service Unavailable", sip.NewHeader("Retry-After", "5"))
	}
	if refused, err := b.overCap(w, r, c); refused {
		return sbc.Rejected, err
	}
	b.stats.Calls.Add(1)
	b.table.index(c, c.a)
	sbc.ReleaseAdmission(ctx)

	tx := w.Tx()
	cancelled := make(chan struct{})
	var cancelOnce sync.Once
	if !tx.OnCancel(func(*sip.Request) { cancelOnce.Do(func() { close(cancelled) }) }) {
		b.finish(c, "cancelled")
		b.stats.Cancelled.Add(1)
		return sbc.Rejected, nil
	}
	ringCtx, cancelRing := context.WithTimeout(hung, b.cfg.RingTimeout)
	defer cancelRing()

	for i := 0; i < len(targets); i++ {
		if i > 0 {
			b.stats.Failovers.Add(1)
		}
		v, oc := b.attempt(ringCtx, c, r, w, targets[i], mf, cancelled, rp)
		switch oc {
		case done:
			return v, nil
		case redirect:
			// The redirect replaces whatever failover was left.
			targets = append(targets[:i+1:i+1], c.redirectTo...)
			c.redirectTo = nil
		}
	}
	b.finish(c, "no upstream")
	b.stats.Failed.Add(1)
	return sbc.Rejected, b.respondOnce(w, r.Request, localResponse(r.Request, 503, "Service Unavailable", c.a))
}

func (b *B2BUA) respondOnce(w sbc.ResponseWriter, req *sip.Request, res *sip.Response) error {
	if w.Written() != 0 {
		return nil
	}
	return w.Respond(res)
}

// endedEarly reports a call refused before it had a place in the table,
// so that Events sees the end of every call a layer before saw start.
func (b *B2BUA) endedEarly(r *sbc.Request) {
	if b.cfg.Events != nil {
		b.cfg.Events(CallEvent{Key: OriginKey(r), Ended: true})
	}
}

// repeatedInvite answers an INVITE without To tag whose Call-ID and From
// tag belong to a call in progress. The same transaction again (same CSeq
// and branch) is a retransmission that outlived its transaction (the 2xx
// ends it): it is dropped, the 2xx is retransmitted by awaitAck until the
// ACK. Anything else is a merged request (RFC 3261 8.2.2.2): 482.
func (b *B2BUA) repeatedInvite(w sbc.ResponseWriter, r *sbc.Request, prev *call) (sbc.Verdict, error) {
	branch := ""
	if via := r.Via(); via != nil {
		branch, _ = via.Params.Get("branch")
	}
	prev.mu.Lock()
	retrans := r.CSeq().SeqNo == prev.originCSeq && branch == prev.originBranch
	prev.mu.Unlock()
	if retrans {
		b.stats.Retransmissions.Add(1)
		return sbc.Dropped, nil
	}
	return sbc.Rejected, sbc.Respond(w, r, 482, "Loop Detected")
}

// attempt tries one target for the INVITE.
func (b *B2BUA) attempt(ctx context.Context, c *call, r *sbc.Request, w sbc.ResponseWriter, t upstream.Target, mf uint32, cancelled <-chan struct{}, rp *replacement) (sbc.Verdict, outcome) {
	req := r.Request
	bl, err := b.newLeg(r, t, targetSide(t))
	if err != nil {
		b.log.Warn("cannot reach target", "target", t.Name, "error", err)
		return sbc.Rejected, next
	}
	c.mu.Lock()
	if c.b != nil {
		b.table.unindex(c, c.b) // the previous attempt's leg; the call stays
	}
	c.b = bl
	inv := b.newRequest(bl, sip.INVITE, bl.nextCSeq(), "")
	maxf := sip.MaxForwardsHeader(mf)
	inv.ReplaceHeader(&maxf)
	user := ""
	if ct := req.Contact(); ct != nil {
		user = ct.Address.User
	}
	inv.AppendHeader(b.contact(bl, user))
	b.copyFor(bl, req, inv)
	if !rp.rewriteInvite(inv, bl.side) {
		// Toward the outside only a dialog of ours there may be named.
		c.mu.Unlock()
		b.finish(c, "unknown replaces")
		b.stats.Failed.Add(1)
		_ = b.respondOnce(w, req, localResponse(req, 481, "Call/Transaction Does Not Exist", c.a))
		return sbc.Rejected, done
	}
	requireFiltered(req, inv)
	if bl.side == sbc.Internal {
		for _, h := range r.Forward {
			inv.AppendHeader(sip.HeaderClone(h))
		}
	}
	b.mediaLegs(c, r, bl)
	body, err := b.bodyFor(c, bl, req)
	if err != nil {
		c.mu.Unlock()
		b.log.Debug("offer refused", "error", err)
		b.finish(c, "bad offer")
		b.stats.Failed.Add(1)
		r.Why = sdpWhy(err)
		_ = b.respondOnce(w, req, notAcceptable(req, c.a, err))
		return sbc.Rejected, done
	}
	inv.SetBody(body)
	c.mu.Unlock()
	b.table.index(c, bl)

	// Responses are taken in the order they were read, not the order
	// sipgo's goroutines hand them to the transaction (order.go).
	branch, _ := inv.Via().Params.Get("branch")
	order, untrack := b.trackOrder(branch)
	defer untrack()
	btx, err := sbc.Send(context.Background(), b.cfg.Client, inv)
	if err != nil {
		b.log.Warn("send INVITE failed", "target", t.Name, "error", err)
		b.markUpstream(t, false)
		b.unreachable(t)
		return sbc.Rejected, next
	}
	aReliable := hasOption(req, "Require", "100rel")
	aSupports := aReliable || hasOption(req, "Supported", "100rel")
	var rseq uint32
	lastRSeq := map[string]uint32{} // per early dialog (To tag) of the upstream
	provisional := false
	// trying: any 1xx came, 100 included, so a CANCEL may be sent (RFC 3261 9.1).
	trying := false
	relayProvisional := func(res *sip.Response) {
		bReliable := hasOption(res, "Require", "100rel") && res.GetHeader("RSeq") != nil
		if bReliable && !newRSeq(lastRSeq, res) {
			// A retransmission of a reliable provisional already
			// PRACKed: discard it (RFC 3262 section 4).
			return
		}
		provisional = true
		b.earlyDialog(c, bl, res)
		if bReliable {
			b.prack(c, bl, res)
		}
		out := b.responseTo(c, c.a, req, res, true)
		if aReliable || (aSupports && bReliable) {
			rseq++
			out.AppendHeader(sip.NewHeader("Require", "100rel"))
			out.AppendHeader(sip.NewHeader("RSeq", strconv.FormatUint(uint64(rseq), 10)))
		}
		if err := w.Respond(out); err != nil {
			b.log.Debug("relay provisional failed", "error", err)
		}
	}
	for {
		select {
		case res := <-btx.Responses():
			if res.StatusCode < 200 {
				trying = true
			}
			if res.StatusCode != 100 {
				// Provisionals read before res go first (res too, if it
				// is one): a 1xx never reaches the caller after the
				// final response that followed it on the wire.
				for _, p := range order.upTo(res) {
					relayProvisional(p)
				}
			}
			switch {
			case res.StatusCode < 200:
				continue
			case res.StatusCode < 300:
				btx.Terminate()
				b.markUpstream(t, true)
				if err := b.answerRefused(c, res); err != nil {
					// An answer the relay will not take (plain where
					// encryption is required, unreadable): a call without
					// media. That dialog is ended, the caller gets 488.
					b.log.Debug("answer refused", "error", err)
					b.ackAndBye(c, c.b, inv, res)
					b.finish(c, "bad answer")
					b.stats.Failed.Add(1)
					r.Why = sdpWhy(err)
					_ = b.respondOnce(w, req, notAcceptable(req, c.a, err))
					return sbc.Rejected, done
				}
				b.answered(c, r, w, inv, res)
				return sbc.Forwarded, done
			default:
				if res.StatusCode == 503 {
					b.markUpstream(t, false)
				}
				if !provisional && (res.StatusCode == 503 || res.StatusCode == 408) {
					return sbc.Rejected, next
				}
				if res.IsRedirection() && b.cfg.FollowRedirects && c.redirects < maxRedirects {
					if ts := redirectTargets(res, t); len(ts) > 0 {
						if ts = b.vetRedirects(ctx, c, r, w, t, ts); len(ts) == 0 {
							return sbc.Rejected, done // refused and answered (targets.go)
						}
						c.redirects++
						c.redirectTo = ts
						b.stats.Redirects.Add(1)
						return sbc.Rejected, redirect
					}
				}
				b.finish(c, "rejected "+strconv.Itoa(res.StatusCode))
				b.stats.Failed.Add(1)
				_ = b.respondOnce(w, req, b.responseTo(c, c.a, req, res, false))
				return sbc.Rejected, done
			}
		case <-btx.Done():
			// Timer B or a transport error: no final response came.
			b.markUpstream(t, false)
			if !trying {
				b.unreachable(t)
			}
			if !provisional {
				return sbc.Rejected, next
			}
			b.finish(c, "timeout")
			b.stats.Timeouts.Add(1)
			_ = b.respondOnce(w, req, localResponse(req, 408, "Request Timeout", c.a))
			return sbc.Rejected, done
		case <-cancelled:
			// The transaction layer already answered the CANCEL and 487.
			b.stats.Cancelled.Add(1)
			b.cancelPending(c, bl, inv, btx, trying, "cancelled")
			return sbc.Rejected, done
		case <-ctx.Done():
			hungUp := errors.Is(context.Cause(ctx), errHungUp)
			// The end reason tells the caller's CANCEL (and a hang-up)
			// from the SBC giving up at calls.ring_timeout.
			reason := ReasonRingTimeout
			if hungUp {
				reason = "cancelled"
			}
			b.cancelPending(c, bl, inv, btx, trying, reason)
			if hungUp {
				b.stats.Cancelled.Add(1)
				_ = b.respondOnce(w, req, localResponse(req, 487, "Request Terminated", c.a))
				return sbc.Rejected, done
			}
			b.stats.Timeouts.Add(1)
			_ = b.respondOnce(w, req, localResponse(req, 408, "Request Timeout", c.a))
			return sbc.Rejected, done
		}
	}
}

// newRSeq tells whether a reliable provisional response is new in its early
// dialog (RSeq above the last one seen) and records it.
func newRSeq(last map[string]uint32, res *sip.Response) bool {
	n, err := strconv.ParseUint(strings.TrimSpace(res.GetHeader("RSeq").Value()), 10, 32)
	if err != nil {
		return true
	}
	tag := ""
	if to := res.To(); to != nil {
		tag, _ = to.Params.Get("tag")
	}
	if prev, ok := last[tag]; ok && uint32(n) <= prev {
		return false
	}
	last[tag] = uint32(n)
	return true
}

// unreachable reports a target that never answered at all (not even 100),
// so the registrar can drop a dead flow.
func (b *B2BUA) unreachable(t upstream.Target) {
	if b.cfg.Unreachable != nil {
		b.cfg.Unreachable(t)
	}
}

func (b *B2BUA) markUpstream(t upstream.Target, ok bool) {
	if b.cfg.Pool != nil {
		b.cfg.Pool.Mark(t.Name, ok)
	}
}

// earlyDialog records the callee's tag, target and route set from a 1xx.
func (b *B2BUA) earlyDialog(c *call, bl *leg, res *sip.Response) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if to := res.To(); to != nil {
		if tag, ok := to.Params.Get("tag"); ok && bl.remoteTag == "" {
			bl.remoteTag = tag
		}
	}
	if ct := res.Contact(); ct != nil {
		bl.remoteTarget = ct.Address
	}
	if rs := reverseRoutes(res); len(rs) > 0 {
		bl.routeSet = rs
	}
}

func reverseRoutes(res *sip.Response) []sip.Uri {
	hs := res.GetHeaders("Record-Route")
	out := make([]sip.Uri, 0, len(hs))
	for i := len(hs) - 1; i >= 0; i-- {
		if rr, ok := hs[i].(*sip.RecordRouteHeader); ok {
			out = append(out, rr.Address)
		}
	}
	return out
}

// prack acknowledges a reliable provisional on the inside leg; the B2BUA
// terminates 100rel per leg.
func (b *B2BUA) prack(c *call, bl *leg, res *sip.Response) {
	c.mu.Lock()
	saved := bl.remoteTag
	if to := res.To(); to != nil {
		if tag, ok := to.Params.Get("tag"); ok {
			bl.remoteTag = tag
		}
	}
	pr := b.newRequest(bl, sip.PRACK, bl.nextCSeq(), "")
	bl.remoteTag = saved
	cs := res.CSeq()
	pr.AppendHeader(sip.NewHeader("RAck", res.GetHeader("RSeq").Value()+" "+strconv.FormatUint(uint64(cs.SeqNo), 10)+" INVITE"))
	pr.SetBody(nil)
	c.mu.Unlock()
	b.spawn(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 32*time.Second)
		defer cancel()
		if _, err := b.do(ctx, pr); err != nil {
			b.log.Debug("PRACK failed", "error", err)
		}
	})
}

// cancelPending cancels the inside INVITE and cleans up whatever it ends in.
// trying tells whether a provisional response (100 included) came: before
// one, a CANCEL must not be sent but waited for (RFC 3261 9.1). reason
// is the call's end reason.
func (b *B2BUA) cancelPending(c *call, bl *leg, inv *sip.Request, btx sip.ClientTransaction, trying bool, reason string) {
	sendCancel := func() {
		cancel := sip.NewRequest(sip.CANCEL, inv.Recipient)
		cancel.AppendHeader(sip.HeaderClone(inv.Via()))
		for _, h := range inv.GetHeaders("Route") {
			cancel.AppendHeader(sip.HeaderClone(h))
		}
		mf := sip.MaxForwardsHeader(70)
		cancel.AppendHeader(&mf)
		cancel.AppendHeader(sip.HeaderClone(inv.From()))
		cancel.AppendHeader(sip.HeaderClone(inv.To()))
		cancel.AppendHeader(sip.HeaderClone(inv.CallID()))
		cancel.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
		cancel.SetBody(nil)
		cancel.SetTransport(inv.Transport())
		cancel.SetDestination(inv.Destination())
		cancel.Laddr = inv.Laddr
		b.spawn(func() {
			ctx, cn := context.WithTimeout(context.Background(), 32*time.Second)
			defer cn()
			_, _ = b.do(ctx, cancel)
		})
	}
	if trying {
		sendCancel()
	}
	// Wait for the INVITE's end in the background: a 2xx that crossed our
	// CANCEL must be ACKed and BYEd (RFC 3261 9.1), then the call goes.
	spawned := b.spawn(func() {
		defer b.finish(c, reason)
		timer := time.NewTimer(64 * sip.T1)
		defer timer.Stop()
		for {
			select {
			case res := <-btx.Responses():
				if res.StatusCode < 200 {
					if !trying {
						trying = true
						sendCancel()
					}
					continue
				}
				if res.StatusCode < 300 {
					btx.Terminate()
					b.ackAndBye(c, bl, inv, res)
				}
				return
			case <-btx.Done():
				return
			case <-timer.C:
				btx.Terminate()
				return
			}
		}
	})
	if !spawned {
		// Shutting down: nobody waits for the INVITE's end.
		btx.Terminate()
		b.finish(c, reason)
	}
}

// answerRefused reports why the media relay will not take the SDP answer
// of a 2xx (nil when it takes it, or there is none): it is run through the
// relay once here, and again, unchanged, when the 2xx is relayed.
func (b *B2BUA) answerRefused(c *call, res *sip.Response) error {
	if b.cfg.Media == nil || len(res.Body()) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	body, err := b.bodyFor(c, c.a, res)
	if err == nil {
		c.answer.res, c.answer.to, c.answer.body = res, c.a, body
	}
	return err
}

// ackAndBye ends a dialog nobody wants any more.
func (b *B2BUA) ackAndBye(c *call, bl *leg, inv *sip.Request, res *sip.Response) {
	c.mu.Lock()
	if to := res.To(); to != nil {
		bl.remoteTag, _ = to.Params.Get("tag")
	}
	if ct := res.Contact(); ct != nil {
		bl.remoteTarget = ct.Address
	}
	bl.routeSet = reverseRoutes(res)
	ack := b.newRequest(bl, sip.ACK, inv.CSeq().SeqNo, "")
	ack.SetBody(nil)
	bye := b.newRequest(bl, sip.BYE, bl.nextCSeq(), "")
	bye.SetBody(nil)
	c.mu.Unlock()
	_ = b.cfg.Client.WriteRequest(ack, sbc.NoBuild)
	ctx, cancel := context.WithTimeout(context.Background(), 32*time.Second)
	defer cancel()
	_, _ = b.do(ctx, bye)
}

// answered completes an answered INVITE: record the inside dialog, relay the
// 2xx and wait for the caller's ACK to relay it end to end.
func (b *B2BUA) answered(c *call, r *sbc.Request, w sbc.ResponseWriter, inv *sip.Request, res *sip.Response) {
	req := r.Request
	now := b.cfg.Now()
	c.mu.Lock()
	bl, a := c.b, c.a
	if to := res.To(); to != nil {
		bl.remoteTag, _ = to.Params.Get("tag")
	}
	if ct := res.Contact(); ct != nil {
		bl.remoteTarget = ct.Address
	}
	bl.routeSet = reverseRoutes(res)
	c.state = stateConfirmed
	c.answered, c.activity = now, now
	// The INVITE's own CSeq: a.remoteCSeq may have moved on with requests
	// in the early dialog (UPDATE, INFO), and the ACK carries the INVITE's.
	cseq := req.CSeq().SeqNo
	a.ackMap[cseq] = inv.CSeq().SeqNo
	acked := make(chan struct{})
	a.acked[cseq] = acked
	limit, why := b.cfg.MaxDuration, "max duration"
	if r.MaxDuration > 0 && (limit == 0 || r.MaxDuration < limit) {
		limit, why = r.MaxDuration, "duration limit (rules)"
	}
	if limit > 0 {
		c.maxTimer = time.AfterFunc(limit, func() { b.teardown(c, why) })
	}
	c.mu.Unlock()
	b.table.index(c, bl)
	b.stats.Answered.Add(1)
	if b.cfg.Events != nil {
		ev := CallEvent{Key: c.origin, Answered: true}
		c.mu.Lock()
		ev.Setup = c.answered.Sub(c.created)
		info := c.infoLocked()
		c.mu.Unlock()
		ev.Info = &info
		b.cfg.Events(ev)
	}

	out := b.responseTo(c, a, req, res, true)
	tx := w.Tx()
	if err := w.Respond(out); err != nil {
		b.log.Debug("relay 2xx failed", "error", err)
	}
	b.drainAcks(c, a, tx, acked)
	b.awaitAck(c, a, cseq, tx, out, acked)
}

// drainAcks takes ACKs that the transaction layer matched to the INVITE
// transaction itself (peers that reuse the INVITE's branch), until the
// 2xx is ACKed or the call ends: the transaction lives on for 64×T1 (RFC
// 6026), and waiting for its end kept a goroutine and the whole call for
// 32 s after every answered call.
func (b *B2BUA) drainAcks(c *call, a *leg, tx sip.ServerTransaction, acked <-chan struct{}) {
	b.spawn(func() {
		for {
			select {
			case ack := <-tx.Acks():
				b.ack(c, a, ack)
			case <-acked:
				return
			case <-c.ended:
				return
			case <-tx.Done():
				return
			case <-b.closed:
				return
			}
		}
	})
}

// awaitAck retransmits a 2xx over UDP until its ACK comes (RFC 3261
// 13.3.1.4, the TU's job since RFC 6026) and ends the call if none comes.
func (b *B2BUA) awaitAck(c *call, l *leg, cseq uint32, tx sip.ServerTransaction, res *sip.Response, acked chan struct{}) {
	reliable := !strings.EqualFold(l.transport, "UDP")
	b.spawn(func() {
		deadline := time.NewTimer(64 * sip.T1)
		defer deadline.Stop()
		interval := sip.T1
		retr := time.NewTimer(interval)
		defer retr.Stop()
		for {
			select {
			case <-acked:
				return
			case <-c.ended:
				return
			case <-b.closed:
				return
			case <-retr.C:
				if !reliable {
					_ = tx.Respond(res)
					interval = min(interval*2, sip.T2)
				} else {
					interval = 64 * sip.T1
				}
				retr.Reset(interval)
			case <-deadline.C:
				c.mu.Lock()
				mapped, pending := l.ackMap[cseq]
				delete(l.ackMap, cseq)
				delete(l.acked, cseq)
				var ack *sip.Request
				if to := c.other(l); pending && to != nil {
					// The other leg's 2xx still needs its ACK (RFC 3261
					// 13.2.2.4) before the BYE, or that side sees a BYE for
					// a dialog it never saw confirmed.
					ack = b.newRequest(to, sip.ACK, mapped, "")
					ack.SetBody(nil)
					to.keepAck(ack)
				}
				c.mu.Unlock()
				if ack != nil {
					_ = b.cfg.Client.WriteRequest(ack.Clone(), sbc.NoBuild)
				}
				b.stats.NoAck.Add(1)
				b.teardown(c, "no ACK")
				return
			}
		}
	})
}

// ack relays the ACK for a 2xx received on leg from to the other leg.
func (b *B2BUA) ack(c *call, from *leg, req *sip.Request) {
	c.mu.Lock()
	cs := req.CSeq().SeqNo
	mapped, ok := from.ackMap[cs]
	if !ok {
		c.mu.Unlock()
		return
	}
	delete(from.ackMap, cs)
	// Requests that overtook this ACK wait on acked (see inDialog); they
	// are let go only once the ACK is on the wire, so the other side sees
	// the ACK first. ackMap is already cleared: a retransmitted ACK stops
	// above, so only this call closes the channel.
	pending := from.acked[cs]
	to := c.other(from)
	ack := b.newRequest(to, sip.ACK, mapped, "")
	body, err := b.bodyFor(c, to, req)
	if err != nil {
		b.log.Debug("ACK body dropped", "error", err)
		body = nil
	}
	if ct := req.ContentType(); ct != nil && len(body) > 0 {
		ack.AppendHeader(sip.NewHeader("Content-Type", ct.Value()))
	}
	ack.SetBody(body)
	to.keepAck(ack)
	c.activity = b.cfg.Now()
	c.mu.Unlock()
	if err := b.cfg.Client.WriteRequest(ack.Clone(), sbc.NoBuild); err != nil {
		b.log.Debug("send ACK failed", "error", err)
	}
	if pending != nil {
		c.mu.Lock()
		if from.acked[cs] == pending {
			delete(from.acked, cs)
		}
		c.mu.Unlock()
		close(pending)
	}
}

// OnUnhandledResponse re-ACKs retransmitted 2xx responses to INVITEs whose
// transaction is gone (RFC 3261 13.2.2.4). Wire it to the transaction layer.
func (b *B2BUA) OnUnhandledResponse(res *sip.Response) {
	if !res.IsSuccess() || res.CSeq() == nil || res.CSeq().MethodName != sip.INVITE || res.From() == nil || res.CallID() == nil {
		return
	}
	tag, _ := res.From().Params.Get("tag")
	c := b.table.lookup(res.CallID().Value(), tag)
	if c == nil {
		return
	}
	toTag := ""
	if to := res.To(); to != nil {
		toTag, _ = to.Params.Get("tag")
	}
	c.mu.Lock()
	var ack, bye *sip.Request
	for _, l := range []*leg{c.a, c.b} {
		if l == nil || l.callID != res.CallID().Value() || l.localTag != tag {
			continue
		}
		switch {
		case l.remoteTag != "" && toTag != "" && toTag != l.remoteTag:
			// Another fork's 2xx: ACK and BYE it (forks.go).
			ack, bye = b.fork(c, l, res)
		case l.lastAck != nil && l.lastAckCSeq == res.CSeq().SeqNo:
			ack = l.resendAck()
		}
	}
	c.mu.Unlock()
	b.endFork(ack, bye)
}

// do sends a request in a client transaction and waits for its final
// response. The transaction is terminated before return.
func (b *B2BUA) do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	return sbc.Do(ctx, b.cfg.Client, req)
}

// inDialog relays a request inside an existing call to the other leg.
// Owns reports whether r belongs to a live dialog the B2BUA created: its
// Call-ID and To tag name one of our legs, its From tag is that leg's
// peer's and it comes from that leg's side. The auth layer lets such
// requests through without digest; a To tag alone proves nothing.
func (b *B2BUA) Owns(r *sbc.Request) bool {
	to, from, cid := r.To(), r.From(), r.CallID()
	if to == nil || from == nil || cid == nil {
		return false
	}
	toTag, _ := to.Params.Get("tag")
	fromTag, _ := from.Params.Get("tag")
	if toTag == "" {
		return false
	}
	c := b.table.lookup(cid.Value(), toTag)
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range []*leg{c.a, c.b} {
		if l != nil && l.callID == cid.Value() && l.localTag == toTag && l.remoteTag == fromTag && l.side == r.Side {
			return c.state != stateEnded
		}
	}
	return false
}

func (b *B2BUA) inDialog(ctx context.Context, w sbc.ResponseWriter, r *sbc.Request, toTag string) (sbc.Verdict, error) {
	req := r.Request
	callID := req.CallID().Value()
	c := b.table.lookup(callID, toTag)
	if c == nil {
		if req.IsAck() {
			return sbc.Dropped, nil
		}
		b.stats.Rejected481.Add(1)
		return sbc.Rejected, sbc.Respond(w, r, 481, "Call/Transaction Does Not Exist")
	}
	// An attended transfer's Replaces may name any call, this one too:
	// looked up before this call's lock is taken (replaces.go).
	var xfer *replacement
	var xferErr error
	if req.Method == sip.REFER {
		// The transfer's target is judged first, as a call to it would be.
		if refused, err := b.vetRefer(ctx, w, r, c); refused {
			return sbc.Rejected, err
		}
		xfer, xferErr = b.referReplaces(req)
	}
	c.mu.Lock()
	var from *leg
	for _, l := range []*leg{c.a, c.b} {
		if l != nil && l.callID == callID && l.localTag == toTag {
			from = l
		}
	}
	fromTag, _ := req.From().Params.Get("tag")
	if from == nil || fromTag != from.remoteTag || r.Side != from.side || c.state == stateEnded {
		c.mu.Unlock()
		if req.IsAck() {
			return sbc.Dropped, nil
		}
		b.stats.Rejected481.Add(1)
		return sbc.Rejected, sbc.Respond(w, r, 481, "Call/Transaction Does Not Exist")
	}
	if req.Method != sip.ACK && req.Method != sip.CANCEL && len(from.acked) > 0 {
		// A request sent right after an ACK can overtake it here (each
		// request is handled on its own goroutine): wait, bounded, for the
		// pending ACK to be relayed first, so the far side never sees a
		// BYE or re-INVITE before the ACK of the 2xx it answers.
		var pending chan struct{}
		for _, ch := range from.acked {
			pending = ch
			break
		}
		c.mu.Unlock()
		select {
		case <-pending:
		case <-time.After(ackOvertakeWait):
		case <-ctx.Done():
		}
		c.mu.Lock()
		if c.state == stateEnded {
			c.mu.Unlock()
			b.stats.Rejected481.Add(1)
			return sbc.Rejected, sbc.Respond(w, r, 481, "Call/Transaction Does Not Exist")
		}
	}
	c.activity = b.cfg.Now()
	switch req.Method {
	case sip.ACK:
		c.mu.Unlock()
		b.ack(c, from, req)
		return sbc.Forwarded, nil
	case sip.PRACK:
		// 100rel is terminated per leg: the inside leg was PRACKed by us.
		c.mu.Unlock()
		return sbc.Answered, sbc.Respond(w, r, 200, "OK")
	case sip.CANCEL:
		c.mu.Unlock()
		if sbc.MatchCancel(w) { // of a re-INVITE still pending
			return sbc.Answered, nil
		}
		return sbc.Rejected, sbc.Respond(w, r, 481, "Call/Transaction Does Not Exist")
	}
	cseq := req.CSeq().SeqNo
	if from.remoteCSeq != 0 && cseq <= from.remoteCSeq {
		c.mu.Unlock()
		return sbc.Rejected, sbc.Respond(w, r, 500, "Server Internal Error", sip.NewHeader("Retry-After", "1"))
	}
	from.remoteCSeq = cseq
	to := c.other(from)
	if to == nil || (c.state != stateConfirmed && req.Method != sip.BYE && req.Method != sip.UPDATE && req.Method != sip.INFO) {
		c.mu.Unlock()
		b.stats.Rejected481.Add(1)
		return sbc.Rejected, sbc.Respond(w, r, 481, "Call/Transaction Does Not Exist")
	}
	if req.Method == sip.INVITE {
		if c.inviteBusy {
			c.mu.Unlock()
			return sbc.Rejected, sbc.Respond(w, r, 491, "Request Pending")
		}
		c.inviteBusy = true
	}
	refresh := isTargetRefresh(req.Method)
	if refresh {
		if ct := req.Contact(); ct != nil {
			from.remoteTarget = ct.Address
		}
	}
	out := b.newRequest(to, req.Method, to.nextCSeq(), "")
	if mf, ok := maxForwards(req); ok {
		h := sip.MaxForwardsHeader(mf)
		out.ReplaceHeader(&h)
	} else {
		c.inviteBusy = c.inviteBusy && req.Method != sip.INVITE
		c.mu.Unlock()
		return sbc.Rejected, sbc.Respond(w, r, 483, "Too Many Hops")
	}
	if refresh {
		out.AppendHeader(b.contact(to, ""))
	}
	b.copyFor(to, req, out)
	if xferErr != nil {
		c.mu.Unlock()
		return sbc.Rejected, sbc.Respond(w, r, 400, "Bad Request")
	}
	if !xfer.rewriteRefer(out, to.side) {
		// Nothing of ours outside is named: the inside dialog's
		// identifiers must not go out.
		c.mu.Unlock()
		return sbc.Rejected, sbc.Respond(w, r, 403, "Forbidden")
	}
	requireFiltered(req, out)
	body, err := b.bodyFor(c, to, req)
	if err != nil {
		c.inviteBusy = c.inviteBusy && req.Method != sip.INVITE
		c.mu.Unlock()
		b.log.Debug("in-dialog body refused", "method", string(req.Method), "error", err)
		r.Why = sdpWhy(err)
		return sbc.Rejected, sbc.Respond(w, r, 488, "Not Acceptable Here", sdpWarning(from, err))
	}
	out.SetBody(body)
	c.mu.Unlock()

	res, err := b.do(ctx, out)
	if req.Method == sip.INVITE {
		// Cleared before our answer goes out: a peer may send its next
		// re-INVITE as soon as it has the answer, and must not get 491.
		c.mu.Lock()
		c.inviteBusy = false
		c.mu.Unlock()
	}
	if req.Method == sip.BYE {
		// The dialog is over whatever the far side says.
		b.finish(c, "bye from "+from.name)
		if res == nil || res.StatusCode == 481 || res.StatusCode == 408 {
			return sbc.Forwarded, sbc.Respond(w, r, 200, "OK")
		}
	}
	if err != nil {
		b.log.Debug("in-dialog request failed", "method", string(req.Method), "error", err)
		return sbc.Rejected, sbc.Respond(w, r, 408, "Request Timeout")
	}
	if res.StatusCode == 481 && req.Method != sip.BYE {
		// The other dialog is gone: this one must go too.
		defer b.teardown(c, "481 from "+to.name)
	}
	outRes := b.responseTo(c, from, req, res, refresh)
	if req.Method == sip.INVITE && res.IsSuccess() {
		c.mu.Lock()
		if ct := res.Contact(); ct != nil {
			to.remoteTarget = ct.Address
		}
		from.ackMap[cseq] = out.CSeq().SeqNo
		acked := make(chan struct{})
		from.acked[cseq] = acked
		c.mu.Unlock()
		if err := w.Respond(outRes); err != nil {
			return sbc.Rejected, err
		}
		b.drainAcks(c, from, w.Tx(), acked)
		b.awaitAck(c, from, cseq, w.Tx(), outRes, acked)
		return sbc.Forwarded, nil
	}
	if refresh && res.IsSuccess() {
		c.mu.Lock()
		if ct := res.Contact(); ct != nil {
			to.remoteTarget = ct.Address
		}
		c.mu.Unlock()
	}
	return sbc.Forwarded, w.Respond(outRes)
}

// forward relays an out-of-dialog non-INVITE request (MESSAGE, OPTIONS to a
// user, REGISTER) as a single transaction, with failover.
func (b *B2BUA) forward(ctx context.Context, w sbc.ResponseWriter, r *sbc.Request) (sbc.Verdict, error) {
	req := r.Request
	mf, ok := maxForwards(req)
	if !ok {
		return sbc.Rejected, sbc.Respond(w, r, 483, "Too Many Hops")
	}
	targets, code, reason := b.route(r)
	if len(targets) == 0 {
		b.endedEarly(r)
		return sbc.Rejected, sbc.Respond(w, r, code, reason)
	}
	fromTag, _ := req.From().Params.Get("tag")
	for _, t := range targets {
		l, err := b.newLeg(r, t, targetSide(t))
		if err != nil {
			continue
		}
		l.callID = b.mapID("call-id", req.CallID().Value())
		l.localTag = b.mapID("tag", fromTag)[:16]
		if req.Method == sip.REGISTER {
			l.remoteTarget.User = ""
		}
		out := b.newRequest(l, req.Method, req.CSeq().SeqNo, "")
		h := sip.MaxForwardsHeader(mf)
		out.ReplaceHeader(&h)
		b.copyFor(l, req, out)
		requireFiltered(req, out)
		if l.side == sbc.Internal {
			for _, fh := range r.Forward {
				out.AppendHeader(sip.HeaderClone(fh))
			}
		}
		if req.Method == sip.REGISTER {
			// Bindings pass unchanged until the registrar layer owns them.
			for _, ct := range req.GetHeaders("Contact") {
				out.AppendHeader(sip.HeaderClone(ct))
			}
		}
		body, _ := b.bodyFor(nil, l, req) // no call: never SDP through the relay
		out.SetBody(body)
		res, err := b.do(ctx, out)
		if err != nil || res.StatusCode == 503 {
			b.markUpstream(t, false)
			continue
		}
		pseudo := &leg{localTag: b.mapID("to-tag", req.CallID().Value())[:16], side: r.Side}
		pseudo.local, _ = b.cfg.Endpoint.Local(strings.ToLower(r.Transport), r.Side)
		outRes := b.responseTo(nil, pseudo, req, res, false)
		if req.Method == sip.REGISTER {
			for _, ct := range res.GetHeaders("Contact") {
				outRes.AppendHeader(sip.HeaderClone(ct))
			}
		}
		return sbc.Forwarded, w.Respond(outRes)
	}
	return sbc.Rejected, sbc.Respond(w, r, 503, "Service Unavailable")
}

// teardown ends a call from the middle: BYE on both confirmed legs.
func (b *B2BUA) teardown(c *call, reason string) {
	c.mu.Lock()
	if c.state == stateEnded {
		c.mu.Unlock()
		return
	}
	var byes []*sip.Request
	if c.state == stateConfirmed {
		for _, l := range []*leg{c.a, c.b} {
			if l != nil && l.remoteTag != "" {
				bye := b.newRequest(l, sip.BYE, l.nextCSeq(), "")
				bye.AppendHeader(sip.NewHeader("Reason", `SIP;cause=200;text="`+reason+`"`))
				bye.SetBody(nil)
				byes = append(byes, bye)
			}
		}
	}
	c.mu.Unlock()
	b.finish(c, reason)
	for _, bye := range byes {
		b.spawn(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 32*time.Second)
			defer cancel()
			_, _ = b.do(ctx, bye)
		})
	}
}

// EndCall tears down the confirmed call named key (a Media key): BYE on
// both legs. The media relay calls it for calls whose media went silent;
// a call still ringing is left to the ring timeout (no media while it
// rings is normal).
func (b *B2BUA) EndCall(key, reason string) bool {
	c, confirmed := b.lookup(func(c *call) bool { return c.key() == key })
	if confirmed {
		b.teardown(c, reason)
	}
	return confirmed
}

// lookup finds a call in the table and tells whether it is confirmed.
func (b *B2BUA) lookup(match func(*call) bool) (*call, bool) {
	for _, c := range b.table.snapshot() {
		if match(c) {
			c.mu.Lock()
			confirmed := c.state == stateConfirmed
			c.mu.Unlock()
			return c, confirmed
		}
	}
	return nil, false
}

// finish removes a call from the table once.
func (b *B2BUA) finish(c *call, reason string) {
	c.mu.Lock()
	c.state = stateEnded
	c.mu.Unlock()
	if c.end() {
		b.table.remove(c, b.cfg.Now())
		b.caps.release(c)
		if b.cfg.Events != nil {
			c.mu.Lock()
			ev := CallEvent{Key: c.origin, Ended: true, Answered: !c.answered.IsZero(), Reason: reason}
			if ev.Answered {
				ev.Duration = b.cfg.Now().Sub(c.answered)
				ev.Setup = c.answered.Sub(c.created)
			}
			info := c.infoLocked()
			b.mediaInfo(c, &info)
			ev.Info = &info
			c.mu.Unlock()
			b.cfg.Events(ev)
		}
		if b.cfg.Media != nil {
			b.cfg.Media.Release(c.key())
		}
		b.log.Debug("call ended", "call", c.id, "reason", reason)
	}
}

// spawn runs f in a goroutine Run waits for at shutdown. It reports false,
// running nothing, once Run is shutting down.
func (b *B2BUA) spawn(f func()) bool {
	b.spawnMu.Lock()
	defer b.spawnMu.Unlock()
	if b.stopping {
		return false
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		f()
	}()
	return true
}

// Run sweeps calls that outlived the session timeout (vanished peers)
// until ctx is done, then waits for the layer's goroutines.
func (b *B2BUA) Run(ctx context.Context) {
	every := b.cfg.SessionTimeout / 4
	if every > 30*time.Second {
		every = 30 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			b.spawnMu.Lock()
			b.stopping = true
			close(b.closed)
			b.spawnMu.Unlock()
			b.wg.Wait()
			return
		case <-t.C:
			b.sweep()
		}
	}
}

func (b *B2BUA) sweep() {
	now := b.cfg.Now()
	for _, c := range b.table.snapshot() {
		c.mu.Lock()
		idle := now.Sub(c.activity)
		st := c.state
		age := now.Sub(c.created)
		c.mu.Unlock()
		switch {
		case st == stateConfirmed && idle > b.cfg.SessionTimeout:
			b.teardown(c, "session timeout")
		case st == stateEarly && age > b.cfg.RingTimeout+2*64*sip.T1:
			b.finish(c, "stuck early")
		}
	}
}

// redirectTargets turns the Contacts of a 3xx into targets, in q order as
// listed. Only SIP URIs with an IP host are followed: the SBC resolves no
// names a PBX hands it. They are reached from the same side as the target
// that redirected.
func redirectTargets(res *sip.Response, from upstream.Target) []upstream.Target {
	var out []upstream.Target
	for _, h := range res.GetHeaders("Contact") {
		ct, ok := h.(*sip.ContactHeader)
		if !ok || (ct.Address.Scheme != "sip" && ct.Address.Scheme != "") {
			continue
		}
		u := ct.Address
		transport := from.Transport
		if tp, ok := u.UriParams.Get("transport"); ok && tp != "" {
			transport = strings.ToLower(tp)
		}
		port := u.Port
		if port == 0 {
			port = 5060
		}
		t, err := upstream.ParseTarget(redirectName, fmt.Sprintf("sip:%s:%d;transport=%s", u.Host, port, transport), 1, 1)
		if err != nil {
			continue
		}
		t.URI.User = u.User
		t.Exact = u.User != ""
		t.External = from.External
		out = append(out, t)
		if len(out) == 4 {
			break
		}
	}
	return out
}

// CallInfo describes a call in the table (admin API, tests).
type CallInfo struct {
	ID    uint64 `json:"id"`
	State string `json:"state"`
	// User is whom the call is attributed to: the authenticated user,
	// "trusted:<peer>" for a trusted peer, empty when nothing
	// authenticated the caller (a call from the inside, auth off).
	User string `json:"user"`
	// Claimed is the user part of the caller's From header: what the
	// caller says it is, not checked by anyone.
	Claimed  string    `json:"claimed"`
	To       string    `json:"to"`
	Created  time.Time `json:"created"`
	Answered time.Time `json:"answered,omitzero"`
	Activity time.Time `json:"activity"`
	// CallIDs of the outside (a) and inside (b) legs.
	ACallID string `json:"a_call_id"`
	BCallID string `json:"b_call_id,omitempty"`
	// Media is what the relay carried (when there is one, and it says).
	Media *sbc.MediaStats `json:"media,omitempty"`
}

// mediaStatser is a media relay that reports a call's media
// (*media.Manager).
type mediaStatser interface {
	CallStats(key string) (sbc.MediaStats, bool)
}

// mediaInfo fills ci.Media for call c from the relay, if it reports.
func (b *B2BUA) mediaInfo(c *call, ci *CallInfo) {
	if ms, ok := b.cfg.Media.(mediaStatser); ok {
		if st, ok := ms.CallStats(c.key()); ok {
			ci.Media = &st
		}
	}
}

// Calls lists the calls in the table.
func (b *B2BUA) Calls() []CallInfo {
	var out []CallInfo
	for _, c := range b.table.snapshot() {
		c.mu.Lock()
		ci := c.infoLocked()
		b.mediaInfo(c, &ci)
		c.mu.Unlock()
		out = append(out, ci)
	}
	return out
}

// infoLocked describes c; c.mu is held.
func (c *call) infoLocked() CallInfo {
	ci := CallInfo{ID: c.id, User: c.user, Claimed: c.claimed, To: c.dst, Created: c.created, Answered: c.answered, Activity: c.activity, ACallID: c.a.callID}
	switch c.state {
	case stateEarly:
		ci.State = "early"
	case stateConfirmed:
		ci.State = "confirmed"
	default:
		ci.State = "ended"
	}
	if c.b != nil {
		ci.BCallID = c.b.callID
	}
	return ci
}

// errHungUp is the cause of a ringing call's end by HangUp.
var errHungUp = errors.New("hung up")

// abandon stops a call still ringing: the callee's INVITE is cancelled
// and the caller gets 487 Request Terminated.
func (b *B2BUA) abandon(c *call, reason string) {
	c.mu.Lock()
	f := c.abort
	c.mu.Unlock()
	if f != nil {
		b.log.Debug("call abandoned", "call", c.id, "reason", reason)
		f()
	}
}

// HangUp ends the call with the given ID (CallInfo.ID): BYE on both legs
// of an answered call, CANCEL toward the callee and 487 to the caller
// for one still ringing. It reports whether the call was found.
func (b *B2BUA) HangUp(id uint64, reason string) bool {
	c, confirmed := b.lookup(func(c *call) bool { return c.id == id })
	switch {
	case c == nil:
		return false
	case confirmed:
		b.teardown(c, reason)
	default:
		b.abandon(c, reason)
	}
	return true
}
