//go:build linux && lab

package peerlab

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/rewrite"
)

// The rewriter's cost in the lab (issue 4, "Benchmarks"): what a tunnel
// with the rewriter carries and how much later its packets arrive, compared
// with the same tunnel without it, and how many G.711 calls one node
// carries. These are benchmarks, not tests: `make bench-rewrite` runs them
// as root with -benchtime=1x; each runs its measurement once, however large
// b.N is, and reports its figures with b.ReportMetric.
//
// The tunnel without the rewriter is a second two-Pi network whose daemons
// run with PEERLINED_BENCH_NO_REWRITE=1, which has the supervisor hand
// wireguard-go the bare TUN. Without the address map the phones' own
// addresses cannot cross it (WireGuard routes only the wire prefixes, and
// the far firewall forwards only to 10.0.s.1), so on that network the
// phones send in wire form themselves, 10.255.1.1 -> 10.254.1.1, along
// routes that benchPlainRoutes adds; the daemons' firewalls name the wire
// plan in the place of the local one (firewall.Node.NoRewrite), rule for
// rule, so a packet meets as many rules as on the network with the
// rewriter. Everything else, processes, links, MTU, is
// the same on both networks. Capacity is measured on one network after the
// other, latency on both at once.

// benchNoRewriteEnv is the switch peerlined's command line (pkg/daemon)
// reads to have the supervisor leave the rewriter out.
const benchNoRewriteEnv = "PEERLINED_BENCH_NO_REWRITE"

const (
	// benchRecvPort is where the receiving phone listens; the sending
	// phone's flows come from the ports above it.
	benchRecvPort = 41000
	// benchFlows is how many RTP streams share the load, each with its own
	// source port, sequence numbers and SSRC.
	benchFlows = 8
	// benchPayload is a G.711 RTP packet: 12-byte header, 20 ms of audio.
	benchPayload = 12 + 160
	// benchBatch is how many packets the sender hands the kernel in one
	// sendmmsg when it sends as fast as it can.
	benchBatch = 32

	// benchRounds latency measurements of benchRunTime each, both networks
	// at once; the first benchWarmup of each is not counted (queues
	// filling, ARP).
	benchRounds  = 8
	benchRunTime = 2500 * time.Millisecond
	benchWarmup  = 500 * time.Millisecond
	// benchCapRounds capacity measurements, one network after the other,
	// benchCapTime each of which the first benchCapWarmup is not counted.
	// Short and many: the other work on a shared machine changes by the
	// second, and the ratio is taken within each round.
	benchCapRounds = 24
	benchCapTime   = 500 * time.Millisecond
	benchCapWarmup = 100 * time.Millisecond
	// benchLatencyRate is the packet rate of the latency runs: a few dozen
	// calls' worth, far below capacity, so that queues stay empty and the
	// difference is the rewriter's work, not waiting behind other packets.
	benchLatencyRate = 2000
)

// benchPath is one network's way from phone A to phone B.
type benchPath struct {
	name     string
	from, to *lab.Host
	// src is the sending phone's address, dst where it sends, recv the
	// address the receiving phone listens on.
	src, dst, recv netip.Addr

	send []*net.UDPConn
	rcv  *net.UDPConn
	seq  [benchFlows]uint16
	// run tags the packets of one measurement, so that stragglers of the
	// one before are not counted.
	run byte
}

// benchRun is what one measurement of one path saw.
type benchRun struct {
	sent, received int
	// counted is how many arrived inside the measured window, of window
	// length.
	counted int
	window  time.Duration
	// latencies are one-way times, send call to the receiving socket's
	// kernel timestamp, in nanoseconds.
	latencies []int64
}

func (r benchRun) pps() float64 { return float64(r.counted) / r.window.Seconds() }

