//go:build linux && lab

package peerlab

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/rendezvous"
	"github.com/peerline/peerline/pkg/rvclient"
	"github.com/peerline/peerline/pkg/rvserver/rvflood"
)

// BenchmarkAttack is issue 13's stranger flood against a lab rendezvousd
// built from this tree, with its default limits, measured by what it does
// to legitimate users (make bench-attack, bench/out/attack.json).
//
// Each run (ATTACK_RUNS, default 3) builds the NAT network (two Pis behind
// symmetric home routers, so their tunnel is relayed, and the VPS), and
// just before the Pis pair starts a flood: attackFloodKeys node keys from
// attackNetworks /24s of an attacker wired straight to the VPS (not
// through the lab's Internet switch, which would otherwise be the
// bottleneck), registering, asking for introductions to random keys and
// introducing themselves to each other, bounded by attackFloodFor and
// attackFloodPackets. During the flood:
//   - the Pis pair by invite (`peerline join`), settle on the relay and
//     stream media through it, as users would;
//   - a probe pair of rendezvous clients on the Internet (rvflood.Probe)
//     registers, is introduced, relays and stores and fetches an invite
//     every 500 ms, timing each operation.
//
// The legitimate success rate is over every probe operation, the Pis'
// pairing and their tunnel coming up (goal ≥ 99 %); the latency p95 is over
// the probe's operations; the server's peak RSS is its VmHWM at the end of
// the flood (goal ≤ 256 MB).
func BenchmarkAttack(b *testing.B) {
	natBins(b)
	runs := 3
	if n, err := strconv.Atoi(os.Getenv("ATTACK_RUNS")); err == nil && n > 0 {
		runs = n
	}
	var results []attackResult
	for i := range runs {
		r := benchAttack(b, i+1)
		results = append(results, r)
		fmt.Fprintln(os.Stderr, r.summary())
		b.Log(r.summary())
	}
	spread := func(f func(attackResult) float64) map[string]float64 {
		var xs []float64
		for _, r := range results {
			xs = append(xs, f(r))
		}
		return map[string]float64{"min": round(slices.Min(xs), 3), "median": round(rvflood.Percentile(xs, 0.5), 3), "max": round(slices.Max(xs), 3)}
	}
	succ := spread(func(r attackResult) float64 { return r.SuccessRate })
	p95 := spread(func(r attackResult) float64 { return r.LatencyP95 })
	rss := spread(func(r attackResult) float64 { return r.PeakRSSMB })
	benchOut(b, "attack.json", map[string]any{
		"runs":                       len(results),
		"legit_success_rate":         succ,
		"legit_latency_p95_ms":       p95,
		"server_peak_rss_mb":         rss,
		"goal_legit_success_rate":    0.99,
		"goal_server_peak_rss_mb":    256,
		"legit_success_within_goal":  succ["min"] >= 0.99,
		"server_rss_within_goal":     rss["max"] <= 256,
		"server_limits":              "defaults (rendezvousd with no limit flags)",
		"flood_networks":             attackNetworks,
		"flood_keys":                 attackFloodKeys,
		"flood_bound_packets":        attackFloodPackets,
		"flood_bound_s":              attackFloodFor.Seconds(),
		"flood_target_packets_per_s": attackFloodRate,
		"probe_round_every_ms":       attackProbeEvery.Milliseconds(),
		"probe_operation_timeout_s":  attackProbeTimeout.Seconds(),
		"details":                    results,
	})
}

// The flood's shape and bounds.
const (
	attackNetworks     = 8
	attackFloodKeys    = 8192
	attackFloodRate    = 10_000
	attackFloodFor     = 45 * time.Second
	attackFloodPackets = 500_000
	attackProbeEvery   = 500 * time.Millisecond
	attackProbeTimeout = 10 * time.Second
)

