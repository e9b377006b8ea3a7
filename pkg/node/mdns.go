package node

import (
	"context"
	"strings"

	"github.com/peerline/peerline/pkg/mdns"
)

// runMDNS answers "<name>.local" with the uplink's private addresses, so
// the owner finds the console from the home network; never on the phone
// port (the phones are told the Pi's address) nor on a tunnel's link.
func (nd *node) runMDNS(ctx context.Context) error {
	r, err := mdns.New(mdns.Options{
		Name:  func() string { return nd.cfg.Load().Name },
		Skip:  nd.notUplink,
		Watch: nd.ifs,
		Log:   nd.log.With("service", "mdns"),
	})
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

// notUplink reports whether the link ifname is the phone port or one of
// the tunnels' links: the console and mDNS answer on every other link.
func (nd *node) notUplink(ifname string) bool {
	c := nd.cfg.Load()
	return ifname == c.PhonePort || strings.HasPrefix(ifname, c.Prefix)
}
