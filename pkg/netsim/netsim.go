// Package netsim is an in-memory IPv4 UDP network with NAT routers that map
// and filter as RFC 4787 describes, so that hole punching, relaying and NAT
// rebinding can be tested without root, sockets or real time (the model is
// tailscale's tstest/natlab). Delivery uses only timers, channels and
// briefly held locks: under testing/synctest a whole network of nodes runs
// on the bubble's fake clock, and a test that sleeps a minute takes none.
//
// Addressing is flat: a socket's address is its host's address and port.
// Hosts behind a NAT are reachable only from behind the same NAT (a LAN) or
// through the NAT's mappings on its WAN address; give each LAN its own
// private prefix.
package netsim

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Mapping is how a NAT reuses its external ports (RFC 4787 §4.1).
type Mapping int

const (
	// MapEndpointIndependent keeps one external port per inside
	// address and port, whatever the destination ("cone").
	MapEndpointIndependent Mapping = iota
	// MapAddressAndPortDependent takes a new external port for every
	// destination address and port ("symmetric").
	MapAddressAndPortDependent
)

// Filtering is which outside senders a NAT lets through a mapping (RFC 4787
// §5).
type Filtering int

const (
	// FilterEndpointIndependent lets anyone through ("full cone").
	FilterEndpointIndependent Filtering = iota
	// FilterAddressDependent lets through hosts the inside sent to
	// ("restricted cone").
	FilterAddressDependent
	// FilterAddressAndPortDependent lets through only the addresses and
	// ports the inside sent to ("port restricted").
	FilterAddressAndPortDependent
)

// ErrClosed is returned by writes on a closed socket.
var ErrClosed = errors.New("netsim: socket closed")

// Network is one simulated internet. Its zero value is not usable; call New.
type Network struct {
	latency time.Duration

	mu      sync.Mutex
	conns   map[netip.AddrPort]*Conn
	nats    map[netip.Addr]*NAT // by WAN address
	blocked func(from, to netip.AddrPort) bool
	dropped int
}

// New makes a network whose every hop (socket to socket, through any NATs)
// takes latency.
func New(latency time.Duration) *Network {
	return &Network{latency: latency, conns: map[netip.AddrPort]*Conn{}, nats: map[netip.Addr]*NAT{}}
}

// NAT is a home router: hosts behind it share its WAN address. It does not
// hairpin (a datagram from behind it to its own WAN address is dropped).
type NAT struct {
	net       *Network
	mapping   Mapping
	filtering Filtering

	// Guarded by net.mu.
	wan      netip.Addr
	nextPort uint16
	out      map[natKey]*natEntry
	in       map[uint16]*natEntry
	// acceptInput, unreplied and taken: see AcceptInput. taken holds
	// when each entry was last refreshed.
	acceptInput bool
	unreplied   time.Duration
	taken       map[takenKey]time.Time
}

// takenKey is an outside sender and the NAT port it sent to.
type takenKey struct {
	remote netip.AddrPort
	port   uint16
}

type natKey struct {
	inside netip.AddrPort
	dst    netip.AddrPort // zero for endpoint-independent mapping
}

type natEntry struct {
	inside netip.AddrPort
	port   uint16
	sentTo map[netip.AddrPort]bool
	// clash: a mapping for one destination only, made because the
	// router held that destination on the usual port (AcceptInput); it
	// is never answered, and goes after the unreplied timeout without
	// datagrams out (lastOut).
	clash   bool
	lastOut time.Time
}

// NewNAT adds a NAT router with WAN address wan.
func (n *Network) NewNAT(wan netip.Addr, m Mapping, f Filtering) *NAT {
	n.mu.Lock()
	defer n.mu.Unlock()
	nat := &NAT{net: n, mapping: m, filtering: f, wan: wan, nextPort: 40000}
	nat.resetLocked()
	n.nats[wan] = nat
	return nat
}

func (nat *NAT) resetLocked() {
	nat.out, nat.in = map[natKey]*natEntry{}, map[uint16]*natEntry{}
	nat.taken = map[takenKey]time.Time{}
}

// AcceptInput makes the router take for itself every datagram that no
// mapping lets through, as a Linux router whose input policy accepts does:
// connection tracking then holds the sender and the port it sent to, so
// when a host inside later sends to that sender, the mapping it would use
// (same port) clashes, and that destination gets a new external port,
// which the sender does not know. Two hosts behind such routers that punch
// towards each other must each send before the other's first datagram
// arrives. What the router holds goes, as conntrack's unreplied entries
// do, after UnrepliedTimeout without a datagram refreshing it: the held
// sender's datagrams refresh its entry, the host's datagrams out the
// new port's mapping.
func (nat *NAT) AcceptInput() {
	nat.net.mu.Lock()
	defer nat.net.mu.Unlock()
	nat.acceptInput = true
	if nat.unreplied == 0 {
		nat.unreplied = UnrepliedTimeout
	}
}

