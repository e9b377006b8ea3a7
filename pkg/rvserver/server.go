// Package rvserver is the rendezvous server (cmd/rendezvousd): it keeps an
// in-memory table of registered nodes and where the server saw them on each
// of its two UDP ports, introduces two nodes to each other once both asked
// (see pkg/rendezvous for the scheme and the threat model), and relays
// WireGuard packets between introduced nodes whose direct path fails. It
// also keeps the sealed invite blobs that inviting nodes store, for joiners
// to fetch by id.
//
// There is no database: a restart forgets every registration, and nodes
// re-register within their refresh interval (about 25 s). It forgets invite
// blobs too, so an inviting node should store its open invites again from
// time to time.
//
// Cost of junk: a datagram is dropped after a header check (no crypto), then
// after a cookie check (one HMAC; the cookie binds a request to its source
// address, so spoofed sources cannot register, reflect or amplify), then
// after a time check. Only then is a per-node key looked up in a bounded
// cache, or derived with one X25519. An unauthenticated datagram gets at
// most a Cookie, which is smaller than any sealed request, or an Invite,
// which is never longer than the fixed-size InviteGet it answers (and costs
// a map lookup, no cryptography); a sealed reply
// larger than its request is never sent (clients pad requests to
// rendezvous.MinRequestLen).
//
// Cost of a flood: every table is bounded (Limits), and shared out per node
// key and per source prefix (/24, IPv6 /56), whose address the cookie
// proves. A sealed request spends its prefix's budget before any
// cryptography and its key's budget after authentication; a full table
// evicts the least recently used entry of whoever holds the most (ledger),
// and the replay cache makes room rather than refuse fresh requests
// (replayCache). So one key or one network cannot stop the server
// answering others, and memory is set by the configuration. What the
// limits refuse or evict is counted under its own reason (LimitStats) and
// logged with the key or prefix it hit. docs/rendezvous-limits.md has the
// defaults and how they are measured.
package rvserver

import (
	"context"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
	"github.com/peerline/peerline/pkg/tokenbucket"
)

