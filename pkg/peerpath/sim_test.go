package peerpath

import (
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/netsim"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
	"github.com/peerline/peerline/pkg/rvserver"
	"github.com/peerline/peerline/pkg/wgmux"
	"github.com/peerline/peerline/pkg/wgtunnel"
)

// The path tests run whole nodes (Manager, the real rendezvous clients
// and servers) on a netsim network inside a testing/synctest bubble: the
// clock is fake, every timer fires in order, and a scenario that takes a
// minute of path-manager time runs in milliseconds with the same outcome
// every run. What the simulation leaves out is WireGuard itself:
// simTunnel stands in for a device (endpoint, counters, roaming) and
// carries fake transport packets over the simulated network, so that a
// path that loses its NAT mapping loses the "media" too.

// hop is the one-way latency of every simulated link, as the lab's
// impairment of 10 ms.
const hop = 10 * time.Millisecond

// simWorld is one simulated internet with its rendezvous servers.
type simWorld struct {
	t       *testing.T
	net     *netsim.Network
	servers []*simServer
	// lazy: the tunnels made from now on send WireGuard's keepalive only
	// with data, as pkg/wgtunnel's do on an idle tunnel (there is no data
	// in these tests unless one sends it, so: one keepalive when the path
	// manager turns it on, with its handshake, and none after).
	lazy bool
}

func newSimWorld(t *testing.T, servers int) *simWorld {
	t.Helper()
	w := &simWorld{t: t, net: netsim.New(hop)}
	for i := range servers {
		a := netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + i)})
		s := &simServer{w: w, dir: t.TempDir(), addrs: [2]netip.AddrPort{netip.AddrPortFrom(a, 3478), netip.AddrPortFrom(a, 3479)}}
		s.start()
		t.Cleanup(s.stop)
		w.servers = append(w.servers, s)
	}
	return w
}

// simServer is rvserver on the simulated network.
type simServer struct {
	w     *simWorld
	dir   string
	addrs [2]netip.AddrPort
	key   nodekey.Key
	conns [2]*netsim.Conn
}

