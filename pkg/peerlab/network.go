// Package peerlab is the two-Pi network of the demo and the lab tests: two
// simulated Pis (namespaces, each running its own peerlined), an "Internet"
// bridge between them and a baresip phone behind each, plus the call that
// `make demo` places across it. It is built on pkg/lab, which knows nothing
// of peerline; this package is where the lab meets the daemon.
package peerlab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/supervisor"
)

// Node is one simulated Pi with its daemon and its phone.
type Node struct {
	Name   string
	Host   *lab.Host
	Config config.Config
	// ConfigPath is where the daemon reads Config.
	ConfigPath string
	// WAN is the node's address on the Internet bridge.
	WAN netip.Addr
	// Line is the phone's line s; the phone is 10.0.s.1 at this node.
	Line int
	// PhoneHost is the phone's namespace, plugged into the Pi's phone port.
	PhoneHost *lab.Host
	// Daemon is the running peerlined, nil when stopped.
	Daemon *lab.Proc
	// Handsets are the phones behind the node's switch when the node serves
	// them by DHCP (Options.Handsets); the first one is also PhoneHost.
	Handsets []*Handset
	// Switch is the bridge between the phone port and the handsets.
	Switch *lab.Bridge
	// BootFile, when set, is the node's peerline.txt (-boot-file), which
	// the web console's settings edit; "" leaves the daemon's default.
	BootFile string

	key       nodekey.Key
	peerlined string
	peerline  string
}

// Network is two nodes that have paired with each other.
type Network struct {
	Lab  *lab.Lab
	Inet lab.Segment
	A, B *Node
	// With Options.NAT: the home routers, the VPS with its rendezvous
	// server, and how pairing went.
	NATA, NATB *lab.NAT
	VPS        *lab.Host
	Servers    []*RendezvousServer
	Pairing    PairingResult

	// longCode: pair with the invite's long code (NATOptions.LongCode).
	longCode bool
}

// PairingResult is what `peerline join` took.
type PairingResult struct {
	// Code is the invite B joined with.
	Code string
	// Join is how long `peerline join` took; FirstPacket is from its start
	// until a packet crossed the tunnel (a ping from B's phone to A's).
	Join, FirstPacket time.Duration
	// Start is when the join started, to find the run in the daemons'
	// logs.
	Start time.Time
}

// Options shape the network.
type Options struct {
	// Peerlined is the daemon binary to run on each Pi.
	Peerlined string
	// IndexOfB and IndexOfA are how A numbers B and B numbers A; they
	// differ by default so the demo shows that indices are local.
	IndexOfB, IndexOfA int
	// Prefix starts the names both daemons create; A and B append a
	// letter. The default is derived from the process id, so that two labs
	// on one machine do not collide.
	Prefix string
	// NAT, when set, puts each Pi behind a home router of its own on an
	// impaired Internet, with a rendezvous server on a VPS, and pairs the
	// two by invite (`peerline invite` on A, `peerline join` on B) instead
	// of writing their peers into the configs.
	NAT *NATOptions
	// HandsetsA and HandsetsB, when set, plug that many phones into the
	// node's phone port through a switch and let the daemon give them
	// lines by DHCP, instead of one phone with a hand-typed address. Each
	// entry is the phone's vendor class (DHCP option 60).
	HandsetsA, HandsetsB []string
	// SIP, when set, is both daemons' SIP service configuration (the
	// config's "sip" section).
	SIP *config.SIP
}

// NATOptions shape the NAT network.
type NATOptions struct {
	A, B       lab.NATKind
	Policy     lab.InputPolicy
	Impairment lab.Impairment
	// Rendezvousd and Peerline are the server and CLI binaries.
	Rendezvousd, Peerline string
	// Servers is how many rendezvous servers run on the VPS (default 1).
	Servers int
	// LongCode pairs with the long form of the invite code instead of
	// the short one.
	LongCode bool
	// beforePairing runs after the daemons are ready, before the invite
	// (tests stop a server there).
	beforePairing func(*Network) error
	// noPairing leaves the Pis unpaired (the console test pairs them from
	// a browser).
	noPairing bool
}

