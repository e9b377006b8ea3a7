// Package netifs lists the machine's network interfaces with their
// addresses, for the services that follow the uplink's addresses (the
// console on the uplink, the mDNS responder); Watcher keeps the list
// current from the kernel's change events.
//
// The standard library's way, net.Interfaces and then Addrs on each,
// asks the kernel for every address of the machine once per interface.
// A node with 253 peers has a link per peer in its namespace, so that was
// 250-odd full address dumps per look, twice every 5 s, and the largest
// share of an idle node's CPU. List asks twice in all (links, then
// addresses) and leaves out the links the caller skips before collecting
// their addresses.
package netifs

import "net/netip"

// Interface is one network interface and its addresses.
type Interface struct {
	Index int
	Name  string
	Up    bool
	Loop  bool
	Addrs []netip.Addr
}

// List returns the interfaces whose names skip does not reject (nil skips
// none), each with its addresses.
func List(skip func(name string) bool) ([]Interface, error) {
	if skip == nil {
		skip = func(string) bool { return false }
	}
	return list(skip)
}
