package rules

// Stats are counters since New, and gauges.
type Stats struct {
	Checks, Allowed, Rejected, Blocked uint64 // Blocked: rejected because the account is blocked
	Teardowns, Shadowed                uint64 // verdicts with MaxDuration; shadow rules that fired
	Warnings, Criticals                uint64
	AccountBlocks, SourceBans          uint64
	Evicted                            uint64 // counters or calls pushed out by the bounds
	UnknownEnded                       uint64
	StoreErrors                        uint64
	SharedErrors                       uint64 // failed calls to Options.Shared
	Unavailable                        uint64 // rejected 503: Shared failed, SharedFailClosed
	WebhookSent, WebhookFailed         uint64
	WebhookDropped                     uint64
	InProgress, BlockedAccounts        int // gauges
}

// Stats returns the counters and gauges.
func (e *Engine) Stats() Stats {
	now := e.opt.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.stats
	s.InProgress = len(e.calls)
	for _, b := range e.blocks {
		if now.Before(b.Until) {
			s.BlockedAccounts++
		}
	}
	return s
}
