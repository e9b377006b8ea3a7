//go:build linux && lab

package ntpd

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/labtest"
)

// TestLabPhonePort runs the server in a "pi" namespace bound to its phone
// port: a phone on that port gets the time, a host on the pi's uplink gets
// nothing although the same address and port are reachable from it.
func TestLabPhonePort(t *testing.T) {
	l := labtest.New(t)
	pi, err := l.Host("pi")
	if err != nil {
		t.Fatal(err)
	}
	phone, err := l.Host("phone")
	if err != nil {
		t.Fatal(err)
	}
	up, err := l.Host("up")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Veth(pi, "eth0", phone, "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := l.Veth(pi, "wan0", up, "eth0"); err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		h         interface{ Addr(string, string) error }
		dev, cidr string
	}{
		{pi, "eth0", "10.0.1.2/30"}, {phone, "eth0", "10.0.1.1/30"},
		{pi, "wan0", "198.51.100.1/24"}, {up, "eth0", "198.51.100.2/24"},
	} {
		if err := a.h.Addr(a.dev, a.cidr); err != nil {
			t.Fatal(err)
		}
	}
	// The uplink host can reach the phone-port address through the pi.
	if err := up.Route("10.0.1.0/30", "via", "198.51.100.1"); err != nil {
		t.Fatal(err)
	}

	s, err := New(Options{
		Port:   "eth0",
		Log:    labtest.Logger(t),
		Synced: func() bool { return true },
		Listen: func(ifname string) (net.PacketConn, error) {
			var c net.PacketConn
			err := pi.Do(func() error {
				var err error
				c, err = ListenUDP(ifname)
				return err
			})
			return c, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10 s of cancel")
		}
	})

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
