// Package wgtunnel runs one userspace WireGuard device (wireguard-go) per
// peer: its TUN lives inside the peer's namespace, and its datagrams go
// through the node's one UDP socket in the daemon's own namespace (a
// pkg/wgmux Bind), so the per-peer namespaces never need a route to the
// Internet.
//
// Each device is named <prefix><i> and opens a UAPI socket under
// /var/run/wireguard, so `wg show <prefix><i>` works from the daemon's
// namespace for debugging. The socket directory is shared by every namespace
// on the machine, which is why device names must be unique per machine and
// carry the daemon's prefix.
//
// The device itself runs only while the peer is in use: it parks when the
// peer is idle or does not answer, and wakes for the first packet either
// way (lazy.go); the TUN, the UAPI socket and the peer's state stay.
package wgtunnel

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/peerline/peerline/pkg/nodekey"
)

// Config describes one tunnel to one peer.
type Config struct {
	// Name is the TUN interface, the WireGuard device and its UAPI socket.
	Name string
	// Namespace is where the TUN is created; "" is the caller's.
	Namespace string
	// MTU of the TUN.
	MTU int
	// PrivateKey is this node's static key.
	PrivateKey nodekey.Key
	// Bind is the device's share of the node's one tunnel socket
	// (pkg/wgmux); required.
	Bind conn.Bind
	// Peer is the remote node.
	Peer Peer
	// Wrap, if set, sits between the TUN and WireGuard: the SIP/RTP
	// rewriter. Packets WireGuard reads were read from the TUN through it.
	Wrap func(tun.Device) tun.Device
	// InNamespace runs fn with the calling thread in namespace ns, for the
	// TUN creation (netsetup.Do).
	InNamespace func(ns string, fn func() error) error
}

// Peer is the remote end of a tunnel.
type Peer struct {
	PublicKey nodekey.Key
	Endpoint  netip.AddrPort
	// EndpointString, if set, replaces Endpoint: an endpoint in the Bind's
	// own form (wgmux's pending or relay endpoints).
	EndpointString string
	AllowedIPs     []netip.Prefix
	// Keepalive is the persistent keepalive interval; 0 is off.
	Keepalive time.Duration
}

// Tunnel is one peer's WireGuard tunnel: its TUN, its UAPI socket and,
// while the peer is in use, its wireguard-go device (lazy.go).
type Tunnel struct {
	name      string
	log       *slog.Logger
	cfg       Config
	base      baseTUN
	wrapped   tun.Device // base as WireGuard sees it (through cfg.Wrap)
	uapi      net.Listener
	peer      nodekey.Key
	keepalive time.Duration
	// lazy is set when the device may park: the TUN can let go of a
	// reader, and the Bind wakes the tunnel for the peer's messages.
	lazy bool

	wake chan struct{}
	// peerWoke: the last poke came from the Bind (a message from the
	// peer), not the TUN.
	peerWoke  atomic.Bool
	closing   chan struct{}
	closeOnce sync.Once
	loopDone  chan struct{}
	uapiDone  chan struct{}

	// mu guards what follows, and making and closing the device.
	mu     sync.Mutex
	dev    *device.Device // nil while parked
	wokeAt time.Time
	// endpoint is the last endpoint set (the Bind's form), keepaliveOn
	// whether the path manager turned the keepalive on: both are given
	// to the device again when it wakes.
	endpoint    string
	keepaliveOn bool
	// last is the device's last reading; rx and tx go on across devices
	// (before is what the devices before this one counted).
	last         Status
	before       Status
	rxAt, readAt time.Time
	// reads counts the packets devices read from the TUN (view.Read);
	// readsSeen is the count at the last reading.
	reads     atomic.Uint64
	readsSeen uint64
	// traffic counts the datagrams the devices' Bind received and sent
	// (countingBind): what the device reports (counters, handshake,
	// endpoint) moves only with them or with a change of its
	// configuration. trafficSeen is the count at the last reading and
	// trafficAt when it last moved; askedAt is when the device was last
	// asked, and fresh says that last needs no asking until traffic moves
	// again (readLocked).
	traffic     atomic.Uint64
	trafficSeen uint64
	trafficAt   time.Time
	askedAt     time.Time
	fresh       bool
	// data counts the transport messages with a packet in them that the
	// devices' Bind received and sent (isData); dataSeen is the count at
	// the last check and dataAt when it last moved (or the device woke,
	// or the keepalive was asked for). keepaliveRuns is whether the awake
	// device's persistent keepalive is on (keepaliveWanted).
	data          atomic.Uint64
	dataSeen      uint64
	dataAt        time.Time
	keepaliveRuns bool
	// readAfterSend is a device woken by its peer whose TUN reads wait
	// until it has sent its first message (wakeLocked).
	readAfterSend atomic.Pointer[view]
	listenPort    string
	closed        bool
}

