package policy

import (
	"context"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// evalState is what one evaluation uses besides the compiled policy, kept
// from one evaluation to the next (evalStates) so that a decision does not
// allocate it again: the input document, the memo of rule values, the
// cancel with its timer and the evaluation options. One evaluation at a
// time uses a state.
type evalState struct {
	doc   *inputDoc
	cache *ruleCache
	meta  map[string]any // OPA's request metadata, never written by the built-ins we allow

	// cancel ends the evaluation when timer fires or the caller's context
	// ends; once it may have been cancelled it is replaced (arm).
	cancel   topdown.Cancel
	cancelFn func()
	timer    *time.Timer
	opts     []rego.EvalOption
}

var evalStates = sync.Pool{New: func() any {
	return &evalState{doc: newInputDoc(), cache: &ruleCache{}, meta: map[string]any{}}
}}

// arm starts the deadline; stop ends it.
func (s *evalState) arm(timeout time.Duration) {
	if s.cancel != nil {
		s.timer.Reset(timeout)
		return
	}
	c := topdown.NewCancel()
	s.cancel, s.cancelFn = c, c.Cancel
	s.timer = time.AfterFunc(timeout, s.cancelFn)
	s.opts = []rego.EvalOption{
		rego.EvalParsedInput(s.doc.root.obj), // filled before each evaluation
		rego.EvalExternalCancel(c),
		rego.EvalMetrics(metrics.NoOp()),
		rego.EvalVirtualCache(s.cache),
		rego.EvalRequestMetadata(s.meta),
		rego.EvalGenerateJSON(resultTerm),
	}
}

// stop ends the deadline and the watch of the caller's context (stopCtx,
// nil if none); a cancel that may have been used is dropped.
func (s *evalState) stop(stopCtx func() bool) {
	used := !s.timer.Stop()
	if stopCtx != nil && !stopCtx() {
		used = true
	}
	if used || s.cancel.Cancelled() {
		s.cancel, s.cancelFn, s.timer, s.opts = nil, nil, nil, nil
	}
}

// watch cancels the evaluation when ctx ends; the function returned stops
// watching (context.AfterFunc), nil when ctx never ends.
func (s *evalState) watch(ctx context.Context) func() bool {
	if ctx.Done() == nil {
		return nil
	}
	return context.AfterFunc(ctx, s.cancelFn)
}

// release returns s to the pool, forgetting what the evaluation left.
func (s *evalState) release() {
	s.cache.reset()
	clear(s.meta)
	evalStates.Put(s)
}

// resultTerm is rego's result conversion (EvalGenerateJSON) that keeps the
// value as it is: the decision is read from the OPA value (parseDecision)
// instead of a map[string]any made for it.
func resultTerm(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }

// ruleCache is a topdown.VirtualCache, the memo of rule values within one
// evaluation, that keeps its memory for the next one. OPA's own cache is a
// tree of hash maps made again for each evaluation (about 20 allocations
// for the default bundle's single rule). Frames are pushed for `with`;
// Get and Put see the top frame only; a reference is found by equal terms,
// as in OPA's.
type ruleCache struct {
	frames []cacheFrame
	top    int
}

type cacheFrame struct {
	heads   map[int]int32 // Ref.Hash → index of the latest entry with it
	entries []cacheEntry
	terms   []*ast.Term // the entries' references, copied
}

type cacheEntry struct {
	ref       ast.Ref
	value     *ast.Term
	undefined bool
	next      int32 // the previous entry of the same hash, -1 if none
}

// A frame larger than this is not kept for the next evaluation.
const maxKeptEntries = 1024

func (c *ruleCache) frame() *cacheFrame {
	if len(c.frames) == 0 {
		c.frames = append(c.frames, cacheFrame{heads: map[int]int32{}})
	}
	return &c.frames[c.top]
}

func (c *ruleCache) Push() {
	c.frame()
	c.top++
	if c.top == len(c.frames) {
		c.frames = append(c.frames, cacheFrame{heads: map[int]int32{}})
	}
}

func (c *ruleCache) Pop() {
	c.frame().reset()
	if c.top > 0 {
		c.top--
	}
}

func (c *ruleCache) Get(ref ast.Ref) (*ast.Term, bool) {
	f := c.frame()
	e := f.find(ref, ref.Hash())
	switch {
	case e == nil:
		return nil, false
	case e.undefined:
		return nil, true
	}
	return e.value, false
}

func (c *ruleCache) Put(ref ast.Ref, value *ast.Term) {
	f := c.frame()
	h := ref.Hash()
	e := f.find(ref, h)
	if e == nil {
		head, ok := f.heads[h]
		if !ok {
			head = -1
		}
		n := len(f.terms)
		f.terms = append(f.terms, ref...)
		f.entries = append(f.entries, cacheEntry{ref: f.terms[n:len(f.terms):len(f.terms)], next: head})
		f.heads[h] = int32(len(f.entries) - 1)
		e = &f.entries[len(f.entries)-1]
	}
	if value != nil {
		e.value = value
	} else {
		e.undefined = true
	}
}

func (c *ruleCache) Keys() []ast.Ref {
	var keys []ast.Ref
	for _, e := range c.frame().entries {
		if e.value != nil {
			keys = append(keys, append(ast.Ref(nil), e.ref...))
		}
	}
	return keys
}

func (f *cacheFrame) find(ref ast.Ref, h int) *cacheEntry {
	i, ok := f.heads[h]
	if !ok {
		return nil
	}
	for ; i >= 0; i = f.entries[i].next {
		if e := &f.entries[i]; equalRefs(e.ref, ref) {
			return e
		}
	}
	return nil
}

func equalRefs(a, b ast.Ref) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

func (f *cacheFrame) reset() {
	if len(f.entries) > maxKeptEntries {
		*f = cacheFrame{heads: map[int]int32{}}
		return
	}
	clear(f.heads)
	clear(f.entries)
	f.entries = f.entries[:0]
	clear(f.terms)
	f.terms = f.terms[:0]
}

func (c *ruleCache) reset() {
	for i := range c.frames {
		c.frames[i].reset()
	}
	c.top = 0
}

var _ topdown.VirtualCache = (*ruleCache)(nil)
