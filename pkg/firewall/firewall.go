// Package firewall is peerline's nftables policy: one table in each peer's
// namespace and one for the node itself, in the namespace the daemon runs in
// (the Pi's root namespace). docs/firewall.md has the whole policy with the
// attacks it answers; in short, what may reach what:
//
//   - A paired peer reaches our phones, with what a call needs, and nothing
//     else: from its tunnel only UDP (SIP, RTP, RTCP) and ICMP echo to the
//     exact phone address 10.0.s.1 of a line we serve pass, plus replies and
//     ICMP errors that conntrack relates to flows our side started. SIP to
//     the Pi's side of a line (10.0.s.2 UDP 5060, what a registered phone's
//     From names, so what a call-back dials) goes on to that line's phone.
//     Not the Pi (10.0.s.2, the veth links, the namespace), not a phone's web page
//     (TCP, refused with a reset), not an address of our plan that is no phone (10.0.0.1,
//     10.0.s.5, 10.0.255.1), and not the uplink or anything beyond it.
//   - A peer appears only as its own phones and Pi: a packet from tunnel i
//     whose source is not in 10.i.0.0/16 (after the rewriter's map, wire
//     10.255.s.p) is dropped. Posing as one of our own lines (our 10.0.s.p)
//     or as a third node is refused here and, before that, counted and
//     dropped by the rewriter (pkg/rewrite).
//   - A device on the phone port reaches the Pi's own services (input is not
//     filtered on the phone port: DHCP, DNS, NTP, provisioning, the status
//     page), the other local lines, and the tunnels (10.i.0.0/16 through the
//     link into peer i's namespace, where the peer's own firewall decides
//     what it takes). It reaches the uplink only when the config's
//     phones.internet says so, and then masqueraded behind the Pi's uplink
//     address, so that nothing of the 10.0.s.p plan leaves the Pi.
//   - Nothing is forwarded from the uplink to the phones or the tunnels
//     except replies to what they started.
//
// UDP to any port of a phone is allowed because phones choose their RTP
// ports freely (baresip at random, GXP from 5004, Yealink from 11780) and a
// peer's RTP can arrive before our phone has sent any, so conntrack cannot
// open the way.
//
// TCP between phones and tunnels is refused, SIP over TCP (and TLS)
// included, which the rewriter does not carry (see pkg/rewrite), and
// refused out loud: a TCP reset, never a silent drop. A phone set to TCP
// that is left to time out waits about 40 s before it gives up; one that
// gets a reset fails the call at once, and falls back to UDP if it can.
// The node's table resets a local phone's connection before it enters a
// tunnel; the peer namespace's resets a connection to one of our phones
// that arrives from a peer anyway (an older peer). Phones are provisioned
// for SIP over UDP (pkg/provision).
//
// Each ruleset is written as nft text (PeerRules, NodeRules: the
// reference, held by the golden files) and loaded as the netlink messages
// nft would send for that text, built from the same Peer or Node and sent
// from the daemon into the namespace as one batch, which the kernel
// applies as one transaction that replaces the table (netlink_linux.go;
// the lab test TestNetlinkMatchesText holds the two forms to the same
// listing). So reloading never leaves a moment without rules, a refused
// load leaves the table as it was, and no nft process runs to load: a
// peer's table right after its namespace is made, before any link joins
// it; the node's before the phone port or any link comes up. The daemon keeps the
// namespace's ruleset generation after each load (Loader.Generation, one
// netlink round trip); on every reconcile a moved generation makes it load
// the table again (the first time) or list it and compare with the listing
// it then keeps, so a table flushed, deleted or edited behind its back is
// loaded again within one check interval, and an unchanged one costs no nft
// run. The rulesets are generated from the
// config (lines, peers, the phone port, phones.internet) and reloaded when
// any of that changes, except that the node table's rules do not name
// peers: its peers are elements of two named sets, so a peer added or
// removed is a change of elements in place (NodeChange, Loader.Change),
// not a reload of a table that grows with the peers.
package firewall

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/peerline/peerline/pkg/numplan"
)

