// Package rvclient is a node's side of the rendezvous protocol
// (pkg/rendezvous): it registers with one server over a net.PacketConn it is
// given, learns its NAT mapping as seen on both server ports, asks the server
// to introduce it to a peer, answers introductions from paired peers, and
// sends and receives relayed packets. It also stores this node's sealed
// invite blobs on the server (PutInvite); GetInvite fetches one from any
// server, without a key or registration, for a node joining by invite.
//
// The client does not own the socket's reads if the caller does not want it
// to: a node that shares one UDP socket between WireGuard and rendezvous
// passes rendezvous datagrams to HandlePacket; tests and simple callers use
// Run, which reads the socket itself.
package rvclient

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
)

// Server is a rendezvous server as a node is configured with it.
type Server struct {
	// Addrs are the main and second address (usually ports 3478, 3479).
	Addrs [2]netip.AddrPort
	// Key is the server's public key (rendezvousd -public-key).
	Key nodekey.Key
}

// Options are the client's callbacks and knobs; all may be zero.
type Options struct {
	Log *slog.Logger
	// Accept reports whether peer may be introduced to this node: it is
	// paired, or pair (the pairing data in its box, nil if none) is a valid
	// invite. Only then is an Incoming answered (which lets the server
	// introduce the two). Nil accepts nobody.
	Accept func(peer nodekey.Key, pair []byte) bool
	// Pair returns pairing data to send to peer in boxes; nil for none.
	Pair func(peer nodekey.Key) []byte
	// OnPair is called (from the reading goroutine) with the pairing data
	// a peer sent in an introduction.
	OnPair func(peer nodekey.Key, pair []byte)
	// Local returns this node's LAN endpoints, sent to peers in boxes.
	Local func() []netip.AddrPort
	// OnIntroduction is called (from the reading goroutine; do not block)
	// for every introduction, including those answering Connect.
	OnIntroduction func(Introduction)
	// OnInviteJoin is called (from the reading goroutine; do not block)
	// with a join box a joiner sent along with its fetch of the invite
	// blob this node stored under id.
	OnInviteJoin func(id [rendezvous.InviteIDLen]byte, box []byte)
	// OnRelay is called (from the reading goroutine) with each packet
	// relayed to this node. payload is only valid during the call.
	OnRelay func(session uint64, payload []byte)
	// Refresh is the re-registration interval in Run (default 20 s, well
	// under the server's 2-minute expiry and common NAT UDP timeouts of
	// 30 s and more; a node whose NAT rebound is found again within it).
	Refresh time.Duration
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Introduction is the server's answer once both sides asked for each other.
type Introduction struct {
	Peer nodekey.Key
	// Endpoints are the peer's mappings as the server saw them on its two
	// ports (zero if unknown). Equal when the peer's NAT is
	// endpoint-independent.
	Endpoints [2]netip.AddrPort
	// Local are the LAN endpoints the peer put in its box; nil if the box
	// was missing or did not open (a server cannot forge one).
	Local []netip.AddrPort
	// Delay is how long to wait before probing.
	Delay time.Duration
	// Session is the relay session id for SendRelay.
	Session uint64
}

// Errors.
var (
	ErrNoReply       = errors.New("rendezvous server did not answer; check its address and that UDP to it is not blocked")
	ErrRateLimited   = errors.New("rendezvous server is rate limiting this node; retry later")
	ErrNotRegistered = errors.New("not registered with the rendezvous server")
)

// Client talks to one rendezvous server.
type Client struct {
	pc   net.PacketConn
	priv nodekey.Key
	pub  nodekey.Key
	srv  Server
	opt  Options
	log  *slog.Logger
	aead cipher.AEAD
	// registered is when the server last answered a Register (Unix ns).
	registered atomic.Int64
	// observed is this node's address as the server last saw it (an
	// invalid AddrPort until a register is answered).
	observed atomic.Pointer[netip.AddrPort]

	// mu guards the fields below.
	mu       sync.Mutex
	cookies  [2][rendezvous.CookieLen]byte
	offset   time.Duration // server clock minus ours
	waiters  map[rendezvous.ReplyID]chan any
	intros   map[nodekey.Key][]chan Introduction
	peerKeys map[nodekey.Key]cipher.AEAD
	seen     map[[rendezvous.NonceLen]byte]time.Time
}

// New returns a client for srv using pc, which the caller keeps owning.
func New(pc net.PacketConn, priv nodekey.Key, srv Server, opt Options) (*Client, error) {
	aead, err := rendezvous.NodeAEAD(priv, srv.Key)
	if err != nil {
		return nil, fmt.Errorf("server key %s: %w", srv.Key, err)
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Refresh <= 0 {
		opt.Refresh = 20 * time.Second
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	for i := range srv.Addrs {
		srv.Addrs[i] = unmap(srv.Addrs[i])
	}
	return &Client{
		pc: pc, priv: priv, pub: priv.Public(), srv: srv, opt: opt,
		log:      opt.Log.With("server", srv.Addrs[0]),
		aead:     aead,
		waiters:  map[rendezvous.ReplyID]chan any{},
		intros:   map[nodekey.Key][]chan Introduction{},
		peerKeys: map[nodekey.Key]cipher.AEAD{},
		seen:     map[[rendezvous.NonceLen]byte]time.Time{},
	}, nil
}

// PublicKey is this node's identity.
func (c *Client) PublicKey() nodekey.Key { return c.pub }

// Run reads the socket and keeps the registration on both ports fresh until
// ctx is done or the socket fails. Cancellation is not an error; the caller
// closes the socket.
func (c *Client) Run(ctx context.Context) error {
	c.log.Debug("client started")
	defer c.log.Debug("client stopped")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Unblock ReadFrom when ctx ends.
	stop := context.AfterFunc(ctx, func() { c.pc.SetReadDeadline(time.Now()) })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { c.runRefresh(ctx) })
	buf := make([]byte, rendezvous.MaxPacket+1)
	for {
		n, addr, err := c.pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("reading rendezvous socket: %w", err)
		}
		ua, ok := addr.(*net.UDPAddr)
		if !ok {
			continue
		}
		c.HandlePacket(buf[:n], unmap(ua.AddrPort()))
	}
}

// Maintain keeps the registration on both ports fresh until ctx is done,
// for a caller that reads the socket itself and passes datagrams to
// HandlePacket.
func (c *Client) Maintain(ctx context.Context) { c.runRefresh(ctx) }

func (c *Client) runRefresh(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for port := range c.srv.Addrs {
			if !c.srv.Addrs[port].IsValid() {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if _, err := c.Register(rctx, port); err != nil && ctx.Err() == nil {
				c.log.Warn("registration failed; retrying", "port", port, "err", err)
			}
			cancel()
		}
		t.Reset(c.opt.Refresh)
	}
}

// HandlePacket processes one datagram that arrived from from. It reports
// whether it was a rendezvous datagram (consumed) rather than something
// else (WireGuard) the caller should handle.
func (c *Client) HandlePacket(b []byte, from netip.AddrPort) bool {
	if !rendezvous.IsRendezvous(b) {
		return false
	}
	port := c.serverPort(from)
	if port < 0 {
		return true // not from our server: ignore
	}
	t, err := rendezvous.ParseHeader(b)
	if err != nil {
		return true
	}
	switch t {
	case rendezvous.TypeCookie:
		m, err := rendezvous.ParseCookie(b)
		if err != nil {
			return true
		}
		c.mu.Lock()
		ch := c.waiters[m.ReplyTo]
		if ch != nil {
			// Only a cookie answering our own pending request is taken,
			// so a stranger cannot feed us a clock or cookie unasked.
			c.cookies[port] = m.Cookie
			c.offset = time.UnixMilli(m.ServerTime).Sub(c.opt.Now())
			deliver(ch, m)
		}
		c.mu.Unlock()
	case rendezvous.TypeRelay:
		id, payload, err := rendezvous.ParseRelay(b)
		if err == nil && c.opt.OnRelay != nil {
			c.opt.OnRelay(id, payload)
		}
	default:
		c.handleSealed(b, port)
	}
	return true
}

func (c *Client) handleSealed(b []byte, port int) {
	env, err := rendezvous.ParseEnvelope(b)
	if err != nil || env.Sender != c.srv.Key || env.Type.Request() {
		return
	}
	m, err := env.Open(c.aead, nil)
	if err != nil {
		c.log.Debug("dropping message that does not authenticate", "type", env.Type)
		return
	}
	now := c.opt.Now()
	c.mu.Lock()
	window := time.Minute
	if age := env.Age(now.Add(c.offset)); age > window || age < -window || !c.freshLocked(env.Nonce, now) {
		c.mu.Unlock()
		return
	}
	c.cookies[port] = env.Cookie
	var replyTo rendezvous.ReplyID
	switch m := m.(type) {
	case rendezvous.RegisterReply:
		replyTo = m.ReplyTo
	case rendezvous.ConnectReply:
		replyTo = m.ReplyTo
	case rendezvous.UnregisterReply:
		replyTo = m.ReplyTo
	case rendezvous.InvitePutReply:
		replyTo = m.ReplyTo
	}
	if ch := c.waiters[replyTo]; ch != nil {
		deliver(ch, m)
	}
	c.mu.Unlock()

	switch m := m.(type) {
	case rendezvous.InviteJoin:
		if c.opt.OnInviteJoin != nil {
			c.opt.OnInviteJoin(m.ID, m.Box)
		}
	case rendezvous.Incoming:
		if c.opt.Accept == nil {
			return
		}
		info, err := c.openBox(m.From, m.Box)
		if err != nil {
			c.log.Debug("ignoring introduction request whose box does not open", "peer", m.From, "err", err)
			return
		}
		if !c.opt.Accept(m.From, info.Pair) {
			c.log.Debug("ignoring introduction request from unpaired key", "peer", m.From)
			return
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := c.connect(ctx, m.From); err != nil {
				c.log.Debug("answering introduction failed", "peer", m.From, "err", err)
			}
		}()
	case rendezvous.Punch:
		in := Introduction{Peer: m.Peer, Endpoints: m.Endpoints, Delay: time.Duration(m.DelayMs) * time.Millisecond, Session: m.Session}
		if info, err := c.openBox(m.Peer, m.Box); err == nil {
			in.Local = info.Local
			if info.Pair != nil && c.opt.OnPair != nil {
				c.opt.OnPair(m.Peer, info.Pair)
			}
		} else {
			c.log.Debug("introduction without a valid box", "peer", m.Peer, "err", err)
		}
		c.mu.Lock()
		chs := c.intros[m.Peer]
		delete(c.intros, m.Peer)
		c.mu.Unlock()
		for _, ch := range chs {
			ch <- in // buffered, one each
		}
		if c.opt.OnIntroduction != nil {
			c.opt.OnIntroduction(in)
		}
	}
}

// freshLocked rejects a server message seen before (an on-path replay).
func (c *Client) freshLocked(nonce [rendezvous.NonceLen]byte, now time.Time) bool {
	if _, ok := c.seen[nonce]; ok {
		return false
	}
	if len(c.seen) > 4096 {
		for k, t := range c.seen {
			if now.Sub(t) > 3*time.Minute {
				delete(c.seen, k)
			}
		}
	}
	c.seen[nonce] = now
	return true
}

func deliver(ch chan any, v any) {
	select {
	case ch <- v:
	default:
	}
}

func (c *Client) serverPort(from netip.AddrPort) int {
	for i, a := range c.srv.Addrs {
		if a == from {
			return i
		}
	}
	return -1
}

// request sends m to server port and waits for its reply, retransmitting,
// and fetching a fresh cookie when the server asks for one.
func (c *Client) request(ctx context.Context, port int, m rendezvous.Message) (rendezvous.Message, error) {
	to := c.srv.Addrs[port]
	if !to.IsValid() {
		return nil, fmt.Errorf("server port %d has no address", port)
	}
	dst := net.UDPAddrFromAddrPort(to)
	wait := 250 * time.Millisecond
	var buf []byte
	cookieRounds := 0
	for {
		c.mu.Lock()
		cookie, now := c.cookies[port], c.opt.Now().Add(c.offset)
		c.mu.Unlock()
		var err error
		buf, err = rendezvous.Seal(buf[:0], c.aead, c.pub, cookie, now, m, rendezvous.MinRequestLen)
		if err != nil {
			return nil, err
		}
		env, err := rendezvous.ParseEnvelope(buf)
		if err != nil {
			return nil, err
		}
		id := env.ReplyID()
		ch := make(chan any, 1)
		c.mu.Lock()
		c.waiters[id] = ch
		c.mu.Unlock()
		_, err = c.pc.WriteTo(buf, dst)
		var reply any
		if err == nil {
			t := time.NewTimer(wait)
			select {
			case reply = <-ch:
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
		c.mu.Lock()
		delete(c.waiters, id)
		c.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("sending to rendezvous server %s: %w", to, err)
		}
		switch r := reply.(type) {
		case rendezvous.Message:
			return r, nil
		case rendezvous.Cookie:
			// Cookie and clock updated: send again at once, but only a
			// few times, so a server that always asks cannot spin us.
			if cookieRounds++; cookieRounds <= 3 {
				continue
			}
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (%s, port %d): %w", ErrNoReply, to, port, ctx.Err())
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// Register registers on server port (0 main, 1 second) and returns this
// node's endpoint as the server saw it there.
func (c *Client) Register(ctx context.Context, port int) (netip.AddrPort, error) {
	r, err := c.request(ctx, port, rendezvous.Register{})
	if err != nil {
		return netip.AddrPort{}, err
	}
	rr, ok := r.(rendezvous.RegisterReply)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("rendezvous server answered register with %s", r.Type())
	}
	c.registered.Store(c.opt.Now().UnixNano())
	obs := unmap(rr.Observed)
	c.observed.Store(&obs)
	return rr.Observed, nil
}

// ClassifyMapping registers on both server ports and compares the mappings:
// endpointIndependent is true when the NAT (if any) used the same public
// endpoint towards both, so a peer can reach this node at the endpoint the
// server reports; false means a symmetric NAT, where punching needs luck
// and the relay is the likely path.
func (c *Client) ClassifyMapping(ctx context.Context) (endpointIndependent bool, mappings [2]netip.AddrPort, err error) {
	for port := range mappings {
		if mappings[port], err = c.Register(ctx, port); err != nil {
			return false, mappings, err
		}
	}
	return mappings[0] == mappings[1], mappings, nil
}

// Connect asks the server to introduce this node to peer and waits until
// peer asked for this node too (it does so when it is paired with us).
// Until then ctx bounds the wait: an unpaired or offline peer looks the
// same, on purpose.
func (c *Client) Connect(ctx context.Context, peer nodekey.Key) (Introduction, error) {
	ch := make(chan Introduction, 1)
	c.mu.Lock()
	c.intros[peer] = append(c.intros[peer], ch)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.intros[peer] = removeChan(c.intros[peer], ch)
		if len(c.intros[peer]) == 0 {
			delete(c.intros, peer)
		}
		c.mu.Unlock()
	}()
	if _, err := c.connect(ctx, peer); err != nil {
		return Introduction{}, err
	}
	select {
	case in := <-ch:
		return in, nil
	case <-ctx.Done():
		return Introduction{}, fmt.Errorf("no introduction to %s: the peer is offline or not paired with this node: %w", peer, ctx.Err())
	}
}

func removeChan(chs []chan Introduction, ch chan Introduction) []chan Introduction {
	for i, x := range chs {
		if x == ch {
			return append(chs[:i], chs[i+1:]...)
		}
	}
	return chs
}

// connect sends one Connect (re-registering once if the server forgot us,
// e.g. after a restart) and returns the server's status.
func (c *Client) connect(ctx context.Context, peer nodekey.Key) (rendezvous.Status, error) {
	for attempt := 0; ; attempt++ {
		box, err := c.sealBox(peer)
		if err != nil {
			return 0, err
		}
		r, err := c.request(ctx, 0, rendezvous.Connect{Target: peer, Box: box})
		if err != nil {
			return 0, err
		}
		cr, ok := r.(rendezvous.ConnectReply)
		if !ok {
			return 0, fmt.Errorf("rendezvous server answered connect with %s", r.Type())
		}
		switch cr.Status {
		case rendezvous.StatusOK:
			return cr.Status, nil
		case rendezvous.StatusRateLimited:
			return cr.Status, ErrRateLimited
		case rendezvous.StatusNotRegistered:
			if attempt > 0 {
				return cr.Status, ErrNotRegistered
			}
			if _, err := c.Register(ctx, 0); err != nil {
				return cr.Status, err
			}
		default:
			return cr.Status, fmt.Errorf("rendezvous server answered connect with unknown status %d", cr.Status)
		}
	}
}

// Unregister removes this node's registration (on shutdown).
func (c *Client) Unregister(ctx context.Context) error {
	_, err := c.request(ctx, 0, rendezvous.Unregister{})
	return err
}

// SendRelay sends payload (a WireGuard packet) to the peer of session
// through the server's main port.
func (c *Client) SendRelay(session uint64, payload []byte) error {
	b := rendezvous.AppendRelay(make([]byte, 0, rendezvous.RelayHeaderLen+len(payload)), session, payload)
	_, err := c.pc.WriteTo(b, net.UDPAddrFromAddrPort(c.srv.Addrs[0]))
	return err
}

func (c *Client) peerAEAD(peer nodekey.Key) (cipher.AEAD, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a := c.peerKeys[peer]; a != nil {
		return a, nil
	}
	a, err := rendezvous.PeerAEAD(c.priv, peer)
	if err != nil {
		return nil, err
	}
	c.peerKeys[peer] = a
	return a, nil
}

func (c *Client) sealBox(peer nodekey.Key) ([]byte, error) {
	a, err := c.peerAEAD(peer)
	if err != nil {
		return nil, err
	}
	info := rendezvous.PeerInfo{Time: c.opt.Now().UnixMilli()}
	if c.opt.Pair != nil {
		info.Pair = c.opt.Pair(peer)
	}
	if c.opt.Local != nil {
		info.Local = c.opt.Local()
		if len(info.Local) > rendezvous.MaxLocalEndpoints {
			info.Local = info.Local[:rendezvous.MaxLocalEndpoints]
		}
	}
	return rendezvous.SealBox(a, c.pub, peer, info)
}

// boxMaxAge is how old a peer's box may be; older ones were replayed.
const boxMaxAge = 2 * time.Minute

func (c *Client) openBox(peer nodekey.Key, box []byte) (rendezvous.PeerInfo, error) {
	a, err := c.peerAEAD(peer)
	if err != nil {
		return rendezvous.PeerInfo{}, err
	}
	info, err := rendezvous.OpenBox(a, peer, c.pub, box)
	if err != nil {
		return rendezvous.PeerInfo{}, err
	}
	if age := c.opt.Now().Sub(time.UnixMilli(info.Time)); age > boxMaxAge || age < -boxMaxAge {
		return rendezvous.PeerInfo{}, fmt.Errorf("box is %v old", age)
	}
	return info, nil
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
