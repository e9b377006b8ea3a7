package firewall

import (
	"strings"
	"testing"
)

// TestNetlinkRefusesLongNames: an interface name the kernel would cut to
// 15 bytes (and so match another interface) is refused before anything is
// sent, as nft refuses it. (The batch is refused before the connection is
// used, so this runs without root and sends nothing.)
func TestNetlinkRefusesLongNames(t *testing.T) {
	l := Loader{Do: inPlace}
	for _, r := range []Ruleset{
		Peer{Index: 7, Tunnel: "a-tunnel-name-too-long", ToPhones: "veth0", Lines: []int{1}},
		Node{PhonePort: "eth0", VethPrefix: "a-long-prefix-v", Peers: []int{7}},
	} {
		err := l.Load("", r)
		if err == nil || !strings.Contains(err.Error(), "longer than 15 bytes") {
			t.Errorf("Load(%+v) = %v, want a refused name", r, err)
		}
	}
}