// Table is the nftables table (family inet) peerline owns in each peer
// namespace and in the node's namespace.
const Table = "peerline"

// localPlan is 10.0.0.0/16, this node's own lines and phones.
var localPlan = numplan.NodePrefix(0)

// Peer describes one peer namespace.
type Peer struct {
	// Index is i: the peer's phones appear here as 10.i.s.p.
	Index int
	// Tunnel is the TUN device inside the namespace.
	Tunnel string
	// ToPhones is the namespace's end of the link to the node's namespace.
	ToPhones string
	// Lines are the local lines s whose phones (10.0.s.1) the peer may
	// reach.
	Lines []int
	// NoRewrite: see Node.NoRewrite. The peer's phones appear as 10.255.s.p
	// and reach ours at 10.254.s.1.
	NoRewrite bool
}

// PeerRules returns the ruleset for a peer namespace.
func PeerRules(p Peer) string {
	var b strings.Builder
	header(&b)
	peer, ours := numplan.NodePrefix(uint8(p.Index)), uint8(0)
	if p.NoRewrite {
		peer, ours = wireSender, numplan.WireReceiver
	}
	fmt.Fprintf(&b, `	chain forward {
		type filter hook forward priority filter; policy drop;
		iifname %[1]q ip saddr != %[3]s drop
		ct state established,related accept
		iifname %[2]q accept
`, p.Tunnel, p.ToPhones, peer)
	if phones := phoneSet(p.Lines, ours); phones != "" {
		fmt.Fprintf(&b, `		iifname %[1]q oifname %[2]q ip daddr %[3]s meta l4proto udp accept
		iifname %[1]q oifname %[2]q ip daddr %[3]s icmp type echo-request accept
		iifname %[1]q oifname %[2]q ip daddr %[3]s meta l4proto tcp reject with tcp reset
`, p.Tunnel, p.ToPhones, phones)
	}
	fmt.Fprintf(&b, `	}
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		iifname "lo" accept
		iifname %q accept
	}
`, p.ToPhones)
	if pis, m := piMap(p.Lines, ours); pis != "" {
		// A call-back to a registered phone: its From names its registrar,
		// the Pi's side of its line (10.0.s.2), which the peer's phone then
		// calls. SIP to it goes on to the line's phone (10.0.s.1), never
		// to the Pi itself; conntrack maps the answers back.
		fmt.Fprintf(&b, `	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname %q ip daddr %s udp dport 5060 dnat ip to ip daddr map %s
	}
`, p.Tunnel, pis, m)
	}
	b.WriteString("}\n")
	return b.String()
}

// piMap is the nft set of the Pi's sides (10.0.s.2) of lines and the map
// from each to its phone (10.ours.s.1: 10.0.s.1, or the wire plan's
// receiver without the rewriter); "" for none.
func piMap(lines []int, ours uint8) (set, m string) {
	gws, phones := piPairs(lines, ours)
	if len(gws) == 0 {
		return "", ""
	}
	pis, pairs := make([]string, len(gws)), make([]string, len(gws))
	for k, gw := range gws {
		pis[k] = gw.String()
		pairs[k] = gw.String() + " : " + phones[k].String()
	}
	return "{ " + strings.Join(pis, ", ") + " }", "{ " + strings.Join(pairs, ", ") + " }"
}

// piPairs are the Pi's sides of lines (10.0.s.2) and, one for one, their
// phones (10.ours.s.1).
func piPairs(lines []int, ours uint8) (gws, phones []netip.Addr) {
	for _, s := range slices.Sorted(slices.Values(lines)) {
		if numplan.ValidLine(s) {
			gws = append(gws, numplan.LineGateway(uint8(s)))
			phones = append(phones, numplan.Phone(ours, uint8(s)))
		}
	}
	return gws, phones
}