// Config is the server's configuration; zero fields take the defaults.
type Config struct {
	// Listen are the two UDP addresses: the main one (rendezvous and
	// relay) and a second one, so a node can compare its mappings.
	Listen [2]string
	// StateDir holds the server's private key (KeyFile).
	StateDir string
	// MaxNodes bounds the registration table; when full, the node that
	// refreshed least recently is dropped.
	MaxNodes int
	// TTL is how long a registration lasts without a refresh.
	TTL time.Duration
	// Window is how far a request's time may be from the server's clock.
	Window time.Duration
	// RelayBytesPerSec and RelayBurst bound what one node may send through
	// the relay. A voice call over WireGuard needs about 15 kB/s.
	RelayBytesPerSec int
	RelayBurst       int
	// ConnectPerSec and ConnectBurst bound a node's Connect requests, so
	// nobody can flood another node with Incoming messages.
	ConnectPerSec float64
	ConnectBurst  int
	// PunchDelay is sent in Punch messages: how long after receipt both
	// sides start probing.
	PunchDelay time.Duration
	// MaxInvites bounds the invite blobs kept in total, and
	// MaxInvitesPerOwner those one node key may keep; a store beyond
	// either evicts (expired blobs are dropped first): the owner's own
	// oldest, or in a full table the oldest of whoever holds the most.
	MaxInvites         int
	MaxInvitesPerOwner int
	// Limits bound the other tables, per key and per source prefix.
	Limits
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Defaults.
const (
	DefaultListen  = ":3478"
	DefaultListen2 = ":3479"
	DefaultDir     = "/var/lib/rendezvousd"
	KeyFile        = "server.key"
)

func (c Config) withDefaults() Config {
	if c.Listen[0] == "" {
		c.Listen[0] = DefaultListen
	}
	if c.Listen[1] == "" {
		c.Listen[1] = DefaultListen2
	}
	if c.StateDir == "" {
		c.StateDir = DefaultDir
	}
	if c.MaxNodes <= 0 {
		c.MaxNodes = 10000
	}
	if c.TTL <= 0 {
		c.TTL = 2 * time.Minute
	}
	if c.Window <= 0 {
		c.Window = 60 * time.Second
	}
	if c.RelayBytesPerSec <= 0 {
		c.RelayBytesPerSec = 256 << 10
	}
	if c.RelayBurst <= 0 {
		c.RelayBurst = 64 << 10
	}
	if c.ConnectPerSec <= 0 {
		c.ConnectPerSec = 5
	}
	if c.ConnectBurst <= 0 {
		c.ConnectBurst = 20
	}
	if c.MaxInvites <= 0 {
		c.MaxInvites = DefaultMaxInvites
	}
	if c.MaxInvitesPerOwner <= 0 {
		c.MaxInvitesPerOwner = DefaultMaxInvitesPerOwner
	}
	c.Limits = c.Limits.withDefaults(c.MaxNodes)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// How long a one-sided Connect waits for the other side, and how long an
// idle relay session lives.
const (
	pendingTTL  = 15 * time.Second
	sessionIdle = 3 * time.Minute
	cookieEpoch = 60 * time.Second
	sweepEvery  = 10 * time.Second
)

// Stats counts what the server did, for logs and tests.
type Stats struct {
	Nodes, Sessions, Pending                                    int
	Junk, BadCookie, BadTime, BadAuth, Replays, TooBig, Relayed uint64
	// Evicted counts registrations dropped to make room (see Limits).
	RelayDropped, Evicted uint64
	// Refusals and evictions by the limits (limits.go), each with its
	// real reason, so that an operator sees who is flooding.
	LimitStats
	// Invites is the number of live invite blobs; InvitesStored counts
	// accepted InvitePuts (stores, replacements and deletions),
	// InvitesRefused refused ones, InvitesServed InviteGets answered with
	// a blob and InvitesUnknown those answered with none.
	Invites                                                      int
	InvitesStored, InvitesRefused, InvitesServed, InvitesUnknown uint64
	// InviteJoins counts join boxes pushed to invites' owners.
	InviteJoins uint64
}

// Server is a rendezvous server. Create it with New, then Run it (or
// Serve already-bound sockets).
type Server struct {
	cfg          Config
	log          *slog.Logger
	priv, pub    nodekey.Key
	cookieSecret [32]byte

	conns [2]*net.UDPConn // set by Serve before the readers start

	junk, badCookie, badTime, badAuth, replays, tooBig, relayed, relayDropped, evicted atomic.Uint64
	invitesStored, invitesRefused, invitesServed, invitesUnknown, invitesJoins         atomic.Uint64

	// mu guards everything below.
	mu       sync.Mutex
	nodes    map[nodekey.Key]*node
	keys     *keyCache
	pending  map[[2]nodekey.Key]pending // key: {from, to}
	sessions map[uint64]*session
	pairs    map[[2]nodekey.Key]uint64 // ordered pair → session id
	replay   *replayCache
	invites  *inviteStore
	// The accounts of the tables above (ledger.go, budget.go): who holds what,
	// what goes when full.
	nodesL    *ledger[nodekey.Key]
	pendingL  *ledger[[2]nodekey.Key]
	sessionsL *ledger[uint64]
	prefixes  *prefixLimiter
	lim       LimitStats // counters; the table sizes are filled in by Stats
	blamed    blame
	// As of the last limits log line.
	logged        LimitStats
	loggedEvicted uint64
}

type node struct {
	pub     nodekey.Key
	aead    cipher.AEAD
	addr    [2]netip.AddrPort
	seen    [2]time.Time
	connect tokenbucket.Bucket
	relay   tokenbucket.Bucket
	// requests is the node's budget of sealed requests (Limits); prefix
	// is the source prefix it is charged to in nodesL.
	requests tokenbucket.Bucket
	prefix   netip.Prefix
}

type pending struct {
	box []byte
	at  time.Time
}

type session struct {
	a, b     nodekey.Key
	lastUsed time.Time
}

// New loads (or on first start creates) the server key in cfg.StateDir.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating state directory %s (set -state-dir to a writable directory): %w", cfg.StateDir, err)
	}
	priv, created, err := nodekey.LoadOrCreate(filepath.Join(cfg.StateDir, KeyFile))
	if err != nil {
		return nil, err
	}
	if err := cfg.Limits.validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		log:      log,
		priv:     priv,
		pub:      priv.Public(),
		nodes:    map[nodekey.Key]*node{},
		keys:     newKeyCache(2 * cfg.MaxNodes),
		pending:  map[[2]nodekey.Key]pending{},
		sessions: map[uint64]*session{},
		pairs:    map[[2]nodekey.Key]uint64{},
		invites:  newInviteStore(cfg.MaxInvites, cfg.MaxInvitesPerOwner),
	}
	s.initLimits()
	if _, err := rand.Read(s.cookieSecret[:]); err != nil {
		return nil, fmt.Errorf("cookie secret: %w", err)
	}
	if created {
		log.Info("created server key; give nodes its public key", "public_key", s.pub, "file", filepath.Join(cfg.StateDir, KeyFile))
	}
	return s, nil
}

