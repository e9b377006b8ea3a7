// Package metrics serves the node's state as Prometheus metrics at
// /metrics: tunnels and their paths, round trips and bytes, calls with
// their loss, jitter and MOS, the rewriters' drops by reason, and the
// rendezvous registrations.
//
// Nothing is counted here: each scrape reads one Snapshot, made by the
// daemon from the same control-API answers `peerline status`, `peerline
// calls` and the console show, and a Collector turns it into metrics. The
// handler lets a request in when it carries the configured bearer token
// (`"console": {"metrics_token": …}`) or when the console says its session
// is logged in; anything else gets 401.
package metrics

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/peerline/peerline/pkg/control"
)

// Snapshot is the node at one scrape.
type Snapshot struct {
	Status   control.Status
	Calls    []control.CallInfo
	Counters control.Counters
	// Lines is the SIP service's view; nil when it is off.
	Lines *control.Lines
	// Trunks are the configured trunks' states.
	Trunks control.Trunks
}

// Source makes a Snapshot.
type Source func(ctx context.Context) (Snapshot, error)

// Options configure Handler.
type Options struct {
	Source Source
	// Token returns the bearer token that grants access ("" turns token
	// access off); read per request, so a changed config applies at once.
	Token func() string
	// Authed reports whether the request belongs to a logged-in console
	// session; nil when there is no console.
	Authed func(*http.Request) bool
	Log    *slog.Logger
}

// scrapeTimeout bounds the reading of one Snapshot.
const scrapeTimeout = 10 * time.Second

