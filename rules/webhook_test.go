package rules

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor polls cond for up to 5 s of real time: the webhook talks to a
// real loopback server, so this waits for I/O, not for the rule clock.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func webhookEngine(t *testing.T, url string, timeout time.Duration, queue int) (*harness, context.CancelFunc, *sync.WaitGroup) {
	t.Helper()
	clk := newClock(monday10)
	e, err := New(Options{
		Rules:          mustParse(t, ruleFile("- {name: r, measure: calls_per_minute, critical: 1, action: reject}")),
		Now:            clk.now,
		Webhook:        url,
		WebhookTimeout: timeout,
		QueueSize:      queue,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.backoff = time.Millisecond
	h := &harness{e: e, clk: clk}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); e.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return h, cancel, &wg
}

func TestWebhookRetry(t *testing.T) {
	var hits atomic.Int32
	var got Alert
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			w.WriteHeader(500)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("content type %q", r.Header.Get("Content-Type"))
		}
		json.NewDecoder(r.Body).Decode(&got)
	}))
	defer srv.Close()
	h, _, _ := webhookEngine(t, srv.URL, time.Second, 10)
	h.check()
	waitFor(t, "delivery", func() bool { return h.e.Stats().WebhookSent == 1 })
	if n := hits.Load(); n != 2 {
		t.Fatalf("%d attempts, want 2", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if got.Rule != "default/r" || got.Level != "critical" || got.Call.User != "alice" || got.Call.Source != src1 {
		t.Fatalf("posted %+v", got)
	}
}

func TestWebhookTimeout(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.Copy(io.Discard, r.Body) // the server notices the client's hang-up only once the body is read
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer srv.Close()
	h, _, _ := webhookEngine(t, srv.URL, 20*time.Millisecond, 10)
	start := time.Now()
	h.check()
	waitFor(t, "failure", func() bool { return h.e.Stats().WebhookFailed == 1 })
	if n := hits.Load(); n != 1+webhookRetries {
		t.Fatalf("%d attempts, want %d", n, 1+webhookRetries)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("timeout not applied: %v", d)
	}
}

func TestWebhookQueueFull(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	h, cancel, wg := webhookEngine(t, srv.URL, 5*time.Second, 2)
	for i := 0; i < 10; i++ {
		h.check()
	}
	// One in flight, two queued, the rest dropped.
	waitFor(t, "drops", func() bool { return h.e.Stats().WebhookDropped >= 7 })
	cancel()
	wg.Wait()
	if s := h.e.Stats(); s.WebhookDropped+2+1 < 10 {
		t.Fatalf("stats %+v", s)
	}
}

func TestWebhookURL(t *testing.T) {
	for _, u := range []string{"ftp://x/", "not a url", "http://"} {
		if _, err := New(Options{Webhook: u}); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}
