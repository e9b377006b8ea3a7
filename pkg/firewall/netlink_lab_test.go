//go:build linux && lab

package firewall

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
)

// loaderIn is a Loader whose namespace is h's, whatever ns it is given.
func loaderIn(h *lab.Host) Loader {
	return Loader{Do: func(_ string, fn func() error) error { return h.Do(fn) }}
}

// rulesetVariants are every form the generator has: peers with and without
// the rewriter, without lines, with one line (a set of one address is a
// plain compare) and several, other indexes and link names; the node with
// 0, 1 and many peers, with and without phones.internet, the rewriter,
// lines.
func rulesetVariants() []Ruleset {
	var out []Ruleset
	for _, noRewrite := range []bool{false, true} {
		for _, lines := range [][]int{nil, {1}, {2, 1}, {1, 2, 3, 17, 254}} {
			for _, i := range []int{1, 7, 253} {
				out = append(out, Peer{Index: i, Tunnel: fmt.Sprintf("pl%d", i), ToPhones: "veth0", Lines: lines, NoRewrite: noRewrite})
			}
			for _, peers := range [][]int{nil, {7}, {9, 7, 70}, many(253)} {
				for _, internet := range []bool{false, true} {
					out = append(out, Node{PhonePort: "eth0", Lines: lines, Peers: peers, VethPrefix: "plv", Internet: internet, NoRewrite: noRewrite})
				}
			}
		}
	}
	out = append(out,
		Peer{Index: 42, Tunnel: "tun-peer-42", ToPhones: "to-node", Lines: []int{5}},
		Node{PhonePort: "enx0011223344", Lines: []int{5}, Peers: []int{1, 2}, VethPrefix: "pxv", Internet: true})
	return out
}

func describeRuleset(r Ruleset) string {
	if n, ok := r.(Node); ok && len(n.Peers) > 3 {
		n.Peers = n.Peers[:3]
		return fmt.Sprintf("%+v (and %d more peers)", n, len(r.(Node).Peers)-3)
	}
	return fmt.Sprintf("%+v", r)
}

// TestNetlinkMatchesText is the proof that loading over netlink is the same
// policy as the text: for every variant of the generator, the table loaded
// as messages in one namespace lists, in nft's words, exactly as the
// table loaded from the text with nft -f in another. Each load replaces
// the table of the variant before, as a reload does.
func TestNetlinkMatchesText(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireTools(t, "nft")
	l := labtest.New(t)
	viaNetlink, viaText := loaderIn(host(t, l, "netlink")), loaderIn(host(t, l, "text"))
	for _, r := range rulesetVariants() {
		must(t, viaText.loadText("", r.Rules()))
		if err := viaNetlink.Load("", r); err != nil {
			t.Fatalf("%s: %v", describeRuleset(r), err)
		}
		want, err := viaText.List("")
		must(t, err)
		got, err := viaNetlink.List("")
		must(t, err)
		if got != want {
			t.Errorf("%s: loaded over netlink, nft lists\n%s\nloaded from the text\n%s", describeRuleset(r), got, want)
		}
		// nft's listing hides the dependencies it adds (meta nfproto
		// before an IPv4 field): the expressions, as the kernel holds
		// them, are the same too.
		if got, want := exprs(t, viaNetlink), exprs(t, viaText); got != want {
			t.Errorf("%s: the kernel holds, loaded over netlink\n%s\nloaded from the text\n%s", describeRuleset(r), got, want)
		}
	}
}

// exprs prints every rule's expressions of peerline's table in l's
// namespace as the nftables library reads them back from the kernel.
func exprs(t *testing.T, l Loader) string {
	t.Helper()
	var b strings.Builder
	must(t, l.Do("", func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		table := &nftables.Table{Name: Table, Family: nftables.TableFamilyINet}
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
		if err != nil {
			return err
		}
		for _, ch := range chains {
			if ch.Table.Name != Table {
				continue
			}
			fmt.Fprintf(&b, "chain %s %v %v %v %v\n", ch.Name, ch.Type, deref(ch.Hooknum), deref(ch.Priority), deref(ch.Policy))
			rules, err := c.GetRules(table, ch)
			if err != nil {
				return err
			}
			for _, r := range rules {
				for _, e := range r.Exprs {
					fmt.Fprintf(&b, "\t%T%+v", e, e)
				}
				b.WriteString("\n")
			}
		}
		sets, err := c.GetSets(table)
		if err != nil {
			return err
		}
		for _, s := range sets {
			fmt.Fprintf(&b, "set %s anon %v const %v interval %v map %v concat %v key %v data %v\n", s.Name, s.Anonymous, s.Constant, s.Interval, s.IsMap, s.Concatenation, s.KeyType.Name, s.DataType.Name)
			elems, err := c.GetSetElements(s)
			if err != nil {
				return err
			}
			// A hash set lists in no particular order.
			var es []string
			for _, e := range elems {
				es = append(es, fmt.Sprintf("%x-%x:%x", e.Key, e.KeyEnd, e.Val))
			}
			slices.Sort(es)
			fmt.Fprintf(&b, "\t%s\n", strings.Join(es, " "))
		}
		return nil
	}))
	return b.String()
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestNetlinkLoadIsOneTransaction: a load or change the kernel refuses in
// part leaves the table as it was, whole; the errors say so and what to
// do.
func TestNetlinkLoadIsOneTransaction(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireTools(t, "nft")
	l := labtest.New(t)
	loader := loaderIn(host(t, l, "node"))
	node := func(peers ...int) Node {
		return Node{PhonePort: "eth0", Lines: []int{1, 2}, Peers: peers, VethPrefix: "plv"}
	}
	must(t, loader.Load("", node(7, 9)))
	before, err := loader.List("")
	must(t, err)
	unchanged := func(what string) {
		t.Helper()
		after, err := loader.List("")
		must(t, err)
		if after != before {
			t.Errorf("%s altered the table:\n%s\nwas\n%s", what, after, before)
		}
	}

	// A whole new table whose last message the kernel refuses (a rule
	// for a chain that is not there): none of it lands.
	err = loader.sendBatch("", func(b *nl) {
		b.c.AddTable(b.t)
		b.c.DelTable(b.t)
		b.c.AddTable(b.t)
		b.node(node(1, 2, 3))
		b.rule(&nftables.Chain{Name: "missing", Table: b.t}, verdict(expr.VerdictAccept))
	})
	if err == nil {
		t.Fatal("a batch with a rule for a missing chain loaded")
	}
	t.Logf("refused load: %v", err)
	unchanged("a refused load")

	// The table holds 7 and 9: a change that removes 8 and adds 10 fails
	// at 8, and 10 does not land.
	err = loader.Change("", node(8), node(10))
	if err == nil {
		t.Fatal("a change deleting an element the table lacks succeeded")
	}
	t.Logf("refused change: %v", err)
	if !strings.Contains(err.Error(), "unchanged") || !strings.Contains(err.Error(), "load it whole") {
		t.Errorf("Change error %q does not say the table is unchanged and what to do", err)
	}
	unchanged("a refused change")

	// Delete, then Delete again: no table is no error, and List says so.
	must(t, loader.Delete(""))
	must(t, loader.Delete(""))
	if _, err := loader.List(""); err != ErrNoTable {
		t.Errorf("List after Delete = %v, want ErrNoTable", err)
	}
}
