package provision

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LookupNeighbor returns the link-layer address the kernel's neighbour
// table holds for addr on the link named port, in the calling thread's
// network namespace; nil and no error when it holds none that is usable
// (no entry, or one still resolving or failed).
func LookupNeighbor(port string, addr netip.Addr) (net.HardwareAddr, error) {
	link, err := netlink.LinkByName(port)
	if err != nil {
		return nil, fmt.Errorf("finding the phone port %s: %w", port, err)
	}
	addr = addr.Unmap()
	family := netlink.FAMILY_V4
	if addr.Is6() {
		family = netlink.FAMILY_V6
	}
	neighs, err := netlink.NeighList(link.Attrs().Index, family)
	if err != nil {
		return nil, fmt.Errorf("reading the neighbour table of %s: %w", port, err)
	}
	for _, n := range neighs {
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok || ip.Unmap() != addr {
			continue
		}
		if usableNeighbor(n.State) && len(n.HardwareAddr) == 6 {
			return n.HardwareAddr, nil
		}
	}
	return nil, nil
}

// usableNeighbor reports whether an entry in state holds an address the
// kernel sends to: resolved (REACHABLE), resolved earlier and in use or
// being re-checked (STALE, DELAY, PROBE), or set by an administrator
// (PERMANENT). INCOMPLETE and FAILED entries hold no confirmed address;
// NOARP entries are not for hosts on an Ethernet link.
func usableNeighbor(state int) bool {
	const usable = unix.NUD_REACHABLE | unix.NUD_STALE | unix.NUD_DELAY | unix.NUD_PROBE | unix.NUD_PERMANENT
	return state&usable != 0 && state&(unix.NUD_INCOMPLETE|unix.NUD_FAILED) == 0
}