// Node describes the node's own namespace.
type Node struct {
	// PhonePort is the interface the phones are plugged into.
	PhonePort string
	// Lines are the local lines served on it.
	Lines []int
	// Peers are the indices i of the peers whose links exist.
	Peers []int
	// VethPrefix starts the name of the link to each peer's namespace:
	// VethPrefix + i.
	VethPrefix string
	// Internet lets the phones reach the uplink, masqueraded.
	Internet bool
	// NoRewrite is for tunnels without the rewriter (supervisor's
	// Options.NoRewrite, which the lab benchmark compares the rewriter
	// with): the addresses of our plan cannot cross such a tunnel, so its
	// phones send in wire form themselves, 10.255.s.p to 10.254.s.p, and
	// the rules between phones and tunnels name the wire plan where they
	// otherwise name ours and the peer's (the peer's phones as 10.255.s.p,
	// ours as 10.254.s.1), rule for rule, so that a packet meets as many
	// as with the rewriter.
	NoRewrite bool
}

// wireSender is 10.255.0.0/16: inside a tunnel, the phones and Pi of the
// packet's sender.
var wireSender = numplan.NodePrefix(numplan.WireSender)

// The node table's two sets of peers, one element per peer link: to_peers
// holds (link, what a phone may reach through it), from_peers (link, who
// may come from it to a phone). The table's rules are fixed; adding or
// removing a peer is an element added to or deleted from each (NodeChange),
// a transaction of a few hundred bytes whatever the number of peers, where
// reloading rules per peer took nft most of a second with 253 peers.
const (
	setToPeers   = "to_peers"
	setFromPeers = "from_peers"
)

// NodeRules returns the ruleset for the node's namespace.
func NodeRules(n Node) string {
	var b strings.Builder
	header(&b)
	to, from := n.elements()
	for _, set := range []struct {
		name  string
		elems []string
	}{{setToPeers, to}, {setFromPeers, from}} {
		// An interval set: the addresses are the peer's /16.
		fmt.Fprintf(&b, "\tset %s {\n\t\ttype ifname . ipv4_addr\n\t\tflags interval\n", set.name)
		if len(set.elems) > 0 {
			fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(set.elems, ", "))
		}
		b.WriteString("\t}\n")
	}
	fmt.Fprintf(&b, `	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname %[1]q oifname %[1]q ip saddr %[2]s ip daddr %[2]s accept
`, n.PhonePort, localPlan)
	veths := n.VethPrefix + "*"
	// Before the accepts below: a phone's TCP towards a tunnel is refused
	// here, at once, not left to time out at the far end.
	fmt.Fprintf(&b, "\t\tiifname %q oifname %q meta l4proto tcp reject with tcp reset\n", n.PhonePort, veths)
	// A phone's packets toward peer i go from our plan to the peer's
	// (to_peers: link i . 10.i.0.0/16), and the peer's come back from its
	// plan to our phones (from_peers: link i . 10.i.0.0/16): in wire form
	// (10.255 -> 10.254) both ways when there is no rewriter.
	phones, src := phoneSet(n.Lines, 0), localPlan
	if n.NoRewrite {
		phones, src = phoneSet(n.Lines, numplan.WireReceiver), wireSender
	}
	fmt.Fprintf(&b, "\t\tiifname %q ip saddr %s oifname . ip daddr @%s accept\n", n.PhonePort, src, setToPeers)
	if phones != "" {
		fmt.Fprintf(&b, `		iifname . ip saddr @%[1]s oifname %[2]q ip daddr %[3]s meta l4proto udp accept
		iifname . ip saddr @%[1]s oifname %[2]q ip daddr %[3]s icmp type echo-request accept
`, setFromPeers, n.PhonePort, phones)
	}
	if n.Internet {
		fmt.Fprintf(&b, "\t\tiifname %[1]q oifname != %[1]q oifname != %[2]q ip saddr %[3]s accept\n", n.PhonePort, veths, localPlan)
	}
	fmt.Fprintf(&b, `	}
	chain input {
		type filter hook input priority filter; policy accept;
		iifname %[1]q ct state established,related accept
		iifname %[1]q drop
	}
`, veths)
	if n.Internet {
		fmt.Fprintf(&b, `	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		iifname %[1]q oifname != %[1]q oifname != %[2]q ip saddr %[3]s masquerade
	}
`, n.PhonePort, veths, localPlan)
	}
	b.WriteString("}\n")
	return b.String()
}

