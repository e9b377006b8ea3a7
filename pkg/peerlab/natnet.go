package peerlab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/peerpath"
)

// buildNAT builds the NAT network: VPS with rendezvousd, two home
// routers, a Pi behind each, and pairs the Pis by invite.
func buildNAT(ctx context.Context, l *lab.Lab, opts Options) (*Network, error) {
	no := opts.NAT
	if no.Rendezvousd == "" || no.Peerline == "" {
		return nil, errors.New("peerlab: the NAT network needs the rendezvousd and peerline binaries")
	}
	inet, err := l.Internet(context.WithoutCancel(ctx), "inet", no.Impairment)
	if err != nil {
		return nil, err
	}
	n := &Network{Lab: l, Inet: inet, longCode: no.LongCode}
	if n.VPS, err = l.PublicHost("vps", inet, vpsAddr); err != nil {
		return nil, err
	}
	var servers []config.Rendezvous
	for i := range max(no.Servers, 1) {
		server, err := n.startRendezvous(ctx, no.Rendezvousd, i)
		if err != nil {
			return nil, err
		}
		servers = append(servers, server)
	}
	if n.NATA, err = l.NAT("natA", no.A, no.Policy, inet, natWANA, natLANA); err != nil {
		return nil, err
	}
	if n.NATB, err = l.NAT("natB", no.B, no.Policy, inet, natWANB, natLANB); err != nil {
		return nil, err
	}
	if n.A, err = newNode(l, behind(n.NATA, piLANA), "A", opts.Prefix+"a", opts.Peerlined, opts.HandsetsA); err != nil {
		return nil, err
	}
	if n.B, err = newNode(l, behind(n.NATB, piLANB), "B", opts.Prefix+"b", opts.Peerlined, opts.HandsetsB); err != nil {
		return nil, err
	}
	for _, node := range []*Node{n.A, n.B} {
		node.Config.Rendezvous = servers
		node.peerline = no.Peerline
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
	if no.beforePairing != nil {
		if err := no.beforePairing(n); err != nil {
			return nil, err
		}
	}
	if no.noPairing {
		return n, nil
	}
	if n.Pairing, err = n.pairByInvite(ctx); err != nil {
		return nil, err
	}
	for _, node := range []*Node{n.A, n.B} {
		if err := node.Lease(ctx); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// startRendezvous starts the i-th rendezvous server on the VPS, on ports
// 3478+2i and 3479+2i.
func (n *Network) startRendezvous(ctx context.Context, bin string, i int) (config.Rendezvous, error) {
	dir := filepath.Join(n.Lab.Dir(), fmt.Sprintf("vps-rendezvous%d", i))
	out, err := n.VPS.Run(ctx, bin, "-state-dir", dir, "-public-key")
	if err != nil {
		return config.Rendezvous{}, fmt.Errorf("rendezvousd -public-key: %w: %s", err, out)
	}
	key, err := nodekey.Parse(strings.TrimSpace(out))
	if err != nil {
		return config.Rendezvous{}, fmt.Errorf("rendezvousd printed %q as its key: %w", out, err)
	}
	addr := netip.AddrPortFrom(vpsAddr.Addr(), uint16(rvPort+2*i))
	addr2 := netip.AddrPortFrom(vpsAddr.Addr(), uint16(rvPort+2*i+1))
	srv := RendezvousServer{Dir: dir, Bin: bin, Addr: addr, Addr2: addr2}
	if err := n.StartServer(ctx, &srv); err != nil {
		return config.Rendezvous{}, err
	}
	n.Servers = append(n.Servers, &srv)
	return config.Rendezvous{Address: addr.String(), Key: key}, nil
}

// RendezvousServer is one rendezvousd on the VPS.
type RendezvousServer struct {
	Dir, Bin    string
	Addr, Addr2 netip.AddrPort
	Proc        *lab.Proc
}

// StartServer (re)starts a rendezvous server; its key stays the same.
func (n *Network) StartServer(ctx context.Context, srv *RendezvousServer) error {
	p, err := n.VPS.Start(context.WithoutCancel(ctx), fmt.Sprintf("rendezvousd-%d", srv.Addr.Port()), srv.Bin, "-v", "-state-dir", srv.Dir,
		"-listen", srv.Addr.String(), "-listen2", srv.Addr2.String())
	if err != nil {
		return err
	}
	srv.Proc = p
	return nil
}

// StopServer stops a rendezvous server, as a VPS that went down.
func (srv *RendezvousServer) Stop() error {
	if srv.Proc == nil {
		return nil
	}
	err := srv.Proc.Stop(5 * time.Second)
	srv.Proc = nil
	return err
}

// pairByInvite runs `peerline invite` on A and `peerline join` on B, as a
// user would, and measures until a packet crosses the tunnel.
func (n *Network) pairByInvite(ctx context.Context) (PairingResult, error) {
	var r PairingResult
	// A friend types the code minutes after the invite, into a Pi that has
	// long been registered; a join right after a daemon start would also
	// time the start's registration (a cookie round trip per server port
	// for a NAT mapping the server has not seen).
	for _, node := range []*Node{n.A, n.B} {
		node.waitRegistered(ctx, registerWait)
	}
	var inv control.InviteResult
	if err := n.A.cli(ctx, &inv, "invite", "--json", "--ttl", "10m"); err != nil {
		return r, err
	}
	r.Code = inv.Code
	if n.longCode {
		r.Code = inv.LongCode
	}
	// B's phone streams to A's from the moment the join starts, at the
	// address A's phone will have at B: B gives A the first free index.
	idx := 1
	for slices.ContainsFunc(n.B.Config.Peers, func(p config.Peer) bool { return p.Index == idx }) {
		idx++
	}
	media, err := StartStream(ctx, n.B.PhoneHost, n.A.PhoneHost, n.A.PhoneAddr(), numplan.Phone(uint8(idx), uint8(n.A.Line)), mediaEvery)
	if err != nil {
		return r, err
	}
	defer media.Stop()
	start := time.Now()
	r.Start = start
	var joined control.PeerRef
	if err := n.B.cli(ctx, &joined, "join", "--json", r.Code); err != nil {
		return r, err
	}
	r.Join = time.Since(start)
	if joined.Index != idx {
		return r, fmt.Errorf("node B numbered A %d, the lab expected %d", joined.Index, idx)
	}
	// The first packet through the tunnel: the stream's first arrival.
	if err := media.WaitFlowing(ctx, start, 1, daemonWait); err != nil {
		return r, fmt.Errorf("no packet from B's phone to A's within %v of joining: %w; see %s and %s", daemonWait, err, n.A.daemonLog(), n.B.daemonLog())
	}
	r.FirstPacket = media.First(start).Sub(start)
	for _, node := range []*Node{n.A, n.B} {
		if err := node.reloadConfig(ctx); err != nil {
			return r, err
		}
	}
	return r, nil
}

// registerWait bounds waitRegistered. With a server down a node may never
// learn its NAT class; pairing must work then too, so it goes ahead.
const registerWait = 5 * time.Second

// waitRegistered waits until the node's daemon says a rendezvous server has
// seen its mapping on both ports (its NAT class is known), or for at most
// within.
func (n *Node) waitRegistered(ctx context.Context, within time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		var st control.Status
		if err := n.cli(ctx, &st, "status", "--json"); err == nil && st.NATClass != "" {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// cli runs the peerline command on the node and decodes its --json answer.
func (n *Node) cli(ctx context.Context, out any, args ...string) error {
	full := append([]string{n.peerline, "-config", n.ConfigPath}, args...)
	// stdout only: join says what it is doing on stderr.
	cmd := n.Host.Command(ctx, full...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	res, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("node %s: peerline %s: %w: %s%s", n.Name, strings.Join(args, " "), err, stderr.String(), n.lastWords(stderr.String()))
	}
	if err := json.Unmarshal(res, out); err != nil {
		return fmt.Errorf("node %s: peerline %s printed %q: %w", n.Name, strings.Join(args, " "), res, err)
	}
	return nil
}

// lastWords is the end of the daemon's log when the daemon has exited:
// a CI run keeps only the test's output, and a daemon that died in the
// middle of a command (a panic, a fatal error) says why only there.
func (n *Node) lastWords(stderr string) string {
	// The command can see the socket go before the lab reaps the process.
	wait := time.Duration(0)
	if strings.Contains(stderr, "peerlined is not running") || strings.Contains(stderr, "reading peerlined's answer") {
		wait = 2 * time.Second
	}
	d := n.Daemon // once: a test may restart the daemon meanwhile
	if d == nil {
		return ""
	}
	select {
	case <-d.Done():
	case <-time.After(wait):
		return ""
	}
	log, err := d.Log()
	if err != nil {
		return fmt.Sprintf("\npeerlined exited (%v); its log is unreadable: %v", d.Err(), err)
	}
	const tail = 6000
	if len(log) > tail {
		log = "..." + log[len(log)-tail:]
	}
	return fmt.Sprintf("\npeerlined exited (%v); the end of its log:\n%s", d.Err(), log)
}

// reloadConfig re-reads the config the daemon changed (pairing), and
// waits until every peer in it is up.
func (n *Node) reloadConfig(ctx context.Context) error {
	cfg, err := config.Load(n.ConfigPath)
	if err != nil {
		return err
	}
	n.Config = *cfg
	return n.waitFor(ctx, daemonWait, "peers not up after pairing", func() (bool, string) {
		st, err := n.Status()
		if err != nil {
			return false, err.Error()
		}
		return len(st.Peers) == len(n.Config.Peers) && allUp(st), fmt.Sprintf("peers %+v", st.Peers)
	})
}

// SettledPath waits until both nodes see each other online on the same
// path, with punching over, and returns it.
func (n *Network) SettledPath(ctx context.Context, within time.Duration) (path, reason string, err error) {
	return n.WaitPaths(ctx, within, "a settled path", func(a, reasonA, b string) bool {
		return a == b && a != "" && !(a == string(peerpath.PathRelay) && reasonA == peerpath.ReasonPunching)
	})
}

// WaitPaths waits until both nodes see each other online and ok holds for
// their paths (and A's reason), and returns A's path and reason; what is
// waited for names it in the error.
func (n *Network) WaitPaths(ctx context.Context, within time.Duration, what string, ok func(a, reasonA, b string) bool) (path, reason string, err error) {
	deadline := time.Now().Add(within)
	for {
		pa, ra, oa, errA := n.A.PeerPath()
		pb, _, ob, errB := n.B.PeerPath()
		if errA == nil && errB == nil && oa && ob && ok(pa, ra, pb) {
			return pa, ra, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return pa, ra, fmt.Errorf("no %s within %v: A %s %q online=%v (%v), B %s online=%v (%v)", what, within, pa, ra, oa, errA, pb, ob, errB)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// PeerPath is the path manager's view of the node's only peer.
func (n *Node) PeerPath() (path, reason string, online bool, err error) {
	st, err := n.Status()
	if err != nil {
		return "", "", false, err
	}
	if len(st.Peers) != 1 {
		return "", "", false, fmt.Errorf("node %s has %d peers", n.Name, len(st.Peers))
	}
	p := st.Peers[0]
	return p.Path, p.PathReason, p.Online, nil
}

// pathLog is what the node's daemon logged about paths since t, for a
// test that wants to say why recovery took long.
//
//lint:ignore U1000 used by the lab tests (recovery_lab_test.go)
func (n *Node) pathLog(since time.Time) string {
	b, err := os.ReadFile(n.daemonLog())
	if err != nil {
		return err.Error()
	}
	var out strings.Builder
	for line := range strings.Lines(string(b)) {
		if !strings.Contains(line, "part=paths") && !strings.Contains(line, "handshake") {
			continue
		}
		if ts, _, ok := strings.Cut(strings.TrimPrefix(line, "time="), " "); ok {
			if at, err := time.Parse(time.RFC3339Nano, ts); err == nil && at.Before(since) {
				continue
			}
		}
		out.WriteString(line)
	}
	return out.String()
}