// UnrepliedTimeout is how long an AcceptInput router keeps what it holds:
// Linux's nf_conntrack_udp_timeout default.
const UnrepliedTimeout = 30 * time.Second

// SetUnrepliedTimeout changes how long an AcceptInput router keeps what it
// holds (OpenWrt and other router firmware set conntrack's to 60 s).
func (nat *NAT) SetUnrepliedTimeout(d time.Duration) {
	nat.net.mu.Lock()
	defer nat.net.mu.Unlock()
	nat.unreplied = d
}

// heldLocked reports whether the router holds remote → port (AcceptInput),
// forgetting an entry that expired.
func (nat *NAT) heldLocked(remote netip.AddrPort, port uint16, now time.Time) bool {
	k := takenKey{remote: remote, port: port}
	at, ok := nat.taken[k]
	if ok && now.Sub(at) >= nat.unreplied {
		delete(nat.taken, k)
		return false
	}
	return ok
}

// Flush forgets every mapping, as a router whose connection tracking was
// flushed (or that rebooted): the next packets out get new external ports.
func (nat *NAT) Flush() {
	nat.net.mu.Lock()
	defer nat.net.mu.Unlock()
	nat.resetLocked()
	nat.nextPort += 1000 // new ports, not the old ones again
}

// ChangeWAN gives the router a new WAN address, forgetting every mapping.
func (nat *NAT) ChangeWAN(wan netip.Addr) {
	nat.net.mu.Lock()
	defer nat.net.mu.Unlock()
	delete(nat.net.nats, nat.wan)
	nat.wan = wan
	nat.net.nats[wan] = nat
	nat.resetLocked()
}

// WAN is the router's current WAN address.
func (nat *NAT) WAN() netip.Addr {
	nat.net.mu.Lock()
	defer nat.net.mu.Unlock()
	return nat.wan
}

// outboundLocked maps inside→dst, creating the mapping if needed, and
// returns the source address the outside sees.
func (nat *NAT) outboundLocked(inside, dst netip.AddrPort) netip.AddrPort {
	k := natKey{inside: inside}
	if nat.mapping == MapAddressAndPortDependent {
		k.dst = dst
	}
	now := time.Now()
	e := nat.out[k]
	if c := nat.out[natKey{inside: inside, dst: dst}]; c != nil && c.clash {
		if now.Sub(c.lastOut) < nat.unreplied {
			e, k = c, natKey{inside: inside, dst: dst}
		} else {
			delete(nat.out, natKey{inside: inside, dst: dst})
			delete(nat.in, c.port)
		}
	}
	clash := false
	if e != nil && !e.clash && !e.sentTo[dst] && nat.heldLocked(dst, e.port, now) {
		// The router holds dst → this port already (AcceptInput).
		k.dst = dst
		e = nat.out[k]
		clash = true
	}
	if e == nil {
		nat.nextPort++
		e = &natEntry{inside: inside, port: nat.nextPort, sentTo: map[netip.AddrPort]bool{}, clash: clash}
		nat.out[k], nat.in[e.port] = e, e
	}
	e.sentTo[dst] = true
	e.lastOut = now
	return netip.AddrPortFrom(nat.wan, e.port)
}

// inboundLocked returns the inside address a packet from src to the NAT's
// port goes to, or false if the NAT drops it.
func (nat *NAT) inboundLocked(src netip.AddrPort, port uint16) (netip.AddrPort, bool) {
	e := nat.in[port]
	if e == nil {
		return netip.AddrPort{}, false
	}
	switch nat.filtering {
	case FilterAddressDependent:
		for a := range e.sentTo {
			if a.Addr() == src.Addr() {
				return e.inside, true
			}
		}
		return netip.AddrPort{}, false
	case FilterAddressAndPortDependent:
		return e.inside, e.sentTo[src]
	}
	return e.inside, true
}

// Block makes the network drop every datagram for which drop(from, to) is
// true, from and to as the sender wrote them (before any NAT): a firewall
// between two sites, a server that is unreachable. nil blocks nothing.
func (n *Network) Block(drop func(from, to netip.AddrPort) bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.blocked = drop
}

// Dropped counts datagrams the network dropped (no route, no mapping, a
// NAT's filter, a block, a full socket buffer).
func (n *Network) Dropped() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.dropped
}

// queueLen is a socket's receive buffer, in datagrams.
const queueLen = 1024

// Conn is a UDP socket on the network. One goroutine per socket hands
// datagrams to its handler in the order they arrive, as a socket's one
// reader would.
type Conn struct {
	net    *Network
	addr   netip.AddrPort
	behind *NAT
	q      chan datagram
	done   chan struct{}
	once   sync.Once
}

type datagram struct {
	b    []byte
	from netip.AddrPort
}

