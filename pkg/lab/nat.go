package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// NATKind is the RFC 4787 class of a lab home NAT (see
// docs/design.md §7.1): how it maps internal endpoints to external ports,
// and which inbound packets it lets through to a mapping.
type NATKind string

const (
	FullCone       NATKind = "fc"  // EIM, EIF: UPnP/DMZ-like routers
	RestrictedCone NATKind = "rc"  // EIM, ADF
	PortRestricted NATKind = "pr"  // EIM, APDF: Linux/OpenWrt default
	Symmetric      NATKind = "sym" // APDM, APDF: enterprise and carrier NATs
)

// NATKinds returns every kind, in the order used for test matrices.
func NATKinds() []NATKind { return []NATKind{FullCone, RestrictedCone, PortRestricted, Symmetric} }

// ParseNATKind accepts the lab names fc, rc, pr and sym.
func ParseNATKind(s string) (NATKind, error) {
	for _, k := range NATKinds() {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("NAT kind %q: want fc, rc, pr or sym", s)
}

// Mapping is the behaviour RFC 4787 §4.1 prescribes for kind k.
func (k NATKind) Mapping() Mapping {
	if k == Symmetric {
		return APDM
	}
	return EIM
}

// Filtering is the behaviour RFC 4787 §5 prescribes for kind k.
func (k NATKind) Filtering() Filtering {
	switch k {
	case FullCone:
		return EIF
	case RestrictedCone:
		return ADF
	}
	return APDF
}

// Mapping is an RFC 4787 mapping behaviour.
type Mapping string

const (
	EIM  Mapping = "EIM"  // endpoint-independent
	ADM  Mapping = "ADM"  // address-dependent
	APDM Mapping = "APDM" // address-and-port-dependent
)

// Filtering is an RFC 4787 filtering behaviour.
type Filtering string

const (
	EIF  Filtering = "EIF"  // endpoint-independent
	ADF  Filtering = "ADF"  // address-dependent
	APDF Filtering = "APDF" // address-and-port-dependent
)

// InputPolicy is what a NAT box does with an unsolicited packet addressed
// to itself that no mapping claims: drop it, or accept it (its own stack
// then answers, typically with ICMP port unreachable). With accept, such a
// packet leaves a conntrack entry behind that can make the NAT pick a new
// external port when the internal host later sends to that peer; see
// ProbeNAT's MappingKept.
type InputPolicy string

const (
	InputDrop   InputPolicy = "drop"
	InputAccept InputPolicy = "accept"
)

// InputPolicies returns both policies, in the order used for test matrices.
func InputPolicies() []InputPolicy { return []InputPolicy{InputDrop, InputAccept} }

// ParseInputPolicy accepts drop and accept.
func ParseInputPolicy(s string) (InputPolicy, error) {
	switch p := InputPolicy(s); p {
	case InputDrop, InputAccept:
		return p, nil
	}
	return "", fmt.Errorf("NAT input policy %q: want drop or accept", s)
}

// Interface names inside a NAT namespace, used by its nftables rules.
const (
	natWANIf = "wan" // uplink to the Internet segment
	natLANIf = "lan" // Linux bridge the LAN hosts are plugged into
)

// NAT is a home router: a namespace with interface "wan" on an Internet
// segment and a bridge "lan" behind which hosts sit, translating with
// nftables as its NATKind prescribes. The embedded Host runs commands in
// the router (nft list ruleset, ip -s link).
type NAT struct {
	*Host
	kind   NATKind
	policy InputPolicy
	lan    netip.Prefix

	mu sync.Mutex
	// Guarded by mu.
	wan      netip.Prefix
	epoch    int // bumped by each FlushConntrack; selects the port block
	lanPorts int
}

// NAT creates a home router called name of the given kind: its WAN
// interface has address wan on segment inet (an *Internet or *Bridge) and
// an on-link default route there, so it reaches every public address on
// the segment; its LAN bridge has address lan (e.g. 192.168.1.1/24), the
// gateway of the hosts put behind it with Attach or AddHost.
//
// Mappings are not port-preserving: external ports come from a block of
// 4096 ports that moves on every FlushConntrack, so that a rebinding
// really yields a new external port, as it does on most home routers, and
// nothing in a test can pass by guessing that the external port equals
// the local one.
func (l *Lab) NAT(name string, kind NATKind, policy InputPolicy, inet Segment, wan, lan netip.Prefix) (*NAT, error) {
	if _, err := ParseNATKind(string(kind)); err != nil {
		return nil, err
	}
	if _, err := ParseInputPolicy(string(policy)); err != nil {
		return nil, err
	}
	if inet == nil {
		return nil, fmt.Errorf("NAT %s: no Internet segment to attach its WAN side to", name)
	}
	for _, p := range []struct {
		what string
		p    netip.Prefix
	}{{"WAN", wan}, {"LAN", lan}} {
		if !p.p.IsValid() || !p.p.Addr().Is4() || p.p.Bits() > 30 || p.p.Addr() == p.p.Masked().Addr() {
			return nil, fmt.Errorf("NAT %s: %s address %v: want an IPv4 host address with its prefix, such as 198.51.100.11/24", name, p.what, p.p)
		}
	}
	if wan.Overlaps(lan) {
		return nil, fmt.Errorf("NAT %s: WAN %v and LAN %v overlap", name, wan, lan)
	}
	h, err := l.Host(name)
	if err != nil {
		return nil, err
	}
	n := &NAT{Host: h, kind: kind, policy: policy, lan: lan, wan: wan}
	if err := n.setup(inet); err != nil {
		return nil, fmt.Errorf("NAT %s: %w", name, err)
	}
	l.log.Info("NAT created", "host", name, "ns", h.ns, "kind", kind, "input", policy, "wan", wan, "lan", lan)
	return n, nil
}

func (n *NAT) setup(inet Segment) error {
	if _, err := inet.Attach(n.Host, natWANIf, n.wan.String()); err != nil {
		return err
	}
	steps := [][]string{
		{"link", "add", natLANIf, "type", "bridge"},
		{"addr", "add", n.lan.String(), "dev", natLANIf},
		{"link", "set", natLANIf, "up"},
		{"route", "add", "default", "dev", natWANIf},
	}
	for _, s := range steps {
		if err := n.IP(s...); err != nil {
			return err
		}
	}
	if err := n.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		return err
	}
	// The router is IPv4 only; IPv6 would bypass it on the LAN bridge.
	for _, key := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
		if err := n.Sysctl(key, "1"); err != nil {
			n.lab.log.Debug("NAT: IPv6 stays on", "host", n.name, "err", err)
		}
	}
	// With br_netfilter loaded, bridged LAN-to-LAN frames would traverse
	// the forward chain (policy drop). The key is per namespace and
	// exists only while the module is loaded.
	if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err == nil {
		if err := n.Sysctl("net.bridge.bridge-nf-call-iptables", "0"); err != nil {
			return err
		}
	}
	return n.loadRules()
}

