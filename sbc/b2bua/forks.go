package b2bua

import (
	"context"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
)

// maxForks bounds the forked dialogs remembered per call.
const maxForks = 8

// fork handles a 2xx to our INVITE on leg l from a dialog other than the
// one kept (a forking proxy inside answered from a second phone): RFC 3261
// 13.2.2.4 asks for an ACK, then a BYE, so that phone is not left
// ringing in a call nobody hears. A retransmission of that 2xx gets the
// ACK again, not a second BYE. c.mu is held; it returns what to send once
// it is released.
func (b *B2BUA) fork(c *call, l *leg, res *sip.Response) (ack, bye *sip.Request) {
	tag, _ := res.To().Params.Get("tag")
	if tag == "" {
		return nil, nil
	}
	if c.forks == nil {
		c.forks = map[string]bool{}
	}
	seen := c.forks[tag]
	if !seen && len(c.forks) >= maxForks {
		return nil, nil
	}
	f := *l // the kept dialog stays as it is
	f.remoteTag = tag
	if ct := res.Contact(); ct != nil {
		f.remoteTarget = ct.Address
	}
	f.routeSet = reverseRoutes(res)
	ack = b.newRequest(&f, sip.ACK, res.CSeq().SeqNo, "")
	ack.SetBody(nil)
	if !seen {
		c.forks[tag] = true
		bye = b.newRequest(&f, sip.BYE, res.CSeq().SeqNo+1, "")
		bye.SetBody(nil)
		b.stats.Forks.Add(1)
	}
	return ack, bye
}

// endFork sends the ACK and, the first time, the BYE of a forked 2xx.
func (b *B2BUA) endFork(ack, bye *sip.Request) {
	if ack != nil {
		_ = b.cfg.Client.WriteRequest(ack, sbc.NoBuild)
	}
	if bye != nil {
		b.spawn(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 32*time.Second)
			defer cancel()
			_, _ = b.do(ctx, bye)
		})
	}
}
