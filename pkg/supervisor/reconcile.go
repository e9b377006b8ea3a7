package supervisor

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"

	"github.com/peerline/peerline/pkg/firewall"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/rewrite"
	"github.com/peerline/peerline/pkg/sdnotify"
)

// reconcile ensures the root side, every line and every peer exist as
// configured; verify is how many built peers to check in full (scale.go).
// Failures are logged and retried on the next check.
func (s *Supervisor) reconcile(verify int) {
	// A peer without its tunnel yet (just paired) is looked for while the
	// tunnel is made, not after (peerpath.Manager.Expect): a join's first
	// packet. A busy Pi may act late on the introduction that comes then,
	// and behind routers that accept input the first punch then fails;
	// the path manager punches again (docs/punch-again.md).
	for _, pc := range s.cfg.Peers {
		if p := s.peers[pc.Index]; (p == nil || p.tunnel == nil) && s.paths != nil {
			s.paths.Expect(pc.PublicKey)
		}
	}
	// Before the phone port or any link comes up; without it the node
	// stays as it is (closed on a first start) until the next check. A
	// table this run loaded is already in force, though, and it drops
	// whatever it does not name (the forward chain's policy): a changed
	// one (a peer added, a line) is loaded while the peers are built, and
	// until the load lands, or if it fails, what is new stays cut off.
	// A change of peers alone adds or deletes set elements in place
	// (ensureNodeTable), one netlink batch of a few milliseconds whatever
	// the peers.
	// Only while the namespace's ruleset generation shows the table in
	// force untouched since this run loaded it (not deleted meanwhile).
	var nodeFW chan error
	n := s.nodeSpec()
	changed := s.nodeFW.rules != "" && firewall.NodeRules(n) != s.nodeFW.rules
	if untouched := changed && s.nodeFWUntouched(); untouched {
		nodeFW = make(chan error, 1)
		go func() { nodeFW <- s.ensureNodeTable(n, true, untouched) }()
	} else if err := s.ensureNodeTable(n, true, false); err != nil {
		s.log.Error("node firewall not loaded; phones and peers stay cut off until it is", "err", err)
		return
	}
	ok := true
	if err := s.ensureRoot(); err != nil {
		s.log.Error("phone port not ready; phones cannot reach the network until this is fixed", "port", s.cfg.PhonePort, "err", err)
		ok = false
	}
	present, err := s.net.Namespaces(s.cfg.Prefix + "-")
	if err != nil {
		s.log.Error("listing namespaces", "err", err)
	}
	links, lerr := s.net.Links("", s.names.Prefix+"v")
	if lerr != nil {
		s.log.Error("listing links", "err", lerr)
	}
	var todo []*peer
	for k, pc := range s.cfg.Peers {
		p := s.peers[pc.Index]
		// Whatever this run built in a namespace that is gone (its
		// firewall above all) must be built again, tunnel or not.
		if p != nil && err == nil && !slices.Contains(present, s.names.Namespace(pc.Index)) {
			s.log.Warn("peer namespace vanished; rebuilding", "peer", pc.Index)
			s.removePeer(pc.Index)
			p = nil
		}
		if p == nil {
			p = &peer{cfg: pc}
			s.peers[pc.Index] = p
		}
		due := verify > 0 && (k-s.verifyFrom%len(s.cfg.Peers)+len(s.cfg.Peers))%len(s.cfg.Peers) < verify
		if s.shouldEnsure(p, present, links, err == nil && lerr == nil, due) {
			todo = append(todo, p)
		}
	}
	s.verifyFrom += verify
	// The state (what is applied, peers about to be built included) is
	// saved while they are built; it is on disk before the status says
	// anything of them (startSaveState).
	stateSaved := s.startSaveState()
	for k, perr := range s.ensurePeers(todo) {
		p := todo[k]
		if perr != nil {
			if p.err == nil || p.err.Error() != perr.Error() {
				s.log.Error("peer not up; retrying", "peer", p.cfg.Index, "name", p.cfg.Name, "err", perr)
			}
			p.err, p.built = perr, false
			ok = false
		} else {
			p.err, p.built = nil, true
		}
	}
	for _, pc := range s.cfg.Peers {
		if s.peers[pc.Index].err != nil {
			ok = false
		}
	}
	if nodeFW != nil {
		if err := <-nodeFW; err != nil {
			s.log.Error("node firewall not reloaded; what the change added stays cut off until it is", "err", err)
			ok = false
		}
	}
	s.nameThirdNodes()
	s.applyAnonymous()
	stateSaved()
	becameReady := ok && !s.ready
	if becameReady {
		s.ready = true
	}
	s.writeStatus()
	if becameReady {
		s.log.Info("ready", "peers", len(s.cfg.Peers), "lines", len(s.cfg.Lines))
		if _, err := sdnotify.Notify(sdnotify.Ready); err != nil {
			s.log.Warn("telling systemd we are ready", "err", err)
		}
	}
}

