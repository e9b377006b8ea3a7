package supervisor

import (
	"testing"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/nodekey"
)

// A peer renamed by its owner (console or `peerline rename`), or that
// announces other lines or labels, keeps its tunnel; a new key does not.
func TestSameTunnelIgnoresNames(t *testing.T) {
	k1, _ := nodekey.Generate()
	k2, _ := nodekey.Generate()
	a := config.Peer{Index: 7, Name: "bob", PublicKey: k1.Public(), Keepalive: 25, Lines: []int{1}}
	b := a
	b.Name, b.Renamed, b.Lines = "Bob's Pi", true, []int{1, 2}
	b.LineLabels = map[int]string{2: "kitchen"} // announced by the peer
	if !sameTunnel(a, b) {
		t.Error("renaming a peer needs a new tunnel")
	}
	b.PublicKey = k2.Public()
	if sameTunnel(a, b) {
		t.Error("a new key keeps the old tunnel")
	}
}
