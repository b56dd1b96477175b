package topology

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Action is what was done to an item of a message on its way out.
type Action uint8

const (
	// Rewritten: a sanitiser replaced the item (reason phrase, display
	// name, URI user, RTCP CNAME...).
	Rewritten Action = iota
	// Removed: a sanitiser dropped the item (a header, a parameter, an
	// SDP attribute, an RTCP item).
	Removed
	// GuardStripped: the guard found the item naming the inside and sent
	// the message without it.
	GuardStripped
	// GuardReplaced: the guard found the item in a part it cannot remove
	// and sent a clean substitute (500 for a final response).
	GuardReplaced
	// GuardBlocked: the guard did not send the message (a request or a
	// provisional response it could not clean).
	GuardBlocked
	// GuardLogged: the guard found the item and sent the message anyway
	// (guard: log).
	GuardLogged
	nActions
)

var actionNames = [nActions]string{"rewritten", "removed", "guard_stripped", "guard_replaced", "guard_blocked", "guard_logged"}

func (a Action) String() string {
	if a < nActions {
		return actionNames[a]
	}
	return "unknown"
}

// Items of the leak report: the label values of
// sipwall_topology_leaks_total{item}. The set is fixed; Note maps
// anything else to ItemOther, so no label comes from the wire.
const (
	ItemReasonPhrase = "reason-phrase"
	ItemStartLine    = "request-uri"
	ItemDisplayName  = "display-name"
	ItemURIUser      = "uri-user"
	ItemURIParam     = "uri-param"
	ItemURIHeader    = "uri-header"
	ItemHeaderParam  = "header-param"
	ItemHeaderOther  = "header-other"
	ItemSipfrag      = "sipfrag"
	ItemBody         = "body"
	ItemSDPOther     = "sdp:other"
	ItemOther        = "other"
)

// reportedHeaders are the header names that are items of their own
// (lower-case name to label); any other header is ItemHeaderOther.
var reportedHeaders = map[string]string{}

// sdpItems are the SDP line kinds and attribute names that are items of
// their own ("sdp:tool"); other attributes are ItemSDPOther.
var sdpItems = map[string]bool{}

// RTCP items (sbc/media reports them with these names).
var rtcpItems = []string{
	"rtcp:cname", "rtcp:name", "rtcp:email", "rtcp:phone", "rtcp:loc", "rtcp:tool",
	"rtcp:note", "rtcp:priv", "rtcp:sdes-other", "rtcp:bye-reason", "rtcp:app",
	"rtcp:other", "rtcp:malformed", ItemRTCPPacket,
}

// ItemRTCPPacket is an RTCP packet the guard found naming the inside.
const ItemRTCPPacket = "rtcp:packet"

func init() {
	for _, h := range []string{
		"Via", "From", "To", "Call-ID", "CSeq", "Contact", "Route", "Record-Route", "Max-Forwards",
		"Content-Type", "Content-Length", "Server", "User-Agent", "Reason", "Warning", "Subject",
		"Organization", "In-Reply-To", "Refer-To", "Referred-By", "Replaces", "P-Asserted-Identity",
		"Diversion", "History-Info", "Call-Info", "Alert-Info", "Error-Info", "Event",
		"Subscription-State", "Allow", "Allow-Events", "Supported", "Require", "Accept", "Date",
		"Priority", "Session-Expires", "Min-SE", "Expires", "Retry-After", "Info-Package",
		"Recv-Info", "Content-Disposition", "WWW-Authenticate", "Proxy-Authenticate", "RSeq", "RAck",
	} {
		reportedHeaders[lower(h)] = h
	}
	for _, a := range append(append([]string{}, DefaultSDPAttributes...),
		"tool", "ssrc", "ssrc-group", "cat", "keywds", "charset", "sdplang", "lang", "orient",
		"type", "label", "x-*", "v", "o", "s", "i", "u", "e", "p", "c", "b", "t", "r", "z", "k", "m") {
		sdpItems["sdp:"+lower(a)] = true
	}
}

// HeaderItem is the report item of a header name.
func HeaderItem(name string) string {
	if h, ok := reportedHeaders[lower(name)]; ok {
		return h
	}
	return ItemHeaderOther
}

