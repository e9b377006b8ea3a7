package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerline/peerline/pkg/adminpass"
	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/console"
	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/dhcpd"
	"github.com/peerline/peerline/pkg/dnsfwd"
	"github.com/peerline/peerline/pkg/invite"
	"github.com/peerline/peerline/pkg/logring"
	"github.com/peerline/peerline/pkg/netsetup"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/ntpd"
	"github.com/peerline/peerline/pkg/pairing"
	"github.com/peerline/peerline/pkg/peerpath"
	"github.com/peerline/peerline/pkg/provision"
	"github.com/peerline/peerline/pkg/statuspage"
	"github.com/peerline/peerline/pkg/supervisor"
	"github.com/peerline/peerline/pkg/tftpd"
)

// onlineWithin is how recent a handshake must be for a peer to count as
// online: WireGuard drops a session it has not renewed in 180 s.
const onlineWithin = 180 * time.Second

// node is one running peerlined: the supervisor and the services around it
// (control socket, and on the phone port DHCP and provisioning). Each runs
// in its own goroutine; they talk through the supervisor's and the DHCP
// server's methods, never through shared state, except cfg, which is
// replaced whole on reload.
type node struct {
	cfg     atomic.Pointer[config.Config]
	sup     *supervisor.Supervisor
	dhcp    *dhcpd.Server // nil when DHCP is off
	prov    *provision.Server
	ntp     *ntpd.Server
	tftp    *tftpd.Server
	dns     *dnsfwd.Server
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

// newNode makes the node's parts; configPath is where pairing writes
// peers, and reload where it hands the daemon the new config.
func newNode(cfg *config.Config, configPath string, reload chan<- *config.Config, n netsetup.Ops, log *slog.Logger, ring *logring.Ring, version, bootErrorFile, bootFile string) (*node, error) {
	nd := &node{log: log, ring: ring, version: version, started: time.Now().UTC(), bootErrorFile: bootErrorFile, bootFile: bootFile, runCtx: context.Background()}
	nd.cfg.Store(cfg)
	key, _, err := nodekey.LoadOrCreate(cfg.PrivateKeyFile)
	if err != nil {
		return nil, err
	}
	nd.pair, err = pairing.New(pairing.Options{
		ConfigPath: configPath, Reload: reload, Config: nd.cfg.Load, Lines: nd.localLines,
		Key: key, StateDir: cfg.StateDir, Log: log.With("part", "pairing"),
		Forget: nd.forgetInvite, Send: nd.sendPair,
	})
	if err != nil {
		return nil, err
	}
	var extra []int
	// The supervisor is made first because the DHCP server calls it; it
	// learns the DHCP lines before its first reconcile, so that a phone
	// with a lease finds its gateway as soon as the daemon is up.
	var lines lineSetter
	if cfg.Phones.DHCP {
		var err error
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
	nd.sup = supervisor.New(cfg, supervisor.Options{Net: n, Log: log, ExtraLines: extra, PathOptions: nd.pair.PathHooks})
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
	return nd, nil
}

func decodeArgs(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("bad arguments: %w", err)
	}
	return nil
}

// pathManager is the supervisor's path manager, asked for on its own
// goroutine (it is replaced when the servers change).
func (nd *node) pathManager(ctx context.Context) (*peerpath.Manager, error) {
	var paths *peerpath.Manager
	if err := nd.sup.Do(ctx, func() { paths = nd.sup.Paths() }); err != nil {
		return nil, err
	}
	if paths == nil {
		return nil, errors.New("peerlined is still starting; try again in a moment")
	}
	return paths, nil
}

// ping probes a peer once on its current path.
func (nd *node) ping(ctx context.Context, which string) (*control.PingResult, error) {
	p, err := pairing.FindPeer(nd.cfg.Load(), which)
	if err != nil {
		return nil, err
	}
	paths, err := nd.pathManager(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	rtt, err := paths.Ping(ctx, p.PublicKey)
	st := paths.Status()[p.PublicKey]
	if err != nil {
		reason := st.Reason
		if reason == "" {
			reason = "no path to it yet"
		}
		return nil, fmt.Errorf("peer %d (%s) did not answer within 3 s: %s", p.Index, pairing.DisplayName(p.Name), reason)
	}
	return &control.PingResult{PeerRef: control.PeerRef{Index: p.Index, Name: p.Name}, RTT: control.Duration(rtt), Path: string(st.Path), Endpoint: st.Endpoint}, nil
}

// localLines are the lines this node serves, as peers are told.
func (nd *node) localLines() []int {
	lines := append(slices.Clone(nd.cfg.Load().Lines), nd.sup.Lines()...)
	slices.Sort(lines)
	return slices.Compact(lines)
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
	if nd.dhcp != nil {
		service("DHCP server", nd.dhcp.Run)
	}
	service("console on the uplink", func(ctx context.Context) error {
		return console.ServeUplink(ctx, console.UplinkOptions{
			Handler: nd.console.Handler(console.Uplink),
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

func (nd *node) handlers() map[string]control.Handler {
	h := nd.manageHandlers()
	maps.Copy(h, nd.callHandlers())
	return h
}

func (nd *node) manageHandlers() map[string]control.Handler {
	return map[string]control.Handler{
		control.CmdStatus: func(ctx context.Context, _ json.RawMessage) (any, error) {
			return nd.status(ctx)
		},
		control.CmdPhones: func(ctx context.Context, _ json.RawMessage) (any, error) {
			return nd.phones(ctx)
		},
		control.CmdInvite: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var a control.InviteArgs
			if err := decodeArgs(raw, &a); err != nil {
				return nil, err
			}
			return nd.invite(ctx, time.Duration(a.TTL))
		},
		control.CmdInvites: func(context.Context, json.RawMessage) (any, error) {
			now := time.Now()
			out := []control.InviteEntry{}
			for _, e := range nd.pair.Store().List(now) {
				ie := control.InviteEntry{ID: e.ID, Created: e.Created, Expires: e.Expires, State: e.State(now).String()}
				if !e.Joiner.IsZero() {
					ie.Joiner = e.Joiner.String()
				}
				out = append(out, ie)
			}
			return out, nil
		},
		control.CmdRevokeInvite: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a control.RevokeInviteArgs
			if err := decodeArgs(raw, &a); err != nil {
				return nil, err
			}
			if err := nd.pair.Store().Revoke(time.Now(), a.ID); err != nil {
				return nil, err
			}
			if id, ok := nd.pair.Store().BlobID(a.ID); ok {
				nd.forgetInvite(id)
			}
			return nil, nil
		},
		control.CmdJoin: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var a control.JoinArgs
			if err := decodeArgs(raw, &a); err != nil {
				return nil, err
			}
			return nd.pair.Join(ctx, a.Code)
		},
		control.CmdRemove: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a control.PeerArgs
			if err := decodeArgs(raw, &a); err != nil {
				return nil, err
			}
			return nd.pair.Remove(a.Peer)
		},
		control.CmdPing: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var a control.PeerArgs
			if err := decodeArgs(raw, &a); err != nil {
				return nil, err
			}
			return nd.ping(ctx, a.Peer)
		},
		control.CmdRename: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a control.RenameArgs
			if err := decodeArgs(raw, &a); err != nil {
				return nil, err
			}
			return nd.rename(a)
		},
		control.CmdLabelLine: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a control.LabelLineArgs
			if err := decodeArgs(raw, &a); err != nil {
				return nil, err
			}
			return nil, nd.labelLine(a)
		},
		control.CmdLogs: func(context.Context, json.RawMessage) (any, error) {
			return nd.logs(), nil
		},
		control.CmdJoinStart: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a control.JoinArgs
			if err := decodeArgs(raw, &a); err != nil {
				return nil, err
			}
			if strings.TrimSpace(a.Code) == "" {
				return nil, errors.New("no code: paste the code your friend sent you")
			}
			// A typo is reported at once, on the form that holds the
			// code; everything after needs the network and is followed
			// on the progress page.
			if _, err := invite.Parse(a.Code); err != nil {
				return nil, err
			}
			return nd.startJoin(a.Code, false), nil
		},
		control.CmdJoinProgress: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a control.JoinProgressArgs
			if err := decodeArgs(raw, &a); err != nil {
				return nil, err
			}
			p, ok := nd.joins.get(a.ID)
			if !ok {
				return nil, errors.New("no such join here (peerlined may have restarted since): start it again")
			}
			return p, nil
		},
		control.CmdDiagnostics: func(ctx context.Context, _ json.RawMessage) (any, error) {
			return nd.diagnostics(ctx)
		},
		control.CmdSettings: func(context.Context, json.RawMessage) (any, error) {
			return nd.settings(), nil
		},
		control.CmdSetSettings: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a control.SettingsArgs
			if err := decodeArgs(raw, &a); err != nil {
				return nil, err
			}
			return nd.setSettings(a)
		},
		control.CmdForgetPhone: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var a control.ForgetPhoneArgs
			if err := json.Unmarshal(raw, &a); err != nil {
				return nil, fmt.Errorf("forget: %w", err)
			}
			if nd.dhcp == nil {
				return nil, errors.New(`phones get lines by DHCP only with "phones": {"dhcp": true} in the config; lines in "lines" are removed by editing the config`)
			}
			if err := nd.dhcp.Forget(ctx, a.Line); err != nil {
				if errors.Is(err, dhcpd.ErrNoPhone) {
					return nil, fmt.Errorf("line %d has no phone; `peerline phones` lists the lines in use", a.Line)
				}
				return nil, err
			}
			return nil, nil
		},
	}
}

