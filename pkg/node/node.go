// Package node is one running peerlined: its composition root, Run, and
// what it answers on its control socket, through which the web console and
// `peerline` see its parts together (handlers.go, manage.go, calls.go, ...).
//
// Run builds the node in this order, and the order is the contract:
//
//  1. the run directory's lock (lock.go), so that a second daemon on the
//     same run directory fails before it touches the state directory or the
//     kernel or binds a socket;
//  2. the state directory and the node key (openState), made and loaded
//     here and nowhere else; the key is handed to pairing and the
//     supervisor;
//  3. the kernel's netlink handles;
//  4. the parts (newNode): pairing, the DHCP server, the supervisor, the
//     console, provisioning, NTP, TFTP, DNS and SIP; made, not started:
//     nothing is bound yet;
//  5. the services (node.run): the control socket, the phone-port services,
//     the console on the uplink, mDNS, then the supervisor's loop on Run's
//     own goroutine.
//
// When ctx ends or the supervisor fails, every service is cancelled and
// waited for, then the kernel handles are closed and the lock is released,
// last. Cleanup (peerlined -cleanup) takes the same lock first.
package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerline/peerline/pkg/adminpass"
	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/console"
	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/dhcpd"
	"github.com/peerline/peerline/pkg/dnsfwd"
	"github.com/peerline/peerline/pkg/logring"
	"github.com/peerline/peerline/pkg/netifs"
	"github.com/peerline/peerline/pkg/netsetup"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/ntpd"
	"github.com/peerline/peerline/pkg/pairing"
	"github.com/peerline/peerline/pkg/provision"
	"github.com/peerline/peerline/pkg/statuspage"
	"github.com/peerline/peerline/pkg/supervisor"
	"github.com/peerline/peerline/pkg/tftpd"
	"github.com/peerline/peerline/pkg/trunkconfig"
)

// sameTrunk compares two trunk configs field by field.
func sameTrunk(a, b trunkconfig.Config) bool {
	return a.Name == b.Name && a.Registrar == b.Registrar && a.Domain == b.Domain && a.User == b.User &&
		a.AuthUser == b.AuthUser && a.Password == b.Password && a.CallerID == b.CallerID &&
		slices.Equal(a.Lines, b.Lines) && a.Prefix == b.Prefix && a.Expires == b.Expires &&
		slices.Equal(a.AcceptFrom, b.AcceptFrom)
}

// Options are what the command line hands the node.
type Options struct {
	// Config is the loaded, validated config.
	Config *config.Config
	// ConfigPath is where pairing and the settings write the config.
	ConfigPath string
	// Reload carries new configs to the running node: those the command
	// line reads on SIGHUP, and those pairing and the settings write, which
	// the node sends itself.
	Reload chan *config.Config
	// Log and Ring receive the log; Ring keeps the recent warnings for the
	// console's logs page.
	Log  *slog.Logger
	Ring *logring.Ring
	// Version is shown in the status.
	Version string
	// BootConfigErrorFile holds what is wrong with peerline.txt.
	BootConfigErrorFile string
	// BootFile is peerline.txt, which the console's settings edit.
	BootFile string
	// BenchNoRewrite leaves the SIP/RTP rewriter out of every tunnel
	// (supervisor.Options.NoRewrite): for the lab benchmark only.
	BenchNoRewrite bool
}

// Run runs the node until ctx is cancelled or the supervisor fails; the
// package doc gives the order of its steps.
func Run(ctx context.Context, opts Options) error {
	cfg, log := opts.Config, opts.Log
	unlock, err := lockRunDir(cfg.RunDir)
	if err != nil {
		return fmt.Errorf("%w; stop it first (systemctl stop peerlined)", err)
	}
	defer unlock()
	key, created, err := openState(cfg)
	if err != nil {
		return err
	}
	log.Info("node identity", "public_key", key.Public(), "new", created)
	n, err := netsetup.NewKernel("", log)
	if err != nil {
		return err
	}
	defer n.Close()
	nd, err := newNode(opts, key, n)
	if err != nil {
		return err
	}
	return nd.run(ctx, opts.Reload)
}

