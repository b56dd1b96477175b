package sbc

import (
	"context"
	"errors"
	"sync"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// NoBuild tells sipgo a request is complete as built: it adds no header.
// Layers build every header themselves so nothing of sipgo's defaults
// (its name, a random From) leaks onto the wire.
func NoBuild(*sipgo.Client, *sip.Request) error { return nil }

// Do sends req in a client transaction and waits for its final response.
// The transaction is terminated before Do returns, so retransmitted finals
// go to the unhandled-response hook.
func Do(ctx context.Context, c *sipgo.Client, req *sip.Request) (*sip.Response, error) {
	tx, err := Send(ctx, c, req)
	if err != nil {
		return nil, err
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.StatusCode < 200 {
				continue
			}
			return res, nil
		case <-tx.Done():
			if err := tx.Err(); err != nil {
				return nil, err
			}
			return nil, errors.New("transaction ended without response")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Send sends req (complete as built: NoBuild) in a client transaction
// of c, as c.TransactionRequest does, and registers the transaction until
// it terminates so that the listener that reads its responses hands them
// to it parsed once (Server.deliver): the response filter parses every
// response anyway, and sipgo's transport would parse it a second time.
// A response read before the registration, or for a transaction started
// with c.TransactionRequest directly, takes sipgo's way, as before.
func Send(ctx context.Context, c *sipgo.Client, req *sip.Request) (sip.ClientTransaction, error) {
	tx, err := c.TransactionRequest(ctx, req, NoBuild)
	if err != nil {
		return nil, err
	}
	ct, ok := tx.(*sip.ClientTx)
	if !ok {
		return tx, nil
	}
	key, p := ct.Key(), pendingTx{tx: ct, c: c}
	pending.Store(key, p)
	if !ct.OnTerminate(func(string, error) { pending.CompareAndDelete(key, p) }) {
		pending.CompareAndDelete(key, p) // already over
	}
	return tx, nil
}

// pending holds the client transactions started by Send, by key
// (branch and method); the client tells the server that owns them.
var pending sync.Map

type pendingTx struct {
	tx *sip.ClientTx
	c  *sipgo.Client
}

// Timer M (RFC 6026 8.4) keeps an INVITE client transaction in Accepted
// for 64×T1 after its first 2xx so that retransmitted 2xx reach the TU.
// Here the TU terminates the transaction as soon as it has the 2xx (the
// B2BUA, Do), and retransmitted or forked 2xx then reach it through the
// unhandled-response hook (Options.OnUnhandledResponse, RFC 3261
// 13.2.2.4). But sipgo's Terminate leaves Timer M running, and its timer
// held the transaction — the request sent and the 2xx, parsed — for 32 s
// after every call: at 500 calls/s a sixth of the live heap, which every
// collection marks again. Timer M is therefore T1: the 2xx is handed up
// before it starts, and what it kept is let go within half a second.
func init() { sip.Timer_M = sip.T1 }
