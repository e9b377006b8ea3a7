package rvserver

import "net/netip"

// HandlePacket answers one datagram from src that arrived on port (0: the
// main port, 1: the second), sending what it answers or relays with send:
// the server without its sockets, for tests that run it on an in-memory
// network (pkg/netsim). Safe for concurrent use, as Serve's readers are;
// b is not kept. Without Serve, nothing sweeps expired state.
func (s *Server) HandlePacket(b []byte, src netip.AddrPort, port int, send func(port int, to netip.AddrPort, b []byte)) {
	s.handle(b, src, port, &scratch{}, send)
}
