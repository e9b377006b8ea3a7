// Package supervisor is peerlined's core: it owns the table of peers and
// phone lines and reconciles the kernel and the WireGuard devices with it.
//
// One goroutine, the one in Run, owns every piece of state here; config
// reloads and the periodic check reach it through channels. Reconciling is
// "ensure every step again": every netsetup step is idempotent, so a fresh
// start, a restart after kill -9 (namespaces and links left behind, TUNs
// gone with the process) and a config reload all take the same path, and
// leftovers that no longer belong to the config are swept by name.
//
// Before anything else, and again at every check, it loads the node's
// nftables policy (pkg/firewall, table inet peerline in its own namespace)
// and checks that it and each peer's are still as loaded, loading them
// again if they were flushed or deleted (firewall.go).
//
// Per peer i it builds, after docs/design.md §3:
//
//	namespace <prefix>-<i> with the nftables rules of pkg/firewall
//	root: route 10.i.0.0/16 via 169.254.i.2 dev <prefix>v<i>
//	  veth <prefix>v<i> 169.254.i.1/30  <->  <prefix>-<i>/veth0 169.254.i.2/30
//	namespace <prefix>-<i>: forwarding on, route 10.0.0.0/16 back via 169.254.i.1,
//	  TUN <prefix><i> with route 10.i.0.0/16, wrapped by the SIP/RTP rewriter,
//	  driven by a wireguard-go device on the node's one UDP socket in root
//	  (pkg/wgmux), whose path to the peer pkg/peerpath finds and keeps.
//
// and per local line s the Pi's side of the line's /30, 10.0.s.2/30, on the
// phone port. The veth link addresses are link-local (169.254.i.0/30) so
// that they never collide with the 10.i.s.p plan the phones see.
//
// The files follow those concerns: supervisor.go the Supervisor, its main
// loop and the calls into it; reconcile.go the check that ensures the root
// side, the lines and every peer (scale.go how it stays cheap with many
// peers); peers.go one peer's steps and its removal; firewall.go the
// nftables policies; cleanup.go sweeping leftovers, teardown and Cleanup;
// state.go what was applied, kept across restarts; status.go status.json.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/peerline/peerline/pkg/callstats"
	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/firewall"
	"github.com/peerline/peerline/pkg/netsetup"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/peerpath"
	"github.com/peerline/peerline/pkg/rewrite"
	"github.com/peerline/peerline/pkg/sdnotify"
	"github.com/peerline/peerline/pkg/wgmux"
	"github.com/peerline/peerline/pkg/wgtunnel"
)

// Tunnel is a running WireGuard device as the supervisor needs it.
type Tunnel interface {
	peerpath.Tunnel
	Close() error
}

// TunnelStarter starts a tunnel; tests replace it.
type TunnelStarter func(cfg wgtunnel.Config, log *slog.Logger) (Tunnel, error)

// StartWireGuard is the real TunnelStarter.
func StartWireGuard(cfg wgtunnel.Config, log *slog.Logger) (Tunnel, error) {
	return wgtunnel.Start(cfg, log)
}

// Options are the seams of a Supervisor.
type Options struct {
	// Net does the kernel plumbing.
	Net netsetup.Ops
	// Key is the node's private key, loaded by the caller, which also made
	// the state directory and holds the run directory's lock (pkg/node).
	Key nodekey.Key
	// StartTunnel starts WireGuard devices; nil is StartWireGuard.
	StartTunnel TunnelStarter
	// Firewall loads, lists and removes peerline's nftables tables; nil
	// is firewall.Loader on Net.Do.
	Firewall Firewall
	// Log receives the daemon's log.
	Log *slog.Logger
	// CheckInterval is how often the kernel state is checked and repaired.
	CheckInterval time.Duration
	// StatusInterval is how often status.json is rewritten.
	StatusInterval time.Duration
	// ExtraLines are lines to serve besides the config's: those the DHCP
	// server has handed out, which must be up before their phones renew.
	ExtraLines []int
	// ListenTunnels opens the node's tunnel socket; nil is wgmux.Listen on
	// every address at the config's listen_port.
	ListenTunnels func(port int, key nodekey.Key, log *slog.Logger) (*wgmux.Mux, error)
	// LocalEndpoints lists this node's LAN addresses for peers behind the
	// same NAT; nil lists the addresses of the uplink interfaces.
	LocalEndpoints func() []netip.Addr
	// PathOptions adjusts the path manager's options before it starts
	// (pairing hooks).
	PathOptions func(*peerpath.Options)
	// NoRewrite leaves the rewriter out of every tunnel, so that the lab
	// benchmark (pkg/peerlab BenchmarkRewriteLabTunnel) can compare a
	// tunnel with it against the same tunnel without it. Without the
	// address map no phone can call through the tunnel: never set it on a
	// Pi.
	NoRewrite bool
}