// Cleanup removes what a daemon with cfg's prefix may have left
// (supervisor.Cleanup), under the run directory's lock, so never while a
// daemon runs.
func Cleanup(cfg *config.Config, log *slog.Logger) error {
	unlock, err := lockRunDir(cfg.RunDir)
	if err != nil {
		return fmt.Errorf("%w; stop it first (systemctl stop peerlined)", err)
	}
	defer unlock()
	n, err := netsetup.NewKernel("", log)
	if err != nil {
		return err
	}
	defer n.Close()
	return supervisor.Cleanup(cfg, n, log)
}

// PublicKey returns the node's public key, making the key on first use
// (peerlined -public-key). It takes no lock: the key is made atomically and
// never changes, so asking a running node's key is safe.
func PublicKey(cfg *config.Config) (nodekey.Key, error) {
	key, _, err := openState(cfg)
	if err != nil {
		return nodekey.Key{}, err
	}
	return key.Public(), nil
}

// openState makes the state directory and loads the node key, making it on
// first use: the one place either happens. Every part that keeps files
// there is made after it, and gets the key from it.
func openState(cfg *config.Config) (key nodekey.Key, created bool, err error) {
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nodekey.Key{}, false, fmt.Errorf("creating state directory: %w", err)
	}
	return nodekey.LoadOrCreate(cfg.PrivateKeyFile)
}

// node is one running peerlined: the supervisor and the services around it
// (control socket, and on the phone port DHCP and provisioning). Each runs
// in its own goroutine; they talk through the supervisor's and the DHCP
// server's methods, never through shared state, except cfg, which is
// replaced whole on reload.
type node struct {
	cfg atomic.Pointer[config.Config]
	// ifs follows the uplink's interfaces for the console and mDNS.
	ifs  *netifs.Watcher
	sup  *supervisor.Supervisor
	dhcp *dhcpd.Server // nil when DHCP is off
	prov *provision.Server
	ntp  *ntpd.Server
	tftp *tftpd.Server
	dns  *dnsfwd.Server
	// sip is the SIP service on the phone port (sip.go); nil with sip.off.
	sip *sipPart
	// trunks are the config's outside SIP accounts (trunks.go); nil
	// without any.
	trunks *trunksPart
	// sipErr is why the SIP service stopped, for `peerline lines`.
	sipErr  atomic.Pointer[string]
	log     *slog.Logger
	version string
	started time.Time
	// bootErrorFile holds what is wrong with the boot partition's config.
	bootErrorFile string
	// bootFile is peerline.txt, which the console's settings edit.
	bootFile string
	pair     *pairing.Pairing
	// ring keeps the recent warnings for the console's logs page.
	ring    *logring.Ring
	console *console.Console
	// runCtx is run's context, for work started by a request that outlives
	// it (a join followed by its progress page).
	runCtx context.Context
	joins  joins
	// bootJoinID is the join peerline.txt asked for; guarded by joins.mu.
	bootJoinID string
}

