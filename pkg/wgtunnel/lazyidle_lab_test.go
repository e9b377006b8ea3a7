//go:build linux && lab

package wgtunnel

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/wgmux"
)

// TestLazyIdlePeer: two tunnels whose peer is online (the path manager
// turned the keepalive on, as it does once it knows a path) carry data,
// then nothing: the keepalive goes off after keepaliveIdle, the session
// expires, and both devices park. A datagram sent then into either side's
// parked TUN, or into both at once, wakes both ends and arrives, several
// rounds each; the time from sending to arriving is logged (the first
// packet of a call to an idle peer). While parked, `wg show`'s get lists
// the peer with its endpoint and last handshake, and no keepalive.
//
// The timers are shortened (the variables of lazy.go); WireGuard's own
// session life inside wireguard-go is not, so parking here drops a
// session both ends still hold, which is the harder case for waking.
func TestLazyIdlePeer(t *testing.T) {
	labtest.RequireRoot(t)
	defer func(c, n, i, s, k time.Duration) {
		parkCheck, parkNever, parkIdle, sessionLife, keepaliveIdle = c, n, i, s, k
	}(parkCheck, parkNever, parkIdle, sessionLife, keepaliveIdle)
	parkCheck, parkNever, parkIdle, sessionLife, keepaliveIdle = 50*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond, 4*time.Second, time.Second
	l := labtest.New(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
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
		conn net.PacketConn
	}
	var sides [2]*side
	for i := range sides {
		h, err := l.Host(fmt.Sprintf("idle%d", i))
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
			name: fmt.Sprintf("pli%d-%d", os.Getpid()%100000, i)}
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
		for _, args := range [][]string{{"addr", "add", s.addr.String() + "/24", "dev", s.name}, {"link", "set", s.name, "up"}} {
			if err := s.host.IP(args...); err != nil {
				t.Fatal(err)
			}
		}
		c, err := s.host.ListenPacket("udp4", netip.AddrPortFrom(s.addr, 4000).String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s.conn = c
	}
	// The path manager finds the path: the initiating end first.
	first := 0
	if !initiatesFirst(sides[0].key.Public(), sides[1].key.Public()) {
		first = 1
	}
	for _, i := range []int{first, 1 - first} {
		if err := sides[i].tun.StartKeepalive(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// send writes msg from side i to the other's socket; recv reads it
	// there. Each returns false on failure, logging why.
	send := func(i int, msg string) {
		t.Helper()
		to := &net.UDPAddr{IP: sides[1-i].addr.AsSlice(), Port: 4000}
		if _, err := sides[i].conn.WriteTo([]byte(msg), to); err != nil {
			t.Fatal(err)
		}
	}
	recv := func(i int, want string) {
		t.Helper()
		buf := make([]byte, 64)
		sides[i].conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			n, _, err := sides[i].conn.ReadFrom(buf)
			if err != nil {
				t.Fatalf("side %d waiting for %q: %v", i, want, err)
			}
			if string(buf[:n]) == want {
				return
			}
		}
	}
	keepaliveOf := func(i int) string {
		t.Helper()
		sides[i].tun.mu.Lock()
		defer sides[i].tun.mu.Unlock()
		if sides[i].tun.dev == nil {
			return "parked"
		}
		s, err := sides[i].tun.dev.IpcGet()
		if err != nil {
			t.Fatal(err)
		}
		return uapiValue(s, "persistent_keepalive_interval")
	}
	waitFor := func(what string, within time.Duration, ok func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for !ok() {
			if time.Since(start) > within {
				t.Fatalf("%s: not after %v (keepalive %s and %s)", what, within, keepaliveOf(0), keepaliveOf(1))
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(start)
	}
	bothParked := func() bool { return sides[0].tun.Parked() && sides[1].tun.Parked() }

	// A call's worth of data: the keepalive stays on while it flows.
	for k := range 10 {
		send(k%2, fmt.Sprint("data", k))
		recv(1-k%2, fmt.Sprint("data", k))
		time.Sleep(100 * time.Millisecond)
	}
	for i := range sides {
		if got := keepaliveOf(i); got != "25" {
			t.Errorf("side %d's keepalive while data flows = %s, want 25", i, got)
		}
	}
	// Idle: the keepalive goes off, then both park.
	off := waitFor("keepalive off at both ends, devices awake", 5*time.Second, func() bool { return keepaliveOf(0) == "0" && keepaliveOf(1) == "0" })
	parked := waitFor("both ends parked", 10*time.Second, bothParked)
	t.Logf("idle: keepalive off after %v, both parked %v later", off.Round(10*time.Millisecond), parked.Round(10*time.Millisecond))
	get := uapiGet(t, sides[0].name)
	for _, want := range []string{fmt.Sprintf("endpoint=127.0.0.1:%d", sides[1].mux.Port()), "persistent_keepalive_interval=0\n"} {
		if !strings.Contains(get, want) {
			t.Errorf("UAPI get of a parked idle device lacks %q:\n%s", want, get)
		}
	}
	if strings.Contains(get, "last_handshake_time_sec=0\n") {
		t.Errorf("UAPI get of a parked idle device shows no handshake:\n%s", get)
	}

	const rounds = 4
	times := map[string][]time.Duration{}
	for r := range rounds {
		for _, from := range []string{"A", "B", "both"} {
			waitFor("both ends parked before round "+from, 10*time.Second, bothParked)
			msg := fmt.Sprintf("%s-%d", from, r)
			start := time.Now()
			switch from {
			case "A":
				send(0, msg)
				recv(1, msg)
			case "B":
				send(1, msg)
				recv(0, msg)
			case "both":
				send(0, msg)
				send(1, msg)
				recv(1, msg)
				recv(0, msg)
			}
			times[from] = append(times[from], time.Since(start))
			// The answer, as a phone's would come: both ways work.
			send(1, msg+"-back")
			recv(0, msg+"-back")
		}
	}
	for _, from := range []string{"A", "B", "both"} {
		d := times[from]
		slices.Sort(d)
		t.Logf("first datagram through two parked idle tunnels, from %s: median %v (min %v, max %v, %d rounds)",
			from, d[len(d)/2].Round(time.Millisecond), d[0].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond), len(d))
		if worst := slices.Max(d); worst > 3*time.Second {
			// Not a timing goal (the benchmarks hold those): a wake that
			// waits for WireGuard's 5 s handshake retry is a lost first
			// handshake, which is a bug.
			t.Errorf("from %s: a first datagram took %v; want no lost handshake (WireGuard retries after 5 s)", from, worst)
		}
	}
}
