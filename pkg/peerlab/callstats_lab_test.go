//go:build linux && lab

package peerlab

import (
	"net/http"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/lab"
)

// TestCallQuality: a call between the two Pis' phones shows on both in
// `peerline calls --json` with its media both ways, no loss and an
// estimated MOS of a clean link (≥ 4), while live and for 24 h after it
// ended, with the state changing 10 s after the last packet. A's /metrics,
// from its phone port with the config's token, says the same; without
// the token it says 401.
func TestCallQuality(t *testing.T) {
	ctx, n := newNetwork(t, 2*time.Minute)
	const token = "lab-metrics-token-0123456789"
	n.A.Config.Console.MetricsToken = token
	if err := n.A.writeConfig(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(n.A.Daemon.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	phoneA, phoneB, err := n.StartPhones(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Call(ctx, phoneA, phoneB, "sip:b@10.7.1.1", 4*time.Second)
	requireCall(t, r, err, "sip:a@10.4.1.1")
	hungUp := time.Now()

	check := func(node *Node, peer int) control.CallInfo {
		t.Helper()
		node.peerline = peerlineBin
		var calls []control.CallInfo
		if err := node.cli(ctx, &calls, "calls", "--json"); err != nil {
			t.Fatal(err)
		}
		if len(calls) != 1 {
			t.Fatalf("node %s: peerline calls = %+v, want the one call", node.Name, calls)
		}
		c := calls[0]
		t.Logf("node %s: call %d %s, %v long, sent %d received %d, loss %.2f%%, jitter %.2f ms, RTT %v, MOS %.2f (min %.2f)",
			node.Name, c.ID, c.State, c.LastPacket.Sub(c.Since).Round(time.Millisecond), c.Sent.Packets, c.Received.Packets,
			c.Received.LossPercent, float64(c.Received.Jitter)/1e6, rttOf(c), c.MOS, c.Received.MinMOS)
		if c.Peer != peer || c.Sent.Packets < 100 || c.Received.Packets < 100 {
			t.Errorf("node %s: call %+v, want media both ways with peer %d", node.Name, c, peer)
		}
		if c.Received.LossPercent > 1 || c.Sent.LossPercent > 1 {
			t.Errorf("node %s: loss %.2f%% received, %.2f%% sent on a clean link", node.Name, c.Received.LossPercent, c.Sent.LossPercent)
		}
		if c.MOS < 4 || c.Received.MOS < 4 || c.Sent.MOS < 4 {
			t.Errorf("node %s: MOS %.2f (received %.2f, sent %.2f), want ≥ 4 on a clean link", node.Name, c.MOS, c.Received.MOS, c.Sent.MOS)
		}
		if d := c.LastPacket.Sub(c.Since); d < 3*time.Second || d > 10*time.Second {
			t.Errorf("node %s: call lasted %v, want about the 4 s talked", node.Name, d)
		}
		return c
	}
	if c := check(n.A, 7); c.State != control.CallLive && time.Since(hungUp) < 9*time.Second {
		t.Errorf("node A: state %q %v after hanging up, want live for 10 s", c.State, time.Since(hungUp))
	}
	check(n.B, 4)

	metricsURL := "http://10.0.1.2/metrics"
	if code, _ := scrapeMetrics(t, n.A.PhoneHost, metricsURL, ""); code != http.StatusUnauthorized {
		t.Errorf("GET %s without the token = %d, want 401", metricsURL, code)
	}
	code, fams := scrapeMetrics(t, n.A.PhoneHost, metricsURL, token)
	if code != http.StatusOK {
		t.Fatalf("GET %s with the token = %d", metricsURL, code)
	}
	gauge := func(name string, labels ...string) (float64, bool) {
		f := fams[name]
		if f == nil {
			return 0, false
		}
	next:
		for _, m := range f.Metric {
			for k := 0; k+1 < len(labels); k += 2 {
				found := false
				for _, l := range m.Label {
					found = found || l.GetName() == labels[k] && l.GetValue() == labels[k+1]
				}
				if !found {
					continue next
				}
			}
			if m.Gauge != nil {
				return m.Gauge.GetValue(), true
			}
			return m.Counter.GetValue(), true
		}
		return 0, false
	}
	for _, w := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"peerline_scrape_ok", nil, 1},
		{"peerline_peer_online", []string{"peer", "7"}, 1},
		{"peerline_peer_path", []string{"peer", "7", "path", "direct"}, 1},
		{"peerline_tunnel_up", []string{"peer", "7"}, 1},
	} {
		if got, ok := gauge(w.name, w.labels...); !ok || got != w.want {
			t.Errorf("metrics: %s%v = %v (present %v), want %v", w.name, w.labels, got, ok, w.want)
		}
	}
	live, _ := gauge("peerline_calls", "state", "live")
	ended, _ := gauge("peerline_calls", "state", "ended")
	t.Logf("metrics from A's phone port: %v live and %v ended calls, %d metric families", live, ended, len(fams))
	if live+ended != 1 {
		t.Errorf("metrics: %v live and %v ended calls, want the one", live, ended)
	}
	if live == 1 {
		if mos, ok := gauge("peerline_call_mos", "peer", "7", "direction", "received"); !ok || mos < 4 {
			t.Errorf("metrics: live call's MOS %v (present %v), want ≥ 4", mos, ok)
		}
	}
	// The metric must carry the path manager's figure; its size is the
	// lab's (a few ms on a quiet machine, over 100 ms on a loaded one), so
	// only a figure no lab path gives (a second) counts as wrong.
	if rtt, ok := gauge("peerline_peer_rtt_seconds", "peer", "7"); !ok || rtt <= 0 || rtt > 1 {
		t.Errorf("metrics: RTT to B %v s (present %v), want a positive round trip under 1 s", rtt, ok)
	}
	if _, ok := gauge("peerline_rewrite_dropped_packets_total", "peer", "7", "direction", "inbound", "reason", "sip_flood"); !ok {
		t.Errorf("metrics: no rewriter drop counters")
	}

	// Ended 10 s after the last packet (and at most a 5 s sample later).
	deadline := time.Now().Add(20 * time.Second)
	for {
		var calls []control.CallInfo
		if err := n.A.cli(ctx, &calls, "calls", "--json"); err != nil {
			t.Fatal(err)
		}
		if len(calls) == 1 && calls[0].State == control.CallEnded {
			t.Logf("call ended in the list %v after hanging up", time.Since(hungUp).Round(time.Second))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("call still %+v 20 s after hanging up, want ended", calls)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(time.Second):
		}
	}
	check(n.A, 7)
}

// scrapeMetrics GETs url from h (with the bearer token, if any) and parses
// the exposition of a 200.
func scrapeMetrics(t *testing.T, h *lab.Host, url, token string) (int, map[string]*dto.MetricFamily) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: h.Dial, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: the exposition does not parse: %v", url, err)
	}
	return resp.StatusCode, fams
}

func rttOf(c control.CallInfo) time.Duration {
	if c.RTT == nil {
		return 0
	}
	return time.Duration(*c.RTT)
}