// BenchmarkRewriteLabTunnel measures a tunnel with the rewriter against the
// same tunnel without it. Capacity: RTP-sized packets per second through
// phone -> Pi A -> tunnel -> Pi B -> phone when the sender sends as fast as
// it can, the two networks in turn, ABBA. Latency: one-way, at a low rate,
// both networks at once, packet by packet, so that they share every moment
// of the machine's load.
func BenchmarkRewriteLabTunnel(b *testing.B) {
	labtest.RequireRoot(b)
	labtest.RequireTools(b, "wg", "nsenter", "nft")
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer cancel()
	plainBin, err := benchPlainDaemon(b.TempDir())
	if err != nil {
		benchFatal(b, err)
	}
	id := strconv.FormatInt(int64(os.Getpid()%(36*36*36)), 36)
	nr, err := Build(ctx, labtest.New(b), Options{Peerlined: peerlinedBin, Prefix: "bnr" + id})
	if err != nil {
		benchFatal(b, err)
	}
	np, err := Build(ctx, labtest.New(b), Options{Peerlined: plainBin, Prefix: "bnp" + id})
	if err != nil {
		benchFatal(b, err)
	}
	if err := benchCheckRewriter(nr, true); err != nil {
		benchFatal(b, err)
	}
	if err := benchCheckRewriter(np, false); err != nil {
		benchFatal(b, err)
	}
	if err := benchPlainRoutes(ctx, np); err != nil {
		benchFatal(b, err)
	}
	wire := func(w, s uint8) netip.Addr { return numplan.Addr(w, s, numplan.HostPhone) }
	paths := []*benchPath{
		{name: "rewriter", from: nr.A.PhoneHost, to: nr.B.PhoneHost,
			src: nr.A.PhoneAddr(), dst: nr.A.AddrOf(nr.B), recv: nr.B.PhoneAddr()},
		{name: "plain", from: np.A.PhoneHost, to: np.B.PhoneHost,
			src: wire(numplan.WireSender, 1), dst: wire(numplan.WireReceiver, 1), recv: wire(numplan.WireReceiver, 1)},
	}
	for _, p := range paths {
		if err := p.open(); err != nil {
			benchFatal(b, err)
		}
		defer p.close()
	}
	load := benchLoad{}
	load.start()

	// Per round, each network's p50 and p99; the figures are the medians
	// over the rounds. On a shared machine a round now and then stalls for
	// reasons of its own (another program's burst): a median keeps that
	// round from being the result, and the per-round figures are logged.
	p50, p99 := map[string][]float64{}, map[string][]float64{}
	pooled := map[string][]int64{}
	pps := map[string][]float64{}
	for round := range benchRounds {
		runs, err := benchLatency(ctx, paths, benchLatencyRate)
		if err != nil {
			benchFatal(b, err)
		}
		for i, p := range paths {
			r := runs[i]
			// A stall of the machine delays packets past the run's end
			// now and then; a path that loses half is broken.
			if r.received < r.sent/2 {
				benchFatal(b, fmt.Errorf("%s: %d of %d packets arrived at %d/s: the path is broken, not slow", p.name, r.received, r.sent, benchLatencyRate))
			}
			a, z := us(percentile(r.latencies, 50)), us(percentile(r.latencies, 99))
			benchf("latency round %d %-8s: %d packets, p50 %.1f µs, p99 %.1f µs, max %.1f µs", round, p.name, len(r.latencies), a, z, us(percentile(r.latencies, 100)))
			p50[p.name] = append(p50[p.name], a)
			p99[p.name] = append(p99[p.name], z)
			pooled[p.name] = append(pooled[p.name], r.latencies...)
		}
	}
	for round := range benchCapRounds {
		for _, p := range benchOrder(paths, round) {
			r, err := p.measure(ctx)
			if err != nil {
				benchFatal(b, err)
			}
			benchf("capacity round %d %-8s: sent %8.0f/s, arrived %8.0f/s", round, p.name, float64(r.sent)/benchCapTime.Seconds(), r.pps())
			pps[p.name] = append(pps[p.name], r.pps())
		}
	}
	busy, load1 := load.stop()

	rw, pl := median(pps["rewriter"]), median(pps["plain"])
	if slices.Contains(pps["plain"], 0) {
		benchFatal(b, errors.New("nothing crossed the tunnel without the rewriter"))
	}
	// The ratio is taken within each round, where the two runs are next
	// to each other in time, and the median over the rounds is the figure.
	ratios := make([]float64, benchCapRounds)
	for i := range ratios {
		ratios[i] = pps["rewriter"][i] / pps["plain"][i]
	}
	ratio := median(ratios)
	// The spread of the per-round differences says how much of the added
	// latency the lab can resolve on this machine at this load.
	d50, d99 := make([]float64, benchRounds), make([]float64, benchRounds)
	for i := range d50 {
		d50[i] = p50["rewriter"][i] - p50["plain"][i]
		d99[i] = p99["rewriter"][i] - p99["plain"][i]
	}
	rp50, rp99 := median(p50["rewriter"]), median(p99["rewriter"])
	pp50, pp99 := median(p50["plain"]), median(p99["plain"])
	benchf("capacity: rewriter %.0f/s, plain %.0f/s (medians of %d rounds); ratio per round %.3f to %.3f, median %.3f",
		rw, pl, benchCapRounds, slices.Min(ratios), slices.Max(ratios), ratio)
	benchf("one-way latency at %d/s (medians of %d rounds): rewriter p50 %.1f µs p99 %.1f µs, plain p50 %.1f µs p99 %.1f µs; added p50 %.1f µs, p99 %.1f µs",
		benchLatencyRate, benchRounds, rp50, rp99, pp50, pp99, rp50-pp50, rp99-pp99)
	benchf("added latency per round: p50 %.1f to %.1f µs, p99 %.1f to %.1f µs", slices.Min(d50), slices.Max(d50), slices.Min(d99), slices.Max(d99))
	benchf("one-way latency, all rounds' packets pooled: rewriter p50 %.1f µs p99 %.1f µs, plain p50 %.1f µs p99 %.1f µs",
		us(percentile(pooled["rewriter"], 50)), us(percentile(pooled["rewriter"], 99)), us(percentile(pooled["plain"], 50)), us(percentile(pooled["plain"], 99)))
	benchf("machine while measuring: %.0f%% of %d CPUs busy (all processes), load average %.2f", busy*100, load.cpus, load1)
	b.ReportMetric(ratio, "capacity_ratio")
	b.ReportMetric(slices.Min(ratios), "capacity_ratio_min")
	b.ReportMetric(slices.Max(ratios), "capacity_ratio_max")
	b.ReportMetric(rw, "rewriter_pps")
	b.ReportMetric(pl, "plain_pps")
	// The difference of the two networks' latencies is logged above but
	// not reported: on a shared machine its per-round spread is hundreds
	// of µs either way, far more than the rewriter's work. What the
	// rewriter adds is measured inside it (BenchmarkRewriteLabCalls,
	// rewriter_ns_p50 and rewriter_ns_p99).
	b.ReportMetric(rp50, "rewriter_p50_us")
	b.ReportMetric(rp99, "rewriter_p99_us")
	b.ReportMetric(pp50, "plain_p50_us")
	b.ReportMetric(pp99, "plain_p99_us")
	b.ReportMetric(busy*100, "cpu_busy_pct")
	b.ReportMetric(load1, "load1")
}

// benchOrder is ABBA: each network goes first in every other round, so a
// drift in the machine's load falls on both alike.
func benchOrder(paths []*benchPath, round int) []*benchPath {
	if round%2 == 0 {
		return paths
	}
	return []*benchPath{paths[1], paths[0]}
}

// benchPlainDaemon writes a peerlined that runs without the rewriter: the
// daemon under test, started with PEERLINED_BENCH_NO_REWRITE=1.
func benchPlainDaemon(dir string) (string, error) {
	path := filepath.Join(dir, "peerlined-plain")
	script := fmt.Sprintf("#!/bin/sh\n%s=1 exec %q \"$@\"\n", benchNoRewriteEnv, peerlinedBin)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		return "", fmt.Errorf("writing the plain daemon's wrapper: %w", err)
	}
	return path, nil
}

// benchCheckRewriter makes sure each daemon of n does (want) or does not
// wrap its tunnel in the rewriter, by the rewriter counters in its status:
// a daemon that ignores PEERLINED_BENCH_NO_REWRITE would otherwise compare
// the rewriter with itself.
func benchCheckRewriter(n *Network, want bool) error {
	for _, node := range []*Node{n.A, n.B} {
		st, err := node.Status()
		if err != nil {
			return err
		}
		for _, p := range st.Peers {
			if got := p.Rewrite != nil; got != want {
				if !want {
					return fmt.Errorf("node %s: peerlined %s still wraps its tunnel in the rewriter under %s=1: build it from a tree with the supervisor switch (see mk/rewrite.mk)", node.Name, peerlinedBin, benchNoRewriteEnv)
				}
				return fmt.Errorf("node %s: tunnel %d has no rewriter", node.Name, p.Index)
			}
		}
	}
	return nil
}