// PublicKey is the key nodes must be configured with.
func (s *Server) PublicKey() nodekey.Key { return s.pub }

// Listen binds the two configured UDP addresses.
func (s *Server) Listen() ([2]*net.UDPConn, error) {
	var conns [2]*net.UDPConn
	for i, a := range s.cfg.Listen {
		ua, err := net.ResolveUDPAddr("udp", a)
		if err != nil {
			closeAll(conns)
			return conns, fmt.Errorf("listen address %q: %w", a, err)
		}
		c, err := net.ListenUDP("udp", ua)
		if err != nil {
			closeAll(conns)
			return conns, fmt.Errorf("listening on %s (is another rendezvousd running?): %w", a, err)
		}
		conns[i] = c
	}
	return conns, nil
}

func closeAll(conns [2]*net.UDPConn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// Run listens and serves until ctx is cancelled; cancellation is not an
// error.
func (s *Server) Run(ctx context.Context) error {
	conns, err := s.Listen()
	if err != nil {
		return err
	}
	return s.Serve(ctx, conns)
}

// Serve answers on conns (main, second) until ctx is cancelled, then closes
// them.
func (s *Server) Serve(ctx context.Context, conns [2]*net.UDPConn) error {
	s.conns = conns
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	readers := s.tuneSockets()
	s.log.Info("serving", "listen", conns[0].LocalAddr().String(), "listen2", conns[1].LocalAddr().String(), "public_key", s.pub, "readers_per_port", readers)
	var wg sync.WaitGroup
	errs := make(chan error, 2*readers)
	for port := range conns {
		for range readers {
			wg.Go(func() {
				if err := s.runReader(ctx, port); err != nil {
					errs <- err
					cancel()
				}
			})
		}
	}
	wg.Go(func() { s.runSweeper(ctx) })
	<-ctx.Done()
	closeAll(conns)
	wg.Wait()
	s.mu.Lock()
	s.logLimitsLocked() // what the limits did since the last sweep
	s.mu.Unlock()
	s.log.Info("stopped", "stats", fmt.Sprintf("%+v", s.Stats()))
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func (s *Server) runReader(ctx context.Context, port int) error {
	s.log.Debug("reader started", "port", port)
	defer s.log.Debug("reader stopped", "port", port)
	buf := make([]byte, rendezvous.MaxPacket+1)
	w := &scratch{}
	for {
		n, src, err := s.conns[port].ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("reading on port %d: %w", port, err)
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		s.handle(buf[:n], src, port, w, s.send)
	}
}

func (s *Server) send(port int, to netip.AddrPort, b []byte) {
	if _, err := s.conns[port].WriteToUDPAddrPort(b, to); err != nil {
		s.log.Debug("send failed", "endpoint", to, "err", err)
	}
}

func (s *Server) runSweeper(ctx context.Context) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sweep()
		}
	}
}

