package netlab

import "net/netip"

// Lab is a network namespace joined to the current one by a veth pair.
// The host end stays in the namespace of the test process; the peer end is
// in NS. Each end has one address of Net4 and one of Net6, and a permanent
// neighbour entry for the other end, so neither waits for ARP or neighbour
// discovery. Both ends and the namespace's loopback are up.
type Lab struct {
	// NS is the name of the network namespace (as for `ip netns`).
	NS string
	// Host is the veth end in the current namespace, Peer the end in NS.
	Host, Peer string
	// HostV4 and HostV6 are the addresses of Host, NSV4 and NSV6 those of
	// Peer.
	HostV4, NSV4 netip.Addr
	HostV6, NSV6 netip.Addr
	// Net4 (a /24 in 10.213.0.0/16) and Net6 (a /64 in
	// fd53:7769:7770::/48) are the on-link networks of the pair.
	Net4, Net6 netip.Prefix
}