// Waker is a Bind that can wake a parked tunnel: it calls fn (which must
// not block) when a message for the device comes while it is closed, and
// hands the message to the device when it opens again (pkg/wgmux).
type Waker interface {
	SetWake(fn func())
}

// InitiatesFirst reports whether local starts the handshake with peer when
// both come up together.
func InitiatesFirst(local, peer nodekey.Key) bool { return initiatesFirst(local, peer) }

// initiatesFirst says which end starts the handshake when both come up
// together: the one with the smaller public key.
//
// When both ends initiate at the same moment, each consumes the other's
// initiation while its own is in flight; in the lab (2 of 8 simultaneous
// starts) this left one direction dead until WireGuard retried the
// handshake about 5 s later, and a call placed then stalls. Our guess is
// that wireguard-go's handshake workers interleave consuming one message and
// deriving keys from another; we saw the outage, not the mechanism. Letting only one end start avoids the collision; the other
// still starts on its own a little later (pkg/peerpath holds it back), so
// a lost packet or a peer that is down costs a second, not the tunnel.
func initiatesFirst(local, peer nodekey.Key) bool {
	return bytes.Compare(local[:], peer[:]) < 0
}

// Start creates the TUN inside cfg.Namespace, the WireGuard device on it,
// configures the peer, brings the device up and serves UAPI. The TUN link
// itself is left down: bringing it up and routing to it is the caller's
// part of the namespace plumbing. The device parks when the peer is idle
// and wakes when it is used (lazy.go).
func Start(cfg Config, log *slog.Logger) (_ *Tunnel, err error) {
	if cfg.InNamespace == nil || cfg.Bind == nil {
		return nil, errors.New("wgtunnel: Config.InNamespace and Config.Bind are required")
	}
	log = log.With("dev", cfg.Name)
	var base baseTUN
	err = cfg.InNamespace(cfg.Namespace, func() error {
		var err error
		base, err = createTUN(cfg.Name, cfg.MTU)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("creating TUN %s in namespace %s: %w (is /dev/net/tun present and are we root?)", cfg.Name, cfg.Namespace, err)
	}
	var wrapped tun.Device = base
	if cfg.Wrap != nil {
		wrapped = cfg.Wrap(base)
	}
	waker, canWake := cfg.Bind.(Waker)
	// The path manager (pkg/peerpath) turns the keepalive on once it knows
	// a path (StartKeepalive), which also starts the handshake.
	keepalive := cfg.Peer.Keepalive
	cfg.Peer.Keepalive = 0
	t := &Tunnel{name: cfg.Name, log: log, cfg: cfg, base: base, wrapped: wrapped, peer: cfg.Peer.PublicKey, keepalive: keepalive,
		lazy: base.parks() && canWake, wake: make(chan struct{}, 1), closing: make(chan struct{}),
		loopDone: make(chan struct{}), uapiDone: make(chan struct{})}
	switch {
	case cfg.Peer.EndpointString != "":
		t.endpoint = cfg.Peer.EndpointString
	case cfg.Peer.Endpoint.IsValid():
		t.endpoint = cfg.Peer.Endpoint.String()
	}
	t.mu.Lock()
	err = t.wakeLocked("start")
	t.mu.Unlock()
	if err != nil {
		wrapped.Close()
		return nil, err
	}
	uapi, err := listenUAPI(cfg.Name)
	if err != nil {
		t.mu.Lock()
		t.parkLocked()
		t.mu.Unlock()
		wrapped.Close()
		return nil, err
	}
	t.uapi = uapi
	if t.lazy {
		waker.SetWake(t.pokeFromPeer)
	}
	go t.runUAPI()
	go t.run()
	testHook(t)
	log.Info("tunnel up", "endpoint", cfg.Peer.Endpoint)
	return t, nil
}

// poke asks the tunnel to wake; it never blocks.
func (t *Tunnel) poke() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// pokeFromPeer is poke for a message from the peer.
func (t *Tunnel) pokeFromPeer() {
	t.peerWoke.Store(true)
	t.poke()
}

// run wakes the device when poked and parks it when idle.
func (t *Tunnel) run() {
	defer close(t.loopDone)
	if !t.lazy {
		<-t.closing
		return
	}
	check := time.NewTicker(parkCheck)
	defer check.Stop()
	for {
		select {
		case <-t.closing:
			return
		case <-t.wake:
			t.mu.Lock()
			why := "traffic"
			if t.peerWoke.Swap(false) {
				why = "peer"
			}
			if t.dev == nil && !t.closed {
				if err := t.wakeLocked(why); err != nil {
					t.log.Error("waking the tunnel; the next packet tries again", "err", err)
					t.startWaiter()
				}
			}
			t.mu.Unlock()
		case now := <-check.C:
			t.mu.Lock()
			if t.dev != nil && !t.closed {
				t.readLocked()
				t.keepaliveLocked(now)
				if shouldPark(now, t.wokeAt, t.last.LastHandshake, t.rxAt, t.readAt) {
					t.parkLocked()
					t.log.Debug("tunnel parked", "last_handshake", t.last.LastHandshake)
					t.startWaiter()
				}
			}
			t.mu.Unlock()
		}
	}
}

// startWaiter pokes the tunnel when the phone side sends a packet into
// the parked TUN; the packet stays there for the device to read.
func (t *Tunnel) startWaiter() {
	go func() {
		if t.base.waitReadable() == nil {
			t.poke()
		}
	}()
}

// wakeLocked makes the device, configures and brings it up.
func (t *Tunnel) wakeLocked(why string) error {
	var td tun.Device = t.wrapped
	var v *view
	if t.lazy {
		// A waiter from the last park lets go (it pokes, which is
		// harmless), and the new device reads.
		t.base.interrupt()
		t.base.resume()
		v = newView(t.wrapped, t.base, &t.reads)
		td = v
	}
	dev := device.NewDevice(td, countingBind{t.cfg.Bind, &t.traffic, &t.data, &t.readAfterSend}, wgLogger(t.log))
	t.fresh = false
	cfg := t.cfg
	cfg.Peer.EndpointString = t.endpoint
	// The keepalive goes on with the device (which sends one at once,
	// and with it a handshake), except when the peer woke it: its
	// handshake is on the way in, and one of ours would cross it. The
	// next check turns it on then (keepaliveLocked).
	keepalive := t.keepaliveOn && why != "peer"
	if keepalive {
		cfg.Peer.Keepalive = t.keepaliveInterval()
	}
	if err := dev.IpcSet(uapiConfig(cfg)); err != nil {
		dev.Close()
		t.base.resume()
		return fmt.Errorf("configuring WireGuard device %s: %w", t.name, err)
	}
	if err := dev.Up(); err != nil {
		dev.Close()
		t.base.resume()
		return fmt.Errorf("bringing up WireGuard device %s: %w", t.name, err)
	}
	switch {
	case v != nil && why == "peer":
		// The peer's message that woke it (a handshake initiation, as a
		// rule) is handed over now; a packet waiting in the TUN (the
		// phones called at the same instant) would make the device
		// start a handshake of its own before it answers the peer's,
		// and the two cross: each end answers the other's and abandons
		// its own, and nothing moves until WireGuard's 5 s retry (seen
		// in TestLazyIdlePeer). So the device reads the TUN once it has
		// sent its answer (countingBind.Send), or after peerWakeRead if
		// it sends nothing; the packet then waits for the session the
		// answer makes.
		t.readAfterSend.Store(v)
		time.AfterFunc(peerWakeRead, func() {
			// Nothing sent: the keepalive may go on (keepaliveLocked).
			t.readAfterSend.CompareAndSwap(v, nil)
			v.open()
		})
	case v != nil:
		t.readAfterSend.Store(nil)
		v.open()
	}
	t.dev, t.wokeAt = dev, time.Now()
	// Whatever woke it (a packet from the phone side or from the peer,
	// the path manager) is about to use it: the keepalive's window starts.
	t.dataAt, t.dataSeen, t.keepaliveRuns = t.wokeAt, t.data.Load(), keepalive
	if t.rxAt.IsZero() {
		t.rxAt = t.wokeAt
	}
	if t.readAt.Before(t.wokeAt) {
		// The packet that woke it counts as read now.
		t.readAt = t.wokeAt
	}
	if why != "start" {
		t.log.Debug("tunnel woke", "why", why)
	}
	return nil
}

// parkLocked reads the device a last time and closes it; the TUN stays.
func (t *Tunnel) parkLocked() {
	if t.dev == nil {
		return
	}
	t.fresh = false
	t.readLocked()
	t.dev.Close()
	<-t.dev.Wait()
	t.dev = nil
	// The device's reader let go of the TUN (view.Close); the next
	// reader (the waiter, the next device) may read again.
	t.base.resume()
	t.before = Status{Endpoint: t.last.Endpoint, LastHandshake: t.last.LastHandshake, RxBytes: t.last.RxBytes, TxBytes: t.last.TxBytes}
}

// settleTime is how long after the last datagram the device is still
// asked: what a datagram changes (the bytes it decrypted, a completed
// handshake) lands after the Bind handed it over, once the device's
// queues got to it.
const settleTime = time.Second

// readLocked reads the awake device's state into last. The device is asked
// (a UAPI get: formatting and parsing its whole state, which the path
// manager's check of every awake tunnel four times a second made a good
// part of an idle node's CPU) only until settleTime after the last
// datagram or a change of its configuration; after that last is what it
// would say.
func (t *Tunnel) readLocked() {
	now := time.Now()
	if n := t.traffic.Load(); n != t.trafficSeen {
		t.trafficSeen, t.trafficAt = n, now
	}
	if n := t.reads.Load(); n != t.readsSeen {
		t.readsSeen, t.readAt = n, now
	}
	if t.fresh && t.askedAt.Sub(t.trafficAt) >= settleTime {
		return
	}
	s, err := t.dev.IpcGet()
	if err != nil {
		return
	}
	t.askedAt, t.fresh = now, true
	st := parseStatus(s)
	st.RxBytes += t.before.RxBytes
	st.TxBytes += t.before.TxBytes
	if st.LastHandshake.IsZero() {
		st.LastHandshake = t.before.LastHandshake
	}
	if st.RxBytes != t.last.RxBytes {
		t.rxAt = now
	}
	if st.Endpoint != "" {
		t.endpoint = st.Endpoint
	}
	if p := uapiValue(s, "listen_port"); p != "" {
		t.listenPort = p
	}
	t.last = st
}

func (t *Tunnel) keepaliveInterval() time.Duration {
	if t.keepalive <= 0 {
		return 25 * time.Second
	}
	return t.keepalive
}

func uapiConfig(cfg Config) string {
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%s\n", cfg.PrivateKey.Hex())
	b.WriteString("replace_peers=true\n")
	fmt.Fprintf(&b, "public_key=%s\n", cfg.Peer.PublicKey.Hex())
	switch {
	case cfg.Peer.EndpointString != "":
		fmt.Fprintf(&b, "endpoint=%s\n", cfg.Peer.EndpointString)
	case cfg.Peer.Endpoint.IsValid():
		fmt.Fprintf(&b, "endpoint=%s\n", cfg.Peer.Endpoint)
	}
	fmt.Fprintf(&b, "persistent_keepalive_interval=%d\n", int(cfg.Peer.Keepalive/time.Second))
	b.WriteString("replace_allowed_ips=true\n")
	for _, p := range cfg.Peer.AllowedIPs {
		fmt.Fprintf(&b, "allowed_ip=%s\n", p)
	}
	return b.String()
}

func (t *Tunnel) runUAPI() {
	defer close(t.uapiDone)
	for {
		c, err := t.uapi.Accept()
		if err != nil {
			return
		}
		go t.serveUAPI(c)
	}
}

// serveUAPI answers one UAPI connection: the device's own, or while it is
// parked a get from what it last said (a set wakes it).
func (t *Tunnel) serveUAPI(c net.Conn) {
	br := bufio.NewReader(c)
	first, err := br.Peek(6)
	if err != nil {
		c.Close()
		return
	}
	t.mu.Lock()
	if t.dev == nil && !t.closed && string(first) == "get=1\n" {
		reply := t.parkedGetLocked()
		t.mu.Unlock()
		c.Write([]byte(reply))
		c.Close()
		return
	}
	if t.dev == nil && !t.closed {
		if err := t.wakeLocked("uapi"); err != nil {
			t.log.Error("waking the tunnel for UAPI", "err", err)
		}
	}
	dev := t.dev
	t.mu.Unlock()
	if dev == nil {
		c.Close()
		return
	}
	dev.IpcHandle(bufferedConn{Conn: c, r: br})
	// A `wg set` may have changed what the device reports.
	t.mu.Lock()
	t.fresh = false
	t.mu.Unlock()
}

// countingBind is the device's Bind, counting the datagrams it receives
// and sends in n (one atomic add per batch), so that the tunnel knows when
// the device's state may have moved (readLocked), and those that carry
// data in data (one more per batch with any), for the keepalive
// (keepaliveLocked).
type countingBind struct {
	conn.Bind
	n, data *atomic.Uint64
	// readAfterSend, if set, is opened after the first Send.
	readAfterSend *atomic.Pointer[view]
}

func (b countingBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := b.Bind.Open(port)
	counted := make([]conn.ReceiveFunc, len(fns))
	for k, fn := range fns {
		counted[k] = func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
			n, err := fn(packets, sizes, eps)
			if n > 0 {
				b.n.Add(1)
				for i := range n {
					if isData(packets[i][:sizes[i]]) {
						b.data.Add(1)
						break
					}
				}
			}
			return n, err
		}
	}
	return counted, actual, err
}

