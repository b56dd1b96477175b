// Package netlab builds a small network lab for tests: a fresh network
// namespace joined to the current one by a veth pair, with IPv4 and IPv6
// addresses on both ends, on networks no address of the host uses.
//
// It is for tests only: it needs root and the ip command (iproute2), it
// reports failures through testing.TB and it removes everything it made
// with t.Cleanup. Without root or ip, New skips the test and says why; on
// other systems than Linux it always skips.
//
//	lab := netlab.New(t)
//	// lab.Host is in this namespace with lab.HostV4 and lab.HostV6,
//	// lab.Peer in lab.NS with lab.NSV4 and lab.NSV6.
//	var c *net.UDPConn
//	err := lab.Do(func() (err error) {
//		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lab.NSV4, 0)))
//		return err
//	})
//	// c sends from inside the namespace, whatever goroutine uses it.
package netlab
