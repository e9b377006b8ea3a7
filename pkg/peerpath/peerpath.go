// Package peerpath finds and keeps a path to every paired peer: through
// the rendezvous servers it learns where the peer is, punches through both
// NATs with probes sent from the node's one tunnel socket (pkg/wgmux),
// falls back to the rendezvous relay when no direct path answers, keeps
// probing to move back to direct, and notices when a path dies (NAT
// rebinding, new WAN address) to find a new one without a restart.
//
// One goroutine (Run) owns every peer's state; the socket's reader, the
// rendezvous clients and the supervisor talk to it through channels, and
// readers get snapshots.
//
// Decisions are apart from I/O: a peer's state changes only on an event
// (an introduction, a probe or its answer, a registration's end, a tick
// with the tunnel's counters), each carrying its time, and it acts only
// through env (probes, relay sessions, introductions), its Tunnel and its
// Initiations. The socket is the Net interface. So the tests run whole
// nodes on pkg/netsim's in-memory NATs under testing/synctest
// (path_test.go) and one peer's decisions against a recorder
// (decide_test.go).
//
// Path choice, in order of what happens after an introduction:
//  1. the relay session from the introduction is usable at once: when the
//     peer has no working path, the tunnel starts on the relay, so the
//     first packet never waits for punching;
//  2. probes go to every endpoint the peer might be reachable at (its
//     mappings as both server ports saw them, its LAN addresses), several
//     times over a few seconds, and every probe is answered to the address
//     it actually came from (a symmetric NAT's mapping towards us differs
//     from the one the server saw);
//  3. the first answered probe makes that address the tunnel's endpoint;
//     WireGuard on the other side roams to it when our packets arrive
//     from there.
package peerpath

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
	"github.com/peerline/peerline/pkg/rvclient"
	"github.com/peerline/peerline/pkg/wgmux"
	"github.com/peerline/peerline/pkg/wgtunnel"
)

// Tunnel is the WireGuard device of one peer, as the manager drives it.
type Tunnel interface {
	// SetEndpoint points the device at endpoint (wgmux's forms).
	SetEndpoint(endpoint string) error
	// StartKeepalive turns the persistent keepalive on, which sends one
	// keepalive (and so a handshake, if none is up) at once.
	StartKeepalive() error
	Status() (wgtunnel.Status, error)
}

// Rehandshaker is a Tunnel that can start a new handshake at once
// (wgtunnel.Tunnel), which the manager does when the session stalls.
type Rehandshaker interface {
	Rehandshake() error
}

// Net is the node's one UDP socket as the manager uses it: a *wgmux.Mux,
// or an in-memory network in tests (as magicsock's TestOnlyPacketListener
// lets tailscale's tests run on simulated machines).
type Net interface {
	// SetHandler receives every datagram that is not WireGuard's:
	// rendezvous messages and probes, direct or through a relay session.
	SetHandler(h wgmux.Handler)
	WriteTo(b []byte, to netip.AddrPort) error
	// WriteRelay sends b through relay session at server.
	WriteRelay(b []byte, session uint64, server netip.AddrPort) error
	// AddRelay lets peer's tunnel use relay session at server.
	AddRelay(peer nodekey.Key, session uint64, server netip.AddrPort)
	// PacketConn is the socket for the rendezvous clients, write only.
	PacketConn() net.PacketConn
}

// Initiations is the control of one peer's WireGuard handshake
// initiations on the socket (a *wgmux.Bind).
type Initiations interface {
	HoldInitiations(d time.Duration)
	ResendHeld(endpoint string, maxAge time.Duration) (bool, error)
	CopyInitiation(to []netip.AddrPort, maxAge time.Duration) int
}

