//go:build linux && lab

package peerpath

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/peerline/peerline/pkg/labtest"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rvclient"
	"github.com/peerline/peerline/pkg/rvserver"
	"github.com/peerline/peerline/pkg/wgmux"
	"github.com/peerline/peerline/pkg/wgtunnel"
)

func startServer(t *testing.T) rvclient.Server {
	t.Helper()
	s, err := rvserver.New(rvserver.Config{StateDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]*net.UDPConn
	var srv rvclient.Server
	for i := range conns {
		if conns[i], err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
			t.Fatal(err)
		}
		srv.Addrs[i] = conns[i].LocalAddr().(*net.UDPAddr).AddrPort()
	}
	srv.Key = s.PublicKey()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Serve(ctx, conns) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv
}

// devTunnel drives a wireguard-go device with a channel TUN, as
// wgtunnel.Tunnel drives a real one.
type devTunnel struct {
	dev  *device.Device
	peer nodekey.Key
}

func (d devTunnel) SetEndpoint(ep string) error {
	return d.dev.IpcSet(fmt.Sprintf("public_key=%s\nendpoint=%s\n", d.peer.Hex(), ep))
}

func (d devTunnel) StartKeepalive() error {
	return d.dev.IpcSet(fmt.Sprintf("public_key=%s\npersistent_keepalive_interval=0\npersistent_keepalive_interval=25\n", d.peer.Hex()))
}

func (d devTunnel) Status() (wgtunnel.Status, error) {
	s, err := d.dev.IpcGet()
	if err != nil {
		return wgtunnel.Status{}, err
	}
	var st wgtunnel.Status
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		n, _ := strconv.ParseUint(v, 10, 64)
		switch k {
		case "endpoint":
			st.Endpoint = v
		case "rx_bytes":
			st.RxBytes = n
		case "tx_bytes":
			st.TxBytes = n
		case "last_handshake_time_sec":
			if n > 0 {
				st.LastHandshake = time.Unix(int64(n), 0)
			}
		}
	}
	return st, nil
}

type testNode struct {
	key  nodekey.Key
	mux  *wgmux.Mux
	mgr  *Manager
	addr netip.Addr
	tuns map[nodekey.Key]*tuntest.ChannelTUN
	devs map[nodekey.Key]*device.Device
	// stop ends the node as a power cut would: no bye.
	stop func()
}

func newTestNode(t *testing.T, addr string, rvs []rvclient.Server) *testNode {
	t.Helper()
	k, err := nodekey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	mux, err := wgmux.Listen("127.0.0.1:0", k, nil)
	if err != nil {
		t.Fatal(err)
	}
	var servers []Server
	for _, s := range rvs {
		servers = append(servers, Server{Address: s.Addrs[0].String(), Address2: s.Addrs[1].String(), Key: s.Key})
	}
	mgr, err := New(Options{Mux: mux, PrivateKey: k, Servers: servers})
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{key: k, mux: mux, mgr: mgr, addr: netip.MustParseAddr(addr),
		tuns: map[nodekey.Key]*tuntest.ChannelTUN{}, devs: map[nodekey.Key]*device.Device{}}
	ctx, cancel := context.WithCancel(context.Background())
	muxDone, mgrDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(muxDone); mux.Run(ctx) }()
	go func() { defer close(mgrDone); mgr.Run(ctx) }()
	var once sync.Once
	n.stop = func() {
		once.Do(func() {
			cancel()
			<-mgrDone
			<-muxDone
			for _, d := range n.devs {
				d.Close()
			}
		})
	}
	t.Cleanup(n.stop)
	return n
}

func (n *testNode) pair(t *testing.T, peer *testNode) {
	t.Helper()
	pub := peer.key.Public()
	ct := tuntest.NewChannelTUN()
	bind := n.mux.Bind(pub)
	dev := device.NewDevice(ct.TUN(), bind, device.NewLogger(device.LogLevelSilent, ""))
	cfg := fmt.Sprintf("private_key=%s\npublic_key=%s\nendpoint=%s\nallowed_ip=%s/32\n", n.key.Hex(), pub.Hex(), wgmux.PendingEndpoint, peer.addr)
	if err := dev.IpcSet(cfg); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	n.tuns[pub], n.devs[pub] = ct, dev
	n.mgr.Add(pub, devTunnel{dev: dev, peer: pub}, bind, netip.AddrPort{})
}

func ping(t *testing.T, a, b *testNode, within time.Duration) {
	t.Helper()
	pkt := tuntest.Ping(b.addr, a.addr)
	deadline := time.After(within)
	for {
		select {
		case a.tuns[b.key.Public()].Outbound <- pkt:
		case <-deadline:
			t.Fatalf("%s → %s: packet did not enter the tunnel", a.addr, b.addr)
		}
		select {
		case got := <-b.tuns[a.key.Public()].Inbound:
			if !bytes.Equal(got, pkt) {
				t.Fatal("a different packet came out")
			}
			return
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%s → %s: no packet through the tunnel within %v", a.addr, b.addr, within)
		}
	}
}

func waitStatus(t *testing.T, n *testNode, peer *testNode, ok func(Status) bool, within time.Duration) Status {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := n.mgr.Status()[peer.key.Public()]
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status of %s at %s: %+v", peer.addr, n.addr, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDirectByRendezvous: two paired nodes that know nothing of each
// other's address find each other through the server and go direct, with
// what the in-memory tests (path_test.go) leave out: real sockets, the
// real mux and wireguard-go devices carrying packets. Loopback only; in
// the lab set for its real sockets and timing.
func TestDirectByRendezvous(t *testing.T) {
	labtest.RequireRoot(t)
	srv := startServer(t)
	a := newTestNode(t, "10.9.0.1", []rvclient.Server{srv})
	b := newTestNode(t, "10.9.0.2", []rvclient.Server{srv})
	a.pair(t, b)
	b.pair(t, a)
	ping(t, a, b, 5*time.Second)
	ping(t, b, a, 5*time.Second)
	direct := func(s Status) bool { return s.Online && s.Path == PathDirect && s.RTT > 0 }
	st := waitStatus(t, a, b, direct, 5*time.Second)
	if want := b.mux.Port(); !strings.HasSuffix(st.Endpoint, ":"+strconv.Itoa(int(want))) {
		t.Errorf("a's endpoint for b = %s, want b's port %d", st.Endpoint, want)
	}
	waitStatus(t, b, a, direct, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if rtt, err := a.mgr.Ping(ctx, b.key.Public()); err != nil || rtt <= 0 {
		t.Fatalf("Ping = %v, %v", rtt, err)
	}
}
