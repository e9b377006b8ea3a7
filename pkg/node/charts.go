package node

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/peerline/peerline/pkg/callstats"
	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/svgchart"
)

// The console's charts: SVG drawn here from the same data the control
// commands answer with (rttHistory, callHistory, calls), so a chart never
// disagrees with `peerline calls`. The console mounts them behind its
// login.

// rttChartHandler draws a peer's round trip over the last 24 h:
// GET ?peer=N (index or name).
func (nd *node) rttChartHandler() http.Handler {
	return chartHandler(func(r *http.Request) (func(*bytes.Buffer) error, error) {
		h, err := nd.rttHistory(r.URL.Query().Get("peer"))
		if err != nil {
			return nil, err
		}
		pts := make([]svgchart.Point, len(h.Points))
		for k, p := range h.Points {
			pts[k] = svgchart.Point{X: p.Time, Y: ms(p.RTT)}
		}
		name := h.Name
		if name == "" {
			name = "peer " + strconv.Itoa(h.Index)
		}
		now := time.Now()
		return func(b *bytes.Buffer) error {
			return svgchart.Line(b, svgchart.Chart{
				Title: "Round trip to " + name + ", last 24 h", Unit: "ms",
				Start: now.Add(-callstats.Keep), End: now, Gap: 3 * time.Minute, Location: nd.zone(),
				Series: []svgchart.Series{{Name: name, Points: pts}},
			})
		}, nil
	})
}

// callChartHandler draws one call's received quality over its length:
// GET ?id=N[&show=mos|loss|jitter] (mos by default).
func (nd *node) callChartHandler() http.Handler {
	return chartHandler(func(r *http.Request) (func(*bytes.Buffer) error, error) {
		q := r.URL.Query()
		id, err := strconv.ParseUint(q.Get("id"), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("which call? ?id= takes the ID `peerline calls` shows")
		}
		h, err := nd.callHistory(id)
		if err != nil {
			return nil, err
		}
		c := svgchart.Chart{Location: nd.zone()}
		var y func(control.QualityPoint) float64
		switch q.Get("show") {
		case "", "mos":
			c.Title, c.YMin, c.YMax, c.Bands = "Call "+strconv.FormatUint(id, 10)+": estimated MOS", 1, 4.5, mosBands
			y = func(p control.QualityPoint) float64 { return p.MOS }
		case "loss":
			c.Title, c.Unit = "Call "+strconv.FormatUint(id, 10)+": packets lost", "%"
			y = func(p control.QualityPoint) float64 { return p.LossPercent }
		case "jitter":
			c.Title, c.Unit = "Call "+strconv.FormatUint(id, 10)+": jitter", "ms"
			y = func(p control.QualityPoint) float64 { return ms(p.Jitter) }
		default:
			return nil, fmt.Errorf("show= takes mos, loss or jitter")
		}
		pts := make([]svgchart.Point, len(h))
		for k, p := range h {
			pts[k] = svgchart.Point{X: p.Time, Y: y(p)}
		}
		c.Series = []svgchart.Series{{Name: "received", Points: pts}}
		return func(b *bytes.Buffer) error { return svgchart.Line(b, c) }, nil
	})
}

// callsChartHandler draws the calls of the last 24 h, oldest first, a bar
// each, as high as its MOS and coloured by its class.
func (nd *node) callsChartHandler() http.Handler {
	return chartHandler(func(r *http.Request) (func(*bytes.Buffer) error, error) {
		calls, err := nd.calls(r.Context())
		if err != nil {
			return nil, err
		}
		bars := callBars(calls, nd.zone())
		return func(b *bytes.Buffer) error {
			return svgchart.Bars(b, svgchart.BarChart{Title: "Calls in the last 24 h: estimated MOS", YMin: 1, YMax: 4.5, Bars: bars})
		}, nil
	})
}

// callBars are the ended calls oldest first, then the live ones, so the
// newest is at the right.
func callBars(calls []control.CallInfo, loc *time.Location) []svgchart.Bar {
	var ended, live []svgchart.Bar
	for k := len(calls) - 1; k >= 0; k-- {
		if c := calls[k]; c.State == control.CallLive {
			live = append(live, callBar(c, loc))
		} else {
			ended = append(ended, callBar(c, loc))
		}
	}
	return append(ended, live...)
}

func callBar(c control.CallInfo, loc *time.Location) svgchart.Bar {
	who := c.PeerName
	if who == "" {
		who = "peer " + strconv.Itoa(c.Peer)
	}
	return svgchart.Bar{Label: c.Since.In(loc).Format("15:04") + " " + who, Value: c.MOS, Class: mosClass(c.MOS)}
}

// The MOS classes the charts shade: 4 and up is what people call good
// (G.107 Annex B: "satisfied"), under 3.6 many are dissatisfied.
var mosBands = []svgchart.Band{
	{From: 4, To: 4.5, Label: "good", Class: "good"},
	{From: 3.6, To: 4, Label: "fair", Class: "fair"},
	{From: 1, To: 3.6, Label: "poor", Class: "poor"},
}

func mosClass(mos float64) string {
	switch {
	case mos >= 4:
		return "good"
	case mos >= 3.6:
		return "fair"
	}
	return "poor"
}

func ms(d control.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// zone is the node's time zone for chart labels: the phones' zone when the
// config names one, else the system's.
func (nd *node) zone() *time.Location {
	if tz := nd.cfg.Load().Phones.TimeZone; tz != "" {
		if loc, err := time.LoadLocation(tz); err == nil {
			return loc
		}
	}
	return time.Local
}

// chartHandler serves the SVG that draw makes for a GET; draw's error is
// shown as plain text with 404 (it names what to ask for instead).
func chartHandler(prepare func(*http.Request) (func(*bytes.Buffer) error, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "charts are read with GET", http.StatusMethodNotAllowed)
			return
		}
		draw, err := prepare(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		var b bytes.Buffer
		if err := draw(&b); err != nil {
			http.Error(w, "drawing the chart: "+err.Error(), http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "image/svg+xml")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		// Opened on its own, the SVG may style itself and nothing else.
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		w.Write(b.Bytes())
	})
}
