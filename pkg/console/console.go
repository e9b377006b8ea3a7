// Package console is the Pi's web console: everything its owner does
// after flashing the card — set a password, pair with a friend, rename or
// remove peers, label phone lines, read the logs, change settings — from
// the browser of a laptop on the phone port or a smartphone on the home
// Wi-Fi. The appliance has no screen, no ssh and no login shell, so this is
// the only administration interface a user without a shell has.
//
// Pages are rendered on the server (html/template) and need no JavaScript:
// progress pages refresh themselves with <meta http-equiv=refresh>, the
// invite's QR code is a PNG in the page. Every read and every change goes
// through the daemon's control API (pkg/control), the same handlers
// `peerline` reaches over the socket, so nothing is computed twice.
//
// # Where it is served
//
// On the phone port (every line's gateway 10.0.s.2, port 80, by the same
// HTTP server as the phones' provisioning files), and on the uplink's
// private addresses (RFC 1918, IPv6 ULA) only; a public uplink address gets
// it only with "console": {"public_uplink": true} in the config. A request
// from a peer's address (10.i.x.x, i ≠ 0) is refused, although none can
// arrive: the phone-port socket is bound to the phone port and the tunnel
// namespaces' firewall passes only SIP, RTP and ping.
//
// # Access
//
// The status page (/) and /status.json stay open: anyone may ask "is it
// up?". Everything else needs the admin password. There is no default
// password. It is set in one of two ways:
//
//   - the first-use page /setup, which is offered only while no password is
//     set, only to a browser on the phone port (a laptop plugged into the
//     phones' switch: physical access), and only during the first
//     SetupWindow (30 minutes) after peerlined started. A stranger on the
//     home Wi-Fi never gets it; one on the phone port would have to be
//     there within 30 minutes of a power-on before the owner.
//     Power-cycling the Pi opens the window again (so does any restart of
//     peerlined, the window is counted from its start), which again needs
//     someone on the phone port, and only while no password is set.
//   - admin_password = … in peerline.txt on the boot partition (set or
//     reset, for someone who can take out the SD card). The boot service
//     hashes it and removes the line.
//
// Passwords are stored as argon2id hashes (pkg/adminpass). Logins are
// rate-limited per source address and globally; sessions are random
// 256-bit tokens in HttpOnly, SameSite=Strict cookies, expiring after 30
// minutes idle or 12 hours; every form carries a CSRF token (the session's,
// or a double-submit cookie before login); a cross-origin POST is refused;
// a Host header that is neither an IP address nor a .local name is refused
// (DNS rebinding). Every change is written to the journal with the source
// address.
package console

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/peerline/peerline/pkg/adminpass"
	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/statuspage"
)

// Zone is where a request came from.
type Zone int

const (
	// PhonePort is the phones' port: physically at the Pi.
	PhonePort Zone = iota
	// Uplink is the home network (or, if allowed, the Internet).
	Uplink
)

func (z Zone) String() string {
	if z == PhonePort {
		return "phone port"
	}
	return "uplink"
}

// SetupWindow is how long after peerlined starts the first-use page is
// offered on the phone port while no password is set.
const SetupWindow = 30 * time.Minute

// maxForm bounds a form's body; the largest (settings) is under 2 KiB.
const maxForm = 16 << 10