// sweep drops expired registrations, one-sided connects, idle sessions and
// expired invites.
func (s *Server) sweep() {
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.nodes {
		if !s.aliveLocked(n, now) {
			s.removeLocked(n.pub)
		}
	}
	for k, p := range s.pending {
		if now.Sub(p.at) > pendingTTL {
			s.dropPendingLocked(k)
		}
	}
	for id, ss := range s.sessions {
		_, okA := s.nodes[ss.a]
		_, okB := s.nodes[ss.b]
		if !okA || !okB || now.Sub(ss.lastUsed) > sessionIdle {
			s.dropSessionLocked(id, ss)
		}
	}
	s.replay.sweep(now)
	s.prefixes.sweep(now, s.cfg.PrefixPerSec, s.cfg.PrefixBurst)
	s.invites.expire(now)
	s.logLimitsLocked()
}

func (s *Server) aliveLocked(n *node, now time.Time) bool {
	return now.Sub(n.seen[0]) <= s.cfg.TTL || now.Sub(n.seen[1]) <= s.cfg.TTL
}

func (s *Server) removeLocked(pub nodekey.Key) {
	delete(s.nodes, pub)
	s.nodesL.remove(pub)
}

func (s *Server) dropSessionLocked(id uint64, ss *session) {
	delete(s.sessions, id)
	delete(s.pairs, pairOf(ss.a, ss.b))
	s.sessionsL.remove(id)
}

func (s *Server) dropPendingLocked(k [2]nodekey.Key) {
	delete(s.pending, k)
	s.pendingL.remove(k)
}

// Stats returns the current counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	st := Stats{Nodes: len(s.nodes), Sessions: len(s.sessions), Pending: len(s.pending), Invites: len(s.invites.byID)}
	st.LimitStats = s.limitStatsLocked()
	s.mu.Unlock()
	st.Junk, st.BadCookie, st.BadTime = s.junk.Load(), s.badCookie.Load(), s.badTime.Load()
	st.BadAuth, st.Replays, st.TooBig = s.badAuth.Load(), s.replays.Load(), s.tooBig.Load()
	st.Relayed, st.RelayDropped, st.Evicted = s.relayed.Load(), s.relayDropped.Load(), s.evicted.Load()
	st.InvitesStored, st.InvitesRefused = s.invitesStored.Load(), s.invitesRefused.Load()
	st.InvitesServed, st.InvitesUnknown = s.invitesServed.Load(), s.invitesUnknown.Load()
	st.InviteJoins = s.invitesJoins.Load()
	return st
}

// sendFunc sends b from server port to an address.
type sendFunc func(port int, to netip.AddrPort, b []byte)

// scratch is per-reader buffers, so the hot path does not allocate.
type scratch struct {
	plain, out []byte
}

