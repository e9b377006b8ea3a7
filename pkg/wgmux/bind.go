package wgmux

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/peerline/peerline/pkg/nodekey"
)

// Bind is one WireGuard device's view of the shared socket.
type Bind struct {
	mux  *Mux
	peer nodekey.Key
	// indices are this device's recent handshake indices, oldest first;
	// guarded by mux.mu.
	indices []uint32

	relayMu  sync.Mutex
	relays   map[uint64]netip.AddrPort // session → server
	relayEPs map[uint64]*Endpoint

	lastDirect atomic.Pointer[Endpoint]
	queue      atomic.Pointer[queue]
	held       atomic.Pointer[heldInitiation]
	// holdUntil (unix ns): until then, initiations are held, not sent,
	// because the peer is about to initiate (see HoldInitiations).
	holdUntil atomic.Int64
	// openMu guards opening and closing, and wake and held.
	openMu sync.Mutex
	// wake, if set, is called when a message comes while the device is
	// closed (a parked tunnel, pkg/wgtunnel); parked keeps the last few
	// such messages for the device to read once it opens.
	wake   func()
	parked []parkedPacket

	// sentMu guards sent, the last initiation that left (CopyInitiation).
	sentMu sync.Mutex
	sent   sentInitiation

	// crossMu guards the following: the crossed-handshake guard
	// (crossing.go) and the peer's initiation it holds back.
	crossMu   sync.Mutex
	cross     crossGuard
	crossHeld *crossHeldInit
	// The loss repair (lossrepair.go): our last response, and the timer
	// that resends an unanswered initiation of ours.
	lastResp    sentResponse
	resendTimer *time.Timer
	// unanswered is when the first initiation of ours left since the
	// device last completed or answered a handshake (UnansweredSince).
	unanswered time.Time
	// answering is when a peer's initiation was last handed to the
	// device, until the device answers one; ownHeld is an initiation of
	// ours held meanwhile (answering.go).
	answering time.Time
	ownHeld   *ownHeldInit
	// confirmNext: our initiation was just answered, and the next data
	// message the device sends confirms the new key to the peer; it goes
	// twice (lossrepair.go).
	confirmNext atomic.Bool
}

// crossHeldInit is a peer's initiation held back by the crossing guard.
type crossHeldInit struct {
	msg   [initiationLen]byte
	ep    conn.Endpoint
	timer *time.Timer
}

// sentInitiation is an initiation that was sent, and the direct addresses
// a copy of it went to.
type sentInitiation struct {
	msg    [initiationLen]byte
	at     time.Time
	copied []netip.AddrPort
}

var _ conn.Bind = (*Bind)(nil)

type queue struct {
	ch   chan packet
	done chan struct{}
}

type packet struct {
	buf *[]byte
	n   int
	ep  conn.Endpoint
}

// bufSize holds any datagram that fits the usual 1500-byte path; larger
// ones get their own allocation.
const bufSize = 2048

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

func getBuf(n int) *[]byte {
	if n > bufSize {
		b := make([]byte, n)
		return &b
	}
	return bufPool.Get().(*[]byte)
}

func putBuf(b *[]byte) {
	if cap(*b) == bufSize {
		bufPool.Put(b)
	}
}

// receive hands a WireGuard message from the peer to the device, through
// the crossed-handshake guard; it never blocks the mux.
func (b *Bind) receive(p []byte, ep conn.Endpoint) {
	switch {
	case len(p) == initiationLen && p[0] == msgInitiation:
		b.answerAgain(p, ep)
		b.initiationIn(p, ep)
		return
	case len(p) == responseLen && p[0] == msgResponse:
		b.crossMu.Lock()
		if b.cross.responseIn(binary.LittleEndian.Uint32(p[8:])) {
			b.unanswered = time.Time{}
			b.confirmNext.Store(true)
			if b.crossHeld != nil {
				// Ours is answered: the held one would start a
				// second handshake the peer no longer waits for.
				b.crossHeld.timer.Stop()
				b.crossHeld = nil
				b.mux.stats.CrossDropped.Add(1)
			}
		}
		b.crossMu.Unlock()
	}
	b.deliver(p, ep)
}