func (b countingBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	b.n.Add(1)
	for _, m := range bufs {
		if isData(m) {
			b.data.Add(1)
			break
		}
	}
	err := b.Bind.Send(bufs, ep)
	if b.readAfterSend.Load() != nil {
		if v := b.readAfterSend.Swap(nil); v != nil {
			v.open()
		}
	}
	return err
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// parkedGetLocked is the UAPI get of a parked device, in wireguard-go's
// form, so that `wg show` lists the peer as it last was.
func (t *Tunnel) parkedGetLocked() string {
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%s\n", t.cfg.PrivateKey.Hex())
	if t.listenPort != "" {
		fmt.Fprintf(&b, "listen_port=%s\n", t.listenPort)
	}
	fmt.Fprintf(&b, "public_key=%s\n", t.peer.Hex())
	fmt.Fprintf(&b, "preshared_key=%s\n", strings.Repeat("0", 64))
	b.WriteString("protocol_version=1\n")
	if t.endpoint != "" {
		if ap, err := netip.ParseAddrPort(t.endpoint); err == nil {
			fmt.Fprintf(&b, "endpoint=%s\n", ap)
		}
	}
	var sec, nsec int64
	if !t.last.LastHandshake.IsZero() {
		sec, nsec = t.last.LastHandshake.Unix(), int64(t.last.LastHandshake.Nanosecond())
	}
	fmt.Fprintf(&b, "last_handshake_time_sec=%d\nlast_handshake_time_nsec=%d\n", sec, nsec)
	fmt.Fprintf(&b, "tx_bytes=%d\nrx_bytes=%d\n", t.last.TxBytes, t.last.RxBytes)
	// A parked device sends nothing: no keepalive either.
	b.WriteString("persistent_keepalive_interval=0\n")
	for _, p := range t.cfg.Peer.AllowedIPs {
		fmt.Fprintf(&b, "allowed_ip=%s\n", p)
	}
	b.WriteString("errno=0\n\n")
	return b.String()
}

// SetEndpoint points the device at its peer's endpoint (any form its Bind
// parses); a parked device gets it when it wakes.
func (t *Tunnel) SetEndpoint(endpoint string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.endpoint = endpoint
	if t.dev == nil {
		return nil
	}
	t.fresh = false
	if err := t.dev.IpcSet(fmt.Sprintf("public_key=%s\nendpoint=%s\n", t.peer.Hex(), endpoint)); err != nil {
		return fmt.Errorf("setting endpoint of %s: %w", t.name, err)
	}
	return nil
}

// StartKeepalive turns the persistent keepalive on (25 s if the config
// had none). Turning it on from off makes WireGuard send a keepalive at
// once, and with it a handshake if none is up: that is how a path found by
// punching gets its handshake without waiting for traffic. A parked device
// wakes for it. On a tunnel that parks, the keepalive then runs while the
// tunnel carries data (keepaliveLocked); it is the path manager's probes
// that keep an idle peer's path.
func (t *Tunnel) StartKeepalive() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return net.ErrClosed
	}
	t.keepaliveOn = true
	if t.dev == nil {
		// Made with the keepalive on, which sends one at once.
		return t.wakeLocked("path found")
	}
	t.dataAt, t.keepaliveRuns = time.Now(), true
	t.fresh = false
	set := fmt.Sprintf("public_key=%s\npersistent_keepalive_interval=0\npersistent_keepalive_interval=%d\n", t.peer.Hex(), int(t.keepaliveInterval()/time.Second))
	if err := t.dev.IpcSet(set); err != nil {
		return fmt.Errorf("starting keepalive on %s: %w", t.name, err)
	}
	return nil
}