// Handler serves the metrics to authorised requests.
func Handler(opt Options) http.Handler {
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The process's own metrics (memory, goroutines, file descriptors)
	// are worth having on a 1 GB Pi; collected on every registry below.
	goc := collectors.NewGoCollector()
	proc := collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "metrics are read with GET", http.StatusMethodNotAllowed)
			return
		}
		if !authorised(r, opt) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="peerline"`)
			http.Error(w, "log in to the console, or send Authorization: Bearer <console.metrics_token from the config>", http.StatusUnauthorized)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), scrapeTimeout)
		defer cancel()
		snap, err := opt.Source(ctx)
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(goc, proc, &collector{snap: snap, err: err})
		if err != nil {
			log.Warn("metrics: reading the node", "err", err)
		}
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slogAdapter{log}, ErrorHandling: promhttp.ContinueOnError}).ServeHTTP(w, r)
	})
}

func authorised(r *http.Request, opt Options) bool {
	if opt.Token != nil {
		if want := opt.Token(); want != "" {
			auth := r.Header.Get("Authorization")
			if got, ok := strings.CutPrefix(auth, "Bearer "); ok {
				// Comparing hashes keeps the time independent of
				// the token's length as well as its content.
				a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
				if subtle.ConstantTimeCompare(a[:], b[:]) == 1 {
					return true
				}
			}
		}
	}
	return opt.Authed != nil && opt.Authed(r)
}

type slogAdapter struct{ log *slog.Logger }

func (s slogAdapter) Println(v ...any) {
	var b strings.Builder
	for i, x := range v {
		if i > 0 {
			b.WriteByte(' ')
		}
		if e, ok := x.(error); ok {
			b.WriteString(e.Error())
		} else if s, ok := x.(string); ok {
			b.WriteString(s)
		}
	}
	s.log.Warn("metrics: " + b.String())
}

var (
	peerLabels = []string{"peer", "name"}

	descUp = prometheus.NewDesc("peerline_scrape_ok",
		"1 when the node could be read for this scrape, 0 when the metrics below are missing.", nil, nil)
	descReady = prometheus.NewDesc("peerline_ready",
		"1 once the phone port and every tunnel are set up.", nil, nil)
	descInfo = prometheus.NewDesc("peerline_info",
		"The node's name, version and NAT class (value 1).", []string{"node", "version", "nat_class"}, nil)
	descPeers = prometheus.NewDesc("peerline_peers",
		"Paired peers.", nil, nil)
	descTunnelUp = prometheus.NewDesc("peerline_tunnel_up",
		"1 when the peer's tunnel is configured.", peerLabels, nil)
	descOnline = prometheus.NewDesc("peerline_peer_online",
		"1 when the peer answered recently enough for calls to go through.", peerLabels, nil)
	descPath = prometheus.NewDesc("peerline_peer_path",
		"1 for the path the tunnel uses now: direct or relay.", append(peerLabels, "path"), nil)
	descRTT = prometheus.NewDesc("peerline_peer_rtt_seconds",
		"The latest round trip to the peer, on its current path.", peerLabels, nil)
	descRx = prometheus.NewDesc("peerline_peer_receive_bytes_total",
		"Bytes the tunnel received (WireGuard).", peerLabels, nil)
	descTx = prometheus.NewDesc("peerline_peer_transmit_bytes_total",
		"Bytes the tunnel sent (WireGuard).", peerLabels, nil)
	descHandshake = prometheus.NewDesc("peerline_peer_last_handshake_timestamp_seconds",
		"When the tunnel's latest WireGuard handshake was.", peerLabels, nil)

	descCalls = prometheus.NewDesc("peerline_calls",
		"Calls through the tunnels: live, and ended in the last 24 h.", []string{"state"}, nil)
	callLabels     = []string{"peer", "name", "line", "call"}
	descCallPkts   = prometheus.NewDesc("peerline_call_packets_total", "RTP packets of a live call.", append(callLabels, "direction"), nil)
	descCallLost   = prometheus.NewDesc("peerline_call_lost_packets_total", "RTP packets of a live call lost, from sequence numbers.", append(callLabels, "direction"), nil)
	descCallLoss   = prometheus.NewDesc("peerline_call_loss_ratio", "Share of a live call's RTP packets lost, 0 to 1.", append(callLabels, "direction"), nil)
	descCallJitter = prometheus.NewDesc("peerline_call_jitter_seconds", "A live call's RTP interarrival jitter (RFC 3550).", append(callLabels, "direction"), nil)
	descCallMOS    = prometheus.NewDesc("peerline_call_mos", "A live call's estimated MOS (simplified G.107 E-model), 1 to 4.5.", append(callLabels, "direction"), nil)

	descDropped = prometheus.NewDesc("peerline_rewrite_dropped_packets_total",
		"Packets a tunnel's rewriter dropped, by reason.", append(peerLabels, "direction", "reason"), nil)
	descRefused = prometheus.NewDesc("peerline_rewrite_sip_refused_total",
		"SIP messages the rewriter could not parse, by reason.", append(peerLabels, "direction", "reason"), nil)
	descRewritePackets = prometheus.NewDesc("peerline_rewrite_packets_total",
		"Packets a tunnel's rewriter handled.", append(peerLabels, "direction"), nil)
	descInDialog = prometheus.NewDesc("peerline_rewrite_sip_in_dialog_total",
		"SIP messages from the peer in a dialog a local phone is in, let through the flood limit.", peerLabels, nil)
	descRewriteLatency = prometheus.NewDesc("peerline_rewrite_latency_seconds",
		"Time packets spent in the rewriter, from a sample of them (quantiles within 12.5 %).", append(peerLabels, "direction"), nil)

	descSIPRegistered = prometheus.NewDesc("peerline_sip_line_registered",
		"1 while the line's phone is registered to the Pi's SIP service.", []string{"line"}, nil)
	descTrunkRegistered = prometheus.NewDesc("peerline_sip_trunk_registered",
		"1 while the trunk (an outside SIP account) is registered with its provider.", []string{"trunk"}, nil)
	descTrunkCalls = prometheus.NewDesc("peerline_sip_trunk_calls",
		"Calls up through the trunk now.", []string{"trunk"}, nil)
	descSIPRegistrar = prometheus.NewDesc("peerline_sip_registrar_total",
		"REGISTERs the Pi's registrar answered, by outcome.", []string{"result"}, nil)
	descSIPCalls = prometheus.NewDesc("peerline_sip_calls_total",
		"INVITEs the Pi's dial plan decided, by decision: local, peer, trunk, refuse.", []string{"decision"}, nil)

	descRegistered = prometheus.NewDesc("peerline_rendezvous_registered",
		"1 while the node's registration with the rendezvous server is fresh.", []string{"server"}, nil)
	descRegisteredAt = prometheus.NewDesc("peerline_rendezvous_last_registration_timestamp_seconds",
		"When the server last confirmed the node's registration.", []string{"server"}, nil)
)

// collector turns one Snapshot into metrics.
type collector struct {
	snap Snapshot
	err  error
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descReady, descInfo, descPeers, descTunnelUp, descOnline, descPath, descRTT,
		descRx, descTx, descHandshake, descCalls, descCallPkts, descCallLost, descCallLoss, descCallJitter, descCallMOS,
		descDropped, descRefused, descRewritePackets, descInDialog, descRewriteLatency, descRegistered, descRegisteredAt,
		descSIPRegistered, descSIPRegistrar, descSIPCalls, descTrunkRegistered, descTrunkCalls} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	if c.err != nil {
		gauge(descUp, 0)
		return
	}
	gauge(descUp, 1)
	st := c.snap.Status
	gauge(descReady, b2f(st.Ready))
	gauge(descInfo, 1, st.Name, st.Version, st.NATClass)
	gauge(descPeers, float64(len(st.Peers)))
	for _, p := range st.Peers {
		l := []string{strconv.Itoa(p.Index), p.Name}
		gauge(descTunnelUp, b2f(p.Up), l...)
		gauge(descOnline, b2f(p.Online), l...)
		for _, path := range []string{"direct", "relay"} {
			gauge(descPath, b2f(p.Path == path), append(l, path)...)
		}
		if p.RTT != nil {
			gauge(descRTT, seconds(*p.RTT), l...)
		}
		counter(descRx, float64(p.RxBytes), l...)
		counter(descTx, float64(p.TxBytes), l...)
		if p.LastHandshake != nil {
			gauge(descHandshake, float64(p.LastHandshake.UnixNano())/1e9, l...)
		}
	}

	live, ended := 0, 0
	for _, k := range c.snap.Calls {
		if k.State != control.CallLive {
			ended++
			continue
		}
		live++
		l := []string{strconv.Itoa(k.Peer), k.PeerName, strconv.Itoa(k.Line), strconv.FormatUint(k.ID, 10)}
		for _, d := range []struct {
			name string
			s    control.CallStream
		}{{"sent", k.Sent}, {"received", k.Received}} {
			ld := append(l[:len(l):len(l)], d.name)
			counter(descCallPkts, float64(d.s.Packets), ld...)
			counter(descCallLost, float64(max(d.s.Lost, 0)), ld...)
			gauge(descCallLoss, d.s.LossPercent/100, ld...)
			if d.s.ClockRate > 0 {
				gauge(descCallJitter, seconds(d.s.Jitter), ld...)
			}
			if d.s.MOS > 0 {
				gauge(descCallMOS, d.s.MOS, ld...)
			}
		}
	}
	gauge(descCalls, float64(live), control.CallLive)
	gauge(descCalls, float64(ended), control.CallEnded)

	for _, p := range c.snap.Counters.Peers {
		for _, d := range p.Directions {
			counter(descRewritePackets, float64(d.Packets), strconv.Itoa(p.Index), p.Name, d.Direction)
			if d.Direction == "inbound" {
				counter(descInDialog, float64(d.SIPInDialog), strconv.Itoa(p.Index), p.Name)
			}
			if l := d.Latency; l != nil {
				ch <- prometheus.MustNewConstSummary(descRewriteLatency, l.Sampled, float64(l.SumNs)/1e9,
					map[float64]float64{0.5: float64(l.P50Ns) / 1e9, 0.99: float64(l.P99Ns) / 1e9},
					strconv.Itoa(p.Index), p.Name, d.Direction)
			}
			for _, r := range d.Dropped {
				counter(descDropped, float64(r.Count), strconv.Itoa(p.Index), p.Name, d.Direction, r.Reason)
			}
			for _, r := range d.SIPRefused {
				counter(descRefused, float64(r.Count), strconv.Itoa(p.Index), p.Name, d.Direction, r.Reason)
			}
		}
	}
	if ls := c.snap.Lines; ls != nil {
		for _, l := range ls.Lines {
			gauge(descSIPRegistered, b2f(l.Registration != nil), strconv.Itoa(l.Line))
		}
		r := ls.Registrar
		for _, x := range []struct {
			result string
			n      uint64
		}{{"registered", r.Registered}, {"unregistered", r.Unregistered}, {"challenged", r.Challenged}, {"refused", r.Refused}, {"limited", r.Limited}} {
			counter(descSIPRegistrar, float64(x.n), x.result)
		}
		for _, k := range []string{"local", "peer", "trunk", "refuse"} {
			counter(descSIPCalls, float64(ls.Calls[k]), k)
		}
	}
	for _, t := range c.snap.Trunks.Trunks {
		gauge(descTrunkRegistered, b2f(t.State == "registered"), t.Name)
		gauge(descTrunkCalls, float64(t.Calls), t.Name)
	}
	for _, r := range c.snap.Counters.Rendezvous {
		gauge(descRegistered, b2f(r.Registered), r.Server)
		if r.LastRegistered != nil {
			gauge(descRegisteredAt, float64(r.LastRegistered.UnixNano())/1e9, r.Server)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func seconds(d control.Duration) float64 { return time.Duration(d).Seconds() }
