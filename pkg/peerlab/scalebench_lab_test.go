//go:build linux && lab

package peerlab

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/supervisor"
)

// BenchmarkScale measures issue 16's figures for one node with many peers,
// half of them answering and half switched off, for each count in
// SCALE_PEERS (default "32,128,253"). Every answering peer proves its
// tunnel by pinging the node's phone during the first minute; then a
// fixed few of them (the first SCALE_ACTIVE by index, default 16: calls
// in progress) go on pinging every 5 s for the whole idle window, and the
// others fall quiet and turn their keepalive off, as an idle peerlined
// does, so that the node's devices for them park (pkg/wgtunnel lazy.go:
// the node's keepalive goes off 2 minutes after the last data, the device
// parks once the session is 180 s old and nothing came in for 2 minutes,
// so about 5-6 minutes after the first minute: SCALE_IDLE must be well
// past 7 minutes for the end figures to show it):
//
//   - tunnels_up and ready_s: from starting the daemon to READY with every
//     tunnel up (or, if that never happens within 90 s, how many came up);
//   - rss_mb_1min, rss_mb_10min: the daemon's resident memory one minute
//     after the tunnels were up and the answering peers connected (a
//     minute in which all of them ping the node's phone: every online
//     peer's device awake, the cost of all tunnels active at once), and at
//     the end of the idle window (SCALE_IDLE, default 10m, counted from
//     the same point); rss_mb_min/max over the idle stretch show whether
//     it is flat, rss_mb_by_min is the RSS at the end of each minute;
//   - heap_mb, goroutines: the daemon's own figures (status.json) at the
//     end; heap_mb_1min and goroutines_1min at one minute;
//   - awake_at_end: the devices not parked at the end (status.json);
//   - cpu_pct_idle: the daemon's CPU (user + system) over the idle stretch,
//     from the first minute to the end, in percent of one core;
//   - add_one_ms, remove_one_ms: taking one peer out of the config and
//     putting it back (SIGHUP), until the status shows it gone or up; the
//     median of SCALE_CHANGES rounds (default 3), with min and max;
//   - answers_ms, answers_ms_end: how fast `peerline peers` and `peerline
//     status`, the control socket alone, the status page and a phone's
//     phonebook answer (median and max of 20 each, in ms; answerTimes),
//     once READY and at the end of the idle window.
//
// It writes bench/out/scale.json.
func BenchmarkScale(b *testing.B) {
	counts := []int{32, 128, 253}
	if s := os.Getenv("SCALE_PEERS"); s != "" {
		counts = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 2 || n > 253 {
				b.Fatalf("SCALE_PEERS=%q: want counts between 2 and 253, comma separated", s)
			}
			counts = append(counts, n)
		}
	}
	idle := envDuration(b, "SCALE_IDLE", 10*time.Minute)
	// The idle stretch starts after the first minute's traffic: a shorter
	// window would measure no idle CPU at all and write 0 for it.
	if idle < 90*time.Second {
		b.Fatalf("SCALE_IDLE=%v: use at least 90s (the idle stretch, over which cpu_pct_idle is measured, starts after the first minute)", idle)
	}
	early := time.Minute
	active := 16
	if s := os.Getenv("SCALE_ACTIVE"); s != "" {
		var err error
		if active, err = strconv.Atoi(s); err != nil || active < 0 {
			b.Fatalf("SCALE_ACTIVE=%q: want a count >= 0 of answering peers that keep passing traffic", s)
		}
	}
	changes := 3
	if s := os.Getenv("SCALE_CHANGES"); s != "" {
		var err error
		if changes, err = strconv.Atoi(s); err != nil || changes < 1 {
			b.Fatalf("SCALE_CHANGES=%q: want a count >= 1", s)
		}
	}
	var results []scaleResult
	for _, n := range counts {
		r := benchScale(b, n, early, idle, active, changes)
		results = append(results, r)
		fmt.Fprintf(os.Stderr, "bench: scale %+v\n", r)
	}
	benchOut(b, cmp.Or(os.Getenv("SCALE_OUT"), "scale.json"), map[string]any{
		"idle_window_s": idle.Seconds(),
		"active_peers":  active,
		"results":       results,
	})
}

