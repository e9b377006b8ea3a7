package provision

import (
	"net"
	"testing"
)

func TestAuthorize(t *testing.T) {
	other := mustMAC("02:00:00:00:00:66")
	own := request{kind: kindConfig, vendor: Yealink, mac: ylMAC}
	foreign := request{kind: kindConfig, vendor: Grandstream, mac: gsMAC}
	phonebook := request{kind: kindPhonebook, vendor: Yealink}
	common := request{kind: kindCommon, vendor: Yealink}
	tests := []struct {
		name     string
		req      request
		lease    net.HardwareAddr
		leased   bool
		neighbor net.HardwareAddr
		want     verdict
	}{
		{"phone, own file", own, ylMAC, true, ylMAC, allow},
		{"phone, phonebook", phonebook, ylMAC, true, ylMAC, allow},
		{"phone, common file", common, ylMAC, true, ylMAC, allow},
		{"phone, another phone's file", foreign, ylMAC, true, ylMAC, refuseOtherFile},
		{"no lease", own, nil, false, ylMAC, refuseNoLease},
		{"no lease, no neighbour", phonebook, nil, false, nil, refuseNoLease},
		{"impostor with the phone's address", own, ylMAC, true, other, refuseNeighborMAC},
		{"impostor, phonebook", phonebook, ylMAC, true, other, refuseNeighborMAC},
		{"impostor asking for its own MAC's name", request{kind: kindConfig, vendor: Yealink, mac: other}, ylMAC, true, other, refuseNeighborMAC},
		{"no neighbour entry", own, ylMAC, true, nil, refuseNoNeighbor},
		{"empty neighbour address", own, ylMAC, true, net.HardwareAddr{}, refuseNoNeighbor},
		{"neighbour address of another length", own, ylMAC, true, append(net.HardwareAddr{}, ylMAC[:5]...), refuseNeighborMAC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := authorize(tt.req, tt.lease, tt.leased, tt.neighbor); got != tt.want {
				t.Errorf("authorize(%v, lease %v %v, neighbour %v) = %v, want %v", tt.req.kind, tt.lease, tt.leased, tt.neighbor, got, tt.want)
			}
		})
	}
}
