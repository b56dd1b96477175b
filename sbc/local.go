package sbc

import (
	"context"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Methods the SBC accepts; used for Allow headers.
var AllowedMethods = []string{"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "UPDATE", "PRACK", "INFO", "REFER", "NOTIFY", "MESSAGE"}

// Local answers requests addressed to the SBC itself: an out-of-dialog
// OPTIONS whose Request-URI has no user part (a keepalive or health probe).
type Local struct{}

var _ Handler = Local{}

// Name implements Handler.
func (Local) Name() string { return "local" }

// ServeSIP implements Handler.
func (Local) ServeSIP(_ context.Context, w ResponseWriter, r *Request) (Verdict, error) {
	if r.Method != sip.OPTIONS || r.Recipient.User != "" {
		return Continue, nil
	}
	if to := r.To(); to != nil && to.Params.Has("tag") {
		return Continue, nil
	}
	err := Respond(w, r, 200, "OK",
		sip.NewHeader("Allow", strings.Join(AllowedMethods, ", ")),
		sip.NewHeader("Accept", "application/sdp"),
		sip.NewHeader("Supported", "100rel, replaces, timer"),
	)
	return Answered, err
}
