//go:build linux && lab

package peerlab

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/supervisor"
)

// A scale network is one Pi (the node under test) with many peers: the
// first half answer (each a plain wireguard-go device inside the test
// process, in a "friends" namespace on the same Internet bridge, pinging
// the node's phone now and then), the rest have static endpoints that never
// answer (an address on the bridge nobody holds: friends whose Pis are
// switched off). The test process's own devices are not what is measured;
// only the node's daemon is.
type scaleNet struct {
	lab     *lab.Lab
	node    *Node
	friends *lab.Host
	// online are the answering peers, by the node's index for them.
	online map[int]*fakePeer
	// nextPort is the friends' next UDP port.
	nextPort int
	pings    atomic.Int64
	replies  atomic.Int64
}

var (
	scaleNodeAddr    = netip.MustParseAddr("198.51.100.1")
	scaleFriendsAddr = netip.MustParseAddr("198.51.100.2")
	// scaleNobody is on the bridge's subnet and held by no host.
	scaleNobody = netip.MustParseAddr("198.51.100.250")
)

// buildScale makes the network with n peers, the first online of them
// answering, and writes the node's config; the daemon is not started.
func buildScale(ctx context.Context, l *lab.Lab, n, online int) (*scaleNet, error) {
	inet, err := l.Bridge("inet")
	if err != nil {
		return nil, err
	}
	prefix := "pl" + strconv.FormatInt(int64(os.Getpid()), 36) + "s"
	// The phone port is a switch with two phones: the one the answering
	// peers ping, on line 1 typed by hand (static: known before the daemon
	// starts), and a Yealink that gets its line by DHCP when the bench
	// fetches its phonebook (scaleanswers_lab_test.go).
	node, err := newNode(l, onSegment(inet, scaleNodeAddr), "S", prefix, peerlinedBin, []string{"static", t19p})
	if err != nil {
		return nil, err
	}
	phone := node.Handsets[0]
	phone.Line, node.Line, node.Config.Lines = 1, 1, []int{1}
	if err := phone.Host.Addr("eth0", netip.PrefixFrom(numplan.Phone(0, 1), 30).String()); err != nil {
		return nil, err
	}
	if err := phone.Host.Route("default", "via", numplan.LineGateway(1).String()); err != nil {
		return nil, err
	}
	friends, err := l.Host("friends")
	if err != nil {
		return nil, err
	}
	if _, err := inet.Attach(friends, "wan", netip.PrefixFrom(scaleFriendsAddr, wanPrefix).String()); err != nil {
		return nil, err
	}
	s := &scaleNet{lab: l, node: node, friends: friends, online: map[int]*fakePeer{}, nextPort: 40000}
	if err := l.OnClose(func() error { s.closeFakes(); return nil }); err != nil {
		return nil, err
	}
	for i := 1; i <= n; i++ {
		if i <= online {
			if _, err := s.addOnline(i); err != nil {
				return nil, err
			}
			continue
		}
		key, err := nodekey.Generate()
		if err != nil {
			return nil, err
		}
		node.Config.Peers = append(node.Config.Peers, config.Peer{
			Index:     i,
			Name:      fmt.Sprintf("off%d", i),
			PublicKey: key.Public(),
			Endpoint:  netip.AddrPortFrom(scaleNobody, uint16(50000+i)).String(),
			Keepalive: 25,
		})
	}
	return s, node.writeConfig()
}

// addOnline starts an answering peer and lists it in the node's config
// (not written) as index i.
func (s *scaleNet) addOnline(i int) (*fakePeer, error) {
	fp, err := newFakePeer(s.friends, s.nextPort, s.node.key.Public(), netip.AddrPortFrom(scaleNodeAddr, basePort))
	if err != nil {
		return nil, err
	}
	s.nextPort++
	s.online[i] = fp
	s.node.Config.Peers = append(s.node.Config.Peers, config.Peer{
		Index:     i,
		Name:      fmt.Sprintf("on%d", i),
		PublicKey: fp.key.Public(),
		Endpoint:  netip.AddrPortFrom(scaleFriendsAddr, uint16(fp.port)).String(),
		Keepalive: 25,
	})
	return fp, nil
}

func (s *scaleNet) closeFakes() {
	for _, fp := range s.online {
		fp.close()
	}
}

// start runs the node's daemon (without -v: WireGuard's debug log for 253
// peers is itself a load) and returns when it was started.
func (s *scaleNet) start(ctx context.Context) error {
	p, err := s.node.Host.Start(context.WithoutCancel(ctx), "peerlined", s.node.peerlined, "-config", s.node.ConfigPath)
	if err != nil {
		return err
	}
	s.node.Daemon = p
	return nil
}

