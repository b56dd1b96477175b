package ban

import (
	"container/heap"
	"time"
)

// lru is a map bounded to max keys that forgets the least recently touched
// key when full. It holds the failure counters and the known-good pairs:
// an attacker who sends from ever new addresses or user names only pushes
// out older entries, it cannot grow the table.
type lru[K comparable, V any] struct {
	max        int
	m          map[K]*lruNode[K, V]
	head, tail *lruNode[K, V] // head is the most recently touched
}

type lruNode[K comparable, V any] struct {
	key        K
	val        V
	touched    time.Time
	prev, next *lruNode[K, V]
}

func newLRU[K comparable, V any](max int) *lru[K, V] {
	return &lru[K, V]{max: max, m: make(map[K]*lruNode[K, V])}
}

func (l *lru[K, V]) len() int { return len(l.m) }

// get returns the value of k without touching it.
func (l *lru[K, V]) get(k K) (*V, bool) {
	n, ok := l.m[k]
	if !ok {
		return nil, false
	}
	return &n.val, true
}

// touch returns the value of k, created as the zero value if missing, and
// marks it most recent. evicted reports that another key was dropped to
// make room.
func (l *lru[K, V]) touch(k K, now time.Time) (v *V, evicted bool) {
	n, ok := l.m[k]
	if ok {
		l.unlink(n)
	} else {
		if len(l.m) >= l.max && l.tail != nil {
			old := l.tail
			l.unlink(old)
			delete(l.m, old.key)
			evicted = true
		}
		n = &lruNode[K, V]{key: k}
		l.m[k] = n
	}
	n.touched = now
	l.pushFront(n)
	return &n.val, evicted
}

func (l *lru[K, V]) del(k K) {
	if n, ok := l.m[k]; ok {
		l.unlink(n)
		delete(l.m, k)
	}
}

// dropIdle removes the keys not touched since before cutoff. The list is
// in touch order, so it stops at the first recent one.
func (l *lru[K, V]) dropIdle(cutoff time.Time) int {
	n := 0
	for l.tail != nil && l.tail.touched.Before(cutoff) {
		old := l.tail
		l.unlink(old)
		delete(l.m, old.key)
		n++
	}
	return n
}

func (l *lru[K, V]) pushFront(n *lruNode[K, V]) {
	n.prev, n.next = nil, l.head
	if l.head != nil {
		l.head.prev = n
	}
	l.head = n
	if l.tail == nil {
		l.tail = n
	}
}

func (l *lru[K, V]) unlink(n *lruNode[K, V]) {
	if n.prev != nil {
		n.prev.next = n.next
	} else {
		l.head = n.next
	}
	if n.next != nil {
		n.next.prev = n.prev
	} else {
		l.tail = n.prev
	}
	n.prev, n.next = nil, nil
}

// timed is a map whose entries end at a time, with a heap on that time so
// expiry and eviction (the entry ending first goes) cost O(log n). It holds
// the bans, the user locks and the escalation levels.
type timed[K comparable, V any] struct {
	m map[K]*timedItem[K, V]
	h timedHeap[K, V]
}

type timedItem[K comparable, V any] struct {
	key K
	val V
	end time.Time
	idx int
}

func newTimed[K comparable, V any]() *timed[K, V] {
	return &timed[K, V]{m: make(map[K]*timedItem[K, V])}
}

func (t *timed[K, V]) len() int { return len(t.m) }

func (t *timed[K, V]) get(k K) (V, time.Time, bool) {
	it, ok := t.m[k]
	if !ok {
		var zero V
		return zero, time.Time{}, false
	}
	return it.val, it.end, true
}

// set stores v under k until end, replacing any previous value.
func (t *timed[K, V]) set(k K, v V, end time.Time) {
	if it, ok := t.m[k]; ok {
		it.val, it.end = v, end
		heap.Fix(&t.h, it.idx)
		return
	}
	it := &timedItem[K, V]{key: k, val: v, end: end}
	t.m[k] = it
	heap.Push(&t.h, it)
}

func (t *timed[K, V]) del(k K) bool {
	it, ok := t.m[k]
	if !ok {
		return false
	}
	heap.Remove(&t.h, it.idx)
	delete(t.m, k)
	return true
}

// first returns the entry that ends first.
func (t *timed[K, V]) first() (K, V, time.Time, bool) {
	if len(t.h) == 0 {
		var k K
		var v V
		return k, v, time.Time{}, false
	}
	it := t.h[0]
	return it.key, it.val, it.end, true
}

// popEnded removes the entries that ended at or before now and calls fn
// for each.
func (t *timed[K, V]) popEnded(now time.Time, fn func(K, V)) {
	for len(t.h) > 0 && !t.h[0].end.After(now) {
		it := heap.Pop(&t.h).(*timedItem[K, V])
		delete(t.m, it.key)
		if fn != nil {
			fn(it.key, it.val)
		}
	}
}

func (t *timed[K, V]) each(fn func(K, V, time.Time)) {
	for _, it := range t.h {
		fn(it.key, it.val, it.end)
	}
}

type timedHeap[K comparable, V any] []*timedItem[K, V]

func (h timedHeap[K, V]) Len() int           { return len(h) }
func (h timedHeap[K, V]) Less(i, j int) bool { return h[i].end.Before(h[j].end) }
func (h timedHeap[K, V]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *timedHeap[K, V]) Push(x any) {
	it := x.(*timedItem[K, V])
	it.idx = len(*h)
	*h = append(*h, it)
}
func (h *timedHeap[K, V]) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	it.idx = -1
	return it
}

// window counts events in fixed windows of one key and estimates the
// count over the last sliding window by weighting the previous fixed
// window by how much of it still overlaps. Constant memory per key,
// whatever the threshold, and no burst across a window edge escapes.
type window struct {
	start     time.Time
	prev, cur uint32
}

// add counts one event at now and returns the estimate over the last size.
func (w *window) add(now time.Time, size time.Duration) float64 {
	switch el := now.Sub(w.start); {
	case w.start.IsZero() || el >= 2*size:
		w.start, w.prev, w.cur = now, 0, 0
	case el >= size:
		w.start, w.prev, w.cur = w.start.Add(size), w.cur, 0
	case el < 0: // clock stepped back: count in the current window
	}
	if w.cur < ^uint32(0) {
		w.cur++
	}
	el := max(now.Sub(w.start), 0)
	return float64(w.prev)*float64(size-el)/float64(size) + float64(w.cur)
}
