//go:build linux

package media

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sipwall/sipwall/sbc/procs"
)

// The readers of the relay's sockets on Linux: a few workers, each with an
// epoll instance of its own, instead of a goroutine per socket. A stream's
// four sockets go to one worker (round robin over streams); the worker
// reads every ready socket with recvmmsg(2), up to pollBatch datagrams a
// call, runs relayOne on each and sends with sendto(2). Memory per stream
// is then its sockets and a few small structures: the buffers are the
// workers'. The workers exist while streams do: made at the first, ended
// with the last, so no goroutine outlives the traffic.
const (
	// pollBatch is how many datagrams one recvmmsg(2) reads at most.
	pollBatch = 16
	// pollRounds bounds the batches read from one socket per wake-up, so
	// that a busy socket cannot starve the others of its worker (it stays
	// ready: epoll reports it again).
	pollRounds = 4
	// pollMaxWorkers bounds the workers (and the threads they block in
	// epoll_wait).
	pollMaxWorkers = 8
)

// pollRef is the Manager's poller, made at the first stream.
type pollRef struct {
	p   *poller
	err error // the poller could not be made: streams get goroutine readers
}

// readers is how a stream's sockets are read: by a worker, or (w nil) by
// goroutines of their own (serve).
type readers struct {
	w   *pollWorker
	fds [2][2]int32
}

type poller struct {
	workers []*pollWorker
	next    int // guarded by Manager.mu
	streams int // registered; guarded by Manager.mu
}

type pollWorker struct {
	m    *Manager
	epfd int
	wake int // eventfd: close wakes the worker
	done chan struct{}

	// mu is held while the worker handles what one epoll_wait returned:
	// remove, which takes it, returns when no datagram of the stream is
	// being handled, and none will be.
	mu      sync.Mutex
	regs    map[int32]pollReg
	closing bool

	// The worker's own, used by its goroutine only.
	events [64]unix.EpollEvent
	msgs   [pollBatch]unix.Mmsghdr
	iovs   [pollBatch]unix.Iovec
	names  [pollBatch]unix.RawSockaddrInet6
	bufs   [pollBatch][MaxDatagram + 1]byte // one more byte tells a datagram too large
	sc     scratch
	sa4    unix.RawSockaddrInet4
	sa6    unix.RawSockaddrInet6
}

// pollReg is a registered socket: the stream, the socket, and the
// descriptor of the socket of the same kind on the other side.
type pollReg struct {
	st *stream
	in *sock
}

// start registers the stream's four sockets with a worker, or runs a
// reader goroutine per socket if the poller cannot be had. The caller
// holds m.mu.
func (st *stream) start() {
	if w := st.m.pollWorker(); w != nil {
		err := w.add(st)
		if err == nil {
			st.m.poll.p.streams++
			return
		}
		st.m.log.Warn("media: sockets not polled, reader goroutines instead", "key", st.key, "error", err)
		if st.m.poll.p.streams == 0 {
			st.m.closePoller()
		}
	}
	st.startServe()
}

// stop makes sure no datagram of the stream is read any more, without
// closing its sockets: removed from their worker (it returns when none is
// being handled; the last stream ends the workers), or the goroutine
// readers woken (wg.Wait then waits for them). The caller holds m.mu.
func (st *stream) stop() {
	st.halt.Store(true)
	if w := st.rd.w; w != nil {
		w.remove(st)
		st.rd.w = nil
		if p := st.m.poll.p; p != nil {
			if p.streams--; p.streams == 0 {
				st.m.closePoller()
			}
		}
		return
	}
	st.stopServe()
}

// pollWorker returns the worker for the next stream, making the poller
// first if needed; nil when it cannot be made. The caller holds m.mu.
func (m *Manager) pollWorker() *pollWorker {
	if m.poll.p == nil && m.poll.err == nil {
		n := min(max(procs.Max(), 1), pollMaxWorkers)
		m.poll.p, m.poll.err = newPoller(m, n)
		if m.poll.err != nil {
			m.log.Warn("media: no epoll poller, a reader goroutine per socket instead", "error", m.poll.err)
		}
	}
	p := m.poll.p
	if p == nil {
		return nil
	}
	w := p.workers[p.next%len(p.workers)]
	p.next++
	return w
}

// closePoller stops the workers once every stream has been stopped; the
// next stream makes new ones. The caller holds m.mu.
func (m *Manager) closePoller() {
	if p := m.poll.p; p != nil {
		for _, w := range p.workers {
			w.close()
		}
		m.poll.p = nil
	}
}

func newPoller(m *Manager, n int) (*poller, error) {
	p := &poller{}
	for range n {
		w, err := newPollWorker(m)
		if err != nil {
			for _, w := range p.workers {
				w.close()
			}
			return nil, err
		}
		p.workers = append(p.workers, w)
	}
	return p, nil
}

func newPollWorker(m *Manager) (*pollWorker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	w, _ := spareWorkers.Get().(*pollWorker)
	if w == nil {
		w = &pollWorker{regs: map[int32]pollReg{}}
		for i := range w.msgs {
			w.iovs[i].Base = &w.bufs[i][0]
			w.iovs[i].SetLen(len(w.bufs[i]))
			w.msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(&w.names[i]))
			w.msgs[i].Hdr.Iov = &w.iovs[i]
			w.msgs[i].Hdr.SetIovlen(1)
		}
	}
	w.m, w.epfd, w.wake, w.done = m, epfd, wake, make(chan struct{})
	go w.run()
	return w, nil
}