// initiationIn applies the crossed-handshake guard to a peer's initiation.
func (b *Bind) initiationIn(p []byte, ep conn.Endpoint) {
	b.crossMu.Lock()
	now := time.Now()
	v, releaseAt := b.cross.initiationIn(pathOf(ep), now)
	if v != deliver {
		b.mux.stats.Crossed.Add(1)
		if crossGuardOff.Load() {
			v = deliver
		}
		b.mux.log.Info("handshake initiations crossed", "peer", b.peer, "action", v)
	}
	if v != holdBack {
		// The device answers it: a handshake, ours or not.
		b.unanswered = time.Time{}
		b.answering = now
		b.crossMu.Unlock()
		b.deliver(p, ep)
		return
	}
	h := b.crossHeld
	if h == nil {
		h = &crossHeldInit{}
		b.crossHeld = h
		h.timer = time.AfterFunc(releaseAt.Sub(now), func() { b.releaseCrossed(h) })
	}
	// A second copy (relayed and direct) or a retry replaces the first;
	// WireGuard would take only one of them.
	copy(h.msg[:], p)
	h.ep = ep
	b.crossMu.Unlock()
}

// releaseCrossed delivers a held initiation: ours went unanswered.
func (b *Bind) releaseCrossed(h *crossHeldInit) {
	b.crossMu.Lock()
	if b.crossHeld != h {
		b.crossMu.Unlock()
		return // answered meanwhile, or closed
	}
	b.crossHeld = nil
	b.cross.released()
	b.unanswered = time.Time{}
	b.answering = time.Now()
	msg, ep := h.msg, h.ep
	b.crossMu.Unlock()
	b.mux.stats.CrossReleased.Add(1)
	b.mux.log.Debug("our crossed initiation went unanswered; answering the peer's", "peer", b.peer)
	b.deliver(msg[:], ep)
}

// initiationOut records an initiation of this device's going on the wire
// to to, before it does: the answer may come back before Send returns.
func (b *Bind) initiationOut(p []byte, to pathKey) {
	idx := binary.LittleEndian.Uint32(p[4:])
	b.crossMu.Lock()
	fresh := b.cross.ownAt.IsZero() && !b.cross.ownDone || b.cross.own != idx
	if fresh && b.unanswered.IsZero() {
		b.unanswered = time.Now()
	}
	b.cross.initiationOut(idx, to, time.Now())
	if fresh {
		b.armResendLocked(idx)
	}
	b.crossMu.Unlock()
}

// pathOf is where ep sends to (or where a message delivered with it came
// from).
func pathOf(ep conn.Endpoint) pathKey {
	if e, ok := ep.(*Endpoint); ok {
		return pathKey{addr: e.addr, session: e.session}
	}
	return pathKey{}
}

// parkedPacket is a message that came while the device was closed.
type parkedPacket struct {
	packet
	at time.Time
}

// Held messages: a handshake initiation (and whatever follows it before
// the device is up) waits this long and no more, a few at most.
const (
	parkedMax    = 4
	parkedMaxAge = 5 * time.Second
)

// SetWake makes messages that come while the device is closed call fn
// (which must not block) and wait, a few and briefly, for the device to
// open: a parked tunnel wakes for its peer's handshake instead of losing
// it (pkg/wgtunnel).
func (b *Bind) SetWake(fn func()) {
	b.openMu.Lock()
	defer b.openMu.Unlock()
	b.wake = fn
}

// hold keeps a copy of p for the device while it is closed, and wakes it.
func (b *Bind) hold(p []byte, ep conn.Endpoint) {
	b.openMu.Lock()
	if b.wake == nil || b.queue.Load() != nil {
		b.openMu.Unlock()
		// No waking (or it just opened: its sender retries).
		b.mux.stats.NoDevice.Add(1)
		return
	}
	if len(b.parked) == parkedMax {
		putBuf(b.parked[0].buf)
		b.parked = slices.Delete(b.parked, 0, 1)
		b.mux.stats.NoDevice.Add(1)
	}
	buf := getBuf(len(p))
	n := copy(*buf, p)
	b.parked = append(b.parked, parkedPacket{packet: packet{buf: buf, n: n, ep: ep}, at: time.Now()})
	wake := b.wake
	b.openMu.Unlock()
	wake()
}

// deliver queues a copy of b for the device; it never blocks the mux.
func (b *Bind) deliver(p []byte, ep conn.Endpoint) {
	q := b.queue.Load()
	if q == nil {
		b.hold(p, ep)
		return
	}
	buf := getBuf(len(p))
	n := copy(*buf, p)
	select {
	case q.ch <- packet{buf: buf, n: n, ep: ep}:
	default:
		putBuf(buf)
		b.mux.stats.QueueFull.Add(1)
	}
}

