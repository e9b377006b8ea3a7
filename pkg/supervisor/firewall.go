package supervisor

import (
	"errors"
	"maps"
	"slices"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/firewall"
)

// Firewall loads, lists and removes peerline's nftables table in a
// namespace ("" is the daemon's own); firewall.Loader is the real one
// (netlink messages for loads and changes, nft for listings).
type Firewall interface {
	// Load replaces the table with r's rules, all or nothing.
	Load(ns string, r firewall.Ruleset) error
	// Change turns the node table loaded from from into to by adding
	// and deleting set elements (their peers), as one transaction, all or
	// nothing.
	Change(ns string, from, to firewall.Node) error
	List(ns string) (string, error)
	Delete(ns string) error
	// Generation is a counter the kernel bumps on every change to the
	// namespace's ruleset; one netlink round trip, no process.
	Generation(ns string) (uint32, error)
}

// loadedTable is what this run loaded into one namespace's table: the
// ruleset, the namespace's ruleset generation read right after the load
// (genOK), and, once needed, how nft listed the table (listedOK), to tell
// on a later check whether someone flushed, deleted or edited it.
//
// The listing is taken lazily: an nft run costs tens of milliseconds (and
// listing the node table of 253 peers took 0.6 s while it had rules per
// peer), and most namespaces never see another change, so an unmoved
// generation is all a check needs.
// Only once the generation moves (something else changed some table in
// the namespace) is the table loaded again and listed, so that from then
// on a listing tells whether ours was touched.
type loadedTable struct {
	rules, listed string
	gen           uint32
	genOK         bool
	listedOK      bool
	// node is what the node's table was made from (nodeOK), so that a
	// change of peers alone is a change of set elements in place.
	node   firewall.Node
	nodeOK bool
}

// nodeSpec is the node's policy for the current config and lines.
func (s *Supervisor) nodeSpec() firewall.Node {
	peers := make([]int, 0, len(s.cfg.Peers))
	for _, p := range s.cfg.Peers {
		peers = append(peers, p.Index)
	}
	return firewall.Node{
		PhonePort:  s.cfg.PhonePort,
		Lines:      s.wantLines(),
		Peers:      peers,
		VethPrefix: s.names.VethPrefix(),
		Internet:   s.cfg.Phones.Internet,
		NoRewrite:  s.noRewrite,
	}
}

// ensureNodeTable makes the node's table hold n's rules (see ensureTable
// for verify). When only the peers changed since this run loaded the table,
// and untouched says the namespace's ruleset generation showed it
// untouched since (nodeFWUntouched, read by the caller before it started
// anything that may move the generation), their
// set elements are added and deleted in one transaction: one netlink
// batch of a few hundred bytes, where a reload grows with the peers. If
// more than the peers changed (ErrNotPeersOnly), or the change fails (the
// table was changed after all), the table is loaded whole.
func (s *Supervisor) ensureNodeTable(n firewall.Node, verify, untouched bool) error {
	t := &s.nodeFW
	rules := n.Rules()
	if untouched && t.rules != "" && t.rules != rules && t.nodeOK {
		err := s.firewallCtrl.Change("", t.node, n)
		if err == nil {
			return s.changedNodeTable(n, rules)
		}
		if !errors.Is(err, firewall.ErrNotPeersOnly) {
			s.log.Warn("changing the node firewall's peers in place failed; loading it whole", "err", err)
		}
	}
	if err := s.ensureRules("", n, rules, t, verify); err != nil {
		return err
	}
	t.node, t.nodeOK = n, true
	return nil
}

// changedNodeTable records the node table changed in place to n's rules:
// its new generation and, if one was kept, a new listing.
func (s *Supervisor) changedNodeTable(n firewall.Node, rules string) error {
	t := &s.nodeFW
	gen, gerr := s.firewallCtrl.Generation("")
	*t = loadedTable{rules: rules, gen: gen, genOK: gerr == nil, node: n, nodeOK: true, listed: t.listed, listedOK: t.listedOK}
	if t.listedOK || gerr != nil {
		listed, err := s.firewallCtrl.List("")
		if err != nil {
			t.listed, t.listedOK = "", false
			return err
		}
		t.listed, t.listedOK = listed, true
	}
	return nil
}

