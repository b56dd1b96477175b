//go:build linux

package sbc

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestRawUDPReadsAndWrites: the raw listener socket gives what the net
// package gives — every datagram of a burst whole and in order with its
// source address as net would give it, datagrams up to the UDP maximum,
// empty ones — and its writes arrive, over IPv4 and a dual-stack IPv6
// socket (IPv4 peers mapped); a closed socket reads net.ErrClosed.
func TestRawUDPReadsAndWrites(t *testing.T) {
	for _, tc := range []struct{ listen, peer string }{
		{"127.0.0.1:0", "127.0.0.1:0"},
		{"[::]:0", "127.0.0.1:0"},
		{"[::1]:0", "[::1]:0"},
	} {
		t.Run(tc.listen+"<-"+tc.peer, func(t *testing.T) {
			lc, err := net.ListenPacket("udp", tc.listen)
			if err != nil {
				t.Skipf("no socket for %s on this machine: %v", tc.listen, err)
			}
			pc := newRawUDP(lc.(*net.UDPConn))
			if _, ok := pc.(*rawUDP); !ok {
				t.Fatalf("newRawUDP gave %T, want the raw socket", pc)
			}
			defer pc.Close()
			peer, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tc.peer)))
			if err != nil {
				t.Skipf("no peer socket %s: %v", tc.peer, err)
			}
			defer peer.Close()
			port := pc.LocalAddr().(*net.UDPAddr).Port
			dst := &net.UDPAddr{IP: peer.LocalAddr().(*net.UDPAddr).IP, Port: port}
			if dst.IP.IsUnspecified() {
				dst.IP = net.IPv4(127, 0, 0, 1)
			}

			// A burst larger than a batch, one datagram at the UDP
			// maximum on IPv4, and an empty one.
			var sent [][]byte
			for i := range 3*udpBatch + 5 {
				sent = append(sent, fmt.Appendf(nil, "OPTIONS sip:%d@example.com SIP/2.0\r\n\r\n", i))
			}
			if dst.IP.To4() != nil {
				sent = append(sent, bytes.Repeat([]byte("x"), 65507))
			} else {
				sent = append(sent, bytes.Repeat([]byte("y"), 60000))
			}
			sent = append(sent, []byte{})
			burst := len(sent) - 2
			for _, b := range sent[:burst] {
				if _, err := peer.WriteTo(b, dst); err != nil {
					t.Fatalf("peer send: %v", err)
				}
			}
			buf := make([]byte, 65535)
			pc.SetReadDeadline(time.Now().Add(5 * time.Second))
			for i, want := range sent {
				if i >= burst { // the large and the empty one, each alone
					if _, err := peer.WriteTo(want, dst); err != nil {
						t.Fatalf("peer send: %v", err)
					}
				}
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				if !bytes.Equal(buf[:n], want) {
					t.Fatalf("datagram %d: %d bytes %.40q, want %d bytes %.40q", i, n, buf[:n], len(want), want)
				}
				ua, ok := from.(*net.UDPAddr)
				if !ok || ua.Port != peer.LocalAddr().(*net.UDPAddr).Port || !ua.IP.Equal(peer.LocalAddr().(*net.UDPAddr).IP) {
					t.Fatalf("datagram %d from %v, want %v", i, from, peer.LocalAddr())
				}
				// Answer on the address read, as the SBC does.
				if i < 3 {
					if _, err := pc.WriteTo([]byte("SIP/2.0 200 OK\r\n\r\n"), from); err != nil {
						t.Fatalf("answer %d: %v", i, err)
					}
					peer.SetReadDeadline(time.Now().Add(5 * time.Second))
					m, src, err := peer.ReadFrom(buf)
					if err != nil || string(buf[:m]) != "SIP/2.0 200 OK\r\n\r\n" || src.(*net.UDPAddr).Port != port {
						t.Fatalf("answer %d at the peer: %q from %v, %v", i, buf[:m], src, err)
					}
				}
			}
			// A datagram larger than the caller's buffer is cut to it, as
			// a read of the net package does.
			if _, err := peer.WriteTo([]byte("0123456789"), dst); err != nil {
				t.Fatal(err)
			}
			small := make([]byte, 4)
			if n, _, err := pc.ReadFrom(small); err != nil || string(small[:n]) != "0123" {
				t.Fatalf("short buffer: %q, %v", small[:n], err)
			}
			// Nothing queued: the read waits, and a deadline ends it.
			pc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if _, _, err := pc.ReadFrom(buf); !isTimeout(err) {
				t.Fatalf("read of an empty socket past its deadline: %v, want a timeout", err)
			}
			pc.SetReadDeadline(time.Time{})
			// Datagrams a batch still holds are not handed out after
			// Close: a second socket, three datagrams, one read.
			lc2, err := net.ListenPacket("udp", tc.listen)
			if err != nil {
				t.Fatal(err)
			}
			pc2 := newRawUDP(lc2.(*net.UDPConn))
			dst2 := &net.UDPAddr{IP: dst.IP, Port: pc2.LocalAddr().(*net.UDPAddr).Port}
			for range 3 {
				if _, err := peer.WriteTo([]byte("queued"), dst2); err != nil {
					t.Fatal(err)
				}
			}
			// Loopback queues a datagram within the sender's call.
			if _, _, err := pc2.ReadFrom(buf); err != nil {
				t.Fatal(err)
			}
			if u := pc2.(*rawUDP); u.n-u.next != 2 {
				t.Fatalf("the batch holds %d datagram(s) after one read, want 2", u.n-u.next)
			}
			pc2.Close()
			if n, _, err := pc2.ReadFrom(buf); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("read after close with a batch held: %q, %v; want net.ErrClosed", buf[:n], err)
			}
			done := make(chan error, 1)
			go func() { _, _, err := pc.ReadFrom(buf); done <- err }()
			time.Sleep(20 * time.Millisecond)
			pc.Close()
			select {
			case err := <-done:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("read after close: %v, want net.ErrClosed", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("a blocked read did not end when the socket closed")
			}
			if _, err := pc.WriteTo([]byte("x"), dst); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("write after close: %v, want net.ErrClosed", err)
			}
		})
	}
}

