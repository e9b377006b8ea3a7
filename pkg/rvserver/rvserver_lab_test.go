//go:build linux && lab

package rvserver_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rvclient"
)

// rendezvousdBin is $RENDEZVOUSD (make test can set it) or a fresh build.
func rendezvousdBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("RENDEZVOUSD"); p != "" {
		return p
	}
	p := filepath.Join(t.TempDir(), "rendezvousd")
	if out, err := exec.Command("go", "build", "-o", p, "github.com/peerline/peerline/cmd/rendezvousd").CombinedOutput(); err != nil {
		t.Fatalf("building rendezvousd: %v\n%s", err, out)
	}
	return p
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type labNode struct {
	c     *rvclient.Client
	mu    sync.Mutex
	relay []string
}

func (n *labNode) relayed() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.relay)
}

func startNode(t *testing.T, ctx context.Context, h *lab.Host, srv rvclient.Server, accept func(nodekey.Key) bool) *labNode {
	t.Helper()
	pc, err := h.ListenPacket("udp4", ":0")
	check(t, err)
	t.Cleanup(func() { pc.Close() })
	k, _ := nodekey.Generate()
	n := &labNode{}
	n.c, err = rvclient.New(pc, k, srv, rvclient.Options{
		Accept:  func(k nodekey.Key, _ []byte) bool { return accept(k) },
		Refresh: time.Second, // so the restart test needs no 25 s wait
		Log:     labtest.Logger(t).With("node", h.Name()),
		OnRelay: func(_ uint64, b []byte) { n.mu.Lock(); n.relay = append(n.relay, string(b)); n.mu.Unlock() },
	})
	check(t, err)
	done := make(chan error, 1)
	go func() { done <- n.c.Run(ctx) }()
	t.Cleanup(func() {
		pc.SetReadDeadline(time.Now())
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("client in %s: %v", h.Name(), err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("client in %s did not stop", h.Name())
		}
	})
	return n
}