// newNode makes the node's parts, in order, without starting any: key is
// the node's key (openState) and n the kernel's plumbing.
func newNode(opts Options, key nodekey.Key, n netsetup.Ops) (*node, error) {
	cfg, log := opts.Config, opts.Log
	bootErrorFile := opts.BootConfigErrorFile
	nd := &node{log: log, ring: opts.Ring, version: opts.Version, started: time.Now().UTC(), bootErrorFile: bootErrorFile, bootFile: opts.BootFile, runCtx: context.Background()}
	nd.cfg.Store(cfg)
	var err error
	nd.pair, err = pairing.New(pairing.Options{
		ConfigPath: opts.ConfigPath, Reload: opts.Reload, Config: nd.cfg.Load, Lines: nd.localLines,
		Key: key, StateDir: cfg.StateDir, Log: log.With("part", "pairing"),
		PutInvite: nd.putInvite, Send: nd.sendPair,
	})
	if err != nil {
		return nil, err
	}
	var extra []int
	// The DHCP server is made before the supervisor, which learns the
	// DHCP lines before its first reconcile, so that a phone with a lease
	// finds its gateway as soon as the daemon is up; the DHCP server
	// reaches the supervisor through lines, set once it exists.
	var lines lineSetter
	if cfg.Phones.DHCP {
		nd.dhcp, err = dhcpd.New(dhcpd.Options{
			Port:         cfg.PhonePort,
			StateDir:     cfg.StateDir,
			Static:       cfg.Lines,
			Lines:        &lines,
			ProvisionURL: provision.URL,
			Log:          log.With("service", "dhcp"),
		})
		if err != nil {
			return nil, err
		}
		extra = nd.dhcp.Lines()
	}
	nd.sup = supervisor.New(cfg, supervisor.Options{Net: n, Key: key, Log: log, ExtraLines: extra, PathOptions: nd.pair.PathHooks, NoRewrite: opts.BenchNoRewrite})
	lines.sup = nd.sup
	nd.console = console.New(console.Options{
		Control:      control.Local(nd.handlers()),
		Status:       statuspage.New(nd.snapshot, statuspage.Options{BootConfigErrorFile: bootErrorFile, Log: log.With("service", "statuspage")}),
		PasswordFile: adminpass.Path(cfg.StateDir),
		Started:      nd.started,
		Log:          log.With("service", "console"),
	})
	// The charts and /metrics are served by the console: the charts
	// behind its login, /metrics with its token or a login.
	nd.console.Mount("/charts/rtt.svg", nd.rttChartHandler(), false)
	nd.console.Mount("/charts/call.svg", nd.callChartHandler(), false)
	nd.console.Mount("/charts/calls.svg", nd.callsChartHandler(), false)
	nd.console.Mount("/metrics", nd.metricsHandler(nd.console.Authed), true)
	var phones provision.Phones = noPhones{}
	if nd.dhcp != nil {
		phones = nd.dhcp
	}
	nd.prov, err = provision.NewServer(provision.Options{
		Port:      cfg.PhonePort,
		Directory: nd.directory,
		Phones:    phones,
		// Whoever browses to the Pi from the phone port gets the console
		// (its open part is the status page).
		Extra: nd.console.Handler(console.PhonePort),
		Log:   log.With("service", "provision"),
	})
	if err != nil {
		return nil, err
	}
	// The phones are told the Pi is their NTP server (DHCP option 42 and
	// their config files), and may fetch their files by TFTP as well.
	if nd.ntp, err = ntpd.New(ntpd.Options{Port: cfg.PhonePort, Log: log.With("service", "ntp")}); err != nil {
		return nil, err
	}
	if nd.tftp, err = tftpd.New(tftpd.Options{Port: cfg.PhonePort, Files: nd.prov.Handler(), Log: log.With("service", "tftp")}); err != nil {
		return nil, err
	}
	if nd.dns, err = dnsfwd.New(dnsfwd.Options{Port: cfg.PhonePort, Log: log.With("service", "dns")}); err != nil {
		return nil, err
	}
	if len(cfg.Trunks) > 0 {
		nd.trunks = newTrunksPart(cfg)
	}
	if err := nd.newSIP(cfg); err != nil {
		return nil, err
	}
	return nd, nil
}

// The DHCP server is the provisioning server's phone table.
var _ provision.Phones = (*dhcpd.Server)(nil)

// lineSetter hands the DHCP server's line changes to the supervisor, which
// exists only after the DHCP server was made.
type lineSetter struct{ sup *supervisor.Supervisor }

func (l *lineSetter) EnsureLine(ctx context.Context, s int) error { return l.sup.EnsureLine(ctx, s) }
func (l *lineSetter) RemoveLine(ctx context.Context, s int) error { return l.sup.RemoveLine(ctx, s) }

