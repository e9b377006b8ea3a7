package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// MinPathMTU is the smallest MTU an IPv6 path may have (RFC 8200), and
// what IPv4 paths through tunnels (DS-Lite, mobile, PPPoE over small
// links) come down to in practice.
const MinPathMTU = 1280

// BlackHole makes the router's WAN link carry at most mtu bytes per IP
// packet and keeps quiet about it: a packet with Don't Fragment set that is
// too large is dropped, and the ICMP "fragmentation needed" the router
// would send back is dropped too, as on DS-Lite, mobile and some fibre
// lines that filter ICMP. The sender never learns the path is smaller
// (a path-MTU black hole, RFC 2923). Packets without DF are fragmented by
// the router as usual. It applies to both directions: the other side of
// the link is the Internet segment, whose frames larger than mtu the
// router's WAN no longer takes either.
func (n *NAT) BlackHole(mtu int) error {
	if mtu < 576 || mtu > 1500 {
		return fmt.Errorf("NAT %s: path MTU %d, want 576 to 1500", n.name, mtu)
	}
	if err := n.IP("link", "set", natWANIf, "mtu", strconv.Itoa(mtu)); err != nil {
		return fmt.Errorf("NAT %s: setting the WAN MTU: %w", n.name, err)
	}
	// ICMP errors the router makes leave through its output hook; a table
	// of its own keeps them out of the NAT's ruleset, which FlushConntrack
	// reloads.
	rules := `table ip labpmtu
delete table ip labpmtu
table ip labpmtu {
  chain out {
    type filter hook output priority filter; policy accept;
    icmp type destination-unreachable icmp code frag-needed counter drop
  }
}
`
	path := filepath.Join(n.lab.dir, safeName(n.name)+"-blackhole.nft")
	if err := os.WriteFile(path, []byte(rules), 0o644); err != nil {
		return fmt.Errorf("writing nftables rules: %w", err)
	}
	if _, err := n.Run(context.Background(), "nft", "-f", path); err != nil {
		return fmt.Errorf("NAT %s: loading the ICMP filter %s: %w", n.name, path, err)
	}
	n.lab.log.Info("NAT path MTU black hole", "host", n.name, "mtu", mtu)
	return nil
}

// BlackHoled returns how many "fragmentation needed" messages BlackHole's
// filter kept from leaving the router: each is a packet the path dropped
// without telling its sender.
func (n *NAT) BlackHoled(ctx context.Context) (int, error) {
	out, err := n.Run(ctx, "nft", "list", "chain", "ip", "labpmtu", "out")
	if err != nil {
		return 0, err
	}
	return nftPackets(out), nil
}

// nftPackets sums the "packets N" of the counters in nft's listing.
func nftPackets(listing string) int {
	words := strings.Fields(listing)
	total := 0
	for i := 0; i+1 < len(words); i++ {
		if words[i] == "packets" {
			if v, err := strconv.Atoi(words[i+1]); err == nil {
				total += v
			}
		}
	}
	return total
}
