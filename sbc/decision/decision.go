// Package decision keeps a bounded log of the SBC's recent decisions about
// requests, sources and accounts — which layer decided, by which check or
// rule, when — so that "why was this call or phone blocked?" has an answer
// searchable by address, user or number. See README.md.
package decision

import (
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// MaxText bounds every text field of an entry (wire text is cut to it).
const MaxText = 80

// Coalesce is the window within which an entry identical to the newest
// one of its kind (same layer, verdict, reason, source, user, destination,
// method and status) only raises that entry's Count: a flood from a banned
// source is one line with a count, not ten thousand lines.
const Coalesce = 10 * time.Second

// Entry is one decision.
type Entry struct {
	// Time is when it was first taken, Last when it was last repeated
	// (Count times in all, within Coalesce of each other).
	Time  time.Time `json:"time"`
	Last  time.Time `json:"last"`
	Count int       `json:"count"`
	// Layer is the chain layer or component that decided: ban, sanity,
	// auth, policy, rules, registrar, b2bua, prefilter, admin.
	Layer string `json:"layer"`
	// Verdict is rejected, dropped, forwarded, answered, or for events
	// outside the chain banned, unbanned, locked, blocked, unblocked.
	Verdict string `json:"verdict"`
	// Status is the SIP status sent, 0 when none.
	Status int `json:"status,omitempty"`
	// Why names the check or rule (auth's failure reason, the policy or
	// fraud rule, the sanity rule, the ban's reason).
	Why string `json:"why,omitempty"`
	// Method of the request, empty for events.
	Method string `json:"method,omitempty"`
	// Source is the transport peer; Prefix the banned network of a ban.
	Source netip.Addr   `json:"source,omitzero"`
	Prefix netip.Prefix `json:"prefix,omitzero"`
	// User is the authenticated identity, else the From user; To the
	// Request-URI user (the number called, the AoR registered).
	User string `json:"user,omitempty"`
	To   string `json:"to,omitempty"`
	// Detail is free text: a ban's evidence, a lock's evidence.
	Detail string `json:"detail,omitempty"`
}

type key struct {
	layer, verdict, why, method, user, to, detail string
	status                                        int
	source                                        netip.Addr
	prefix                                        netip.Prefix
}

func (e *Entry) key() key {
	return key{e.Layer, e.Verdict, e.Why, e.Method, e.User, e.To, e.Detail, e.Status, e.Source, e.Prefix}
}

// Log is a ring of the most recent entries, safe for concurrent use.
type Log struct {
	mu   sync.Mutex
	ring []Entry
	next int  // where the next entry goes
	full bool // the ring has wrapped
	// last maps an entry's key to its slot, for coalescing.
	last  map[key]int
	total uint64
	now   func() time.Time
}

// New returns a log of size entries (at least 1).
func New(size int) *Log {
	return NewWithClock(size, time.Now)
}

// NewWithClock is New with a clock (tests).
func NewWithClock(size int, now func() time.Time) *Log {
	size = max(size, 1)
	return &Log{ring: make([]Entry, size), last: make(map[key]int, size), now: now}
}

// Size is the capacity.
func (l *Log) Size() int { return len(l.ring) }

// Total is the number of decisions added since start (coalesced ones
// included).
func (l *Log) Total() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// Add records e, stamped now unless e.Time is set. Text fields are cut to
// MaxText and copied (they must not hold on to a message's buffer); non
// printable characters become '?'.
func (l *Log) Add(e Entry) {
	if l == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	e.Last, e.Count = e.Time, 1
	e.Layer, e.Verdict, e.Why = clean(e.Layer), clean(e.Verdict), clean(e.Why)
	e.Method, e.User, e.To, e.Detail = clean(e.Method), clean(e.User), clean(e.To), clean(e.Detail)
	k := e.key()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total++
	if i, ok := l.last[k]; ok {
		old := &l.ring[i]
		if old.key() == k && e.Time.Sub(old.Last) < Coalesce && !e.Time.Before(old.Last) {
			old.Last = e.Time
			old.Count++
			return
		}
	}
	if l.full {
		// The slot's old entry leaves the coalescing index.
		old := l.ring[l.next].key()
		if i, found := l.last[old]; found && i == l.next {
			delete(l.last, old)
		}
	}
	l.ring[l.next] = e
	l.last[k] = l.next
	l.next++
	if l.next == len(l.ring) {
		l.next, l.full = 0, true
	}
}

// clean cuts s to MaxText bytes (on a rune boundary), replaces control and
// invalid bytes, and copies it.
func clean(s string) string {
	if s == "" {
		return ""
	}
	if len(s) > MaxText {
		// Cut at a rune boundary; invalid bytes are replaced below.
		i := MaxText
		for i > 0 && !utf8.RuneStart(s[i]) {
			i--
		}
		s = s[:i]
	}
	printable := utf8.ValidString(s)
	for i := 0; printable && i < len(s); i++ {
		printable = s[i] >= 0x20 && s[i] != 0x7f && s[i] < 0x80
	}
	if printable {
		// A copy, so that the entry never keeps a message's buffer alive.
		return strings.Clone(s)
	}
	return strings.Clone(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError || bidi(r) {
			return '?'
		}
		return r
	}, s))
}