// loadRules replaces the router's nftables table in one transaction, which
// also empties its mapping map and contacted set.
func (n *NAT) loadRules() error {
	n.mu.Lock()
	lo, hi := natPortBlock(n.epoch)
	rules := natRuleset(n.kind, n.policy, lo, hi)
	epoch := n.epoch
	n.mu.Unlock()
	path := filepath.Join(n.lab.dir, fmt.Sprintf("%s-%d.nft", safeName(n.name), epoch))
	if err := os.WriteFile(path, []byte(rules), 0o644); err != nil {
		return fmt.Errorf("writing nftables rules: %w", err)
	}
	if _, err := n.Run(context.Background(), "nft", "-f", path); err != nil {
		return fmt.Errorf("loading nftables rules %s (needs the nftables package): %w", path, err)
	}
	return nil
}

// natPortBlock returns the external port range of a NAT's epoch.
func natPortBlock(epoch int) (lo, hi int) {
	const base, size, blocks = 20000, 4096, 8
	lo = base + (epoch%blocks)*size
	return lo, lo + size - 1
}

// natRuleset returns the nftables script for a NAT box. It deletes and
// recreates table ip lab atomically (nft -f is one transaction).
//
// Differences from the first plan (docs/design.md §7.2), and why:
//   - fc and rc forward inbound packets with a dynamic map "eim" from
//     external port to internal address and port, learned after source NAT
//     (postrouting, priority srcnat+10). The document's "dnat to <host A>"
//     works for one host and only while the NAT preserves ports.
//   - rc's "contacted" set is keyed by remote address and *external* port,
//     also learned after source NAT, for the same reason; it learns from
//     replies too (RFC 4787 §5: the internal endpoint has sent to that
//     address, whichever side started).
//   - Ports come from a block that moves on each rebinding (natPortBlock),
//     see Lab.NAT. sym uses "masquerade random", which skips the kernel's
//     reuse of an existing mapping for the same source (EIM) and draws a
//     random port per new destination (APDM).
//   - Non-TCP/UDP traffic (ICMP echo) gets a plain masquerade: a port range
//     is only valid after a transport protocol match.
//   - The forward chain also accepts LAN to LAN: with br_netfilter loaded,
//     frames bridged between two hosts behind the NAT traverse it.
//
// Limits: "update" refreshes a map element's timeout but never its data,
// so an eim entry whose conntrack flows have all expired (30 s without
// replies) can point at a stale internal endpoint for up to 120 s; with
// 4096 ports per block a new flow rarely lands on that port. Mapping
// lifetimes are conntrack's: 30 s for flows never answered, 120 s for
// answered ones.
func natRuleset(kind NATKind, policy InputPolicy, lo, hi int) string {
	random := ""
	if kind.Mapping() != EIM {
		random = " random"
	}
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("# peerline lab NAT: kind %s (%s/%s), input policy %s, ports %d-%d", kind, kind.Mapping(), kind.Filtering(), policy, lo, hi)
	p("table ip lab")
	p("delete table ip lab")
	p("table ip lab {")
	cone := kind == FullCone || kind == RestrictedCone
	if cone {
		// Timeouts follow conntrack's UDP stream timeout; outbound
		// packets refresh them (RFC 4787 REQ-6).
		p("  map eim { type inet_service : ipv4_addr . inet_service; flags dynamic,timeout; timeout 120s; }")
	}
	if kind == RestrictedCone {
		p("  set contacted { type ipv4_addr . inet_service; flags dynamic,timeout; timeout 120s; }")
	}
	p("  chain pre {")
	p("    type nat hook prerouting priority dstnat; policy accept;")
	switch kind {
	case FullCone:
		p("    iifname %q dnat ip to udp dport map @eim", natWANIf)
	case RestrictedCone:
		p("    iifname %q ip saddr . udp dport @contacted dnat ip to udp dport map @eim", natWANIf)
	}
	p("  }")
	p("  chain post {")
	p("    type nat hook postrouting priority srcnat; policy accept;")
	p("    oifname %q meta l4proto { tcp, udp } masquerade to :%d-%d%s", natWANIf, lo, hi, random)
	p("    oifname %q masquerade%s", natWANIf, random)
	p("  }")
	if cone {
		p("  chain learn {")
		p("    type filter hook postrouting priority srcnat + 10; policy accept;")
		// The internal endpoint is the source of whichever conntrack
		// direction the LAN host sends in.
		p("    oifname %q ct direction original update @eim { udp sport : ct original ip saddr . ct original proto-src }", natWANIf)
		p("    oifname %q ct direction reply update @eim { udp sport : ct reply ip saddr . ct reply proto-src }", natWANIf)
		if kind == RestrictedCone {
			p("    oifname %q update @contacted { ip daddr . udp sport }", natWANIf)
		}
		p("  }")
	}
	p("  chain inp {")
	p("    type filter hook input priority filter; policy %s;", policy)
	p("    ct state established,related accept")
	p("    iifname != %q accept", natWANIf)
	p("  }")
	p("  chain filt {")
	p("    type filter hook forward priority filter; policy drop;")
	p("    ct state established,related accept")
	p("    iifname %q oifname %q accept", natLANIf, natWANIf)
	p("    iifname %q oifname %q accept", natLANIf, natLANIf)
	p("    iifname %q ct status dnat accept", natWANIf)
	p("  }")
	p("}")
	return b.String()
}

