// Package mdns is a minimal multicast DNS responder (RFC 6762): it answers
// A and AAAA queries for the node's own name, "<name>.local", so that the
// owner finds the console from a phone or laptop on the home network
// without knowing the Pi's address.
//
// It answers only on interfaces with a private address (RFC 1918, or an
// IPv6 unique local address), and only with those addresses: on a public
// uplink it stays silent, and the phone port and the tunnels' links are
// excluded by the caller (Options.Skip). Each socket is bound to its
// interface (SO_BINDTODEVICE), so a query that arrives elsewhere, a
// tunnel's included, is never seen.
//
// Minimal means: one name, IPv4 transport (224.0.0.251:5353; AAAA records
// for ULA addresses are answered over it), no probing for conflicts (the
// name is the owner's choice and a clash shows as two answers), no
// services (DNS-SD). It announces its records when an interface becomes
// eligible or its addresses change (twice, a second apart, RFC 6762
// §8.3), and sends goodbyes (TTL 0) when it stops. Answer, the decision
// what to reply, is pure and fuzzed.
package mdns

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/peerline/peerline/pkg/netifs"
	"github.com/peerline/peerline/pkg/tokenbucket"
)

// Interface is one network interface and its addresses.
type Interface = netifs.Interface

// Options configure a Responder.
type Options struct {
	// Name returns the node's name, read at every rescan so a rename is
	// answered within Interval; it becomes a label with Label.
	Name func() string
	// Skip excludes interfaces that are not the uplink: the phone port,
	// the tunnels' links.
	Skip func(ifname string) bool
	// Watch, if set, tells the interfaces and their changes: they are
	// looked at again when they change, and otherwise only Name every
	// Interval. Without it, Interfaces lists them every Interval.
	Watch *netifs.Watcher
	// Interval is how often interfaces and addresses are looked at again
	// without Watch, and the name with it (default 5 s).
	Interval time.Duration
	// Interfaces lists the interfaces; default the system's.
	Interfaces func() ([]Interface, error)
	Log        *slog.Logger

	// listen opens the socket for an interface (tests replace it).
	listen func(ifname string) (conn, error)
}

// conn is an interface's mDNS socket.
type conn interface {
	ReadFrom(b []byte) (int, netip.AddrPort, error)
	WriteTo(b []byte, to netip.AddrPort) error
	Close() error
}

// Responder answers for the node's name; Run runs it.
type Responder struct {
	opt Options
	log *slog.Logger
}