// bidi reports the directional formatting characters, which could make a
// row of the console read differently from what it holds.
func bidi(r rune) bool {
	return (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200e || r == 0x200f || r == 0x061c
}

// Query selects entries. Text is an IP address (entries from it, and bans
// covering it), a CIDR prefix (entries from inside it, bans overlapping
// it), or other text, matched without regard to case as a part of the
// user, the destination or the rule/reason. Empty Text matches all.
type Query struct {
	Text  string
	Limit int // at most this many, newest first (default 200)
}

// Search returns the entries matching q, newest first.
func (l *Log) Search(q Query) []Entry {
	if q.Limit <= 0 {
		q.Limit = 200
	}
	match := matcher(strings.TrimSpace(q.Text))
	// The ring is copied a chunk at a time and matched outside the lock,
	// so that a search of a large log never holds up Add (which runs on
	// the requests' path). Entries added meanwhile are not seen; an entry
	// overwritten between two chunks may be skipped or seen twice, which
	// a search of the recent past can afford.
	var out []Entry
	buf := make([]Entry, 0, searchChunk)
	seen, start, total := 0, 0, -1
	for len(out) < q.Limit {
		buf = buf[:0]
		l.mu.Lock()
		if total < 0 {
			// The newest entry when the search began, and how many
			// there were.
			start, total = l.next, l.next
			if l.full {
				total = len(l.ring)
			}
		}
		for i := seen + 1; i <= total && len(buf) < searchChunk; i++ {
			buf = append(buf, l.ring[(start-i+len(l.ring))%len(l.ring)])
		}
		l.mu.Unlock()
		if len(buf) == 0 {
			break
		}
		seen += len(buf)
		for i := range buf {
			if match(&buf[i]) {
				out = append(out, buf[i])
				if len(out) == q.Limit {
					break
				}
			}
		}
	}
	return out
}

// searchChunk is how many entries Search copies per lock.
const searchChunk = 2048

func matcher(text string) func(*Entry) bool {
	if text == "" {
		return func(*Entry) bool { return true }
	}
	if a, err := netip.ParseAddr(text); err == nil {
		a = a.Unmap().WithZone("")
		return func(e *Entry) bool {
			return e.Source == a || (e.Prefix.IsValid() && e.Prefix.Contains(a))
		}
	}
	if p, err := netip.ParsePrefix(text); err == nil {
		p = p.Masked()
		return func(e *Entry) bool {
			return (e.Source.IsValid() && p.Contains(e.Source)) || (e.Prefix.IsValid() && e.Prefix.Overlaps(p))
		}
	}
	low := strings.ToLower(text)
	return func(e *Entry) bool {
		return containsLower(e.User, low) || containsLower(e.To, low) || containsLower(e.Why, low)
	}
}

func containsLower(s, low string) bool {
	return len(s) >= len(low) && strings.Contains(strings.ToLower(s), low)
}
