//go:build linux && lab

package peerlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
)

// deskPhonePad pads deskphone_uac.xml's User-Agent so that its INVITE is
// about 1450 bytes of SIP: one 1478-byte IP packet from the phone, over the
// old tunnel MTU (1420) and the 1280-byte path.
var deskPhonePad = "(build 2026-01-01; " + strings.Repeat("x", 138) + ")"

// TestSmallPath is issues 14.1, 15.3 and 15.2 as a user meets them: two Pis
// behind home routers whose uplinks carry only 1280 bytes and drop the ICMP
// that would say so (lab.NAT.BlackHole), and phones on ordinary 1500-byte
// ports. A desk phone's full-size INVITE, Don't Fragment set, must reach the
// far phone the first time and the call carry audio; baresip calls both
// ways with their tones checked; and a phone's SIP over TCP is refused at
// once. PEERLINE_LAB_TUNNEL_MTU=1420 runs it with the old tunnel MTU, which
// shows the black hole (the INVITE never arrives).
func TestSmallPath(t *testing.T) {
	natBins(t)
	labtest.RequireTools(t, "sipp", "tcpdump", "ss", "ping")
	l := newLab(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	mtu := 0
	if s := os.Getenv("PEERLINE_LAB_TUNNEL_MTU"); s != "" {
		var err error
		if mtu, err = strconv.Atoi(s); err != nil {
			t.Fatalf("PEERLINE_LAB_TUNNEL_MTU=%q: %v", s, err)
		}
	}
	no := &NATOptions{A: lab.PortRestricted, B: lab.PortRestricted, Policy: lab.InputDrop,
		Rendezvousd: rendezvousdBin, Peerline: peerlineBin}
	if mtu != 0 {
		no.beforePairing = func(n *Network) error { return n.setTunnelMTU(ctx, mtu) }
	}
	n, err := Build(ctx, l, Options{Peerlined: peerlinedBin, NAT: no})
	if err != nil {
		t.Fatal(err)
	}
	for _, nat := range []*lab.NAT{n.NATA, n.NATB} {
		if err := nat.BlackHole(lab.MinPathMTU); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := n.SettledPath(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	checkBlackHole(t, ctx, n)
	want := config.DefaultMTU
	if mtu != 0 {
		want = mtu
	}
	for _, node := range []*Node{n.A, n.B} {
		var peers []control.Peer
		if err := node.cli(ctx, &peers, "peers", "--json"); err != nil {
			t.Fatal(err)
		}
		if len(peers) != 1 || peers[0].MTU != want {
			t.Errorf("node %s: peerline peers --json = %+v, want one peer with mtu %d", node.Name, peers, want)
		}
	}
	a, b, err := n.StartPhones(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pcapDir := t.TempDir()

	t.Run("baresip both ways", func(t *testing.T) {
		for _, c := range []struct {
			caller, callee *Phone
			from, to       string // SIP users
		}{{a, b, "a", "b"}, {b, a, "b", "a"}} {
			uri := fmt.Sprintf("sip:%s@%s", c.to, c.caller.Node.AddrOf(c.callee.Node))
			r, err := Call(ctx, c.caller, c.callee, uri, 3*time.Second)
			requireCall(t, r, err, fmt.Sprintf("sip:%s@%s", c.from, c.callee.Node.AddrOf(c.caller.Node)))
			t.Logf("%s -> %s: set up in %v", c.caller.Node.Name, c.callee.Node.Name, r.Setup)
		}
	})
	// After baresip's calls: its incoming-call events would otherwise
	// include the desk phone's call.
	t.Run("desk phone INVITE", func(t *testing.T) { deskPhoneCall(t, ctx, n, b, pcapDir) })
	t.Run("SIP over TCP refused", func(t *testing.T) { tcpRefused(t, n) })
}

// setTunnelMTU restarts both daemons with mtu in their config.
func (n *Network) setTunnelMTU(ctx context.Context, mtu int) error {
	for _, node := range []*Node{n.A, n.B} {
		node.Config.MTU = mtu
		if err := node.writeConfig(); err != nil {
			return err
		}
		if err := node.Stop(); err != nil {
			return err
		}
		if err := node.Start(ctx); err != nil {
			return err
		}
		if _, err := node.WaitReady(ctx, daemonWait); err != nil {
			return err
		}
	}
	return nil
}

// checkBlackHole shows that the path is what the test claims: a
// 1400-byte ping with Don't Fragment from Pi A to the VPS gets no answer
// and no "fragmentation needed", and A's router counts the ICMP it kept
// back. Without this, a path that quietly carried 1500 bytes would pass
// everything below.
func checkBlackHole(t *testing.T, ctx context.Context, n *Network) {
	t.Helper()
	out, err := n.A.Host.Run(ctx, "ping", "-c", "2", "-W", "1", "-M", "do", "-s", "1372", vpsAddr.Addr().String())
	if err == nil || strings.Contains(out, "Frag needed") || strings.Contains(out, "message too long") {
		t.Fatalf("a 1400-byte DF ping across the 1280-byte path: %v\n%s\nwant it lost without a word", err, out)
	}
	kept, err := n.NATA.BlackHoled(ctx)
	if err != nil || kept == 0 {
		t.Fatalf("router A kept back %d \"fragmentation needed\" (%v), want at least 1", kept, err)
	}
	small, err := n.A.Host.Run(ctx, "ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1252", vpsAddr.Addr().String())
	if err != nil {
		t.Fatalf("a 1280-byte DF ping across the path failed: %v\n%s", err, small)
	}
	t.Logf("path: 1280 bytes pass, 1400 bytes with DF vanish; router A kept back %d ICMP", kept)
}

// deskPhoneCall runs deskphone_uac.xml on A's phone against baresip on B's
// and checks, in the captures on both phones, that the INVITE left the
// caller once, as one packet with Don't Fragment set, reached the callee
// once, that no ICMP told the caller anything, and that the callee's tone
// reached the caller.
func deskPhoneCall(t *testing.T, ctx context.Context, n *Network, callee *Phone, pcapDir string) {
	ctx, cancel := context.WithTimeout(ctx, flowTimeout)
	defer cancel()
	caps := map[*Node]*lab.Capture{}
	for _, node := range []*Node{n.A, n.B} {
		c, err := node.PhoneHost.Capture(ctx, "eth0", filepath.Join(pcapDir, "deskphone-phone"+node.Name+".pcap"), "udp", "or", "icmp")
		if err != nil {
			t.Fatal(err)
		}
		caps[node] = c
		defer c.Stop()
	}
	remote := netip.AddrPortFrom(n.A.AddrOf(n.B), 5060)
	start := time.Now()
	run, err := n.A.PhoneHost.StartSIPp(ctx, "deskphone-uac", lab.SIPpOpts{
		Scenario: filepath.Join(sippDir, "deskphone_uac.xml"), Addr: n.A.PhoneAddr().String(),
		Port: sippPort, MediaPort: sippMediaPort, Remote: remote.String(), Service: "b",
		Keys: map[string]string{"pad": deskPhonePad}, Timeout: 20 * time.Second, RecvTimeout: 8 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Stop()
	runErr := run.Wait(ctx)
	t.Logf("sipp ran %v", time.Since(start).Round(time.Millisecond))
	time.Sleep(200 * time.Millisecond)
	for _, c := range caps {
		c.Stop()
	}
	if runErr != nil {
		t.Errorf("the desk phone's call to %s: %v (captures in %s)", remote, runErr, pcapDir)
	}

	sent := invites(t, caps[n.A].Path(), n.A.PhoneAddr())
	got := invites(t, caps[n.B].Path(), n.B.AddrOf(n.A))
	for _, s := range sent {
		t.Logf("phone A sent an INVITE at %s: %d bytes of IP, DF %v, fragment %v", s.at.Format("15:04:05.000"), s.size, s.df, s.frag)
	}
	for _, g := range got {
		t.Logf("phone B received an INVITE at %s (%d bytes of SIP)", g.at.Format("15:04:05.000"), g.sip)
	}
	switch {
	case len(sent) == 0:
		t.Fatal("phone A sent no INVITE")
	case sent[0].frag || !sent[0].df || sent[0].size <= 1420 || sent[0].size > 1500:
		t.Errorf("the INVITE left phone A as %+v, want one packet over 1420 bytes with DF set: the flow does not test issue 15.3", sent[0])
	}
	if len(sent) != 1 || len(got) != 1 {
		t.Errorf("phone A sent the INVITE %d times and phone B received it %d times, want once each: the first one must get through", len(sent), len(got))
	}
	if len(got) > 0 && len(sent) > 0 {
		t.Logf("INVITE from phone A to phone B in %v", got[0].at.Sub(sent[0].at).Round(100*time.Microsecond))
	}
	if icmp := fragNeeded(t, caps[n.A].Path()); icmp != 0 {
		t.Errorf("phone A received %d ICMP \"fragmentation needed\", want none", icmp)
	}
	ds, err := lab.ReadDatagrams(caps[n.A].Path())
	if err != nil {
		t.Fatal(err)
	}
	var fromB []lab.Datagram
	for _, d := range ds {
		if d.Src.Addr() == n.A.AddrOf(n.B) && d.Dst.Addr() == n.A.PhoneAddr() {
			fromB = append(fromB, d)
		}
	}
	au, err := rtpAudio(rtp(fromB), start, time.Now(), filepath.Join(pcapDir, "deskphone-at-A"))
	if err == nil {
		err = lab.CheckTone(au, callee.ToneHz)
	}
	if err != nil {
		t.Errorf("audio phone A received from B: %v", err)
	} else {
		t.Logf("audio phone A received from B: %v", au)
	}
	atB, err := lab.ReadDatagrams(caps[n.B].Path())
	if err != nil {
		t.Fatal(err)
	}
	var toB int
	for _, d := range rtp(atB) {
		if d.Src.Addr() == n.B.AddrOf(n.A) {
			toB++
		}
	}
	if toB < 50 {
		t.Errorf("phone B received %d RTP packets from A's g711a.pcap, want ≥ 50", toB)
	}
}

type sentInvite struct {
	at        time.Time
	size, sip int
	df, frag  bool
}

// invites lists the IPv4 packets in a phone's capture that carry the start
// of an INVITE from src, whole or as a first fragment.
func invites(t *testing.T, path string, src netip.Addr) []sentInvite {
	t.Helper()
	var out []sentInvite
	eachIPv4(t, path, func(at time.Time, ip *layers.IPv4) {
		if ip.Protocol != layers.IPProtocolUDP || ip.FragOffset != 0 || netip.AddrFrom4([4]byte(ip.SrcIP.To4())) != src || len(ip.Payload) < 8 {
			return
		}
		if sip := ip.Payload[8:]; bytes.HasPrefix(sip, []byte("INVITE ")) {
			out = append(out, sentInvite{at: at, size: int(ip.Length), sip: len(sip),
				df: ip.Flags&layers.IPv4DontFragment != 0, frag: ip.Flags&layers.IPv4MoreFragments != 0})
		}
	})
	return out
}

// fragNeeded counts the ICMP "fragmentation needed" in a capture.
func fragNeeded(t *testing.T, path string) int {
	t.Helper()
	n := 0
	eachIPv4(t, path, func(_ time.Time, ip *layers.IPv4) {
		if ip.Protocol == layers.IPProtocolICMPv4 && len(ip.Payload) >= 2 && ip.Payload[0] == 3 && ip.Payload[1] == 4 {
			n++
		}
	})
	return n
}

func eachIPv4(t *testing.T, path string, fn func(time.Time, *layers.IPv4)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			return
		}
		p := gopacket.NewPacket(data, r.LinkType(), gopacket.Default)
		if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
			fn(ci.Timestamp, ip)
		}
	}
}

// tcpRefused connects from A's phone to B's phone's SIP port over TCP, as
// a phone set to SIP over TCP would: the Pi must refuse it at once with a
// reset (pkg/firewall), not leave the phone waiting. How long the refusal
// took is logged; the test asks only that it was a refusal.
func tcpRefused(t *testing.T, n *Network) {
	to := netip.AddrPortFrom(n.A.AddrOf(n.B), 5060)
	start := time.Now()
	_, err := lab.In(n.A.PhoneHost, func() (net.Conn, error) {
		return net.DialTimeout("tcp", to.String(), 10*time.Second)
	})
	took := time.Since(start)
	t.Logf("TCP connect from phone A to %s: %v after %v", to, err, took.Round(10*time.Microsecond))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("TCP connect to the far phone's SIP port = %v, want connection refused (a TCP reset from the Pi)", err)
	}
}
