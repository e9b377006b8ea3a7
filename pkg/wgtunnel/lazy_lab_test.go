//go:build linux && lab

package wgtunnel

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/wgmux"
)

// TestLazyTunnel: two tunnels (each in a namespace of its own, each on a
// socket mux on loopback) park when nothing is answered, answer `wg show`
// while parked, and the first datagram one side sends into its parked TUN
// wakes it and, by its handshake, the other, and arrives; both park again
// when the session is over, and their links go with Close.
func TestLazyTunnel(t *testing.T) {
	labtest.RequireRoot(t)
	defer func(c, n, i, s time.Duration) { parkCheck, parkNever, parkIdle, sessionLife = c, n, i, s }(parkCheck, parkNever, parkIdle, sessionLife)
	parkCheck, parkNever, parkIdle, sessionLife = 50*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond, 2*time.Second
	l := labtest.New(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("LAZY_DEBUG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	type side struct {
		host *lab.Host
		key  nodekey.Key
		mux  *wgmux.Mux
		addr netip.Addr
		name string
		tun  *Tunnel
	}
	var sides [2]*side
	for i := range sides {
		h, err := l.Host(fmt.Sprintf("lazy%d", i))
		if err != nil {
			t.Fatal(err)
		}
		k, err := nodekey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		m, err := wgmux.Listen("127.0.0.1:0", k, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		go m.Run(ctx)
		sides[i] = &side{host: h, key: k, mux: m, addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}),
			name: fmt.Sprintf("plz%d-%d", os.Getpid()%100000, i)}
	}
	for i, s := range sides {
		o := sides[1-i]
		tn, err := Start(Config{
			Name: s.name, MTU: 1380, PrivateKey: s.key, Bind: s.mux.Bind(o.key.Public()),
			Peer: Peer{PublicKey: o.key.Public(), Endpoint: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), o.mux.Port()),
				AllowedIPs: []netip.Prefix{netip.PrefixFrom(o.addr, 32)}, Keepalive: 25 * time.Second},
			InNamespace: func(_ string, fn func() error) error { return s.host.Do(fn) },
		}, log)
		if err != nil {
			t.Fatal(err)
		}
		s.tun = tn
		defer tn.Close()
		if tn.Parked() {
			t.Fatal("a tunnel is parked right after Start; want its device up until it proves idle")
		}
		for _, args := range [][]string{{"addr", "add", s.addr.String() + "/24", "dev", s.name}, {"link", "set", s.name, "up"}} {
			if err := s.host.IP(args...); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitParked := func(want bool, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for sides[0].tun.Parked() != want || sides[1].tun.Parked() != want {
			if time.Now().After(deadline) {
				t.Fatalf("after %v: parked %v and %v, want %v", within, sides[0].tun.Parked(), sides[1].tun.Parked(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitParked(true, 5*time.Second)

	// wg show's get, while parked: the peer with its endpoint.
	get := uapiGet(t, sides[0].name)
	for _, want := range []string{"public_key=" + sides[1].key.Public().Hex(), fmt.Sprintf("endpoint=127.0.0.1:%d", sides[1].mux.Port()), "allowed_ip=192.0.2.2/32", "errno=0"} {
		if !strings.Contains(get, want) {
			t.Errorf("UAPI get of a parked device lacks %q:\n%s", want, get)
		}
	}
	if !sides[0].tun.Parked() {
		t.Error("a UAPI get woke the parked device; want it answered from what the device last said")
	}

	// The first datagram into a parked tunnel wakes both ends and arrives.
	rc, err := sides[1].host.ListenPacket("udp4", "192.0.2.2:4000")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	sc, err := sides[0].host.ListenPacket("udp4", "192.0.2.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	start := time.Now()
	if _, err := sc.WriteTo([]byte("first"), &net.UDPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 4000}); err != nil {
		t.Fatal(err)
	}
	rc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, _, err := rc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "first" {
		t.Fatalf("the first datagram into a parked tunnel: %q, %v; want it delivered", buf[:n], err)
	}
	t.Logf("first datagram through two parked tunnels after %v", time.Since(start))
	st, err := sides[0].tun.Status()
	if err != nil || st.LastHandshake.IsZero() || st.TxBytes == 0 {
		t.Errorf("status after the first datagram = %+v, %v; want a handshake and bytes sent", st, err)
	}

	// With the session over and nothing coming in, both park again; the
	// byte counts go on from what the parked device had.
	waitParked(true, 10*time.Second)
	if again, _ := sides[0].tun.Status(); again.TxBytes < st.TxBytes || again.LastHandshake.IsZero() {
		t.Errorf("status after parking again = %+v, want at least %+v", again, st)
	}
	// And wake again for the next datagram.
	if _, err := sc.WriteTo([]byte("second"), &net.UDPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 4000}); err != nil {
		t.Fatal(err)
	}
	rc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := rc.ReadFrom(buf); err != nil || string(buf[:n]) != "second" {
		t.Fatalf("a datagram after parking again: %q, %v; want it delivered", buf[:n], err)
	}
	for _, s := range sides {
		s.tun.Close()
		if out, err := s.host.Run(ctx, "ip", "link", "show", s.name); err == nil {
			t.Errorf("link %s still there after Close: %s", s.name, out)
		}
		if _, err := os.Stat(filepath.Join("/var/run/wireguard", s.name+".sock")); !os.IsNotExist(err) {
			t.Errorf("UAPI socket of %s after Close: %v, want it gone", s.name, err)
		}
	}
}

// uapiGet asks the device's UAPI socket for its configuration, as wg show does.
func uapiGet(t *testing.T, name string) string {
	t.Helper()
	c, err := net.Dial("unix", filepath.Join("/var/run/wireguard", name+".sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("get=1\n\n")); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		b.WriteString(line)
		if err != nil || line == "\n" {
			return b.String()
		}
	}
}