// SDPItem is the report item of an SDP attribute name or line letter.
func SDPItem(name string) string {
	n := "sdp:" + lower(name)
	if sdpItems[n] {
		return n
	}
	if len(name) > 2 && (name[0] == 'x' || name[0] == 'X') && name[1] == '-' {
		return "sdp:x-*"
	}
	return ItemSDPOther
}

// Items lists every item label, in a stable order.
func Items() []string {
	out := []string{ItemReasonPhrase, ItemStartLine, ItemDisplayName, ItemURIUser, ItemURIParam,
		ItemURIHeader, ItemHeaderParam, ItemHeaderOther, ItemSipfrag, ItemBody, ItemSDPOther, ItemOther}
	var hs, as []string
	for _, h := range reportedHeaders {
		hs = append(hs, h)
	}
	for a := range sdpItems {
		as = append(as, a)
	}
	slices.Sort(hs)
	slices.Sort(as)
	out = append(append(out, hs...), as...)
	return append(out, rtcpItems...)
}

// Report is the leak report: it counts what the sanitisers rewrote or
// removed and what the guard found, by item and action, and logs it at
// most once a minute per item (with the number of events since the last
// line). Safe for concurrent use; a nil *Report does nothing.
type Report struct {
	log    *slog.Logger
	now    func() time.Time
	every  time.Duration
	counts map[string]*[nActions]atomic.Int64 // read-only after NewReport

	mu   sync.Mutex
	last map[string]time.Time // last line per item
	held map[string]int       // events since that line
}

// ReportInterval is the least time between two log lines of one item.
const ReportInterval = time.Minute

// NewReport builds a Report logging to log (component=topology); now is
// its clock (nil: time.Now).
func NewReport(log *slog.Logger, now func() time.Time) *Report {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	r := &Report{log: log.With("component", "topology"), now: now, every: ReportInterval,
		counts: map[string]*[nActions]atomic.Int64{}, last: map[string]time.Time{}, held: map[string]int{}}
	for _, it := range Items() {
		r.counts[it] = new([nActions]atomic.Int64)
	}
	return r
}

// Note records one event. detail says what was changed or found (the
// value as it came, or a name); it is quoted and cut to 80 bytes in the
// log, never a label.
func (r *Report) Note(item string, a Action, detail string) {
	if r == nil || a >= nActions {
		return
	}
	c, ok := r.counts[item]
	if !ok {
		item = ItemOther
		c = r.counts[item]
	}
	c[a].Add(1)
	now := r.now()
	r.mu.Lock()
	last, seen := r.last[item]
	if seen && now.Sub(last) < r.every {
		r.held[item]++
		r.mu.Unlock()
		return
	}
	held := r.held[item]
	r.last[item], r.held[item] = now, 0
	r.mu.Unlock()
	level := slog.LevelInfo
	msg := "leak report: sanitised toward the outside"
	if a >= GuardStripped {
		level, msg = slog.LevelError, "leak report: the guard found the inside in a message to the outside"
	}
	r.log.Log(context.Background(), level, msg, "item", item, "action", a.String(), "detail", quoteCut(detail, 80), "since_last_line", held)
}

// RTCP records what the media relay's RTCP rewrite changed (its
// Config.OnRTCP): the CNAME rewritten, anything else removed.
func (r *Report) RTCP(item string, n int) {
	a := Removed
	if item == "rtcp:cname" {
		a = Rewritten
	}
	for range min(n, 64) {
		r.Note(item, a, "")
	}
}

// Counts returns the counters: item, action, value (non-zero only).
func (r *Report) Counts(f func(item string, a Action, n int64)) {
	if r == nil {
		return
	}
	for item, c := range r.counts {
		for a := range nActions {
			if n := c[a].Load(); n > 0 {
				f(item, a, n)
			}
		}
	}
}

// Count is one counter (tests).
func (r *Report) Count(item string, a Action) int64 {
	if r == nil || a >= nActions {
		return 0
	}
	if c, ok := r.counts[item]; ok {
		return c[a].Load()
	}
	return 0
}

// quoteCut quotes s for a log line, cut to n bytes.
func quoteCut(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "..."
	}
	return strconv.Quote(s)
}
