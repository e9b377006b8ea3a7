package node

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/callstats"
	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/netsetup/netsetuptest"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/supervisor"
)

// chartNode is a node whose call tracker has an hour of RTT for peer 7
// ("bob <b>") and one call, without running anything.
func chartNode(t *testing.T) (*node, uint64) {
	t.Helper()
	k, _ := nodekey.Generate()
	dir := t.TempDir()
	cfg := &config.Config{Name: "alice", Prefix: "pl", StateDir: filepath.Join(dir, "state"), RunDir: filepath.Join(dir, "run"),
		PhonePort: "eth0", Lines: []int{1}, Peers: []config.Peer{{Index: 7, Name: "bob <b>", PublicKey: k.Public()}}}
	cfg.Phones.TimeZone = "UTC"
	nd := &node{sup: supervisor.New(cfg, supervisor.Options{Net: netsetuptest.NewRecorder()})}
	nd.cfg.Store(cfg)
	tr := nd.sup.CallStats()
	now := time.Now().Add(-time.Hour)
	f := callstats.Flow{Line: 1, Local: netip.MustParseAddrPort("10.0.1.1:5004"), Remote: netip.MustParseAddrPort("10.7.1.1:5004")}
	for m := range 60 {
		now = now.Add(time.Minute)
		var flows []callstats.Flow
		if m >= 50 {
			for _, s := range []*callstats.Stream{&f.Sent, &f.Received} {
				if s.First.IsZero() {
					s.First = now.Add(-time.Minute)
				}
				s.Packets += 3000
				s.Expected += 3000
				s.Last = now
				s.Jitter = 2 * time.Millisecond
			}
			flows = []callstats.Flow{f}
		}
		tr.Update(now, []callstats.Peer{{Index: 7, Name: "bob <b>", RTT: time.Duration(30+m) * time.Millisecond, Flows: flows}})
	}
	calls := tr.Calls()
	if len(calls) != 1 {
		t.Fatalf("set-up: %d calls", len(calls))
	}
	return nd, calls[0].ID
}

func TestChartHandlers(t *testing.T) {
	nd, id := chartNode(t)
	tests := []struct {
		name     string
		h        http.Handler
		method   string
		url      string
		code     int
		contains []string
	}{
		{"rtt by index", nd.rttChartHandler(), "GET", "/?peer=7", 200, []string{"Round trip to bob &lt;b&gt;, last 24 h", "<path class=\"ln l0\"", " ms</text>"}},
		{"rtt by name", nd.rttChartHandler(), "GET", "/?peer=bob%20%3Cb%3E", 200, []string{"<path"}},
		{"rtt unknown peer", nd.rttChartHandler(), "GET", "/?peer=9", 404, []string{"no peer with index 9"}},
		{"rtt post", nd.rttChartHandler(), "POST", "/?peer=7", 405, nil},
		{"call mos", nd.callChartHandler(), "GET", "/?id=" + itoa(id), 200, []string{"estimated MOS", "class=\"band good\"", "<path"}},
		{"call loss", nd.callChartHandler(), "GET", "/?id=" + itoa(id) + "&show=loss", 200, []string{"packets lost", " %</text>"}},
		{"call jitter", nd.callChartHandler(), "GET", "/?id=" + itoa(id) + "&show=jitter", 200, []string{"jitter"}},
		{"call bad show", nd.callChartHandler(), "GET", "/?id=" + itoa(id) + "&show=<x>", 404, []string{"mos, loss or jitter"}},
		{"call unknown", nd.callChartHandler(), "GET", "/?id=999", 404, []string{"no call 999"}},
		{"call no id", nd.callChartHandler(), "GET", "/?id=x", 404, []string{"peerline calls"}},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		tt.h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.url, nil))
		body := rec.Body.String()
		if rec.Code != tt.code {
			t.Errorf("%s: %s %s = %d, want %d: %s", tt.name, tt.method, tt.url, rec.Code, tt.code, body)
			continue
		}
		for _, want := range tt.contains {
			if !strings.Contains(body, want) {
				t.Errorf("%s: body lacks %q:\n%s", tt.name, want, body)
			}
		}
		if tt.code == 200 {
			if ct := rec.Header().Get("Content-Type"); ct != "image/svg+xml" {
				t.Errorf("%s: Content-Type %q", tt.name, ct)
			}
			if strings.Contains(body, "<b>") {
				t.Errorf("%s: peer name unescaped:\n%s", tt.name, body)
			}
		}
	}
}

