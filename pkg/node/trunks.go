package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/devsock"
	"github.com/peerline/peerline/pkg/netifs"
	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/privacy"
	"github.com/peerline/peerline/pkg/rtprelay"
	"github.com/peerline/peerline/pkg/trunk"
	"github.com/peerline/peerline/pkg/trunkconfig"
)

// Each trunk gets fixed ports, by its place in the config's list (n, from
// 0): SIP on TrunkSIPPort+n on both its sockets, and RTP relays from
// TrunkRTPPort+n*TrunkRTPPorts. Fixed, so that a firewall in front of the
// Pi can be told, and the provider sees the same port after a restart.
const (
	TrunkSIPPort  = 5062
	TrunkRTPPort  = 40000
	TrunkRTPPorts = 1000
	// trunkRelays bounds a trunk's calls at once (two sockets each).
	trunkRelays = 16
	// trunkRetry is how long a trunk that cannot start waits before it
	// tries again (trunkRetryFirst for the first few tries: at start the
	// line's address comes up within a second or two); trunkCheck how often
	// a running one looks whether the uplink's address changed.
	trunkRetry      = 5 * time.Second
	trunkRetryFirst = 500 * time.Millisecond
	trunkCheck      = 10 * time.Second
)

// trunksPart runs the config's trunks: each in its own goroutine that
// binds its sockets once the uplink and the line's Pi address exist, runs
// the trunk, and starts it again when the uplink's address changes.
type trunksPart struct {
	mu sync.Mutex
	// mu guards the following fields.
	byName map[string]*trunkRun
}

// trunkRun is one trunk's slot: the running trunk, or why there is none.
type trunkRun struct {
	cfg     trunkconfig.Config
	tr      *trunk.Trunk // nil while waiting
	waiting string       // why tr is nil
	uplink  string
	phones  string
}

// runTrunks runs every configured trunk until ctx ends. Trunks are read
// from the config at the start: a change takes effect at the next
// restart of peerlined (the anonymous policy applies at once).
func (nd *node) runTrunks(ctx context.Context) error {
	cfg := nd.cfg.Load()
	var wg sync.WaitGroup
	for n, tc := range cfg.Trunks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nd.runTrunk(ctx, n, tc)
		}()
	}
	wg.Wait()
	return nil
}

func newTrunksPart(cfg *config.Config) *trunksPart {
	p := &trunksPart{byName: map[string]*trunkRun{}}
	for _, tc := range cfg.Trunks {
		p.byName[tc.Name] = &trunkRun{cfg: tc, waiting: "starting"}
	}
	return p
}

func (p *trunksPart) set(name string, f func(*trunkRun)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r := p.byName[name]; r != nil {
		f(r)
	}
}

// runTrunk keeps trunk n up until ctx ends.
func (nd *node) runTrunk(ctx context.Context, n int, tc trunkconfig.Config) {
	log := nd.log.With("service", "trunk", "trunk", tc.Name)
	lastWhy, tries := "", 0
	wait := func(why string) bool {
		tries++
		d := trunkRetry
		if tries <= 10 {
			d = trunkRetryFirst
		}
		nd.trunks.set(tc.Name, func(r *trunkRun) { *r = trunkRun{cfg: tc, waiting: why} })
		if why != lastWhy {
			log.Warn("trunk waiting", "why", why)
			lastWhy = why
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	for ctx.Err() == nil {
		cfg := nd.cfg.Load()
		up, err := uplinkAddr(tc.RegistrarAddr(), nd.notUplink)
		if err != nil {
			if !wait(err.Error()) {
				return
			}
			continue
		}
		tr, err := nd.startTrunk(ctx, cfg, n, tc, up, log)
		if err != nil {
			if !wait(err.Error()) {
				return
			}
			continue
		}
		lastWhy, tries = "", 0
		nd.trunks.set(tc.Name, func(r *trunkRun) {
			*r = trunkRun{cfg: tc, tr: tr.tr, uplink: tr.uplink, phones: tr.phones}
		})
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- tr.tr.Run(runCtx) }()
		why, ended := watchUplink(runCtx, done, up, trunkCheck, func() (netip.Addr, error) {
			return uplinkAddr(tc.RegistrarAddr(), nd.notUplink)
		})
		cancel()
		if !ended {
			<-done
		}
		if ctx.Err() != nil {
			return
		}
		log.Info("trunk restarting", "why", why)
		if !wait(why) {
			return
		}
	}
}

// watchUplink waits until the trunk ends (done; ended is true) or the
// address toward the registrar is a different one, and says why.
func watchUplink(ctx context.Context, done <-chan error, up netip.Addr, every time.Duration, now func() (netip.Addr, error)) (why string, ended bool) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return "stopping", false
		case err := <-done:
			if err != nil {
				return err.Error(), true
			}
			return "the trunk stopped", true
		case <-t.C:
			a, err := now()
			if err != nil {
				// A DNS hiccup or the uplink down for a moment: keep the
				// trunk and its calls; it restarts only once a different
				// address is there.
				continue
			}
			if a != up {
				return fmt.Sprintf("the uplink's address changed from %s to %s", up, a), false
			}
		}
	}
}

type startedTrunk struct {
	tr             *trunk.Trunk
	uplink, phones string
}