// benchPlainRoutes lets phone A's wire-form packets (10.255.1.1 ->
// 10.254.1.1) reach phone B on the network without rewriter, along the
// links the mapped packets take on the other: phone -> Pi A -> A's tunnel
// namespace -> tunnel -> B's tunnel namespace -> Pi B -> phone.
func benchPlainRoutes(ctx context.Context, n *Network) error {
	src := numplan.Addr(numplan.WireSender, 1, numplan.HostPhone).String()
	dst := numplan.Addr(numplan.WireReceiver, 1, numplan.HostPhone).String()
	toward := netip.PrefixFrom(numplan.Addr(numplan.WireReceiver, 0, 0), 16).String()
	from := netip.PrefixFrom(numplan.Addr(numplan.WireSender, 0, 0), 16).String()
	ai, bi := n.A.Config.Peers[0].Index, n.B.Config.Peers[0].Index
	an, bn := config.Names{Prefix: n.A.Config.Prefix}, config.Names{Prefix: n.B.Config.Prefix}
	// The supervisor's link into tunnel i: 169.254.i.1 in the Pi's
	// namespace, 169.254.i.2 in the tunnel's.
	veth := func(i, end int) string { return netip.AddrFrom4([4]byte{169, 254, byte(i), byte(end)}).String() }
	phone := n.A.PhoneAddr().String() // 10.0.1.1 on both sides
	steps := []struct {
		host *lab.Host
		ns   string // a daemon's tunnel namespace, when host is nil
		argv []string
	}{
		{n.A.PhoneHost, "", []string{"addr", "add", src + "/32", "dev", "eth0"}},
		{n.A.PhoneHost, "", []string{"route", "add", toward, "via", numplan.LineGateway(1).String(), "src", src}},
		{n.A.Host, "", []string{"route", "add", src + "/32", "via", phone, "dev", phonePort}},
		{n.A.Host, "", []string{"route", "add", toward, "via", veth(ai, 2), "dev", an.Veth(ai)}},
		{nil, an.Namespace(ai), []string{"route", "add", toward, "dev", an.Device(ai)}},
		{nil, bn.Namespace(bi), []string{"route", "add", toward, "via", veth(bi, 1), "dev", config.VethInNamespace}},
		{n.B.Host, "", []string{"route", "add", from, "via", veth(bi, 2), "dev", bn.Veth(bi)}},
		{n.B.Host, "", []string{"route", "add", dst + "/32", "via", phone, "dev", phonePort}},
		{n.B.PhoneHost, "", []string{"addr", "add", dst + "/32", "dev", "eth0"}},
	}
	for _, s := range steps {
		var err error
		if s.host != nil {
			err = s.host.IP(s.argv...)
		} else {
			var out []byte
			out, err = exec.CommandContext(ctx, "ip", append([]string{"-n", s.ns}, s.argv...)...).CombinedOutput()
			if err != nil {
				err = fmt.Errorf("ip -n %s %s: %w: %s", s.ns, strings.Join(s.argv, " "), err, out)
			}
		}
		if err != nil {
			return fmt.Errorf("plain network: %w", err)
		}
	}
	return nil
}

// open makes the sockets: one per flow on the sending phone, one on the
// receiving phone that reports each datagram's kernel arrival time.
func (p *benchPath) open() error {
	rcv, err := lab.In(p.to, func() (*net.UDPConn, error) {
		return net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.recv, benchRecvPort)))
	})
	if err != nil {
		return fmt.Errorf("%s: receiver: %w", p.name, err)
	}
	p.rcv = rcv
	var serr error
	err = benchControl(rcv, func(fd int) {
		serr = errors.Join(syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1),
			// Root may go past rmem_max: a blast must not be lost in
			// the receiving socket, which is not what is measured.
			syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, 16<<20))
	})
	if err = cmp.Or(err, serr); err != nil {
		return fmt.Errorf("%s: receiver options: %w", p.name, err)
	}
	for k := range benchFlows {
		c, err := lab.In(p.from, func() (*net.UDPConn, error) {
			return net.DialUDP("udp4",
				net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.src, uint16(benchRecvPort+1+k))),
				net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.dst, benchRecvPort)))
		})
		if err != nil {
			return fmt.Errorf("%s: sender: %w", p.name, err)
		}
		p.send = append(p.send, c)
	}
	return nil
}

func benchControl(c *net.UDPConn, fn func(fd int)) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) { fn(int(fd)) })
}

func (p *benchPath) close() {
	for _, c := range p.send {
		c.Close()
	}
	if p.rcv != nil {
		p.rcv.Close()
	}
}

// measure sends as fast as the sender can for benchCapTime and returns
// what arrived.
func (p *benchPath) measure(ctx context.Context) (benchRun, error) {
	p.run++
	start := time.Now()
	end := start.Add(benchCapTime)
	type result struct {
		r   benchRun
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := p.receive(start.Add(benchCapWarmup), end, end.Add(100*time.Millisecond), false)
		done <- result{r, err}
	}()
	sent, err := p.blast(ctx, end)
	res := <-done
	res.r.sent = sent
	return res.r, cmp.Or(err, res.err)
}

// benchLatency sends on all paths at once, rate packets per second each,
// for benchRunTime: one packet on each path per tick, which goes first
// alternating, so that both see the machine in the same state, packet by
// packet. It returns what arrived on each.
func benchLatency(ctx context.Context, paths []*benchPath, rate int) ([]benchRun, error) {
	start := time.Now()
	end := start.Add(benchRunTime)
	type result struct {
		r   benchRun
		err error
	}
	done := make([]chan result, len(paths))
	for i, p := range paths {
		p.run++
		done[i] = make(chan result, 1)
		go func() {
			r, err := p.receive(start.Add(benchWarmup), end, end.Add(300*time.Millisecond), true)
			done[i] <- result{r, err}
		}()
	}
	buf := make([]byte, benchPayload)
	every := time.Second / time.Duration(rate)
	next := start
	sent := 0
	var err error
send:
	for tick := 0; ; tick++ {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		if !time.Now().Before(end) || ctx.Err() != nil {
			err = ctx.Err()
			break
		}
		for k := range paths {
			p := paths[(tick+k)%len(paths)]
			flow := tick % len(p.send)
			p.packet(buf, flow, time.Now())
			if _, err = p.send[flow].Write(buf); err != nil {
				err = fmt.Errorf("%s: sending: %w", p.name, err)
				break send
			}
		}
		sent++
		next = next.Add(every)
	}
	runs := make([]benchRun, len(paths))
	for i := range paths {
		res := <-done[i]
		runs[i] = res.r
		runs[i].sent = sent
		err = cmp.Or(err, res.err)
	}
	return runs, err
}

