package sbc

import (
	"context"
	"errors"

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
	tx, err := c.TransactionRequest(ctx, req, NoBuild)
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
