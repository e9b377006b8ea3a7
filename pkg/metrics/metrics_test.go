package metrics

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/peerline/peerline/pkg/control"
)

const token = "0123456789abcdef-metrics"

func snapshot() Snapshot {
	rtt := control.Duration(42 * time.Millisecond)
	hs := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	return Snapshot{
		Status: control.Status{Name: "alice", Version: "v1", Ready: true, NATClass: "cone", Peers: []control.Peer{
			{Index: 7, Name: `bob "the builder"`, Up: true, Online: true, Path: "direct", RTT: &rtt, RxBytes: 1000, TxBytes: 2000, LastHandshake: &hs},
			{Index: 9, Name: "carol", Up: true, Path: "relay"},
		}},
		Calls: []control.CallInfo{
			{ID: 3, State: control.CallLive, Peer: 7, PeerName: `bob "the builder"`, Line: 1, MOS: 4.4,
				Sent:     control.CallStream{Packets: 500, Expected: 500, ClockRate: 8000, MOS: 4.4},
				Received: control.CallStream{Packets: 495, Expected: 500, Lost: 5, LossPercent: 1, Jitter: control.Duration(3 * time.Millisecond), ClockRate: 8000, MOS: 4.3}},
			{ID: 2, State: control.CallEnded, Peer: 9, Line: 1},
			{ID: 1, State: control.CallEnded, Peer: 9, Line: 2},
		},
		Counters: control.Counters{
			Peers: []control.PeerCounters{{Index: 7, Name: `bob "the builder"`, Directions: []control.DirectionCounters{
				{Direction: "inbound", Packets: 900, SIPInDialog: 31,
					Dropped:    []control.ReasonCount{{Reason: "sip_flood", Count: 12}, {Reason: "sip_dialog_flood", Count: 1}, {Reason: "fragment_timeout", Count: 0}},
					SIPRefused: []control.ReasonCount{{Reason: "bad-content-length", Count: 2}},
					Latency:    &control.RewriterLatency{Sampled: 40, P50Ns: 500, P99Ns: 1800, SumNs: 24000}},
				{Direction: "outbound", Dropped: []control.ReasonCount{{Reason: "sip_flood", Count: 0}}},
			}}},
			Rendezvous: []control.RendezvousState{{Server: "rv.example.org:3478", Registered: true, LastRegistered: &hs}, {Server: "rv2.example.org:3478"}},
		},
		Lines: &control.Lines{
			Lines:     []control.Line{{Line: 1, Registration: &control.Registration{}}, {Line: 2}},
			Registrar: control.RegistrarCounts{Registered: 5, Challenged: 7, Refused: 2, Limited: 1},
			Calls:     map[string]uint64{"peer": 4, "refuse": 1},
		},
		Trunks: control.Trunks{Trunks: []control.Trunk{{Name: "sipgate", State: "registered", Calls: 1}, {Name: "pbx", State: "failed"}}},
	}
}

func handler(src Source, authed bool) http.Handler {
	return Handler(Options{
		Source: src,
		Token:  func() string { return token },
		Authed: func(r *http.Request) bool { return authed && r.Header.Get("Cookie") == "session=ok" },
	})
}

func okSource(context.Context) (Snapshot, error) { return snapshot(), nil }

func TestAuth(t *testing.T) {
	tests := []struct {
		name   string
		h      http.Handler
		method string
		header map[string]string
		code   int
	}{
		{"nothing", handler(okSource, true), "GET", nil, 401},
		{"wrong token", handler(okSource, true), "GET", map[string]string{"Authorization": "Bearer nope"}, 401},
		{"token as basic", handler(okSource, true), "GET", map[string]string{"Authorization": "Basic " + token}, 401},
		{"token prefix", handler(okSource, true), "GET", map[string]string{"Authorization": "Bearer " + token[:10]}, 401},
		{"token", handler(okSource, false), "GET", map[string]string{"Authorization": "Bearer " + token}, 200},
		{"session", handler(okSource, true), "GET", map[string]string{"Cookie": "session=ok"}, 200},
		{"other session", handler(okSource, true), "GET", map[string]string{"Cookie": "session=forged"}, 401},
		{"token off", Handler(Options{Source: okSource, Token: func() string { return "" }}), "GET", map[string]string{"Authorization": "Bearer "}, 401},
		{"no console, no token", Handler(Options{Source: okSource}), "GET", nil, 401},
		{"post", handler(okSource, true), "POST", map[string]string{"Authorization": "Bearer " + token}, 405},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(tt.method, "/metrics", nil)
		for k, v := range tt.header {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		tt.h.ServeHTTP(rec, req)
		if rec.Code != tt.code {
			t.Errorf("%s: %s /metrics = %d, want %d: %s", tt.name, tt.method, rec.Code, tt.code, rec.Body)
		}
		if rec.Code == 401 {
			if rec.Header().Get("WWW-Authenticate") == "" || strings.Contains(rec.Body.String(), "peerline_") {
				t.Errorf("%s: 401 without a challenge, or with metrics: %s", tt.name, rec.Body)
			}
		}
	}
}

// scrape fetches and parses the exposition.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("GET /metrics = %d: %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("exposition does not parse: %v", err)
	}
	return fams
}

// value is the value of the metric in fams with these labels.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for k := 0; k+1 < len(labels); k += 2 {
			if got[labels[k]] != labels[k+1] {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		}
	}
	t.Fatalf("no %s with labels %v", name, labels)
	return 0
}

