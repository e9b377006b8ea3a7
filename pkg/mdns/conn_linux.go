package mdns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// udpConn is an interface's mDNS socket: port 5353 bound to the interface,
// in the group, sending with TTL 255 (RFC 6762 §11: receivers may check
// that a packet came from the local link by its TTL).
type udpConn struct {
	c *net.UDPConn
}

// listen opens 0.0.0.0:5353 on ifname. SO_REUSEADDR and SO_REUSEPORT let
// another responder on the host (avahi) share the port; SO_BINDTODEVICE
// keeps this socket to its interface.
func listen(ifname string) (conn, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", ifname, err)
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			for _, o := range []int{unix.SO_REUSEADDR, unix.SO_REUSEPORT} {
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o, 1); serr != nil {
					return
				}
			}
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifname)
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("binding to %s (needs CAP_NET_RAW or root): %w", ifname, serr)
		}
		return nil
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf(":%d", Port))
	if err != nil {
		return nil, fmt.Errorf("mDNS socket on %s: %w", ifname, err)
	}
	c := pc.(*net.UDPConn)
	p := ipv4.NewPacketConn(c)
	group := &net.UDPAddr{IP: MulticastAddr.Addr().AsSlice()}
	for _, step := range []struct {
		what string
		err  error
	}{
		{"joining 224.0.0.251", p.JoinGroup(ifi, group)},
		{"choosing the multicast interface", p.SetMulticastInterface(ifi)},
		{"setting the multicast TTL", p.SetMulticastTTL(255)},
		{"setting the TTL", p.SetTTL(255)},
		{"turning off multicast loopback", p.SetMulticastLoopback(false)},
	} {
		if step.err != nil {
			c.Close()
			return nil, fmt.Errorf("mDNS on %s: %s: %w", ifname, step.what, step.err)
		}
	}
	return &udpConn{c: c}, nil
}

func (u *udpConn) ReadFrom(b []byte) (int, netip.AddrPort, error) {
	n, a, err := u.c.ReadFromUDPAddrPort(b)
	return n, netip.AddrPortFrom(a.Addr().Unmap(), a.Port()), err
}

func (u *udpConn) WriteTo(b []byte, to netip.AddrPort) error {
	_, err := u.c.WriteToUDPAddrPort(b, to)
	return err
}

func (u *udpConn) Close() error { return u.c.Close() }