// handle processes one datagram from src received on port.
func (s *Server) handle(b []byte, src netip.AddrPort, port int, w *scratch, send sendFunc) {
	t, err := rendezvous.ParseHeader(b)
	if err != nil || !src.IsValid() {
		s.junk.Add(1)
		return
	}
	switch t {
	case rendezvous.TypeRelay:
		s.handleRelay(b, src, port, send)
		return
	case rendezvous.TypeInviteGet:
		s.handleInviteGet(b, src, port, w, send)
		return
	}
	if !t.Request() {
		s.junk.Add(1)
		return
	}
	env, err := rendezvous.ParseEnvelope(b)
	if err != nil {
		s.junk.Add(1)
		return
	}
	now := s.cfg.Now()
	cookie := s.cookie(now, 0, src)
	if !hmac.Equal(env.Cookie[:], cookie[:]) {
		prev := s.cookie(now, -1, src)
		if !hmac.Equal(env.Cookie[:], prev[:]) {
			s.badCookie.Add(1)
			s.sendCookie(&env, cookie, now, src, port, send)
			return
		}
	}
	if age := env.Age(now); age > s.cfg.Window || age < -s.cfg.Window {
		s.badTime.Add(1)
		s.sendCookie(&env, cookie, now, src, port, send)
		return
	}
	if !s.prefixAllow(src, now) {
		return
	}
	aead, err := s.aead(env.Sender)
	if err != nil {
		s.badAuth.Add(1)
		return
	}
	m, err := env.Open(aead, w.plain)
	if err != nil {
		s.badAuth.Add(1)
		return
	}
	s.mu.Lock()
	s.keys.put(env.Sender, aead)
	fresh := s.admitLocked(&env, now)
	var reply rendezvous.Message
	var pushes []push
	if fresh {
		reply, pushes = s.requestLocked(m, &env, aead, src, port, now)
	}
	s.mu.Unlock()
	if !fresh {
		return
	}

	if reply != nil {
		w.out = rendezvous.SealNonce(w.out[:0], aead, s.pub, cookie, now, replyNonce(), reply, 0)
		if len(w.out) > env.Len() {
			// The client did not pad its request: never answer with
			// more than was sent.
			s.tooBig.Add(1)
		} else {
			send(port, src, w.out)
		}
	}
	for _, p := range pushes {
		s.sendPush(p, now, w, send)
	}
}

// sendPush seals p for its node and sends it to the node's registered
// address.
func (s *Server) sendPush(p push, now time.Time, w *scratch, send sendFunc) {
	w.out = rendezvous.SealNonce(w.out[:0], p.aead, s.pub, s.cookie(now, 0, p.to), now, replyNonce(), p.msg, 0)
	send(p.port, p.to, w.out)
}

// push is a message the server sends to a node other than the requester's
// reply: Incoming or Punch. It goes to a registered address, which passed a
// cookie check, so it cannot be aimed at a third party.
type push struct {
	port int
	to   netip.AddrPort
	aead cipher.AEAD
	msg  rendezvous.Message
}

func (s *Server) requestLocked(m rendezvous.Message, env *rendezvous.Envelope, aead cipher.AEAD, src netip.AddrPort, port int, now time.Time) (rendezvous.Message, []push) {
	switch m := m.(type) {
	case rendezvous.Register:
		s.registerLocked(env.Sender, aead, src, port, now)
		return rendezvous.RegisterReply{
			ReplyTo:  env.ReplyID(),
			Observed: src,
			Port:     uint8(port),
			TTL:      uint16(s.cfg.TTL / time.Second),
		}, nil
	case rendezvous.Unregister:
		s.removeLocked(env.Sender)
		return rendezvous.UnregisterReply{ReplyTo: env.ReplyID()}, nil
	case rendezvous.Connect:
		// A sealed request with a valid cookie proves the node is at src
		// now: after its NAT rebound, this is its new mapping, and
		// introductions and the relay must use it.
		if n, ok := s.nodes[env.Sender]; ok {
			n.addr[port], n.seen[port] = src, now
		}
		status, pushes := s.connectLocked(env.Sender, m, src, now)
		return rendezvous.ConnectReply{ReplyTo: env.ReplyID(), Status: status}, pushes
	case rendezvous.InvitePut:
		// No registration needed: the key that sealed the request owns
		// the id, wherever it registers.
		stored := s.invites.put(env.Sender, src, m, now)
		if stored {
			s.invitesStored.Add(1)
		} else {
			s.invitesRefused.Add(1)
		}
		return rendezvous.InvitePutReply{ReplyTo: env.ReplyID(), ID: m.ID, Stored: stored}, nil
	}
	return nil, nil
}

