// Package firewall is the nftables ruleset of a peer's namespace: a paired
// peer may reach our phones, with what a call needs, and never the Pi.
//
// docs/design.md §3.1: from the tunnel, only SIP and RTP/RTCP (UDP) and ICMP echo to a
// phone address 10.0.s.1 pass, plus replies and ICMP errors that conntrack
// relates to flows our side started. Everything else from the tunnel is
// dropped: the phones' web admin pages (TCP), the Pi's addresses on the
// phone lines (10.0.s.2) and on the veth links, and the namespace itself.
// Our phones may send anything towards the peer; the peer's firewall decides
// what it takes.
//
// UDP to any port is allowed because phones choose their RTP ports freely
// (baresip at random, GXP from 5004, Yealink from 11780) and a peer's RTP can
// arrive before our phone has sent any, so conntrack cannot open the way.
// TCP is refused, including SIP over TCP, which the rewriter does not carry
// (see pkg/rewrite).
//
// The ruleset is loaded with the nft command as one transaction that
// replaces the table, so reloading never leaves a moment without rules. It
// is loaded right after the namespace is made, before any link joins it.
package firewall

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Table is the nftables table peerline owns in each peer namespace.
const Table = "peerline"

// PeerRules returns the ruleset for a peer namespace whose tunnel device is
// tunnel and whose link to the daemon's namespace (and the phones) is
// toPhones.
func PeerRules(tunnel, toPhones string) string {
	// The declare-then-delete pair makes the load replace the table
	// atomically whether or not it existed.
	return fmt.Sprintf(`table inet %[1]s
delete table inet %[1]s
table inet %[1]s {
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname %[3]q accept
		iifname %[2]q oifname %[3]q ip daddr & 255.255.0.3 == 10.0.0.1 meta l4proto udp accept
		iifname %[2]q oifname %[3]q ip daddr & 255.255.0.3 == 10.0.0.1 icmp type echo-request accept
	}
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		iifname "lo" accept
		iifname %[3]q accept
	}
}
`, Table, tunnel, toPhones)
}

// Loader loads rulesets into namespaces.
type Loader struct {
	// Do runs fn inside namespace ns (netsetup's Ops.Do); a program
	// started by fn inherits the namespace of fn's thread.
	Do func(ns string, fn func() error) error
	// NFT is the nft binary; "" finds nft in PATH.
	NFT string
}

// ErrNoNFT means the nft command is missing.
var ErrNoNFT = errors.New("nft not found: install nftables (apt-get install nftables); peers stay down without their firewall")

// Load replaces peerline's table in namespace ns with rules.
func (l Loader) Load(ns, rules string) error {
	nft := l.NFT
	if nft == "" {
		p, err := exec.LookPath("nft")
		if err != nil {
			return ErrNoNFT
		}
		nft = p
	}
	var out bytes.Buffer
	err := l.Do(ns, func() error {
		cmd := exec.Command(nft, "-f", "-")
		cmd.Stdin = strings.NewReader(rules)
		cmd.Stdout, cmd.Stderr = &out, &out
		return cmd.Run()
	})
	if err != nil {
		return fmt.Errorf("loading firewall in namespace %s: %w: %s", ns, err, strings.TrimSpace(out.String()))
	}
	return nil
}
