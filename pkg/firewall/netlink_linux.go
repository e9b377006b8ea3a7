package firewall

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"

	"github.com/peerline/peerline/pkg/numplan"
)

// The netlink builder: the tables PeerRules and NodeRules write as text,
// as the nf_tables messages nft sends for that text, in one batch, which
// the kernel applies as one transaction (all of it or, on any error,
// none). The lab test TestNetlinkMatchesText loads both forms of every
// variant and compares nft's listings. Every value in the messages comes
// from the Peer or Node; nothing is parsed here (the nftables library
// reads the kernel's acknowledgements).
//
// The expressions are those nft 1.0 compiles the text into: a match on an
// IPv4 field in an inet table is preceded by "meta nfproto ipv4" (once per
// rule), a match on an ICMP field by "meta l4proto icmp", a /16 is a
// compare of its 2 bytes, a set of one address a plain compare, and an
// interface name ending in "*" a compare of the name's first bytes.

// ackTimeout bounds the wait for the kernel's answer to a batch; it
// answers in milliseconds, so a longer wait is a fault to report rather
// than a reconcile to hang.
const ackTimeout = 10 * time.Second

// elementsPerMessage keeps each message of set elements far below the
// 64 KiB a netlink attribute can hold (about 60 bytes an element).
const elementsPerMessage = 128

// Registers as nft uses them: reg 1 for a match, reg 2 for the second
// field of a concatenation after an interface name (16 bytes, all of
// reg 1).
const (
	reg1 = unix.NFT_REG_1
	reg2 = unix.NFT_REG_2
)

// testDial, set by tests only, takes the messages instead of the kernel.
var testDial nltest.Func

// nl is one batch being built for peerline's table. It numbers the
// batch's sets itself (setID): left at 0, the nftables library would
// number them from a package-wide counter that loads running at once, in
// several namespaces, would race on.
type nl struct {
	c     *nftables.Conn
	t     *nftables.Table
	setID uint32
	err   error
}

// sendBatch opens a netlink connection inside namespace ns (on Do's
// thread, so that the socket is the namespace's), lets build fill one
// batch and sends it.
func (l Loader) sendBatch(ns string, build func(b *nl)) error {
	return l.Do(ns, func() error {
		opt := nftables.WithSockOptions(func(conn *netlink.Conn) error {
			return conn.SetReadDeadline(time.Now().Add(ackTimeout))
		})
		if testDial != nil {
			opt = nftables.WithTestDial(testDial)
		}
		c, err := nftables.New(opt)
		if err != nil {
			return err
		}
		b := &nl{c: c, t: &nftables.Table{Name: Table, Family: nftables.TableFamilyINet}}
		build(b)
		if b.err != nil {
			return buildError{b.err} // nothing was sent
		}
		if err := c.Flush(); err != nil {
			return refusedError{err}
		}
		return nil
	})
}

// loadNetlink replaces peerline's table in ns with r's rules: declared,
// deleted and made again in one batch, as the text's header does.
func (l Loader) loadNetlink(ns string, r Ruleset) error {
	return l.sendBatch(ns, func(b *nl) {
		b.c.AddTable(b.t)
		b.c.DelTable(b.t)
		b.c.AddTable(b.t)
		switch r := r.(type) {
		case Peer:
			b.peer(r)
		case Node:
			b.node(r)
		default:
			// A *Peer, a *Node or nil is a Ruleset too: sent, the batch
			// would leave an empty table, filtering nothing.
			b.setErr(fmt.Errorf("unknown ruleset %T", r))
		}
	})
}

// changeNetlink applies the element changes of d to the node table's
// sets, as loaded from NodeRules(to).
func (l Loader) changeNetlink(ns string, d nodeDelta, to Node) error {
	return l.sendBatch(ns, func(b *nl) {
		toSet, fromSet := b.nodeSets()
		b.elements(toSet, fromSet, to, d.gone, b.c.SetDeleteElements)
		b.elements(toSet, fromSet, to, d.added, b.c.SetAddElements)
	})
}

// deleteNetlink removes peerline's table from ns.
func (l Loader) deleteNetlink(ns string) error {
	return l.sendBatch(ns, func(b *nl) { b.c.DelTable(b.t) })
}

