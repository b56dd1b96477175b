//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly || solaris || aix)

package media

import (
	"errors"
	"net"
)

// canDrain: without poll(2) and read(2) on the descriptors, an idle
// socket cannot be emptied without blocking, so released pairs are
// closed, not kept warm.
const canDrain = false

func drainPair(_, _ *net.UDPConn) (int, error) {
	return 0, errors.New("media: cannot drain a socket on this platform")
}