// attackResult is one run of attack.json.
type attackResult struct {
	Run         int     `json:"run"`
	SuccessRate float64 `json:"legit_success_rate"`
	LegitOps    int     `json:"legit_operations"`
	LegitOK     int     `json:"legit_succeeded"`
	LatencyP95  float64 `json:"legit_latency_p95_ms"`
	PeakRSSMB   float64 `json:"server_peak_rss_mb"`
	// ByOp is the probe's figures per kind of operation.
	ByOp map[string]attackOp `json:"probe"`
	// The Pis: pairing by invite during the flood, the path they settled
	// on, media through it.
	Paired        bool    `json:"pis_paired"`
	PairError     string  `json:"pis_pair_error,omitempty"`
	JoinS         float64 `json:"pis_join_s"`
	FirstPacketS  float64 `json:"pis_first_packet_s"`
	Path          string  `json:"pis_path"`
	PathError     string  `json:"pis_path_error,omitempty"`
	MediaSent     int     `json:"pis_media_sent"`
	MediaReceived int     `json:"pis_media_received"`
	// RegisterFailures counts "registration failed" in the Pis' logs.
	RegisterFailures int `json:"pis_registration_failures"`
	// The flood as sent, and what the server said about it.
	FloodSent     int            `json:"flood_sent"`
	FloodS        float64        `json:"flood_s"`
	FloodRate     float64        `json:"flood_packets_per_s"`
	FloodReplies  map[string]int `json:"flood_replies"`
	ServerStopped string         `json:"server_stats_at_stop"`
	LimitLines    int            `json:"server_limits_log_lines"`
	// VPSUDP*: the VPS kernel's UDP counters over the flood: datagrams
	// delivered to sockets, and dropped because a socket's receive
	// buffer was full (the server's, under the flood: where legitimate
	// media relayed by it can be lost).
	VPSUDPInDatagrams  int `json:"vps_udp_in_datagrams"`
	VPSUDPRcvbufErrors int `json:"vps_udp_rcvbuf_errors"`
	// LogsKept is where the run's logs were copied when a legitimate
	// operation failed.
	LogsKept string `json:"logs_kept,omitempty"`
}

type attackOp struct {
	Tries  int      `json:"tries"`
	OK     int      `json:"ok"`
	P50    float64  `json:"p50_ms"`
	P95    float64  `json:"p95_ms"`
	Max    float64  `json:"max_ms"`
	Errors []string `json:"errors,omitempty"`
}

func (r attackResult) summary() string {
	return fmt.Sprintf("attack run %d: legit %d/%d = %.4f, p95 %.1f ms; server peak RSS %.1f MB; Pis paired %v (join %.1f s) path %s, media %d/%d; flood %d packets in %.1f s (%.0f/s); VPS UDP in %d, dropped for a full socket buffer %d; %s",
		r.Run, r.LegitOK, r.LegitOps, r.SuccessRate, r.LatencyP95, r.PeakRSSMB, r.Paired, r.JoinS, r.Path, r.MediaReceived, r.MediaSent,
		r.FloodSent, r.FloodS, r.FloodRate, r.VPSUDPInDatagrams, r.VPSUDPRcvbufErrors, r.ServerStopped)
}

// attacker is the flood and the probe of one run, started by startAttack.
type attacker struct {
	flood     chan floodDone
	probe     *rvflood.Probe
	probeStop context.CancelFunc
	probeRes  chan rvflood.ProbeResult
	probeErrs <-chan error
	started   time.Time
	udpBefore map[string]int
}

type floodDone struct {
	r   rvflood.Result
	err error
}