// keepaliveLocked turns the awake device's persistent keepalive off when
// the tunnel carried no data for keepaliveIdle, and on again when it does
// (keepaliveWanted). Turning it on sends a keepalive at once, which is
// harmless with data flowing.
func (t *Tunnel) keepaliveLocked(now time.Time) {
	if n := t.data.Load(); n != t.dataSeen {
		t.dataSeen, t.dataAt = n, now
	}
	want := keepaliveWanted(now, t.keepaliveOn, t.dataAt)
	if want == t.keepaliveRuns {
		return
	}
	if want && t.readAfterSend.Load() != nil {
		// Woken by its peer and its answer not out yet: a keepalive now
		// would be an initiation of ours, crossing the peer's
		// (wakeLocked). A tick buffered while the device was made gets
		// here microseconds after; the next one after the answer turns
		// it on.
		return
	}
	sec := 0
	if want {
		sec = int(t.keepaliveInterval() / time.Second)
	}
	t.fresh = false
	if err := t.dev.IpcSet(fmt.Sprintf("public_key=%s\npersistent_keepalive_interval=%d\n", t.peer.Hex(), sec)); err != nil {
		t.log.Warn("setting the keepalive", "err", err)
		return
	}
	t.keepaliveRuns = want
	t.log.Debug("keepalive", "on", want)
}

