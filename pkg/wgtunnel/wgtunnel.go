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

// Tunnel is a running WireGuard device.
type Tunnel struct {
	name      string
	log       *slog.Logger
	dev       *device.Device
	uapi      net.Listener
	peer      nodekey.Key
	keepalive time.Duration

	closeOnce sync.Once
	uapiDone  chan struct{}
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
// part of the namespace plumbing.
func Start(cfg Config, log *slog.Logger) (_ *Tunnel, err error) {
	if cfg.InNamespace == nil || cfg.Bind == nil {
		return nil, errors.New("wgtunnel: Config.InNamespace and Config.Bind are required")
	}
	log = log.With("dev", cfg.Name)
	var native tun.Device
	err = cfg.InNamespace(cfg.Namespace, func() error {
		var err error
		native, err = createTUN(cfg.Name, cfg.MTU)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("creating TUN %s in namespace %s: %w (is /dev/net/tun present and are we root?)", cfg.Name, cfg.Namespace, err)
	}
	// NativeTun.MTU looks the link up by name in the calling thread's
	// namespace, and wireguard-go calls it from arbitrary goroutines; ours
	// live in the daemon's namespace where no such link exists.
	var td tun.Device = &fixedMTU{Device: native, mtu: cfg.MTU}
	if cfg.Wrap != nil {
		td = cfg.Wrap(td)
	}
	dev := device.NewDevice(td, cfg.Bind, wgLogger(log))
	defer func() {
		if err != nil {
			dev.Close()
		}
	}()
	// The path manager (pkg/peerpath) turns the keepalive on once it knows
	// a path (StartKeepalive), which also starts the handshake.
	keepalive := cfg.Peer.Keepalive
	cfg.Peer.Keepalive = 0
	if err := dev.IpcSet(uapiConfig(cfg)); err != nil {
		return nil, fmt.Errorf("configuring WireGuard device %s: %w", cfg.Name, err)
	}
	if err := dev.Up(); err != nil {
		return nil, fmt.Errorf("bringing up WireGuard device %s: %w", cfg.Name, err)
	}
	uapi, err := listenUAPI(cfg.Name)
	if err != nil {
		return nil, err
	}
	t := &Tunnel{name: cfg.Name, log: log, dev: dev, uapi: uapi, peer: cfg.Peer.PublicKey, keepalive: keepalive,
		uapiDone: make(chan struct{})}
	go t.runUAPI()
	log.Info("tunnel up", "endpoint", cfg.Peer.Endpoint)
	return t, nil
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
		go t.dev.IpcHandle(c)
	}
}

// SetEndpoint points the device at its peer's endpoint (any form its Bind
// parses).
func (t *Tunnel) SetEndpoint(endpoint string) error {
	if err := t.dev.IpcSet(fmt.Sprintf("public_key=%s\nendpoint=%s\n", t.peer.Hex(), endpoint)); err != nil {
		return fmt.Errorf("setting endpoint of %s: %w", t.name, err)
	}
	return nil
}

// StartKeepalive turns the persistent keepalive on (25 s if the config
// had none). Turning it on from off makes WireGuard send a keepalive at
// once, and with it a handshake if none is up: that is how a path found by
// punching gets its handshake without waiting for traffic.
func (t *Tunnel) StartKeepalive() error {
	secs := int(t.keepalive / time.Second)
	if secs <= 0 {
		secs = 25
	}
	set := fmt.Sprintf("public_key=%s\npersistent_keepalive_interval=0\npersistent_keepalive_interval=%d\n", t.peer.Hex(), secs)
	if err := t.dev.IpcSet(set); err != nil {
		return fmt.Errorf("starting keepalive on %s: %w", t.name, err)
	}
	return nil
}

// Name is the device name.
func (t *Tunnel) Name() string { return t.name }

// Close stops the device, removes its TUN and UAPI socket. It is idempotent.
func (t *Tunnel) Close() error {
	t.closeOnce.Do(func() {
		t.uapi.Close()
		<-t.uapiDone
		t.dev.Close()
		<-t.dev.Wait()
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

// Status reads the peer's state from the device.
func (t *Tunnel) Status() (Status, error) {
	s, err := t.dev.IpcGet()
	if err != nil {
		return Status{}, fmt.Errorf("reading device %s: %w", t.name, err)
	}
	return parseStatus(s), nil
}

func parseStatus(s string) Status {
	var st Status
	var sec, nsec int64
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
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

type fixedMTU struct {
	tun.Device
	mtu int
}

func (f *fixedMTU) MTU() (int, error) { return f.mtu, nil }

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
