//go:build linux

package lab

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// flushConntrack empties the conntrack table of h's namespace through
// ctnetlink (what `conntrack -F` does), so the lab does not need the
// conntrack tool. The netlink socket is opened in the namespace without
// moving any thread.
func flushConntrack(h *Host) error {
	ns, err := netns.GetFromPath(h.NSPath())
	if err != nil {
		return fmt.Errorf("opening namespace %s: %w", h.ns, err)
	}
	defer ns.Close()
	nh, err := netlink.NewHandleAt(ns, unix.NETLINK_NETFILTER)
	if err != nil {
		return fmt.Errorf("opening netfilter netlink in %s: %w", h.ns, err)
	}
	defer nh.Close()
	if err := nh.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
		return fmt.Errorf("flushing conntrack in %s (kernel needs nf_conntrack_netlink): %w", h.ns, err)
	}
	return nil
}
