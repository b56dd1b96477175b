package siptest

import (
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
)

// Ports handed out by FreePort lie below the kernel's default ephemeral
// range (32768–60999 on Linux), where outgoing connections take their
// source ports: a port picked with ":0" is free when it is picked but
// may be some client's source port by the time the test binds it.
const (
	portLow  = 21000
	portHigh = 32000
)

// FreePort returns a port of host on which both UDP and TCP can be bound
// at the moment of the call, chosen at random below the ephemeral range.
func FreePort(host string) (int, error) {
	for range 200 {
		port := portLow + rand.IntN(portHigh-portLow)
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			continue
		}
		l, err := net.Listen("tcp", addr)
		u.Close()
		if err != nil {
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, errors.New("siptest: no free port on " + host)
}
