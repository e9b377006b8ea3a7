package peerpath

import (
	"bufio"
	"bytes"
	"context"
	"errors"
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

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
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

func newTestNode(t *testing.T, addr string, rvs []rvclient.Server, noProbes bool) *testNode {
	t.Helper()
	return newTestNodeWith(t, addr, rvs, noProbes, nil)
}

// newTestNodeWith is newTestNode with opts changing the Options first.
func newTestNodeWith(t *testing.T, addr string, rvs []rvclient.Server, noProbes bool, opts func(*Options)) *testNode {
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
	o := Options{Mux: mux, PrivateKey: k, Servers: servers}
	if opts != nil {
		opts(&o)
	}
	mgr, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	mgr.noProbes = noProbes
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
// other's address find each other through the server and go direct.
func TestDirectByRendezvous(t *testing.T) {
	srv := startServer(t)
	a := newTestNode(t, "10.9.0.1", []rvclient.Server{srv}, false)
	b := newTestNode(t, "10.9.0.2", []rvclient.Server{srv}, false)
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

// TestRelayWhenProbesBlocked: when no probe gets through, the call still
// goes, through the server's relay, and the status says why.
func TestRelayWhenProbesBlocked(t *testing.T) {
	srv := startServer(t)
	a := newTestNode(t, "10.9.0.1", []rvclient.Server{srv}, true)
	b := newTestNode(t, "10.9.0.2", []rvclient.Server{srv}, true)
	a.pair(t, b)
	b.pair(t, a)
	ping(t, a, b, 5*time.Second)
	ping(t, b, a, 5*time.Second)
	relayed := func(s Status) bool {
		return s.Online && s.Path == PathRelay && !strings.HasPrefix(s.Reason, "punching")
	}
	st := waitStatus(t, a, b, relayed, 6*time.Second)
	if !strings.HasPrefix(st.Endpoint, "relay:") {
		t.Errorf("endpoint %q is not a relay", st.Endpoint)
	}
	ping(t, a, b, 2*time.Second)
	// The relayed path answers probes too, so ping and RTT work there.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if rtt, err := a.mgr.Ping(ctx, b.key.Public()); err != nil || rtt <= 0 {
		t.Fatalf("Ping over the relay = %v, %v", rtt, err)
	}
	waitStatus(t, a, b, func(s Status) bool { return s.Path == PathRelay && s.RTT > 0 }, time.Second)
}

// TestUnpairedStaysOffline: a node whose peer does not list it is never
// introduced, and says so.
func TestUnpairedStaysOffline(t *testing.T) {
	srv := startServer(t)
	a := newTestNode(t, "10.9.0.1", []rvclient.Server{srv}, false)
	b := newTestNode(t, "10.9.0.2", []rvclient.Server{srv}, false)
	a.pair(t, b)
	time.Sleep(1500 * time.Millisecond)
	st := a.mgr.Status()[b.key.Public()]
	if st.Online || st.Path != PathNone || !strings.Contains(st.Reason, "not introduced") {
		t.Fatalf("status of an unpaired peer: %+v", st)
	}
}

// TestBye: a node that shuts down tells its peers, which show it offline at
// once instead of a minute later.
func TestBye(t *testing.T) {
	srv := startServer(t)
	a := newTestNode(t, "10.9.0.1", []rvclient.Server{srv}, false)
	b := newTestNode(t, "10.9.0.2", []rvclient.Server{srv}, false)
	a.pair(t, b)
	b.pair(t, a)
	ping(t, a, b, 5*time.Second)
	waitStatus(t, a, b, func(s Status) bool { return s.Online && s.Path == PathDirect }, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	b.mgr.Bye(ctx)
	st := waitStatus(t, a, b, func(s Status) bool { return !s.Online }, time.Second)
	if !strings.Contains(st.Reason, "shut down") {
		t.Errorf("reason %q, want one saying the peer shut down", st.Reason)
	}
}

// TestSilentPeerGoesOffline: a peer that vanishes without a bye (power
// cut) shows offline within about a second of our sending to it, not a
// minute later, so that the call that found it gone fails at once.
func TestSilentPeerGoesOffline(t *testing.T) {
	srv := startServer(t)
	a := newTestNode(t, "10.9.0.1", []rvclient.Server{srv}, false)
	b := newTestNode(t, "10.9.0.2", []rvclient.Server{srv}, false)
	a.pair(t, b)
	b.pair(t, a)
	ping(t, a, b, 5*time.Second)
	waitStatus(t, a, b, func(s Status) bool { return s.Online && s.Path == PathDirect }, 5*time.Second)
	// Past the punching, when the direct path is probed once a minute.
	time.Sleep(time.Second)
	b.stop() // b is gone: nothing answers, nothing says bye
	sent := time.Now()
	a.tuns[b.key.Public()].Outbound <- tuntest.Ping(b.addr, a.addr)
	st := waitStatus(t, a, b, func(s Status) bool { return !s.Online }, 3*time.Second)
	if !strings.Contains(st.Reason, "not answering") {
		t.Errorf("reason %q, want one saying the peer stopped answering", st.Reason)
	}
	t.Logf("offline %v after sending to the vanished peer: %s", time.Since(sent).Round(time.Millisecond), st.Reason)
}

// TestSendPair: pairing data sent directly reaches the peer's OnPair, on a
// direct path and through the relay; before there is a path, SendPair
// says so.
func TestSendPair(t *testing.T) {
	srv := startServer(t)
	got := make(chan string, 4)
	a := newTestNode(t, "10.9.0.1", []rvclient.Server{srv}, false)
	b := newTestNodeWith(t, "10.9.0.2", []rvclient.Server{srv}, false, func(o *Options) {
		o.OnPair = func(peer nodekey.Key, data []byte) { got <- string(data) }
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a.pair(t, b)
	if err := a.mgr.SendPair(ctx, b.key.Public(), []byte("too early")); !errors.Is(err, ErrNoPath) {
		t.Errorf("SendPair before a path = %v, want ErrNoPath", err)
	}
	b.pair(t, a)
	waitStatus(t, a, b, func(s Status) bool { return s.Path == PathDirect }, 5*time.Second)
	if err := a.mgr.SendPair(ctx, b.key.Public(), []byte("direct")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "direct" {
			t.Errorf("OnPair got %q", s)
		}
	case <-ctx.Done():
		t.Fatal("pairing data sent directly never arrived")
	}
	if err := a.mgr.SendPair(ctx, b.key.Public(), make([]byte, rendezvous.MaxPairData+1)); err == nil {
		t.Error("SendPair took more than MaxPairData")
	}
}
