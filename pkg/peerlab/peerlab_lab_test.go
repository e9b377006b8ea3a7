//go:build linux && lab

package peerlab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
	"github.com/peerline/peerline/pkg/nodekey"
)

// peerlinedBin and peerlineBin are the daemon and the command under test:
// $PEERLINED and $PEERLINE (make test sets them), or ones built for this run.
var peerlinedBin, peerlineBin string

func TestMain(m *testing.M) {
	peerlinedBin, peerlineBin = os.Getenv("PEERLINED"), os.Getenv("PEERLINE")
	var dir string
	for _, b := range []struct {
		path *string
		name string
	}{{&peerlinedBin, "peerlined"}, {&peerlineBin, "peerline"}} {
		if *b.path != "" {
			continue
		}
		if dir == "" {
			var err error
			if dir, err = os.MkdirTemp("", "peerlab-test-"); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		*b.path = filepath.Join(dir, b.name)
		out, err := exec.Command("go", "build", "-o", *b.path, "github.com/peerline/peerline/cmd/"+b.name).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", b.name, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

func newLab(t testing.TB) *lab.Lab {
	t.Helper()
	labtest.RequireRoot(t)
	labtest.RequireTools(t, "baresip", "sox", "wg", "nsenter")
	return labtest.New(t)
}

// newNetwork builds the two-Pi network for a test that must finish within
// timeout; the lab goes away with the test.
func newNetwork(t *testing.T, timeout time.Duration) (context.Context, *Network) {
	t.Helper()
	l := newLab(t)
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	n, err := Build(ctx, l, Options{Peerlined: peerlinedBin})
	if err != nil {
		t.Fatal(err)
	}
	return ctx, n
}

func requireCall(t *testing.T, r *CallResult, err error, wantSeen string) {
	t.Helper()
	if err != nil {
		t.Fatalf("call to %s: %v", r.Dialled, err)
	}
	if r.CallerSeenAs != wantSeen {
		t.Errorf("callee showed the caller as %q, want %q", r.CallerSeenAs, wantSeen)
	}
	if r.CalleeErr != nil {
		t.Errorf("callee's audio: %v", r.CalleeErr)
	}
	if r.CallerErr != nil {
		t.Errorf("caller's audio: %v", r.CallerErr)
	}
	t.Logf("call to %s: set-up %v, callee heard %v, caller heard %v, RTP at caller tx %d rx %d",
		r.Dialled, r.Setup, r.CalleeHeard, r.CallerHeard, r.CallerStats.TxPackets, r.CallerStats.RxPackets)
}

// TestCallAndCallBack is the demo as a test: A calls B by B's address at A,
// audio is checked both ways, then B calls back the address its phone
// showed for A.
func TestCallAndCallBack(t *testing.T) {
	ctx, n := newNetwork(t, 2*time.Minute)
	phoneA, phoneB, err := n.StartPhones(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Call(ctx, phoneA, phoneB, "sip:b@10.7.1.1", 3*time.Second)
	requireCall(t, r, err, "sip:a@10.4.1.1")
	if r.CalleeSeenAs != "sip:b@10.7.1.1" {
		t.Errorf("caller showed the callee as %q, want sip:b@10.7.1.1", r.CalleeSeenAs)
	}
	back, err := Call(ctx, phoneB, phoneA, r.CallerSeenAs, 3*time.Second)
	requireCall(t, back, err, "sip:b@10.7.1.1")

	st, err := n.A.Status()
	if err != nil {
		t.Fatal(err)
	}
	if p := st.Peers[0]; p.LastHandshake == nil || p.Endpoint != "198.51.100.2:51820" || !p.Online || p.Path != "direct" {
		t.Errorf("A's status of its tunnel = %+v, want online, direct, with a handshake with 198.51.100.2:51820", p)
	}
	// wg show goes through the device's UAPI socket, as a person debugging
	// would use it.
	out, err := n.A.Host.Run(ctx, "wg", "show", n.A.Config.Prefix+"7")
	if err != nil || !strings.Contains(out, "latest handshake") || !strings.Contains(out, n.B.key.Public().String()) {
		t.Errorf("wg show %s7 = %v\n%s\nwant B's key and a handshake", n.A.Config.Prefix, err, out)
	}
}

// snapshot is what a node's daemon has built, as `ip` shows it: its
// namespaces, and in the Pi and each of them the links, addresses and
// routes.
func snapshot(t *testing.T, ctx context.Context, n *Node) string {
	t.Helper()
	var b strings.Builder
	all, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	spaces := []string{n.Host.NS()}
	for _, line := range strings.Split(string(all), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], n.Config.Prefix+"-") {
			spaces = append(spaces, f[0])
		}
	}
	slices.Sort(spaces[1:])
	for _, ns := range spaces {
		name := "pi"
		if ns != n.Host.NS() {
			name = strings.TrimPrefix(ns, n.Config.Prefix)
		}
		fmt.Fprintf(&b, "namespace %s\n", name)
		for _, what := range [][]string{{"-br", "link"}, {"-br", "-4", "addr"}, {"route"}} {
			out, err := exec.CommandContext(ctx, "ip", append([]string{"-n", ns}, what...)...).Output()
			if err != nil {
				t.Fatalf("ip -n %s %v: %v", ns, what, err)
			}
			var lines []string
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				f := strings.Fields(l)
				if len(f) == 0 {
					continue
				}
				// veth ends print as name@ifN; the name is what we compare.
				f[0], _, _ = strings.Cut(f[0], "@")
				if what[len(what)-1] == "link" {
					// State and MAC are not ours to compare; names are.
					f = f[:1]
				} else if what[len(what)-1] == "addr" {
					f = append(f[:1], f[2:]...)
				}
				lines = append(lines, "  "+strings.Join(f, " "))
			}
			slices.Sort(lines)
			for _, l := range lines {
				b.WriteString(l + "\n")
			}
		}
	}
	return b.String()
}

func sockets(t *testing.T, prefix string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join("/var/run/wireguard", prefix+"[0-9]*.sock"))
	return m
}