// noPhones is the phone table when DHCP is off: no requester is known, so
// no per-phone file is served.
type noPhones struct{}

func (noPhones) LineOf(context.Context, netip.Addr) (net.HardwareAddr, int, bool) {
	return nil, 0, false
}
func (noPhones) NoteUserAgent(int, string) {}

// run runs every service until ctx is cancelled or the supervisor fails.
// The phone-port services are not essential: if one fails (a port in use),
// it is logged and the node keeps carrying calls.
func (nd *node) run(ctx context.Context, reload <-chan *config.Config) error {
	cfg := nd.cfg.Load()
	ctl, err := control.Listen(control.SocketPath(cfg.RunDir), nd.handlers(), nd.log.With("service", "control"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nd.runCtx = ctx
	var wg sync.WaitGroup
	service := func(name string, run func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil && ctx.Err() == nil {
				nd.log.Error(name+" stopped; the rest of peerlined keeps running", "err", err)
			}
		}()
	}
	service("control socket", ctl.Serve)
	service("provisioning server", nd.prov.Run)
	service("NTP server", nd.ntp.Run)
	service("TFTP server", nd.tftp.Run)
	service("DNS forwarder", nd.dns.Run)
	service("pairing", nd.pair.Run)
	if nd.sip != nil {
		service("SIP service", func(ctx context.Context) error {
			err := nd.runSIP(ctx)
			if err != nil && ctx.Err() == nil {
				msg := err.Error()
				nd.sipErr.Store(&msg)
			}
			return err
		})
	}
	if nd.trunks != nil {
		service("trunks", nd.runTrunks)
	}
	if nd.dhcp != nil {
		service("DHCP server", nd.dhcp.Run)
	}
	// One watcher of the uplink's interfaces for the console and mDNS:
	// they look again only when the kernel says something changed.
	nd.ifs = netifs.NewWatcher(netifs.WatchOptions{Skip: nd.notUplink, Log: nd.log.With("service", "interfaces")})
	service("interface watcher", nd.ifs.Run)
	service("console on the uplink", func(ctx context.Context) error {
		return console.ServeUplink(ctx, console.UplinkOptions{
			Handler: nd.console.Handler(console.Uplink),
			Watch:   nd.ifs,
			Skip:    nd.notUplink,
			Public:  func() bool { return nd.cfg.Load().Console.PublicUplink },
			Log:     nd.log.With("service", "console"),
		})
	})
	service("join from peerline.txt", nd.runBootJoin)
	service("mDNS responder", nd.runMDNS)
	// The supervisor gets its own copy of each reload; the services read
	// the newest config through nd.cfg.
	supReload := make(chan *config.Config)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case c := <-reload:
				if c.Phones != nd.cfg.Load().Phones || c.PhonePort != nd.cfg.Load().PhonePort {
					nd.log.Warn("phone port and phones settings take effect at the next restart of peerlined")
				}
				if old := nd.cfg.Load().SIP; c.SIP.Off != old.Off || c.SIP.Digest != old.Digest {
					nd.log.Warn("sip.off and sip.digest take effect at the next restart of peerlined; sip.dial_plan applies to the next call")
				}
				if old := nd.cfg.Load(); !slices.EqualFunc(c.Trunks, old.Trunks, sameTrunk) || !slices.Equal(c.Withhold.Lines, old.Withhold.Lines) || c.Withhold.Prefix != old.Withhold.Prefix {
					nd.log.Warn("trunks and withhold take effect at the next restart of peerlined; the anonymous policy applies to the next call")
				}
				if nd.trunks != nil {
					nd.trunks.setAnonymous(c.Anonymous)
				}
				nd.cfg.Store(c)
				select {
				case supReload <- c:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	err = nd.sup.Run(ctx, supReload)
	cancel()
	wg.Wait()
	return err
}
