//go:build linux && lab

package firewall

import (
	"slices"
	"strings"
	"testing"

	"github.com/peerline/peerline/pkg/labtest"
)

// TestNodeChangeInKernel: the node table changed in place, by Change's
// messages and by NodeChange's nft script, lists exactly as the table
// loaded whole from the text for the new peers (but for the order of the
// sets' elements, which nft lists as they were added), so a peer added or removed
// in place is the policy NodeRules states; a change meant for another
// table fails whole and leaves the table as it was.
func TestNodeChangeInKernel(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireTools(t, "nft")
	l := labtest.New(t)
	viaNetlink, viaScript, whole := loaderIn(host(t, l, "netlink")), loaderIn(host(t, l, "script")), loaderIn(host(t, l, "whole"))
	for _, noRewrite := range []bool{false, true} {
		node := func(peers ...int) Node {
			return Node{PhonePort: "eth0", Lines: []int{1, 2}, Peers: peers, VethPrefix: "plv", NoRewrite: noRewrite}
		}
		steps := []Node{node(), node(7), node(7, 9, 70), node(9, 70), node(70, 253), node(many(253)...), node(1, 2), node()}
		must(t, viaNetlink.Load("", steps[0]))
		must(t, viaScript.loadText("", steps[0].Rules()))
		for k := 1; k < len(steps); k++ {
			from, to := steps[k-1], steps[k]
			script, ok := NodeChange(from, to)
			if !ok {
				t.Fatalf("NodeChange(%v, %v) not a change of elements", from.Peers, to.Peers)
			}
			must(t, viaScript.loadText("", script))
			must(t, viaNetlink.Change("", from, to))
			must(t, whole.loadText("", to.Rules()))
			want, err := whole.List("")
			must(t, err)
			want = sortedElements(want)
			for _, c := range []struct {
				how string
				l   Loader
			}{{"over netlink", viaNetlink}, {"by nft script", viaScript}} {
				got, err := c.l.List("")
				must(t, err)
				if got = sortedElements(got); got != want {
					t.Errorf("no rewrite %v, peers %v: table changed in place %s =\n%s\nloaded whole =\n%s", noRewrite, describeRuleset(to), c.how, got, want)
				}
			}
		}
		// Peer 7 is gone: deleting it again fails, and adding 8 with it
		// does not happen either.
		for _, c := range []struct {
			how    string
			l      Loader
			change func() error
		}{
			{"over netlink", viaNetlink, func() error { return viaNetlink.Change("", node(7), node(8)) }},
			{"by nft script", viaScript, func() error { s, _ := NodeChange(node(7), node(8)); return viaScript.loadText("", s) }},
		} {
			before, err := c.l.List("")
			must(t, err)
			if err := c.change(); err == nil {
				t.Errorf("%s: a change deleting an element the table lacks succeeded", c.how)
			}
			after, err := c.l.List("")
			must(t, err)
			if after != before {
				t.Errorf("%s: a failed change altered the table:\n%s\nwas\n%s", c.how, after, before)
			}
			if strings.Contains(after, "plv8") {
				t.Errorf("%s: half a failed change landed:\n%s", c.how, after)
			}
		}
	}
}

// sortedElements is an nft listing with each set's elements in order: the
// kernel keeps them, and nft lists them, in the order they were added.
func sortedElements(listing string) string {
	var b strings.Builder
	for {
		start := strings.Index(listing, "elements = { ")
		if start < 0 {
			b.WriteString(listing)
			return b.String()
		}
		start += len("elements = { ")
		end := start + strings.Index(listing[start:], " }")
		elems := strings.Split(listing[start:end], ",")
		for k, e := range elems {
			elems[k] = strings.TrimSpace(e)
		}
		slices.Sort(elems)
		b.WriteString(listing[:start])
		b.WriteString(strings.Join(elems, ", "))
		listing = listing[end:]
	}
}