// start starts the server; again after stop, it is a restart: the same key
// (from its state directory), no registrations.
func (s *simServer) start() {
	t := s.w.t
	t.Helper()
	srv, err := rvserver.New(rvserver.Config{StateDir: s.dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.key = srv.PublicKey()
	var conns [2]*netsim.Conn
	ready := make(chan struct{}) // both ports bound
	send := func(port int, to netip.AddrPort, b []byte) { conns[port].WriteTo(b, to) }
	for port, a := range s.addrs {
		c, err := s.w.net.Listen(a, nil, func(b []byte, from netip.AddrPort) {
			<-ready
			srv.HandlePacket(b, from, port, send)
		})
		if err != nil {
			t.Fatal(err)
		}
		conns[port] = c
	}
	close(ready)
	s.conns = conns
}

func (s *simServer) stop() {
	for _, c := range s.conns {
		if c != nil {
			c.Close()
		}
	}
}

// simNode is a Pi: a Manager on a simulated socket, with simTunnels for
// its peers. It implements Net as wgmux.Mux does: WireGuard datagrams go
// to the peer's tunnel, the rest to the manager.
type simNode struct {
	w    *simWorld
	key  nodekey.Key
	pub  nodekey.Key
	conn *netsim.Conn
	mgr  *Manager

	handler atomic.Pointer[wgmux.Handler]
	mu      sync.Mutex
	relays  map[uint64]simRelay
	tunnels map[nodekey.Key]*simTunnel
	// sent counts datagrams to peers and relays (not registrations).
	sent    atomic.Int64
	stopped atomic.Bool

	stop func() // a power cut: no bye
	// dropIn, if set, drops the datagrams it returns true for before the
	// socket's reader sees them.
	dropIn atomic.Pointer[func(b []byte, from netip.AddrPort) bool]
	// slowTunnel, if not 0, is how long its tunnels' SetEndpoint takes
	// (a busy Pi's UAPI call), holding up the manager's goroutine.
	slowTunnel atomic.Int64
	// delayIn, if set, delays the datagrams it returns a delay for
	// before the socket's reader sees them (a busy Pi).
	delayIn atomic.Pointer[func(b []byte, from netip.AddrPort) time.Duration]
}

type simRelay struct {
	peer   nodekey.Key
	server netip.AddrPort
}

// node starts a node listening at addr on a host behind nat (nil: on the
// internet), with the world's servers.
func (w *simWorld) node(addr string, nat *netsim.NAT, opts func(*Options)) *simNode {
	t := w.t
	t.Helper()
	k, err := nodekey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	n := &simNode{w: w, key: k, pub: k.Public(), relays: map[uint64]simRelay{}, tunnels: map[nodekey.Key]*simTunnel{}}
	if n.conn, err = w.net.Listen(netip.MustParseAddrPort(addr), nat, n.receive); err != nil {
		t.Fatal(err)
	}
	o := Options{Mux: n, PrivateKey: k, Local: func() []netip.AddrPort { return []netip.AddrPort{n.conn.LocalAddr()} }}
	if testing.Verbose() && os.Getenv("PEERPATH_LOG") != "" {
		o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", addr)
	}
	for _, s := range w.servers {
		o.Servers = append(o.Servers, Server{Address: s.addrs[0].String(), Address2: s.addrs[1].String(), Key: s.key})
	}
	if opts != nil {
		opts(&o)
	}
	if n.mgr, err = New(o); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.mgr.Run(ctx) }()
	var once sync.Once
	n.stop = func() {
		once.Do(func() {
			n.stopped.Store(true)
			n.conn.Close()
			cancel()
			<-done
		})
	}
	t.Cleanup(n.stop)
	return n
}

// pair makes each node a peer of the other, as pairing leaves them.
func (w *simWorld) pair(a, b *simNode) {
	a.add(b)
	b.add(a)
}

// add makes peer one of n's peers, with a tunnel.
func (n *simNode) add(peer *simNode) *simTunnel {
	tun := &simTunnel{node: n, peer: peer.pub, endpoint: wgmux.PendingEndpoint, lazy: n.w.lazy}
	n.mu.Lock()
	n.tunnels[peer.pub] = tun
	n.mu.Unlock()
	n.mgr.Add(peer.pub, tun, nil, netip.AddrPort{})
	return tun
}

func (n *simNode) tunnel(peer *simNode) *simTunnel {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.tunnels[peer.pub]
}

func (n *simNode) status(peer *simNode) Status { return n.mgr.Status()[peer.pub] }

// Net, as wgmux.Mux.

func (n *simNode) SetHandler(h wgmux.Handler) { n.handler.Store(&h) }

func (n *simNode) WriteTo(b []byte, to netip.AddrPort) error {
	n.sent.Add(1)
	return n.conn.WriteTo(b, to)
}

func (n *simNode) WriteRelay(b []byte, session uint64, server netip.AddrPort) error {
	n.sent.Add(1)
	return n.conn.WriteTo(rendezvous.AppendRelay(nil, session, b), server)
}

func (n *simNode) AddRelay(peer nodekey.Key, session uint64, server netip.AddrPort) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.relays[session] = simRelay{peer: peer, server: server}
}

func (n *simNode) PacketConn() net.PacketConn { return n.conn.PacketConn() }

// receive is the socket's reader, dispatching as wgmux.Mux does.
func (n *simNode) receive(b []byte, from netip.AddrPort) {
	h := n.handler.Load()
	if len(b) < 4 || h == nil {
		return
	}
	if drop := n.dropIn.Load(); drop != nil && (*drop)(b, from) {
		return
	}
	if delay := n.delayIn.Load(); delay != nil {
		if d := (*delay)(b, from); d > 0 {
			time.AfterFunc(d, func() { n.handleIn(b, from, h) })
			return
		}
	}
	n.handleIn(b, from, h)
}