// names checks interface names as nft does: a longer name than the
// kernel's IFNAMSIZ-1 would be cut, matching another interface.
func (b *nl) names(names ...string) {
	for _, n := range names {
		if len(n) >= unix.IFNAMSIZ {
			b.setErr(fmt.Errorf("interface name %q is longer than %d bytes", n, unix.IFNAMSIZ-1))
		}
	}
}

func (b *nl) setErr(err error) {
	if b.err == nil && err != nil {
		b.err = err
	}
}

func (b *nl) chain(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority, policy nftables.ChainPolicy) *nftables.Chain {
	return b.c.AddChain(&nftables.Chain{Name: name, Table: b.t, Type: typ, Hooknum: hook, Priority: prio, Policy: &policy})
}

func (b *nl) rule(c *nftables.Chain, exprs ...[]expr.Any) {
	b.c.AddRule(&nftables.Rule{Table: b.t, Chain: c, Exprs: slices.Concat(exprs...)})
}

// anonSet adds a constant set (a map if vals is given) for one rule, as
// nft makes for "{ a, b }"; the kernel names it.
func (b *nl) anonSet(keys, vals []netip.Addr) *nftables.Set {
	b.setID++
	s := &nftables.Set{Table: b.t, ID: b.setID, Name: "__set%d", Anonymous: true, Constant: true, KeyType: nftables.TypeIPAddr}
	elems := make([]nftables.SetElement, len(keys))
	for k, a := range keys {
		elems[k].Key = a.AsSlice()
		if vals != nil {
			elems[k].Val = vals[k].AsSlice()
		}
	}
	if vals != nil {
		s.Name, s.IsMap, s.DataType = "__map%d", true, nftables.TypeIPAddr
	}
	b.setErr(b.c.AddSet(s, elems))
	return s
}

// peer is PeerRules(p) as messages.
func (b *nl) peer(p Peer) {
	b.names(p.Tunnel, p.ToPhones)
	peer, ours := numplan.NodePrefix(uint8(p.Index)), uint8(0)
	if p.NoRewrite {
		peer, ours = wireSender, numplan.WireReceiver
	}
	fwd := b.chain("forward", nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter, nftables.ChainPolicyDrop)
	in := b.chain("input", nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriorityFilter, nftables.ChainPolicyDrop)
	var nat *nftables.Chain
	pis, phonesOf := piPairs(p.Lines, ours)
	if len(pis) > 0 {
		nat = b.chain("prerouting", nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest, nftables.ChainPolicyAccept)
	}

	b.rule(fwd, ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, p.Tunnel), nfprotoIPv4(), prefix(offSaddr, expr.CmpOpNeq, peer), verdict(expr.VerdictDrop))
	b.rule(fwd, ctEstablished(), verdict(expr.VerdictAccept))
	b.rule(fwd, ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, p.ToPhones), verdict(expr.VerdictAccept))
	if phones := phoneAddrs(p.Lines, ours); len(phones) > 0 {
		toPhone := func() []expr.Any {
			return slices.Concat(ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, p.Tunnel), ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, p.ToPhones),
				nfprotoIPv4(), b.addrIn(offDaddr, phones))
		}
		b.rule(fwd, toPhone(), l4proto(unix.IPPROTO_UDP), verdict(expr.VerdictAccept))
		b.rule(fwd, toPhone(), l4proto(unix.IPPROTO_ICMP), icmpEchoRequest(), verdict(expr.VerdictAccept))
		b.rule(fwd, toPhone(), l4proto(unix.IPPROTO_TCP), tcpReset())
	}

	b.rule(in, ctEstablished(), verdict(expr.VerdictAccept))
	b.rule(in, ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, "lo"), verdict(expr.VerdictAccept))
	b.rule(in, ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, p.ToPhones), verdict(expr.VerdictAccept))

	if nat != nil {
		// In nft's order: the set of the Pi's sides, then the map.
		match := slices.Concat(ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, p.Tunnel), nfprotoIPv4(), b.addrIn(offDaddr, pis))
		m := b.anonSet(pis, phonesOf)
		b.rule(nat, match, l4proto(unix.IPPROTO_UDP), []expr.Any{
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binary.BigEndian.AppendUint16(nil, 5060)},
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: offDaddr, Len: 4},
			&expr.Lookup{SourceRegister: reg1, DestRegister: reg1, IsDestRegSet: true, SetName: m.Name, SetID: m.ID},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1},
		})
	}
}