func (nd *node) status(ctx context.Context) (*control.Status, error) {
	st, err := nd.sup.Status(ctx)
	if err != nil {
		return nil, err
	}
	cfg := nd.cfg.Load()
	out := &control.Status{
		Name:        st.Name,
		Version:     nd.version,
		PublicKey:   st.PublicKey,
		Ready:       st.Ready,
		Lines:       st.Lines,
		ActiveLines: st.ActiveLines,
		Rendezvous:  rendezvousAddrs(cfg.Rendezvous),
		NATClass:    st.NATClass,
		Started:     nd.started,
		Peers:       []control.Peer{},
	}
	if b, err := os.ReadFile(nd.bootErrorFile); err == nil {
		out.BootConfigError = strings.TrimSpace(string(b))
	}
	out.BootJoin = nd.bootJoin()
	out.ConsolePasswordSet = nd.passwordSet()
	for _, p := range st.Peers {
		cp := control.Peer{
			Index:         p.Index,
			Name:          p.Name,
			Up:            p.Up,
			Error:         p.Error,
			Endpoint:      p.Endpoint,
			LastHandshake: p.LastHandshake,
			RxBytes:       p.RxBytes,
			TxBytes:       p.TxBytes,
			Rewrite:       rewriteCounters(p),
		}
		// A recent handshake counts while the path manager has not heard
		// from the peer yet, not against its word that the peer shut down
		// or went silent.
		cp.Online = p.Up && (p.Online || !p.Gone && p.LastHandshake != nil && time.Since(*p.LastHandshake) < onlineWithin)
		cp.Path, cp.PathReason, cp.NATClass = p.Path, p.PathReason, p.NAT
		if p.RTT > 0 {
			d := control.Duration(p.RTT)
			cp.RTT = &d
		}
		out.Peers = append(out.Peers, cp)
	}
	return out, nil
}