func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	if d, err := time.ParseDuration(s); err == nil {
		return d
	}
	sec, err := strconv.ParseFloat(s, 64)
	if err != nil {
		b.Fatalf("%s=%q: want a Go duration or seconds", name, s)
	}
	return time.Duration(sec * float64(time.Second))
}

type scaleResult struct {
	Peers        int       `json:"peers"`
	Online       int       `json:"online"`
	TunnelsUp    int       `json:"tunnels_up"`
	ReadyS       *float64  `json:"ready_s"`
	Handshaked   int       `json:"online_with_session"`
	RSS1min      float64   `json:"rss_mb_1min"`
	RSS10min     float64   `json:"rss_mb_10min"`
	RSSMin       float64   `json:"rss_mb_min_after_1min"`
	RSSMax       float64   `json:"rss_mb_max_after_1min"`
	RSSByMin     []float64 `json:"rss_mb_by_min"`
	HeapMB       *float64  `json:"heap_mb"`
	Goroutines   *int      `json:"goroutines"`
	HeapMB1min   *float64  `json:"heap_mb_1min"`
	Goroutines1  *int      `json:"goroutines_1min"`
	Active       int       `json:"active"`
	AwakeAtEnd   int       `json:"awake_at_end"`
	Threads      int       `json:"threads"`
	CPUPctIdle   float64   `json:"cpu_pct_idle"`
	AddOneMS     *float64  `json:"add_one_ms"`
	RemoveOneMS  *float64  `json:"remove_one_ms"`
	AddMinMax    []float64 `json:"add_one_ms_min_max,omitempty"`
	RemoveMinMax []float64 `json:"remove_one_ms_min_max,omitempty"`
	// OthersTouched counts tunnels other than the changed one that were
	// closed or started during the add/remove rounds; the goal is 0.
	OthersTouched int     `json:"others_touched"`
	Pings         int64   `json:"pings"`
	Replies       int64   `json:"replies"`
	IdleS         float64 `json:"idle_s"`

	// Answers and AnswersEnd are how fast the node answers its users
	// (scaleanswers_lab_test.go): once READY with every answering peer
	// connected, and at the end of the idle window.
	Answers    answerTimes `json:"answers_ms,omitempty"`
	AnswersEnd answerTimes `json:"answers_ms_end,omitempty"`
}

