package supervisor

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/netsetup"
	"github.com/peerline/peerline/pkg/numplan"
)

// staticEndpoint is a peer's configured endpoint, if any.
func staticEndpoint(p config.Peer) netip.AddrPort {
	ap, _ := netip.ParseAddrPort(p.Endpoint)
	return ap
}

// sameTunnel reports whether a and b need the same tunnel: everything
// WireGuard is configured with is equal.
func sameTunnel(a, b config.Peer) bool {
	a.Name, b.Name = "", ""
	a.Renamed, b.Renamed = false, false
	a.Lines, b.Lines = nil, nil
	a.LineLabels, b.LineLabels = nil, nil
	return reflect.DeepEqual(a, b)
}

// linkMTU is the MTU of the veth into each peer's namespace and of the
// tunnel's TUN: the phone port's Ethernet 1500, so that every datagram a
// phone sends, Don't Fragment and all, reaches the rewriter instead of
// being refused by the kernel ("fragmentation needed", and a lost first
// INVITE). The rewriter cuts what exceeds the tunnel MTU, config's mtu
// (rewrite.Device.SetMTU; docs/mtu.md).
const linkMTU = 1500

// vethAddrs are the two ends of the link into peer i's namespace.
func vethAddrs(i int) (root, ns netip.Prefix) {
	r := netip.AddrFrom4([4]byte{169, 254, byte(i), 1})
	n := netip.AddrFrom4([4]byte{169, 254, byte(i), 2})
	return netip.PrefixFrom(r, 30), netip.PrefixFrom(n, 30)
}

var localPlan = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, 0}), 16)

func (s *Supervisor) ensurePeer(p *peer) error {
	i := p.cfg.Index
	ns, veth, dev := s.names.Namespace(i), s.names.Veth(i), s.names.Device(i)
	rootAddr, nsAddr := vethAddrs(i)
	steps := []struct {
		what string
		do   func() error
	}{
		{"namespace", func() error { return s.net.EnsureNamespace(ns) }},
		// Before any link joins the namespace, so it is never open.
		{"firewall", func() error { return s.ensureTable(ns, s.peerRules(p), &p.fw, true) }},
		// Forwarding, and no strict reverse-path filtering: replies to
		// phones leave through veth0 while the calls came in on the TUN,
		// an asymmetry it would drop. One entry into the namespace for
		// the three.
		{"forwarding and rp_filter", func() error {
			return s.net.SetSysctls(ns,
				netsetup.Sysctl{Key: "net/ipv4/ip_forward", Value: "1"},
				netsetup.Sysctl{Key: "net/ipv4/conf/all/rp_filter", Value: "0"},
				netsetup.Sysctl{Key: "net/ipv4/conf/default/rp_filter", Value: "0"})
		}},
		{"veth", func() error { return s.net.EnsureVeth(veth, ns, config.VethInNamespace, linkMTU) }},
		{"root veth address", func() error { return s.net.EnsureAddr("", veth, rootAddr) }},
		{"namespace veth address", func() error { return s.net.EnsureAddr(ns, config.VethInNamespace, nsAddr) }},
		{"root veth up", func() error { return s.net.LinkUp("", veth) }},
		{"namespace veth up", func() error { return s.net.LinkUp(ns, config.VethInNamespace) }},
		{"route to peer", func() error { return s.net.EnsureRoute("", numplan.NodePrefix(uint8(i)), veth, rootAddr.Addr().Next()) }},
		{"route back to phones", func() error { return s.net.EnsureRoute(ns, localPlan, config.VethInNamespace, rootAddr.Addr()) }},
		{"tunnel", func() error { return s.ensureTunnel(p, ns, dev) }},
		{"tunnel up", func() error { return s.net.LinkUp(ns, dev) }},
		{"route into tunnel", func() error { return s.net.EnsureRoute(ns, numplan.NodePrefix(uint8(i)), dev, netip.Addr{}) }},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			return fmt.Errorf("%s: %w", st.what, err)
		}
	}
	return nil
}

func (s *Supervisor) removePeer(i int) {
	p := s.peers[i]
	delete(s.peers, i)
	s.releasePeer(i, p)
}

// releasePeer removes what was built for peer i (p may be nil: only its
// namespace and link, if any); safe for several peers at once.
func (s *Supervisor) releasePeer(i int, p *peer) {
	if p != nil && s.paths != nil {
		s.paths.Remove(p.cfg.PublicKey)
	}
	if p != nil && p.tunnel != nil {
		p.tunnel.Close()
		s.mux.Remove(p.cfg.PublicKey)
	}
	if err := s.net.DeleteNamespace(s.names.Namespace(i)); err != nil {
		s.log.Error("deleting peer namespace", "peer", i, "err", err)
	}
	if err := s.net.DeleteLink("", s.names.Veth(i)); err != nil {
		s.log.Error("deleting peer link", "peer", i, "err", err)
	}
}

func (s *Supervisor) removeLines(lines []int) {
	for _, l := range lines {
		if err := s.net.DeleteAddr("", s.cfg.PhonePort, linePiAddr(l)); err != nil {
			s.log.Error("removing line address", "line", l, "err", err)
		}
	}
	s.lines = slices.DeleteFunc(s.lines, func(l int) bool { return slices.Contains(lines, l) })
}