// Timing. The punch window is long enough for a few lost probes on a
// lossy line. An idle tunnel costs each node its own probe every 60 s and
// its answer to the peer's, and a quiet probe when the two fall together
// (idle.go); WireGuard's keepalive runs only while the tunnel carries data
// (pkg/wgtunnel), and the device parks when the session has expired. The
// goal is at most 0.8 packets per 10 s (pkg/peerlab BenchmarkIdleKeepalive
// measures it). A relayed one tries its few direct
// candidates every 20 s for two minutes after an introduction (a router's
// state may change soon after), then every 2 minutes; behind a NAT that
// maps per destination, where punching cannot work, every 2 minutes from
// the start.
const (
	punchWindow      = 3 * time.Second
	punchEvery       = 150 * time.Millisecond
	upgradeEvery     = 20 * time.Second
	upgradeFor       = 2 * time.Minute
	upgradeSlowly    = 2 * time.Minute
	directProbeEvery = 60 * time.Second
	tick             = 100 * time.Millisecond
	// A path is suspect when we sent but heard nothing for stallAfter; it
	// is dead when probes sent then are not answered within stallProbe.
	stallAfter = 750 * time.Millisecond
	stallProbe = 500 * time.Millisecond
	// sessionStall is how long the tunnel may send data and decrypt
	// nothing back, while the path answers probes, before the initiating
	// end starts a new handshake (WireGuard itself waits 15 s): a phone's
	// INVITE retransmitted at 3.5 s then finds a working session.
	sessionStall = 1500 * time.Millisecond
	// rehandshakeEvery is WireGuard's RekeyTimeout: it ignores a new
	// initiation sooner after the last.
	rehandshakeEvery = 5 * time.Second
	// A relayed path quiet for relayQuiet is probed, every
	// relayCheckEvery until it answers: twice more before onlineFor.
	relayQuiet      = 45 * time.Second
	relayCheckEvery = 5 * time.Second
	// checkEvery is how often the tunnel's counters are read.
	checkEvery = 250 * time.Millisecond
	// onlineFor is how long after the last sign of life a peer counts as
	// online: two WireGuard keepalives and a bit.
	onlineFor  = 60 * time.Second
	connectMin = time.Second
	connectMax = 30 * time.Second
	// introWait is how long a Connect waits for its introduction before
	// the server may be asked again. The server pushes the introduction
	// once, unacknowledged: when it is lost, asking again is the repair,
	// and the next ask waits for this (it was 5 s: a lost introduction
	// cost a join's first packet 5-6 s on a lossy link). An introduction
	// takes two round trips to the server at most (ours, then the peer's
	// answer to the server's Incoming).
	introWait       = 1500 * time.Millisecond
	heldMaxAge      = 4 * time.Second
	initiatorHold   = time.Second
	maxCandidates   = 12
	maxPendingProbe = 64
)

// Path is how a peer is reached.
type Path string

const (
	PathNone   Path = ""
	PathDirect Path = "direct"
	PathRelay  Path = "relay"
)

// ReasonPunching is a relayed path's reason while the probes are still
// trying for a direct one; any other reason means punching is over.
const ReasonPunching = "punching; relayed until a direct path answers"

// ReasonStalled is the reason while the tunnel's session is stalled.
const ReasonStalled = "tunnel session stalled: data sent, nothing decrypted back though the path answers; new handshake started"

// Status is what the manager knows of one peer.
type Status struct {
	Peer   nodekey.Key
	Online bool
	Path   Path
	// Reason says why the path is what it is, for people.
	Reason   string
	Endpoint string
	RTT      time.Duration // 0 if unknown
	// NAT is the peer's NAT mapping as the servers saw it: "none" (the
	// peer's own address), "cone" (endpoint-independent), "symmetric",
	// or "" if unknown.
	NAT string
	// Bye is set when the peer said it was shutting down and has not
	// been heard from since.
	Bye bool
	// Silent is set when a probe of the path went unanswered and nothing
	// has come from the peer since (a power cut, a lost uplink).
	Silent bool
	// Stalled is set while the tunnel sends data and decrypts nothing
	// back although the path answers probes, and a new handshake did not
	// mend it at once (one end lost the session's keys).
	Stalled bool
}

// Server is a rendezvous server as configured: host names are resolved
// when the manager runs, and again until they resolve (a Pi may boot
// before its uplink or DNS is up).
type Server struct {
	// Address is host:port of the main port; Address2 the second port
	// ("" means the same host, port+1).
	Address, Address2 string
	Key               nodekey.Key
}

