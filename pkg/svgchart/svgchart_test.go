package svgchart

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var t0 = time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)

// rttDay is a day of RTT a point a minute, with an hour offline.
func rttDay() []Point {
	var p []Point
	for m := range 24 * 60 {
		if m >= 600 && m < 660 {
			continue
		}
		y := 40 + 10*math.Sin(float64(m)/90)
		if m%97 == 0 {
			y = 180
		}
		p = append(p, Point{X: t0.Add(time.Duration(m) * time.Minute), Y: y})
	}
	return p
}

func TestGolden(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		berlin = time.FixedZone("CET", 3600)
	}
	tests := []struct {
		name string
		draw func(io.Writer) error
	}{
		{"rtt-day", func(w io.Writer) error {
			return Line(w, Chart{Title: "Round trip to bob, last 24 h", Unit: "ms", Gap: 3 * time.Minute,
				Start: t0, End: t0.Add(24 * time.Hour), Series: []Series{{Name: "bob", Points: rttDay()}}})
		}},
		{"rtt-local-time", func(w io.Writer) error {
			return Line(w, Chart{Title: "RTT", Unit: "ms", Location: berlin, Width: 400, Height: 160,
				Series: []Series{{Name: "bob", Points: rttDay()[:180]}}})
		}},
		{"call-quality", func(w io.Writer) error {
			var mos []Point
			for k := range 60 {
				m := 4.4
				if k >= 20 && k < 30 {
					m = 3.6
				}
				mos = append(mos, Point{t0.Add(10*time.Hour + time.Duration(k)*5*time.Second), m})
			}
			return Line(w, Chart{Title: "Call 3 with bob <line 1>", YMin: 1, YMax: 4.5, Series: []Series{{Name: "MOS", Points: mos}},
				Bands: []Band{{From: 4, To: 4.5, Label: "good", Class: "good"}, {From: 3.6, To: 4, Label: "fair", Class: "fair"}, {From: 1, To: 3.6, Label: "poor", Class: "poor"}}})
		}},
		{"two-series", func(w io.Writer) error {
			a := []Point{{t0, 1}, {t0.Add(time.Minute), 3}, {t0.Add(2 * time.Minute), 2}}
			b := []Point{{t0, 0.5}, {t0.Add(time.Minute), math.NaN()}, {t0.Add(2 * time.Minute), 1.5}}
			return Line(w, Chart{Title: "Jitter", Unit: "ms", Series: []Series{{Name: "received", Points: a}, {Name: "sent", Points: b}}})
		}},
		{"empty", func(w io.Writer) error {
			return Line(w, Chart{Title: "Round trip to carol", Series: []Series{{Name: "carol"}}})
		}},
		{"calls-bars", func(w io.Writer) error {
			bars := []Bar{{"09:12 bob", 4.41, "good"}, {"10:30 carol", 3.8, "fair"}, {"11:02 bob", 2.9, "poor"}, {"12:45 dave & co", 4.2, "good"}}
			return Bars(w, BarChart{Title: "Calls today (MOS)", YMin: 1, YMax: 4.5, Bars: bars})
		}},
		{"many-bars", func(w io.Writer) error {
			var bars []Bar
			for k := range 40 {
				bars = append(bars, Bar{Label: time.Duration(k * int(time.Hour) / 2).String(), Value: float64(k % 7)})
			}
			return Bars(w, BarChart{Title: "Packets lost", Width: 480, Bars: bars})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tt.draw(&buf); err != nil {
				t.Fatal(err)
			}
			wellFormed(t, buf.Bytes())
			golden := filepath.Join("testdata", tt.name+".svg")
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to make it)", err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("%s differs from the golden file %s (go test -update rewrites it; look at both)", tt.name, golden)
			}
		})
	}
}

// wellFormed parses svg as XML and checks there is no element or attribute
// other than those the package writes: no script can come from a label.
func wellFormed(t *testing.T, svg []byte) {
	t.Helper()
	allowed := map[string]bool{"svg": true, "style": true, "title": true, "text": true, "line": true, "rect": true, "path": true}
	d := xml.NewDecoder(bytes.NewReader(svg))
	d.Strict = true
	depth := 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, svg)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			depth++
			if !allowed[e.Name.Local] {
				t.Fatalf("unexpected element <%s> in\n%s", e.Name.Local, svg)
			}
			for _, a := range e.Attr {
				if strings.HasPrefix(strings.ToLower(a.Name.Local), "on") || strings.Contains(a.Name.Local, "href") {
					t.Fatalf("unexpected attribute %s in\n%s", a.Name.Local, svg)
				}
			}
		case xml.EndElement:
			depth--
		}
	}
	if depth != 0 {
		t.Fatalf("unbalanced elements")
	}
}

