package ntpd

import (
	"context"
	"net"

	"github.com/peerline/peerline/pkg/devsock"
)

// ListenUDP opens UDP :123 bound to ifname in the current network
// namespace, so a request arriving on the uplink is never seen.
func ListenUDP(ifname string) (net.PacketConn, error) {
	return devsock.ListenPacket(context.Background(), "udp4", ":123", ifname)
}