// Options configures a Console.
type Options struct {
	// Control reaches the daemon: control.Local(handlers) in peerlined.
	Control control.Caller
	// Status serves "/" and "/status.json" (pkg/statuspage).
	Status http.Handler
	// PasswordFile holds the admin password's hash (adminpass.Path).
	PasswordFile string
	// Started is when peerlined started: the first-use window opens then.
	Started time.Time
	// Extra maps paths (e.g. "/metrics", "/charts/rtt.svg") to handlers
	// that need a login, unless the handler checks access itself
	// (ExtraOpen).
	Extra     map[string]http.Handler
	ExtraOpen map[string]bool
	// Hash are argon2id's costs; zero means adminpass.Default.
	Hash adminpass.Params
	// Now is the clock; default time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// Console is the web console, shared by every listener.
type Console struct {
	opts Options
	log  *slog.Logger
	auth *auth
}

// New returns a console.
func New(opts Options) *Console {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Hash == (adminpass.Params{}) {
		opts.Hash = adminpass.Default
	}
	if opts.Started.IsZero() {
		opts.Started = opts.Now()
	}
	return &Console{opts: opts, log: opts.Log, auth: newAuth(opts.Now())}
}

// Handler serves the console to requests arriving through zone.
func (c *Console) Handler(zone Zone) http.Handler {
	mux := http.NewServeMux()
	c.routes(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		src, ok := sourceAddr(r)
		if !ok || zone == PhonePort && fromPeer(src) {
			c.log.Warn("console: request refused: from a peer's address or unparsable", "addr", r.RemoteAddr, "path", r.URL.Path)
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		if !hostAllowed(r.Host) {
			http.Error(w, "this Pi answers only to its IP address or its .local name", http.StatusMisdirectedRequest)
			return
		}
		if r.Method == http.MethodPost && !sameOrigin(r) {
			c.log.Warn("console: cross-site form refused", "addr", r.RemoteAddr, "path", r.URL.Path, "origin", r.Header.Get("Origin"))
			http.Error(w, "cross-site form refused", http.StatusForbidden)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		ctx := context.WithValue(r.Context(), zoneKey{}, zone)
		mux.ServeHTTP(w, r.WithContext(ctx))
	})
}

type zoneKey struct{}

func zoneOf(r *http.Request) Zone {
	z, _ := r.Context().Value(zoneKey{}).(Zone)
	return z
}

func sourceAddr(r *http.Request) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// fromPeer reports whether a is a peer's address as this node sees it
// (10.i.s.p, i from 1 to 253, or the wire ranges 10.254/10.255). Only
// phones (10.0.s.1) are on the phone port; on the uplink, 10/8 may be the
// home network.
func fromPeer(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	b := a.As4()
	return b[0] == 10 && b[1] != 0
}

// hostAllowed accepts an IP literal, localhost or a .local name: a page
// reached under any other name came through someone's DNS (rebinding).
func hostAllowed(host string) bool {
	if host == "" {
		return false
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	return host == "localhost" || strings.HasSuffix(host, ".local")
}

// sameOrigin refuses a POST whose Origin (or, lacking it, Referer) names
// another site; browsers send one of them with every form.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		o = r.Header.Get("Referer")
	}
	if o == "" {
		return true // not a browser; the CSRF token still applies
	}
	rest, ok := strings.CutPrefix(o, "http://")
	if !ok {
		rest, ok = strings.CutPrefix(o, "https://")
	}
	if !ok {
		return false
	}
	host, _, _ := strings.Cut(rest, "/")
	return strings.EqualFold(host, r.Host)
}

//go:embed templates/*.html
var templateFS embed.FS

var funcs = template.FuncMap{
	"ago":     statuspage.Ago,
	"ms":      func(d control.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) },
	"when":    func(t time.Time) string { return t.Local().Format("2006-01-02 15:04") },
	"bytes":   statuspage.HumanBytes,
	"pct":     func(f float64) string { return fmt.Sprintf("%.1f %%", f) },
	"datauri": func(b []byte) template.URL { return template.URL("data:image/png;base64," + b64(b)) },
	"deref":   func(d *control.Duration) control.Duration { return *d },
	"dropped": control.DroppedText,
	"rwtime":  control.LatencyText,
	"mos": func(m float64) string {
		if m == 0 {
			return "—"
		}
		return fmt.Sprintf("%.1f", m)
	},
}

// pages are parsed once: the layout plus one page file each.
var pages = func() map[string]*template.Template {
	out := map[string]*template.Template{}
	entries, err := templateFS.ReadDir("templates")
	if err != nil {
		panic(err)
	}
	for _, e := range entries {
		name := e.Name()
		if name == "layout.html" {
			continue
		}
		t := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name))
		out[strings.TrimSuffix(name, ".html")] = t
	}
	return out
}()

// view is what every page's template gets.
type view struct {
	Title    string
	Nav      string
	CSRF     string
	LoggedIn bool
	Flash    string
	Error    string
	Refresh  int
	Now      time.Time
	Data     any
}

// render writes page with status code; a template error is a clean 500.
func (c *Console) render(w http.ResponseWriter, r *http.Request, code int, page string, v view) {
	t := pages[page]
	if t == nil {
		c.log.Error("console: no such page template", "page", page)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	v.Now = c.opts.Now()
	var buf bytes.Buffer
	if err := t.Execute(&buf, v); err != nil {
		c.log.Error("console: rendering", "page", page, "err", err)
		http.Error(w, "the page failed to render; see the logs", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}
