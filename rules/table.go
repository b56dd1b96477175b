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
