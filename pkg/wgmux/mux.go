// Package wgmux shares one UDP socket between all of a node's WireGuard
// devices (one per peer), its rendezvous clients and the probes it sends to
// peers while punching.
//
// One socket, rather than one per tunnel, is what makes hole punching
// work: the rendezvous server can only tell a peer the NAT mapping of the
// socket that registered, and the probes that open the NAT must leave from
// the socket WireGuard then uses. It also means one mapping to keep alive
// and one port to forward for users who can.
//
// Each device gets a Bind (a conn.Bind of its own). Datagrams are routed to
// a device by what identifies it on the wire:
//   - transport data, handshake responses and cookie replies carry the
//     receiver's index, which this node's device chose: the Bind learns
//     them from the handshake messages its device sends;
//   - a handshake initiation carries the sender's static key, encrypted to
//     this node's key: the mux opens it (initiation.go);
//   - relayed packets carry the relay session id of one peer;
//   - rendezvous and probe datagrams (first byte 0xF5, which no WireGuard
//     message starts with) go to the Handler.
//
// Because the Bind sees every handshake message its device sends and
// receives, it also settles handshakes that cross in flight (both ends
// initiating in the same instant, as two idle Pis do when their keys
// expire together): the end with the smaller public key holds the peer's
// initiation until its own is answered, so one handshake completes in one
// round trip instead of both failing until WireGuard retries 5 s later
// (crossing.go; why this is safe: docs/handshake-crossing.md). For the
// same reason it repairs a lost handshake message in about 0.4 s instead
// of WireGuard's 5 s (lossrepair.go), and keeps relayed messages that come
// before their session is known until it is (AddRelay); see
// docs/first-handshake.md.
//
// Endpoints are either a direct UDP address or a relay (session id through
// a rendezvous server). WireGuard roams to the endpoint an authenticated
// packet last came from, so a tunnel follows its peer from relay to direct
// and back without either side reconfiguring anything.
package wgmux

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
)

// Handler receives the rendezvous and probe datagrams, on the mux's reading
// goroutine: it must not block. b is only valid during the call. session is
// the relay session a probe came through (from is then the server), 0 for
// a datagram that came straight from from.
type Handler func(b []byte, from netip.AddrPort, session uint64)

// Mux owns the node's UDP socket.
type Mux struct {
	conn    *net.UDPConn
	port    uint16
	log     *slog.Logger
	handler atomic.Pointer[Handler]
	initRd  *initiationReader
	pub     nodekey.Key

	mu        sync.RWMutex
	byPeer    map[nodekey.Key]*Bind
	byIndex   map[uint32]*Bind
	bySession map[uint64]*Bind
	// early are relayed WireGuard messages for sessions not known yet,
	// oldest first (see parkEarly); guarded by mu.
	early []earlyRelay

	stats Stats
}

// Stats counts what the mux did with datagrams it could not deliver.
type Stats struct {
	Received   atomic.Uint64
	NoDevice   atomic.Uint64 // WireGuard message for no device of ours
	Junk       atomic.Uint64 // neither WireGuard nor rendezvous
	QueueFull  atomic.Uint64 // a device did not keep up
	BadRelay   atomic.Uint64 // relay for an unknown session or from the wrong server
	Rendezvous atomic.Uint64
	// EarlyRelay counts relayed messages that came before their session
	// was known, EarlyDelivered those of them delivered once it was.
	EarlyRelay     atomic.Uint64
	EarlyDelivered atomic.Uint64

	// Handshake initiations that crossed ours in flight (crossing.go);
	// of those held back, how many were dropped when ours was answered
	// and how many released when it was not.
	Crossed       atomic.Uint64
	CrossDropped  atomic.Uint64
	CrossReleased atomic.Uint64
	// Handshake messages resent because their answer did not come
	// (lossrepair.go).
	InitiationResent atomic.Uint64
	ResponseResent   atomic.Uint64
	ConfirmDoubled   atomic.Uint64
}

// socketBuffer is what the tunnel socket asks for each way. All of a
// node's calls share the one socket: with the kernel's default (about
// 200 KB) the lab's 250-call run lost packets in its receive queue while
// the CPU caught up, not in the tunnel. wireguard-go asks for 7 MB on its
// own sockets.
const socketBuffer = 4 << 20

// queueLen bounds each device's receive queue: a few hundred packets is
// seconds of voice, so a full queue means the device is stuck, not busy.
const queueLen = 256

// Listen opens the node's socket on addr (":51820") and starts nothing:
// call Run to read it.
func Listen(addr string, priv nodekey.Key, log *slog.Logger) (*Mux, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("tunnel socket address %q: %w", addr, err)
	}
	c, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("opening the tunnel socket %s: %w (is another peerlined or WireGuard using the port?)", addr, err)
	}
	growBuffers(c, log)
	return New(c, priv, log), nil
}