func benchAttack(b *testing.B, run int) attackResult {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l := newLab(b)
	defer l.Close()
	var at *attacker
	var nw *Network // as far as Build got: the attack starts before pairing
	n, buildErr := Build(ctx, l, Options{Peerlined: peerlinedBin, NAT: &NATOptions{
		A: lab.Symmetric, B: lab.Symmetric, Policy: lab.InputDrop,
		Rendezvousd: rendezvousdBin, Peerline: peerlineBin,
		beforePairing: func(n *Network) error {
			nw = n
			var err error
			at, err = startAttack(ctx, n)
			if err != nil {
				return err
			}
			// The pairing starts with the flood in full swing.
			time.Sleep(3 * time.Second)
			return nil
		},
	}})
	if at == nil {
		b.Fatalf("run %d: the network was not built up to the attack: %v", run, buildErr)
	}
	r := attackResult{Run: run}
	legitOps, legitOK := 1, 0 // the pairing
	if buildErr != nil {
		r.PairError = buildErr.Error()
	} else {
		legitOK++
		r.Paired, r.JoinS, r.FirstPacketS = true, n.Pairing.Join.Seconds(), n.Pairing.FirstPacket.Seconds()
		legitOps++ // the tunnel settling on a path, both sides online
		path, _, err := n.SettledPath(ctx, 30*time.Second)
		r.Path = path
		if err != nil {
			r.PathError = err.Error()
		} else {
			legitOK++
		}
		// Media through the tunnel until the flood ends.
		until := at.started.Add(attackFloodFor - time.Second)
		if s, err := StartStream(ctx, n.B.PhoneHost, n.A.PhoneHost, n.A.PhoneAddr(), n.B.AddrOf(n.A), mediaEvery); err == nil {
			time.Sleep(time.Until(until))
			s.Stop() // what is still in flight is lost, a packet or two
			r.MediaSent, r.MediaReceived = s.Sent(), s.Received(time.Time{})
		} else {
			b.Errorf("run %d: media stream: %v", run, err)
		}
	}
	fd := <-at.flood
	if fd.err != nil {
		b.Fatalf("run %d: flood: %v", run, fd.err)
	}
	srv := nw.Servers[0]
	srvLog := srv.Proc.LogPath()
	r.PeakRSSMB = peakRSSMB(b, srv.Proc.Pid())
	udp := udpCounters(ctx, nw.VPS)
	r.VPSUDPRcvbufErrors = udp["RcvbufErrors"] - at.udpBefore["RcvbufErrors"]
	r.VPSUDPInDatagrams = udp["InDatagrams"] - at.udpBefore["InDatagrams"]
	time.Sleep(time.Second) // the probe sees the end of the flood too
	at.probeStop()
	pr := <-at.probeRes
	for range 2 {
		if err := <-at.probeErrs; err != nil {
			b.Errorf("run %d: probe client: %v", run, err)
		}
	}
	r.FloodSent, r.FloodS, r.FloodReplies = fd.r.Sent, round(fd.r.Elapsed.Seconds(), 1), fd.r.Replies
	r.FloodRate = round(float64(fd.r.Sent)/fd.r.Elapsed.Seconds(), 0)
	tries, ok, p95 := pr.Totals()
	r.LegitOps, r.LegitOK = legitOps+tries, legitOK+ok
	r.SuccessRate = round(float64(r.LegitOK)/float64(r.LegitOps), 4)
	r.LatencyP95 = round(p95, 1)
	r.ByOp = map[string]attackOp{}
	for kind, op := range pr.Ops {
		r.ByOp[kind] = attackOp{Tries: op.Tries, OK: op.OK, P50: round(op.P50, 1), P95: round(op.P95, 1), Max: round(op.Max, 1), Errors: op.Errors}
	}
	{
		for _, node := range []*Node{nw.A, nw.B} {
			if log, err := os.ReadFile(node.daemonLog()); err == nil {
				r.RegisterFailures += strings.Count(string(log), "registration failed")
			}
		}
	}
	if err := srv.Stop(); err != nil {
		b.Logf("run %d: stopping rendezvousd: %v", run, err)
	}
	if r.LegitOK < r.LegitOps {
		// Keep what explains a failure: the lab's logs go with the lab.
		dir := filepath.Join(cmp.Or(os.Getenv("BENCH_OUT"), filepath.Join("..", "..", "bench", "out")), fmt.Sprintf("attack-run%d-logs", run))
		if err := os.MkdirAll(dir, 0o755); err == nil {
			for _, p := range []string{srvLog, nw.A.daemonLog(), nw.B.daemonLog()} {
				if b, err := os.ReadFile(p); err == nil {
					os.WriteFile(filepath.Join(dir, filepath.Base(p)), b, 0o644)
				}
			}
			r.LogsKept = dir
		}
	}
	if log, err := os.ReadFile(srvLog); err == nil {
		for line := range strings.Lines(string(log)) {
			if strings.Contains(line, "limits applied") {
				r.LimitLines++
			}
			if _, stats, ok := strings.Cut(line, `msg=stopped stats="`); ok {
				r.ServerStopped = strings.TrimSuffix(strings.TrimSpace(stats), `"`)
			}
		}
	}
	return r
}