func (s *Server) registerLocked(pub nodekey.Key, aead cipher.AEAD, src netip.AddrPort, port int, now time.Time) {
	if n, ok := s.nodes[pub]; ok {
		n.addr[port], n.seen[port] = src, now
		s.chargeNodeLocked(n, src)
		return
	}
	n := &node{pub: pub, aead: aead}
	n.addr[port], n.seen[port] = src, now
	n.connect = tokenbucket.Full(float64(s.cfg.ConnectBurst), now)
	n.relay = tokenbucket.Full(float64(s.cfg.RelayBurst), now)
	n.requests = tokenbucket.Full(float64(s.cfg.RequestBurst), now)
	s.chargeNodeLocked(n, src)
	s.nodes[pub] = n
}

// nodeLocked returns a registered, unexpired node.
func (s *Server) nodeLocked(pub nodekey.Key, now time.Time) *node {
	n, ok := s.nodes[pub]
	if !ok {
		return nil
	}
	if !s.aliveLocked(n, now) {
		return nil
	}
	return n
}

// primary is where pushes to n go: the port it refreshed most recently.
func (s *Server) primary(n *node, now time.Time) (int, netip.AddrPort) {
	if n.addr[0].IsValid() && (now.Sub(n.seen[0]) <= s.cfg.TTL || !n.addr[1].IsValid()) {
		return 0, n.addr[0]
	}
	return 1, n.addr[1]
}

// endpoints are n's unexpired observed endpoints on both ports.
func (s *Server) endpoints(n *node, now time.Time) [2]netip.AddrPort {
	var eps [2]netip.AddrPort
	for i := range eps {
		if now.Sub(n.seen[i]) <= s.cfg.TTL {
			eps[i] = n.addr[i]
		}
	}
	return eps
}

// connectLocked records that from wants to reach m.Target. If the target
// asked for from too, both get a Punch; otherwise the target (if
// registered) gets an Incoming, which carries no address.
func (s *Server) connectLocked(from nodekey.Key, m rendezvous.Connect, src netip.AddrPort, now time.Time) (rendezvous.Status, []push) {
	a := s.nodeLocked(from, now)
	if a == nil {
		return rendezvous.StatusNotRegistered, nil
	}
	if !a.connect.Take(now, s.cfg.ConnectPerSec, float64(s.cfg.ConnectBurst), 1) {
		s.lim.ConnectLimited++
		return rendezvous.StatusRateLimited, nil
	}
	if m.Target == from {
		return rendezvous.StatusOK, nil
	}
	b := s.nodeLocked(m.Target, now)
	other, ok := s.pending[[2]nodekey.Key{m.Target, from}]
	if ok && b != nil && now.Sub(other.at) <= pendingTTL {
		s.dropPendingLocked([2]nodekey.Key{m.Target, from})
		s.dropPendingLocked([2]nodekey.Key{from, m.Target})
		id := s.sessionLocked(a, b, now)
		delay := uint16(min(s.cfg.PunchDelay/time.Millisecond, 65535))
		pa, toA := s.primary(a, now)
		pb, toB := s.primary(b, now)
		return rendezvous.StatusOK, []push{
			{port: pa, to: toA, aead: a.aead, msg: rendezvous.Punch{Peer: b.pub, Endpoints: s.endpoints(b, now), DelayMs: delay, Session: id, Box: other.box}},
			{port: pb, to: toB, aead: b.aead, msg: rendezvous.Punch{Peer: a.pub, Endpoints: s.endpoints(a, now), DelayMs: delay, Session: id, Box: m.Box}},
		}
	}
	s.putPendingLocked([2]nodekey.Key{from, m.Target}, pending{box: m.Box, at: now}, src)
	if b == nil {
		return rendezvous.StatusOK, nil
	}
	pb, toB := s.primary(b, now)
	return rendezvous.StatusOK, []push{{port: pb, to: toB, aead: b.aead, msg: rendezvous.Incoming{From: from, Box: m.Box}}}
}

func pairOf(a, b nodekey.Key) [2]nodekey.Key {
	if string(a[:]) > string(b[:]) {
		a, b = b, a
	}
	return [2]nodekey.Key{a, b}
}

