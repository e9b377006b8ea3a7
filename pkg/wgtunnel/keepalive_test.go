package wgtunnel

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn/bindtest"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/peerline/peerline/pkg/nodekey"
)

func TestKeepaliveWanted(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		wanted bool
		sinceD time.Duration // since the last data packet
		want   bool
	}{
		{"path manager did not ask", false, 0, false},
		{"data just now", true, 0, true},
		{"a pause in a call", true, keepaliveIdle - time.Second, true},
		{"idle for keepaliveIdle", true, keepaliveIdle, false},
		{"idle for long", true, time.Hour, false},
		{"not asked, idle", false, time.Hour, false},
	}
	for _, tt := range tests {
		if got := keepaliveWanted(t0.Add(tt.sinceD), tt.wanted, t0); got != tt.want {
			t.Errorf("%s: keepaliveWanted(+%v, %v) = %v, want %v", tt.name, tt.sinceD, tt.wanted, got, tt.want)
		}
	}
}

func TestIsData(t *testing.T) {
	msg := func(typ byte, n int) []byte {
		b := make([]byte, n)
		b[0] = typ
		return b
	}
	tests := []struct {
		name string
		b    []byte
		want bool
	}{
		{"handshake initiation", msg(1, 148), false},
		{"handshake response", msg(2, 92), false},
		{"cookie reply", msg(3, 64), false},
		{"keepalive", msg(4, 32), false},
		{"smallest data (a 16-byte padded packet)", msg(4, 48), true},
		{"media", msg(4, 232), true},
		{"empty", nil, false},
		{"short transport header", msg(4, 3), false},
		{"not WireGuard's (a probe)", append([]byte{4, 1, 0, 0}, make([]byte, 60)...), false},
	}
	for _, tt := range tests {
		if got := isData(tt.b); got != tt.want {
			t.Errorf("%s: isData(% x…) = %v, want %v", tt.name, tt.b[:min(len(tt.b), 4)], got, tt.want)
		}
	}
}

// TestKeepaliveFollowsData: over two real wireguard-go devices on channel
// binds, the tunnel counts packets as data and not handshakes or
// keepalives, and keepaliveLocked turns the device's persistent keepalive
// off after keepaliveIdle without data and on again with the next packet.
func TestKeepaliveFollowsData(t *testing.T) {
	binds := bindtest.NewChannelBinds()
	var keys [2]nodekey.Key
	for i := range keys {
		var err error
		if keys[i], err = nodekey.Generate(); err != nil {
			t.Fatal(err)
		}
	}
	tun := &Tunnel{name: "pl0", log: slog.New(slog.DiscardHandler), peer: keys[1].Public(), keepalive: 25 * time.Second}
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
	keepalive := func() string {
		t.Helper()
		s, err := devs[0].IpcGet()
		if err != nil {
			t.Fatal(err)
		}
		return uapiValue(s, "persistent_keepalive_interval")
	}

	// The path manager asks for the keepalive: on, and a handshake.
	tun.keepaliveOn = true
	if err := tun.StartKeepalive(); err != nil {
		t.Fatal(err)
	}
	if got := keepalive(); got != "25" {
		t.Fatalf("keepalive after StartKeepalive = %q, want 25", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for st, _ := tun.Status(); st.LastHandshake.IsZero(); st, _ = tun.Status() {
		if time.Now().After(deadline) {
			t.Fatal("no handshake 5 s after StartKeepalive")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the first keepalive's way back
	if n := tun.data.Load(); n != 0 {
		t.Fatalf("data counted after a handshake and a keepalive = %d, want 0", n)
	}
	// More keepalives: still no data.
	devs[0].LookupPeer(device.NoisePublicKey(keys[1].Public())).SendKeepalive()
	devs[1].LookupPeer(device.NoisePublicKey(keys[0].Public())).SendKeepalive()
	time.Sleep(200 * time.Millisecond)
	if n := tun.data.Load(); n != 0 {
		t.Fatalf("data counted after keepalives both ways = %d, want 0", n)
	}

	// Idle past keepaliveIdle: off.
	now := time.Now()
	tun.keepaliveLocked(now.Add(keepaliveIdle))
	if got := keepalive(); got != "0" || tun.keepaliveRuns {
		t.Fatalf("keepalive after keepaliveIdle without data = %q (runs %v), want 0", got, tun.keepaliveRuns)
	}
	// Woken by its peer, its answer not out yet: a check that would turn
	// the keepalive on leaves it off (an initiation of ours would cross
	// the peer's), and turns it on once the answer went out.
	tun.readAfterSend.Store(&view{})
	tun.dataAt = now
	tun.keepaliveLocked(now)
	if got := keepalive(); got != "0" || tun.keepaliveRuns {
		t.Fatalf("keepalive before a peer-woken device's answer = %q (runs %v), want 0", got, tun.keepaliveRuns)
	}
	tun.readAfterSend.Store(nil)
	tun.keepaliveLocked(now)
	if got := keepalive(); got != "25" || !tun.keepaliveRuns {
		t.Fatalf("keepalive after the answer = %q (runs %v), want 25", got, tun.keepaliveRuns)
	}
	tun.keepaliveLocked(now.Add(keepaliveIdle))
	if got := keepalive(); got != "0" {
		t.Fatalf("keepalive after keepaliveIdle without data = %q, want 0", got)
	}
	// A ping from the peer's side: data, and the keepalive is on again.
	tuns[1].Outbound <- tuntest.Ping(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"))
	select {
	case <-tuns[0].Inbound:
	case <-time.After(5 * time.Second):
		t.Fatal("ping did not cross")
	}
	if n := tun.data.Load(); n != 1 {
		t.Fatalf("data counted after one ping in = %d, want 1", n)
	}
	later := now.Add(keepaliveIdle + time.Second)
	tun.keepaliveLocked(later)
	if got := keepalive(); got != "25" || !tun.keepaliveRuns {
		t.Fatalf("keepalive after a data packet = %q (runs %v), want 25", got, tun.keepaliveRuns)
	}
	// And a ping out counts too.
	tuns[0].Outbound <- tuntest.Ping(netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.1"))
	select {
	case <-tuns[1].Inbound:
	case <-time.After(5 * time.Second):
		t.Fatal("ping did not cross")
	}
	if n := tun.data.Load(); n != 2 {
		t.Fatalf("data counted after one ping out = %d, want 2", n)
	}
	tun.keepaliveLocked(later.Add(keepaliveIdle - time.Second))
	if got := keepalive(); got != "25" {
		t.Fatalf("keepalive within keepaliveIdle of the last data = %q, want 25", got)
	}
	if !strings.Contains(tun.parkedGetLocked(), "persistent_keepalive_interval=0\n") {
		t.Error("a parked device's UAPI get shows a keepalive; it sends none")
	}
}