// elements are the peers' elements of to_peers and from_peers, in the
// order of the peers' indices.
func (n Node) elements() (to, from []string) {
	for _, i := range slices.Sorted(slices.Values(n.Peers)) {
		t, f := n.peerElements(i)
		to, from = append(to, t), append(from, f)
	}
	return to, from
}

// peerElements are peer i's elements of to_peers and from_peers.
func (n Node) peerElements(i int) (to, from string) {
	veth, toNet, fromNet := n.peerNets(i)
	link := strconv.Quote(veth)
	return link + " . " + toNet.String(), link + " . " + fromNet.String()
}

// peerNets are the parts of peer i's elements: its link, and the nets a
// phone may reach through it (to_peers) and that may come from it
// (from_peers).
func (n Node) peerNets(i int) (veth string, to, from netip.Prefix) {
	to = numplan.NodePrefix(uint8(i))
	from = to
	if n.NoRewrite {
		to, from = numplan.NodePrefix(numplan.WireReceiver), wireSender
	}
	return n.VethPrefix + strconv.Itoa(i), to, from
}

// NodeChange returns the nft script that turns the node table loaded from
// NodeRules(from) into NodeRules(to) in one transaction by adding and
// deleting peers' set elements, and ok; ok is false when the two differ in
// more than their peers (lines, the phone port, phones.internet), which
// takes loading NodeRules(to). The script is "" when nothing changes.
// Deleting an element the table does not hold fails the whole
// transaction, so the script applies only to a table as this run loaded
// it; the caller loads the table in full when it fails.
func NodeChange(from, to Node) (script string, ok bool) {
	d, ok := nodeDiff(from, to)
	if !ok {
		return "", false
	}
	var b strings.Builder
	element := func(verb string, i int) {
		te, fe := to.peerElements(i)
		fmt.Fprintf(&b, "%s element inet %s %s { %s }\n", verb, Table, setToPeers, te)
		fmt.Fprintf(&b, "%s element inet %s %s { %s }\n", verb, Table, setFromPeers, fe)
	}
	for _, i := range d.gone {
		element("delete", i)
	}
	for _, i := range d.added {
		element("add", i)
	}
	return b.String(), true
}

// nodeDelta is a change of the node table's peers alone: the peers gone
// and added, in order.
type nodeDelta struct{ gone, added []int }

// nodeDiff is the change of peers from one node table to another, and
// false when they differ in more than their peers.
func nodeDiff(from, to Node) (nodeDelta, bool) {
	f, t := from, to
	f.Peers, t.Peers = nil, nil
	if NodeRules(f) != NodeRules(t) {
		return nodeDelta{}, false
	}
	had, wants := make(map[int]bool, len(from.Peers)), make(map[int]bool, len(to.Peers))
	for _, i := range from.Peers {
		had[i] = true
	}
	for _, i := range to.Peers {
		wants[i] = true
	}
	var d nodeDelta
	for _, i := range slices.Sorted(maps.Keys(had)) {
		if !wants[i] {
			d.gone = append(d.gone, i)
		}
	}
	for _, i := range slices.Sorted(maps.Keys(wants)) {
		if !had[i] {
			d.added = append(d.added, i)
		}
	}
	return d, true
}

// header starts a ruleset: the declare-then-delete pair makes the load
// replace the table atomically whether or not it existed.
func header(b *strings.Builder) {
	fmt.Fprintf(b, "table inet %[1]s\ndelete table inet %[1]s\ntable inet %[1]s {\n", Table)
}