// Options configure a Manager.
type Options struct {
	Mux        Net
	PrivateKey nodekey.Key
	Servers    []Server
	// Resolve turns host:port into an address; nil uses the system
	// resolver.
	Resolve func(ctx context.Context, hostport string) (netip.AddrPort, error)
	Log     *slog.Logger
	// Local returns this node's LAN endpoints, for peers behind the same
	// NAT.
	Local func() []netip.AddrPort
	// Incoming is asked about introduction requests from keys that are not
	// paired (a joiner with an invite); nil ignores them. Called from the
	// socket's reader: it must not block.
	Incoming func(from nodekey.Key, pair []byte) bool
	// Pair returns the pairing data to put in the box for peer (the
	// invite Hello), nil for none.
	Pair func(peer nodekey.Key) []byte
	// OnPair receives the pairing data a peer sent in its box, or
	// directly with SendPair. Called from a socket's reader: it must not
	// block.
	OnPair func(peer nodekey.Key, pair []byte)
	// OnInviteJoin receives a join box a joiner sent to a rendezvous
	// server along with its fetch of an invite blob this node stored
	// (rvclient.Options.OnInviteJoin). Called from a socket's reader: it
	// must not block.
	OnInviteJoin func(id [rendezvous.InviteIDLen]byte, box []byte)
	// Initiates, if set, may decide which end starts the handshake with
	// peer (decided true) instead of the order of the keys: the two ends
	// must agree, so only for what both know, as who joined whom while
	// pairing. Called from the manager's goroutine.
	Initiates func(peer nodekey.Key) (initiate, decided bool)
}

// Manager keeps paths to peers.
type Manager struct {
	opt Options
	log *slog.Logger
	pub nodekey.Key

	// clientsMu guards clients and byAddr, which grow as servers resolve
	// and are read by the socket's reader.
	clientsMu sync.RWMutex
	clients   []*rvclient.Client
	// serverKeys is each client's server's public key.
	serverKeys map[*rvclient.Client]nodekey.Key
	byAddr     map[netip.AddrPort]*rvclient.Client

	events chan event
	// paired is the set of peers, those with tunnels and those expected
	// (Expect), read by the socket reader (Accept).
	paired atomic.Pointer[map[nodekey.Key]bool]
	status atomic.Pointer[map[nodekey.Key]Status]
	// natClass is this node's own mapping, from registering on both ports.
	natClass atomic.Pointer[string]
	// saidBye is set once Bye told the peers this node is going offline.
	saidBye atomic.Bool

	aeadMu sync.Mutex
	aeads  map[nodekey.Key]cipher.AEAD

	// Owned by Run.
	peers map[nodekey.Key]*peer
	// runCtx and runWG are Run's, for the goroutines env starts.
	runCtx context.Context
	runWG  *sync.WaitGroup
	// early are introductions to keys that are not peers yet: a joiner's,
	// which arrives while the inviter is still saving it as a peer.
	// (An expected peer acts on its introductions as a peer does.)
	early map[nodekey.Key]*intro
	done  chan struct{}
}

type event struct {
	pair    *pairOut
	expect  *nodekey.Key
	add     *addPeer
	remove  *nodekey.Key
	intro   *intro
	probe   *probeIn
	connEnd *connEnd
	kick    *nodekey.Key
	bye     bool
	reply   chan any
}

type addPeer struct {
	key    nodekey.Key
	tunnel Tunnel
	bind   Initiations
	static netip.AddrPort
}

type intro struct {
	rvclient.Introduction
	server netip.AddrPort // the server's main address, for the relay
	at     time.Time
	// atOnce are the probes the socket's reader sent as it arrived, at
	// atOnceAt (firstprobe.go).
	atOnce   []sentAtOnce
	atOnceAt time.Time
	// offLAN: the peer is at another site (onOurLAN), so its LAN
	// addresses are not probed. The zero value probes them.
	offLAN bool
}

// An introduction to a key that is not a peer is kept this long, for the
// inviter that is saving its new peer.
const (
	earlyIntroFor  = 10 * time.Second
	maxEarlyIntros = 16
	// maxExpected bounds the peers expected at once (Expect): more are
	// asked for when their tunnels are added.
	maxExpected = 16
)

type probeIn struct {
	p       rendezvous.Probe
	from    netip.AddrPort
	session uint64 // came through this relay session; 0 if direct
	at      time.Time
}

type pairOut struct {
	peer nodekey.Key
	data []byte
}

type connEnd struct {
	peer   nodekey.Key
	p      *peer // the incarnation that asked: a removed and re-paired key is a new one
	server int
}

