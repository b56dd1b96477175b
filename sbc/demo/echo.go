package demo

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

const (
	// echoBufSize holds any RTP packet that fits an Ethernet MTU; larger
	// datagrams are truncated, which is fine for a demo.
	echoBufSize = 2048
	// echoMaxPPS caps what one call echoes per second so two echoing peers
	// wired to each other cannot spin a loop at full speed. A 20 ms stream is
	// 50 packets a second.
	echoMaxPPS = 500
	// echoMaxErrors ends the loop after this many read errors in a row other
	// than the socket being closed.
	echoMaxErrors = 100
)

// echoSocket is the media end of one call: every datagram it receives goes
// back to its sender, so a caller hears itself.
type echoSocket struct {
	conn      *net.UDPConn
	port      int
	closeOnce sync.Once
}

// startEcho opens the socket on ip and starts its loop on wg; the loop ends
// when close is called.
func startEcho(ip netip.Addr, wg *sync.WaitGroup, log *slog.Logger) (*echoSocket, error) {
	network := "udp4"
	if ip.Is6() {
		network = "udp6"
	}
	conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		return nil, err
	}
	e := &echoSocket{conn: conn, port: conn.LocalAddr().(*net.UDPAddr).Port}
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.loop(log)
	}()
	return e, nil
}

func (e *echoSocket) loop(log *slog.Logger) {
	buf := make([]byte, echoBufSize)
	windowStart := time.Now()
	inWindow := 0
	errorsInRow := 0
	for {
		n, from, err := e.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			errorsInRow++
			if errorsInRow >= echoMaxErrors {
				log.Warn("rtp echo giving up after read errors", "port", e.port, "error", err)
				return
			}
			continue
		}
		errorsInRow = 0
		if now := time.Now(); now.Sub(windowStart) >= time.Second {
			windowStart, inWindow = now, 0
		}
		if inWindow >= echoMaxPPS {
			continue
		}
		inWindow++
		if _, err := e.conn.WriteToUDPAddrPort(buf[:n], from); err != nil && errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

func (e *echoSocket) close() {
	if e == nil {
		return
	}
	e.closeOnce.Do(func() { _ = e.conn.Close() })
}