// Addresses of the NAT network: documentation ranges only.
var (
	vpsAddr   = netip.MustParsePrefix("203.0.113.10/24")
	natWANA   = netip.MustParsePrefix("198.51.100.11/24")
	natWANB   = netip.MustParsePrefix("198.51.100.12/24")
	natLANA   = netip.MustParsePrefix("192.168.1.1/24")
	natLANB   = netip.MustParsePrefix("192.168.2.1/24")
	piLANA    = netip.MustParsePrefix("192.168.1.2/24")
	piLANB    = netip.MustParsePrefix("192.168.2.2/24")
	rvPort    = 3478
	uplinkDev = "wan"
)

const (
	phonePort  = "eth0"
	basePort   = 51820
	wanPrefix  = 24
	daemonWait = 20 * time.Second
)

// Build creates the network and starts both daemons; it returns once both
// report ready. Everything is registered with l, whose Close removes it.
func Build(ctx context.Context, l *lab.Lab, opts Options) (*Network, error) {
	if opts.Peerlined == "" {
		return nil, errors.New("peerlab: no peerlined binary given")
	}
	if opts.IndexOfB == 0 {
		opts.IndexOfB = 7
	}
	if opts.IndexOfA == 0 {
		opts.IndexOfA = 4
	}
	if opts.Prefix == "" {
		opts.Prefix = "pl" + strconv.FormatInt(int64(os.Getpid()), 36)
	}
	if opts.NAT != nil {
		return buildNAT(ctx, l, opts)
	}
	inet, err := l.Bridge("inet")
	if err != nil {
		return nil, err
	}
	n := &Network{Lab: l, Inet: inet}
	n.A, err = newNode(l, onSegment(inet, netip.MustParseAddr("198.51.100.1")), "A", opts.Prefix+"a", opts.Peerlined, opts.HandsetsA)
	if err != nil {
		return nil, err
	}
	n.B, err = newNode(l, onSegment(inet, netip.MustParseAddr("198.51.100.2")), "B", opts.Prefix+"b", opts.Peerlined, opts.HandsetsB)
	if err != nil {
		return nil, err
	}
	pair(n.A, n.B, opts.IndexOfB, opts.IndexOfA)
	pair(n.B, n.A, opts.IndexOfA, opts.IndexOfB)
	if opts.SIP != nil {
		n.A.Config.SIP, n.B.Config.SIP = *opts.SIP, *opts.SIP
	}
	for _, node := range []*Node{n.A, n.B} {
		if err := node.writeConfig(); err != nil {
			return nil, err
		}
		if err := node.Start(ctx); err != nil {
			return nil, err
		}
	}
	for _, node := range []*Node{n.A, n.B} {
		if _, err := node.WaitReady(ctx, daemonWait); err != nil {
			return nil, err
		}
	}
	for _, node := range []*Node{n.A, n.B} {
		if err := node.WaitConnected(ctx, daemonWait); err != nil {
			return nil, err
		}
	}
	for _, node := range []*Node{n.A, n.B} {
		if err := node.Lease(ctx); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// WaitConnected waits until every tunnel of the node has completed a
// WireGuard handshake, as WireGuard itself reports it: the daemon being up
// is not yet the two Pis seeing each other.
func (n *Node) WaitConnected(ctx context.Context, timeout time.Duration) error {
	names := config.Names{Prefix: n.Config.Prefix}
	return n.waitFor(ctx, timeout, "no WireGuard handshake", func() (bool, string) {
		for _, p := range n.Config.Peers {
			out, err := n.Host.Run(ctx, "wg", "show", names.Device(p.Index), "latest-handshakes")
			if f := strings.Fields(out); err != nil || len(f) != 2 || f[1] == "0" {
				return false, fmt.Sprintf("peer %d: wg show: %q %v", p.Index, strings.TrimSpace(out), err)
			}
		}
		return true, ""
	})
}

// uplink plugs a Pi into the Internet and returns its WAN address.
type uplink func(host *lab.Host) (netip.Addr, error)

// onSegment puts the Pi straight on the Internet at wan.
func onSegment(seg lab.Segment, wan netip.Addr) uplink {
	return func(host *lab.Host) (netip.Addr, error) {
		_, err := seg.Attach(host, uplinkDev, netip.PrefixFrom(wan, wanPrefix).String())
		return wan, err
	}
}

// behind puts the Pi behind a home router at addr on its LAN.
func behind(nat *lab.NAT, addr netip.Prefix) uplink {
	return func(host *lab.Host) (netip.Addr, error) {
		return nat.WAN(), nat.AttachAs(host, uplinkDev, addr)
	}
}

func newNode(l *lab.Lab, up uplink, name, prefix string, peerlined string, handsets []string) (*Node, error) {
	host, err := l.Host("pi" + name)
	if err != nil {
		return nil, err
	}
	wan, err := up(host)
	if err != nil {
		return nil, err
	}
	var (
		phone *lab.Host
		line  int
		hs    []*Handset
		sw    *lab.Bridge
	)
	if len(handsets) == 0 {
		// The phone's cable: the Pi's phone port on one end, the phone's
		// NIC on the other, and an address typed by hand.
		if phone, err = l.Host("phone" + name); err != nil {
			return nil, err
		}
		if err := l.Veth(host, phonePort, phone, "eth0"); err != nil {
			return nil, err
		}
		line = 1
		if err := phone.Addr("eth0", netip.PrefixFrom(numplan.Phone(0, uint8(line)), 30).String()); err != nil {
			return nil, err
		}
		if err := phone.Route("default", "via", numplan.LineGateway(uint8(line)).String()); err != nil {
			return nil, err
		}
	} else {
		if sw, hs, err = plugHandsets(l, host, name, handsets); err != nil {
			return nil, err
		}
		phone = hs[0].Host
	}
	key, err := nodekey.Generate()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(l.Dir(), "pi"+name)
	node := &Node{
		Name:      name,
		Host:      host,
		WAN:       wan,
		Line:      line,
		PhoneHost: phone,
		Handsets:  hs,
		Switch:    sw,
		key:       key,
		peerlined: peerlined,
		Config: config.Config{
			Name:       "pi" + name,
			Prefix:     prefix,
			StateDir:   filepath.Join(dir, "state"),
			RunDir:     filepath.Join(dir, "run"),
			ListenPort: basePort,
			PhonePort:  phonePort,
		},
		ConfigPath: filepath.Join(dir, "peerlined.json"),
	}
	if len(hs) == 0 {
		node.Config.Lines = []int{line}
	} else {
		node.Config.Phones.DHCP = true
	}
	if err := os.MkdirAll(node.Config.StateDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(node.Config.StateDir, "node.key"), []byte(key.String()+"\n"), 0o600); err != nil {
		return nil, err
	}
	// Whatever happens to the daemon (a test kills it with -9), its
	// namespaces are named globally and outlive the Pi's namespace: stop it
	// and run its own cleanup before the lab deletes the hosts.
	if err := l.OnClose(node.stopAndCleanup); err != nil {
		return nil, err
	}
	return node, nil
}

// pair makes from know to as peer index, reachable at to's tunnel socket
// (to numbers from as back).
func pair(from, to *Node, index, back int) {
	from.Config.Peers = append(from.Config.Peers, config.Peer{
		Index:     index,
		Name:      "pi" + to.Name,
		PublicKey: to.key.Public(),
		Endpoint:  netip.AddrPortFrom(to.WAN, basePort).String(),
		Keepalive: 25,
	})
}

func (n *Node) writeConfig() error {
	b, err := json.MarshalIndent(n.Config, "", "  ")
	if err != nil {
		return err
	}
	if _, err := config.Parse(b); err != nil {
		return fmt.Errorf("node %s: generated config does not validate: %w", n.Name, err)
	}
	return os.WriteFile(n.ConfigPath, b, 0o644)
}

// Start runs peerlined on the node. The daemon outlives ctx: it is stopped
// by Stop or by the lab's Close, after the phones, so that their hang-ups
// still cross the tunnels.
func (n *Node) Start(ctx context.Context) error {
	// -v: WireGuard's own log (handshakes, drops) is what a failed lab run needs.
	args := []string{n.peerlined, "-v", "-config", n.ConfigPath}
	if n.BootFile != "" {
		args = append(args, "-boot-file", n.BootFile, "-boot-config-error", filepath.Join(filepath.Dir(n.BootFile), "boot-config-error"))
	}
	p, err := n.Host.Start(context.WithoutCancel(ctx), "peerlined", args...)
	if err != nil {
		return err
	}
	n.Daemon = p
	return nil
}

// WaitReady waits until the node's daemon (this run of it, not a status
// file a killed one left) reports ready with every peer up.
func (n *Node) WaitReady(ctx context.Context, timeout time.Duration) (*supervisor.Status, error) {
	var st *supervisor.Status
	err := n.waitFor(ctx, timeout, "peerlined not ready", func() (bool, string) {
		var err error
		st, err = n.Status()
		if err != nil {
			return false, err.Error()
		}
		done := st.Ready && allUp(st) && n.Daemon != nil && st.PID == n.Daemon.Pid()
		return done, fmt.Sprintf("status: ready=%v peers=%+v", st.Ready, st.Peers)
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// waitFor polls check until it reports done, and fails when timeout passes
// or the daemon exits first; check's state goes into the error.
func (n *Node) waitFor(ctx context.Context, timeout time.Duration, what string, check func() (done bool, state string)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		done, state := check()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s: %s after %v (%s); see %s", n.Name, what, timeout, state, n.daemonLog())
		case <-n.daemonDone():
			return fmt.Errorf("node %s: %s: peerlined exited: %v; see %s", n.Name, what, n.Daemon.Err(), n.daemonLog())
		case <-tick.C:
		}
	}
}

func allUp(st *supervisor.Status) bool {
	for _, p := range st.Peers {
		if !p.Up {
			return false
		}
	}
	return true
}

func (n *Node) daemonDone() <-chan struct{} {
	if n.Daemon == nil {
		return nil
	}
	return n.Daemon.Done()
}

func (n *Node) daemonLog() string {
	if n.Daemon == nil {
		return "(not started)"
	}
	return n.Daemon.LogPath()
}

// Status reads the daemon's status file.
func (n *Node) Status() (*supervisor.Status, error) { return supervisor.ReadStatus(n.Config.RunDir) }

// StatusSince waits for a status the daemon took after t, so that counters
// include everything up to t; the daemon takes one every status interval
// (a few seconds), rewriting the file only when it changed and otherwise
// just setting its modification time, which ReadStatus reports as Updated.
func (n *Node) StatusSince(ctx context.Context, t time.Time) (*supervisor.Status, error) {
	var st *supervisor.Status
	err := n.waitFor(ctx, 10*time.Second, "no fresh status", func() (bool, string) {
		var err error
		if st, err = n.Status(); err != nil {
			return false, err.Error()
		}
		return st.Updated.After(t), fmt.Sprintf("last written %v", st.Updated)
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// Stop stops the daemon with SIGTERM and waits for it.
func (n *Node) Stop() error {
	if n.Daemon == nil {
		return nil
	}
	err := n.Daemon.Stop(n.perPeer(10*time.Second, 100*time.Millisecond))
	n.Daemon = nil
	return err
}

// perPeer is base plus each for every configured peer: a node with 253
// peers takes seconds to tear down, more on a loaded machine.
func (n *Node) perPeer(base, each time.Duration) time.Duration {
	return base + time.Duration(len(n.Config.Peers))*each
}

func (n *Node) stopAndCleanup() error {
	n.Stop()
	// Host.Run refuses once the lab is closing; Command does not. A
	// cleanup cut short by its timeout leaves namespaces named globally
	// behind, so it gets a second go.
	var err error
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), n.perPeer(30*time.Second, 200*time.Millisecond))
		var out []byte
		out, err = n.Host.Command(ctx, n.peerlined, "-config", n.ConfigPath, "-cleanup").CombinedOutput()
		cancel()
		if err == nil {
			return nil
		}
		err = fmt.Errorf("node %s: peerlined -cleanup: %w: %s", n.Name, err, out)
	}
	return err
}

// PhoneAddr is the node's phone as seen from the node itself.
func (n *Node) PhoneAddr() netip.Addr { return numplan.Phone(0, uint8(n.Line)) }

// AddrOf is the address other's phone has from this node: 10.i.s.1 with i
// this node's index for other.
func (n *Node) AddrOf(other *Node) netip.Addr {
	for _, p := range n.Config.Peers {
		if p.PublicKey == other.key.Public() {
			return numplan.Phone(uint8(p.Index), uint8(other.Line))
		}
	}
	return netip.Addr{}
}
