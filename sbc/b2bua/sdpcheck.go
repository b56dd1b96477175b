package b2bua

import (
	"errors"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/media/sdp"
)

// SDPStats counts what the inbound SDP check (sdp.Check) did to bodies
// from outside legs.
type SDPStats struct {
	// Refused bodies: the request got 488, or, for an ACK or a response,
	// the body was not relayed.
	Refused atomic.Int64
	// Sanitised bodies were relayed with lines removed; Lines counts the
	// lines.
	Sanitised, Lines atomic.Int64
}

// SDPStats returns the counters of the inbound SDP check.
func (b *B2BUA) SDPStats() *SDPStats { return &b.sdpStats }

// fromOutside reports whether a body crossing toward leg to comes from a
// peer outside: the other leg's side, or, for a message of no call, the
// side opposite to's. With a call, c.mu is held.
func fromOutside(c *call, to *leg) bool {
	if c != nil {
		if src := c.other(to); src != nil {
			return src.side == sbc.External
		}
	}
	return to.side == sbc.Internal
}

// checkInbound runs the inbound SDP check on a body from outside: the body
// to forward (lines may have been removed), or the refusal.
func (b *B2BUA) checkInbound(body []byte) ([]byte, error) {
	out, dropped, err := sdp.Check(body)
	if err != nil {
		b.sdpStats.Refused.Add(1)
		return nil, err
	}
	if len(dropped) > 0 {
		b.sdpStats.Sanitised.Add(1)
		b.sdpStats.Lines.Add(int64(len(dropped)))
		b.log.Debug("SDP lines dropped", "lines", len(dropped), "first_line", dropped[0].Line, "first_reason", dropped[0].Reason)
	}
	return out, nil
}

// sdpWarning is the Warning header of a 488 for a body that bodyFor
// refused: what the inbound check found (its own words and a line number,
// never the body's bytes), or that the media relay could not take it.
func sdpWarning(l *leg, err error) sip.Header {
	return sip.NewHeader("Warning", "399 "+warnAgent(l)+` "`+sdpWhy(err)+`"`)
}

// sdpWhy names a refused body for the decision log and the Warning.
func sdpWhy(err error) string {
	var ce *sdp.CheckError
	switch {
	case errors.As(err, &ce):
		return ce.Warning()
	case errors.Is(err, sdp.ErrPlain):
		return "Encrypted media required (SRTP: SDES or DTLS)"
	case errors.Is(err, sdp.ErrMalformed):
		return "SDP not readable by the media relay"
	case errors.Is(err, sdp.ErrTooLarge):
		return "SDP too large for the media relay"
	}
	return "no media relay for this offer"
}

// notAcceptable is the 488 for an INVITE whose offer bodyFor refused.
func notAcceptable(req *sip.Request, l *leg, err error) *sip.Response {
	res := localResponse(req, 488, "Not Acceptable Here", l)
	res.AppendHeader(sdpWarning(l, err))
	return res
}
