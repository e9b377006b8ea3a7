// Package statuspage is the Pi's status page: what someone with only a phone
// and a browser on the phone port (http://10.0.s.2/) needs to see — is the
// node ready, is the boot partition's config wrong and how to fix it, which
// lines, peers and phones there are. It is plain server-rendered HTML that
// refreshes itself, with no scripts, so it works in any browser, including
// the one built into a desk phone; /status.json gives the same data to
// programs.
package statuspage

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/peerline/peerline/pkg/control"
)

// Snapshot is everything the page shows. It reuses the control socket's
// types, so /status.json reads like `peerline status` plus the phones.
type Snapshot struct {
	control.Status
	Phones []control.Phone `json:"phones"`
	// SIP is the SIP service's view of the lines; nil when it is off.
	SIP *control.Lines `json:"sip,omitempty"`
	// Trunks are the outside SIP accounts: name, prefix, lines and
	// state only (the page is open on the phone port).
	Trunks []control.Trunk `json:"trunks,omitempty"`
}

// Source returns the current snapshot; it is called once per request.
type Source func(ctx context.Context) (Snapshot, error)

// Options configures the handler.
type Options struct {
	// BootConfigErrorFile is read when the snapshot carries no boot-config
	// problem, or when Source fails: the one thing the page must show even
	// when the daemon's status cannot be had.
	BootConfigErrorFile string
	// Timeout bounds a Source call; default 3 s.
	Timeout time.Duration
	// Now is the clock for "12 s ago"; default time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// maxErrorFile bounds what is read from the error file.
const maxErrorFile = 16 << 10

// refreshSeconds is how often the page reloads itself.
const refreshSeconds = 10

//go:embed page.html
var pageHTML string

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"ago":   Ago,
	"bytes": HumanBytes,
	"lines": joinLines,
}).Parse(pageHTML))

type handler struct {
	src  Source
	opts Options
}

// New returns the handler for "/" (the page) and "/status.json". Other
// paths are 404; methods other than GET and HEAD are 405.
func New(src Source, opts Options) http.Handler {
	if opts.Timeout == 0 {
		opts.Timeout = 3 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &handler{src: src, opts: opts}
}

// pageData is the template's input.
type pageData struct {
	Snapshot
	// Problem is why the snapshot could not be had; the page still shows
	// the boot config's problem.
	Problem string
	Now     time.Time
	Refresh int
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" && r.URL.Path != "/status.json" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	snap, err := h.snapshot(r.Context())
	code := http.StatusOK
	problem := ""
	if err != nil {
		h.opts.Log.Warn("status page: no status from the daemon", "err", err)
		code = http.StatusServiceUnavailable
		problem = "The daemon's status is not available right now (" + err.Error() + "). The page tries again in a few seconds."
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.URL.Path == "/status.json" {
		h.serveJSON(w, r, code, snap, problem)
		return
	}
	// Rendered into a buffer first, so a template error gives a clean 500
	// instead of half a page.
	var buf bytes.Buffer
	if err := page.Execute(&buf, pageData{Snapshot: snap, Problem: problem, Now: h.opts.Now(), Refresh: refreshSeconds}); err != nil {
		h.opts.Log.Error("status page: rendering", "err", err)
		http.Error(w, "status page failed to render; see the journal", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// Nothing on the page may load or run anything; the inline style is
	// the only exception.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	w.Header().Set("X-Frame-Options", "DENY")
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		w.Write(buf.Bytes())
	}
}

func (h *handler) serveJSON(w http.ResponseWriter, r *http.Request, code int, snap Snapshot, problem string) {
	out := struct {
		Snapshot
		// Problem is set when Source failed.
		Problem string `json:"problem,omitempty"`
	}{snap, problem}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		h.opts.Log.Error("status page: encoding JSON", "err", err)
		http.Error(w, "encoding status failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		w.Write(append(b, '\n'))
	}
}

// snapshot calls Source with a deadline and fills in the boot-config
// problem from the file if Source did not.
func (h *handler) snapshot(ctx context.Context) (Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, h.opts.Timeout)
	defer cancel()
	snap, err := h.src(ctx)
	if err != nil {
		snap = Snapshot{}
	}
	if snap.BootConfigError == "" && h.opts.BootConfigErrorFile != "" {
		snap.BootConfigError = readErrorFile(h.opts.BootConfigErrorFile)
	}
	if snap.Peers == nil {
		snap.Peers = []control.Peer{}
	}
	if snap.Phones == nil {
		snap.Phones = []control.Phone{}
	}
	if snap.Lines == nil {
		snap.Lines = []int{}
	}
	return snap, err
}

func readErrorFile(path string) string {
	f, err := os.Open(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return "cannot read " + path + ": " + err.Error()
		}
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, maxErrorFile))
	return strings.TrimSpace(string(b))
}

// Ago says how long before now t (a time.Time or *time.Time) was, in the
// largest sensible unit; the console's pages say it the same way.
func Ago(now time.Time, v any) string {
	var t time.Time
	switch v := v.(type) {
	case time.Time:
		t = v
	case *time.Time:
		if v != nil {
			t = *v
		}
	}
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%d s ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d.Hours()))
	default:
		return fmt.Sprintf("%d days ago", int(d.Hours()/24))
	}
}

// HumanBytes writes a byte count in binary units ("1.5 KiB").
func HumanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

func joinLines(lines []int) string {
	if len(lines) == 0 {
		return "none"
	}
	s := make([]string, len(lines))
	for i, l := range lines {
		s[i] = fmt.Sprint(l)
	}
	return strings.Join(s, ", ")
}
