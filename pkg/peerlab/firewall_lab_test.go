//go:build linux && lab

package peerlab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/firewall"
	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/netsetup"
)

// The uplink LAN behind Pi A in the attack tests: a home network numbered
// 10.0.0.0/24, which the old peer rule's mask and the Pi's unfiltered
// forwarding let a peer reach (issue 13 item 5).
var (
	lanHostAddr = netip.MustParsePrefix("10.0.0.1/24")
	lanPiAddr   = netip.MustParsePrefix("10.0.0.2/24")
)

// addUplinkLAN gives Pi A a second uplink, a LAN 10.0.0.0/24 with a host
// at 10.0.0.1 that is also A's default router, and starts capturing every
// IPv4 packet that reaches that host. Stop the capture before reading it.
func addUplinkLAN(t *testing.T, ctx context.Context, n *Network) *lab.Capture {
	t.Helper()
	lan, err := n.Lab.Host("lanA")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Lab.Veth(n.A.Host, "lan0", lan, "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := n.A.Host.Addr("lan0", lanPiAddr.String()); err != nil {
		t.Fatal(err)
	}
	if err := lan.Addr("eth0", lanHostAddr.String()); err != nil {
		t.Fatal(err)
	}
	if err := n.A.Host.Route("default", "via", lanHostAddr.Addr().String()); err != nil {
		t.Fatal(err)
	}
	c, err := lan.Capture(ctx, "eth0", filepath.Join(n.Lab.Dir(), "lanA.pcap"), "ip", "and", "not", "src", lanPiAddr.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	return c
}

// rawSender opens a raw IPv4 socket (the caller writes the IP header) in
// namespace ns: the hostile peer's own namespace for its tunnel to us,
// where it can send whatever its rewriter then maps onto the wire.
func rawSender(t *testing.T, ns string) int {
	t.Helper()
	var fd int
	err := netsetup.Do(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		return err
	})
	if err != nil {
		t.Fatalf("raw socket in %s: %v", ns, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// sendRaw sends an IPv4 packet as it is; the kernel fills in the header
// checksum.
func sendRaw(t *testing.T, fd int, pkt []byte) {
	t.Helper()
	dst := unix.SockaddrInet4{Addr: [4]byte(pkt[16:20])}
	if err := unix.Sendto(fd, pkt, 0, &dst); err != nil {
		t.Fatalf("sending %v -> %v: %v", netip.AddrFrom4([4]byte(pkt[12:16])), dst.Addr, err)
	}
}

func ipv4Header(src, dst netip.Addr, proto byte, payload []byte) []byte {
	p := make([]byte, 20, 20+len(payload))
	p[0], p[8], p[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(p[2:], uint16(20+len(payload)))
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	return append(p, payload...)
}

// udpPacket is a UDP datagram with no checksum (0 means none in IPv4).
func udpPacket(src, dst netip.Addr, sport, dport uint16, payload string) []byte {
	u := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	return ipv4Header(src, dst, 17, append(u, payload...))
}

func echoRequest(src, dst netip.Addr, id uint16) []byte {
	m := []byte{8, 0, 0, 0, 0, 0, 0, 1, 'p', 'e', 'e', 'r'}
	binary.BigEndian.PutUint16(m[4:], id)
	var sum uint32
	for i := 0; i < len(m); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(m[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(m[2:], ^uint16(sum))
	return ipv4Header(src, dst, 1, m)
}

// arrivals collects the datagrams pc receives until it has been quiet for
// wait, as "payload from source".
func arrivals(pc net.PacketConn, wait time.Duration) []string {
	var got []string
	buf := make([]byte, 2048)
	for {
		pc.SetReadDeadline(time.Now().Add(wait))
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return got
		}
		got = append(got, fmt.Sprintf("%s from %s", buf[:n], from.(*net.UDPAddr).IP))
	}
}

// ipPackets lists the IPv4 packets of a capture as "src > dst proto".
func ipPackets(t *testing.T, c *lab.Capture) []string {
	t.Helper()
	if err := c.Stop(); err != nil {
		t.Logf("stopping capture: %v", err)
	}
	f, err := os.Open(c.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
			out = append(out, fmt.Sprintf("%v > %v %v", ip.SrcIP, ip.DstIP, ip.Protocol))
		}
	}
}

// TestHostilePeer is issue 13 items 4 and 5 end to end: B, paired with A,
// turns hostile and sends from its own namespace for A's tunnel whatever
// its rewriter maps onto the wire. Posing as one of A's own lines or as A's
// Pi, and reaching past A's phones (another address of A's plan, the uplink
// LAN and the Internet behind A) must all fail; a plain datagram from B's
// phone to A's phone, sent the same way, is the control that shows the
// injection works.
func TestHostilePeer(t *testing.T) {
	ctx, n := newNetwork(t, 2*time.Minute)
	lanCap := addUplinkLAN(t, ctx, n)
	// B's namespace for its tunnel to A (B numbers A 4): 10.4.s.p there
	// is A's line s, 10.0.s.p B's own.
	fd := rawSender(t, config.Names{Prefix: n.B.Config.Prefix}.Namespace(4))
	bPhone := netip.MustParseAddr("10.0.1.1")
	at := func(s, p byte) netip.Addr { return netip.AddrFrom4([4]byte{10, 4, s, p}) }

	phone, err := n.A.PhoneHost.ListenPacket("udp4", "10.0.1.1:7100")
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	before, err := n.A.Status()
	if err != nil {
		t.Fatal(err)
	}
	sendRaw(t, fd, udpPacket(bPhone, at(1, 1), 5004, 7100, "control"))
	sendRaw(t, fd, udpPacket(at(2, 1), at(1, 1), 5060, 7100, "as A's line 2"))
	sendRaw(t, fd, udpPacket(at(1, 2), at(1, 1), 5060, 7100, "as A's Pi"))
	sendRaw(t, fd, udpPacket(at(0, 1), at(1, 1), 5060, 7100, "as A's LAN"))
	for _, dst := range []netip.Addr{at(1, 5), at(0, 1), at(255, 1), at(0, 2)} {
		sendRaw(t, fd, udpPacket(bPhone, dst, 5004, 7101, "transit"))
		sendRaw(t, fd, echoRequest(bPhone, dst, 7))
	}
	got := arrivals(phone, 1500*time.Millisecond)
	if want := "control from " + n.A.AddrOf(n.B).String(); len(got) != 1 || got[0] != want {
		t.Errorf("A's phone received %q, want only %q", got, want)
	}
	if pkts := ipPackets(t, lanCap); len(pkts) != 0 {
		t.Errorf("the host on A's uplink LAN (its default router) received from the peer:\n%s\nwant nothing", strings.Join(pkts, "\n"))
	}
	after, err := n.A.StatusSince(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Peers) != 1 || after.Peers[0].Rewrite == nil || len(before.Peers) != 1 || before.Peers[0].Rewrite == nil {
		t.Fatalf("A's status has no rewriter counters: %+v", after.Peers)
	}
	if d := after.Peers[0].Rewrite.Inbound.Dropped.SourceOurs - before.Peers[0].Rewrite.Inbound.Dropped.SourceOurs; d != 3 {
		t.Errorf("A's rewriter counted %d packets with a source in A's own plan, want 3", d)
	}
	// The Pi itself was never reachable; it still is not, at any address.
	if out, err := n.B.PhoneHost.Run(ctx, "ping", "-c", "1", "-W", "1", "10.4.0.2"); err == nil {
		t.Errorf("B's phone reached A's Pi on its uplink LAN address:\n%s", out)
	}
}

// TestPhonePortPolicy is issue 13 item 6: a device on the phone port
// reaches the Internet only when phones.internet says so, and then
// masqueraded behind the Pi's uplink address.
func TestPhonePortPolicy(t *testing.T) {
	ctx, n := newNetwork(t, 2*time.Minute)
	inet, err := n.Lab.Host("inetA")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Inet.Attach(inet, "eth0", "198.51.100.50/24"); err != nil {
		t.Fatal(err)
	}
	// The probe: one UDP datagram and one ping from A's phone to a host on
	// the Internet; what arrives there, and from which address.
	probe := func(port int) (arrived []string, pinged bool) {
		t.Helper()
		pc, err := inet.ListenPacket("udp4", fmt.Sprintf(":%d", port))
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		c, err := n.A.PhoneHost.Dial(ctx, "udp4", fmt.Sprintf("198.51.100.50:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("probe"))
		arrived = arrivals(pc, time.Second)
		_, err = n.A.PhoneHost.Run(ctx, "ping", "-c", "1", "-W", "1", "198.51.100.50")
		return arrived, err == nil
	}
	if got, pinged := probe(7300); len(got) != 0 || pinged {
		t.Errorf("by default the phone reached the Internet: UDP %q, ping answered %v; want nothing", got, pinged)
	}
	// The phone still reaches the Pi's services and the peer's phone.
	if !reaches(t, ctx, "udp", n.A.PhoneHost, n.A.Host, "10.0.1.2:7301", "10.0.1.2:7301") {
		t.Error("the phone no longer reaches the Pi on its line address")
	}
	if !reaches(t, ctx, "udp", n.A.PhoneHost, n.B.PhoneHost, "10.7.1.1:7302", "10.0.1.1:7302") {
		t.Error("the phone no longer reaches the peer's phone")
	}

	n.A.Config.Phones.Internet = true
	if err := n.A.writeConfig(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(n.A.Daemon.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for port := 7310; ; port++ {
		got, pinged := probe(port)
		want := "probe from " + n.A.WAN.String()
		if len(got) == 1 && got[0] == want && pinged {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with phones.internet the phone's probe arrived as %q (ping answered %v), want %q, masqueraded; see %s", got, pinged, want, n.A.daemonLog())
		}
	}
}

// TestFirewallRestoredAfterFlush is the last part of issue 13 item 6: the
// node's table and a peer's, flushed behind the daemon's back, are loaded
// again at the next periodic check (30 s), and calls work again.
func TestFirewallRestoredAfterFlush(t *testing.T) {
	ctx, n := newNetwork(t, 2*time.Minute)
	peerNS := config.Names{Prefix: n.A.Config.Prefix}.Namespace(7)
	nft := func(ns string, args ...string) (string, error) {
		argv := append([]string{"nft"}, args...)
		if ns != "" {
			argv = append([]string{"ip", "netns", "exec", ns}, argv...)
		}
		out, err := n.A.Host.Run(ctx, argv...)
		return out, err
	}
	rules := map[string]string{}
	for _, ns := range []string{"", peerNS} {
		out, err := nft(ns, "list", "table", "inet", firewall.Table)
		if err != nil || !strings.Contains(out, "accept") {
			t.Fatalf("nft list table inet %s in %q = %v\n%s\nwant the daemon's rules", firewall.Table, ns, err, out)
		}
		rules[ns] = out
	}
	works := func(port int) bool {
		return reaches(t, ctx, "udp", n.B.PhoneHost, n.A.PhoneHost, fmt.Sprintf("10.4.1.1:%d", port), fmt.Sprintf("10.0.1.1:%d", port))
	}
	if !works(7400) {
		t.Fatal("B's phone does not reach A's phone before the flush")
	}
	flushed := time.Now()
	for _, ns := range []string{"", peerNS} {
		if out, err := nft(ns, "flush", "table", "inet", firewall.Table); err != nil {
			t.Fatalf("nft flush table inet %s in %q: %v\n%s", firewall.Table, ns, err, out)
		}
	}
	if works(7401) {
		t.Fatal("B's phone still reaches A's phone with the tables flushed; the test would prove nothing")
	}
	// One check interval (30 s) and slack for a loaded machine.
	deadline := flushed.Add(45 * time.Second)
	for port := 7402; !works(port); port++ {
		if time.Now().After(deadline) {
			t.Fatalf("calls did not work again within 45 s of the flush; see %s", n.A.daemonLog())
		}
	}
	t.Logf("restored %v after the flush", time.Since(flushed).Round(time.Second))
	// Each table was loaded again once, and only because it changed: an
	// unchanged table is listed at every check, never reloaded.
	log, err := os.ReadFile(n.A.daemonLog())
	if err != nil {
		t.Fatal(err)
	}
	if c := strings.Count(string(log), "firewall changed behind peerlined's back"); c != 2 {
		t.Errorf("A's log tells of %d tables restored, want 2 (the node's and peer 7's); see %s", c, n.A.daemonLog())
	}
	for ns, want := range rules {
		if out, err := nft(ns, "list", "table", "inet", firewall.Table); err != nil || out != want {
			t.Errorf("after the restore, table in %q = %v\n%s\nwant as before the flush:\n%s", ns, err, out, want)
		}
	}
}

// TestNodeFirewallLifecycle: the node's table is there while the daemon
// runs, goes with SIGTERM, stays after kill -9 (the Pi stays closed), and
// peerlined -cleanup removes it.
func TestNodeFirewallLifecycle(t *testing.T) {
	l := newLab(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	inet, err := l.Bridge("inet")
	if err != nil {
		t.Fatal(err)
	}
	node, err := newNode(l, onSegment(inet, netip.MustParseAddr("198.51.100.1")), "A", fmt.Sprintf("plf%xa", os.Getpid()%0xfff), peerlinedBin, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := node.writeConfig(); err != nil {
		t.Fatal(err)
	}
	table := func() bool {
		t.Helper()
		out, err := node.Host.Run(ctx, "nft", "list", "tables")
		if err != nil {
			t.Fatalf("nft list tables: %v\n%s", err, out)
		}
		return strings.Contains(out, "table inet "+firewall.Table)
	}
	start := func() {
		t.Helper()
		if err := node.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := node.WaitReady(ctx, daemonWait); err != nil {
			t.Fatal(err)
		}
		if !table() {
			t.Fatal("daemon ready without its node firewall")
		}
	}
	start()
	if err := node.Stop(); err != nil {
		t.Fatal(err)
	}
	if table() {
		t.Error("node firewall left after SIGTERM")
	}
	start()
	if err := syscall.Kill(node.Daemon.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-node.Daemon.Done()
	node.Daemon = nil
	if !table() {
		t.Error("node firewall gone after kill -9; the Pi would forward unfiltered until the next start")
	}
	if out, err := node.Host.Run(ctx, peerlinedBin, "-config", node.ConfigPath, "-cleanup"); err != nil {
		t.Fatalf("peerlined -cleanup: %v\n%s", err, out)
	}
	if table() {
		t.Error("node firewall left after peerlined -cleanup")
	}
}
