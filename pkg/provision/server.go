package provision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/peerline/peerline/pkg/devsock"
)

// Phones maps a requester's address to its DHCP binding; pkg/dhcpd.Server
// implements it.
type Phones interface {
	// LineOf returns the MAC and line bound to addr; ok is false for an
	// address no phone was given.
	LineOf(ctx context.Context, addr netip.Addr) (mac net.HardwareAddr, line int, ok bool)
	// NoteUserAgent records the HTTP User-Agent of the phone on line (it
	// names model and firmware).
	NoteUserAgent(line int, ua string)
}

// Options configures a Server.
type Options struct {
	// Port is the phone port; the listener is bound to it (SO_BINDTODEVICE),
	// so nothing is served on the uplink.
	Port string
	// Addr is the listen address; "" means ":80".
	Addr string
	// Directory returns the current directory; it is called per request, so
	// renamed or new peers show up at the phones' next fetch.
	Directory func(ctx context.Context) (Directory, error)
	Phones    Phones
	// Extra serves "/" and everything that is not provisioning (the status
	// page); nil means 404.
	Extra http.Handler
	Log   *slog.Logger
	// Listen opens the listener; nil means a TCP listener bound to Port in
	// the current network namespace. Tests replace it.
	Listen func(network, addr string) (net.Listener, error)
	// Neighbor returns the link-layer address the kernel holds for a
	// requester's address on the phone port (nil if none); a file is only
	// served if it is the MAC of the address's DHCP lease (see authorize).
	// nil means LookupNeighbor on Port in the current network namespace.
	Neighbor func(ctx context.Context, addr netip.Addr) (net.HardwareAddr, error)
}

// Limits on what one client can make the server do.
const (
	maxConns       = 32
	maxHeaderBytes = 8 << 10
	maxBodyBytes   = 64 << 10
	maxUALen       = 160
)

// Server is the provisioning HTTP server of the phone port.
type Server struct {
	opts    Options
	log     *slog.Logger
	handler http.Handler
}

// NewServer checks opts and returns a Server; Run starts it.
func NewServer(opts Options) (*Server, error) {
	if opts.Directory == nil || opts.Phones == nil {
		return nil, errors.New("provision: Options.Directory and Options.Phones are required")
	}
	if (opts.Listen == nil || opts.Neighbor == nil) && opts.Port == "" {
		return nil, errors.New("provision: Options.Port is required: name the phone port (e.g. eth0) so that nothing is served on the uplink")
	}
	if opts.Addr == "" {
		opts.Addr = ":80"
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Neighbor == nil {
		port := opts.Port
		opts.Neighbor = func(_ context.Context, a netip.Addr) (net.HardwareAddr, error) { return LookupNeighbor(port, a) }
	}
	s := &Server{opts: opts, log: opts.Log.With("port", opts.Port)}
	s.handler = http.HandlerFunc(s.serveHTTP)
	return s, nil
}

// Handler returns the server's HTTP handler (for tests and for embedding).
func (s *Server) Handler() http.Handler { return s.handler }

// Run serves until ctx is done and returns nil then; it returns an error if
// the listener cannot be opened or fails.
func (s *Server) Run(ctx context.Context) error {
	listen := s.opts.Listen
	if listen == nil {
		listen = func(network, addr string) (net.Listener, error) {
			return devsock.Listen(ctx, network, addr, s.opts.Port)
		}
	}
	ln, err := listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("listening for phone provisioning on %s %s (is another web server using the port?): %w", s.opts.Port, s.opts.Addr, err)
	}
	ln = &limitListener{Listener: ln, sem: make(chan struct{}, maxConns)}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.log.Info("provisioning server started", "addr", ln.Addr().String())
	defer s.log.Info("provisioning server stopped")

	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		shutCtx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutCtx); err != nil {
			srv.Close()
		}
	}()
	err = srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		<-done
		return nil
	}
	// Serve failed on its own: stop the shutdown goroutine too.
	srv.Close()
	return fmt.Errorf("serving phone provisioning: %w", err)
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if len(r.URL.Path) > maxPathLen {
		http.Error(w, "path too long", http.StatusRequestURITooLong)
		return
	}
	req := parsePath(r.URL.Path)
	if req.kind == kindNotServed {
		http.NotFound(w, r)
		return
	}
	if req.kind == kindOther {
		if s.opts.Extra == nil {
			http.NotFound(w, r)
			return
		}
		s.opts.Extra.ServeHTTP(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	log := s.log.With("path", r.URL.Path, "addr", r.RemoteAddr)
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		log.Warn("provisioning request refused: unparsable source address")
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	src := ap.Addr().Unmap()
	mac, line, leased := s.opts.Phones.LineOf(r.Context(), src)
	var neighbor net.HardwareAddr
	if leased {
		// The request arrived on an established connection (HTTP) or will
		// be answered through the same entry (TFTP), so the entry is the
		// one the kernel uses for this requester now.
		var nerr error
		if neighbor, nerr = s.opts.Neighbor(r.Context(), src); nerr != nil {
			log.Error("neighbour table not readable; refusing provisioning requests", "err", nerr)
			neighbor = nil
		}
		log = log.With("line", line, "mac", mac.String())
	}
	v := authorize(req, mac, leased, neighbor)
	if v == allow || v == refuseOtherFile {
		// The requester is the lease holder: its User-Agent names its model.
		if ua := cleanUA(r.UserAgent()); ua != "" {
			s.opts.Phones.NoteUserAgent(line, ua)
		}
	}
	if v != allow {
		attrs := []any{"reason", v.String()}
		if neighbor != nil {
			attrs = append(attrs, "neighbor_mac", neighbor.String())
		}
		if req.kind == kindConfig {
			attrs = append(attrs, "want_mac", req.mac.String())
		}
		log.Warn("provisioning request refused", attrs...)
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}

	var body []byte
	contentType := "text/xml; charset=utf-8"
	switch req.kind {
	case kindConfig:
		dir, derr := s.opts.Directory(r.Context())
		if derr != nil {
			err = derr
			break
		}
		body, err = Config(req.vendor, dir, line, mac)
		if req.vendor == Yealink {
			contentType = "text/plain; charset=utf-8"
		}
	case kindCommon:
		body, err = YealinkCommon()
		contentType = "text/plain; charset=utf-8"
	case kindPhonebook:
		dir, derr := s.opts.Directory(r.Context())
		if derr != nil {
			err = derr
			break
		}
		body, err = Phonebook(req.vendor, dir, line)
	}
	if err != nil {
		log.Error("provisioning file not generated", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	log.Info("provisioning file served", "vendor", req.vendor.String(), "bytes", len(body))
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// cleanUA keeps a User-Agent printable and short before it is stored.
func cleanUA(ua string) string {
	ua = strings.Map(func(r rune) rune {
		if r > unicode.MaxASCII || !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, ua)
	if len(ua) > maxUALen {
		ua = ua[:maxUALen]
	}
	return strings.TrimSpace(ua)
}

// limitListener bounds the connections being served at once; a flood waits
// in the kernel's accept queue instead of costing goroutines and memory.
type limitListener struct {
	net.Listener
	sem chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