// Supervisor brings a node up according to its config.
type Supervisor struct {
	net          netsetup.Ops
	startTunnel  TunnelStarter
	firewallCtrl Firewall
	log          *slog.Logger
	checkEvery   time.Duration
	statusEvery  time.Duration
	listen       func(port int, key nodekey.Key, log *slog.Logger) (*wgmux.Mux, error)
	localAddrs   func() []netip.Addr
	pathOptions  func(*peerpath.Options)
	noRewrite    bool

	// verifyFrom is where the next check's full verifications start
	// (scale.go).
	verifyFrom int
	// realTunnels is set when the tunnels are wireguard-go's (not a
	// test's); gcSet once the collector's pace is set (memory.go).
	realTunnels bool
	gcSet       bool

	// mux is the tunnel socket and paths its path manager, both running
	// for as long as Run; paths is replaced when the servers change.
	mux       *wgmux.Mux
	paths     *peerpath.Manager
	stopPaths func()
	linesSnap atomic.Pointer[[]int]
	// statusFile writes status.json (statusfile.go).
	statusFile *statusWriter
	// callStats follows the calls; fed by Run (sampleCalls), read by
	// anyone.
	callStats *callstats.Tracker

	// Owned by the Run goroutine.
	cfg   *config.Config
	names config.Names
	key   nodekey.Key
	peers map[int]*peer
	// thirdKeys is the set of peer keys the rewriters last named
	// (nameThirdNodes).
	thirdKeys map[int]nodekey.Key
	// third runs the background naming of tunnels (nameAgain).
	third thirdNaming
	// peerStates is what pushPeerStates last did.
	peerStates peerStates
	lines      []int
	rootDone   bool
	ready      bool
	// extra are the lines added at run time (EnsureLine), beside cfg.Lines.
	extra map[int]bool
	// mediaSeen is the last reading of each tunnel's per-line media
	// counter, and active the lines whose counter grew since the reading
	// before: their phones are in a call with a peer.
	mediaSeen map[[2]int]uint64
	active    []int
	// stateSaved is the state file as last written (startSaveState);
	// writeState writes it (atomicfile.WriteFile when nil; tests).
	stateSaved []byte
	writeState func(path string, data []byte, perm os.FileMode) error
	// nodeFW is what this run loaded into the node's firewall.
	nodeFW loadedTable
	// callSampled is when sampleCalls last ran.
	callSampled time.Time

	// calls carries work from other goroutines into Run's; done is closed
	// when Run returns, so callers never wait on a loop that is gone.
	calls chan func()
	done  chan struct{}

	// crashed makes Run return without tearing down, as kill -9 would; set
	// by tests before they cancel Run's context.
	crashed bool
}

type peer struct {
	cfg     config.Peer
	tunnel  Tunnel
	rewrite *rewrite.Device
	err     error
	// tunnelAt is when the tunnel was started.
	tunnelAt time.Time
	// fw is what this run loaded into the namespace's firewall.
	fw loadedTable
	// thirdNamed is set once rewrite has been told the other peers'
	// names (nameThirdNodes).
	thirdNamed bool
	// built is set once every step of ensurePeer has succeeded in this
	// run; later checks of a built peer are cheap (scale.go).
	built bool
	// told is the rewriter last told the peer's state, and toldOnline and
	// toldReason what it was told (pushPeerStates).
	told       *rewrite.Device
	toldOnline bool
	toldReason string
}

