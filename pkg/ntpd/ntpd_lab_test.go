//go:build linux && lab

package ntpd

import (
	"net"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
)

// TestLabPhonePort runs the server in a "pi" namespace bound to its phone
// port: a phone on that port gets the time, a host on the pi's uplink gets
// nothing although the same address and port are reachable from it.
func TestLabPhonePort(t *testing.T) {
	pp := labtest.NewPhonePort(t, labtest.New(t))
	phone, up := pp.Phone, pp.Up
	s, err := New(Options{
		Port:   "eth0",
		Log:    labtest.Logger(t),
		Synced: func() bool { return true },
		Listen: func(ifname string) (net.PacketConn, error) {
			return lab.In(pp.Pi, func() (net.PacketConn, error) { return ListenUDP(ifname) })
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	labtest.Serve(t, s.Run)

	pc, err := phone.ListenPacket("udp4", "10.0.1.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	srv := &net.UDPAddr{IP: net.IPv4(10, 0, 1, 2), Port: 123}
	// The server goroutine may not be reading yet: retry a few times, as
	// phones do.
	var resp []byte
	var t1, t4 time.Time
	for range 5 {
		t1 = time.Now()
		resp, err = query(pc, srv, t1, time.Second)
		t4 = time.Now()
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("phone got no NTP answer from %v: %v", srv, err)
	}
	if len(resp) != headerLen || resp[0]>>6 != leapNone || resp[0]&7 != modeServer || resp[1] != 2 {
		t.Fatalf("answer %x: want 48 bytes, LI 0, mode 4, stratum 2", resp)
	}
	if off := offset(resp, t1, t4); off.Abs() >= time.Second {
		t.Errorf("phone's offset from the pi = %v, want < 1 s (same kernel clock)", off)
	}

	uc, err := up.ListenPacket("udp4", "198.51.100.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	for _, addr := range []*net.UDPAddr{srv, {IP: net.IPv4(198, 51, 100, 1), Port: 123}} {
		if resp, err := query(uc, addr, time.Now(), time.Second); err == nil {
			t.Errorf("uplink host got an NTP answer from %v (%x): the socket must only serve the phone port", addr, resp)
		}
	}
}
