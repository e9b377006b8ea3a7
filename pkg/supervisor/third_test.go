package supervisor

import (
	"testing"

	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rewrite"
)

// TestNameAgain: the background naming leaves every tunnel named for the
// newest set of keys, whatever became of an older batch still running.
func TestNameAgain(t *testing.T) {
	s := &Supervisor{key: testKey}
	keys := map[int]nodekey.Key{}
	var jobs []thirdJob
	for i := 1; i <= 40; i++ {
		k, _ := nodekey.Generate()
		keys[i] = k.Public()
		jobs = append(jobs, thirdJob{rewrite.Wrap(tuntest.NewChannelTUN().TUN(), uint8(i), nil), k.Public()})
	}
	named := func(d *rewrite.Device, i int) bool {
		_, ok := d.ThirdNodes().WireTag([4]byte{10, byte(i), 1, 1})
		return ok
	}
	with := make(map[int]nodekey.Key, len(keys)+1)
	for i, k := range keys {
		with[i] = k
	}
	k, _ := nodekey.Generate()
	with[41] = k.Public()
	for round := range 20 {
		// A batch for 41 peers, superseded at once by one for 40.
		s.nameAgain(jobs, with)
		s.nameAgain(jobs, keys)
		s.third.wg.Wait()
		for n, j := range jobs {
			if named(j.dev, 41) {
				t.Fatalf("round %d: tunnel %d names peer 41, which the newest keys lack", round, n+1)
			}
			if other := (n+1)%40 + 1; !named(j.dev, other) {
				t.Fatalf("round %d: tunnel %d does not name peer %d", round, n+1, other)
			}
		}
	}
	s.nameAgain(jobs, with)
	s.stopNaming()
	before := jobs[len(jobs)-1].dev.ThirdNodes()
	s.third.wg.Wait()
	if jobs[len(jobs)-1].dev.ThirdNodes() != before {
		t.Error("naming went on after stopNaming")
	}
}