// nodeSets declares the node table's two sets of peers (the text's "set
// to_peers { type ifname . ipv4_addr; flags interval }").
func (b *nl) nodeSets() (to, from *nftables.Set) {
	key := nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIPAddr)
	set := func(name string) *nftables.Set {
		b.setID++
		return &nftables.Set{Table: b.t, ID: b.setID, Name: name, Interval: true, Concatenation: true, KeyType: key}
	}
	return set(setToPeers), set(setFromPeers)
}

// elements sends peers' elements of to and from with apply (added or
// deleted), a bounded number per message.
func (b *nl) elements(to, from *nftables.Set, n Node, peers []int, apply func(*nftables.Set, []nftables.SetElement) error) {
	for chunk := range slices.Chunk(peers, elementsPerMessage) {
		var te, fe []nftables.SetElement
		for _, i := range chunk {
			veth, toNet, fromNet := n.peerNets(i)
			te, fe = append(te, concatRange(veth, toNet)), append(fe, concatRange(veth, fromNet))
		}
		b.setErr(apply(to, te))
		b.setErr(apply(from, fe))
	}
}

// concatRange is the element "link" . net of an interval set of
// ifname . ipv4_addr: from the net's first address to its last.
func concatRange(link string, net netip.Prefix) nftables.SetElement {
	first := net.Masked().Addr().As4()
	last := first
	for k := net.Bits(); k < 32; k++ {
		last[k/8] |= 0x80 >> (k % 8)
	}
	name := ifnameBytes(link)
	return nftables.SetElement{Key: append(name, first[:]...), KeyEnd: append(slices.Clone(name), last[:]...)}
}

// node is NodeRules(n) as messages.
func (b *nl) node(n Node) {
	b.names(n.PhonePort, n.VethPrefix+"253")
	to, from := b.nodeSets()
	b.setErr(b.c.AddSet(to, nil))
	b.setErr(b.c.AddSet(from, nil))
	b.elements(to, from, n, slices.Sorted(slices.Values(n.Peers)), b.c.SetAddElements)

	fwd := b.chain("forward", nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter, nftables.ChainPolicyDrop)
	in := b.chain("input", nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriorityFilter, nftables.ChainPolicyAccept)
	var post *nftables.Chain
	if n.Internet {
		post = b.chain("postrouting", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource, nftables.ChainPolicyAccept)
	}
	port := func(key expr.MetaKey, op expr.CmpOp) []expr.Any { return ifname(key, op, n.PhonePort) }
	veths := n.VethPrefix + "*"

	b.rule(fwd, ctEstablished(), verdict(expr.VerdictAccept))
	b.rule(fwd, port(expr.MetaKeyIIFNAME, expr.CmpOpEq), port(expr.MetaKeyOIFNAME, expr.CmpOpEq), nfprotoIPv4(),
		prefix(offSaddr, expr.CmpOpEq, localPlan), prefix(offDaddr, expr.CmpOpEq, localPlan), verdict(expr.VerdictAccept))
	b.rule(fwd, port(expr.MetaKeyIIFNAME, expr.CmpOpEq), ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, veths), l4proto(unix.IPPROTO_TCP), tcpReset())
	phones, src := phoneAddrs(n.Lines, 0), localPlan
	if n.NoRewrite {
		phones, src = phoneAddrs(n.Lines, numplan.WireReceiver), wireSender
	}
	b.rule(fwd, port(expr.MetaKeyIIFNAME, expr.CmpOpEq), nfprotoIPv4(), prefix(offSaddr, expr.CmpOpEq, src),
		concatLookup(expr.MetaKeyOIFNAME, offDaddr, to), verdict(expr.VerdictAccept))
	if len(phones) > 0 {
		fromPeer := func() []expr.Any {
			return slices.Concat(nfprotoIPv4(), concatLookup(expr.MetaKeyIIFNAME, offSaddr, from),
				port(expr.MetaKeyOIFNAME, expr.CmpOpEq), b.addrIn(offDaddr, phones))
		}
		b.rule(fwd, fromPeer(), l4proto(unix.IPPROTO_UDP), verdict(expr.VerdictAccept))
		b.rule(fwd, fromPeer(), l4proto(unix.IPPROTO_ICMP), icmpEchoRequest(), verdict(expr.VerdictAccept))
	}
	toUplink := func() []expr.Any {
		return slices.Concat(port(expr.MetaKeyIIFNAME, expr.CmpOpEq), port(expr.MetaKeyOIFNAME, expr.CmpOpNeq),
			ifname(expr.MetaKeyOIFNAME, expr.CmpOpNeq, veths), nfprotoIPv4(), prefix(offSaddr, expr.CmpOpEq, localPlan))
	}
	if n.Internet {
		b.rule(fwd, toUplink(), verdict(expr.VerdictAccept))
	}

	b.rule(in, ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, veths), ctEstablished(), verdict(expr.VerdictAccept))
	b.rule(in, ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, veths), verdict(expr.VerdictDrop))

	if post != nil {
		b.rule(post, toUplink(), []expr.Any{&expr.Masq{}})
	}
}