// spareWorkers keeps the memory of closed workers (their batch buffers,
// some 40 KiB each): the poller ends with the last stream and is made
// again with the next, which at a few calls at a time is every call.
var spareWorkers sync.Pool

func sockFD(c *net.UDPConn) (int32, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	var fd int32 = -1
	if err := rc.Control(func(f uintptr) { fd = int32(f) }); err != nil {
		return -1, err
	}
	return fd, nil
}

// add registers the stream's sockets. The sockets stay open while
// registered: remove comes before any close.
func (w *pollWorker) add(st *stream) error {
	var fds [2][2]int32
	for side := range 2 {
		for kind := range 2 {
			fd, err := sockFD(st.sock[side][kind].conn)
			if err != nil {
				return err
			}
			fds[side][kind] = fd
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for side := range 2 {
		for kind := range 2 {
			fd := fds[side][kind]
			if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, int(fd), &unix.EpollEvent{Events: unix.EPOLLIN, Fd: fd}); err != nil {
				w.removeLocked(fds, side*2+kind)
				return fmt.Errorf("epoll_ctl add: %w", err)
			}
			w.regs[fd] = pollReg{st: st, in: st.sock[side][kind]}
		}
	}
	st.rd = readers{w: w, fds: fds}
	return nil
}

// remove unregisters the stream's sockets; when it returns, the worker
// handles none of their datagrams and will not.
func (w *pollWorker) remove(st *stream) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.removeLocked(st.rd.fds, 4)
}

// removeLocked unregisters the first n of fds (side-major order).
func (w *pollWorker) removeLocked(fds [2][2]int32, n int) {
	for i := range n {
		fd := fds[i/2][i%2]
		unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
		delete(w.regs, fd)
	}
}

func (w *pollWorker) close() {
	w.mu.Lock()
	w.closing = true
	w.mu.Unlock()
	one := [8]byte{1}
	unix.Write(w.wake, one[:])
	<-w.done
	unix.Close(w.epfd)
	unix.Close(w.wake)
	// Nothing refers to the worker now (its streams were removed first):
	// its buffers serve the next one.
	clear(w.regs)
	w.closing, w.m = false, nil
	w.sc.seen = [nRTCPItems]uint32{}
	spareWorkers.Put(w)
}

// run is the worker: wait for ready sockets, read and relay them.
func (w *pollWorker) run() {
	defer close(w.done)
	for {
		n, err := unix.EpollWait(w.epfd, w.events[:], -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			w.m.log.Error("media: epoll_wait failed, worker stops", "error", err)
			return
		}
		w.mu.Lock()
		if w.closing {
			w.mu.Unlock()
			return
		}
		for _, ev := range w.events[:n] {
			if r, ok := w.regs[ev.Fd]; ok {
				w.read(r, ev.Fd)
			}
		}
		w.mu.Unlock()
	}
}

// read relays what the socket fd holds: pollRounds batches at most.
func (w *pollWorker) read(r pollReg, fd int32) {
	in := r.in
	for range pollRounds {
		for i := range w.msgs {
			w.msgs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
			w.msgs[i].Hdr.Flags = 0
		}
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&w.msgs[0])), pollBatch, unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return
		default:
			in.drops[dropError].Add(1)
			return
		}
		for i := range int(n) {
			size := int(w.msgs[i].Len)
			if size > MaxDatagram || w.msgs[i].Hdr.Flags&unix.MSG_TRUNC != 0 {
				in.drops[dropTooLarge].Add(1)
				continue
			}
			src, ok := sockaddrAddrPort(&w.names[i])
			if !ok {
				in.drops[dropError].Add(1)
				continue
			}
			pkt, dst, side, kind, ok := r.st.relayOne(in, w.bufs[i][:size], src, &w.sc)
			if !ok {
				continue
			}
			if !w.send(r.st.rd.fds[side][kind], pkt, dst) {
				in.drops[dropError].Add(1)
				continue
			}
			in.sent(side, len(pkt))
		}
		if int(n) < pollBatch {
			return // drained
		}
	}
}

// send writes one datagram to dst from the socket fd, without waiting: a
// full send buffer drops it.
func (w *pollWorker) send(fd int32, pkt []byte, dst netip.AddrPort) bool {
	var name unsafe.Pointer
	var size uintptr
	port := dst.Port()
	if a := dst.Addr(); a.Is4() {
		w.sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		p := (*[2]byte)(unsafe.Pointer(&w.sa4.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		name, size = unsafe.Pointer(&w.sa4), unix.SizeofSockaddrInet4
	} else {
		w.sa6 = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
		p := (*[2]byte)(unsafe.Pointer(&w.sa6.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		name, size = unsafe.Pointer(&w.sa6), unix.SizeofSockaddrInet6
	}
	for range 2 { // once more after EINTR
		_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(pkt))), uintptr(len(pkt)),
			unix.MSG_DONTWAIT, uintptr(name), size)
		if e != unix.EINTR {
			return e == 0
		}
	}
	return false
}

// sockaddrAddrPort reads the source recvmmsg wrote.
func sockaddrAddrPort(sa *unix.RawSockaddrInet6) (netip.AddrPort, bool) {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), uint16(p[0])<<8|uint16(p[1])), true
	case unix.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(p[0])<<8|uint16(p[1])), true
	}
	return netip.AddrPort{}, false
}
