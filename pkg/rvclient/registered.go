package rvclient

import (
	"net/netip"
	"time"
)

// Observed is this node's address and port as the server saw them at the
// last answered register (invalid before one): behind a NAT, the public
// mapping.
func (c *Client) Observed() netip.AddrPort {
	if a := c.observed.Load(); a != nil {
		return *a
	}
	return netip.AddrPort{}
}

// LastRegistered is when the server last confirmed this node's
// registration on either port; zero if it never did.
func (c *Client) LastRegistered() time.Time {
	if ns := c.registered.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Registered reports whether the registration is fresh at now: confirmed
// within three refresh intervals, so one lost refresh does not count as
// losing the server.
func (c *Client) Registered(now time.Time) bool {
	last := c.LastRegistered()
	return !last.IsZero() && now.Sub(last) < 3*c.opt.Refresh
}

// Server is the server this client talks to.
func (c *Client) Server() Server { return c.srv }
