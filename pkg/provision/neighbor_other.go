//go:build !linux

package provision

import (
	"errors"
	"net"
	"net/netip"
)

// LookupNeighbor needs the Linux neighbour table; elsewhere no requester can
// be checked, so nothing is served.
func LookupNeighbor(string, netip.Addr) (net.HardwareAddr, error) {
	return nil, errors.ErrUnsupported
}
