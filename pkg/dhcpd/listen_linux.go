package dhcpd

import (
	"net"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

func listenUDP(ifname string) (net.PacketConn, error) {
	// SO_BINDTODEVICE (dhcpv4.BindToInterface) keeps the socket to the
	// phone port: a DISCOVER arriving on the uplink is never seen.
	return server4.NewIPv4UDPConn(ifname, &net.UDPAddr{Port: dhcpv4.ServerPort})
}