func TestEscaping(t *testing.T) {
	hostile := []string{
		`<script>alert(1)</script>`,
		`"><svg onload=alert(1)>`,
		`' onmouseover='x`,
		"&amp; &lt; \x00 \xff\xfe bad utf-8",
		`]]><!--`,
	}
	for _, h := range hostile {
		var buf bytes.Buffer
		err := Line(&buf, Chart{Title: h, Unit: h, Series: []Series{{Name: h, Points: []Point{{t0, 1}, {t0.Add(time.Minute), 2}}}},
			Bands: []Band{{From: 0, To: 1, Label: h, Class: h}}})
		if err != nil {
			t.Fatal(err)
		}
		wellFormed(t, buf.Bytes())
		if bytes.Contains(buf.Bytes(), []byte("<script")) || bytes.Contains(buf.Bytes(), []byte("onload=")) && !bytes.Contains(buf.Bytes(), []byte("&lt;svg onload=")) {
			t.Errorf("label %q reached the output unescaped:\n%s", h, buf.Bytes())
		}
		buf.Reset()
		if err := Bars(&buf, BarChart{Title: h, Bars: []Bar{{Label: h, Value: 1, Class: h}}}); err != nil {
			t.Fatal(err)
		}
		wellFormed(t, buf.Bytes())
	}
}

func TestBadInput(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name string
		c    Chart
	}{
		{"all NaN", Chart{Series: []Series{{Points: []Point{{t0, math.NaN()}, {t0.Add(time.Minute), inf}}}}}},
		{"one point", Chart{Series: []Series{{Points: []Point{{t0, 5}}}}}},
		{"flat", Chart{Series: []Series{{Points: []Point{{t0, 0}, {t0.Add(time.Hour), 0}}}}}},
		{"negative", Chart{Series: []Series{{Points: []Point{{t0, -50}, {t0.Add(time.Hour), 10}}}}}},
		{"huge", Chart{Series: []Series{{Points: []Point{{t0, 1e300}, {t0.Add(time.Hour), -1e300}}}}}},
		{"backwards range", Chart{Start: t0.Add(time.Hour), End: t0, YMin: 5, YMax: 1, Series: []Series{{Points: []Point{{t0, 1}}}}}},
		{"unsorted", Chart{Series: []Series{{Points: []Point{{t0.Add(time.Hour), 1}, {t0, 2}, {t0.Add(30 * time.Minute), 3}}}}}},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		if err := Line(&buf, tt.c); err != nil {
			t.Errorf("%s: Line() = %v", tt.name, err)
			continue
		}
		wellFormed(t, buf.Bytes())
		if bytes.Contains(buf.Bytes(), []byte("NaN")) || bytes.Contains(buf.Bytes(), []byte("Inf")) {
			t.Errorf("%s: output holds NaN or Inf:\n%s", tt.name, buf.Bytes())
		}
		if n := bytes.Count(buf.Bytes(), []byte("<line")); n > 200 {
			t.Errorf("%s: %d grid lines", tt.name, n)
		}
	}
	for _, wh := range [][2]int{{-1, 100}, {100, 5000}, {10, 10}} {
		if err := Line(io.Discard, Chart{Width: wh[0], Height: wh[1]}); err == nil {
			t.Errorf("Line(%d×%d) = nil, want an error", wh[0], wh[1])
		}
	}
}

func TestNiceStep(t *testing.T) {
	tests := []struct{ raw, want float64 }{
		{0.3, 0.5}, {1, 1}, {1.1, 2}, {3, 5}, {7, 10}, {45, 50}, {0, 1}, {-3, 1}, {math.NaN(), 1},
	}
	for _, tt := range tests {
		if got := niceStep(tt.raw); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("niceStep(%v) = %v, want %v", tt.raw, got, tt.want)
		}
	}
}