// phoneSet is the nft set of the phones of lines, 10.node.s.1 (node 0:
// ours), "" for none (nft has no empty anonymous set).
func phoneSet(lines []int, node uint8) string {
	addrs := phoneAddrs(lines, node)
	if len(addrs) == 0 {
		return ""
	}
	parts := make([]string, len(addrs))
	for k, a := range addrs {
		parts[k] = a.String()
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

// phoneAddrs are the phones of lines, 10.node.s.1, in the lines' order.
func phoneAddrs(lines []int, node uint8) []netip.Addr {
	var addrs []netip.Addr
	for _, s := range slices.Sorted(slices.Values(lines)) {
		if numplan.ValidLine(s) {
			addrs = append(addrs, numplan.Phone(node, uint8(s)))
		}
	}
	return addrs
}

// Ruleset is a table's policy: a Peer's or the Node's. Rules is its text,
// the reference form (what the golden files hold and nft reads);
// Loader.Load sends the same table as netlink messages.
type Ruleset interface {
	Rules() string
	ruleset()
}

// Rules is PeerRules(p).
func (p Peer) Rules() string { return PeerRules(p) }

// Rules is NodeRules(n).
func (n Node) Rules() string { return NodeRules(n) }

func (Peer) ruleset() {}
func (Node) ruleset() {}

// Loader loads rulesets into namespaces. Loads, changes and deletes are
// netlink messages sent from the daemon into the namespace, one batch each,
// which the kernel applies as one transaction; only List runs nft (to tell
// a table edited behind the daemon's back from the one it loaded).
//
// Loading used to run nft -f with the text: a process start and a parse
// each time, a median of 22-37 ms a peer table on the loaded 2-core test
// machine and 165-726 ms for eight at once, against 5-6 and 19-38 ms for
// the messages (BenchmarkFirewallAB, docs/firewall.md). There is no fallback to nft: both send
// the kernel the same messages, so a kernel that refuses one refuses the
// other, and nft cannot enter a namespace the daemon cannot.
type Loader struct {
	// Do runs fn inside namespace ns (netsetup's Ops.Do; "" is the
	// caller's own); a socket opened or a program started by fn belongs to
	// the namespace of fn's thread.
	Do func(ns string, fn func() error) error
	// NFT is the nft binary for List; "" finds nft in PATH.
	NFT string
}

// ErrNoNFT means the nft command is missing.
var ErrNoNFT = errors.New("nft not found: install nftables (apt-get install nftables); peerlined needs it to check its firewall")

// ErrNoTable means peerline's table does not exist in the namespace.
var ErrNoTable = errors.New("no peerline table")

// Load replaces peerline's table in namespace ns with r's rules, all at
// once: on an error the table there is as it was.
func (l Loader) Load(ns string, r Ruleset) error {
	if err := l.loadNetlink(ns, r); err != nil {
		return fmt.Errorf("loading the firewall in %s (the table there is unchanged): %w; %s", where(ns), err, hint(err))
	}
	return nil
}

// Change turns peerline's node table in namespace ns, as loaded from
// NodeRules(from), into NodeRules(to) by adding and deleting set elements
// in one transaction: all of it or, on an error, none. It fails when from
// and to differ in more than their peers (NodeChange), or when the table
// does not hold from's elements (someone changed it): load it whole then.
func (l Loader) Change(ns string, from, to Node) error {
	d, ok := nodeDiff(from, to)
	if !ok {
		return fmt.Errorf("changing the firewall in %s: %w", where(ns), ErrNotPeersOnly)
	}
	if len(d.gone) == 0 && len(d.added) == 0 {
		return nil
	}
	if err := l.changeNetlink(ns, d, to); err != nil {
		return fmt.Errorf("changing the firewall's peers in %s (the table there is unchanged; load it whole): %w", where(ns), err)
	}
	return nil
}

// ErrNotPeersOnly means Change was given two tables that differ in more
// than their peers: the caller loads the new one whole, as it is meant to.
var ErrNotPeersOnly = errors.New("the tables differ in more than their peers; load the table whole")

// List returns peerline's table in namespace ns as nft prints it, or
// ErrNoTable.
func (l Loader) List(ns string) (string, error) {
	out, err := l.run(ns, "", "list", "table", "inet", Table)
	if err != nil {
		if isNoTable(err) {
			return "", ErrNoTable
		}
		return "", fmt.Errorf("listing firewall in %s: %w", where(ns), err)
	}
	return out, nil
}

// Delete removes peerline's table from namespace ns; a table that is not
// there is no error.
func (l Loader) Delete(ns string) error {
	err := l.deleteNetlink(ns)
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("removing firewall in %s: %w; %s", where(ns), err, hint(err))
	}
	return nil
}

// loadText loads an nft script with nft -f: the text path, which the
// tests load the reference rules with, and what an operator can run by
// hand.
func (l Loader) loadText(ns, script string) error {
	if _, err := l.run(ns, script, "-f", "-"); err != nil {
		return fmt.Errorf("loading firewall text in %s: %w", where(ns), err)
	}
	return nil
}

// refusedError is a batch that was not applied: the kernel refused it,
// or it could not be sent or acknowledged (the netlink library's Flush
// tells these apart by its messages only).
type refusedError struct{ err error }

func (e refusedError) Error() string { return "the kernel refused it: " + e.err.Error() }
func (e refusedError) Unwrap() error { return e.err }

// buildError is a batch that could not be built from the rules (an
// interface name the kernel would cut, a ruleset of an unknown type):
// nothing was sent. Retrying builds the same batch, and the config's
// names are checked when it is read, so it is a bug to report.
type buildError struct{ err error }

func (e buildError) Error() string { return "the rules could not be built: " + e.err.Error() }
func (e buildError) Unwrap() error { return e.err }

// hint says what to do about a load's error.
func hint(err error) string {
	var refused refusedError
	var built buildError
	switch {
	case errors.As(err, &built):
		return "nothing was sent; this is a bug in peerlined: report it with the log"
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return "peerlined needs root (CAP_NET_ADMIN) to set its firewall: run it from its systemd unit or as root"
	case !errors.As(err, &refused):
		// Entering the namespace failed: it is gone.
		return "peerlined makes the namespace again and retries at its next check (30 s); if this repeats, report it with the log"
	case errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.EAFNOSUPPORT), errors.Is(err, syscall.EPROTONOSUPPORT),
		errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.EINVAL):
		return "the kernel refused part of the rules: peerline needs nftables with inet tables, concatenated interval sets (Linux 5.6 or later), NAT, reject and conntrack (the nf_tables and nft_* modules of Debian's and Raspberry Pi OS's kernels); check uname -r and that nft list ruleset works"
	default:
		return "peerlined tries again at its next check (30 s); if this repeats, report it with the log"
	}
}

func (l Loader) run(ns, stdin string, args ...string) (string, error) {
	nft := l.NFT
	if nft == "" {
		p, err := exec.LookPath("nft")
		if err != nil {
			return "", ErrNoNFT
		}
		nft = p
	}
	var out, errOut bytes.Buffer
	err := l.Do(ns, func() error {
		cmd := exec.Command(nft, args...)
		cmd.Stdin = strings.NewReader(stdin)
		cmd.Stdout, cmd.Stderr = &out, &errOut
		return cmd.Run()
	})
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, strings.TrimSpace(errOut.String()+out.String()))
	}
	return out.String(), nil
}

func where(ns string) string {
	if ns == "" {
		return "the node's namespace"
	}
	return "namespace " + ns
}

// isNoTable reports whether nft failed because the table does not exist
// (nft says so only in its message).
func isNoTable(err error) bool {
	return strings.Contains(err.Error(), "No such file or directory")
}