// handleIn dispatches a datagram as wgmux.Mux does.
func (n *simNode) handleIn(b []byte, from netip.AddrPort, h *wgmux.Handler) {
	if b[0] != rendezvous.Magic {
		if typ, k, size, ok := simSender(b); ok {
			if tun := n.tunnelOf(k); tun != nil {
				tun.receive(typ, size, from.String())
			}
		}
		return
	}
	if rendezvous.Type(b[2]) != rendezvous.TypeRelay {
		(*h)(b, from, 0)
		return
	}
	session, payload, err := rendezvous.ParseRelay(b)
	if err != nil || len(payload) == 0 {
		return
	}
	n.mu.Lock()
	r, ok := n.relays[session]
	n.mu.Unlock()
	if !ok {
		return
	}
	if payload[0] == rendezvous.Magic {
		(*h)(payload, from, session)
		return
	}
	if typ, _, size, ok := simSender(payload); ok {
		if tun := n.tunnelOf(r.peer); tun != nil {
			tun.receive(typ, size, wgmux.RelayEndpoint(session, from))
		}
	}
}

func (n *simNode) tunnelOf(k nodekey.Key) *simTunnel {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.tunnels[k]
}

// simTunnel stands in for a WireGuard device with one peer: it sends fake
// WireGuard packets (a type, then the sender's key, so the receiver can
// tell whose) to its endpoint, counts bytes both ways, answers a
// handshake initiation, and roams to where packets come from, as
// WireGuard does. Data sent before a handshake starts one.
type simTunnel struct {
	node *simNode
	peer nodekey.Key

	mu          sync.Mutex
	endpoint    string
	keepaliveOn bool
	lastTx      time.Time
	lastAuth    time.Time // the last packet decrypted
	rx, tx      uint64
	handshake   time.Time
	// lastRx and maxGap measure interruptions of incoming data.
	lastRx time.Time
	maxGap time.Duration
	// broken: the session's keys are not the peer's (as after crossed
	// initiations), so transport packets from it are not decrypted,
	// until a handshake makes a new session.
	broken bool
	// wedged: the device neither sends nor takes anything (a hung
	// wireguard-go), while the node's manager still answers probes.
	wedged      bool
	rehandshake int  // Rehandshake calls
	lazy        bool // simWorld.lazy
}

// breakSession makes the session between a and b undecryptable both
// ways, until either starts a new handshake.
func breakSession(a, b *simNode) {
	for _, t := range []*simTunnel{a.tunnel(b), b.tunnel(a)} {
		t.mu.Lock()
		t.broken = true
		t.mu.Unlock()
	}
}

func (t *simTunnel) Rehandshake() error {
	t.mu.Lock()
	t.rehandshake++
	t.mu.Unlock()
	t.write(simInitiation, simInitiationLen)
	return nil
}

func (t *simTunnel) rehandshakes() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rehandshake
}

// WireGuard's message types and handshake sizes.
const (
	simInitiation    = 1
	simResponse      = 2
	simTransport     = 4
	simInitiationLen = 148
	simResponseLen   = 92
	simHeader        = 4 + nodekey.Len
	// rekeyAfter is when WireGuard starts a new handshake on a session
	// in use.
	rekeyAfter = 2 * time.Minute
)

// simSender reads a fake WireGuard packet: its type, its sender, and its
// length as WireGuard counts it (a keepalive is shorter than the header).
func simSender(b []byte) (typ uint32, k nodekey.Key, n int, ok bool) {
	if len(b) < simHeader {
		return 0, k, 0, false
	}
	copy(k[:], b[4:])
	w := binary.LittleEndian.Uint32(b)
	return w & 0xff, k, int(w >> 8), true
}