// packet makes buf the next RTP packet of flow: after the RTP header it
// carries the run tag and its send time.
func (p *benchPath) packet(buf []byte, flow int, now time.Time) {
	p.seq[flow]++
	buf[0], buf[1] = 0x80, 0 // RTP version 2, PCMU
	binary.BigEndian.PutUint16(buf[2:], p.seq[flow])
	binary.BigEndian.PutUint32(buf[4:], uint32(p.seq[flow])*160)
	binary.BigEndian.PutUint32(buf[8:], 0x5eed0000|uint32(flow))
	buf[12] = p.run
	binary.BigEndian.PutUint64(buf[13:], uint64(now.UnixNano()))
	for j := 21; j < len(buf); j++ {
		buf[j] = 0xff // µ-law silence
	}
}

// blast sends batches of RTP packets round-robin over the flows until end.
func (p *benchPath) blast(ctx context.Context, end time.Time) (int, error) {
	msgs := make([]ipv4.Message, benchBatch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, benchPayload)}
	}
	pcs := make([]*ipv4.PacketConn, len(p.send))
	for k, c := range p.send {
		pcs[k] = ipv4.NewPacketConn(c)
	}
	sent := 0
	for flow := 0; ; flow = (flow + 1) % len(pcs) {
		now := time.Now()
		if !now.Before(end) || ctx.Err() != nil {
			return sent, ctx.Err()
		}
		for i := range msgs {
			p.packet(msgs[i].Buffers[0], flow, now)
		}
		n, err := pcs[flow].WriteBatch(msgs, 0)
		sent += n
		// A full queue on the way (ENOBUFS) is the load doing what it
		// should: the packets are lost, not the run.
		if err != nil && !errors.Is(err, syscall.ENOBUFS) {
			return sent, fmt.Errorf("%s: sending: %w", p.name, err)
		}
	}
}

// receive reads until stop and counts what this run sent: all of it in
// received, what the kernel stamped in [from, to) in counted, and, if
// timed, the one-way latency of each that arrived after from.
func (p *benchPath) receive(from, to, stop time.Time, timed bool) (benchRun, error) {
	r := benchRun{window: to.Sub(from)}
	pc := ipv4.NewPacketConn(p.rcv)
	msgs := make([]ipv4.Message, 64)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 2048)}
		msgs[i].OOB = make([]byte, syscall.CmsgSpace(16))
	}
	p.rcv.SetReadDeadline(stop)
	defer p.rcv.SetReadDeadline(time.Time{})
	for {
		n, err := pc.ReadBatch(msgs, 0)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return r, nil
		}
		if err != nil {
			return r, fmt.Errorf("%s: receiving: %w", p.name, err)
		}
		for _, m := range msgs[:n] {
			b := m.Buffers[0][:m.N]
			if len(b) != benchPayload || b[12] != p.run {
				continue
			}
			at, ok := kernelTime(m.OOB[:m.NN])
			if !ok {
				return r, fmt.Errorf("%s: a datagram came without its SO_TIMESTAMPNS arrival time", p.name)
			}
			r.received++
			if !at.Before(from) && at.Before(to) {
				r.counted++
			}
			if timed && !at.Before(from) {
				r.latencies = append(r.latencies, at.UnixNano()-int64(binary.BigEndian.Uint64(b[13:])))
			}
		}
	}
}

// kernelTime is the SCM_TIMESTAMPNS of a received datagram.
func kernelTime(oob []byte) (time.Time, bool) {
	cms, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, false
	}
	for _, cm := range cms {
		if cm.Header.Level == syscall.SOL_SOCKET && cm.Header.Type == syscall.SO_TIMESTAMPNS && len(cm.Data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(cm.Data[0:]))
			nsec := int64(binary.NativeEndian.Uint64(cm.Data[8:]))
			return time.Unix(sec, nsec), true
		}
	}
	return time.Time{}, false
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile is the nearest-rank percentile of v.
func percentile(v []int64, pct int) int64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	i := (len(s)*pct + 99) / 100
	return s[max(i-1, 0)]
}

func us(ns int64) float64 { return float64(ns) / 1e3 }

// benchf reports a benchmark's progress on stderr: the benchmark's own log
// keeps only its first ten lines, and the lab fills those.
func benchf(format string, args ...any) { fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...) }

// benchFatal ends the benchmark with err, on stderr too: a failed
// benchmark's log is cut to ten lines, which the lab's own fill.
func benchFatal(b *testing.B, err error) {
	b.Helper()
	benchf("FAILED: %v", err)
	b.Fatal(err)
}

// benchLoad is how busy the whole machine was during a measurement (other
// engineers' work included): the share of CPU time not idle in /proc/stat,
// and the 1-minute load average at the end.
type benchLoad struct {
	cpus        int
	busy, total uint64
}

func (l *benchLoad) start() { l.busy, l.total, l.cpus = cpuTimes() }

func (l *benchLoad) stop() (busy, load1 float64) {
	b, t, _ := cpuTimes()
	if t > l.total {
		busy = float64(b-l.busy) / float64(t-l.total)
	}
	if raw, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(raw)); len(f) > 0 {
			load1, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	return busy, load1
}

// cpuTimes reads the machine's busy and total jiffies and its CPU count.
func cpuTimes() (busy, total uint64, cpus int) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if f[0] != "cpu" {
			cpus++
			continue
		}
		for i, v := range f[1:] {
			n, _ := strconv.ParseUint(v, 10, 64)
			total += n
			if i != 3 && i != 4 { // idle, iowait
				busy += n
			}
		}
	}
	return busy, total, cpus
}

const (
	// benchCallRate is how fast calls are placed. A new call costs the
	// callee's tunnel two SIP messages from the peer (INVITE, ACK), and the
	// rewriter lets 50 a second through (its flood limit), so 20 calls a
	// second leave room for retransmissions.
	benchCallRate = 20
	// benchHold is how long all calls of a level are up at once: each call
	// lasts its level's set-up time plus this.
	benchHold = 20 * time.Second
	// benchSIPPort and benchMediaPort are the phones' sipp ports; the
	// callee echoes RTP on benchMediaPort (sipp -rtp_echo).
	benchSIPPort   = 5070
	benchMediaPort = 20000
	benchCounters  = "peerlinebench"
	// benchMaxLoss is the bound: 0.1 %.
	benchMaxLoss = 0.001
	// benchRTPLen is one RTP packet of the calls: header and 20 ms PCMU.
	benchRTPLen = 12 + 160
)

