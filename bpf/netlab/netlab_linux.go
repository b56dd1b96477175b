//go:build linux

package netlab

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// netnsDir is where iproute2 keeps named network namespaces.
const netnsDir = "/var/run/netns/"

// seq numbers the labs of this process, for unique names.
var seq atomic.Int32

// Skip skips the test, saying why, unless the process is root and the ip
// command (iproute2) is installed: what New needs.
func Skip(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netlab: needs root to create a network namespace and a veth pair; CI runs this as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("netlab: needs the ip command (iproute2) to create the namespace and the veth pair")
	}
}

// New creates a uniquely named network namespace and a veth pair, its host
// end in the current namespace and its peer end in the new one, with
// addresses (IPv6 without duplicate address detection), permanent
// neighbour entries on both ends, and the links up. The veth pair and the
// namespace are deleted at cleanup. New skips the test as Skip does;
// other failures fail it.
func New(t testing.TB) *Lab {
	t.Helper()
	Skip(t)
	n := int(seq.Add(1))
	pid := os.Getpid()
	l := &Lab{
		NS: fmt.Sprintf("swlab-%d-%d", pid, n),
		// Interface names have at most 15 bytes.
		Host: fmt.Sprintf("swh%d-%d", pid%1000000, n%100),
		Peer: fmt.Sprintf("swn%d-%d", pid%1000000, n%100),
	}
	l.Net4, l.Net6 = freeNets(t, pid*31+n)
	l.HostV4 = l.Net4.Addr().Next()
	l.NSV4 = l.HostV4.Next()
	l.HostV6 = l.Net6.Addr().Next()
	l.NSV6 = l.HostV6.Next()

	ip(t, "netns", "add", l.NS)
	t.Cleanup(func() {
		// Deleting one end of the pair deletes the other.
		exec.Command("ip", "link", "del", l.Host).Run()
		if out, err := exec.Command("ip", "netns", "del", l.NS).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", l.NS, err, out)
		}
	})
	ip(t, "link", "add", l.Host, "type", "veth", "peer", "name", l.Peer)
	ip(t, "link", "set", l.Peer, "netns", l.NS)
	ip(t, "addr", "add", prefixOf(l.HostV4, l.Net4), "dev", l.Host)
	ip(t, "addr", "add", prefixOf(l.HostV6, l.Net6), "dev", l.Host, "nodad")
	ip(t, "-n", l.NS, "addr", "add", prefixOf(l.NSV4, l.Net4), "dev", l.Peer)
	ip(t, "-n", l.NS, "addr", "add", prefixOf(l.NSV6, l.Net6), "dev", l.Peer, "nodad")
	ip(t, "link", "set", l.Host, "up")
	ip(t, "-n", l.NS, "link", "set", l.Peer, "up")
	ip(t, "-n", l.NS, "link", "set", "lo", "up")

	// No ARP or neighbour discovery needed for either end to send.
	hostIfc, err := net.InterfaceByName(l.Host)
	if err != nil {
		t.Fatalf("host veth %s: %v", l.Host, err)
	}
	var peerMAC net.HardwareAddr
	if err := l.Do(func() error {
		ifc, err := net.InterfaceByName(l.Peer)
		if err == nil {
			peerMAC = ifc.HardwareAddr
		}
		return err
	}); err != nil {
		t.Fatalf("peer veth %s in namespace %s: %v", l.Peer, l.NS, err)
	}
	hostMAC := hostIfc.HardwareAddr.String()
	ip(t, "-n", l.NS, "neigh", "replace", l.HostV4.String(), "lladdr", hostMAC, "dev", l.Peer, "nud", "permanent")
	ip(t, "-n", l.NS, "neigh", "replace", l.HostV6.String(), "lladdr", hostMAC, "dev", l.Peer, "nud", "permanent")
	ip(t, "neigh", "replace", l.NSV4.String(), "lladdr", peerMAC.String(), "dev", l.Host, "nud", "permanent")
	ip(t, "neigh", "replace", l.NSV6.String(), "lladdr", peerMAC.String(), "dev", l.Host, "nud", "permanent")
	return l
}

// Do runs fn on an OS thread moved into the lab's network namespace and
// returns its error. Sockets fn opens belong to that namespace for their
// whole life, whatever thread uses them later. The thread is never
// unlocked, so it ends with its goroutine instead of going back to the
// scheduler in the wrong namespace.
func (l *Lab) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread goes back to the namespace it came from before it is
		// unlocked; if it cannot, it stays locked and ends with the
		// goroutine. A thread left in the lab would otherwise serve later
		// goroutines, or be the main thread, whose /proc/self/net is what
		// other tests read.
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		f, err := os.Open(netnsDir + l.NS)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", l.NS, err)
			return
		}
		err = fn()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// ip runs the ip command and fails the test with its output on error.
func ip(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func prefixOf(a netip.Addr, p netip.Prefix) string {
	return netip.PrefixFrom(a, p.Bits()).String()
}

// freeNets picks an IPv4 /24 in 10.213.0.0/16 and an IPv6 /64 in
// fd53:7769:7770::/48 that no address of the host touches, varied by seed
// so that concurrent runs do not meet.
func freeNets(t testing.TB, seed int) (netip.Prefix, netip.Prefix) {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatalf("list host addresses: %v", err)
	}
	var taken []netip.Prefix
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			ip, _ := netip.AddrFromSlice(ipn.IP)
			ones, _ := ipn.Mask.Size()
			if p, err := ip.Unmap().Prefix(ones); err == nil {
				taken = append(taken, p)
			}
		}
	}
	free := func(p netip.Prefix) bool {
		for _, q := range taken {
			if p.Overlaps(q) {
				return false
			}
		}
		return true
	}
	for i := range 256 {
		x := (seed + i*97) & 0xffff
		p4 := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 213, byte(x), 0}), 24)
		p6 := netip.MustParsePrefix(fmt.Sprintf("fd53:7769:7770:%x::/64", x))
		if free(p4) && free(p6) {
			return p4, p6
		}
	}
	t.Fatalf("no free test network in 10.213.0.0/16 and fd53:7769:7770::/48")
	return netip.Prefix{}, netip.Prefix{}
}