func TestCallBars(t *testing.T) {
	at := time.Date(2026, 12, 7, 9, 30, 0, 0, time.UTC)
	calls := []control.CallInfo{ // as CmdCalls orders them
		{ID: 5, State: control.CallLive, Peer: 7, PeerName: "bob", Since: at.Add(2 * time.Hour), MOS: 4.4},
		{ID: 4, State: control.CallEnded, Peer: 9, Since: at.Add(time.Hour), MOS: 3.7},
		{ID: 3, State: control.CallEnded, Peer: 7, PeerName: "bob", Since: at, MOS: 2.5},
	}
	bars := callBars(calls, time.UTC)
	want := []struct {
		label, class string
	}{{"09:30 bob", "poor"}, {"10:30 peer 9", "fair"}, {"11:30 bob", "good"}}
	if len(bars) != len(want) {
		t.Fatalf("callBars = %+v", bars)
	}
	for k, w := range want {
		if bars[k].Label != w.label || bars[k].Class != w.class {
			t.Errorf("bar %d = %+v, want %s %s", k, bars[k], w.label, w.class)
		}
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func TestCallHandlers(t *testing.T) {
	nd, id := chartNode(t)
	h := nd.callHandlers()
	got, err := h[control.CmdRTTHistory](t.Context(), json.RawMessage(`{"peer":"bob <b>"}`))
	if err != nil {
		t.Fatal(err)
	}
	rtt := got.(*control.RTTHistory)
	if rtt.Index != 7 || len(rtt.Points) != 60 || rtt.Points[59].RTT != control.Duration(89*time.Millisecond) {
		t.Errorf("peers.rtt = %d points for %d, last %+v; want 60 for 7 ending at 89 ms", len(rtt.Points), rtt.Index, rtt.Points[len(rtt.Points)-1])
	}
	got, err = h[control.CmdCallHistory](t.Context(), json.RawMessage(`{"id":`+itoa(id)+`}`))
	if err != nil {
		t.Fatal(err)
	}
	if pts := got.([]control.QualityPoint); len(pts) != 10 || pts[0].MOS < 4.3 || pts[0].Packets != 3000 {
		t.Errorf("calls.history = %+v, want 10 clean points of 3000 packets", pts)
	}
	for _, bad := range []string{`{"id":12345}`, `{"id":"x"}`, `[`} {
		if _, err := h[control.CmdCallHistory](t.Context(), json.RawMessage(bad)); err == nil {
			t.Errorf("calls.history %s = nil error", bad)
		}
	}
	if _, err := h[control.CmdRTTHistory](t.Context(), json.RawMessage(`{"peer":"zed"}`)); err == nil || !strings.Contains(err.Error(), "peerline peers") {
		t.Errorf("peers.rtt zed = %v, want a pointer to peerline peers", err)
	}
}

// The calls chart and the calls command answer from the last sample when
// the supervisor does not (here it never ran).
func TestCallsChartStale(t *testing.T) {
	nd, _ := chartNode(t)
	nd.log = slog.New(slog.DiscardHandler)
	rec := httptest.NewRecorder()
	nd.callsChartHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if body := rec.Body.String(); rec.Code != 200 || !strings.Contains(body, "bob &lt;b&gt;") || !strings.Contains(body, `class="good"`) {
		t.Errorf("calls chart = %d:\n%s", rec.Code, body)
	}
}