// sessionLocked returns the relay session of a and b, making one if needed.
// Ids are random so that nobody can guess one; a relay packet must also come
// from the sender's registered address.
func (s *Server) sessionLocked(na, nb *node, now time.Time) uint64 {
	a, b := na.pub, nb.pub
	pair := pairOf(a, b)
	if id, ok := s.pairs[pair]; ok {
		s.sessions[id].lastUsed = now
		s.sessionsL.touch(id)
		return id
	}
	var id uint64
	for id == 0 || s.sessions[id] != nil {
		var r [8]byte
		rand.Read(r[:])
		id = binary.BigEndian.Uint64(r[:])
	}
	s.chargeSessionLocked(id, na, nb)
	s.sessions[id] = &session{a: pair[0], b: pair[1], lastUsed: now}
	s.pairs[pair] = id
	return id
}

// handleRelay forwards a WireGuard packet between the two nodes of a
// session, unchanged (same size: no amplification), from and to the port it
// came in on.
func (s *Server) handleRelay(b []byte, src netip.AddrPort, port int, send sendFunc) {
	id, _, err := rendezvous.ParseRelay(b)
	if err != nil {
		s.junk.Add(1)
		return
	}
	now := s.cfg.Now()
	s.mu.Lock()
	to, ok := s.relayLocked(id, src, port, len(b), now)
	s.mu.Unlock()
	if !ok {
		s.relayDropped.Add(1)
		return
	}
	s.relayed.Add(1)
	send(port, to, b)
}

func (s *Server) relayLocked(id uint64, src netip.AddrPort, port, size int, now time.Time) (netip.AddrPort, bool) {
	ss := s.sessions[id]
	if ss == nil {
		return netip.AddrPort{}, false
	}
	a, b := s.nodeLocked(ss.a, now), s.nodeLocked(ss.b, now)
	if a == nil || b == nil {
		return netip.AddrPort{}, false
	}
	if b.addr[port] == src {
		a, b = b, a
	}
	if a.addr[port] != src || !b.addr[port].IsValid() {
		return netip.AddrPort{}, false
	}
	if !a.relay.Take(now, float64(s.cfg.RelayBytesPerSec), float64(s.cfg.RelayBurst), float64(size)) {
		return netip.AddrPort{}, false
	}
	ss.lastUsed = now
	s.sessionsL.touch(id)
	return b.addr[port], true
}

// aead returns the node↔server key for pub, from the cache or derived.
func (s *Server) aead(pub nodekey.Key) (cipher.AEAD, error) {
	s.mu.Lock()
	a := s.keys.get(pub)
	s.mu.Unlock()
	if a != nil {
		return a, nil
	}
	return rendezvous.ServerAEAD(s.priv, pub)
}

// cookie is the return-routability cookie for src in the current epoch
// (delta 0) or the previous one (delta -1).
func (s *Server) cookie(now time.Time, delta int64, src netip.AddrPort) [rendezvous.CookieLen]byte {
	epoch := now.UnixNano()/int64(cookieEpoch) + delta
	var in [8 + 16 + 2]byte
	binary.BigEndian.PutUint64(in[:], uint64(epoch))
	a := src.Addr().As16()
	copy(in[8:], a[:])
	binary.BigEndian.PutUint16(in[24:], src.Port())
	h := hmac.New(sha256.New, s.cookieSecret[:])
	h.Write(in[:])
	var c [rendezvous.CookieLen]byte
	copy(c[:], h.Sum(nil))
	return c
}

func (s *Server) sendCookie(env *rendezvous.Envelope, cookie [rendezvous.CookieLen]byte, now time.Time, src netip.AddrPort, port int, send sendFunc) {
	out := rendezvous.Cookie{Cookie: cookie, ReplyTo: env.ReplyID(), ServerTime: now.UnixMilli()}.Append(nil)
	if len(out) > env.Len() {
		return // cannot happen: a sealed request is larger than a Cookie
	}
	send(port, src, out)
}

func replyNonce() [rendezvous.NonceLen]byte {
	var n [rendezvous.NonceLen]byte
	rand.Read(n[:])
	return n
}
