package wgtunnel

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn/bindtest"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/peerline/peerline/pkg/nodekey"
)

// TestStatusAsksOnlyAfterTraffic: Status asks the device (a UAPI get) while
// datagrams come and go and for settleTime after, and not while the
// tunnel is quiet; what the traffic changed (a handshake, the bytes) shows
// all the same.
func TestStatusAsksOnlyAfterTraffic(t *testing.T) {
	binds := bindtest.NewChannelBinds()
	var keys [2]nodekey.Key
	for i := range keys {
		var err error
		if keys[i], err = nodekey.Generate(); err != nil {
			t.Fatal(err)
		}
	}
	tun := &Tunnel{name: "pl0", peer: keys[1].Public()}
	var devs [2]*device.Device
	var tuns [2]*tuntest.ChannelTUN
	for i := range devs {
		tuns[i] = tuntest.NewChannelTUN()
		var bind = binds[i]
		if i == 0 {
			bind = countingBind{binds[0], &tun.traffic, &tun.data, &tun.readAfterSend}
		}
		devs[i] = device.NewDevice(tuns[i].TUN(), bind, device.NewLogger(device.LogLevelSilent, ""))
		t.Cleanup(devs[i].Close)
		cfg := fmt.Sprintf("private_key=%s\npublic_key=%s\nendpoint=127.0.0.1:%d\nallowed_ip=10.0.0.%d/32\n", keys[i].Hex(), keys[1-i].Public().Hex(), i+1, 2-i)
		if err := devs[i].IpcSet(cfg); err != nil {
			t.Fatal(err)
		}
		if err := devs[i].Up(); err != nil {
			t.Fatal(err)
		}
	}
	tun.dev = devs[0]
	status := func() Status {
		t.Helper()
		st, err := tun.Status()
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	// quiet checks that status asks nothing while no datagram moves. On a
	// loaded machine WireGuard's own keepalive after a handshake can come
	// late, inside the check: a round in which a datagram moved says
	// nothing and is tried again (a few times at most).
	quiet := func() {
		t.Helper()
		for try := 0; ; try++ {
			time.Sleep(settleTime + 100*time.Millisecond)
			status() // asks once more: the settle time since the last datagram has passed
			asked, moved := tun.askedAt, tun.traffic.Load()
			for range 5 {
				status()
			}
			if tun.askedAt == asked {
				return
			}
			if tun.traffic.Load() == moved || try == 4 {
				t.Fatalf("a quiet tunnel's device was asked again (%v, then %v)", asked, tun.askedAt)
			}
		}
	}
	status()
	quiet()
	if err := tun.Rehandshake(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for status().LastHandshake.IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("handshake not seen in Status 5 s after it was started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	quiet()
	rx := status().RxBytes
	// A packet from the peer's side: the bytes show.
	tuns[1].Outbound <- tuntest.Ping(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"))
	select {
	case <-tuns[0].Inbound:
	case <-time.After(5 * time.Second):
		t.Fatal("ping did not cross")
	}
	for deadline := time.Now().Add(5 * time.Second); status().RxBytes == rx; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("received bytes not seen in Status 5 s after a packet came")
		}
	}
	quiet()
}