// Listen binds addr, on a host behind nat (nil: on the internet, reachable
// by all), and calls h with each datagram that arrives until Close. h runs
// on the socket's goroutine; it may keep b.
func (n *Network) Listen(addr netip.AddrPort, nat *NAT, h func(b []byte, from netip.AddrPort)) (*Conn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.conns[addr]; ok {
		return nil, errors.New("netsim: address in use: " + addr.String())
	}
	c := &Conn{net: n, addr: addr, behind: nat, q: make(chan datagram, queueLen), done: make(chan struct{})}
	n.conns[addr] = c
	go c.run(h)
	return c, nil
}

func (c *Conn) run(h func([]byte, netip.AddrPort)) {
	for {
		select {
		case <-c.done:
			return
		case d := <-c.q:
			h(d.b, d.from)
		}
	}
}

// LocalAddr is the socket's address (inside its NAT, if behind one).
func (c *Conn) LocalAddr() netip.AddrPort { return c.addr }

// Close unbinds the socket and stops its goroutine; datagrams in flight to
// it are lost. Closing twice is harmless.
func (c *Conn) Close() error {
	c.once.Do(func() {
		c.net.mu.Lock()
		if c.net.conns[c.addr] == c {
			delete(c.net.conns, c.addr)
		}
		c.net.mu.Unlock()
		close(c.done)
	})
	return nil
}

// WriteTo sends a copy of b to to. Like UDP, it reports no loss. The
// sender's NAT maps the datagram as it leaves; the receiver's NAT filters
// it as it arrives, a hop later (so two probes that cross both pass a
// port-restricted NAT, as on a real line).
func (c *Conn) WriteTo(b []byte, to netip.AddrPort) error {
	select {
	case <-c.done:
		return ErrClosed
	default:
	}
	n := c.net
	n.mu.Lock()
	src, lan, ok := n.outboundLocked(c, to)
	if !ok {
		n.dropped++
	}
	n.mu.Unlock()
	if !ok {
		return nil
	}
	b = append([]byte(nil), b...)
	time.AfterFunc(n.latency, func() { n.deliver(to, lan, datagram{b: b, from: src}) })
	return nil
}

// outboundLocked is a datagram from c to to leaving c's site: the source
// address it will arrive from, and whether it stays on c's LAN.
func (n *Network) outboundLocked(c *Conn, to netip.AddrPort) (src netip.AddrPort, lan *NAT, ok bool) {
	if n.blocked != nil && n.blocked(c.addr, to) {
		return src, nil, false
	}
	if d := n.conns[to]; d != nil && d.behind != nil && d.behind == c.behind {
		return c.addr, c.behind, true
	}
	if c.behind != nil {
		return c.behind.outboundLocked(c.addr, to), nil, true
	}
	return c.addr, nil, true
}

// deliver hands d, sent to to (on the LAN behind lan, if set), to the
// socket it reaches, if any.
func (n *Network) deliver(to netip.AddrPort, lan *NAT, d datagram) {
	n.mu.Lock()
	var c *Conn
	switch nat := n.nats[to.Addr()]; {
	case lan != nil:
		if c = n.conns[to]; c != nil && c.behind != lan {
			c = nil
		}
	case nat != nil && d.from.Addr() == nat.wan:
		// From behind the NAT to its own WAN address: routers that
		// hairpin are many but not all; these do not.
	case nat != nil:
		if inside, ok := nat.inboundLocked(d.from, to.Port()); ok {
			c = n.conns[inside]
		} else if nat.acceptInput {
			nat.taken[takenKey{remote: d.from, port: to.Port()}] = time.Now()
		}
	default:
		if c = n.conns[to]; c != nil && c.behind != nil {
			c = nil // a private address on another LAN
		}
	}
	if c == nil {
		n.dropped++
	}
	n.mu.Unlock()
	if c == nil {
		return
	}
	select {
	case c.q <- d:
	default:
		n.drop()
	}
}

func (n *Network) drop() {
	n.mu.Lock()
	n.dropped++
	n.mu.Unlock()
}

// PacketConn adapts c to net.PacketConn for writers (a rendezvous client):
// ReadFrom fails, since datagrams go to the handler.
func (c *Conn) PacketConn() net.PacketConn { return packetConn{c} }

type packetConn struct{ c *Conn }

func (p packetConn) ReadFrom([]byte) (int, net.Addr, error) {
	return 0, nil, errors.New("netsim: datagrams go to the socket's handler")
}

func (p packetConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, errors.New("netsim: not a UDP address: " + addr.String())
	}
	ap := ua.AddrPort()
	if err := p.c.WriteTo(b, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (p packetConn) Close() error { return nil }
func (p packetConn) LocalAddr() net.Addr {
	return net.UDPAddrFromAddrPort(p.c.addr)
}
func (p packetConn) SetDeadline(time.Time) error      { return nil }
func (p packetConn) SetReadDeadline(time.Time) error  { return nil }
func (p packetConn) SetWriteDeadline(time.Time) error { return nil }