// waitAllUp polls the status file until the daemon is ready with every
// configured peer's tunnel up, or timeout; it returns the last status.
func (s *scaleNet) waitAllUp(ctx context.Context, timeout time.Duration) (*supervisor.Status, error) {
	var st *supervisor.Status
	want := len(s.node.Config.Peers)
	err := s.node.waitFor(ctx, timeout, "not every tunnel up", func() (bool, string) {
		var err error
		st, err = s.node.Status()
		if err != nil || st.PID != s.node.Daemon.Pid() {
			return false, fmt.Sprint("no status of this run yet ", err)
		}
		up := tunnelsUp(st)
		return st.Ready && up == want && len(st.Peers) == want, fmt.Sprintf("ready=%v, %d of %d tunnels up%s", st.Ready, up, want, firstError(st))
	})
	return st, err
}

func tunnelsUp(st *supervisor.Status) int {
	n := 0
	for _, p := range st.Peers {
		if p.Up {
			n++
		}
	}
	return n
}

func firstError(st *supervisor.Status) string {
	for _, p := range st.Peers {
		if p.Error != "" {
			return fmt.Sprintf("; peer %d: %s", p.Index, p.Error)
		}
	}
	return ""
}

// waitHandshakes waits until every answering peer has a session with the
// node, as the peers' own devices report it.
func (s *scaleNet) waitHandshakes(ctx context.Context, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		n := 0
		for _, fp := range s.online {
			if fp.handshaked() {
				n++
			}
		}
		if n == len(s.online) {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return n, fmt.Errorf("%d of %d answering peers have a session with the node after %v", n, len(s.online), timeout)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// onlineByIndex is the answering peers in the order of their index.
func (s *scaleNet) onlineByIndex() []*fakePeer {
	idx := slices.Sorted(maps.Keys(s.online))
	fps := make([]*fakePeer, len(idx))
	for k, i := range idx {
		fps[k] = s.online[i]
	}
	return fps
}

// runTraffic makes each of fps ping the node's phone every every, spread
// over the interval, until ctx ends. The node rewrites the ping to its
// phone (10.0.1.1), which answers back through the same tunnel.
func (s *scaleNet) runTraffic(ctx context.Context, fps []*fakePeer, every time.Duration) {
	for _, fp := range fps {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-fp.tun.Inbound:
					s.replies.Add(1)
				}
			}
		}()
	}
	if len(fps) == 0 {
		return
	}
	tick := time.NewTicker(every / time.Duration(len(fps)))
	defer tick.Stop()
	src := netip.AddrFrom4([4]byte{10, 255, 1, 1})
	dst := netip.AddrFrom4([4]byte{10, 254, byte(s.node.Line), 1})
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case fps[k%len(fps)].tun.Outbound <- scalePing(dst, src, uint16(k)):
			s.pings.Add(1)
		default:
		}
	}
}

// procStat is what /proc says about a process.
type procStat struct {
	rssKB   int64
	cpuTick int64 // user + system, in clock ticks
	threads int
}

func readProcStat(pid int) (procStat, error) {
	var ps procStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			ps.rssKB, _ = strconv.ParseInt(f[0], 10, 64)
		case "Threads":
			ps.threads, _ = strconv.Atoi(f[0])
		}
	}
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps, err
	}
	// Fields after the command (which may hold spaces) in parentheses.
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return ps, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	ps.cpuTick = ut + st
	return ps, nil
}

// clockTicks is USER_HZ, 100 on every Linux we run on.
const clockTicks = 100

// hup tells the daemon to re-read its config.
func (s *scaleNet) hup() error {
	return syscall.Kill(s.node.Daemon.Pid(), syscall.SIGHUP)
}

// fakePeer is an answering friend: a wireguard-go device on a channel TUN
// with a one-packet Bind over its own UDP socket, so that many of them fit
// in the test process.
type fakePeer struct {
	key     nodekey.Key
	nodePub nodekey.Key
	port    int
	tun     *tuntest.ChannelTUN
	dev     *device.Device
	sock    *net.UDPConn
}

func newFakePeer(h *lab.Host, port int, nodePub nodekey.Key, nodeEP netip.AddrPort) (*fakePeer, error) {
	key, err := nodekey.Generate()
	if err != nil {
		return nil, err
	}
	pc, err := h.ListenPacket("udp4", netip.AddrPortFrom(scaleFriendsAddr, uint16(port)).String())
	if err != nil {
		return nil, err
	}
	fp := &fakePeer{key: key, nodePub: nodePub, port: port, tun: tuntest.NewChannelTUN()}
	quiet := &device.Logger{Verbosef: device.DiscardLogf, Errorf: device.DiscardLogf}
	fp.sock = pc.(*net.UDPConn)
	fp.dev = device.NewDevice(fp.tun.TUN(), &oneBind{c: fp.sock}, quiet)
	cfg := fmt.Sprintf("private_key=%s\npublic_key=%s\nendpoint=%s\npersistent_keepalive_interval=25\nallowed_ip=10.254.0.0/16\nallowed_ip=10.255.0.0/16\n",
		key.Hex(), nodePub.Hex(), nodeEP)
	if err := fp.dev.IpcSet(cfg); err != nil {
		fp.close()
		return nil, err
	}
	if err := fp.dev.Up(); err != nil {
		fp.close()
		return nil, err
	}
	return fp, nil
}

func (fp *fakePeer) handshaked() bool {
	s, err := fp.dev.IpcGet()
	return err == nil && strings.Contains(s, "last_handshake_time_sec=") && !strings.Contains(s, "last_handshake_time_sec=0\n")
}

