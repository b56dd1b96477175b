package hep

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

func testMessage(i int) Message {
	return Message{
		Time:          time.Unix(1700000000+int64(i), int64(i)*1000).UTC(),
		Src:           ap(fmt.Sprintf("192.0.2.1:%d", 5060+i)),
		Dst:           ap("192.0.2.2:5060"),
		Transport:     "udp",
		Payload:       fmt.Appendf(nil, "OPTIONS sip:%d@example.com SIP/2.0\r\n\r\n", i),
		CorrelationID: fmt.Sprintf("call-%d", i),
	}
}

// startRun runs e until the returned stop is called; stop waits for Run.
func startRun(t *testing.T, e *Exporter) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Error("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func checkDecoded(t *testing.T, pkt []byte, i int, agent uint32, pw string) {
	t.Helper()
	d, err := Decode(pkt)
	if err != nil {
		t.Fatalf("packet %d: %v", i, err)
	}
	sameMessage(t, d.Message, testMessage(i))
	if d.AgentID != agent || d.Password != pw {
		t.Fatalf("packet %d: agent %d pw %q", i, d.AgentID, d.Password)
	}
}

func TestExporterUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	e, err := NewExporter(Options{Addr: pc.LocalAddr().String(), AgentID: 2001, Password: "hush"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	startRun(t, e)

	const n = 20
	for i := range n {
		e.Send(testMessage(i))
	}
	buf := make([]byte, 70000)
	for i := range n {
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("read %d: %v (stats %+v)", i, err, e.Stats())
		}
		checkDecoded(t, buf[:k], i, 2001, "hush")
	}
	waitStats(t, e, func(s Stats) bool { return s.Sent == n })
	if s := e.Stats(); s.Dropped != 0 || s.Errors != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func waitStats(t *testing.T, e *Exporter, ok func(Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok(e.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", e.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readPacket reads one HEP3 packet from a stream.
func readPacket(r io.Reader) ([]byte, error) {
	hdr := make([]byte, headerLen)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, err
	}
	n, err := PacketLen(hdr)
	if err != nil {
		return nil, err
	}
	pkt := make([]byte, n)
	copy(pkt, hdr)
	_, err = io.ReadFull(r, pkt[headerLen:])
	return pkt, err
}

func TestExporterTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e, err := NewExporter(Options{Addr: ln.Addr().String(), Transport: "tcp", AgentID: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	const n = 200
	for i := range n { // queued before connecting: sent as a batch
		e.Send(testMessage(i))
	}
	startRun(t, e)
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	for i := range n {
		pkt, err := readPacket(r)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		checkDecoded(t, pkt, i, 7, "")
	}
	waitStats(t, e, func(s Stats) bool { return s.Sent == n })
}

func TestExporterTCPReconnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e, err := NewExporter(Options{Addr: ln.Addr().String(), Transport: "tcp"})
	if err != nil {
		t.Fatal(err)
	}
	e.minBackoff, e.maxBackoff = 10*time.Millisecond, 50*time.Millisecond
	defer e.Close()
	startRun(t, e)

	e.Send(testMessage(0))
	c1, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c1.SetReadDeadline(time.Now().Add(5 * time.Second))
	if pkt, err := readPacket(c1); err != nil {
		t.Fatal(err)
	} else {
		checkDecoded(t, pkt, 0, 0, "")
	}
	c1.Close() // collector goes away; the exporter must dial again

	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	// Writes into the dead connection may still succeed once; keep sending
	// until a new connection delivers a packet.
	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var c2 net.Conn
	for c2 == nil {
		select {
		case c2 = <-accepted:
		case <-tick.C:
			e.Send(testMessage(1))
		case <-deadline:
			t.Fatalf("no reconnect; stats %+v", e.Stats())
		}
	}
	defer c2.Close()
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	pkt, err := readPacket(c2)
	if err != nil {
		t.Fatal(err)
	}
	checkDecoded(t, pkt, 1, 0, "")
}

func TestExporterQueueFull(t *testing.T) {
	e, err := NewExporter(Options{Addr: "127.0.0.1:9", Queue: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// Run is not started: nothing drains the queue.
	done := make(chan struct{})
	go func() {
		for i := range 100 {
			e.Send(testMessage(i))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Send blocked on a full queue")
	}
	if s := e.Stats(); s.Dropped != 97 || s.Sent != 0 {
		t.Fatalf("stats %+v, want 97 dropped", s)
	}
}

func TestExporterCopiesPayload(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	e, err := NewExporter(Options{Addr: pc.LocalAddr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	m := testMessage(0)
	orig := string(m.Payload)
	e.Send(m)
	for i := range m.Payload { // caller reuses its buffer
		m.Payload[i] = 'Z'
	}
	startRun(t, e)
	buf := make([]byte, 70000)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	k, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Decode(buf[:k])
	if err != nil {
		t.Fatal(err)
	}
	if string(d.Payload) != orig {
		t.Fatalf("payload %q, want %q", d.Payload, orig)
	}
}

func TestExporterEncodeErrorCounted(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	e, err := NewExporter(Options{Addr: pc.LocalAddr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	startRun(t, e)
	bad := testMessage(0)
	bad.Payload = make([]byte, 70000)
	e.Send(bad)
	e.Send(testMessage(1))
	waitStats(t, e, func(s Stats) bool { return s.Errors == 1 && s.Sent == 1 })
}

func TestExporterRunStops(t *testing.T) {
	// A TCP collector that refuses: Run sits in connect/backoff and must
	// still return promptly on cancel.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, tr := range []string{"udp", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			e, err := NewExporter(Options{Addr: addr, Transport: tr})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			stop := startRun(t, e)
			e.Send(testMessage(0))
			time.Sleep(150 * time.Millisecond)
			start := time.Now()
			stop()
			if d := time.Since(start); d > time.Second {
				t.Fatalf("Run took %v to stop", d)
			}
		})
	}
}

func TestExporterClose(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	e, err := NewExporter(Options{Addr: pc.LocalAddr().String()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { e.Run(context.Background()); close(done) }()
	e.Send(testMessage(0))
	waitStats(t, e, func(s Stats) bool { return s.Sent == 1 })
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	e.Send(testMessage(1))
	if s := e.Stats(); s.Dropped != 1 {
		t.Fatalf("stats %+v", s)
	}
	if err := e.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
}

func TestNewExporterOptions(t *testing.T) {
	for _, o := range []Options{
		{Addr: "collector.example:9060"},
		{Addr: "127.0.0.1"},
		{Addr: "127.0.0.1:0"},
		{Addr: "0.0.0.0:9060"},
		{Addr: "127.0.0.1:9060", Transport: "sctp"},
		{Addr: "127.0.0.1:9060", Queue: -1},
	} {
		if _, err := NewExporter(o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
	e, err := NewExporter(Options{Addr: "[::1]:9060"})
	if err != nil {
		t.Fatal(err)
	}
	if cap(e.queue) != DefaultQueue || e.network != "udp" {
		t.Fatalf("defaults: queue %d network %s", cap(e.queue), e.network)
	}
}