// nameThirdNodes tells each tunnel's rewriter how to name the other peers
// on it, so that a transfer to a third node's phone crosses (rewrite
// ThirdNodes). The names depend only on the set of peer keys, so they are
// made again for every tunnel when that set changes, and otherwise only for
// a tunnel that is new. A new tunnel is named at once; naming the others
// again is a table of a hash per peer for each tunnel (with 253 peers about
// 90 ms of CPU here), so it runs in the background (nameAgain) and a peer
// added or removed is not held up by it.
func (s *Supervisor) nameThirdNodes() {
	keys := make(map[int]nodekey.Key, len(s.cfg.Peers))
	for _, pc := range s.cfg.Peers {
		keys[pc.Index] = pc.PublicKey
	}
	changed := !maps.Equal(keys, s.thirdKeys)
	s.thirdKeys = keys
	var again []thirdJob
	for _, p := range s.peers {
		switch {
		case p.rewrite == nil:
		case !p.thirdNamed:
			p.rewrite.SetThirdNodes(rewrite.NewThirdNodes(s.key.Public(), p.cfg.PublicKey, keys))
			p.thirdNamed = true
		case changed:
			again = append(again, thirdJob{p.rewrite, p.cfg.PublicKey})
		}
	}
	if changed {
		s.nameAgain(again, keys)
	}
}

// thirdJob is a tunnel to name again: its rewriter and its peer's key.
type thirdJob struct {
	dev  *rewrite.Device
	peer nodekey.Key
}

// thirdNaming runs nameAgain's batches; a batch stops as soon as a newer
// one starts (gen moved), so a tunnel never goes back to older names.
type thirdNaming struct {
	mu  sync.Mutex
	gen uint64
	wg  sync.WaitGroup
}

// nameAgain names jobs' tunnels for keys (which nobody changes after) in
// the background, superseding a batch still running.
func (s *Supervisor) nameAgain(jobs []thirdJob, keys map[int]nodekey.Key) {
	t := &s.third
	t.mu.Lock()
	t.gen++
	gen := t.gen
	t.mu.Unlock()
	if len(jobs) == 0 {
		return
	}
	self := s.key.Public()
	t.wg.Go(func() {
		for _, j := range jobs {
			names := rewrite.NewThirdNodes(self, j.peer, keys)
			t.mu.Lock()
			current := t.gen == gen
			if current {
				j.dev.SetThirdNodes(names)
			}
			t.mu.Unlock()
			if !current {
				return
			}
		}
	})
}

// stopNaming ends a batch of nameAgain and waits for it.
func (s *Supervisor) stopNaming() {
	s.nameAgain(nil, nil)
	s.third.wg.Wait()
}

func (s *Supervisor) ensureRoot() error {
	if !s.rootDone {
		if err := s.net.SetSysctl("", "net/ipv4/ip_forward", "1"); err != nil {
			return err
		}
		s.rootDone = true
	}
	if err := s.net.LinkUp("", s.cfg.PhonePort); err != nil {
		return fmt.Errorf("phone port %s: %w (check phone_port in the config names the Ethernet port the phones use)", s.cfg.PhonePort, err)
	}
	for _, l := range s.wantLines() {
		if err := s.ensureLineAddr(l); err != nil {
			return err
		}
	}
	return nil
}

// wantLines are the config's lines and those added at run time, sorted.
func (s *Supervisor) wantLines() []int {
	ls := slices.Clone(s.cfg.Lines)
	for l := range s.extra {
		if !slices.Contains(ls, l) {
			ls = append(ls, l)
		}
	}
	slices.Sort(ls)
	return ls
}

func (s *Supervisor) ensureLineAddr(l int) error {
	if err := s.net.EnsureAddr("", s.cfg.PhonePort, linePiAddr(l)); err != nil {
		return fmt.Errorf("line %d: %w", l, err)
	}
	if !slices.Contains(s.lines, l) {
		s.lines = append(s.lines, l)
		slices.Sort(s.lines)
	}
	return nil
}

// linePiAddr is the Pi's side of line s, 10.0.s.2/30.
func linePiAddr(s int) netip.Prefix {
	return netip.PrefixFrom(numplan.LineGateway(uint8(s)), 30)
}
