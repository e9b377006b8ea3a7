//go:build linux && lab

package devsock

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
)

// A socket bound to the phone port answers there and never on the other
// interface, even for a packet addressed to the same host.
func TestOnlyOnDevice(t *testing.T) {
	pp := labtest.NewPhonePort(t, labtest.New(t))
	pc, err := lab.In(pp.Pi, func() (net.PacketConn, error) {
		return ListenPacket(context.Background(), "udp4", ":9999", "eth0")
	})
	if err != nil {
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
	if !ask(pp.Phone, "10.0.1.2:9999") {
		t.Error("the phone got no answer on the phone port")
	}
	if ask(pp.Up, "198.51.100.1:9999") {
		t.Error("the uplink got an answer from a socket bound to the phone port")
	}
}