func benchScale(b *testing.B, n int, early, idle time.Duration, active, changes int) scaleResult {
	l := newLab(b)
	defer l.Close()
	ctx, cancel := context.WithTimeout(b.Context(), idle+10*time.Minute)
	defer cancel()
	online := n / 2
	s, err := buildScale(ctx, l, n, online)
	if err != nil {
		b.Fatal(err)
	}
	active = min(active, online)
	r := scaleResult{Peers: n, Online: online, IdleS: idle.Seconds(), Active: active}
	start := time.Now()
	if err := s.start(ctx); err != nil {
		b.Fatal(err)
	}
	pid := s.node.Daemon.Pid()
	st, err := s.waitAllUp(ctx, 90*time.Second)
	if err == nil {
		v := time.Since(start).Seconds()
		r.ReadyS = &v
	} else {
		b.Logf("%d peers: %v", n, err)
	}
	if st != nil {
		r.TunnelsUp = tunnelsUp(st)
	}
	r.Handshaked, err = s.waitHandshakes(ctx, 60*time.Second)
	if err != nil {
		b.Logf("%d peers: %v", n, err)
	}
	// An answer that fails is an error of the bench, which goes on to
	// measure the rest.
	if r.Answers, err = s.timeAnswers(ctx); err != nil {
		b.Errorf("%d peers: answers at READY: %v (log %s)", n, err, s.node.daemonLog())
	}
	fmt.Fprintf(os.Stderr, "bench: scale %d peers: answers at READY, p50/max of %d each: %v\n", n, scaleAnswerRounds, r.Answers)
	// The minute of traffic and the idle window count from here: with
	// every tunnel up (or given up on) and the answering peers connected.
	start = time.Now()
	tctx, stopTraffic := context.WithCancel(ctx)
	all := s.onlineByIndex()
	go s.runTraffic(tctx, all, 5*time.Second)
	actx, stopActive := context.WithCancel(ctx)
	defer stopActive()
	nextMin := start.Add(time.Minute)
	var cpuAt1 int64
	var at1 time.Time
	r.RSSMin = math.Inf(1)
	for {
		elapsed := time.Since(start)
		ps, err := readProcStat(pid)
		if err != nil {
			b.Fatalf("daemon gone: %v (log %s)", err, s.node.daemonLog())
		}
		rss := float64(ps.rssKB) / 1024
		if elapsed >= early {
			if at1.IsZero() {
				stopTraffic()
				at1, cpuAt1, r.RSS1min = time.Now(), ps.cpuTick, rss
				// The active few go on; the rest fall quiet.
				go s.runTraffic(actx, all[:active], 5*time.Second)
				for _, fp := range all[active:] {
					if err := fp.quiet(); err != nil {
						b.Fatalf("turning an idle answering peer's keepalive off: %v", err)
					}
				}
				if rt, err := s.runtime(ctx); err == nil && rt != nil {
					h, g := round2(rt.HeapMB), rt.Goroutines
					r.HeapMB1min, r.Goroutines1 = &h, &g
				}
				go s.profile(b, n, "cpu", "profile?seconds="+strconv.Itoa(int(max(idle-early-5*time.Second, time.Second).Seconds())))
			}
			r.RSSMin, r.RSSMax = min(r.RSSMin, rss), max(r.RSSMax, rss)
		}
		if !time.Now().Before(nextMin) {
			r.RSSByMin = append(r.RSSByMin, round2(rss))
			nextMin = nextMin.Add(time.Minute)
		}
		if elapsed >= idle {
			r.RSS10min, r.Threads = rss, ps.threads
			if secs := time.Since(at1).Seconds(); secs > 0 {
				r.CPUPctIdle = round2(float64(ps.cpuTick-cpuAt1) / clockTicks / secs * 100)
			}
			break
		}
		select {
		case <-ctx.Done():
			b.Fatal(ctx.Err())
		case <-time.After(min(5*time.Second, max(time.Until(start.Add(early)), time.Until(start.Add(idle)), 10*time.Millisecond))):
		}
	}
	stopTraffic()
	stopActive()
	r.Pings, r.Replies = s.pings.Load(), s.replies.Load()
	if st, err := s.node.StatusSince(ctx, time.Now()); err == nil {
		for _, p := range st.Peers {
			if p.Up && !p.Parked {
				r.AwakeAtEnd++
			}
		}
	}
	if rt, err := s.runtime(ctx); err == nil && rt != nil {
		h := round2(rt.HeapMB)
		g := rt.Goroutines
		r.HeapMB, r.Goroutines = &h, &g
	}
	s.profile(b, n, "heap", "heap?gc=1")
	if r.AnswersEnd, err = s.timeAnswers(ctx); err != nil {
		b.Errorf("%d peers: answers at the end of the idle window: %v (log %s)", n, err, s.node.daemonLog())
	}
	fmt.Fprintf(os.Stderr, "bench: scale %d peers: answers at the end of the idle window, p50/max of %d each: %v\n", n, scaleAnswerRounds, r.AnswersEnd)
	r.RSS1min, r.RSS10min, r.RSSMin, r.RSSMax = round2(r.RSS1min), round2(r.RSS10min), round2(r.RSSMin), round2(r.RSSMax)
	if r.ReadyS != nil {
		adds, removes, others, err := s.changeOne(ctx, changes)
		if err != nil {
			b.Logf("%d peers: add/remove: %v", n, err)
		}
		r.OthersTouched = others
		r.AddOneMS, r.AddMinMax = summarize(adds)
		r.RemoveOneMS, r.RemoveMinMax = summarize(removes)
	}
	logPath := s.node.daemonLog()
	if err := s.node.Stop(); err != nil {
		b.Logf("stopping the daemon: %v", err)
	}
	if os.Getenv("SCALE_KEEP_LOG") != "" {
		if log, err := os.ReadFile(logPath); err == nil {
			os.WriteFile(filepath.Join(cmp.Or(os.Getenv("BENCH_OUT"), filepath.Join("..", "..", "bench", "out")), fmt.Sprintf("scale-%d.log", n)), log, 0o644)
		}
	}
	return r
}