// TestRawUDPZoneName: a link-local source's zone is its interface's name,
// as the net package gives it; an index without an interface stays a
// number.
func TestRawUDPZoneName(t *testing.T) {
	ifs, err := net.Interfaces()
	if err != nil || len(ifs) == 0 {
		t.Fatalf("no interfaces: %v", err)
	}
	for _, ifi := range ifs {
		if got := zoneName(uint32(ifi.Index)); got != ifi.Name {
			t.Errorf("zone of index %d = %q, want %q", ifi.Index, got, ifi.Name)
		}
	}
	if got := zoneName(1 << 30); got != "1073741824" {
		t.Errorf("zone of an unknown index = %q, want its number", got)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestRawUDPWriteFallbacks: destinations the raw send does not take (a
// zone, an IPv6 peer of an IPv4 socket) go through the net package, with
// its answer.
func TestRawUDPWriteFallbacks(t *testing.T) {
	lc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc := newRawUDP(lc.(*net.UDPConn))
	defer pc.Close()
	_, rawErr := pc.WriteTo([]byte("x"), &net.UDPAddr{IP: net.ParseIP("::1"), Port: 9})
	_, netErr := lc.WriteTo([]byte("x"), &net.UDPAddr{IP: net.ParseIP("::1"), Port: 9})
	if rawErr == nil || netErr == nil || rawErr.Error() != netErr.Error() {
		t.Fatalf("IPv6 destination from an IPv4 socket: %v, the net package: %v", rawErr, netErr)
	}
}

// BenchmarkRawUDPRoundTrip and BenchmarkNetUDPRoundTrip: one datagram
// out and back over loopback, the raw socket against the net package's.
func BenchmarkRawUDPRoundTrip(b *testing.B) { benchUDPRoundTrip(b, true) }
func BenchmarkNetUDPRoundTrip(b *testing.B) { benchUDPRoundTrip(b, false) }

func benchUDPRoundTrip(b *testing.B, raw bool) {
	lc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	pc := net.PacketConn(lc)
	if raw {
		pc = newRawUDP(lc.(*net.UDPConn))
	}
	defer pc.Close()
	peer, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer peer.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := peer.ReadFrom(buf)
			if err != nil {
				return
			}
			peer.WriteTo(buf[:n], from)
		}
	}()
	msg := bytes.Repeat([]byte("m"), 600)
	buf := make([]byte, 65535)
	dst := peer.LocalAddr()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := pc.WriteTo(msg, dst); err != nil {
			b.Fatal(err)
		}
		if _, _, err := pc.ReadFrom(buf); err != nil {
			b.Fatal(err)
		}
	}
}
