package tftpd

import (
	"context"
	"net"

	"github.com/peerline/peerline/pkg/devsock"
)

// ListenUDP opens a UDP socket on addr (":69" for requests, ":0" for a
// transfer) bound to ifname, so that nothing is served on the uplink.
func ListenUDP(ifname, addr string) (net.PacketConn, error) {
	return devsock.ListenPacket(context.Background(), "udp4", addr, ifname)
}
