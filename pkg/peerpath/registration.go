package peerpath

import (
	"net/netip"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
)

// Registration is this node's standing with one rendezvous server whose
// address resolved.
type Registration struct {
	Key  nodekey.Key
	Addr netip.AddrPort
	// Last is when the server last confirmed the registration (zero:
	// never); Registered whether that is recent enough to be found.
	Last       time.Time
	Registered bool
}

// Registrations lists the registrations with the resolved servers, in the
// order they resolved. A configured server missing here has not resolved.
func (m *Manager) Registrations() []Registration {
	now := time.Now()
	var out []Registration
	for _, c := range m.clientList() {
		srv := c.Server()
		out = append(out, Registration{Key: srv.Key, Addr: srv.Addrs[0], Last: c.LastRegistered(), Registered: c.Registered(now)})
	}
	return out
}
