package sbc

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// SafeHandler wraps a log handler for messages that may carry attacker
// bytes (sipgo logs whole unparsable messages): string values are quoted
// and cut to maxValue bytes, and each distinct message is limited to
// perSecond records a second, with a count of what was suppressed.
func SafeHandler(h slog.Handler, perSecond int, now func() time.Time) slog.Handler {
	if now == nil {
		now = time.Now
	}
	return &safeHandler{next: h, lim: &msgLimiter{per: perSecond, now: now, m: map[string]*bucket{}}}
}

const maxLogValue = 120

type safeHandler struct {
	next  slog.Handler
	lim   *msgLimiter
	attrs []slog.Attr
	group string
}

func (h *safeHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *safeHandler) Handle(ctx context.Context, r slog.Record) error {
	ok, suppressed := h.lim.allow(r.Message)
	if !ok {
		return nil
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(sanitize(a))
		return true
	})
	if suppressed > 0 {
		out.AddAttrs(slog.Int("suppressed", suppressed))
	}
	return h.next.Handle(ctx, out)
}

func (h *safeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(as))
	for i, a := range as {
		clean[i] = sanitize(a)
	}
	return &safeHandler{next: h.next.WithAttrs(clean), lim: h.lim}
}

func (h *safeHandler) WithGroup(name string) slog.Handler {
	return &safeHandler{next: h.next.WithGroup(name), lim: h.lim}
}

func sanitize(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		s := v.String()
		if len(s) > maxLogValue {
			s = s[:maxLogValue] + "…(" + strconv.Itoa(len(s)) + " bytes)"
		}
		return slog.String(a.Key, strconv.Quote(s)[1:len(strconv.Quote(s))-1])
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return sanitize(slog.String(a.Key, err.Error()))
		}
		return sanitize(slog.String(a.Key, v.String()))
	case slog.KindGroup:
		as := v.Group()
		clean := make([]any, len(as))
		for i, g := range as {
			clean[i] = sanitize(g)
		}
		return slog.Group(a.Key, clean...)
	}
	return a
}

// msgLimiter is a token bucket per message text, bounded in size: past
// maxKeys distinct messages the table is reset rather than grown.
type msgLimiter struct {
	mu  sync.Mutex
	per int
	now func() time.Time
	m   map[string]*bucket
}

type bucket struct {
	tokens     float64
	last       time.Time
	suppressed int
}

const maxLimiterKeys = 1024

func (l *msgLimiter) allow(msg string) (bool, int) {
	if l.per <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.m[msg]
	if b == nil {
		if len(l.m) >= maxLimiterKeys {
			l.m = map[string]*bucket{}
		}
		b = &bucket{tokens: float64(l.per), last: now}
		l.m[msg] = b
	}
	b.tokens = min(float64(l.per), b.tokens+now.Sub(b.last).Seconds()*float64(l.per))
	b.last = now
	if b.tokens < 1 {
		b.suppressed++
		return false, 0
	}
	b.tokens--
	s := b.suppressed
	b.suppressed = 0
	return true, s
}