func (t *simTunnel) SetEndpoint(ep string) error {
	if d := time.Duration(t.node.slowTunnel.Load()); d > 0 {
		time.Sleep(d)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.endpoint = ep
	return nil
}

// StartKeepalive turns WireGuard's persistent keepalive on: one now
// (with a handshake first if none is up), then one whenever nothing was
// sent or received for keepaliveEvery. (As in wireguard-go, whose timer
// any authenticated packet restarts: of two ends with the same interval,
// soon only one sends keepalives.)
func (t *simTunnel) StartKeepalive() error {
	t.mu.Lock()
	on := t.keepaliveOn
	t.keepaliveOn = true
	t.mu.Unlock()
	t.send(keepaliveLen)
	if !on && !t.lazy {
		t.keepaliveAfter(keepaliveEvery)
	}
	return nil
}

const keepaliveEvery = 25 * time.Second

func (t *simTunnel) keepaliveAfter(d time.Duration) {
	time.AfterFunc(d, func() {
		if t.node.stopped.Load() {
			return
		}
		t.mu.Lock()
		idle := time.Since(t.lastTx)
		if !t.lastAuth.IsZero() {
			idle = min(idle, time.Since(t.lastAuth))
		}
		t.mu.Unlock()
		if idle >= keepaliveEvery {
			t.send(keepaliveLen)
			idle = 0
		}
		t.keepaliveAfter(keepaliveEvery - idle)
	})
}

func (t *simTunnel) Status() (wgtunnel.Status, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return wgtunnel.Status{Endpoint: t.endpoint, LastHandshake: t.handshake, RxBytes: t.rx, TxBytes: t.tx}, nil
}

// send sends an n-byte transport packet to the endpoint, after a
// handshake initiation if the session is missing or old.
func (t *simTunnel) send(n int) {
	t.mu.Lock()
	fresh := !t.handshake.IsZero() && time.Since(t.handshake) < rekeyAfter
	t.mu.Unlock()
	if !fresh {
		t.write(simInitiation, simInitiationLen)
	}
	t.write(simTransport, n)
}

func (t *simTunnel) write(typ uint32, n int) {
	t.mu.Lock()
	if t.wedged {
		t.mu.Unlock()
		return
	}
	ep := t.endpoint
	t.tx += uint64(n)
	t.lastTx = time.Now()
	t.mu.Unlock()
	b := make([]byte, max(n, simHeader))
	binary.LittleEndian.PutUint32(b, typ|uint32(n)<<8)
	copy(b[4:], t.node.pub[:])
	if ap, err := netip.ParseAddrPort(ep); err == nil {
		t.node.WriteTo(b, ap)
		return
	}
	t.node.mu.Lock()
	var session uint64
	var server netip.AddrPort
	for s, r := range t.node.relays {
		if r.peer == t.peer && wgmux.RelayEndpoint(s, r.server) == ep {
			session, server = s, r.server
		}
	}
	t.node.mu.Unlock()
	if session != 0 {
		t.node.WriteRelay(b, session, server)
	}
}

func (t *simTunnel) receive(typ uint32, n int, from string) {
	now := time.Now()
	t.mu.Lock()
	if t.wedged || typ == simTransport && t.broken {
		t.mu.Unlock()
		return // not decrypted: not counted, no roaming
	}
	t.rx += uint64(n)
	t.endpoint = from
	t.lastAuth = now
	switch typ {
	case simInitiation, simResponse:
		t.handshake, t.broken = now, false
	case simTransport:
		if !t.lastRx.IsZero() {
			t.maxGap = max(t.maxGap, now.Sub(t.lastRx))
		}
		t.lastRx = now
	}
	t.mu.Unlock()
	if typ == simInitiation {
		t.write(simResponse, simResponseLen)
	}
}

// gap returns the longest interruption of incoming traffic since the last
// call (counting the one still going on), and starts measuring anew.
func (t *simTunnel) gap() time.Duration {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	g := max(t.maxGap, now.Sub(t.lastRx))
	t.maxGap = 0
	return g
}

func (t *simTunnel) rxBytes() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rx
}

// media sends a call's packets (172 bytes every 20 ms) both ways between
// a and b until the returned stop is called.
func media(a, b *simNode) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				a.tunnel(b).send(172)
				b.tunnel(a).send(172)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// currentEndpoint is where the tunnel sends.
func (t *simTunnel) currentEndpoint() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.endpoint
}
