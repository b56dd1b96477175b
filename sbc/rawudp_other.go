//go:build !linux

package sbc

import "net"

// newRawUDP returns c: batched raw reads and writes are Linux's
// (rawudp_linux.go).
func newRawUDP(c *net.UDPConn) net.PacketConn { return c }
