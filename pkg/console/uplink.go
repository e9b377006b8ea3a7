package console

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/peerline/peerline/pkg/devsock"
	"github.com/peerline/peerline/pkg/netifs"
)

// UplinkOptions configures ServeUplink.
type UplinkOptions struct {
	// Handler is the console's Handler(Uplink).
	Handler http.Handler
	// Skip excludes interfaces that are not the uplink: the phone port and
	// the daemon's own links to the tunnels.
	Skip func(ifname string) bool
	// Public reports whether public addresses may serve the console too
	// ("console": {"public_uplink": true}).
	Public func() bool
	// Port is 80 unless a test says otherwise.
	Port int
	// Watch, if set, tells the interfaces and their changes: the
	// addresses are looked at again when they change, and otherwise only
	// Public every Interval. Without it, Interfaces lists them every
	// Interval.
	Watch *netifs.Watcher
	// Interval is how often the addresses are looked at again (DHCP may
	// change them) without Watch, and Public with it; default 5 s.
	Interval time.Duration
	// Interfaces lists the interfaces and addresses; default net's.
	Interfaces func() ([]Interface, error)
	Log        *slog.Logger
}

// Interface is one network interface and its addresses.
type Interface = netifs.Interface

// Wanted reports whether the console may listen on a: a private address
// (RFC 1918 or IPv6 ULA), or any global unicast one if public is allowed.
// Never link-local or loopback. The phone port's line addresses are left
// out by interface (UplinkOptions.Skip).
func Wanted(a netip.Addr, public bool) bool {
	a = a.Unmap()
	switch {
	case !a.IsValid(), a.IsLoopback(), a.IsLinkLocalUnicast(), a.IsMulticast(), a.IsUnspecified():
		return false
	case a.Is4() && a.As4()[0] == 10 && a.As4()[1] >= 254:
		// The wire ranges are the tunnels' own.
		return false
	case a.IsPrivate():
		return true
	}
	return public && a.IsGlobalUnicast()
}

// netInterfaces lists the system's interfaces but those skip rejects,
// without asking for the addresses of those (a node has a link per peer).
func netInterfaces(skip func(string) bool) ([]Interface, error) { return netifs.List(skip) }

type served struct {
	srv  *http.Server
	done chan struct{}
}

// ServeUplink serves the console on every wanted address of the uplink,
// following address changes, until ctx is done. Each listener is bound to
// its address and its interface (SO_BINDTODEVICE), so the console is never
// answered on another interface, a tunnel's included.
func ServeUplink(ctx context.Context, o UplinkOptions) error {
	if o.Port == 0 {
		o.Port = 80
	}
	if o.Interval == 0 {
		o.Interval = 5 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Skip == nil {
		o.Skip = func(string) bool { return false }
	}
	if o.Interfaces == nil {
		skip := o.Skip
		o.Interfaces = func() ([]Interface, error) { return netInterfaces(skip) }
	}
	if o.Public == nil {
		o.Public = func() bool { return false }
	}
	live := map[netip.AddrPort]*served{}
	failed := map[netip.AddrPort]bool{}
	defer func() {
		for ap, s := range live {
			s.srv.Close()
			<-s.done
			o.Log.Info("console stopped on the uplink", "addr", ap.String())
		}
	}()
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	var (
		seen       *netifs.Snapshot
		changed    <-chan struct{}
		seenPublic bool
	)
	for {
		var ifs []Interface
		var err error
		public := o.Public()
		if o.Watch != nil {
			// Nothing to do unless the interfaces, the setting or a
			// listener that failed before asks for it.
			s := o.Watch.Snapshot()
			if s == seen && public == seenPublic && len(failed) == 0 {
				select {
				case <-ctx.Done():
					return nil
				case <-changed:
				case <-t.C:
				}
				continue
			}
			seen, changed, seenPublic = s, s.Changed, public
			ifs, err = s.Interfaces, s.Err
		} else {
			ifs, err = o.Interfaces()
		}
		if err != nil {
			o.Log.Warn("console: listing interfaces", "err", err)
		}
		want := map[netip.AddrPort]string{}
		for _, i := range ifs {
			if !i.Up || i.Loop || o.Skip(i.Name) {
				continue
			}
			for _, a := range i.Addrs {
				if Wanted(a, public) {
					want[netip.AddrPortFrom(a, uint16(o.Port))] = i.Name
				}
			}
		}
		for ap, s := range live {
			if _, ok := want[ap]; !ok {
				s.srv.Close()
				<-s.done
				delete(live, ap)
				o.Log.Info("console stopped on the uplink: address gone", "addr", ap.String())
			}
		}
		for ap, ifname := range want {
			if live[ap] != nil {
				continue
			}
			ln, err := devsock.Listen(ctx, "tcp", ap.String(), ifname)
			if err != nil {
				if !failed[ap] {
					o.Log.Warn("console: cannot listen on the uplink", "addr", ap.String(), "err", err)
					failed[ap] = true
				}
				continue
			}
			delete(failed, ap)
			s := &served{srv: newHTTPServer(ctx, o.Handler, o.Log), done: make(chan struct{})}
			live[ap] = s
			go func() {
				defer close(s.done)
				if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					o.Log.Warn("console on the uplink stopped", "addr", ap.String(), "err", err)
				}
			}()
			o.Log.Info("console serving on the uplink", "addr", ap.String(), "interface", ifname)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-t.C:
		}
	}
}

func newHTTPServer(ctx context.Context, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}