// direct returns the endpoint for a datagram that came straight from addr,
// reusing the last one so that steady traffic does not allocate.
func (b *Bind) direct(addr netip.AddrPort) conn.Endpoint {
	if e := b.lastDirect.Load(); e != nil && e.addr == addr {
		return e
	}
	e := &Endpoint{addr: addr}
	b.lastDirect.Store(e)
	return e
}

// relayFrom returns the relay endpoint for session if from is its server.
func (b *Bind) relayFrom(session uint64, from netip.AddrPort) conn.Endpoint {
	b.relayMu.Lock()
	defer b.relayMu.Unlock()
	if server, ok := b.relays[session]; !ok || server != from {
		return nil
	}
	return b.relayEPLocked(session)
}

func (b *Bind) relayEPLocked(session uint64) *Endpoint {
	if b.relayEPs == nil {
		b.relayEPs = map[uint64]*Endpoint{}
	}
	e := b.relayEPs[session]
	if e == nil {
		e = &Endpoint{addr: b.relays[session], session: session}
		b.relayEPs[session] = e
	}
	return e
}

// Open starts receiving; port is ignored (the mux's socket is already
// bound) and the mux's port is reported.
func (b *Bind) Open(uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.openMu.Lock()
	defer b.openMu.Unlock()
	if b.queue.Load() != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	q := &queue{ch: make(chan packet, queueLen), done: make(chan struct{})}
	for _, h := range b.parked {
		if time.Since(h.at) < parkedMaxAge {
			q.ch <- h.packet
		} else {
			putBuf(h.buf)
		}
	}
	b.parked = nil
	b.queue.Store(q)
	recv := func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		var p packet
		select {
		case p = <-q.ch:
		case <-q.done:
			return 0, net.ErrClosed
		}
		n := 0
		for {
			sizes[n] = copy(packets[n], (*p.buf)[:p.n])
			eps[n] = p.ep
			putBuf(p.buf)
			n++
			if n == len(packets) {
				return n, nil
			}
			select {
			case p = <-q.ch:
			default:
				return n, nil
			}
		}
	}
	return []conn.ReceiveFunc{recv}, b.mux.port, nil
}

// Close stops receiving; the ReceiveFunc returns net.ErrClosed. With a
// wake set (SetWake), messages the device had not read yet are kept for
// its next opening, and it is woken for them: a handshake that came as a
// parked tunnel's device was closing is answered, not lost for WireGuard's
// 5 s retry.
func (b *Bind) Close() error {
	b.openMu.Lock()
	q := b.queue.Swap(nil)
	if q == nil {
		b.openMu.Unlock()
		return nil
	}
	close(q.done)
	kept := false
	for more := true; more; {
		select {
		case p := <-q.ch:
			if b.wake == nil || len(b.parked) == parkedMax {
				putBuf(p.buf)
				continue
			}
			b.parked = append(b.parked, parkedPacket{packet: p, at: time.Now()})
			kept = true
		default:
			more = false
		}
	}
	wake := b.wake
	b.openMu.Unlock()
	if kept {
		wake()
	}
	b.crossMu.Lock()
	if b.crossHeld != nil {
		b.crossHeld.timer.Stop()
		b.crossHeld = nil
	}
	if b.resendTimer != nil {
		b.resendTimer.Stop()
	}
	b.cross = crossGuard{wins: b.cross.wins}
	b.lastResp = sentResponse{}
	b.unanswered = time.Time{}
	b.answering = time.Time{}
	b.dropOwnHeldLocked()
	b.crossMu.Unlock()
	return nil
}

// SetMark is not needed: the socket is the mux's, in the daemon's
// namespace, and nothing routes by mark.
func (b *Bind) SetMark(uint32) error { return nil }

// BatchSize is 1: a phone line is 50 packets a second, and wireguard-go
// gives every device a read batch of this many 64 KiB buffers (the larger
// of the Bind's and the TUN's batch size), for the TUN and for this Bind
// each. With 253 devices, 8 cost about 250 MiB of heap; 1 costs 32 MiB.
func (b *Bind) BatchSize() int { return batchSize }

// batchSize is a variable only for BenchmarkBatchSize.
var batchSize = 1

