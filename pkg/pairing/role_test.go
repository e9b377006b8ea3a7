package pairing

import (
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
)

// TestFirstHandshakeRole: the joiner starts the first handshake and the
// inviter waits, both only for a while after pairing; then, and for a
// peer never paired by invite here, the order of the keys decides.
func TestFirstHandshakeRole(t *testing.T) {
	pr := &Pairing{firstHandshake: map[nodekey.Key]firstRole{}}
	inviter, joiner, other := nodekey.Key{1}, nodekey.Key{2}, nodekey.Key{3}
	pr.setFirstRole(inviter, true) // we joined the inviter
	pr.setFirstRole(joiner, false) // we invited the joiner
	for _, tt := range []struct {
		name             string
		peer             nodekey.Key
		initiate, decide bool
	}{
		{"we joined", inviter, true, true},
		{"we invited", joiner, false, true},
		{"never paired by invite here", other, false, false},
	} {
		if i, d := pr.Initiates(tt.peer); i != tt.initiate || d != tt.decide {
			t.Errorf("%s: initiates = %v, %v; want %v, %v", tt.name, i, d, tt.initiate, tt.decide)
		}
	}
	pr.firstHandshake[inviter] = firstRole{initiate: true, until: time.Now().Add(-time.Second)}
	if _, d := pr.Initiates(inviter); d {
		t.Error("the joiner's role outlived firstRoleFor")
	}
	if _, kept := pr.firstHandshake[inviter]; kept {
		t.Error("an expired role was kept")
	}
}
