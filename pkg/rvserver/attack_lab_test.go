//go:build linux && lab

package rvserver_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
	"github.com/peerline/peerline/pkg/rvclient"
	"github.com/peerline/peerline/pkg/rvserver/rvflood"
)

// TestRendezvousdFlood is issue 13's stranger flood (items 1-3) against the
// real binary with its default limits, shortened and bounded (at most
// floodPackets datagrams in floodFor): 1024 keys from four /24s of an
// attacker register, ask for introductions to random keys and introduce
// themselves to each other, while two legitimate nodes on another network
// register, are introduced, relay and store and fetch invites. Every
// legitimate operation must succeed (functional: how fast is
// make bench-attack's business), and the server's log must name the
// flooding networks, not "replays".
func TestRendezvousdFlood(t *testing.T) {
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
	// The attacker's networks are reached on the same segment (RFC 2544's
	// benchmarking range, 198.18.0.0/15).
	check(t, vps.Route("198.18.0.0/15", "dev", "eth0"))
	var legit [2]*lab.Host
	for i := range legit {
		legit[i], err = l.Host(fmt.Sprintf("node%c", 'A'+i))
		check(t, err)
		_, err = inet.Attach(legit[i], "eth0", fmt.Sprintf("198.51.100.%d/24", 10+i))
		check(t, err)
	}
	attacker, err := l.Host("attacker")
	check(t, err)
	_, err = inet.Attach(attacker, "eth0", "198.18.1.2/24")
	check(t, err)
	const networks = 4
	for i := 2; i <= networks; i++ {
		check(t, attacker.Addr("eth0", fmt.Sprintf("198.18.%d.2/24", i)))
	}
	check(t, attacker.Route("198.51.100.0/24", "dev", "eth0"))

	stateDir := t.TempDir()
	pubOut, err := exec.CommandContext(ctx, bin, "-state-dir", stateDir, "-public-key").Output()
	check(t, err)
	serverKey, err := nodekey.Parse(string(pubOut))
	check(t, err)
	proc, err := vps.Start(ctx, "rendezvousd", bin, "-listen", "198.51.100.1:3478", "-listen2", "198.51.100.1:3479", "-state-dir", stateDir)
	check(t, err)
	srv := rvclient.Server{Addrs: [2]netip.AddrPort{netip.MustParseAddrPort("198.51.100.1:3478"), netip.MustParseAddrPort("198.51.100.1:3479")}, Key: serverKey}

	listen := func(h *lab.Host, addr string) net.PacketConn {
		t.Helper()
		pc, err := h.ListenPacket("udp4", addr)
		check(t, err)
		t.Cleanup(func() { pc.Close() })
		return pc
	}
	probeCtx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	probe, errc, err := rvflood.NewProbe(probeCtx, listen(legit[0], ":0"), listen(legit[1], ":0"), srv, labtest.Logger(t))
	check(t, err)
	probe.Fetch = func(ctx context.Context, id [rendezvous.InviteIDLen]byte) ([]byte, error) {
		return lab.In(legit[1], func() ([]byte, error) { return rvclient.GetInvite(ctx, srv.Addrs[0], id, nil) })
	}
	var conns []net.PacketConn
	for i := 1; i <= networks; i++ {
		conns = append(conns, listen(attacker, fmt.Sprintf("198.18.%d.2:0", i)))
	}

	results := make(chan rvflood.ProbeResult, 1)
	go func() { results <- probe.Run(probeCtx, 500*time.Millisecond, 10*time.Second) }()
	const floodPackets, floodFor = 150_000, 12 * time.Second
	fr, err := rvflood.Run(ctx, rvflood.Options{
		Server: srv.Addrs[0], ServerKey: serverKey, Conns: conns,
		Keys: 1024, Rate: 12_000, MaxPackets: floodPackets, Duration: floodFor,
	})
	check(t, err)
	time.Sleep(2 * time.Second) // and just after
	stopProbe()
	pr := <-results
	for range 2 {
		if err := <-errc; err != nil {
			t.Errorf("probe client: %v", err)
		}
	}
	t.Logf("flood: sent %d in %v (%d send errors), %d cookies and %v back", fr.Sent, fr.Elapsed.Round(time.Millisecond), fr.SendErrors, fr.Cookies, fr.Replies)
	if fr.Sent > floodPackets || fr.Replies[rendezvous.TypeRegisterReply.String()] == 0 {
		t.Errorf("flood sent %d (bound %d) and got %v back; want a flood that reached the server", fr.Sent, floodPackets, fr.Replies)
	}
	for kind, op := range pr.Ops {
		t.Logf("legitimate %s: %d of %d, p95 %.1f ms", kind, op.OK, op.Tries, op.P95)
		if op.Tries == 0 || op.OK != op.Tries {
			t.Errorf("legitimate %s: %d of %d succeeded during the flood (%q)", kind, op.OK, op.Tries, op.Errors)
		}
	}

	check(t, proc.Stop(5*time.Second))
	log, _ := proc.Log()
	// The log says what the limits did and to whom: the attacker's
	// networks, never the legitimate one, and nothing is called a replay.
	limits := regexp.MustCompile(`(?m)^.*limits applied.*$`).FindAllString(log, -1)
	if len(limits) == 0 || !strings.Contains(strings.Join(limits, "\n"), "prefix 198.18.") {
		t.Errorf("rendezvousd did not log the flooding networks; its log:\n%s", log)
	}
	for _, line := range limits {
		t.Logf("rendezvousd: %s", line)
		if strings.Contains(line, "198.51.100.") {
			t.Errorf("limits hit the legitimate network: %s", line)
		}
	}
	if m := regexp.MustCompile(`Replays:(\d+)`).FindStringSubmatch(log); m == nil || m[1] != "0" {
		t.Errorf("stopped with replays counted %v; the flood sent none", m)
	}
}