// profile saves one of the daemon's profiles (PEERLINED_PPROF, a Unix
// socket the daemon serves net/http/pprof on) as SCALE_PPROF_DIR/<kind>-<n>.pprof;
// nothing unless both are set.
func (s *scaleNet) profile(b *testing.B, n int, kind, query string) {
	sock, dir := os.Getenv("PEERLINED_PPROF"), os.Getenv("SCALE_PPROF_DIR")
	if sock == "" || dir == "" {
		return
	}
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get("http://peerlined/debug/pprof/" + query)
	if err != nil {
		b.Logf("%s profile: %v", kind, err)
		return
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", kind, n)), data, 0o644)
	}
	if err != nil {
		b.Logf("%s profile: %v", kind, err)
	}
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

func summarize(ms []float64) (*float64, []float64) {
	if len(ms) == 0 {
		return nil, nil
	}
	slices.Sort(ms)
	med := round2(ms[len(ms)/2])
	return &med, []float64{round2(ms[0]), round2(ms[len(ms)-1])}
}

// runtime reads the daemon's own memory figures from a status written
// after now.
func (s *scaleNet) runtime(ctx context.Context) (*supervisor.RuntimeStatus, error) {
	st, err := s.node.StatusSince(ctx, time.Now())
	if err != nil {
		return nil, err
	}
	return st.Runtime, nil
}

// changeOne takes the last peer out of the config and puts it back, rounds
// times, timing each until the status shows it; it also counts tunnels of
// other peers that were closed or started meanwhile (from the daemon log).
func (s *scaleNet) changeOne(ctx context.Context, rounds int) (adds, removes []float64, others int, err error) {
	all := slices.Clone(s.node.Config.Peers)
	last := all[len(all)-1]
	dev := fmt.Sprintf("%s%d", s.node.Config.Prefix, last.Index)
	logBefore, _ := s.node.Daemon.Log()
	for range rounds {
		s.node.Config.Peers = all[:len(all)-1]
		d, err := s.timeChange(ctx, func(st *supervisor.Status) bool {
			return !slices.ContainsFunc(st.Peers, func(p supervisor.PeerStatus) bool { return p.Index == last.Index })
		})
		if err != nil {
			return adds, removes, others, fmt.Errorf("removing peer %d: %w", last.Index, err)
		}
		removes = append(removes, d)
		s.node.Config.Peers = all
		d, err = s.timeChange(ctx, func(st *supervisor.Status) bool {
			i := slices.IndexFunc(st.Peers, func(p supervisor.PeerStatus) bool { return p.Index == last.Index })
			return i >= 0 && st.Peers[i].Up
		})
		if err != nil {
			return adds, removes, others, fmt.Errorf("adding peer %d: %w", last.Index, err)
		}
		adds = append(adds, d)
	}
	logAfter, _ := s.node.Daemon.Log()
	for _, line := range strings.Split(strings.TrimPrefix(logAfter, logBefore), "\n") {
		if (strings.Contains(line, `msg="tunnel up"`) || strings.Contains(line, `msg="tunnel closed"`)) && !slices.Contains(strings.Fields(line), "dev="+dev) {
			others++
		}
	}
	return adds, removes, others, nil
}

// timeChange writes the node's config, sends SIGHUP and waits for a status
// written after that which satisfies done; it returns the milliseconds
// until the look at the file that found that status. Reading and decoding
// a 253-peer status takes 15-40 ms of CPU here, so the file is decoded only
// when its modification time moved (the daemon writes it by renaming a new
// file, then sets its time to the status's, see supervisor.statusWriter):
// decoding it every 2 ms took a share of the two cores from the daemon and
// added one decode to each figure.
func (s *scaleNet) timeChange(ctx context.Context, done func(*supervisor.Status) bool) (float64, error) {
	if err := s.node.writeConfig(); err != nil {
		return 0, err
	}
	path := filepath.Join(s.node.Config.RunDir, "status.json")
	start := time.Now()
	if err := s.hup(); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var seen time.Time
	for {
		fi, err := os.Stat(path)
		if err == nil && fi.ModTime().After(start) && !fi.ModTime().Equal(seen) {
			found := time.Since(start)
			seen = fi.ModTime()
			if st, err := s.node.Status(); err == nil && st.Updated.After(start) && done(st) {
				// A file replaced meanwhile may be what was decoded:
				// then only the time after the decode is sure.
				if fi, err := os.Stat(path); err != nil || !fi.ModTime().Equal(seen) {
					found = time.Since(start)
				}
				return float64(found.Microseconds()) / 1000, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("no status showing the change after 30 s (log %s)", s.node.daemonLog())
		case <-time.After(2 * time.Millisecond):
		}
	}
}
