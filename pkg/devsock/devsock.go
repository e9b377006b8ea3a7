// Package devsock opens sockets bound to one network interface
// (SO_BINDTODEVICE). Everything the Pi serves to phones (DHCP, HTTP, TFTP,
// NTP, DNS) listens this way on the phone port, so that nothing is ever
// answered on the uplink, whatever address a packet arrives for.
package devsock

import (
	"context"
	"net"
)

// Listen opens a stream listener on addr ("tcp", ":80") bound to ifname.
func Listen(ctx context.Context, network, addr, ifname string) (net.Listener, error) {
	return config(ifname).Listen(ctx, network, addr)
}

// ListenPacket opens a packet socket on addr ("udp4", ":123") bound to
// ifname.
func ListenPacket(ctx context.Context, network, addr, ifname string) (net.PacketConn, error) {
	return config(ifname).ListenPacket(ctx, network, addr)
}
