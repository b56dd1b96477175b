package b2bua

import (
	"sync"

	"github.com/emiago/sipgo/sip"
)

// maxEarlyQueued bounds the provisional responses one INVITE keeps in
// read order (and the ones remembered as relayed ahead of the
// transaction): a callee sends a handful; one that sends more only loses
// the ordering of the surplus, not the responses.
const maxEarlyQueued = 32

// readOrder keeps the provisional responses to one INVITE we sent in the
// order the socket delivered them. sipgo passes each received message to
// the transaction layer on a goroutine of its own, so a 180 and a 200
// read a millisecond apart reach the client transaction in either order,
// and once the 2xx is there the 1xx is dropped. OnResponse sees every
// response on the reading goroutine, in read order; before the relay acts
// on a response from the transaction, it first relays every provisional
// read before it that the transaction has not delivered.
type readOrder struct {
	mu sync.Mutex
	// read are provisionals seen on the wire, oldest first, not relayed.
	read []*sip.Response
	// relayed are provisionals relayed from one source (the wire or the
	// transaction) and not yet seen from the other, which must skip them.
	relayed map[*sip.Response]struct{}
}

// OnResponse sees every response the server reads, in read order, on the
// reading goroutine (sbc.Options.OnResponse). It keeps the provisional
// responses to INVITEs in progress for the relay; it must not block.
func (b *B2BUA) OnResponse(res *sip.Response) {
	if res.StatusCode <= 100 || res.StatusCode >= 200 {
		return
	}
	cs, via := res.CSeq(), res.Via()
	if cs == nil || cs.MethodName != sip.INVITE || via == nil {
		return
	}
	branch, _ := via.Params.Get("branch")
	v, ok := b.orders.Load(branch)
	if !ok {
		return
	}
	o := v.(*readOrder)
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, done := o.relayed[res]; done {
		delete(o.relayed, res)
		return
	}
	if len(o.read) < maxEarlyQueued {
		o.read = append(o.read, res)
	}
}

// trackOrder starts keeping the read order of the responses to the INVITE
// with this branch; the returned function stops it.
func (b *B2BUA) trackOrder(branch string) (*readOrder, func()) {
	o := &readOrder{relayed: map[*sip.Response]struct{}{}}
	b.orders.Store(branch, o)
	return o, func() { b.orders.Delete(branch) }
}

// upTo returns, in read order, the provisionals to relay now that the
// transaction delivered res: those read before res that were not relayed
// yet, then res itself if it is a provisional not relayed yet. A final
// response takes every provisional read so far: all of them came before
// it, or the transaction would have delivered them first.
func (o *readOrder) upTo(res *sip.Response) []*sip.Response {
	o.mu.Lock()
	defer o.mu.Unlock()
	provisional := res.StatusCode > 100 && res.StatusCode < 200
	if provisional {
		if _, done := o.relayed[res]; done {
			// Relayed from the wire ahead of the transaction.
			delete(o.relayed, res)
			return nil
		}
	}
	n := len(o.read)
	self := false
	for i, r := range o.read {
		if r == res {
			n, self = i, true
			break
		}
	}
	out := make([]*sip.Response, 0, n+1)
	out = append(out, o.read[:n]...)
	for _, r := range out {
		// The transaction may deliver these later (or never, when a
		// final overtook them): remember them so they go out once.
		if len(o.relayed) < maxEarlyQueued {
			o.relayed[r] = struct{}{}
		}
	}
	if self {
		o.read = append(o.read[:0], o.read[n+1:]...)
	} else {
		o.read = o.read[n:]
	}
	if provisional {
		if !self && len(o.relayed) < maxEarlyQueued {
			// Not read from the wire yet as far as OnResponse goes:
			// it will be, and must then be skipped.
			o.relayed[res] = struct{}{}
		}
		out = append(out, res)
	}
	return out
}