// Kind is the NAT's kind.
func (n *NAT) Kind() NATKind { return n.kind }

// Policy is the NAT's input policy.
func (n *NAT) Policy() InputPolicy { return n.policy }

// LAN is the router's LAN address and prefix (the hosts' gateway).
func (n *NAT) LAN() netip.Prefix { return n.lan }

// WAN is the router's current public address.
func (n *NAT) WAN() netip.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.wan.Addr()
}

// Attach puts h behind the router: a veth from h's "eth0" (address addr,
// inside the LAN prefix) to a port of the LAN bridge, and h's default
// route via the router. h must not have an eth0 yet.
func (n *NAT) Attach(h *Host, addr netip.Prefix) error { return n.AttachAs(h, "eth0", addr) }

// AttachAs is Attach with h's end of the cable named ifname: a simulated
// Pi's eth0 is its phone port, its uplink has another name.
func (n *NAT) AttachAs(h *Host, ifname string, addr netip.Prefix) error {
	if !addr.IsValid() || !n.lan.Masked().Contains(addr.Addr()) || addr.Bits() != n.lan.Bits() || addr.Addr() == n.lan.Addr() ||
		addr.Addr() == n.lan.Masked().Addr() {
		return fmt.Errorf("NAT %s: host address %v: want a free address in %v with the same prefix length", n.name, addr, n.lan.Masked())
	}
	n.mu.Lock()
	port := fmt.Sprintf("l%d", n.lanPorts)
	n.lanPorts++
	n.mu.Unlock()
	if err := n.lab.Veth(n.Host, port, h, ifname); err != nil {
		return fmt.Errorf("NAT %s: %w", n.name, err)
	}
	if err := n.IP("link", "set", port, "master", natLANIf); err != nil {
		return fmt.Errorf("NAT %s: %w", n.name, err)
	}
	if err := h.Addr(ifname, addr.String()); err != nil {
		return err
	}
	if err := h.Route("default", "via", n.lan.Addr().String()); err != nil {
		return err
	}
	n.lab.log.Info("host behind NAT", "host", h.name, "nat", n.name, "addr", addr)
	return nil
}