func TestExposition(t *testing.T) {
	fams := scrape(t, handler(okSource, false))
	bob := `bob "the builder"`
	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"peerline_scrape_ok", nil, 1},
		{"peerline_ready", nil, 1},
		{"peerline_info", []string{"node", "alice", "nat_class", "cone"}, 1},
		{"peerline_peers", nil, 2},
		{"peerline_tunnel_up", []string{"peer", "7", "name", bob}, 1},
		{"peerline_peer_online", []string{"peer", "9"}, 0},
		{"peerline_peer_path", []string{"peer", "7", "path", "direct"}, 1},
		{"peerline_peer_path", []string{"peer", "7", "path", "relay"}, 0},
		{"peerline_peer_path", []string{"peer", "9", "path", "relay"}, 1},
		{"peerline_peer_rtt_seconds", []string{"peer", "7"}, 0.042},
		{"peerline_peer_receive_bytes_total", []string{"peer", "7"}, 1000},
		{"peerline_peer_transmit_bytes_total", []string{"peer", "7"}, 2000},
		{"peerline_peer_last_handshake_timestamp_seconds", []string{"peer", "7"}, float64(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC).Unix())},
		{"peerline_calls", []string{"state", "live"}, 1},
		{"peerline_calls", []string{"state", "ended"}, 2},
		{"peerline_call_packets_total", []string{"call", "3", "direction", "received"}, 495},
		{"peerline_call_lost_packets_total", []string{"call", "3", "direction", "received"}, 5},
		{"peerline_call_loss_ratio", []string{"call", "3", "direction", "received"}, 0.01},
		{"peerline_call_jitter_seconds", []string{"call", "3", "direction", "received"}, 0.003},
		{"peerline_call_mos", []string{"call", "3", "direction", "received"}, 4.3},
		{"peerline_rewrite_dropped_packets_total", []string{"peer", "7", "direction", "inbound", "reason", "sip_flood"}, 12},
		{"peerline_rewrite_dropped_packets_total", []string{"peer", "7", "direction", "inbound", "reason", "fragment_timeout"}, 0},
		{"peerline_rewrite_dropped_packets_total", []string{"peer", "7", "direction", "inbound", "reason", "sip_dialog_flood"}, 1},
		{"peerline_rewrite_sip_refused_total", []string{"reason", "bad-content-length"}, 2},
		{"peerline_rewrite_packets_total", []string{"peer", "7", "direction", "inbound"}, 900},
		{"peerline_rewrite_sip_in_dialog_total", []string{"peer", "7"}, 31},
		{"peerline_rendezvous_registered", []string{"server", "rv.example.org:3478"}, 1},
		{"peerline_rendezvous_registered", []string{"server", "rv2.example.org:3478"}, 0},
		{"peerline_sip_line_registered", []string{"line", "1"}, 1},
		{"peerline_sip_line_registered", []string{"line", "2"}, 0},
		{"peerline_sip_trunk_registered", []string{"trunk", "sipgate"}, 1},
		{"peerline_sip_trunk_registered", []string{"trunk", "pbx"}, 0},
		{"peerline_sip_trunk_calls", []string{"trunk", "sipgate"}, 1},
		{"peerline_sip_registrar_total", []string{"result", "registered"}, 5},
		{"peerline_sip_registrar_total", []string{"result", "refused"}, 2},
		{"peerline_sip_registrar_total", []string{"result", "limited"}, 1},
		{"peerline_sip_calls_total", []string{"decision", "peer"}, 4},
		{"peerline_sip_calls_total", []string{"decision", "local"}, 0},
		{"peerline_sip_calls_total", []string{"decision", "refuse"}, 1},
	}
	for _, tt := range tests {
		if got := value(t, fams, tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	if f := fams["peerline_peer_rtt_seconds"]; len(f.Metric) != 1 {
		t.Errorf("RTT for %d peers, want only the one with an RTT", len(f.Metric))
	}
	if f := fams["peerline_call_packets_total"]; len(f.Metric) != 2 {
		t.Errorf("%d call packet series, want the live call's two directions", len(f.Metric))
	}
	// The rewriter's own latency: a summary of the sampled packets, only
	// for a direction that has any.
	if f := fams["peerline_rewrite_latency_seconds"]; f == nil || len(f.Metric) != 1 || f.Metric[0].Summary == nil {
		t.Errorf("peerline_rewrite_latency_seconds = %v, want one summary", f)
	} else {
		sm := f.Metric[0].Summary
		q := map[float64]float64{}
		for _, x := range sm.Quantile {
			q[x.GetQuantile()] = x.GetValue()
		}
		if sm.GetSampleCount() != 40 || sm.GetSampleSum() != 24e-6 || q[0.5] != 500e-9 || q[0.99] != 1800e-9 {
			t.Errorf("rewriter latency summary = %v, want 40 samples, sum 24 µs, p50 500 ns, p99 1.8 µs", sm)
		}
	}
	if fams["go_goroutines"] == nil {
		t.Errorf("no Go runtime metrics")
	}
}

func TestSourceFails(t *testing.T) {
	h := handler(func(context.Context) (Snapshot, error) { return Snapshot{}, errors.New("supervisor stopped") }, false)
	fams := scrape(t, h)
	if v := value(t, fams, "peerline_scrape_ok"); v != 0 {
		t.Errorf("peerline_scrape_ok = %v, want 0", v)
	}
	if fams["peerline_peers"] != nil {
		t.Errorf("metrics served from a failed read")
	}
}

// Two scrapes at once each read their own snapshot.
func TestConcurrentScrapes(t *testing.T) {
	h := handler(okSource, false)
	codes := make(chan int)
	for range 4 {
		go func() {
			req := httptest.NewRequest("GET", "/metrics", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if !strings.Contains(rec.Body.String(), "peerline_peers 2") {
				codes <- 0
				return
			}
			codes <- rec.Code
		}()
	}
	for range 4 {
		if c := <-codes; c != 200 {
			t.Errorf("concurrent scrape = %d, want 200 with the metrics", c)
		}
	}
}