// benchCalls is one level of the concurrent-call ramp.
type benchCalls struct {
	calls int
	// uac and uas are sipp's results: nil if every call went through.
	uac, uas error
	// expect is what each direction should carry: the callers play that
	// many packets, and the callee echoes each.
	expect uint64
	// The phones' own counters (nftables, before any socket): sent by the
	// caller and arrived at the callee, sent back and arrived back.
	txAB, rxAB, txBA, rxBA uint64
	busy, load1            float64
	// drops are the kernel's drop counters along the way that grew during
	// the level: where the lost packets went.
	drops string
	// latency is the time packets spent in the rewriters of both nodes
	// during the level, both directions, as the rewriters measured it
	// themselves (sampled; rewrite.Latency); out and in are its two
	// directions.
	latency, out, in rewrite.Histogram
	// cout and cin are the control beside out and in: the same sampling
	// and clock readings around nothing (rewrite.Latency), so what of the
	// tail is the machine's shows beside it.
	cout, cin rewrite.Histogram
	// spin is the machine's control: the bench's own no-op of the
	// rewriter's size, timed after each wake-up (benchSpinControl).
	spin []int64
}

// benchSpin is the length of the machine's control: about what the
// rewriter's interval takes at the median under this load, cold.
const benchSpin = 500 * time.Nanosecond

// benchSpinControl runs, until the returned stop, a control of the same
// shape as the rewriter's timed interval, in the same run on the same
// machine: a thread that blocks (a 400 µs sleep, as a TUN read waits for
// the next packet), wakes, and busy-waits benchSpin on the monotonic clock,
// timing that as the rewriter times its work. Whatever it records beyond
// benchSpin is the machine's (the thread switched out, interrupts, the
// host), since it does nothing else; the rewriter's tail beyond it is the
// rewriter's.
func benchSpinControl() (stop func() []int64) {
	done, res := make(chan struct{}), make(chan []int64, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		// At most about 150 s of samples at one per 400 µs and more.
		samples := make([]int64, 0, 1<<19)
		for len(samples) < cap(samples) {
			select {
			case <-done:
				res <- samples
				return
			default:
			}
			time.Sleep(400 * time.Microsecond)
			t0 := time.Now()
			for time.Since(t0) < benchSpin {
			}
			samples = append(samples, int64(time.Since(t0)))
		}
		<-done
		res <- samples
	}()
	return func() []int64 { close(done); return <-res }
}

func loss(tx, rx uint64) float64 {
	if tx == 0 || rx >= tx {
		return 0
	}
	return float64(tx-rx) / float64(tx)
}

// failure says why the level is past the knee, or "" if it is not.
func (c benchCalls) failure() string {
	switch {
	case c.uac != nil:
		return fmt.Sprintf("caller: %v", c.uac)
	case c.uas != nil:
		return fmt.Sprintf("callee: %v", c.uas)
	case c.txAB < c.expect*999/1000:
		// The load generator fell behind: the calls carried less than
		// G.711, which is no pass either.
		return fmt.Sprintf("sipp played only %d of %d packets", c.txAB, c.expect)
	case loss(c.txAB, c.rxAB) > benchMaxLoss || loss(c.txBA, c.rxBA) > benchMaxLoss:
		return fmt.Sprintf("loss %.3f%% caller->callee, %.3f%% back", 100*loss(c.txAB, c.rxAB), 100*loss(c.txBA, c.rxBA))
	}
	return ""
}