// TestRendezvousd runs the real binary in a "vps" namespace with two nodes
// and a stranger on an "Internet" bridge; node B sits behind a symmetric NAT
// (masquerade fully-random, docs/design.md §7.1's sym).
func TestRendezvousd(t *testing.T) {
	bin := rendezvousdBin(t)
	l := labtest.New(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	inet, err := l.Bridge("inet")
	check(t, err)
	vps, err := l.Host("vps")
	check(t, err)
	_, err = inet.Attach(vps, "eth0", "198.51.100.1/24")
	check(t, err)
	nodeA, err := l.Host("nodeA")
	check(t, err)
	_, err = inet.Attach(nodeA, "eth0", "198.51.100.10/24")
	check(t, err)
	stranger, err := l.Host("stranger")
	check(t, err)
	_, err = inet.Attach(stranger, "eth0", "198.51.100.66/24")
	check(t, err)
	natB, err := l.Host("natB")
	check(t, err)
	_, err = inet.Attach(natB, "wan", "198.51.100.20/24")
	check(t, err)
	nodeB, err := l.Host("nodeB")
	check(t, err)
	check(t, l.Veth(nodeB, "eth0", natB, "lan"))
	check(t, nodeB.Addr("eth0", "192.0.2.2/24"))
	check(t, natB.Addr("lan", "192.0.2.1/24"))
	check(t, nodeB.Route("default", "via", "192.0.2.1"))
	check(t, natB.Sysctl("net.ipv4.ip_forward", "1"))
	rules := filepath.Join(l.Dir(), "natB.nft")
	check(t, os.WriteFile(rules, []byte(`table ip lab {
  chain post { type nat hook postrouting priority srcnat; policy accept; oifname "wan" masquerade fully-random; }
  chain filt {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "lan" oifname "wan" accept
  }
}
`), 0o644))
	if out, err := natB.Run(ctx, "nft", "-f", rules); err != nil {
		t.Fatalf("nft in natB: %v: %s", err, out)
	}

	stateDir := t.TempDir()
	args := []string{bin, "-listen", "198.51.100.1:3478", "-listen2", "198.51.100.1:3479", "-state-dir", stateDir, "-v"}
	pubOut, err := exec.CommandContext(ctx, bin, "-state-dir", stateDir, "-public-key").Output()
	check(t, err)
	serverKey, err := nodekey.Parse(string(pubOut))
	check(t, err)
	if out, err := exec.CommandContext(ctx, bin, append(args[1:], "-check-config")...).CombinedOutput(); err != nil || !strings.Contains(string(out), serverKey.String()) {
		t.Fatalf("-check-config: %v: %s", err, out)
	}
	proc, err := vps.Start(ctx, "rendezvousd", args...)
	check(t, err)
	srv := rvclient.Server{Addrs: [2]netip.AddrPort{netip.MustParseAddrPort("198.51.100.1:3478"), netip.MustParseAddrPort("198.51.100.1:3479")}, Key: serverKey}

	var a, b *labNode
	a = startNode(t, ctx, nodeA, srv, func(k nodekey.Key) bool { return k == b.c.PublicKey() })
	b = startNode(t, ctx, nodeB, srv, func(k nodekey.Key) bool { return k == a.c.PublicKey() })
	s := startNode(t, ctx, stranger, srv, nil)

	// Mappings: A has none (public address); B's symmetric NAT maps each
	// server port to a different public port.
	eim, mapsA, err := a.c.ClassifyMapping(ctx)
	if err != nil || !eim || mapsA[0].Addr() != netip.MustParseAddr("198.51.100.10") {
		t.Errorf("A: ClassifyMapping = %v %v %v; want endpoint-independent at 198.51.100.10", eim, mapsA, err)
	}
	eim, mapsB, err := b.c.ClassifyMapping(ctx)
	if err != nil || eim || mapsB[0].Addr() != netip.MustParseAddr("198.51.100.20") || mapsB[0] == mapsB[1] {
		t.Errorf("B: ClassifyMapping = %v %v %v; want two different mappings at 198.51.100.20 (symmetric NAT)", eim, mapsB, err)
	}
	_, err = s.c.Register(ctx, 0)
	check(t, err)

	connect := func() rvclient.Introduction {
		t.Helper()
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		defer ccancel()
		in, err := a.c.Connect(cctx, b.c.PublicKey())
		if err != nil {
			t.Fatalf("A.Connect(B): %v", err)
		}
		return in
	}
	in := connect()
	if in.Endpoints[0].Addr() != netip.MustParseAddr("198.51.100.20") {
		t.Errorf("A learned B at %v; want B's NAT address", in.Endpoints)
	}
	sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
	if in, err := s.c.Connect(sctx, b.c.PublicKey()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("stranger.Connect(B) = %+v, %v; want nothing", in, err)
	}
	scancel()

	relayBothWays := func(session uint64, tag string) {
		t.Helper()
		// Both sides send: B's NAT only lets the server's packets in once
		// B has sent to that server port, which registration did.
		check(t, a.c.SendRelay(session, []byte("a->b "+tag)))
		check(t, b.c.SendRelay(session, []byte("b->a "+tag)))
		deadline := time.Now().Add(5 * time.Second)
		for !slices.Contains(b.relayed(), "a->b "+tag) || !slices.Contains(a.relayed(), "b->a "+tag) {
			if time.Now().After(deadline) {
				t.Fatalf("relay %s: B got %q, A got %q", tag, b.relayed(), a.relayed())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	relayBothWays(in.Session, "first")

	// Restart: the registrations are gone; clients re-register by
	// themselves, and introductions and relay work again.
	check(t, proc.Stop(5*time.Second))
	proc, err = vps.Start(ctx, "rendezvousd-2", args...)
	check(t, err)
	time.Sleep(2 * time.Second) // one refresh interval and a bit
	in2 := connect()
	relayBothWays(in2.Session, "after restart")
	check(t, proc.Stop(5*time.Second))
	log, _ := proc.Log()
	if !strings.Contains(log, "stopped") {
		t.Errorf("rendezvousd did not shut down cleanly on SIGTERM; log:\n%s", log)
	}
}

// TestSystemdUnit checks the unit with systemd-analyze verify against a
// real binary at the path the unit names.
func TestSystemdUnit(t *testing.T) {
	labtest.RequireTools(t, "systemd-analyze")
	bin := rendezvousdBin(t)
	unit, err := os.ReadFile("../../systemd/rendezvousd.service")
	check(t, err)
	if !strings.Contains(string(unit), "/usr/bin/rendezvousd") {
		t.Fatal("unit does not run /usr/bin/rendezvousd")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "rendezvousd.service")
	check(t, os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/bin/rendezvousd", bin)), 0o644))
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