var relayBufPool = sync.Pool{New: func() any { b := make([]byte, 0, bufSize); return &b }}

// Send sends WireGuard's datagrams to ep, learning this device's indices
// from the handshake messages among them.
func (b *Bind) Send(bufs [][]byte, ep conn.Endpoint) error {
	e, ok := ep.(*Endpoint)
	if !ok {
		return fmt.Errorf("wgmux: endpoint of type %T", ep)
	}
	for _, p := range bufs {
		isInit := len(p) == initiationLen && p[0] == msgInitiation
		isResponse := len(p) == responseLen && p[0] == msgResponse
		if isInit || isResponse {
			b.mux.learnIndex(b, binary.LittleEndian.Uint32(p[4:]))
		}
		var err error
		to := pathKey{addr: e.addr, session: e.session}
		switch {
		case isInit && time.Now().UnixNano() < b.holdUntil.Load():
			h := &heldInitiation{at: time.Now()}
			copy(h.msg[:], p)
			b.held.Store(h)
		case e.pending:
			if isInit {
				h := &heldInitiation{at: time.Now()}
				copy(h.msg[:], p)
				b.held.Store(h)
			}
		// Load first: a plain read on every data packet, the swap (a
		// write to a shared line) only once after a handshake.
		case len(p) >= transportMinLen && p[0] == msgTransport && b.confirmNext.Load() && b.confirmNext.CompareAndSwap(true, false):
			err = b.write(p, to)
			if err == nil && b.write(p, to) == nil {
				b.mux.stats.ConfirmDoubled.Add(1)
			}
		case isInit && b.holdWhileAnswering(p, to):
			// Held, and recorded as sent when it goes (answering.go).
			continue
		default:
			if isInit {
				b.dropOwnHeld() // this newer one replaces it
				b.initiationOut(p, to)
			}
			if isResponse {
				b.responseOut(p)
			}
			err = b.write(p, to)
		}
		if err != nil {
			return err
		}
		if isInit && !e.pending {
			b.recordSent(p, to)
		}
	}
	return nil
}

// recordSent keeps initiation p, gone to to, for CopyInitiation and the
// loss repair's resend.
func (b *Bind) recordSent(p []byte, to pathKey) {
	b.sentMu.Lock()
	copy(b.sent.msg[:], p)
	b.sent.at, b.sent.copied = time.Now(), b.sent.copied[:0]
	if to.session == 0 {
		b.sent.copied = append(b.sent.copied, to.addr)
	}
	b.sentMu.Unlock()
}

// CopyInitiation sends the last handshake initiation this device sent, if
// it is younger than maxAge, straight to each of to that it has not gone to
// yet. It returns how many copies it sent.
//
// While a path is being punched the device's endpoint is the relay, so its
// first handshake takes a round trip through the server (two hops each
// way). A copy sent along with the probes reaches the peer in one hop once
// both NATs are open; the peer answers whichever copy comes first (to the
// address it came from: WireGuard roams to it), and refuses the later one
// as a replay. Only the side that starts the handshake may call this, or
// the two ends initiate at once (see HoldInitiations).
func (b *Bind) CopyInitiation(to []netip.AddrPort, maxAge time.Duration) int {
	b.sentMu.Lock()
	defer b.sentMu.Unlock()
	if b.sent.at.IsZero() || time.Since(b.sent.at) > maxAge {
		return 0
	}
	n := 0
	for _, a := range to {
		if slices.Contains(b.sent.copied, a) {
			continue
		}
		// In flight to a as well (before it leaves: the answer may be
		// quick).
		b.initiationOut(b.sent.msg[:], pathKey{addr: a})
		if _, err := b.mux.conn.WriteToUDPAddrPort(b.sent.msg[:], a); err != nil {
			continue // a candidate we cannot reach; the others may do
		}
		b.sent.copied = append(b.sent.copied, a)
		n++
	}
	return n
}