// New wraps an open socket; the Mux owns it from now on.
func New(c *net.UDPConn, priv nodekey.Key, log *slog.Logger) *Mux {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Mux{
		conn: c, log: log, initRd: newInitiationReader(priv), pub: priv.Public(),
		byPeer:    map[nodekey.Key]*Bind{},
		byIndex:   map[uint32]*Bind{},
		bySession: map[uint64]*Bind{},
	}
	if la, ok := c.LocalAddr().(*net.UDPAddr); ok {
		m.port = uint16(la.Port)
	}
	return m
}

// Port is the socket's local UDP port.
func (m *Mux) Port() uint16 { return m.port }

// Stats returns the counters.
func (m *Mux) Stats() *Stats { return &m.stats }

// SetHandler sets where rendezvous and probe datagrams go.
func (m *Mux) SetHandler(h Handler) { m.handler.Store(&h) }

// WriteTo sends b to addr from the node's socket (rendezvous and probes).
func (m *Mux) WriteTo(b []byte, addr netip.AddrPort) error {
	_, err := m.conn.WriteToUDPAddrPort(b, addr)
	return err
}

// WriteRelay sends b to the peer of session through server.
func (m *Mux) WriteRelay(b []byte, session uint64, server netip.AddrPort) error {
	rb := relayBufPool.Get().(*[]byte)
	defer relayBufPool.Put(rb)
	*rb = rendezvous.AppendRelay((*rb)[:0], session, b)
	_, err := m.conn.WriteToUDPAddrPort(*rb, server)
	return err
}

// PacketConn is the socket as the rendezvous client wants it: writes go out
// of the shared socket; reads are not possible, since the mux reads and
// hands rendezvous datagrams to the Handler.
func (m *Mux) PacketConn() net.PacketConn { return packetConn{m} }

// Run reads the socket until ctx is done, then closes it.
func (m *Mux) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { m.conn.Close() })
	defer stop()
	buf := make([]byte, 65536)
	for {
		n, from, err := m.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("reading the tunnel socket: %w", err)
		}
		m.stats.Received.Add(1)
		m.dispatch(buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
	}
}

// Close closes the socket (Run returns).
func (m *Mux) Close() error { return m.conn.Close() }

func (m *Mux) dispatch(b []byte, from netip.AddrPort) {
	if len(b) < 4 {
		m.stats.Junk.Add(1)
		return
	}
	if b[0] == rendezvous.Magic {
		if len(b) > 2 && rendezvous.Type(b[2]) == rendezvous.TypeRelay {
			m.dispatchRelay(b, from)
			return
		}
		m.stats.Rendezvous.Add(1)
		if h := m.handler.Load(); h != nil {
			(*h)(b, from, 0)
		}
		return
	}
	var bind *Bind
	switch typ := binary.LittleEndian.Uint32(b); {
	case typ == msgInitiation && len(b) == initiationLen:
		bind = m.initiator(b)
	case typ == msgResponse && len(b) == responseLen:
		bind = m.byIdx(binary.LittleEndian.Uint32(b[8:]))
	case typ == msgCookieReply && len(b) == cookieReplyLen,
		typ == msgTransport && len(b) >= transportMinLen:
		bind = m.byIdx(binary.LittleEndian.Uint32(b[4:]))
	default:
		m.stats.Junk.Add(1)
		return
	}
	if bind == nil {
		m.stats.NoDevice.Add(1)
		return
	}
	bind.receive(b, bind.direct(from))
}

func (m *Mux) dispatchRelay(b []byte, from netip.AddrPort) {
	session, payload, err := rendezvous.ParseRelay(b)
	if err != nil {
		m.stats.BadRelay.Add(1)
		return
	}
	m.mu.RLock()
	bind := m.bySession[session]
	m.mu.RUnlock()
	if bind == nil {
		if len(payload) > 0 && payload[0] != rendezvous.Magic && m.parkEarly(session, from, payload) {
			m.stats.EarlyRelay.Add(1)
			return
		}
		m.stats.BadRelay.Add(1)
		return
	}
	ep := bind.relayFrom(session, from)
	if ep == nil {
		m.stats.BadRelay.Add(1)
		return
	}
	if len(payload) > 0 && payload[0] == rendezvous.Magic {
		// A probe the peer sent through the relay, to measure that path.
		if h := m.handler.Load(); h != nil {
			(*h)(payload, from, session)
		}
		return
	}
	bind.receive(payload, ep)
}

func (m *Mux) byIdx(i uint32) *Bind {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.byIndex[i]
}

func (m *Mux) initiator(b []byte) *Bind {
	peer, ok := m.initRd.sender(b)
	if !ok {
		return nil
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.byPeer[peer]
}

// Bind returns the conn.Bind for the device that talks to peer. There is
// one per peer; Remove forgets it.
func (m *Mux) Bind(peer nodekey.Key) *Bind {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b := m.byPeer[peer]; b != nil {
		return b
	}
	b := &Bind{mux: m, peer: peer, relays: map[uint64]netip.AddrPort{}}
	b.cross.wins = winsCrossing(m.pub, peer)
	m.byPeer[peer] = b
	return b
}

// Remove forgets peer's Bind and everything routed to it.
func (m *Mux) Remove(peer nodekey.Key) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.byPeer[peer]
	if b == nil {
		return
	}
	delete(m.byPeer, peer)
	for i, x := range m.byIndex {
		if x == b {
			delete(m.byIndex, i)
		}
	}
	for s, x := range m.bySession {
		if x == b {
			delete(m.bySession, s)
		}
	}
}

