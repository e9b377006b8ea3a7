// Package svgchart draws small line and bar charts as SVG on the server, so
// that the console shows round trips and call quality as pictures without
// any script in the browser.
//
// The output is a standalone SVG document (with its xmlns), usable as an
// <img src> or inlined in HTML. Every piece of text that comes from the
// caller (titles, series names, bar labels) is XML-escaped; numbers are
// formatted by strconv, so the output is the same bytes for the same input
// (golden-file tests rely on it). Values that are NaN or infinite are
// skipped, not drawn.
package svgchart

import (
	"bufio"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Point is one value at a time.
type Point struct {
	X time.Time
	Y float64
}

// Series is one line.
type Series struct {
	Name   string
	Points []Point
}

// Chart is a line chart over time.
type Chart struct {
	Title string
	// Unit follows the values on the Y axis ("ms").
	Unit string
	// Width and Height in pixels; 640×220 when 0.
	Width, Height int
	// Start and End bound the X axis; the data's extent when zero.
	Start, End time.Time
	// YMin and YMax bound the Y axis when YMax > YMin; else it runs from 0
	// (or the lowest value, if negative) to a round number above the
	// highest.
	YMin, YMax float64
	// Gap breaks a line where two points are further apart (a peer that
	// was offline); never when 0.
	Gap time.Duration
	// Location is the time zone of the X labels; UTC when nil.
	Location *time.Location
	Series   []Series
	// Bands shade Y ranges (the MOS quality classes, say).
	Bands []Band
}

// Band is a shaded Y range with a label.
type Band struct {
	From, To float64
	Label    string
	// Class names the band for CSS: "good", "fair", "poor" have colours.
	Class string
}

// Bar is one bar.
type Bar struct {
	Label string
	Value float64
	// Class colours the bar: "good", "fair", "poor", or "" for neutral.
	Class string
}

// BarChart is a bar chart.
type BarChart struct {
	Title         string
	Unit          string
	Width, Height int
	YMin, YMax    float64
	Bars          []Bar
}

const (
	defaultWidth  = 640
	defaultHeight = 220
	maxSize       = 4096
	// Margins: room for the Y labels on the left, the X labels below,
	// the title above.
	left, right, top, bottom = 56, 12, 28, 36
)

var errSize = errors.New("svgchart: width and height must be between 0 and 4096")

// style is the chart's own CSS: colours for the classes, readable in light
// and dark pages.
const style = `text{font:11px sans-serif;fill:#444}.t{font-size:13px;font-weight:bold}` +
	`.ax{stroke:#888;stroke-width:1}.g{stroke:#ddd;stroke-width:1}` +
	`.l0{stroke:#1f77b4}.l1{stroke:#d62728}.l2{stroke:#2ca02c}.l3{stroke:#9467bd}` +
	`.ln{fill:none;stroke-width:1.5}` +
	`.good{fill:#2ca02c}.fair{fill:#ffbf00}.poor{fill:#d62728}.bar{fill:#1f77b4}` +
	`.band{fill-opacity:.12}.nd{fill:#888}`

// Line writes c as an SVG line chart.
func Line(w io.Writer, c Chart) error {
	width, height, err := size(c.Width, c.Height)
	if err != nil {
		return err
	}
	b := newWriter(w, width, height, c.Title)
	x0, x1 := c.Start, c.End
	ymin, ymax := math.Inf(1), math.Inf(-1)
	n := 0
	for _, s := range c.Series {
		for _, p := range s.Points {
			if !finite(p.Y) {
				continue
			}
			n++
			ymin, ymax = min(ymin, p.Y), max(ymax, p.Y)
			if c.Start.IsZero() && (x0.IsZero() || p.X.Before(x0)) {
				x0 = p.X
			}
			if c.End.IsZero() && (x1.IsZero() || p.X.After(x1)) {
				x1 = p.X
			}
		}
	}
	if n == 0 {
		b.noData(width, height)
		return b.end()
	}
	if !x1.After(x0) {
		x0, x1 = x0.Add(-time.Minute), x0.Add(time.Minute)
	}
	lo, hi, step := yAxis(ymin, ymax, c.YMin, c.YMax, n)
	pw, ph := float64(width-left-right), float64(height-top-bottom)
	xpos := func(t time.Time) float64 { return left + pw*float64(t.Sub(x0))/float64(x1.Sub(x0)) }
	ypos := func(v float64) float64 { return top + ph*(1-(min(max(v, lo), hi)-lo)/(hi-lo)) }

	for _, band := range c.Bands {
		if !finite(band.From) || !finite(band.To) {
			continue
		}
		y1, y2 := ypos(max(band.From, band.To)), ypos(min(band.From, band.To))
		b.printf(`<rect class="band %s" x="%s" y="%s" width="%s" height="%s"/>`, band.Class, num(left), num(y1), num(pw), num(y2-y1))
		if band.Label != "" {
			b.printf(`<text x="%s" y="%s" text-anchor="end">%s</text>`, num(left+pw-4), num(y1+12), band.Label)
		}
	}
	b.yGrid(lo, hi, step, c.Unit, pw, ypos)
	loc := c.Location
	if loc == nil {
		loc = time.UTC
	}
	b.xTicks(x0, x1, loc, ph, xpos)
	b.axes(pw, ph)

	for k, s := range c.Series {
		var d strings.Builder
		var prev time.Time
		for _, p := range s.Points {
			if !finite(p.Y) || p.X.Before(x0) || p.X.After(x1) {
				continue
			}
			cmd := "L"
			if d.Len() == 0 || (c.Gap > 0 && p.X.Sub(prev) > c.Gap) {
				cmd = "M"
			}
			d.WriteString(cmd + string(num(xpos(p.X))) + " " + string(num(ypos(p.Y))))
			prev = p.X
		}
		if d.Len() == 0 {
			continue
		}
		b.printf(`<path class="ln l%d" d="%s"><title>%s</title></path>`, k%4, d.String(), s.Name)
	}
	if len(c.Series) > 1 {
		for k, s := range c.Series {
			x := left + 8 + 120*k
			b.printf(`<line class="l%d" x1="%d" y1="%d" x2="%d" y2="%d" stroke-width="3"/>`, k%4, x, height-8, x+14, height-8)
			b.printf(`<text x="%d" y="%d">%s</text>`, x+18, height-4, s.Name)
		}
	}
	return b.end()
}

// Bars writes c as an SVG bar chart, bars in the order given.
func Bars(w io.Writer, c BarChart) error {
	width, height, err := size(c.Width, c.Height)
	if err != nil {
		return err
	}
	b := newWriter(w, width, height, c.Title)
	ymin, ymax := math.Inf(1), math.Inf(-1)
	n := 0
	for _, bar := range c.Bars {
		if finite(bar.Value) {
			n++
			ymin, ymax = min(ymin, bar.Value), max(ymax, bar.Value)
		}
	}
	if len(c.Bars) == 0 {
		b.noData(width, height)
		return b.end()
	}
	lo, hi, step := yAxis(ymin, ymax, c.YMin, c.YMax, n)
	pw, ph := float64(width-left-right), float64(height-top-bottom)
	ypos := func(v float64) float64 { return top + ph*(1-(min(max(v, lo), hi)-lo)/(hi-lo)) }
	b.yGrid(lo, hi, step, c.Unit, pw, ypos)
	slot := pw / float64(len(c.Bars))
	// Label every bar while they fit, else every k-th.
	every := max(1, int(math.Ceil(60/slot)))
	for k, bar := range c.Bars {
		x := left + slot*float64(k)
		if finite(bar.Value) {
			base, y := ypos(max(lo, 0)), ypos(bar.Value)
			class := bar.Class
			if class == "" {
				class = "bar"
			}
			b.printf(`<rect class="%s" x="%s" y="%s" width="%s" height="%s"><title>%s: %s</title></rect>`,
				class, num(x+slot*0.1), num(min(y, base)), num(slot*0.8), num(math.Abs(base-y)), bar.Label, num(bar.Value))
		}
		if k%every == 0 {
			b.printf(`<text x="%s" y="%s" text-anchor="middle">%s</text>`, num(x+slot/2), num(top+ph+14), bar.Label)
		}
	}
	b.axes(pw, ph)
	return b.end()
}

func size(w, h int) (int, int, error) {
	if w == 0 {
		w = defaultWidth
	}
	if h == 0 {
		h = defaultHeight
	}
	if w < left+right+10 || h < top+bottom+10 || w > maxSize || h > maxSize {
		return 0, 0, errSize
	}
	return w, h, nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// yAxis picks the Y range and grid step: the caller's range if it gave
// one, else from 0 (or the lowest value) to the next round number above
// the highest value.
func yAxis(ymin, ymax, fixedMin, fixedMax float64, n int) (lo, hi, step float64) {
	if fixedMax > fixedMin && finite(fixedMin) && finite(fixedMax) {
		return fixedMin, fixedMax, niceStep((fixedMax - fixedMin) / 4)
	}
	if n == 0 {
		ymin, ymax = 0, 1
	}
	lo = min(0, ymin)
	hi = ymax
	if hi <= lo {
		hi = lo + 1
	}
	step = niceStep((hi - lo) / 4)
	lo = math.Floor(lo/step) * step
	hi = math.Ceil(hi/step) * step
	if hi <= ymax && hi-lo < 1e300 {
		hi += step
	}
	return lo, hi, step
}

// niceStep is the 1, 2 or 5 times a power of ten nearest above raw.
func niceStep(raw float64) float64 {
	if !(raw > 0) || !finite(raw) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// timeSteps are the X grid's candidate spacings.
var timeSteps = []time.Duration{
	time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// writer writes the SVG, keeping the first error.
type writer struct {
	w   *bufio.Writer
	err error
}

func newWriter(w io.Writer, width, height int, title string) *writer {
	b := &writer{w: bufio.NewWriter(w)}
	b.printf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s">`,
		width, height, width, height, title)
	b.printf(`<style>%s</style>`, style)
	b.printf(`<title>%s</title>`, title)
	if title != "" {
		b.printf(`<text class="t" x="%d" y="18">%s</text>`, left, title)
	}
	return b
}

func (b *writer) noData(width, height int) {
	b.printf(`<text class="nd" x="%d" y="%d" text-anchor="middle">no data yet</text>`, width/2, height/2)
}

func (b *writer) yGrid(lo, hi, step float64, unit string, pw float64, ypos func(float64) float64) {
	for k := 0; k <= 100; k++ {
		v := lo + float64(k)*step
		if v > hi+step/1e6 {
			break
		}
		y := ypos(v)
		b.printf(`<line class="g" x1="%d" y1="%s" x2="%s" y2="%s"/>`, left, num(y), num(left+pw), num(y))
		label := string(num(v))
		if unit != "" {
			label += " " + unit
		}
		b.printf(`<text x="%d" y="%s" text-anchor="end">%s</text>`, left-4, num(y+4), label)
	}
}

func (b *writer) xTicks(x0, x1 time.Time, loc *time.Location, ph float64, xpos func(time.Time) float64) {
	span := x1.Sub(x0)
	step := timeSteps[len(timeSteps)-1]
	for _, s := range timeSteps {
		if span/s <= 6 {
			step = s
			break
		}
	}
	layout := "15:04"
	if step < time.Minute {
		layout = "15:04:05"
	}
	// Ticks on round local times: truncate in the zone's wall clock.
	_, off := x0.In(loc).Zone()
	shift := time.Duration(off) * time.Second
	t := x0.Add(shift).Truncate(step).Add(-shift)
	for ; !t.After(x1); t = t.Add(step) {
		if t.Before(x0) {
			continue
		}
		x := xpos(t)
		b.printf(`<line class="g" x1="%s" y1="%d" x2="%s" y2="%s"/>`, num(x), top, num(x), num(top+ph))
		b.printf(`<text x="%s" y="%s" text-anchor="middle">%s</text>`, num(x), num(top+ph+14), t.In(loc).Format(layout))
	}
}

func (b *writer) axes(pw, ph float64) {
	b.printf(`<line class="ax" x1="%d" y1="%d" x2="%d" y2="%s"/>`, left, top, left, num(top+ph))
	b.printf(`<line class="ax" x1="%d" y1="%s" x2="%s" y2="%s"/>`, left, num(top+ph), num(left+pw), num(top+ph))
}

func (b *writer) end() error {
	b.printf("</svg>\n")
	if b.err != nil {
		return b.err
	}
	return b.w.Flush()
}

// printf writes format with its verbs filled: %d for ints, %s for strings,
// which are XML-escaped unless they came from num (numbers are safe and
// escaping them costs nothing but time). It is a tiny printf so that no
// caller text can reach the output unescaped by mistake.
func (b *writer) printf(format string, args ...any) {
	if b.err != nil {
		return
	}
	k := 0
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 == len(format) {
			b.w.WriteByte(c)
			continue
		}
		i++
		switch format[i] {
		case 'd':
			b.w.WriteString(strconv.Itoa(args[k].(int)))
		case 's':
			switch v := args[k].(type) {
			case number:
				b.w.WriteString(string(v))
			case string:
				// EscapeText escapes quotes too, so the text is safe in
				// attributes as well as in elements.
				b.err = xml.EscapeText(b.w, []byte(v))
			}
		default:
			b.w.WriteByte('%')
			b.w.WriteByte(format[i])
			continue
		}
		k++
	}
}

// number is a formatted number, known safe to write as is.
type number string

func num(v float64) number {
	if !finite(v) {
		return "0"
	}
	return number(strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64))
}