// startTrunk binds trunk n's sockets and makes it: the uplink one on up,
// the phone-side one on the Pi's address of the trunk's first line.
func (nd *node) startTrunk(ctx context.Context, cfg *config.Config, n int, tc trunkconfig.Config, up netip.Addr, log *slog.Logger) (startedTrunk, error) {
	port := TrunkSIPPort + n
	piAddr := numplan.LineGateway(uint8(tc.Lines[0]))
	upAP := netip.AddrPortFrom(up, uint16(port))
	upConn, err := net.ListenPacket("udp4", upAP.String())
	if err != nil {
		return startedTrunk{}, fmt.Errorf("cannot listen on the uplink at %s (is another SIP program running on the Pi?): %w", upAP, err)
	}
	phAP := netip.AddrPortFrom(piAddr, uint16(port))
	// Bound to the phone port like the other phone-side services, so
	// nothing from the uplink or a tunnel reaches it.
	phConn, err := devsock.ListenPacket(ctx, "udp4", phAP.String(), cfg.PhonePort)
	if err != nil {
		upConn.Close()
		return startedTrunk{}, fmt.Errorf("line %d is not up on the phone port yet (cannot listen on %s): %w", tc.Lines[0], phAP, err)
	}
	lo := TrunkRTPPort + n*TrunkRTPPorts
	tr, err := trunk.New(trunk.Options{
		Config: tc,
		Uplink: upConn,
		Phones: phConn,
		Relays: &rtprelay.Pool{
			Listen:    net.ListenPacket,
			LocalAddr: piAddr, RemoteAddr: up,
			PortLo: lo, PortHi: lo + TrunkRTPPorts - 1, Max: trunkRelays,
			Log: log,
		},
		Anonymous: cfg.Anonymous,
		Withhold:  cfg.Withhold,
		Log:       log,
	})
	if err != nil {
		upConn.Close()
		phConn.Close()
		return startedTrunk{}, err
	}
	return startedTrunk{tr: tr, uplink: upAP.String(), phones: phAP.String()}, nil
}

// uplinkAddr is the address the Pi sends from to reach registrar
// (host:port): the kernel's choice of route, asked without sending
// anything. It must be on the uplink, not the phone port or a tunnel.
func uplinkAddr(registrar string, notUplink func(string) bool) (netip.Addr, error) {
	ra, err := net.ResolveUDPAddr("udp4", registrar)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("cannot resolve the registrar %s (is the uplink connected, with DNS?): %w", registrar, err)
	}
	c, err := net.DialUDP("udp4", nil, ra)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("the uplink has no route to the registrar %s (is it connected?): %w", ra, err)
	}
	defer c.Close()
	a := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	if ifname := interfaceOf(a); ifname != "" && notUplink(ifname) {
		return netip.Addr{}, fmt.Errorf("the route to the registrar %s goes out by %s, not the uplink; check the registrar address", ra, ifname)
	}
	return a, nil
}

// interfaceOf names the interface that holds a, "" if none does. It runs
// every 10 s per trunk: netifs reads the addresses once, not once per link
// (a node has a link per peer).
func interfaceOf(a netip.Addr) string {
	ifs, err := netifs.List(nil)
	if err != nil {
		return ""
	}
	for _, i := range ifs {
		if slices.Contains(i.Addrs, a) {
			return i.Name
		}
	}
	return ""
}

// trunkURI is the SIP service's way to a trunk (sipservice.TrunkURI).
func (nd *node) trunkURI(name, number string, withhold bool) (sip.Uri, string, bool) {
	nd.trunks.mu.Lock()
	defer nd.trunks.mu.Unlock()
	r := nd.trunks.byName[name]
	if r == nil {
		return sip.Uri{}, "not configured", false
	}
	if r.tr == nil {
		return sip.Uri{}, r.waiting, false
	}
	return r.tr.CallURI(number, withhold), "", true
}

// setAnonymous hands a reloaded anonymous policy to the running trunks.
func (p *trunksPart) setAnonymous(pol privacy.Policy) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.byName {
		if r.tr != nil {
			r.tr.SetAnonymous(pol)
		}
	}
}

// trunkStatus answers `peerline trunks`, in the config's order.
func (nd *node) trunkStatus() control.Trunks {
	out := control.Trunks{Trunks: []control.Trunk{}}
	if nd.trunks == nil {
		return out
	}
	nd.trunks.mu.Lock()
	defer nd.trunks.mu.Unlock()
	for _, tc := range nd.cfg.Load().Trunks {
		r := nd.trunks.byName[tc.Name]
		if r == nil {
			// Added to the config after the start.
			r = &trunkRun{cfg: tc, waiting: "added to the config: restart peerlined to start it"}
		}
		out.Trunks = append(out.Trunks, trunkFrom(r))
	}
	return out
}

// trunkFrom is one trunk's row; the password never leaves.
func trunkFrom(r *trunkRun) control.Trunk {
	t := control.Trunk{Name: r.cfg.Name, Registrar: r.cfg.RegistrarAddr(), User: r.cfg.User, Prefix: r.cfg.Prefix, Lines: r.cfg.Lines,
		Uplink: r.uplink, Phones: r.phones}
	if r.tr == nil {
		t.State, t.Detail, t.Status = "waiting", r.waiting, "waiting: "+r.waiting
		return t
	}
	s := r.tr.Status()
	t.State, t.Detail, t.Status, t.Contact, t.Calls, t.Failures = string(s.State), s.Detail, s.String(), s.Contact, s.Calls, s.Failures
	if !s.Until.IsZero() {
		u := s.Until.UTC()
		t.Until = &u
	}
	if !s.RetryAt.IsZero() {
		u := s.RetryAt.UTC()
		t.RetryAt = &u
	}
	return t
}