// New makes a manager; Run starts it.
func New(opt Options) (*Manager, error) {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		opt: opt, log: opt.Log, pub: opt.PrivateKey.Public(),
		byAddr:     map[netip.AddrPort]*rvclient.Client{},
		serverKeys: map[*rvclient.Client]nodekey.Key{},
		events:     make(chan event, 256),
		aeads:      map[nodekey.Key]cipher.AEAD{},
		peers:      map[nodekey.Key]*peer{},
		early:      map[nodekey.Key]*intro{},
		done:       make(chan struct{}),
	}
	empty := map[nodekey.Key]bool{}
	m.paired.Store(&empty)
	st := map[nodekey.Key]Status{}
	m.status.Store(&st)
	if opt.Resolve == nil {
		opt.Resolve = Resolve
		m.opt.Resolve = Resolve
	}
	opt.Mux.SetHandler(m.handle)
	return m, nil
}

// addServer makes the client for a resolved server and starts keeping its
// registration.
func (m *Manager) addServer(ctx context.Context, srv rvclient.Server, wg *sync.WaitGroup) error {
	// The introduction callback reads its own client's view of this
	// node's public address.
	var c *rvclient.Client
	c, err := rvclient.New(m.opt.Mux.PacketConn(), m.opt.PrivateKey, srv, rvclient.Options{
		Log: m.log.With("rendezvous", srv.Addrs[0]),
		Accept: func(k nodekey.Key, pair []byte) bool {
			return m.accept(k) || (pair != nil && m.opt.Incoming != nil && m.opt.Incoming(k, pair))
		},
		Local: m.opt.Local,
		OnIntroduction: func(in rvclient.Introduction) {
			ev := &intro{Introduction: in, server: srv.Addrs[0]}
			// Decided once, here, against the address this server
			// saw: with several servers, another's view may be older.
			ev.offLAN = !onOurLAN(ev, c.Observed().Addr())
			m.probeAtOnce(ev)
			m.post(event{intro: ev})
		},
		Pair:         m.opt.Pair,
		OnPair:       m.opt.OnPair,
		OnInviteJoin: m.opt.OnInviteJoin,
	})
	if err != nil {
		return err
	}
	m.clientsMu.Lock()
	m.clients = append(m.clients, c)
	m.serverKeys[c] = srv.Key
	for _, a := range srv.Addrs {
		if a.IsValid() {
			m.byAddr[netip.AddrPortFrom(a.Addr().Unmap(), a.Port())] = c
		}
	}
	m.clientsMu.Unlock()
	wg.Go(func() { c.Maintain(ctx) })
	return nil
}

// ResolveServer resolves srv until it works or ctx ends, backing off.
func (m *Manager) resolveServer(ctx context.Context, srv Server, wg *sync.WaitGroup) {
	wait := time.Second
	for {
		rs, err := m.resolveOnce(ctx, srv)
		if err == nil {
			if err := m.addServer(ctx, rs, wg); err != nil {
				m.log.Error("rendezvous server unusable; check its key", "server", srv.Address, "err", err)
			}
			return
		}
		m.log.Warn("cannot resolve rendezvous server; retrying", "server", srv.Address, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
}

func (m *Manager) resolveOnce(ctx context.Context, srv Server) (rvclient.Server, error) {
	rs := rvclient.Server{Key: srv.Key}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	a, err := m.opt.Resolve(rctx, srv.Address)
	if err != nil {
		return rs, err
	}
	rs.Addrs[0] = a
	if srv.Address2 == "" {
		rs.Addrs[1] = netip.AddrPortFrom(a.Addr(), a.Port()+1)
		return rs, nil
	}
	if rs.Addrs[1], err = m.opt.Resolve(rctx, srv.Address2); err != nil {
		return rs, err
	}
	return rs, nil
}

// Resolve turns a server's host:port into an address: an IP literal as it
// is, a name by DNS (IPv4: the node's socket is IPv4).
func Resolve(ctx context.Context, hostport string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return ap, nil
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, err
	}
	pn, err := net.DefaultResolver.LookupPort(ctx, "udp", port)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", host)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("%s has no IPv4 address", host)
	}
	return netip.AddrPortFrom(ips[0].Unmap(), uint16(pn)), nil
}

