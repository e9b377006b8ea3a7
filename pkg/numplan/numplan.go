// Package numplan is the 10.i.s.p numbering plan of a peerline node and the
// local<->wire address map used inside tunnels.
//
// On a node, 10.0.s.p is local line s and 10.i.s.p is line s at the remote
// node this node calls i. Indices are local to each node, so inside a tunnel
// addresses are written relative to the two ends instead: 10.255.s.p is line s
// at the sender of a packet and 10.254.s.p is line s at its receiver. The map
// is 1:1 and stateless, which is why a restarted daemon has nothing to recover.
// It speaks only for the two ends of a tunnel: a third node's address
// 10.k.s.p has no wire literal. No IP header needs one (a packet for node k
// takes tunnel k), and in SIP, where a blind transfer writes one into its
// Refer-To, the rewriter turns it into a host name both ends can resolve
// (sipmsg.Third, rewrite.ThirdNodes).
//
// The package is pure (standard library only) and allocation-free on the
// [4]byte forms, because the rewriter calls it for every packet.
package numplan

import (
	"fmt"
	"net/netip"
)

const (
	// MinNode and MaxNode bound a remote node index i. 0 is this node, and
	// 254/255 are reserved for the wire.
	MinNode = 1
	MaxNode = 253
	// MinLine and MaxLine bound a phone line s.
	MinLine = 1
	MaxLine = 254

	// WireSender and WireReceiver are the second octets that mean "at the
	// sender" and "at the receiver" of a packet inside a tunnel.
	WireSender   = 255
	WireReceiver = 254

	// HostPhone and HostPi are the last octet of a line's /30: the phone and
	// the Pi's side (the phone's gateway).
	HostPhone = 1
	HostPi    = 2
)

// ValidNode reports whether i can be a remote node index.
func ValidNode(i int) bool { return i >= MinNode && i <= MaxNode }

// ValidLine reports whether s can be a phone line.
func ValidLine(s int) bool { return s >= MinLine && s <= MaxLine }

// Addr returns 10.i.s.p.
func Addr(i, s, p uint8) netip.Addr { return netip.AddrFrom4([4]byte{10, i, s, p}) }

// Phone returns the address of phone line s at node i (0 for this node).
func Phone(i, s uint8) netip.Addr { return Addr(i, s, HostPhone) }

// LocalPhone returns s for this node's phone 10.0.s.1 (an IPv4-mapped
// form too), and false for any other address.
func LocalPhone(a netip.Addr) (s int, ok bool) {
	i, l, p, ok := Split(a.Unmap())
	if !ok || i != 0 || p != HostPhone || !ValidLine(int(l)) {
		return 0, false
	}
	return int(l), true
}

// LineGateway returns the Pi's address on local line s, 10.0.s.2.
func LineGateway(s uint8) netip.Addr { return Addr(0, s, HostPi) }

// LinePrefix returns the /30 of local line s, 10.0.s.0/30.
func LinePrefix(s uint8) netip.Prefix { return netip.PrefixFrom(Addr(0, s, 0), 30) }

// NodePrefix returns 10.i.0.0/16, everything reached through tunnel i.
func NodePrefix(i uint8) netip.Prefix { return netip.PrefixFrom(Addr(i, 0, 0), 16) }

// WirePrefixes are the two /16s that appear inside every tunnel; they are the
// WireGuard allowed IPs of every peer.
var WirePrefixes = []netip.Prefix{
	netip.PrefixFrom(Addr(WireReceiver, 0, 0), 16),
	netip.PrefixFrom(Addr(WireSender, 0, 0), 16),
}

// Split returns i, s, p of a 10.i.s.p address; ok is false outside 10/8.
func Split(a netip.Addr) (i, s, p uint8, ok bool) {
	if !a.Is4() {
		return 0, 0, 0, false
	}
	b := a.As4()
	if b[0] != 10 {
		return 0, 0, 0, false
	}
	return b[1], b[2], b[3], true
}

// ToWire maps an address in a packet leaving through tunnel peer:
// 10.0.s.p -> 10.255.s.p and 10.peer.s.p -> 10.254.s.p. Other addresses are
// returned unchanged with changed == false.
func ToWire(a [4]byte, peer uint8) (out [4]byte, changed bool) {
	if a[0] != 10 {
		return a, false
	}
	switch a[1] {
	case 0:
		a[1] = WireSender
		return a, true
	case peer:
		if peer == 0 || peer >= WireReceiver {
			return a, false
		}
		a[1] = WireReceiver
		return a, true
	}
	return a, false
}

// FromWire maps an address in a packet arriving from tunnel peer:
// 10.255.s.p -> 10.peer.s.p and 10.254.s.p -> 10.0.s.p. Other addresses are
// returned unchanged with changed == false.
func FromWire(a [4]byte, peer uint8) (out [4]byte, changed bool) {
	if a[0] != 10 {
		return a, false
	}
	switch a[1] {
	case WireSender:
		if peer == 0 || peer >= WireReceiver {
			return a, false
		}
		a[1] = peer
		return a, true
	case WireReceiver:
		a[1] = 0
		return a, true
	}
	return a, false
}

// Direction says which way a packet crosses a tunnel.
type Direction uint8

const (
	// Outbound packets leave this node through a tunnel (local -> wire).
	Outbound Direction = iota
	// Inbound packets arrive at this node from a tunnel (wire -> local).
	Inbound
)

func (d Direction) String() string {
	switch d {
	case Outbound:
		return "outbound"
	case Inbound:
		return "inbound"
	}
	return fmt.Sprintf("Direction(%d)", uint8(d))
}

// Map applies ToWire or FromWire according to d.
func Map(a [4]byte, peer uint8, d Direction) ([4]byte, bool) {
	if d == Inbound {
		return FromWire(a, peer)
	}
	return ToWire(a, peer)
}

// MapAddr is Map on a netip.Addr; non-IPv4 addresses are returned unchanged.
func MapAddr(a netip.Addr, peer uint8, d Direction) (netip.Addr, bool) {
	if !a.Is4() {
		return a, false
	}
	b, changed := Map(a.As4(), peer, d)
	return netip.AddrFrom4(b), changed
}
