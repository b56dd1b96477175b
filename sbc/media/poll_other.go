//go:build !linux

package media

// Without epoll every socket has a reader goroutine of its own (serve).

type pollRef struct{}

// readers: goroutines, counted by the stream's wg.
type readers struct{}

// start runs the stream's four readers.
func (st *stream) start() { st.startServe() }

// stop makes the readers exit without closing the sockets; wg.Wait then
// waits for them.
func (st *stream) stop() { st.stopServe() }

func (m *Manager) closePoller() {}