// ParseEndpoint reads "ip:port" (direct) or RelayEndpoint's form.
func (b *Bind) ParseEndpoint(s string) (conn.Endpoint, error) {
	if s == PendingEndpoint {
		return pendingEP, nil
	}
	if rest, ok := strings.CutPrefix(s, relayPrefix); ok {
		hexID, server, ok := strings.Cut(rest, "@")
		if !ok {
			return nil, fmt.Errorf("relay endpoint %q: want %s<session>@<server>", s, relayPrefix)
		}
		session, err := strconv.ParseUint(hexID, 16, 64)
		if err != nil || session == 0 {
			return nil, fmt.Errorf("relay endpoint %q: bad session id", s)
		}
		b.relayMu.Lock()
		defer b.relayMu.Unlock()
		srv, known := b.relays[session]
		if !known || srv.String() != server {
			return nil, fmt.Errorf("relay endpoint %q: no such relay for this peer (call AddRelay first)", s)
		}
		return b.relayEPLocked(session), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %w", s, err)
	}
	return &Endpoint{addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}, nil
}

const relayPrefix = "relay:"

// IsRelayEndpoint reports whether s (as WireGuard's UAPI shows an
// endpoint) sends through a rendezvous relay.
func IsRelayEndpoint(s string) bool { return strings.HasPrefix(s, relayPrefix) }

// RelayEndpoint is the endpoint string (for WireGuard's UAPI) that sends
// through server with session id session.
func RelayEndpoint(session uint64, server netip.AddrPort) string {
	return fmt.Sprintf("%s%016x@%s", relayPrefix, session, server)
}

// Endpoint is where a device sends: a peer's UDP address, or a rendezvous
// server with a relay session.
type Endpoint struct {
	addr    netip.AddrPort
	session uint64 // 0: direct
	pending bool
}

var pendingEP = &Endpoint{pending: true}

var _ conn.Endpoint = (*Endpoint)(nil)

func (e *Endpoint) ClearSrc()           {}
func (e *Endpoint) SrcToString() string { return "" }
func (e *Endpoint) SrcIP() netip.Addr   { return netip.Addr{} }
func (e *Endpoint) DstIP() netip.Addr   { return e.addr.Addr() }

func (e *Endpoint) DstToString() string {
	if e.pending {
		return PendingEndpoint
	}
	if e.session != 0 {
		return RelayEndpoint(e.session, e.addr)
	}
	return e.addr.String()
}

// DstToBytes identifies the source for WireGuard's cookie (mac2) logic.
func (e *Endpoint) DstToBytes() []byte {
	b, _ := e.addr.MarshalBinary()
	return b
}

// PendingEndpoint is the endpoint a device starts with while its peer's
// path is unknown. WireGuard stamps a handshake as sent before it looks for
// an endpoint, and then waits 5 s before the next; a device with no
// endpoint at all would make the first real handshake wait that long. With
// this one, the initiation is held instead, and ResendHeld sends it on as
// soon as a path is found.
const PendingEndpoint = "pending:"

type heldInitiation struct {
	msg [initiationLen]byte
	at  time.Time
}

// HoldInitiations keeps this device's handshake initiations back for d:
// the peer is starting a handshake right now. If both ends initiate at the
// same moment, each consumes the other's initiation while its own is in
// flight, both responses are refused, and neither side can send until
// WireGuard retries 5 s later; a call placed then loses its first seconds.
// A held initiation can be sent later with ResendHeld.
func (b *Bind) HoldInitiations(d time.Duration) {
	b.holdUntil.Store(time.Now().Add(d).UnixNano())
}

// ResendHeld sends the last initiation WireGuard gave the pending endpoint
// to endpoint (a string as for ParseEndpoint), if it is younger than
// maxAge. It reports whether it sent one.
func (b *Bind) ResendHeld(endpoint string, maxAge time.Duration) (bool, error) {
	h := b.held.Swap(nil)
	if h == nil || time.Since(h.at) > maxAge {
		return false, nil
	}
	ep, err := b.ParseEndpoint(endpoint)
	if err != nil {
		return false, err
	}
	return true, b.Send([][]byte{h.msg[:]}, ep)
}

// UnansweredSince reports when the first of this device's handshake
// initiations that are still unanswered left (zero: none is). The device
// cannot send while it waits; a path whose probes are answered while this
// grows is a stalled session, not a working one. Answering the peer's
// initiation counts as an answer: the device then has a session.
func (b *Bind) UnansweredSince() time.Time {
	b.crossMu.Lock()
	defer b.crossMu.Unlock()
	return b.unanswered
}

// crossOwnAt is when this device's initiation in flight left (zero: none),
// for tests.
func (b *Bind) crossOwnAt() time.Time {
	b.crossMu.Lock()
	defer b.crossMu.Unlock()
	return b.cross.ownAt
}
