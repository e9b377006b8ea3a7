package supervisor

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/firewall"
	"github.com/peerline/peerline/pkg/netsetup"
)

// sweep removes what an earlier run left that the config no longer wants:
// namespaces and links found by name, lines and a changed phone port from
// the state file.
func (s *Supervisor) sweep(prev *state) {
	want := map[int]bool{}
	for _, p := range s.cfg.Peers {
		want[p.Index] = true
	}
	removeStale(s.net, s.names, want, s.log)
	if prev == nil {
		return
	}
	for _, l := range prev.Lines {
		if prev.PhonePort != s.cfg.PhonePort || !slices.Contains(s.wantLines(), l) {
			if err := s.net.DeleteAddr("", prev.PhonePort, linePiAddr(l)); err != nil {
				s.log.Warn("removing old line address", "line", l, "port", prev.PhonePort, "err", err)
			}
		}
	}
}

// removeStale deletes every namespace, root link and UAPI socket of this
// prefix whose index is not in keep.
func removeStale(n netsetup.Ops, names config.Names, keep map[int]bool, log *slog.Logger) {
	nss, err := n.Namespaces(names.Prefix + "-")
	if err != nil {
		log.Error("listing namespaces", "err", err)
	}
	for _, ns := range nss {
		if i, ok := names.ParseNamespace(ns); ok && !keep[i] {
			log.Info("removing leftover namespace", "ns", ns)
			if err := n.DeleteNamespace(ns); err != nil {
				log.Error("removing namespace", "ns", ns, "err", err)
			}
		}
	}
	links, err := n.Links("", names.Prefix+"v")
	if err != nil {
		log.Error("listing links", "err", err)
	}
	for _, l := range links {
		if i, ok := names.ParseVeth(l); ok && !keep[i] {
			log.Info("removing leftover link", "link", l)
			if err := n.DeleteLink("", l); err != nil {
				log.Error("removing link", "link", l, "err", err)
			}
		}
	}
	removeStaleSockets(names, keep, log)
}

// UAPIDir is where wireguard-go puts its UAPI sockets.
var UAPIDir = "/var/run/wireguard"

func removeStaleSockets(names config.Names, keep map[int]bool, log *slog.Logger) {
	entries, err := os.ReadDir(UAPIDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		base, ok := strings.CutSuffix(e.Name(), ".sock")
		if !ok {
			continue
		}
		if i, ok := names.ParseDevice(base); ok && !keep[i] {
			p := filepath.Join(UAPIDir, e.Name())
			if err := os.Remove(p); err == nil {
				log.Info("removed leftover UAPI socket", "path", p)
			}
		}
	}
}

// teardown removes everything the supervisor built.
func (s *Supervisor) teardown() {
	s.releasePeers(s.peers)
	clear(s.peers)
	s.removeLines(slices.Clone(s.lines))
	s.removeNodeFirewall()
	s.saveState()
	os.Remove(filepath.Join(s.cfg.RunDir, statusFile))
	s.log.Info("torn down")
}

// Cleanup removes everything a daemon with cfg's prefix may have left: all
// its namespaces, links and UAPI sockets whatever their index, and the line
// addresses of the config and of the last state. The caller holds the run
// directory's lock, so that no daemon runs meanwhile (pkg/node).
func Cleanup(cfg *config.Config, n netsetup.Ops, log *slog.Logger) error {
	names := config.Names{Prefix: cfg.Prefix}
	removeStale(n, names, nil, log)
	lines := map[string][]int{cfg.PhonePort: cfg.Lines}
	if prev, _ := loadState(cfg.StateDir); prev != nil {
		lines[prev.PhonePort] = append(lines[prev.PhonePort], prev.Lines...)
	}
	for port, ls := range lines {
		for _, l := range ls {
			if err := n.DeleteAddr("", port, linePiAddr(l)); err != nil {
				log.Warn("removing line address", "line", l, "port", port, "err", err)
			}
		}
	}
	if err := (firewall.Loader{Do: n.Do}).Delete(""); err != nil {
		log.Warn("removing the node firewall", "err", err)
	}
	if prev, _ := loadState(cfg.StateDir); prev != nil {
		saveStateFile(cfg.StateDir, &state{})
	}
	os.Remove(filepath.Join(cfg.RunDir, statusFile))
	return nil
}
