package supervisor

import (
	"net"
	"net/netip"
	"strings"
)

// uplinkAddrs are the node's IPv4 addresses a peer on the same LAN could
// reach it at: every interface but loopback, the phone port and the
// daemon's own links to the peer namespaces.
func uplinkAddrs(phonePort, prefix string) []netip.Addr {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 ||
			ifc.Name == phonePort || strings.HasPrefix(ifc.Name, prefix) {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			if !ip.Is4() || ip.IsLinkLocalUnicast() || ip.IsLoopback() {
				continue
			}
			out = append(out, ip)
			if len(out) == 8 {
				return out
			}
		}
	}
	return out
}