// startAttack wires the attacker to the VPS and starts the flood and the
// probe.
func startAttack(ctx context.Context, n *Network) (*attacker, error) {
	l := n.Lab
	atk, err := l.Host("attacker")
	if err != nil {
		return nil, err
	}
	// Documentation ranges only: the attacker's /24s are in RFC 2544's
	// benchmarking range, on a link of their own to the VPS.
	if err := l.Veth(n.VPS, "atk", atk, "eth0"); err != nil {
		return nil, err
	}
	if err := n.VPS.Addr("atk", "198.18.0.1/15"); err != nil {
		return nil, err
	}
	for i := 1; i <= attackNetworks; i++ {
		if err := atk.Addr("eth0", fmt.Sprintf("198.18.%d.2/15", i)); err != nil {
			return nil, err
		}
	}
	srvAddr := n.Servers[0].Addr
	if err := atk.Route(srvAddr.Addr().String()+"/32", "dev", "eth0"); err != nil {
		return nil, err
	}
	srv := rvclient.Server{Addrs: [2]netip.AddrPort{n.Servers[0].Addr, n.Servers[0].Addr2}, Key: n.A.Config.Rendezvous[0].Key}

	// The probe: two more hosts on the Internet, another network.
	var pcs [2]net.PacketConn
	var hosts [2]*lab.Host
	for i := range pcs {
		h, err := l.PublicHost(fmt.Sprintf("probe%c", 'A'+i), n.Inet, netip.MustParsePrefix(fmt.Sprintf("198.51.100.%d/24", 30+i)))
		if err != nil {
			return nil, err
		}
		if pcs[i], err = h.ListenPacket("udp4", ":0"); err != nil {
			return nil, err
		}
		if err := l.OnClose(pcs[i].Close); err != nil {
			return nil, err
		}
		hosts[i] = h
	}
	at := &attacker{flood: make(chan floodDone, 1), probeRes: make(chan rvflood.ProbeResult, 1)}
	probeCtx, stop := context.WithCancel(ctx)
	at.probeStop = stop
	at.probe, at.probeErrs, err = rvflood.NewProbe(probeCtx, pcs[0], pcs[1], srv, l.Logger().With("part", "probe"))
	if err != nil {
		stop()
		return nil, err
	}
	at.probe.Fetch = func(ctx context.Context, id [rendezvous.InviteIDLen]byte) ([]byte, error) {
		return lab.In(hosts[1], func() ([]byte, error) { return rvclient.GetInvite(ctx, srvAddr, id, nil) })
	}

	var conns []net.PacketConn
	for i := 1; i <= attackNetworks; i++ {
		pc, err := atk.ListenPacket("udp4", fmt.Sprintf("198.18.%d.2:0", i))
		if err != nil {
			stop()
			return nil, err
		}
		if err := l.OnClose(pc.Close); err != nil {
			stop()
			return nil, err
		}
		conns = append(conns, pc)
	}
	at.started = time.Now()
	go func() { at.probeRes <- at.probe.Run(probeCtx, attackProbeEvery, attackProbeTimeout) }()
	at.udpBefore = udpCounters(ctx, n.VPS)
	go func() {
		if os.Getenv("ATTACK_FLOOD") == "0" {
			// The control: the same run without the flood.
			select {
			case <-time.After(attackFloodFor):
			case <-ctx.Done():
			}
			at.flood <- floodDone{r: rvflood.Result{Elapsed: attackFloodFor}}
			return
		}
		r, err := rvflood.Run(ctx, rvflood.Options{
			Server: srvAddr, ServerKey: srv.Key, Conns: conns, Keys: attackFloodKeys,
			Rate: attackFloodRate, MaxPackets: attackFloodPackets, Duration: attackFloodFor,
		})
		at.flood <- floodDone{r, err}
	}()
	return at, nil
}

// udpCounters reads the Udp line of /proc/net/snmp inside h's namespace.
func udpCounters(ctx context.Context, h *lab.Host) map[string]int {
	out, err := h.Run(ctx, "cat", "/proc/net/snmp")
	if err != nil {
		return nil
	}
	var names []string
	m := map[string]int{}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		for i, v := range f[1:] {
			if i < len(names) {
				m[names[i]], _ = strconv.Atoi(v)
			}
		}
	}
	return m
}

// peakRSSMB is a process's peak resident set (VmHWM), in MB.
func peakRSSMB(b *testing.B, pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatalf("reading rendezvousd's memory: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				b.Fatalf("VmHWM line %q: %v", sc.Text(), err)
			}
			return round(float64(kb)/1024, 1)
		}
	}
	b.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

func round(x float64, digits int) float64 {
	if math.IsNaN(x) {
		return -1
	}
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}