// BenchmarkRewriteLabCalls ramps concurrent G.711 calls (sipp with RTP)
// from phone A to phone B through the two Pis, by REWRITE_LAB_CALL_STEP
// (50) up to REWRITE_LAB_MAX_CALLS (400), all calls of a level up at once
// for benchHold, and stops at the knee: the first level where a call fails
// or more than 0.1 % of the RTP is lost either way.
func BenchmarkRewriteLabCalls(b *testing.B) {
	labtest.RequireRoot(b)
	labtest.RequireTools(b, "wg", "nsenter", "nft", "sipp", "sox")
	step, limit := benchEnvInt(b, "REWRITE_LAB_CALL_STEP", 50), benchEnvInt(b, "REWRITE_LAB_MAX_CALLS", 400)
	var scen [2]string
	for i, name := range []string{"calls_uac.xml", "calls_uas.xml"} {
		p, err := filepath.Abs(filepath.Join("..", "..", "test", "sipp", "bench", name))
		if err != nil {
			benchFatal(b, err)
		}
		scen[i] = p
	}
	// Each level takes about twice its set-up time plus the hold.
	var budget time.Duration
	for c := step; c <= limit; c += step {
		budget += 2*time.Duration(c)*time.Second/benchCallRate + benchHold + 20*time.Second
	}
	ctx, cancel := context.WithTimeout(b.Context(), budget+2*time.Minute)
	defer cancel()
	l := labtest.New(b)
	id := strconv.FormatInt(int64(os.Getpid()%(36*36*36)), 36)
	n, err := Build(ctx, l, Options{Peerlined: peerlinedBin, Prefix: "bnc" + id})
	if err != nil {
		benchFatal(b, err)
	}
	if err := benchCheckRewriter(n, true); err != nil {
		benchFatal(b, err)
	}
	passed, knee := 0, 0
	// The rewriter's own latency under the heaviest load that held (or,
	// if none did, the first level's).
	var lat benchCalls
	latCalls := 0
	for calls := step; calls <= limit; calls += step {
		c, err := benchCallLevel(ctx, n, l.Dir(), scen, calls)
		if err != nil {
			benchFatal(b, err)
		}
		why := c.failure()
		benchf("%4d calls: %-4s RTP caller->callee %d/%d (loss %.4f%%), back %d/%d (loss %.4f%%), %d expected; machine %.0f%% busy, load %.2f; kernel drops: %s; in the rewriters %d packets timed, p50 %d ns, p99 %d ns, p99.9 %d ns (outbound p50 %d ns p99 %d ns, inbound p50 %d ns p99 %d ns; control around nothing: outbound p50 %d ns p99 %d ns, inbound p50 %d ns p99 %d ns; the bench's %v spin after a wake-up: %d timed, p50 %d ns, p99 %d ns) %s",
			calls, map[bool]string{true: "ok", false: "FAIL"}[why == ""], c.rxAB, c.txAB, 100*loss(c.txAB, c.rxAB), c.rxBA, c.txBA, 100*loss(c.txBA, c.rxBA), c.expect, c.busy*100, c.load1, c.drops,
			c.latency.Packets(), c.latency.Quantile(0.5).Nanoseconds(), c.latency.Quantile(0.99).Nanoseconds(), c.latency.Quantile(0.999).Nanoseconds(),
			c.out.Quantile(0.5).Nanoseconds(), c.out.Quantile(0.99).Nanoseconds(), c.in.Quantile(0.5).Nanoseconds(), c.in.Quantile(0.99).Nanoseconds(),
			c.cout.Quantile(0.5).Nanoseconds(), c.cout.Quantile(0.99).Nanoseconds(), c.cin.Quantile(0.5).Nanoseconds(), c.cin.Quantile(0.99).Nanoseconds(),
			benchSpin, len(c.spin), percentile(c.spin, 50), percentile(c.spin, 99), why)
		if why == "" || latCalls == 0 {
			lat, latCalls = c, calls
		}
		if why != "" {
			knee = calls
			break
		}
		passed = calls
	}
	if lat.latency.Packets() == 0 {
		benchFatal(b, errors.New("the rewriters timed no packet: is the latency histogram in the daemon's status (rewrite_latency)?"))
	}
	benchf("in the rewriters at %d calls (machine load %.2f): %d packets timed, p50 %d ns, p99 %d ns (goal <= 2000 ns)",
		latCalls, lat.load1, lat.latency.Packets(), lat.latency.Quantile(0.5).Nanoseconds(), lat.latency.Quantile(0.99).Nanoseconds())
	b.ReportMetric(float64(lat.latency.Quantile(0.5).Nanoseconds()), "rewriter_ns_p50")
	b.ReportMetric(float64(lat.latency.Quantile(0.99).Nanoseconds()), "rewriter_ns_p99")
	b.ReportMetric(float64(lat.latency.Quantile(0.999).Nanoseconds()), "rewriter_ns_p999")
	b.ReportMetric(float64(lat.out.Quantile(0.5).Nanoseconds()), "rewriter_ns_p50_outbound")
	b.ReportMetric(float64(lat.out.Quantile(0.99).Nanoseconds()), "rewriter_ns_p99_outbound")
	b.ReportMetric(float64(lat.in.Quantile(0.5).Nanoseconds()), "rewriter_ns_p50_inbound")
	b.ReportMetric(float64(lat.in.Quantile(0.99).Nanoseconds()), "rewriter_ns_p99_inbound")
	// The machine's control: a no-op of the rewriter's size after each
	// wake-up, in the same run (benchSpinControl).
	b.ReportMetric(float64(percentile(lat.spin, 50)), "machine_spin_ns_p50")
	b.ReportMetric(float64(percentile(lat.spin, 99)), "machine_spin_ns_p99")
	// The control: the same readings around nothing, in the same run. A
	// daemon built before it reports none, and these stay out.
	if lat.cout.Packets()+lat.cin.Packets() != 0 {
		b.ReportMetric(float64(lat.cout.Add(lat.cin).Quantile(0.5).Nanoseconds()), "rewriter_ns_control_p50")
		b.ReportMetric(float64(lat.cout.Add(lat.cin).Quantile(0.99).Nanoseconds()), "rewriter_ns_control_p99")
		b.ReportMetric(float64(lat.cout.Quantile(0.99).Nanoseconds()), "rewriter_ns_control_p99_outbound")
		b.ReportMetric(float64(lat.cin.Quantile(0.99).Nanoseconds()), "rewriter_ns_control_p99_inbound")
	}
	b.ReportMetric(lat.load1, "rewriter_ns_load1")
	b.ReportMetric(float64(lat.latency.Packets()), "rewriter_ns_packets")
	b.ReportMetric(float64(latCalls), "rewriter_ns_calls")
	if knee == 0 {
		benchf("no knee up to %d calls (REWRITE_LAB_MAX_CALLS)", limit)
	} else {
		benchf("knee: %d calls hold with loss <= 0.1 %%, %d do not", passed, knee)
	}
	b.ReportMetric(float64(passed), "max_calls")
	b.ReportMetric(float64(knee), "knee_calls")
}

func benchEnvInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		benchFatal(b, fmt.Errorf("%s=%q: want a positive number of calls", name, s))
	}
	return v
}