// Name is the device name.
func (t *Tunnel) Name() string { return t.name }

// Parked reports whether the device is parked (lazy.go).
func (t *Tunnel) Parked() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dev == nil
}

// Close stops the device, removes its TUN and UAPI socket. It is idempotent.
func (t *Tunnel) Close() error {
	t.closeOnce.Do(func() {
		close(t.closing)
		<-t.loopDone
		t.uapi.Close()
		<-t.uapiDone
		t.mu.Lock()
		t.closed = true
		t.parkLocked()
		t.mu.Unlock()
		t.base.interrupt()
		t.wrapped.Close()
		t.log.Info("tunnel closed")
	})
	return nil
}

// Status is what WireGuard knows about the peer.
type Status struct {
	Endpoint      string
	LastHandshake time.Time
	RxBytes       uint64
	TxBytes       uint64
}

// Status reads the peer's state from the device, or while it is parked
// what it last said.
func (t *Tunnel) Status() (Status, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dev != nil {
		t.readLocked()
	}
	st := t.last
	if st.Endpoint == "" {
		st.Endpoint = t.endpoint
	}
	return st, nil
}

// uapiValue is the first value of key in a UAPI get.
func uapiValue(s, key string) string {
	for line := range strings.Lines(s) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && k == key {
			return v
		}
	}
	return ""
}

