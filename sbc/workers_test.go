package sbc

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// goid is the running goroutine's number (from its stack header).
func goid() uint64 {
	var b [64]byte
	s := b[:runtime.Stack(b[:], false)]
	s = bytes.TrimPrefix(s, []byte("goroutine "))
	n, _ := strconv.ParseUint(string(s[:bytes.IndexByte(s, ' ')]), 10, 64)
	return n
}

// Requests handled one after the other run on one reused goroutine;
// requests at once get a goroutine each; idle workers end.
func TestWorkersReuseAndEnd(t *testing.T) {
	var mu sync.Mutex
	seen := map[uint64]int{}
	done := make(chan struct{}, 16)
	hold := make(chan struct{})
	w := &workers{jobs: make(chan job), idle: 200 * time.Millisecond, do: func(j job) {
		mu.Lock()
		seen[goid()]++
		mu.Unlock()
		if j.tx != nil {
			<-hold // a request that takes its time
		}
		done <- struct{}{}
	}}
	before := runtime.NumGoroutine()
	for range 5 {
		w.run(nil, nil)
		<-done
		time.Sleep(time.Millisecond) // the worker is back waiting
	}
	mu.Lock()
	if len(seen) != 1 {
		t.Errorf("5 requests one after the other ran on %d goroutines, want 1", len(seen))
	}
	mu.Unlock()
	// Three slow requests at once: none waits for another.
	for range 3 {
		w.run(nil, &edgeTx{})
	}
	time.Sleep(20 * time.Millisecond)
	mu.Lock()
	if n := len(seen); n != 3 {
		t.Errorf("3 requests at once ran on %d goroutines in all, want 3 (the idle one and 2 new)", n)
	}
	mu.Unlock()
	close(hold)
	for range 3 {
		<-done
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("goroutines %d after the idle time, %d before: idle workers did not end", n, before)
	}
}
