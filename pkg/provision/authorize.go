package provision

import (
	"bytes"
	"net"
)

// verdict is what authorize decided about a provisioning request.
type verdict int

const (
	allow             verdict = iota
	refuseNoLease             // the source address has no DHCP binding
	refuseNoNeighbor          // the kernel holds no link-layer address for the source
	refuseNeighborMAC         // the source address is used by another MAC than the lease's
	refuseOtherFile           // the file named is another phone's
)

func (v verdict) String() string {
	switch v {
	case allow:
		return "allowed"
	case refuseNoLease:
		return "source address has no DHCP binding on the phone port"
	case refuseNoNeighbor:
		return "no neighbour entry for the source address on the phone port"
	case refuseNeighborMAC:
		return "source address used by a MAC other than its lease's"
	case refuseOtherFile:
		return "file of another phone"
	}
	return "unknown verdict"
}

// authorize decides whether a provisioning request is served. leaseMAC is
// the MAC the source address is leased to (leased false: none); neighbor is
// the link-layer address the kernel's neighbour table holds for the source
// address on the phone port (nil: none, or the lookup failed).
//
// The source address alone proves nothing: any device on the phone port
// can give itself 10.0.2.1. The neighbour entry ties the address to a MAC
// the kernel actually talks to: for HTTP it was used for the SYN-ACK of the
// connection the request came on, so the device that completed the
// handshake received frames sent to that MAC; for TFTP the reply goes to
// that MAC. Requiring it to equal the lease's MAC means a file is only
// ever delivered to the phone DHCP gave the address to. (A device that
// forges its own MAC as well defeats this, as it defeats DHCP itself.)
func authorize(req request, leaseMAC net.HardwareAddr, leased bool, neighbor net.HardwareAddr) verdict {
	switch {
	case !leased:
		return refuseNoLease
	case len(neighbor) == 0:
		return refuseNoNeighbor
	case !bytes.Equal(neighbor, leaseMAC):
		return refuseNeighborMAC
	case req.kind == kindConfig && !bytes.Equal(req.mac, leaseMAC):
		return refuseOtherFile
	}
	return allow
}