// benchCallLevel places calls at once (at benchCallRate) and holds them all
// for benchHold, each playing G.711 into the call, echoed by the callee.
func benchCallLevel(ctx context.Context, n *Network, dir string, scen [2]string, calls int) (benchCalls, error) {
	c := benchCalls{calls: calls}
	setup := time.Duration(calls) * time.Second / benchCallRate
	talk := setup + benchHold
	packets, err := benchG711Pcap(ctx, filepath.Join(dir, "bench-g711.pcap"), talk)
	if err != nil {
		return c, err
	}
	c.expect = uint64(calls) * uint64(packets)
	caller, callee := n.A.AddrOf(n.B), n.B.AddrOf(n.A)
	if err := benchCounterRules(ctx, n.A.PhoneHost, dir, caller, true); err != nil {
		return c, err
	}
	if err := benchCounterRules(ctx, n.B.PhoneHost, dir, callee, false); err != nil {
		return c, err
	}
	timeout := setup + talk + 30*time.Second
	sipp := func(h *lab.Host, name, scenario string, args ...string) (*lab.Proc, error) {
		argv := []string{"env", "-C", dir, "sipp", "-sf", scenario,
			"-i", n.A.PhoneAddr().String(), "-mi", n.A.PhoneAddr().String(),
			"-p", strconv.Itoa(benchSIPPort), "-mp", strconv.Itoa(benchMediaPort),
			"-m", strconv.Itoa(calls), "-nostdin",
			"-timeout", strconv.Itoa(int(timeout/time.Second)) + "s", "-timeout_error",
			"-trace_err", "-error_file", filepath.Join(dir, fmt.Sprintf("bench-%s-%d-errors.log", name, calls))}
		return h.Start(ctx, fmt.Sprintf("bench-%s-%d", name, calls), append(argv, args...)...)
	}
	before, err := benchDrops(ctx, n)
	if err != nil {
		return c, err
	}
	latBefore, err := benchRewriterLatency(ctx, n)
	if err != nil {
		return c, err
	}
	load := benchLoad{}
	load.start()
	stopSpin := benchSpinControl()
	defer func() {
		if stopSpin != nil {
			stopSpin()
		}
	}()
	uas, err := sipp(n.B.PhoneHost, "uas", scen[1], "-rtp_echo")
	if err != nil {
		return c, err
	}
	defer uas.Stop(5 * time.Second)
	if err := benchWaitListening(ctx, n.B.PhoneHost, benchSIPPort); err != nil {
		return c, err
	}
	uac, err := sipp(n.A.PhoneHost, "uac", scen[0],
		"-s", "bench", "-r", strconv.Itoa(benchCallRate), "-l", strconv.Itoa(calls),
		"-d", strconv.FormatInt((talk+500*time.Millisecond).Milliseconds(), 10),
		netip.AddrPortFrom(caller, benchSIPPort).String())
	if err != nil {
		return c, err
	}
	defer uac.Stop(5 * time.Second)
	c.uac = benchWait(ctx, uac, timeout+10*time.Second)
	// The callee keeps each call 5 s after its BYE's 200, to answer a
	// retransmitted BYE (calls_uas.xml).
	c.uas = benchWait(ctx, uas, 15*time.Second)
	// Echoes still on their way when the last BYE went.
	time.Sleep(500 * time.Millisecond)
	c.busy, c.load1 = load.stop()
	c.spin, stopSpin = stopSpin(), nil
	after, err := benchDrops(ctx, n)
	if err != nil {
		return c, err
	}
	var grew []string
	for _, k := range slices.Sorted(maps.Keys(after)) {
		if d := after[k] - before[k]; d > 0 {
			grew = append(grew, fmt.Sprintf("%s +%d", k, d))
		}
	}
	c.drops = cmp.Or(strings.Join(grew, ", "), "none")
	latAfter, err := benchRewriterLatency(ctx, n)
	if err != nil {
		return c, err
	}
	c.out = latAfter.Outbound.Sub(latBefore.Outbound)
	c.in = latAfter.Inbound.Sub(latBefore.Inbound)
	c.cout = latAfter.ControlOutbound.Sub(latBefore.ControlOutbound)
	c.cin = latAfter.ControlInbound.Sub(latBefore.ControlInbound)
	c.latency = c.out.Add(c.in)
	for _, v := range []struct {
		h    *lab.Host
		name string
		dst  *uint64
	}{{n.A.PhoneHost, "tx", &c.txAB}, {n.B.PhoneHost, "rx", &c.rxAB}, {n.B.PhoneHost, "tx", &c.txBA}, {n.A.PhoneHost, "rx", &c.rxBA}} {
		if *v.dst, err = benchCounter(ctx, v.h, v.name); err != nil {
			return c, err
		}
	}
	return c, nil
}

// benchRewriterLatency is the rewriters' latency histograms of both nodes,
// every tunnel merged, by direction (outbound: read from the TUN, toward
// the peer; inbound: written to it), from a status written after now.
func benchRewriterLatency(ctx context.Context, n *Network) (rewrite.Latency, error) {
	var h rewrite.Latency
	now := time.Now()
	for _, node := range []*Node{n.A, n.B} {
		st, err := node.StatusSince(ctx, now)
		if err != nil {
			return h, fmt.Errorf("node %s: %w", node.Name, err)
		}
		for _, p := range st.Peers {
			if p.RewriteLatency == nil {
				return h, fmt.Errorf("node %s: tunnel %d has no rewrite_latency in its status", node.Name, p.Index)
			}
			h.Outbound = h.Outbound.Add(p.RewriteLatency.Outbound)
			h.Inbound = h.Inbound.Add(p.RewriteLatency.Inbound)
			h.ControlOutbound = h.ControlOutbound.Add(p.RewriteLatency.ControlOutbound)
			h.ControlInbound = h.ControlInbound.Add(p.RewriteLatency.ControlInbound)
		}
	}
	return h, nil
}

// benchDrops reads the drop counters a lost packet most likely went to:
// each Pi's UDP socket buffers (the tunnel socket is the Pi's only busy
// one) and each TUN's queue toward wireguard-go.
func benchDrops(ctx context.Context, n *Network) (map[string]uint64, error) {
	drops := map[string]uint64{}
	for _, node := range []*Node{n.A, n.B} {
		out, err := node.Host.Run(ctx, "nstat", "-asz", "UdpRcvbufErrors", "UdpSndbufErrors")
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) >= 2 && strings.HasPrefix(f[0], "Udp") {
				v, _ := strconv.ParseUint(f[1], 10, 64)
				drops["Pi "+node.Name+" "+f[0]] = v
			}
		}
		names := config.Names{Prefix: node.Config.Prefix}
		for _, p := range node.Config.Peers {
			raw, err := exec.CommandContext(ctx, "ip", "-s", "-j", "-n", names.Namespace(p.Index), "link", "show", "dev", names.Device(p.Index)).Output()
			if err != nil {
				return nil, fmt.Errorf("node %s: TUN counters: %w", node.Name, err)
			}
			var links []struct {
				Stats struct {
					RX, TX struct{ Dropped uint64 }
				} `json:"stats64"`
			}
			if err := json.Unmarshal(raw, &links); err != nil || len(links) != 1 {
				return nil, fmt.Errorf("node %s: TUN counters: %q: %v", node.Name, raw, err)
			}
			drops["Pi "+node.Name+" TUN tx dropped"] = links[0].Stats.TX.Dropped
			drops["Pi "+node.Name+" TUN rx dropped"] = links[0].Stats.RX.Dropped
		}
	}
	return drops, nil
}

// benchWait waits for sipp to end; its exit status says whether every call
// succeeded.
func benchWait(ctx context.Context, p *lab.Proc, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := p.Wait(ctx); err != nil {
		return fmt.Errorf("%w (sipp's output: %s)", err, p.LogPath())
	}
	return nil
}