// peerRules is the ruleset of peer p's namespace for the current lines.
func (s *Supervisor) peerRules(p *peer) firewall.Peer {
	return firewall.Peer{
		Index:     p.cfg.Index,
		Tunnel:    s.names.Device(p.cfg.Index),
		ToPhones:  config.VethInNamespace,
		Lines:     s.wantLines(),
		NoRewrite: s.noRewrite,
	}
}

// ensureTable makes the table in ns hold r's rules. When verify is set, a
// table whose rules this run loaded is checked: if the namespace's ruleset
// generation moved since the load or the last check, the table is listed
// (one nft run) and compared with the listing taken before, or, if none
// was taken yet, loaded again (see loadedTable). So the periodic check
// restores a table flushed, deleted or edited behind the daemon's back,
// and costs a netlink round trip per namespace when nothing changed.
func (s *Supervisor) ensureTable(ns string, r firewall.Ruleset, t *loadedTable, verify bool) error {
	return s.ensureRules(ns, r, r.Rules(), t, verify)
}

// ensureRules is ensureTable for r's rules already rendered (the node
// table's run to hundreds of lines).
func (s *Supervisor) ensureRules(ns string, r firewall.Ruleset, rules string, t *loadedTable, verify bool) error {
	list := false
	if t.rules == rules {
		if !verify {
			return nil
		}
		gen, gerr := s.firewallCtrl.Generation(ns)
		if gerr == nil && t.genOK && gen == t.gen {
			return nil
		}
		if t.listedOK {
			listed, err := s.firewallCtrl.List(ns)
			if err == nil && listed == t.listed {
				t.gen, t.genOK = gen, gerr == nil
				return nil
			}
			s.log.Warn("firewall changed behind peerlined's back; loading it again", "ns", ns, "err", err)
		} else {
			// No listing to compare with: ours may be untouched and
			// another table changed, but loading it again is the only
			// way to be sure. From now on a listing tells the two apart.
			s.log.Warn("firewall changed behind peerlined's back (the namespace's ruleset changed); loading it again", "ns", ns, "err", gerr)
		}
		list = true
	}
	*t = loadedTable{}
	if err := s.firewallCtrl.Load(ns, r); err != nil {
		return err
	}
	gen, gerr := s.firewallCtrl.Generation(ns)
	*t = loadedTable{rules: rules, gen: gen, genOK: gerr == nil}
	if list || gerr != nil {
		listed, err := s.firewallCtrl.List(ns)
		if err != nil {
			return err
		}
		t.listed, t.listedOK = listed, true
	}
	return nil
}

// nodeFWUntouched reports whether the node's ruleset generation is still
// the one read when this run last loaded or checked its table.
func (s *Supervisor) nodeFWUntouched() bool {
	gen, err := s.firewallCtrl.Generation("")
	return err == nil && s.nodeFW.genOK && gen == s.nodeFW.gen
}

// refreshFirewalls reloads the tables whose rules the lines changed,
// without checking the others (EnsureLine runs on the DHCP server's path).
// A change of lines is never one of peers only, so the node table is never
// changed in place here and its generation need not be read.
func (s *Supervisor) refreshFirewalls() {
	if err := s.ensureNodeTable(s.nodeSpec(), false, false); err != nil {
		s.log.Error("reloading the node firewall for the new lines; retrying at the next check", "err", err)
	}
	for _, i := range slices.Sorted(maps.Keys(s.peers)) {
		p := s.peers[i]
		if p.fw.rules == "" {
			continue // not built yet: ensurePeer loads it
		}
		if err := s.ensureTable(s.names.Namespace(i), s.peerRules(p), &p.fw, false); err != nil {
			s.log.Error("reloading a peer's firewall for the new lines; retrying at the next check", "peer", i, "err", err)
		}
	}
}

// removeNodeFirewall removes the node's policy at teardown.
func (s *Supervisor) removeNodeFirewall() {
	s.nodeFW = loadedTable{}
	if err := s.firewallCtrl.Delete(""); err != nil {
		s.log.Error("removing the node firewall", "err", err)
	}
}
