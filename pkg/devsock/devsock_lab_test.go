//go:build linux && lab

package devsock

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/labtest"
)

// A socket bound to the phone port answers there and never on the other
// interface, even for a packet addressed to the same host.
func TestOnlyOnDevice(t *testing.T) {
	l := labtest.New(t)
	pi, err := l.Host("pi")
	if err != nil {
		t.Fatal(err)
	}
	phone, err := l.Host("phone")
	if err != nil {
		t.Fatal(err)
	}
	uplink, err := l.Host("uplink")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Veth(pi, "eth0", phone, "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := l.Veth(pi, "wan", uplink, "eth0"); err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		h          func(string, string) error
		ifname, ip string
	}{
		{pi.Addr, "eth0", "192.0.2.2/30"}, {phone.Addr, "eth0", "192.0.2.1/30"},
		{pi.Addr, "wan", "198.51.100.2/30"}, {uplink.Addr, "eth0", "198.51.100.1/30"},
	} {
		if err := a.h(a.ifname, a.ip); err != nil {
			t.Fatal(err)
		}
	}
	var pc net.PacketConn
	if err := pi.Do(func() error {
		var err error
		pc, err = ListenPacket(context.Background(), "udp4", ":9999", "eth0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	ask := func(h interface {
		Dial(context.Context, string, string) (net.Conn, error)
	}, to string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := h.Dial(ctx, "udp4", to)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		c.Write([]byte("ping"))
		buf := make([]byte, 8)
		n, err := c.Read(buf)
		return err == nil && string(buf[:n]) == "ping"
	}
	if !ask(phone, "192.0.2.2:9999") {
		t.Error("the phone got no answer on the phone port")
	}
	if ask(uplink, "198.51.100.2:9999") {
		t.Error("the uplink got an answer from a socket bound to the phone port")
	}
}