// clientList is a snapshot of the resolved servers' clients.
func (m *Manager) clientList() []*rvclient.Client {
	m.clientsMu.RLock()
	defer m.clientsMu.RUnlock()
	return m.clients
}

// post hands an event to Run without ever blocking the caller (the socket
// reader): under a flood, events are dropped, and punching retries.
func (m *Manager) post(ev event) {
	select {
	case m.events <- ev:
	default:
	}
}

// postWait is post for events that must not be lost; it gives up only
// when the manager stops.
func (m *Manager) postWait(ctx context.Context, ev event) {
	select {
	case m.events <- ev:
	case <-ctx.Done():
	}
}

func (m *Manager) accept(k nodekey.Key) bool { return (*m.paired.Load())[k] }

// handle is the mux's Handler: rendezvous datagrams go to the client of
// the server they came from, probes to Run.
func (m *Manager) handle(b []byte, from netip.AddrPort, session uint64) {
	if sender, ok := rendezvous.PairSender(b); ok {
		m.handlePair(b, sender)
		return
	}
	if sender, ok := rendezvous.ProbeSender(b); ok {
		if !m.accept(sender) {
			return
		}
		aead, err := m.aead(sender)
		if err != nil {
			return
		}
		p, err := rendezvous.OpenProbe(b, aead, m.pub)
		if err != nil {
			return
		}
		if !p.Reply && !p.Bye && !m.saidBye.Load() {
			// Answer at once, from the reader: the round trip measured
			// by the prober should not include our scheduling. Not
			// after this node said bye: an answer would show it online
			// again while it shuts down.
			m.sendProbe(sender, from, session, rendezvous.Probe{Reply: true, TxID: p.TxID, Time: p.Time})
		}
		m.post(event{probe: &probeIn{p: p, from: from, session: session, at: time.Now()}})
		return
	}
	if session != 0 {
		return // only probes travel the relay besides WireGuard
	}
	m.clientsMu.RLock()
	c := m.byAddr[from]
	m.clientsMu.RUnlock()
	if c != nil {
		c.HandlePacket(b, from)
	}
}

// pairMaxAge is how old pairing data sent directly may be; older copies
// were replayed.
const pairMaxAge = 2 * time.Minute

// handlePair passes pairing data a peer sent directly to OnPair.
func (m *Manager) handlePair(b []byte, sender nodekey.Key) {
	if !m.accept(sender) || m.opt.OnPair == nil {
		return
	}
	aead, err := m.aead(sender)
	if err != nil {
		return
	}
	msg, err := rendezvous.OpenPair(b, aead, m.pub)
	if err != nil {
		return
	}
	if age := time.Since(time.UnixMilli(msg.Time)); age > pairMaxAge || age < -pairMaxAge {
		m.log.Debug("ignoring old pairing data", "peer", sender, "age", age)
		return
	}
	m.opt.OnPair(sender, msg.Data)
}

// ErrNoPath is SendPair's error when the peer has no path yet.
var ErrNoPath = errors.New("no path to the peer yet")