// New checks opt and makes a Responder.
func New(opt Options) (*Responder, error) {
	if opt.Name == nil {
		return nil, errors.New("mdns: Options.Name is required")
	}
	if opt.Skip == nil {
		opt.Skip = func(string) bool { return false }
	}
	if opt.Interval <= 0 {
		opt.Interval = 5 * time.Second
	}
	if opt.Interfaces == nil {
		skip := opt.Skip
		opt.Interfaces = func() ([]Interface, error) { return listInterfaces(skip) }
	}
	if opt.listen == nil {
		opt.listen = listen
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	return &Responder{opt: opt, log: opt.Log}, nil
}

// view is what an interface's reader answers with.
type view struct {
	host  string // "alice.local."
	addrs []netip.Addr
}

// link is one interface being served; Run owns it, its reader reads cur.
type link struct {
	name string
	c    conn
	cur  atomic.Pointer[view]
	done chan struct{}
	// announce wakes the announcer for a changed view.
	announce chan struct{}
}

// Run serves until ctx is done, then withdraws the name (goodbye) and
// returns nil.
func (r *Responder) Run(ctx context.Context) error {
	r.log.Info("mDNS responder started")
	defer r.log.Info("mDNS responder stopped")
	links := map[string]*link{}
	failed := map[string]bool{}
	var wg sync.WaitGroup
	defer func() {
		for _, l := range links {
			r.stop(l)
		}
		wg.Wait()
	}()
	t := time.NewTicker(r.opt.Interval)
	defer t.Stop()
	var (
		seen     *netifs.Snapshot
		changed  <-chan struct{}
		seenName string
	)
	for {
		var ifs []Interface
		var err error
		name := r.opt.Name()
		if r.opt.Watch != nil {
			// Nothing to do unless the interfaces, the name or a socket
			// that failed before asks for it.
			s := r.opt.Watch.Snapshot()
			if s == seen && name == seenName && len(failed) == 0 {
				select {
				case <-ctx.Done():
					return nil
				case <-changed:
				case <-t.C:
				}
				continue
			}
			seen, changed, seenName = s, s.Changed, name
			ifs, err = s.Interfaces, s.Err
		} else {
			ifs, err = r.opt.Interfaces()
		}
		want := r.wanted(ifs, name)
		if err != nil {
			r.log.Warn("mDNS: listing interfaces; retrying", "err", err)
		}
		for name, l := range links {
			if _, ok := want[name]; !ok {
				r.log.Info("mDNS: no private address on the interface any more; not answering there", "interface", name)
				r.stop(l)
				delete(links, name)
			}
		}
		for name, v := range want {
			if l := links[name]; l != nil {
				if old := l.cur.Load(); old.host != v.host || !slices.Equal(old.addrs, v.addrs) {
					if old.host != v.host {
						r.goodbye(l, old)
					}
					l.cur.Store(v)
					select {
					case l.announce <- struct{}{}:
					default:
					}
				}
				continue
			}
			c, err := r.opt.listen(name)
			if err != nil {
				if !failed[name] {
					r.log.Warn("mDNS: cannot listen; the console is not found by name there", "interface", name, "err", err)
					failed[name] = true
				}
				continue
			}
			delete(failed, name)
			l := &link{name: name, c: c, done: make(chan struct{}), announce: make(chan struct{}, 1)}
			l.cur.Store(v)
			l.announce <- struct{}{}
			links[name] = l
			wg.Go(func() { r.runReader(l) })
			wg.Go(func() { r.runAnnouncer(l) })
			r.log.Info("mDNS: answering", "interface", name, "name", v.host, "addrs", v.addrs)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-t.C:
		}
	}
}

// wanted is the eligible interfaces of ifs and what each answers with.
func (r *Responder) wanted(ifs []Interface, name string) map[string]*view {
	host := dns.Fqdn(Label(name) + ".local")
	want := map[string]*view{}
	for _, i := range ifs {
		if !i.Up || i.Loop || r.opt.Skip(i.Name) {
			continue
		}
		var addrs []netip.Addr
		for _, a := range i.Addrs {
			if Private(a) {
				addrs = append(addrs, a.Unmap())
			}
		}
		if len(addrs) > 0 {
			slices.SortFunc(addrs, netip.Addr.Compare)
			want[i.Name] = &view{host: host, addrs: addrs}
		}
	}
	return want
}

// stop withdraws the name on l and closes it.
func (r *Responder) stop(l *link) {
	close(l.done)
	r.goodbye(l, l.cur.Load())
	l.c.Close()
}

func (r *Responder) goodbye(l *link, v *view) {
	if b, err := Announcement(v.host, v.addrs, 0); err == nil {
		if err := l.c.WriteTo(b, MulticastAddr); err != nil {
			r.log.Debug("mDNS: goodbye", "interface", l.name, "err", err)
		}
	}
}

// runAnnouncer announces l's records twice, a second apart, whenever they
// change (and when l starts).
func (r *Responder) runAnnouncer(l *link) {
	for {
		select {
		case <-l.done:
			return
		case <-l.announce:
		}
		for k := range 2 {
			if k > 0 {
				select {
				case <-l.done:
					return
				case <-time.After(time.Second):
				}
			}
			v := l.cur.Load()
			b, err := Announcement(v.host, v.addrs, hostTTL*time.Second)
			if err == nil {
				err = l.c.WriteTo(b, MulticastAddr)
			}
			if err != nil {
				r.log.Debug("mDNS: announcing", "interface", l.name, "err", err)
			}
		}
	}
}

// runReader answers the queries arriving on l until it is closed.
// Multicast replies go out at most once a second (RFC 6762 §6: the group
// heard the last one); unicast ones at most 20 a second, so the responder
// cannot be made a traffic source.
func (r *Responder) runReader(l *link) {
	buf := make([]byte, maxMessage+1)
	var lastMulticast time.Time
	now := time.Now()
	bucket := tokenbucket.Full(20, now)
	for {
		n, src, err := l.c.ReadFrom(buf)
		if err != nil {
			select {
			case <-l.done:
			default:
				r.log.Warn("mDNS: reading; not answering on this interface until it is set up again", "interface", l.name, "err", err)
			}
			return
		}
		v := l.cur.Load()
		reply, ok := Answer(buf[:n], src, v.host, v.addrs)
		if !ok {
			continue
		}
		now := time.Now()
		to := MulticastAddr
		if reply.Unicast {
			if !bucket.Take(now, 20, 20, 1) {
				continue
			}
			to = src
		} else {
			if now.Sub(lastMulticast) < time.Second {
				continue
			}
			lastMulticast = now
		}
		if err := l.c.WriteTo(reply.Msg, to); err != nil {
			r.log.Debug("mDNS: answering", "interface", l.name, "to", to, "err", err)
		}
	}
}

// listInterfaces lists the system's interfaces but those skip rejects,
// without asking for the addresses of those (a node has a link per peer).
func listInterfaces(skip func(string) bool) ([]Interface, error) { return netifs.List(skip) }