func rendezvousAddrs(rs []config.Rendezvous) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.Address)
	}
	return out
}

func (nd *node) phones(ctx context.Context) ([]control.Phone, error) {
	if nd.dhcp == nil {
		return []control.Phone{}, nil
	}
	ps, err := nd.dhcp.Phones(ctx)
	if err != nil {
		return nil, err
	}
	st, err := nd.sup.Status(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]control.Phone, 0, len(ps))
	for _, p := range ps {
		out = append(out, control.Phone{
			Line: p.Line, MAC: p.MAC, Vendor: p.Vendor, Model: p.Model, Hostname: p.Hostname,
			UserAgent: p.UserAgent, Addr: p.Addr, Bound: p.Bound, LastSeen: p.LastSeen,
			InCall: slices.Contains(st.ActiveLines, p.Line),
			Label:  nd.cfg.Load().LineLabels[p.Line],
		})
	}
	return out, nil
}

// snapshot is what the status page shows: the node and its phones.
func (nd *node) snapshot(ctx context.Context) (statuspage.Snapshot, error) {
	st, err := nd.status(ctx)
	if err != nil {
		return statuspage.Snapshot{}, err
	}
	ph, err := nd.phones(ctx)
	if err != nil {
		return statuspage.Snapshot{}, err
	}
	return statuspage.Snapshot{Status: *st, Phones: ph}, nil
}

// directory is what the phones are told: this node's lines and every
// paired peer's, read fresh per request so pairing and renaming show at
// the phones' next fetch.
func (nd *node) directory(ctx context.Context) (provision.Directory, error) {
	cfg := nd.cfg.Load()
	st, err := nd.sup.Status(ctx)
	if err != nil {
		return provision.Directory{}, err
	}
	d := provision.Directory{NodeName: cfg.Name, TimeZone: cfg.Phones.TimeZone}
	for _, l := range st.Lines {
		d.Lines = append(d.Lines, provision.Line{Line: l})
	}
	for _, p := range cfg.Peers {
		d.Peers = append(d.Peers, provision.Peer{Index: p.Index, Name: p.Name, Lines: p.Lines})
	}
	return d, nil
}