// quiet turns the peer's keepalive off: an idle peer that sends nothing,
// as a peerlined whose tunnel carries no data does (pkg/wgtunnel).
func (fp *fakePeer) quiet() error {
	return fp.dev.IpcSet(fmt.Sprintf("public_key=%s\npersistent_keepalive_interval=0\n", fp.nodePub.Hex()))
}

func (fp *fakePeer) close() {
	fp.dev.Close()
	fp.sock.Close()
}

// oneBind is a conn.Bind over one UDP socket opened beforehand (in the
// friends' namespace), one packet per call. Close only unblocks the reader
// (wireguard-go closes a Bind before it first opens it); the socket is
// closed with the device.
type oneBind struct {
	c *net.UDPConn
}

type oneEP netip.AddrPort

func (e oneEP) ClearSrc()           {}
func (e oneEP) SrcToString() string { return "" }
func (e oneEP) DstToString() string { return netip.AddrPort(e).String() }
func (e oneEP) DstToBytes() []byte {
	b, _ := netip.AddrPort(e).MarshalBinary()
	return b
}
func (e oneEP) DstIP() netip.Addr { return netip.AddrPort(e).Addr() }
func (e oneEP) SrcIP() netip.Addr { return netip.Addr{} }

func (b *oneBind) Open(uint16) ([]conn.ReceiveFunc, uint16, error) {
	if err := b.c.SetReadDeadline(time.Time{}); err != nil {
		return nil, 0, err
	}
	recv := func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n, ap, err := b.c.ReadFromUDPAddrPort(packets[0])
		if err != nil {
			return 0, net.ErrClosed
		}
		sizes[0], eps[0] = n, oneEP(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		return 1, nil
	}
	return []conn.ReceiveFunc{recv}, uint16(b.c.LocalAddr().(*net.UDPAddr).Port), nil
}

func (b *oneBind) Close() error { return b.c.SetReadDeadline(time.Now()) }

func (b *oneBind) SetMark(uint32) error { return nil }
func (b *oneBind) BatchSize() int       { return 1 }

func (b *oneBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	for _, p := range bufs {
		if _, err := b.c.WriteToUDPAddrPort(p, netip.AddrPort(ep.(oneEP))); err != nil {
			return err
		}
	}
	return nil
}

func (b *oneBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return oneEP(ap), nil
}

// TestScale253 brings up a node with 253 peers (8 answering, the rest
// switched off) on default sysctls: every tunnel must come up and the node
// report READY, the answering peers must get a session, and `wg show`
// must work for the first and the last device. Timing and memory are
// BenchmarkScale's business; the timeouts here only bound a hung run.
func TestScale253(t *testing.T) {
	l := newLab(t)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	s, err := buildScale(ctx, l, 253, 8)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.start(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := s.waitAllUp(ctx, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("253 tunnels up and READY after %v", time.Since(start).Round(time.Millisecond))
	if n, err := s.waitHandshakes(ctx, time.Minute); err != nil {
		t.Fatalf("%v (%d with a session)", err, n)
	}
	// Traffic crosses the answering peers' tunnels both ways: their pings
	// reach the node's phone and its answers come back.
	tctx, stop := context.WithTimeout(ctx, 5*time.Second)
	s.runTraffic(tctx, s.onlineByIndex(), time.Second)
	stop()
	if p, r := s.pings.Load(), s.replies.Load(); r < p/2 {
		t.Errorf("%d of %d pings from the answering peers to the node's phone answered, want most", r, p)
	}
	for _, i := range []int{1, 253} {
		dev := config.Names{Prefix: s.node.Config.Prefix}.Device(i)
		out, err := s.node.Host.Run(ctx, "wg", "show", dev, "endpoints")
		if err != nil {
			t.Fatalf("wg show %s: %v", dev, err)
		}
		want := st.Peers[i-1].Endpoint
		if !strings.Contains(out, strings.TrimSpace(want)) || want == "" {
			t.Errorf("wg show %s endpoints = %q, want the peer's endpoint %q", dev, out, want)
		}
	}
}

// scalePing is an IPv4 ICMP echo request from src to dst. (tuntest.Ping
// gets the ICMP checksum wrong, and the kernel drops its pings.)
func scalePing(dst, src netip.Addr, seq uint16) []byte {
	pkt := make([]byte, 28)
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	pkt[8], pkt[9] = 64, 1 // TTL, ICMP
	copy(pkt[12:16], src.AsSlice())
	copy(pkt[16:20], dst.AsSlice())
	binary.BigEndian.PutUint16(pkt[10:], inetChecksum(pkt[:20]))
	pkt[20] = 8                                  // echo request
	binary.BigEndian.PutUint16(pkt[24:], 0x706c) // identifier
	binary.BigEndian.PutUint16(pkt[26:], seq)
	binary.BigEndian.PutUint16(pkt[22:], inetChecksum(pkt[20:]))
	return pkt
}

// inetChecksum is RFC 1071's.
func inetChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
