//go:build linux && lab

package peerlab

import (
	"context"
	"net/http"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/lab"
)

// TestRendezvousMetrics: A's /metrics shows its registration with each of
// its two rendezvous servers, and the one whose server went down turns to
// 0 within three refresh intervals while the other stays 1.
func TestRendezvousMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	l := newLab(t)
	natBins(t)
	n, err := Build(ctx, l, Options{Peerlined: peerlinedBin, NAT: &NATOptions{
		A: lab.PortRestricted, B: lab.RestrictedCone, Policy: lab.InputDrop,
		Rendezvousd: rendezvousdBin, Peerline: peerlineBin, Servers: 2, noPairing: true,
	}})
	if err != nil {
		t.Fatal(err)
	}
	const token = "lab-metrics-token-0123456789"
	n.A.Config.Console.MetricsToken = token
	if err := n.A.writeConfig(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(n.A.Daemon.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// registered returns each server's peerline_rendezvous_registered,
	// in the order of the servers' labels.
	registered := func() (servers []string, values []float64) {
		code, fams := scrapeMetrics(t, n.A.PhoneHost, "http://10.0.1.2/metrics", token)
		if code != http.StatusOK {
			return nil, nil
		}
		f := fams["peerline_rendezvous_registered"]
		if f == nil {
			return nil, nil
		}
		byServer := map[string]float64{}
		for _, m := range f.Metric {
			byServer[m.Label[0].GetValue()] = m.Gauge.GetValue()
		}
		for s := range byServer {
			servers = append(servers, s)
		}
		sort.Strings(servers)
		for _, s := range servers {
			values = append(values, byServer[s])
		}
		return servers, values
	}
	waitFor := func(what string, within time.Duration, ok func([]float64) bool) []string {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			servers, values := registered()
			if len(values) == 2 && ok(values) {
				return servers
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v; last %v = %v", what, within, servers, values)
			}
			select {
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			case <-time.After(time.Second):
			}
		}
	}
	servers := waitFor("both servers registered", 30*time.Second, func(v []float64) bool { return v[0] == 1 && v[1] == 1 })
	t.Logf("registered with %v", servers)

	stopped := time.Now()
	if err := n.Servers[1].Stop(); err != nil {
		t.Fatal(err)
	}
	waitFor("one server unregistered", 90*time.Second, func(v []float64) bool { return v[0]+v[1] == 1 })
	t.Logf("a stopped server showed unregistered %v after it stopped", time.Since(stopped).Round(time.Second))
}
