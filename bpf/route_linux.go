//go:build linux

package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// routeEgress asks the kernel how a packet from src (an address of this
// host) to dst leaves, as `ip route get DST from SRC` does: the device,
// the gateway and the device's MTU, or that dst is local. One netlink
// request; a second bounds the wait for the answer.
func routeEgress(src, dst netip.Addr) (MediaEgress, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return MediaEgress{}, fmt.Errorf("route lookup: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return MediaEgress{}, fmt.Errorf("route lookup: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return MediaEgress{}, fmt.Errorf("route lookup: %w", err)
	}
	family, bits := byte(unix.AF_INET6), byte(128)
	if dst.Is4() {
		family, bits = unix.AF_INET, 32
	}
	addrBytes := func(a netip.Addr) []byte {
		if a.Is4() {
			b := a.As4()
			return b[:]
		}
		b := a.As16()
		return b[:]
	}
	const seq = 1
	msg := make([]byte, unix.SizeofNlMsghdr, 64)
	// struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope,
	// type, flags.
	msg = append(msg, family, bits, bits, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	for _, a := range []struct {
		typ  uint16
		addr netip.Addr
	}{{unix.RTA_DST, dst}, {unix.RTA_SRC, src}} {
		b := addrBytes(a.addr)
		msg = binary.NativeEndian.AppendUint16(msg, uint16(4+len(b)))
		msg = binary.NativeEndian.AppendUint16(msg, a.typ)
		msg = append(msg, b...) // 4 or 16 bytes: aligned
	}
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], unix.RTM_GETROUTE)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(msg[8:], seq)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return MediaEgress{}, fmt.Errorf("route lookup: %w", err)
	}
	buf := make([]byte, 8192)
	for range 4 { // the answer, after at most a few stray messages
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return MediaEgress{}, fmt.Errorf("route lookup: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return MediaEgress{}, fmt.Errorf("route lookup: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue
			}
			switch m.Header.Type {
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if code := int32(binary.NativeEndian.Uint32(m.Data)); code < 0 {
						return MediaEgress{}, fmt.Errorf("route lookup: %w", syscall.Errno(-code))
					}
				}
				return MediaEgress{}, errors.New("route lookup: no answer")
			case unix.RTM_NEWROUTE:
				return parseRoute(&m, dst)
			}
		}
	}
	return MediaEgress{}, errors.New("route lookup: no answer")
}

func parseRoute(m *syscall.NetlinkMessage, dst netip.Addr) (MediaEgress, error) {
	if len(m.Data) < unix.SizeofRtMsg {
		return MediaEgress{}, errors.New("route lookup: short answer")
	}
	typ := m.Data[7]
	if typ == unix.RTN_LOCAL {
		return MediaEgress{Local: true}, nil
	}
	if typ != unix.RTN_UNICAST {
		return MediaEgress{}, fmt.Errorf("route lookup: %s is not reachable (route type %d)", dst, typ)
	}
	attrs, err := syscall.ParseNetlinkRouteAttr(m)
	if err != nil {
		return MediaEgress{}, fmt.Errorf("route lookup: %w", err)
	}
	e := MediaEgress{Nexthop: dst}
	for _, a := range attrs {
		switch a.Attr.Type {
		case unix.RTA_OIF:
			if len(a.Value) >= 4 {
				e.Ifindex = binary.NativeEndian.Uint32(a.Value)
			}
		case unix.RTA_GATEWAY:
			if gw, ok := netip.AddrFromSlice(a.Value); ok {
				e.Nexthop = gw.Unmap()
			}
		case unix.RTA_VIA:
			// A gateway of the other family: not forwarded in the kernel.
			return MediaEgress{}, fmt.Errorf("route lookup: %s goes through a gateway of another family", dst)
		case unix.RTA_METRICS:
			if mtu := metricMTU(a.Value); mtu > 0 {
				e.MTU = mtu
			}
		}
	}
	if e.Ifindex == 0 {
		return MediaEgress{}, fmt.Errorf("route lookup: no device toward %s", dst)
	}
	if e.MTU == 0 {
		ifc, err := net.InterfaceByIndex(int(e.Ifindex))
		if err != nil {
			return MediaEgress{}, fmt.Errorf("route lookup: device %d: %w", e.Ifindex, err)
		}
		e.MTU = ifc.MTU
	}
	return e, nil
}

// metricMTU reads RTAX_MTU from the nested attributes of RTA_METRICS.
func metricMTU(b []byte) int {
	for range 32 {
		if len(b) < 4 {
			return 0
		}
		l := int(binary.NativeEndian.Uint16(b))
		typ := binary.NativeEndian.Uint16(b[2:])
		if l < 4 || l > len(b) {
			return 0
		}
		if typ == unix.RTAX_MTU && l >= 8 {
			return int(binary.NativeEndian.Uint32(b[4:]))
		}
		l = (l + 3) &^ 3
		if l >= len(b) {
			return 0
		}
		b = b[l:]
	}
	return 0
}