// TestUpDownLeavesNothing brings up a node with two peers and two phone
// lines, checks what it built, stops it with SIGTERM and checks that the
// machine is as before; then the same after kill -9 and peerlined -cleanup.
func TestUpDownLeavesNothing(t *testing.T) {
	l := newLab(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	inet, err := l.Bridge("inet")
	if err != nil {
		t.Fatal(err)
	}
	node, err := newNode(l, onSegment(inet, netip.MustParseAddr("198.51.100.1")), "A", fmt.Sprintf("plu%xa", os.Getpid()%0xfff), peerlinedBin, nil)
	if err != nil {
		t.Fatal(err)
	}
	node.Config.Lines = []int{1, 2}
	for _, i := range []int{7, 9} {
		k, _ := nodekey.Generate()
		node.Config.Peers = append(node.Config.Peers, config.Peer{
			Index: i, PublicKey: k.Public(), Endpoint: fmt.Sprintf("198.51.100.%d:51820", 100+i),
		})
	}
	if err := node.writeConfig(); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, ctx, node)
	if err := node.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := node.WaitReady(ctx, daemonWait); err != nil {
		t.Fatal(err)
	}
	up := snapshot(t, ctx, node)
	p := node.Config.Prefix
	for _, want := range []string{
		"namespace -7\n", "namespace -9\n", // the per-peer namespaces
		"  " + p + "v7\n", "  " + p + "v9\n", // root ends of the veths
		"  eth0 10.0.1.2/30 10.0.2.2/30\n", // both lines on the phone port
		"  10.7.0.0/16 via 169.254.7.2 dev " + p + "v7",
		"  " + p + "7\n",               // the TUN, in its namespace
		"  10.7.0.0/16 dev " + p + "7", // routed into the tunnel
		"  10.0.0.0/16 via 169.254.7.1 dev veth0",
	} {
		if !strings.Contains(up, want) {
			t.Errorf("after start, no %q in:\n%s", want, up)
		}
	}
	if s := sockets(t, p); len(s) != 2 {
		t.Errorf("UAPI sockets = %v, want one per peer", s)
	}
	if err := node.Stop(); err != nil {
		t.Fatalf("peerlined did not exit cleanly on SIGTERM: %v", err)
	}
	if after := snapshot(t, ctx, node); after != before {
		t.Errorf("after SIGTERM:\n%s\nwant as before start:\n%s", after, before)
	}
	if s := sockets(t, p); len(s) != 0 {
		t.Errorf("UAPI sockets left after SIGTERM: %v", s)
	}

	// A crash leaves everything behind; --cleanup (systemd's ExecStopPost)
	// must remove all of it.
	if err := node.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := node.WaitReady(ctx, daemonWait); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(node.Daemon.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-node.Daemon.Done()
	node.Daemon = nil
	if crashed := snapshot(t, ctx, node); crashed == before {
		t.Fatal("kill -9 left nothing behind; the cleanup check would prove nothing")
	}
	if out, err := node.Host.Run(ctx, peerlinedBin, "-config", node.ConfigPath, "-cleanup"); err != nil {
		t.Fatalf("peerlined -cleanup: %v\n%s", err, out)
	}
	if after := snapshot(t, ctx, node); after != before {
		t.Errorf("after kill -9 and -cleanup:\n%s\nwant as before start:\n%s", after, before)
	}
	if s := sockets(t, p); len(s) != 0 {
		t.Errorf("UAPI sockets left after -cleanup: %v", s)
	}
}

// TestKillRestartReconciles kills node A's daemon with SIGKILL in the middle
// of its life, restarts it and checks that it rebuilt exactly what it had
// (nothing duplicated, nothing leaked) and that calls work again.
func TestKillRestartReconciles(t *testing.T) {
	ctx, n := newNetwork(t, 2*time.Minute)
	running := snapshot(t, ctx, n.A)
	pid := n.A.Daemon.Pid()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.A.Daemon.Done():
	case <-ctx.Done():
		t.Fatal("killed daemon did not exit")
	}
	n.A.Daemon = nil
	left := snapshot(t, ctx, n.A)
	if !strings.Contains(left, "namespace -7\n") {
		t.Fatalf("after kill -9 the peer namespace is gone already; the test would prove nothing:\n%s", left)
	}
	if err := n.A.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := n.A.WaitReady(ctx, daemonWait); err != nil {
		t.Fatal(err)
	}
	if err := n.A.WaitConnected(ctx, daemonWait); err != nil {
		t.Fatal(err)
	}
	if again := snapshot(t, ctx, n.A); again != running {
		t.Errorf("after kill -9 and restart:\n%s\nwant as before the kill:\n%s", again, running)
	}
	if s := sockets(t, n.A.Config.Prefix); len(s) != 1 {
		t.Errorf("UAPI sockets after restart = %v, want exactly one", s)
	}
	phoneA, phoneB, err := n.StartPhones(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The restarted node has a new WireGuard session to make; B's side still
	// holds the old one, so this also shows the tunnel recovering.
	r, err := Call(ctx, phoneA, phoneB, "sip:b@10.7.1.1", 2*time.Second)
	requireCall(t, r, err, "sip:a@10.4.1.1")
}

// reaches reports whether a UDP datagram or a TCP connection from src gets
// to addr (as src sees it) where dst listens on listenAddr.
func reaches(t *testing.T, ctx context.Context, proto string, src, dst *lab.Host, addr, listenAddr string) bool {
	t.Helper()
	const wait = 1500 * time.Millisecond
	switch proto {
	case "udp":
		pc, err := dst.ListenPacket("udp4", listenAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		c, err := src.Dial(ctx, "udp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		got := make(chan bool, 1)
		go func() {
			buf := make([]byte, 64)
			pc.SetReadDeadline(time.Now().Add(wait))
			_, _, err := pc.ReadFrom(buf)
			got <- err == nil
		}()
		c.Write([]byte("hello"))
		return <-got
	case "tcp":
		ln, err := dst.Listen("tcp4", listenAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		dctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		c, err := src.Dial(dctx, "tcp4", addr)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	t.Fatalf("unknown protocol %s", proto)
	return false
}

// TestFirewall checks docs/design.md §3.1 from B's phone: A's phone takes UDP (SIP,
// RTP) and ping through the tunnel, but not TCP, and A's Pi takes nothing.
func TestFirewall(t *testing.T) {
	ctx, n := newNetwork(t, time.Minute)
	from := n.B.PhoneHost
	tests := []struct {
		name       string
		proto      string
		dst        *lab.Host
		addr       string // as B's phone dials it
		listenAddr string // where it arrives at A
		want       bool
	}{
		{"UDP to the phone (SIP, RTP)", "udp", n.A.PhoneHost, "10.4.1.1:7000", "10.0.1.1:7000", true},
		{"TCP to the phone (its web page)", "tcp", n.A.PhoneHost, "10.4.1.1:8080", "10.0.1.1:8080", false},
		{"UDP to the Pi's line address", "udp", n.A.Host, "10.4.1.2:7001", "10.0.1.2:7001", false},
		{"TCP to the Pi's line address", "tcp", n.A.Host, "10.4.1.2:8081", "10.0.1.2:8081", false},
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpWireGuard(t, n)
		}
	})
	for _, tt := range tests {
		if got := reaches(t, ctx, tt.proto, from, tt.dst, tt.addr, tt.listenAddr); got != tt.want {
			t.Errorf("%s from B's phone to %s: reached %v, want %v", tt.name, tt.addr, got, tt.want)
		}
	}
	// Our side may start anything: A's phone reaches B's phone by UDP, and
	// B's firewall still refuses A's TCP.
	if !reaches(t, ctx, "udp", n.A.PhoneHost, n.B.PhoneHost, "10.7.1.1:7002", "10.0.1.1:7002") {
		t.Error("UDP from A's phone to B's phone did not arrive")
	}
	if reaches(t, ctx, "tcp", n.A.PhoneHost, n.B.PhoneHost, "10.7.1.1:8082", "10.0.1.1:8082") {
		t.Error("TCP from A's phone reached B's phone through B's firewall")
	}
	for _, p := range []struct {
		addr string
		want bool
	}{{"10.4.1.1", true}, {"10.4.1.2", false}} {
		_, err := from.Run(ctx, "ping", "-c", "1", "-W", "1", p.addr)
		if got := err == nil; got != p.want {
			t.Errorf("ping %s from B's phone: answered %v, want %v", p.addr, got, p.want)
		}
	}
}

// dumpWireGuard logs both nodes' WireGuard state, for a failed test.
func dumpWireGuard(t *testing.T, n *Network) {
	for _, node := range []*Node{n.A, n.B} {
		out, err := node.Host.Run(context.Background(), "wg", "show", "all")
		t.Logf("wg show on %s (%v):\n%s", node.Name, err, out)
	}
}