// New makes a Supervisor for cfg; Run starts it.
func New(cfg *config.Config, opts Options) *Supervisor {
	s := &Supervisor{
		net:          opts.Net,
		startTunnel:  opts.StartTunnel,
		firewallCtrl: opts.Firewall,
		log:          opts.Log,
		checkEvery:   opts.CheckInterval,
		statusEvery:  opts.StatusInterval,
		cfg:          cfg,
		names:        config.Names{Prefix: cfg.Prefix},
		peers:        map[int]*peer{},
		extra:        map[int]bool{},
		mediaSeen:    map[[2]int]uint64{},
		callStats:    callstats.NewTracker(callstats.DefaultEndAfter),
		calls:        make(chan func()),
		done:         make(chan struct{}),
		listen:       opts.ListenTunnels,
		localAddrs:   opts.LocalEndpoints,
		pathOptions:  opts.PathOptions,
		noRewrite:    opts.NoRewrite,
		key:          opts.Key,
		realTunnels:  opts.StartTunnel == nil,
	}
	if s.listen == nil {
		s.listen = func(port int, key nodekey.Key, log *slog.Logger) (*wgmux.Mux, error) {
			return wgmux.Listen(":"+strconv.Itoa(port), key, log)
		}
	}
	if s.localAddrs == nil {
		s.localAddrs = func() []netip.Addr { return uplinkAddrs(s.cfg.PhonePort, s.cfg.Prefix) }
	}
	for _, l := range opts.ExtraLines {
		s.extra[l] = true
	}
	if s.startTunnel == nil {
		s.startTunnel = StartWireGuard
	}
	if s.firewallCtrl == nil {
		s.firewallCtrl = firewall.Loader{Do: s.net.Do}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.checkEvery == 0 {
		s.checkEvery = 30 * time.Second
	}
	if s.statusEvery == 0 {
		s.statusEvery = 5 * time.Second
	}
	return s
}

// Run brings the node up, keeps it reconciled and, when ctx is cancelled,
// tears down everything it built. Reloaded configs arrive on reload. It
// returns nil on a clean shutdown. The caller holds the run directory's
// lock and made the state and run directories (pkg/node).
func (s *Supervisor) Run(ctx context.Context, reload <-chan *config.Config) error {
	defer close(s.done)
	if s.key == (nodekey.Key{}) {
		return errors.New("supervisor: no node key in Options.Key")
	}
	mux, err := s.listen(s.cfg.ListenPort, s.key, s.log.With("part", "socket"))
	if err != nil {
		return err
	}
	s.mux = mux
	muxCtx, stopMux := context.WithCancel(context.Background())
	muxDone := make(chan struct{})
	go func() {
		defer close(muxDone)
		if err := mux.Run(muxCtx); err != nil {
			s.log.Error("tunnel socket failed", "err", err)
		}
	}()
	defer func() {
		// After teardown: the devices close their Binds first.
		s.stopNaming()
		s.stopPathManager()
		stopMux()
		<-muxDone
	}()
	if err := s.startPathManager(); err != nil {
		return err
	}
	// A status file left by a killed daemon says ready; replace it before
	// anything else so nobody mistakes it for this run's.
	s.writeStatus()

	prev, err := loadState(s.cfg.StateDir)
	if err != nil {
		s.log.Warn("ignoring unreadable state file; leftovers are found by name instead", "err", err)
	}
	s.sweep(prev)
	s.reconcile(0)
	defer func() {
		if !s.crashed {
			s.teardown()
		}
	}()

	check := time.NewTicker(s.checkEvery)
	defer check.Stop()
	status := time.NewTicker(s.statusEvery)
	defer status.Stop()
	// Often enough that a peer found gone turns the next INVITE
	// retransmission into a 480 (rewrite/offline.go) well within 2 s.
	peerStates := time.NewTicker(100 * time.Millisecond)
	defer peerStates.Stop()
	// Pinging from this loop, not a goroutine of its own, means systemd
	// restarts a daemon whose loop is stuck, not just one that died.
	var watchdog <-chan time.Time
	if iv := sdnotify.WatchdogInterval(); iv > 0 {
		t := time.NewTicker(iv)
		defer t.Stop()
		watchdog = t.C
		s.log.Info("systemd watchdog armed", "ping_every", iv)
	}
	for {
		select {
		case <-ctx.Done():
			sdnotify.Notify(sdnotify.Stopping)
			s.log.Info("shutting down")
			if s.paths != nil && !s.crashed {
				byeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
				s.paths.Bye(byeCtx)
				cancel()
			}
			return nil
		case cfg := <-reload:
			start := time.Now()
			s.applyConfig(cfg)
			s.log.Info("config reloaded", "took", time.Since(start).Round(time.Millisecond))
		case <-check.C:
			s.reconcile(verifyPerCheck)
		case <-status.C:
			s.sampleMedia()
			s.sampleCalls()
			s.writeStatus()
		case <-peerStates.C:
			s.syncPeerStates()
		case fn := <-s.calls:
			fn()
		case <-watchdog:
			if _, err := sdnotify.Notify(sdnotify.Watchdog); err != nil {
				s.log.Warn("pinging the systemd watchdog", "err", err)
			}
		}
	}
}

// applyConfig switches to a new config: peers whose settings changed are
// rebuilt, peers and lines no longer listed are removed.
func (s *Supervisor) applyConfig(cfg *config.Config) {
	if cfg.Prefix != s.cfg.Prefix || cfg.RunDir != s.cfg.RunDir || cfg.StateDir != s.cfg.StateDir || cfg.PrivateKeyFile != s.cfg.PrivateKeyFile {
		s.log.Error("prefix, run_dir, state_dir and private_key_file cannot change while running; restart peerlined to apply them")
		return
	}
	want := map[int]config.Peer{}
	for _, p := range cfg.Peers {
		want[p.Index] = p
	}
	gone := false
	for i, p := range s.peers {
		if w, ok := want[i]; !ok || !sameTunnel(w, p.cfg) || cfg.MTU != s.cfg.MTU {
			s.removePeer(i)
			gone = gone || !ok
		}
	}
	if gone {
		// A removed peer is gone now: say so before the node's firewall
		// forgets it (a netlink batch; its set elements for a link that no
		// longer exists match nothing meanwhile), once the state file no
		// longer lists it (taking the status meanwhile).
		wait := s.startSaveState()
		st := s.status()
		wait()
		s.writeStatusOf(st)
	}
	// Settings that need no new tunnel (name, announced lines) are taken
	// over in place.
	for i, p := range s.peers {
		p.cfg = want[i]
	}
	if cfg.PhonePort != s.cfg.PhonePort {
		s.removeLines(s.lines)
		s.rootDone = false
	} else {
		var gone []int
		for _, l := range s.lines {
			if !slices.Contains(cfg.Lines, l) && !s.extra[l] {
				gone = append(gone, l)
			}
		}
		s.removeLines(gone)
	}
	serversChanged := !slices.Equal(cfg.Rendezvous, s.cfg.Rendezvous)
	s.cfg = cfg
	if serversChanged {
		s.log.Info("rendezvous servers changed; restarting the path manager")
		s.stopPathManager()
		if err := s.startPathManager(); err != nil {
			s.log.Error("path manager", "err", err)
		}
		for _, p := range s.peers {
			if p.tunnel != nil {
				s.paths.Add(p.cfg.PublicKey, p.tunnel, s.mux.Bind(p.cfg.PublicKey), staticEndpoint(p.cfg))
			}
		}
	}
	s.reconcile(0)
}

// startPathManager starts a path manager for the config's servers.
func (s *Supervisor) startPathManager() error {
	opt := peerpath.Options{
		Mux:        s.mux,
		PrivateKey: s.key,
		Log:        s.log.With("part", "paths"),
		Local: func() []netip.AddrPort {
			var out []netip.AddrPort
			for _, a := range s.localAddrs() {
				out = append(out, netip.AddrPortFrom(a, s.mux.Port()))
			}
			return out
		},
	}
	for _, r := range s.cfg.Rendezvous {
		opt.Servers = append(opt.Servers, peerpath.Server{Address: r.Address, Address2: r.Address2, Key: r.Key})
	}
	if s.pathOptions != nil {
		s.pathOptions(&opt)
	}
	m, err := peerpath.New(opt)
	if err != nil {
		return fmt.Errorf("rendezvous: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	s.paths = m
	s.stopPaths = func() { cancel(); <-done }
	return nil
}

func (s *Supervisor) stopPathManager() {
	if s.stopPaths != nil {
		s.stopPaths()
		s.stopPaths = nil
	}
}

// Paths is the path manager (pairing uses its rendezvous clients). It is
// replaced when the servers change; call it from the Run goroutine (Do).
func (s *Supervisor) Paths() *peerpath.Manager { return s.paths }

// Do runs fn on the supervisor's goroutine.
func (s *Supervisor) Do(ctx context.Context, fn func()) error { return s.call(ctx, fn) }

// ErrNotRunning is returned by calls into a Supervisor whose Run has ended.
var ErrNotRunning = errors.New("peerlined's main loop is not running")

// call runs fn on Run's goroutine and waits for it.
func (s *Supervisor) call(ctx context.Context, fn func()) error {
	finished := make(chan struct{})
	select {
	case s.calls <- func() { fn(); close(finished) }:
	case <-s.done:
		return ErrNotRunning
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// EnsureLine serves line l on the phone port (the Pi's 10.0.l.2/30) until
// RemoveLine; the DHCP server calls it before it offers the line to a phone.
func (s *Supervisor) EnsureLine(ctx context.Context, l int) error {
	if !numplan.ValidLine(l) {
		return fmt.Errorf("line %d: use %d to %d", l, numplan.MinLine, numplan.MaxLine)
	}
	var err error
	if cerr := s.call(ctx, func() {
		s.extra[l] = true
		err = s.ensureLineAddr(l)
		s.refreshFirewalls()
		s.saveState()
	}); cerr != nil {
		return cerr
	}
	return err
}

// RemoveLine stops serving a line added by EnsureLine. Lines of the config
// file stay: they are removed by editing it.
func (s *Supervisor) RemoveLine(ctx context.Context, l int) error {
	var err error
	if cerr := s.call(ctx, func() {
		if slices.Contains(s.cfg.Lines, l) {
			err = fmt.Errorf("line %d is listed in the config file's \"lines\"; remove it there and reload", l)
			return
		}
		delete(s.extra, l)
		s.removeLines([]int{l})
		s.refreshFirewalls()
		s.saveState()
	}); cerr != nil {
		return cerr
	}
	return err
}

// Status returns the node's current state as status.json shows it.
func (s *Supervisor) Status(ctx context.Context) (*Status, error) {
	var st *Status
	if err := s.call(ctx, func() { st = s.status() }); err != nil {
		return nil, err
	}
	return st, nil
}

func (s *Supervisor) ensureTunnel(p *peer, ns, dev string) error {
	if p.tunnel != nil {
		return nil
	}
	i := p.cfg.Index
	ep := staticEndpoint(p.cfg)
	log := s.log.With("peer", i)
	bind := s.mux.Bind(p.cfg.PublicKey)
	cfg := wgtunnel.Config{
		Name:       dev,
		Namespace:  ns,
		MTU:        linkMTU,
		PrivateKey: s.key,
		Bind:       bind,
		Peer: wgtunnel.Peer{
			PublicKey:  p.cfg.PublicKey,
			Endpoint:   ep,
			AllowedIPs: numplan.WirePrefixes,
			Keepalive:  time.Duration(p.cfg.Keepalive) * time.Second,
		},
		Wrap: func(inner tun.Device) tun.Device {
			if s.noRewrite {
				log.Warn("tunnel without the SIP/RTP rewriter: PEERLINED_BENCH_NO_REWRITE=1 is for the lab benchmark only; phones cannot call through it")
				return inner
			}
			p.rewrite = rewrite.Wrap(inner, uint8(i), log)
			p.rewrite.SetMTU(s.cfg.MTU)
			return p.rewrite
		},
		InNamespace: s.net.Do,
	}
	if !ep.IsValid() {
		cfg.Peer.EndpointString = wgmux.PendingEndpoint
	}
	t, err := s.startTunnel(cfg, log)
	if err != nil {
		return err
	}
	p.tunnel, p.tunnelAt = t, time.Now()
	s.paths.Add(p.cfg.PublicKey, t, bind, ep)
	return nil
}