// SendPair sends pairing data to peer directly, on the path its tunnel
// uses (the relay or a direct one), once: the caller retransmits until it
// hears back. It returns ErrNoPath while there is none.
func (m *Manager) SendPair(ctx context.Context, peer nodekey.Key, data []byte) error {
	if len(data) > rendezvous.MaxPairData {
		return fmt.Errorf("pairing data of %d bytes, at most %d", len(data), rendezvous.MaxPairData)
	}
	reply := make(chan any, 1)
	select {
	case m.events <- event{pair: &pairOut{peer: peer, data: data}, reply: reply}:
	case <-m.done:
		return errors.New("the path manager stopped")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case v := <-reply:
		if err, ok := v.(error); ok {
			return err
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *Manager) sendPair(o *pairOut) error {
	p := m.peers[o.peer]
	if p == nil || p.path == PathNone {
		return ErrNoPath
	}
	aead, err := m.aead(o.peer)
	if err != nil {
		return err
	}
	b, err := rendezvous.AppendPair(nil, aead, o.peer, rendezvous.PairMsg{Sender: m.pub, Time: time.Now().UnixMilli(), Data: o.data})
	if err != nil {
		return err
	}
	if p.path == PathRelay {
		return m.opt.Mux.WriteRelay(b, p.relaySession, p.relayServer)
	}
	return m.opt.Mux.WriteTo(b, p.direct)
}

func (m *Manager) aead(peer nodekey.Key) (cipher.AEAD, error) {
	m.aeadMu.Lock()
	defer m.aeadMu.Unlock()
	if a := m.aeads[peer]; a != nil {
		return a, nil
	}
	a, err := rendezvous.PeerAEAD(m.opt.PrivateKey, peer)
	if err != nil {
		return nil, err
	}
	m.aeads[peer] = a
	return a, nil
}

// sendProbe sends a probe to the peer at to, or through the relay session
// at server to when session is not 0.
func (m *Manager) sendProbe(peer nodekey.Key, to netip.AddrPort, session uint64, p rendezvous.Probe) {
	aead, err := m.aead(peer)
	if err != nil {
		return
	}
	p.Sender = m.pub
	var buf [rendezvous.ProbeLen]byte
	b, err := rendezvous.AppendProbe(buf[:0], aead, peer, p)
	if err != nil {
		return
	}
	if session != 0 {
		m.opt.Mux.WriteRelay(b, session, to)
		return
	}
	m.opt.Mux.WriteTo(b, to)
}

// Add starts keeping a path to peer, whose device is tunnel on bind.
// static, if valid, is a configured endpoint: used at once, no rendezvous
// needed (but the peer is still found through the servers if it moves).
func (m *Manager) Add(peer nodekey.Key, tunnel Tunnel, bind Initiations, static netip.AddrPort) {
	if b, ok := bind.(*wgmux.Bind); ok && b == nil {
		bind = nil // a nil *Bind is no bind, not one to call
	}
	m.send(event{add: &addPeer{key: peer, tunnel: tunnel, bind: bind, static: static}})
}

// Expect starts looking for peer before its tunnel exists: the node has
// just been paired with it and is building the tunnel. The servers are
// asked at once, and the expected peer acts on its introductions as one
// with a tunnel does (relay, punching, probes answered), since the peer,
// whose tunnel may be built, acts on the same introduction: behind routers
// that accept input, an end that punches alone loses the direct path
// (TestExpectedPeerAcceptingRouters). Add then points the tunnel at the
// path found and starts its handshake. Punching while the tunnels are
// built, when a Pi is busiest, may act late on one end, and behind routers
// that accept input the first punch then fails: the ends punch again once
// the routers have forgotten it (repunch.go).
func (m *Manager) Expect(peer nodekey.Key) { m.send(event{expect: &peer}) }

// Remove forgets peer.
func (m *Manager) Remove(peer nodekey.Key) { m.send(event{remove: &peer}) }

func (m *Manager) send(ev event) {
	select {
	case m.events <- ev:
	case <-m.done:
	}
}

// Bye tells every peer with a path that this node is going offline, so
// that calls to it fail at once rather than ring; call it before the
// tunnels are torn down on a clean shutdown.
func (m *Manager) Bye(ctx context.Context) {
	reply := make(chan any, 1)
	select {
	case m.events <- event{bye: true, reply: reply}:
	case <-m.done:
		return
	case <-ctx.Done():
		return
	}
	select {
	case <-reply:
	case <-ctx.Done():
	}
}

// Status returns a snapshot of every peer's state.
func (m *Manager) Status() map[nodekey.Key]Status { return *m.status.Load() }

// NATClass is this node's own NAT mapping as the servers saw it.
func (m *Manager) NATClass() string {
	if s := m.natClass.Load(); s != nil {
		return *s
	}
	return ""
}

// Ping probes peer on its current path and returns the round trip.
func (m *Manager) Ping(ctx context.Context, peer nodekey.Key) (time.Duration, error) {
	reply := make(chan any, 1)
	select {
	case m.events <- event{kick: &peer, reply: reply}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	var ch <-chan time.Duration
	select {
	case v := <-reply:
		switch v := v.(type) {
		case error:
			return 0, v
		case chan time.Duration:
			ch = v
		}
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case rtt := <-ch:
		return rtt, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("no answer from the peer: %w", ctx.Err())
	}
}

// Run keeps registrations and paths until ctx is done.
func (m *Manager) Run(ctx context.Context) error {
	defer close(m.done)
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m.runCtx, m.runWG = ctx, &wg
	for _, srv := range m.opt.Servers {
		wg.Go(func() { m.resolveServer(ctx, srv, &wg) })
	}
	wg.Go(func() { m.classify(ctx) })
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			m.unregister()
			return nil
		case ev := <-m.events:
			m.handleEvent(ev)
		case now := <-t.C:
			for _, p := range m.peers {
				p.tick(m, now)
			}
			m.publish(now)
		}
	}
}

// unregister tells the servers we are gone, briefly: a node that is
// shutting down must not hang on an unreachable server.
func (m *Manager) unregister() {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range m.clientList() {
		wg.Go(func() { c.Unregister(ctx) })
	}
	wg.Wait()
}

// classify finds this node's NAT mapping once the servers answer, and
// again now and then (a WAN change can change it).
func (m *Manager) classify(ctx context.Context) {
	for {
		for _, c := range m.clientList() {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			eim, maps, err := c.ClassifyMapping(cctx)
			cancel()
			if err != nil {
				continue
			}
			class := "symmetric"
			if eim {
				class = "cone"
				for _, l := range m.local() {
					if l == maps[0] {
						class = "none"
					}
				}
			}
			m.natClass.Store(&class)
			break
		}
		wait := 10 * time.Minute
		if m.NATClass() == "" {
			wait = 2 * time.Second // no server answered yet
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (m *Manager) local() []netip.AddrPort {
	if m.opt.Local == nil {
		return nil
	}
	return m.opt.Local()
}

func (m *Manager) handleEvent(ev event) {
	now := time.Now()
	switch {
	case ev.pair != nil:
		ev.reply <- m.sendPair(ev.pair)
	case ev.expect != nil:
		if m.peers[*ev.expect] != nil {
			return // known already, with its tunnel or expected
		}
		waiting := 0
		for _, p := range m.peers {
			if p.tunnel == nil {
				waiting++
			}
		}
		if waiting >= maxExpected {
			// Many peers at once (a start, a restored config): their
			// builds pace the asks, as Add always did, rather than a
			// burst the server would rate-limit.
			return
		}
		p := &peer{key: *ev.expect, connectAt: now}
		m.peers[p.key] = p
		m.setPaired()
		if len(m.clientList()) > 0 {
			m.connect(p)
			p.connectBackoff = connectMin
			p.connectAt = now.Add(connectMin)
		}
	case ev.add != nil:
		a := ev.add
		p := m.peers[a.key]
		expected := p != nil && p.tunnel == nil
		if p == nil {
			p = &peer{key: a.key, connectAt: now}
			m.peers[a.key] = p
		}
		p.tunnel, p.bind = a.tunnel, a.bind
		if a.static.IsValid() {
			p.addCandidate(a.static)
			p.setPath(m, PathDirect, a.static.String(), "configured endpoint", now)
		}
		m.setPaired()
		if expected && p.path != PathNone && !a.static.IsValid() {
			// Expected, and introduced while the tunnel was made: the
			// path it found (or the relay while punching goes on).
			path, endpoint, reason := p.path, p.endpoint, p.reason
			p.path = PathNone
			p.setPath(m, path, endpoint, reason, now)
			// At once at both ends, whichever starts a handshake first:
			// the peer's initiation may have come before this tunnel was
			// made and been lost, and holding ours back would wait for
			// nothing (wgmux's crossing guard sorts out two at once).
			if !p.keepaliveOn {
				p.startHandshake(m, p.endpoint, now)
			}
		}
		fresh := false
		if in := m.early[a.key]; in != nil {
			delete(m.early, a.key)
			if p.introAt.IsZero() && now.Sub(in.at) < earlyIntroFor {
				// The relay at once; the punching waits for a fresh
				// introduction, which starts both ends together (learn).
				p.learn(m, in, now)
				fresh = true
			}
		}
		if (p.path == PathNone || fresh) && len(m.clientList()) > 0 {
			// Now, not at the next tick: a join waits on this. The
			// Connect that brought an early introduction may not have
			// ended yet.
			if fresh {
				clear(p.connecting)
			}
			m.connect(p)
			p.connectBackoff = connectMin
			p.connectAt = now.Add(connectMin)
		}
	case ev.remove != nil:
		delete(m.peers, *ev.remove)
		m.setPaired()
	case ev.intro != nil:
		ev.intro.at = now
		if p := m.peers[ev.intro.Peer]; p != nil {
			// Expected or with its tunnel: punch now, as the peer does
			// whether or not its own tunnel is made yet.
			p.introduced(m, ev.intro, now)
			return
		}
		// Not a peer yet: Add applies it.
		for k, in := range m.early {
			if now.Sub(in.at) >= earlyIntroFor || len(m.early) >= maxEarlyIntros {
				delete(m.early, k)
			}
		}
		m.early[ev.intro.Peer] = ev.intro
	case ev.probe != nil:
		if p := m.peers[ev.probe.p.Sender]; p != nil {
			p.probed(m, ev.probe)
		}
	case ev.connEnd != nil:
		// An earlier incarnation's answer (the peer was removed and paired
		// again while it waited) is not this one's: its connecting flags
		// are its own, and may be fewer.
		if p := m.peers[ev.connEnd.peer]; p != nil && p == ev.connEnd.p && ev.connEnd.server < len(p.connecting) {
			p.connecting[ev.connEnd.server] = false
		}
	case ev.bye:
		m.saidBye.Store(true)
		for _, p := range m.peers {
			p.sayBye(m)
		}
		ev.reply <- nil
	case ev.kick != nil:
		p := m.peers[*ev.kick]
		if p == nil {
			if ev.reply != nil {
				ev.reply <- fmt.Errorf("no such peer")
			}
			return
		}
		p.connectAt, p.connectBackoff = now, 0
		if ev.reply != nil {
			ch := make(chan time.Duration, 1)
			p.pingWaiters = append(p.pingWaiters, ch)
			switch p.path {
			case PathDirect:
				p.probeAll(m, []netip.AddrPort{p.direct}, now)
			case PathRelay:
				p.probeRelay(m, now)
			default:
				p.probeAll(m, p.candidates, now)
			}
			ev.reply <- ch
		}
	}
}

func (m *Manager) setPaired() {
	set := make(map[nodekey.Key]bool, len(m.peers))
	for k := range m.peers {
		// Expected peers too: both ends punch on every introduction,
		// tunnel or not (peer.tick).
		set[k] = true
	}
	m.paired.Store(&set)
}

func (m *Manager) publish(now time.Time) {
	// Every tick, but a new map only when a peer's status changed: with
	// 253 peers a map a tick was most of an idle node's garbage, and the
	// readers (the supervisor, every 100 ms) see the same map as before.
	if old := m.status.Load(); old != nil && len(*old) == len(m.peers) {
		same := true
		for k, p := range m.peers {
			if st, ok := (*old)[k]; !ok || st != p.status(now) {
				same = false
				break
			}
		}
		if same {
			return
		}
	}
	st := make(map[nodekey.Key]Status, len(m.peers))
	for k, p := range m.peers {
		st[k] = p.status(now)
	}
	m.status.Store(&st)
}

// The Manager is the decisions' env.

func (m *Manager) logger() *slog.Logger { return m.log }

func (m *Manager) addRelay(peer nodekey.Key, session uint64, server netip.AddrPort) {
	m.opt.Mux.AddRelay(peer, session, server)
}

func (m *Manager) ownNAT() string { return m.NATClass() }

func (m *Manager) haveServers() bool { return len(m.clientList()) > 0 }

// connect asks every server (that is not already asked) to introduce us.
func (m *Manager) connect(p *peer) {
	ctx, wg := m.runCtx, m.runWG
	clients := m.clientList()
	for len(p.connecting) < len(clients) {
		p.connecting = append(p.connecting, false)
	}
	for i, c := range clients {
		if p.connecting[i] {
			continue
		}
		p.connecting[i] = true
		key := p.key
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, introWait)
			defer cancel()
			if _, err := c.Connect(cctx, key); err != nil {
				m.log.Debug("no introduction yet", "peer", key, "err", err)
			}
			// Not post: a lost connEnd leaves the server marked as asked for
			// good, and the peer would never ask it again.
			m.postWait(ctx, event{connEnd: &connEnd{peer: key, p: p, server: i}})
		})
	}
}

// reregister refreshes every registration now: after a path died our NAT
// mapping may be new, and the relay only forwards for the registered one.
func (m *Manager) reregister() {
	ctx, wg := m.runCtx, m.runWG
	for _, c := range m.clientList() {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			c.Register(cctx, 0)
		})
	}
}