// AddRelay lets peer's device send and receive through server with relay
// session id session; its endpoint string is RelayEndpoint(session, server).
func (m *Mux) AddRelay(peer nodekey.Key, session uint64, server netip.AddrPort) {
	b := m.Bind(peer)
	early, ok := m.addRelay(b, session, server)
	if !ok || len(early) == 0 {
		return
	}
	ep := b.relayFrom(session, server)
	for _, e := range early {
		b.receive(e.msg, ep)
	}
	m.stats.EarlyDelivered.Add(uint64(len(early)))
	m.log.Debug("relayed messages came before their session was known; delivered now",
		"peer", peer, "messages", len(early), "waited", time.Since(early[0].at))
}

// addRelay registers session for b and returns the early messages of it.
func (m *Mux) addRelay(b *Bind, session uint64, server netip.AddrPort) ([]earlyRelay, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old := m.bySession[session]; old != nil && old != b {
		return nil, false // a server handing one id to two peers is lying; keep the first
	}
	m.bySession[session] = b
	b.relayMu.Lock()
	b.relays[session] = server
	b.relayMu.Unlock()
	return m.takeEarlyLocked(session, server, time.Now()), true
}

// earlyRelay is a relayed WireGuard message whose session was not known
// when it came.
//
// The peer starts its handshake through the relay as soon as the server
// introduces the two nodes; this node learns the session from its own copy
// of the introduction, which can be processed later: after a join, the
// introduction may come before the new peer's tunnel exists (the path
// manager keeps it until it does), and the peer's first initiation then
// finds no session here. Dropping it costs this node its 1 s hold before it
// initiates itself (or the peer its 5 s retry). Kept for earlyFor and
// delivered when AddRelay registers the session with the server it came
// from, it is answered at once. Nothing is delivered for a session that no
// authenticated introduction names, and the buffer is small and bounded.
type earlyRelay struct {
	session uint64
	from    netip.AddrPort
	at      time.Time
	msg     []byte
}

const (
	// earlyFor is how long an early message is kept: well under
	// WireGuard's 5 s retry, so that an initiation delivered late is
	// still one the peer waits an answer for.
	earlyFor = 2 * time.Second
	// earlyMax bounds the messages kept, for every session together: a
	// handshake is one or two (relayed and its retry), and only sessions
	// being set up have any.
	earlyMax = 16
)

// parkEarly keeps a copy of msg, relayed from from for session, which no
// peer has yet. It reports whether it did.
func (m *Mux) parkEarly(session uint64, from netip.AddrPort, msg []byte) bool {
	if len(msg) > bufSize {
		return false
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.bySession[session] != nil {
		return false // registered meanwhile; the peer will retry
	}
	m.early = slices.DeleteFunc(m.early, func(e earlyRelay) bool { return now.Sub(e.at) >= earlyFor })
	if len(m.early) >= earlyMax {
		m.early = slices.Delete(m.early, 0, 1)
	}
	m.early = append(m.early, earlyRelay{session: session, from: from, at: now, msg: slices.Clone(msg)})
	return true
}

// takeEarlyLocked removes and returns the fresh early messages of session
// that came from server.
func (m *Mux) takeEarlyLocked(session uint64, server netip.AddrPort, now time.Time) []earlyRelay {
	var out []earlyRelay
	m.early = slices.DeleteFunc(m.early, func(e earlyRelay) bool {
		switch {
		case now.Sub(e.at) >= earlyFor:
			return true
		case e.session == session && e.from == server:
			out = append(out, e)
			return true
		}
		return false
	})
	return out
}

// learnIndex routes datagrams addressed to index i to b.
func (m *Mux) learnIndex(b *Bind, i uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byPeer[b.peer] != b {
		return // removed
	}
	m.byIndex[i] = b
	// WireGuard keeps at most the current, previous and next keypair and
	// one handshake in flight; older indices are dead.
	b.indices = append(b.indices, i)
	if len(b.indices) > maxIndices {
		old := b.indices[0]
		b.indices = b.indices[1:]
		if m.byIndex[old] == b {
			delete(m.byIndex, old)
		}
	}
}

const maxIndices = 8

type packetConn struct{ m *Mux }

func (p packetConn) ReadFrom([]byte) (int, net.Addr, error) {
	return 0, nil, errors.New("wgmux: the mux reads this socket; use its Handler")
}

func (p packetConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, fmt.Errorf("wgmux: cannot send to %T", addr)
	}
	return p.m.conn.WriteToUDP(b, ua)
}

func (p packetConn) Close() error                     { return nil }
func (p packetConn) LocalAddr() net.Addr              { return p.m.conn.LocalAddr() }
func (p packetConn) SetDeadline(time.Time) error      { return nil }
func (p packetConn) SetReadDeadline(time.Time) error  { return nil }
func (p packetConn) SetWriteDeadline(time.Time) error { return nil }
