package supervisor

import (
	"maps"
	"testing"
	"testing/synctest"
	"time"

	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/peerpath"
	"github.com/peerline/peerline/pkg/rewrite"
)

// TestPushPeerStatesOnChange: the rewriters are told their peer's state
// when it changes, when a startup grace ends, and when a rewriter is new;
// with nothing changed, the 100 ms ticks tell nobody anything.
func TestPushPeerStatesOnChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &Supervisor{peers: map[int]*peer{}}
		keys := map[int]nodekey.Key{}
		for i := 1; i <= 3; i++ {
			k, _ := nodekey.Generate()
			keys[i] = k.Public()
			s.peers[i] = &peer{cfg: config.Peer{Index: i, PublicKey: k.Public()}, tunnelAt: time.Now(),
				rewrite: rewrite.Wrap(tuntest.NewChannelTUN().TUN(), uint8(i), nil)}
		}
		st := map[nodekey.Key]peerpath.Status{
			keys[1]: {Online: true, Path: peerpath.PathDirect},
			keys[2]: {Reason: "offline: not introduced by any rendezvous server yet"},
			keys[3]: {Reason: "offline: not answering", Silent: true},
		}
		online := func(i int) bool { return s.peers[i].rewrite.PeerOnline() }
		push := func(st map[nodekey.Key]peerpath.Status, want int, why string) {
			t.Helper()
			if got := s.pushPeerStates(st, time.Now()); got != want {
				t.Errorf("%s: %d rewriters told, want %d", why, got, want)
			}
		}
		push(st, 3, "first")
		if !online(1) || !online(2) || online(3) {
			t.Errorf("online = %v %v %v, want true, true (in its startup grace), false (silent)", online(1), online(2), online(3))
		}
		for range 10 {
			time.Sleep(100 * time.Millisecond)
			push(st, 0, "a tick in the grace, nothing changed")
		}
		time.Sleep(startupGrace)
		push(st, 1, "the grace ended")
		if online(2) {
			t.Error("peer 2 still online after its startup grace")
		}
		for range 50 {
			time.Sleep(100 * time.Millisecond)
			push(st, 0, "a tick, nothing changed")
		}
		push(maps.Clone(st), 0, "a new map saying the same")
		next := maps.Clone(st)
		next[keys[1]] = peerpath.Status{Reason: "offline: the peer shut down", Bye: true}
		push(next, 1, "peer 1 said bye")
		if online(1) {
			t.Error("peer 1 online after it said bye")
		}
		s.peers[3].rewrite = rewrite.Wrap(tuntest.NewChannelTUN().TUN(), 3, nil)
		push(next, 1, "peer 3's tunnel made again")
		if online(3) {
			t.Error("peer 3's new rewriter not told it is offline")
		}
		push(next, 0, "nothing changed")
	})
}