func benchWaitListening(ctx context.Context, h *lab.Host, port int) error {
	for range 50 {
		out, err := h.Run(ctx, "ss", "-Hlun", fmt.Sprintf("sport = :%d", port))
		if err == nil && strings.TrimSpace(out) != "" {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("host %s: sipp does not listen on UDP %d after 5 s", h, port)
}

// benchCounterRules (re)creates the RTP counters of a phone: "tx" counts
// what it sends to peer's media port (caller) or from its own (callee),
// "rx" what arrives. The caller drops the echoes after counting them:
// nothing listens on its per-call ports, and port-unreachable errors
// would load the tunnel with traffic no call makes.
func benchCounterRules(ctx context.Context, h *lab.Host, dir string, peer netip.Addr, caller bool) error {
	tx := fmt.Sprintf("ip daddr %s udp dport %d", peer, benchMediaPort)
	rx := fmt.Sprintf("ip saddr %s udp sport %d", peer, benchMediaPort)
	drop := " drop"
	if !caller {
		tx = fmt.Sprintf("ip daddr %s udp sport %d", peer, benchMediaPort)
		rx = fmt.Sprintf("ip saddr %s udp dport %d", peer, benchMediaPort)
		drop = ""
	}
	rules := fmt.Sprintf(`table inet %[1]s
delete table inet %[1]s
table inet %[1]s {
	counter tx {}
	counter rx {}
	chain out {
		type filter hook output priority filter; policy accept;
		%[2]s counter name "tx"
	}
	chain in {
		type filter hook input priority filter; policy accept;
		%[3]s counter name "rx"%[4]s
	}
}
`, benchCounters, tx, rx, drop)
	path := filepath.Join(dir, "bench-counters-"+h.Name()+".nft")
	if err := os.WriteFile(path, []byte(rules), 0o644); err != nil {
		return err
	}
	_, err := h.Run(ctx, "nft", "-f", path)
	return err
}

var nftCounter = regexp.MustCompile(`packets (\d+) bytes (\d+)`)

// benchCounter is how many RTP packets counter name has seen. wireguard-go
// hands the kernel a tunnel's packets of one flow coalesced (UDP GRO), and
// they reach the phone as one large datagram that nftables counts once; as
// every counted packet is one 20 ms PCMU packet (IPv4 and UDP headers and
// benchRTPLen bytes), the byte count says how many there were.
func benchCounter(ctx context.Context, h *lab.Host, name string) (uint64, error) {
	out, err := h.Run(ctx, "nft", "list", "counter", "inet", benchCounters, name)
	if err != nil {
		return 0, err
	}
	m := nftCounter.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("host %s: no counts in nft's counter %s: %q", h, name, out)
	}
	pkts, err1 := strconv.ParseUint(m[1], 10, 64)
	bytes, err2 := strconv.ParseUint(m[2], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	const headers = 20 + 8
	payload := bytes - headers*pkts
	if bytes < headers*pkts || payload%benchRTPLen != 0 {
		return 0, fmt.Errorf("host %s: counter %s: %d bytes in %d datagrams are not whole %d-byte RTP packets: other traffic on the media port?", h, name, bytes, pkts, benchRTPLen)
	}
	return payload / benchRTPLen, nil
}

// benchG711Pcap writes a pcap of one RTP stream of 20 ms PCMU packets,
// length long, that sipp's play_pcap_audio plays into each call: a tone
// made by sox, cut into RTP packets. It returns the number of packets.
func benchG711Pcap(ctx context.Context, path string, length time.Duration) (int, error) {
	raw := path + ".ul"
	defer os.Remove(raw)
	out, err := exec.CommandContext(ctx, "sox", "-n", "-r", "8000", "-c", "1", "-e", "u-law", "-t", "raw", raw,
		"synth", strconv.FormatFloat(length.Seconds(), 'f', 3, 64), "sine", "440", "vol", "0.5").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("sox making the G.711 tone: %w: %s", err, out)
	}
	audio, err := os.ReadFile(raw)
	if err != nil {
		return 0, err
	}
	const frame = 160
	buf := binary.LittleEndian.AppendUint32(nil, 0xa1b2c3d4)
	buf = binary.LittleEndian.AppendUint16(buf, 2)
	buf = binary.LittleEndian.AppendUint16(buf, 4)
	buf = binary.LittleEndian.AppendUint64(buf, 0) // zone, sigfigs
	buf = binary.LittleEndian.AppendUint32(buf, 65535)
	buf = binary.LittleEndian.AppendUint32(buf, 1) // Ethernet
	packets := 0
	for off := 0; off+frame <= len(audio); off += frame {
		pkt := benchRTPFrame(uint16(packets), audio[off:off+frame])
		at := time.Duration(packets) * 20 * time.Millisecond
		buf = binary.LittleEndian.AppendUint32(buf, uint32(at/time.Second))
		buf = binary.LittleEndian.AppendUint32(buf, uint32(at%time.Second/time.Microsecond))
		buf = binary.LittleEndian.AppendUint32(buf, uint32(len(pkt)))
		buf = binary.LittleEndian.AppendUint32(buf, uint32(len(pkt)))
		buf = append(buf, pkt...)
		packets++
	}
	return packets, os.WriteFile(path, buf, 0o644)
}

// benchRTPFrame is an Ethernet frame with one PCMU RTP packet; sipp takes
// only the RTP from it and sends it from the call's own address and port.
func benchRTPFrame(seq uint16, audio []byte) []byte {
	const ipLen, udpLen = 20, 8
	rtpLen := 12 + len(audio)
	f := make([]byte, 14, 14+ipLen+udpLen+rtpLen)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := make([]byte, ipLen)
	ip[0], ip[8], ip[9] = 0x45, 64, syscall.IPPROTO_UDP
	binary.BigEndian.PutUint16(ip[2:], uint16(ipLen+udpLen+rtpLen))
	copy(ip[12:], []byte{192, 0, 2, 1})
	copy(ip[16:], []byte{192, 0, 2, 2})
	var sum uint32
	for i := 0; i < ipLen; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	f = append(f, ip...)
	udp := make([]byte, udpLen)
	binary.BigEndian.PutUint16(udp[0:], benchMediaPort)
	binary.BigEndian.PutUint16(udp[2:], benchMediaPort)
	binary.BigEndian.PutUint16(udp[4:], uint16(udpLen+rtpLen))
	f = append(f, udp...)
	rtp := make([]byte, 12)
	rtp[0] = 0x80
	binary.BigEndian.PutUint16(rtp[2:], seq)
	binary.BigEndian.PutUint32(rtp[4:], uint32(seq)*160)
	binary.BigEndian.PutUint32(rtp[8:], 0x0711beef)
	return append(append(f, rtp...), audio...)
}
