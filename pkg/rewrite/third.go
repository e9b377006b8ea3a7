package rewrite

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/numplan"
)

// ThirdNodes is how one tunnel names the nodes other than its two ends
// (sipmsg.Third), so that a blind transfer to a third node's phone works:
// the Refer-To that one phone writes in its node's numbering reaches the
// other phone in the other node's numbering.
//
// The two ends never exchange their lists of peers. Each derives a node's
// tag from the node's public key and the tunnel's two public keys, so both
// ends of a tunnel compute the same tag for a node they both know, an end
// that does not know the node cannot turn the tag back into anything, and a
// tag means nothing on any other tunnel. A Device without ThirdNodes (or a
// node it does not list) passes third nodes' literals unchanged, as before.
type ThirdNodes struct {
	// tag and named are indexed by this node's index for the node.
	tag   [256]uint64
	named [256]bool
	node  map[uint64]uint8
}

// thirdDomain separates these tags from every other use of the keys.
const thirdDomain = "peerline third node v1"

// NewThirdNodes returns the names of the tunnel between this node (public
// key self) and peer, for the other nodes this node knows, by its index
// for them. peer itself and indices outside numplan's node range are left
// out.
func NewThirdNodes(self, peer nodekey.Key, nodes map[int]nodekey.Key) *ThirdNodes {
	t := &ThirdNodes{node: make(map[uint64]uint8, len(nodes))}
	lo, hi := self, peer
	if string(hi[:]) < string(lo[:]) {
		lo, hi = hi, lo
	}
	for i, k := range nodes {
		if !numplan.ValidNode(i) || k == peer || k == self {
			continue
		}
		h := sha256.New()
		h.Write([]byte(thirdDomain))
		h.Write(lo[:])
		h.Write(hi[:])
		h.Write(k[:])
		var sum [sha256.Size]byte
		tag := binary.BigEndian.Uint64(h.Sum(sum[:0]))
		t.tag[i], t.named[i] = tag, true
		t.node[tag] = uint8(i)
	}
	return t
}

// WireTag implements sipmsg.Third.
func (t *ThirdNodes) WireTag(a [4]byte) (uint64, bool) {
	if t == nil || a[0] != 10 || !t.named[a[1]] {
		return 0, false
	}
	return t.tag[a[1]], true
}

// LocalNode implements sipmsg.Third.
func (t *ThirdNodes) LocalNode(tag uint64) (uint8, bool) {
	if t == nil {
		return 0, false
	}
	i, ok := t.node[tag]
	return i, ok
}

// SetThirdNodes sets how the tunnel names third nodes; the daemon calls it
// whenever its set of peers changes. nil names none.
func (d *Device) SetThirdNodes(t *ThirdNodes) { d.third.Store(t) }

// ThirdNodes returns what SetThirdNodes last set, nil for none.
func (d *Device) ThirdNodes() *ThirdNodes { return d.third.Load() }
