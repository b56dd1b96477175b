package rules

import "container/list"

// lru is a map bounded to max entries; adding to a full one pushes out the
// least recently used entry.
type lru[V any] struct {
	max   int
	ll    *list.List
	items map[string]*list.Element
}

type lruEntry[V any] struct {
	key string
	val V
}

func newLRU[V any](max int) *lru[V] {
	return &lru[V]{max: max, ll: list.New(), items: map[string]*list.Element{}}
}

func (l *lru[V]) get(key string) (V, bool) {
	if el, ok := l.items[key]; ok {
		l.ll.MoveToFront(el)
		return el.Value.(*lruEntry[V]).val, true
	}
	var zero V
	return zero, false
}

// put adds or replaces key and reports whether an old entry was evicted.
func (l *lru[V]) put(key string, v V) (evicted bool) {
	if el, ok := l.items[key]; ok {
		el.Value.(*lruEntry[V]).val = v
		l.ll.MoveToFront(el)
		return false
	}
	if l.ll.Len() >= l.max {
		if old := l.ll.Back(); old != nil {
			delete(l.items, old.Value.(*lruEntry[V]).key)
			l.ll.Remove(old)
			evicted = true
		}
	}
	l.items[key] = l.ll.PushFront(&lruEntry[V]{key: key, val: v})
	return evicted
}

func (l *lru[V]) len() int { return l.ll.Len() }

// countryCode returns the ITU-T E.164 country code at the start of an
// international number's digits: 1 and 7 are one digit, a fixed set of
// two-digit codes, and every other code is three digits.
func countryCode(d string) string {
	if d == "" {
		return ""
	}
	if d[0] == '1' || d[0] == '7' {
		return d[:1]
	}
	if len(d) >= 2 && twoDigit[d[:2]] {
		return d[:2]
	}
	if len(d) >= 3 {
		return d[:3]
	}
	return d
}

var twoDigit = map[string]bool{}

func init() {
	for _, c := range []string{
		"20", "27",
		"30", "31", "32", "33", "34", "36", "39",
		"40", "41", "43", "44", "45", "46", "47", "48", "49",
		"51", "52", "53", "54", "55", "56", "57", "58",
		"60", "61", "62", "63", "64", "65", "66",
		"81", "82", "84", "86",
		"90", "91", "92", "93", "94", "95", "98",
	} {
		twoDigit[c] = true
	}
}
