//go:build !linux

package dhcpd

import (
	"errors"
	"net"
)

// The phone port needs SO_BINDTODEVICE, which is Linux's.
func listenUDP(string) (net.PacketConn, error) { return nil, errors.ErrUnsupported }