// AddHost creates a host called name and puts it behind the router with
// address addr (see Attach).
func (n *NAT) AddHost(name string, addr netip.Prefix) (*Host, error) {
	h, err := n.lab.Host(name)
	if err != nil {
		return nil, err
	}
	if err := n.Attach(h, addr); err != nil {
		return nil, err
	}
	return h, nil
}

// FlushConntrack simulates a rebinding (router reboot, mapping timeout):
// every mapping is forgotten, and the next packet of each flow gets a new
// external port from the next port block.
func (n *NAT) FlushConntrack() error {
	n.mu.Lock()
	n.epoch++
	epoch := n.epoch
	n.mu.Unlock()
	if err := n.checkOpen(); err != nil {
		return err
	}
	// Rules first, so that no packet between the two steps is mapped
	// into the old block again.
	if err := n.loadRules(); err != nil {
		return fmt.Errorf("NAT %s: rebinding: %w", n.name, err)
	}
	if err := flushConntrack(n.Host); err != nil {
		return fmt.Errorf("NAT %s: flushing conntrack: %w", n.name, err)
	}
	n.lab.log.Info("NAT rebound", "host", n.name, "epoch", epoch)
	return nil
}

// ChangeWAN gives the router a new public address (an ISP's new lease)
// and flushes its mappings: existing flows continue from the new address
// with new ports.
func (n *NAT) ChangeWAN(addr netip.Prefix) error {
	if !addr.IsValid() || !addr.Addr().Is4() || addr.Overlaps(n.lan) {
		return fmt.Errorf("NAT %s: new WAN address %v: want an IPv4 address with prefix outside %v", n.name, addr, n.lan)
	}
	n.mu.Lock()
	old := n.wan
	n.mu.Unlock()
	// Delete before adding: deleting a primary address also deletes the
	// secondaries of its subnet. Removing the last address drops the
	// routes through wan, hence the replace.
	if err := n.IP("addr", "del", old.String(), "dev", natWANIf); err != nil {
		return err
	}
	if err := n.IP("addr", "add", addr.String(), "dev", natWANIf); err != nil {
		return err
	}
	if err := n.IP("route", "replace", "default", "dev", natWANIf); err != nil {
		return err
	}
	n.mu.Lock()
	n.wan = addr
	n.mu.Unlock()
	n.lab.log.Info("NAT WAN address changed", "host", n.name, "old", old, "new", addr)
	return n.FlushConntrack()
}

// PublicHost creates a host called name on segment seg (an *Internet or
// *Bridge) with one or more public addresses on its "eth0" and an on-link
// default route, so it reaches every address on the segment without a
// router: a VPS running rendezvousd, say, with two addresses so that
// clients can tell mapping behaviours apart.
func (l *Lab) PublicHost(name string, seg Segment, addrs ...netip.Prefix) (*Host, error) {
	if len(addrs) == 0 {
		return nil, fmt.Errorf("public host %s: no address given", name)
	}
	for _, a := range addrs {
		if !a.IsValid() || a.Addr() == a.Masked().Addr() {
			return nil, fmt.Errorf("public host %s: address %v: want a host address with prefix, such as 203.0.113.10/24", name, a)
		}
	}
	h, err := l.Host(name)
	if err != nil {
		return nil, err
	}
	if _, err := seg.Attach(h, "eth0", addrs[0].String()); err != nil {
		return nil, err
	}
	for _, a := range addrs[1:] {
		if err := h.Addr("eth0", a.String()); err != nil {
			return nil, err
		}
	}
	if err := h.Route("default", "dev", "eth0"); err != nil {
		return nil, err
	}
	return h, nil
}
