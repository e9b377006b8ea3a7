//go:build linux && lab

package peerlab

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/lab"
)

// The lossy-link row of nat-matrix.json (issue 14): pairings by invite
// between two Pis behind port-restricted routers over an Internet that
// loses 3 % of packets each way, on top of the matrix's 50 ms one-way
// delay. A pairing succeeds when `peerline join` says so and both Pis
// then keep each other for good (the inviter's invite used, the joiner's
// journal empty, no other peer on either) with a ping through the tunnel;
// the goal is every pairing.

// lossyLoss is the share of packets the Internet drops.
const lossyLoss = 0.03

// lossyRuns is LOSSY_RUNS, or NAT_RUNS (benchRuns) pairings.
func lossyRuns() int {
	if n, err := strconv.Atoi(os.Getenv("LOSSY_RUNS")); err == nil && n > 0 {
		return n
	}
	return benchRuns()
}

type lossyResult struct {
	A             string  `json:"a"`
	B             string  `json:"b"`
	InputPolicy   string  `json:"input_policy"`
	LossPercent   float64 `json:"loss_percent"`
	OneWayDelayMs int64   `json:"one_way_delay_ms"`
	Runs          int     `json:"runs"`
	Paired        int     `json:"paired"`
	SuccessRate   float64 `json:"pairing_success_rate"`
	Goal          float64 `json:"pairing_success_goal"`
	JoinP50       float64 `json:"join_ms_p50"`
	JoinP95       float64 `json:"join_ms_p95"`
	// Failures counts the failed pairings by what went wrong.
	Failures map[string]int `json:"failures,omitempty"`
}

// benchLossyPairing pairs two Pis runs times over the lossy Internet. The
// loss starts once the lab is built (the lab's own first pairing is not
// counted) and stays on for every step of every run, unpairing included.
func benchLossyPairing(b *testing.B, runs int) lossyResult {
	c := natCase{a: lab.PortRestricted, b: lab.PortRestricted, policy: lab.InputDrop}
	r := lossyResult{A: string(c.a), B: string(c.b), InputPolicy: string(c.policy), LossPercent: 100 * lossyLoss,
		OneWayDelayMs: benchDelay.Delay.Milliseconds(), Runs: runs, Goal: 1, Failures: map[string]int{}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(runs)*time.Minute+2*time.Minute)
	defer cancel()
	l := newLab(b)
	defer l.Close()
	n, err := Build(ctx, l, Options{Peerlined: peerlinedBin, NAT: &NATOptions{
		A: c.a, B: c.b, Policy: c.policy, Impairment: benchDelay,
		Rendezvousd: rendezvousdBin, Peerline: peerlineBin,
	}})
	if err != nil {
		b.Fatalf("lossy link: %v", err)
	}
	inet, ok := n.Inet.(*lab.Internet)
	if !ok {
		b.Fatalf("the network's Internet is a %T, which cannot drop packets", n.Inet)
	}
	lossy := benchDelay
	lossy.Loss = lossyLoss
	if err := inet.SetImpairment(lossy); err != nil {
		b.Fatal(err)
	}
	before := inet.Stats()
	var joins []time.Duration
	fail := func(run int, what string, err error) {
		r.Failures[what]++
		fmt.Fprintf(os.Stderr, "lossy link run %d: %s: %v\n", run, what, err)
	}
	for run := range runs {
		// A failed run may leave either side with a peer (that is what
		// is counted); every run starts from none.
		if err := unpairNodes(ctx, n); err != nil {
			fail(run, "unpairing", err)
			continue
		}
		var inv control.InviteResult
		if err := n.A.cli(ctx, &inv, "invite", "--json", "--ttl", "10m"); err != nil {
			fail(run, "invite", err)
			continue
		}
		start := time.Now()
		var ref control.PeerRef
		if err := n.B.cli(ctx, &ref, "join", "--json", inv.Code); err != nil {
			what := "join failed"
			if strings.Contains(err.Error(), "reading peerlined's answer") {
				what = "join's answer lost"
			}
			fail(run, what, err)
			continue
		}
		took := time.Since(start)
		if err := pairedForGood(ctx, n, 30*time.Second); err != nil {
			fail(run, "joined, not paired for good", err)
			continue
		}
		r.Paired++
		joins = append(joins, took)
		fmt.Fprintf(os.Stderr, "lossy link run %d: paired, join %v\n", run, took.Round(time.Millisecond))
	}
	r.SuccessRate = float64(r.Paired) / float64(runs)
	r.JoinP50, r.JoinP95 = natPercentile(joins, 0.5), natPercentile(joins, 0.95)
	st := inet.Stats()
	fmt.Fprintf(os.Stderr, "lossy link (%.0f %% loss): %d/%d paired, join p50 %.0f ms p95 %.0f ms; the Internet lost %d of %d packets\n",
		r.LossPercent, r.Paired, runs, r.JoinP50, r.JoinP95, st.Lost-before.Lost, st.Frames-before.Frames)
	return r
}
