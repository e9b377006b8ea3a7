package peerlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"

	"github.com/peerline/peerline/pkg/lab"
)

// Trio is three nodes on one Internet bridge, each paired with the other
// two: the smallest network where a SIP message can name a node that is
// neither its sender nor its receiver (a conference bridged on one phone, a
// call transferred to a third node).
type Trio struct {
	Lab     *lab.Lab
	Inet    lab.Segment
	A, B, C *Node
}

// Nodes returns A, B and C in that order.
func (t *Trio) Nodes() []*Node { return []*Node{t.A, t.B, t.C} }

// TrioOptions shape a Trio.
type TrioOptions struct {
	// Peerlined is the daemon binary to run on each Pi.
	Peerlined string
	// Index[x][y] is how node x numbers node y, with 0, 1, 2 for A, B, C.
	// The diagonal is unused. A zero matrix means DefaultTrioIndex.
	Index [3][3]int
	// Prefix starts the names the daemons create; A, B and C append a
	// letter. The default is derived from the process id.
	Prefix string
}

// DefaultTrioIndex numbers every pair differently from both ends and from
// every other pair, so that an address that crossed a tunnel unmapped shows
// up as a wrong node rather than as a right one by chance: A numbers B 7 and
// C 9, B numbers A 4 and C 5, C numbers A 3 and B 6.
var DefaultTrioIndex = [3][3]int{
	{0, 7, 9},
	{4, 0, 5},
	{3, 6, 0},
}

// trioWAN are the nodes' addresses on the Internet bridge.
var trioWAN = [3]netip.Addr{
	netip.MustParseAddr("198.51.100.1"),
	netip.MustParseAddr("198.51.100.2"),
	netip.MustParseAddr("198.51.100.3"),
}

// validTrioIndex checks that a node's indices are usable and tell its two
// peers apart.
func validTrioIndex(idx [3][3]int) error {
	for x := range 3 {
		seen := map[int]bool{}
		for y := range 3 {
			if x == y {
				continue
			}
			i := idx[x][y]
			if i < 1 || i > 253 {
				return fmt.Errorf("peerlab: node %c numbers node %c %d; want 1..253", 'A'+x, 'A'+y, i)
			}
			if seen[i] {
				return fmt.Errorf("peerlab: node %c numbers both its peers %d; give each its own index", 'A'+x, i)
			}
			seen[i] = true
		}
	}
	return nil
}

// BuildTrio creates the three nodes, pairs every two of them by writing
// each other's keys and endpoints into their configs (no NAT, no
// rendezvous) and starts the daemons; it returns once every tunnel has had
// a WireGuard handshake. Everything is registered with l, whose Close
// removes it.
func BuildTrio(ctx context.Context, l *lab.Lab, opts TrioOptions) (*Trio, error) {
	if opts.Peerlined == "" {
		return nil, errors.New("peerlab: no peerlined binary given")
	}
	if opts.Index == ([3][3]int{}) {
		opts.Index = DefaultTrioIndex
	}
	if err := validTrioIndex(opts.Index); err != nil {
		return nil, err
	}
	if opts.Prefix == "" {
		opts.Prefix = "pl" + strconv.FormatInt(int64(os.Getpid()), 36)
	}
	inet, err := l.Bridge("inet")
	if err != nil {
		return nil, err
	}
	t := &Trio{Lab: l, Inet: inet}
	nodes := make([]*Node, 3)
	for x, name := range []string{"A", "B", "C"} {
		nodes[x], err = newNode(l, onSegment(inet, trioWAN[x]), name, opts.Prefix+string(rune('a'+x)), opts.Peerlined, nil)
		if err != nil {
			return nil, err
		}
	}
	t.A, t.B, t.C = nodes[0], nodes[1], nodes[2]
	for x, from := range nodes {
		for y, to := range nodes {
			if x != y {
				pair(from, to, opts.Index[x][y], opts.Index[y][x])
			}
		}
	}
	for _, node := range nodes {
		if err := node.writeConfig(); err != nil {
			return nil, err
		}
		if err := node.Start(ctx); err != nil {
			return nil, err
		}
	}
	for _, node := range nodes {
		if _, err := node.WaitReady(ctx, daemonWait); err != nil {
			return nil, err
		}
	}
	for _, node := range nodes {
		if err := node.WaitConnected(ctx, daemonWait); err != nil {
			return nil, err
		}
	}
	for _, node := range nodes {
		if err := node.Lease(ctx); err != nil {
			return nil, err
		}
	}
	return t, nil
}
