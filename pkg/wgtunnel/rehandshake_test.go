package wgtunnel

import (
	"fmt"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn/bindtest"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/peerline/peerline/pkg/nodekey"
)

// TestRehandshake: on two wireguard-go devices joined by channel binds,
// Rehandshake completes a handshake at once, with no packet to send; on a
// device without the peer it says so.
func TestRehandshake(t *testing.T) {
	binds := bindtest.NewChannelBinds()
	var keys [2]nodekey.Key
	var devs [2]*device.Device
	for i := range keys {
		var err error
		if keys[i], err = nodekey.Generate(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range devs {
		devs[i] = device.NewDevice(tuntest.NewChannelTUN().TUN(), binds[i], device.NewLogger(device.LogLevelSilent, ""))
		t.Cleanup(devs[i].Close)
		// Channel bind i sends to endpoint port i+1.
		cfg := fmt.Sprintf("private_key=%s\npublic_key=%s\nendpoint=127.0.0.1:%d\nallowed_ip=10.0.0.%d/32\n", keys[i].Hex(), keys[1-i].Public().Hex(), i+1, 2-i)
		if err := devs[i].IpcSet(cfg); err != nil {
			t.Fatal(err)
		}
		if err := devs[i].Up(); err != nil {
			t.Fatal(err)
		}
	}
	status := func(d *device.Device) Status {
		s, err := d.IpcGet()
		if err != nil {
			t.Fatal(err)
		}
		return parseStatus(s)
	}
	if st := status(devs[0]); !st.LastHandshake.IsZero() {
		t.Fatalf("a handshake before any was started: %+v", st)
	}
	tun := &Tunnel{name: "pl0", dev: devs[0], peer: keys[1].Public()}
	if err := tun.Rehandshake(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for status(devs[0]).LastHandshake.IsZero() || status(devs[1]).LastHandshake.IsZero() {
		if time.Now().After(deadline) {
			t.Fatalf("no handshake 5 s after Rehandshake: %+v, %+v", status(devs[0]), status(devs[1]))
		}
		time.Sleep(10 * time.Millisecond)
	}
	other, err := nodekey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if err := (&Tunnel{name: "pl1", dev: devs[0], peer: other.Public()}).Rehandshake(); err == nil {
		t.Error("Rehandshake towards a peer the device does not have: no error")
	}
}
