// Package redistest runs a throwaway redis-server for tests: on 127.0.0.1,
// a free port, no persistence, a temporary directory, killed when the test
// ends. Tests skip when redis-server is not installed.
package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"github.com/sipwall/sipwall/sbc/siptest"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// SkipReason is given to t.Skip when redis-server is missing.
const SkipReason = "redis-server not installed: scripts/install-test-tools.sh installs it"

const startWait = 10 * time.Second

// Server is one redis-server process.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int

	mu   sync.Mutex
	proc *process
}

type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
	out  *lockedBuffer
}

// Start starts redis-server and stops it in t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip(SkipReason)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(s.Stop)
	var lastErr error
	for range 5 { // the free port may be taken before redis binds it
		s.port, err = freePort()
		if err != nil {
			t.Fatalf("redistest: free port: %v", err)
		}
		if lastErr = s.start(); lastErr == nil {
			return s
		}
	}
	t.Fatalf("redistest: %v", lastErr)
	return nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Stop kills the server (as a crash would) and waits for it to exit.
// Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	_ = s.proc.cmd.Process.Kill()
	<-s.proc.done
	s.proc = nil
}

// Restart stops the server if it runs and starts it again, empty, on the
// same port.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	deadline := time.Now().Add(startWait)
	for {
		if err = s.start(); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := &process{done: make(chan struct{}), out: &lockedBuffer{}}
	p.cmd = exec.Command(s.bin,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--loglevel", "warning",
	)
	p.cmd.Dir = s.dir
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %v", err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	deadline := time.Now().Add(startWait)
	for {
		if pid, err := serverPID(s.Addr()); err == nil {
			if pid != p.cmd.Process.Pid {
				_ = p.cmd.Process.Kill()
				<-p.done
				return fmt.Errorf("port %d is another server's", s.port)
			}
			s.proc = p
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("redis-server on port %d exited: %s", s.port, strings.TrimSpace(p.out.String()))
		default:
		}
		if time.Now().After(deadline) {
			_ = p.cmd.Process.Kill()
			<-p.done
			return fmt.Errorf("redis-server on port %d did not answer: %s", s.port, strings.TrimSpace(p.out.String()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serverPID asks the server at addr for its process id (INFO server).
func serverPID(addr string) (int, error) {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("INFO server\r\n")); err != nil {
		return 0, err
	}
	r := bufio.NewReader(c)
	head, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(head, "$")))
	if !strings.HasPrefix(head, "$") || err != nil || n < 0 || n > 1<<20 {
		return 0, fmt.Errorf("INFO: unexpected reply %q", head)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("INFO: no process_id")
}

func freePort() (int, error) { return siptest.FreePort("127.0.0.1") }

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() > 64<<10 {
		return len(p), nil
	}
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