func parseStatus(s string) Status {
	var st Status
	var sec, nsec int64
	// Read often (the path manager checks each awake tunnel every few
	// seconds): no Scanner, whose 4 KiB buffer per call was most of the
	// garbage an idle node with 253 peers made.
	for line := range strings.Lines(s) {
		k, v, ok := strings.Cut(strings.TrimRight(line, "\r\n"), "=")
		if !ok {
			continue
		}
		switch k {
		case "endpoint":
			st.Endpoint = v
		case "last_handshake_time_sec":
			sec, _ = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_nsec":
			nsec, _ = strconv.ParseInt(v, 10, 64)
		case "rx_bytes":
			st.RxBytes, _ = strconv.ParseUint(v, 10, 64)
		case "tx_bytes":
			st.TxBytes, _ = strconv.ParseUint(v, 10, 64)
		}
	}
	if sec != 0 || nsec != 0 {
		st.LastHandshake = time.Unix(sec, nsec)
	}
	return st
}

func wgLogger(log *slog.Logger) *device.Logger {
	return &device.Logger{
		Verbosef: func(format string, args ...any) {
			if log.Enabled(context.Background(), slog.LevelDebug) {
				log.Debug(fmt.Sprintf(format, args...))
			}
		},
		Errorf: func(format string, args ...any) {
			log.Warn(fmt.Sprintf(format, args...))
		},
	}
}
