package peerlab

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/numplan"
)

// Handset is a phone plugged into a node's switch that gets its line from
// the node's DHCP server, as a real desk phone does.
type Handset struct {
	Host *lab.Host
	// MAC is the handset's Ethernet address; VendorClass what it sends as
	// DHCP option 60.
	MAC         string
	VendorClass string
	// Line is s of the handset's address 10.0.s.1, once leased.
	Line int
	// Leased is what the DHCP client was told: udhcpc's variables (ip,
	// mask, router, dns, ntpsrv, tftp, ...).
	Leased map[string]string
}

// Addr is the handset's address at its own node.
func (h *Handset) Addr() netip.Addr { return numplan.Phone(0, uint8(h.Line)) }

// handsetOUIs give the lab handsets the vendors' real address blocks, so
// that what the daemon derives from a MAC is exercised too.
var handsetOUIs = map[string]string{"grandstream": "00:0b:82", "yealink": "80:5e:c0"}

// plugHandsets builds the node's phone-side switch: the Pi's phone port and
// one namespace per handset, all on one bridge, none with an address.
func plugHandsets(l *lab.Lab, pi *lab.Host, node string, vendorClasses []string) (*lab.Bridge, []*Handset, error) {
	sw, err := l.Bridge("sw" + node)
	if err != nil {
		return nil, nil, err
	}
	if _, err := sw.Attach(pi, phonePort, ""); err != nil {
		return nil, nil, err
	}
	if err := pi.IP("link", "set", phonePort, "up"); err != nil {
		return nil, nil, err
	}
	var hs []*Handset
	for k, vc := range vendorClasses {
		h, err := l.Host(fmt.Sprintf("phone%s%d", node, k+1))
		if err != nil {
			return nil, nil, err
		}
		if _, err := sw.Attach(h, "eth0", ""); err != nil {
			return nil, nil, err
		}
		oui := "02:00:5e"
		for v, o := range handsetOUIs {
			if strings.Contains(strings.ToLower(vc), v) {
				oui = o
			}
		}
		mac := fmt.Sprintf("%s:%02x:%02x:%02x", oui, node[0], 0x10, k+1)
		if err := h.IP("link", "set", "eth0", "address", mac); err != nil {
			return nil, nil, err
		}
		if err := h.IP("link", "set", "eth0", "up"); err != nil {
			return nil, nil, err
		}
		hs = append(hs, &Handset{Host: h, MAC: mac, VendorClass: vc})
	}
	return sw, hs, nil
}

// Lease runs the handset's DHCP client once (discover or renew) and
// applies what it gets.
func (h *Handset) Lease(ctx context.Context) error {
	env, err := h.Host.Lease(ctx, "eth0", "-V", h.VendorClass, "-x", "hostname:"+h.Host.Name())
	if err != nil {
		return fmt.Errorf("handset %s: %w", h.Host.Name(), err)
	}
	a, err := netip.ParseAddr(env["ip"])
	if err != nil {
		return fmt.Errorf("handset %s: leased address %q: %w", h.Host.Name(), env["ip"], err)
	}
	_, s, p, ok := numplan.Split(a)
	if !ok || a.As4()[1] != 0 || p != numplan.HostPhone {
		return fmt.Errorf("handset %s: leased %s, which is no phone address 10.0.s.1", h.Host.Name(), a)
	}
	h.Line, h.Leased = int(s), env
	return nil
}

// Lease gets every handset of the node its line (nothing for a node with a
// hand-addressed phone); the first handset's line becomes the node's Line.
func (n *Node) Lease(ctx context.Context) error {
	for _, h := range n.Handsets {
		if err := h.Lease(ctx); err != nil {
			return err
		}
	}
	if len(n.Handsets) > 0 {
		n.Line = n.Handsets[0].Line
	}
	return nil
}

// StartHandsetPhone starts an auto-answering baresip on handset h, at the
// address it was leased.
func (n *Node) StartHandsetPhone(ctx context.Context, l *lab.Lab, h *Handset, user string, hz float64) (*Phone, error) {
	return n.startPhoneOn(ctx, l, h.Host, h.Addr(), user, hz)
}

// HandsetAddrOf is the address handset h of node other has from n.
func (n *Node) HandsetAddrOf(other *Node, h *Handset) netip.Addr {
	for _, p := range n.Config.Peers {
		if p.PublicKey == other.key.Public() {
			return numplan.Phone(uint8(p.Index), uint8(h.Line))
		}
	}
	return netip.Addr{}
}