// Offsets of the IPv4 source and destination in the network header.
const (
	offSaddr = 12
	offDaddr = 16
)

// ifnameBytes is an interface name as the kernel compares it: IFNAMSIZ
// bytes, zero-padded.
func ifnameBytes(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// ifname matches the input or output interface's name; a name ending in
// "*" matches every name it starts.
func ifname(key expr.MetaKey, op expr.CmpOp, name string) []expr.Any {
	data := ifnameBytes(name)
	if p, ok := strings.CutSuffix(name, "*"); ok {
		data = []byte(p)
	}
	return []expr.Any{&expr.Meta{Key: key, Register: reg1}, &expr.Cmp{Op: op, Register: reg1, Data: data}}
}

// nfprotoIPv4 is the dependency nft puts before an IPv4 header field in an inet
// table.
func nfprotoIPv4() []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1}, &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.NFPROTO_IPV4}}}
}

func l4proto(proto byte) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1}, &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{proto}}}
}

// icmpEchoRequest is "icmp type echo-request" after its l4proto.
func icmpEchoRequest() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{8}},
	}
}

func tcpReset() []expr.Any {
	return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST, Code: 0}}
}

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

// ctEstablished is "ct state established,related".
func ctEstablished() []expr.Any {
	// The kernel's ct state bits (host order): established 2, related 4.
	var mask [4]byte
	binary.NativeEndian.PutUint32(mask[:], 2|4)
	return []expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: mask[:], Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)},
	}
}

// prefix compares the address at off with net, as nft does for a prefix
// of whole bytes (every net of the plan is a /16): its bytes only.
func prefix(off uint32, op expr.CmpOp, net netip.Prefix) []expr.Any {
	n := uint32(net.Bits() / 8)
	a := net.Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Cmp{Op: op, Register: reg1, Data: a[:n]},
	}
}

// addrIn is "ip daddr { a, b }" (or saddr, by off): a plain compare for
// one address, as nft makes it, else a lookup in a set of its own.
func (b *nl) addrIn(off uint32, addrs []netip.Addr) []expr.Any {
	load := &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4}
	if len(addrs) == 1 {
		return []expr.Any{load, &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: addrs[0].AsSlice()}}
	}
	s := b.anonSet(addrs, nil)
	return []expr.Any{load, &expr.Lookup{SourceRegister: reg1, SetName: s.Name, SetID: s.ID}}
}

// concatLookup is "oifname . ip daddr @set" (or iifname, saddr).
func concatLookup(key expr.MetaKey, off uint32, s *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: reg1},
		&expr.Payload{DestRegister: reg2, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
		&expr.Lookup{SourceRegister: reg1, SetName: s.Name, SetID: s.ID},
	}
}
