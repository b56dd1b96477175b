//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly || solaris || aix

package media

import (
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// canDrain: released pairs may go warm.
const canDrain = true

// drainPair readies the idle sockets of a warm pair for a new stream: it
// clears their deadlines (set in the past to stop the readers) and
// discards the datagrams queued on them, without blocking. One poll(2)
// tells which socket holds any (usually none); those are read until
// EAGAIN, drainMax datagrams at most. A deadline in the past cannot do
// that through the net package: a read past its deadline fails before
// trying the socket.
func drainPair(a, b *net.UDPConn) (n int, err error) {
	if err := a.SetDeadline(time.Time{}); err != nil {
		return 0, err
	}
	if err := b.SetDeadline(time.Time{}); err != nil {
		return 0, err
	}
	ra, err := a.SyscallConn()
	if err != nil {
		return 0, err
	}
	rb, err := b.SyscallConn()
	if err != nil {
		return 0, err
	}
	var fds [2]unix.PollFd
	var pollErr, innerErr error
	err = ra.Control(func(fa uintptr) {
		innerErr = rb.Control(func(fb uintptr) {
			fds[0] = unix.PollFd{Fd: int32(fa), Events: unix.POLLIN}
			fds[1] = unix.PollFd{Fd: int32(fb), Events: unix.POLLIN}
			for {
				if _, pollErr = unix.Poll(fds[:], 0); pollErr != unix.EINTR {
					break
				}
			}
		})
	})
	for _, e := range [...]error{err, innerErr, pollErr} {
		if e != nil {
			return 0, e
		}
	}
	for i, rc := range [2]syscall.RawConn{ra, rb} {
		if fds[i].Revents == 0 {
			continue
		}
		var readErr error
		err := rc.Read(func(fd uintptr) bool {
			var buf [1]byte // a datagram is consumed whole, whatever the buffer
			for k := 0; k < drainMax; {
				_, e := unix.Read(int(fd), buf[:])
				switch e {
				case nil:
					k++
					n++
				case unix.EINTR:
				case unix.EAGAIN:
					return true
				default:
					readErr = e
					return true
				}
			}
			return true
		})
		if err == nil {
			err = readErr
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
