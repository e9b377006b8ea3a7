package netifs

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"
)

// Watcher keeps the list of interfaces current from the kernel's change
// events (a link added, removed, up or down; an address added or
// removed), so a service that follows the uplink's addresses does work
// only when something changed. Listing every few seconds instead was the
// largest share of an idle node's CPU and allocations: with a link per
// peer, each look read hundreds of links. Events for links the skip
// function rejects (the tunnels' links) cause no listing at all; a burst
// of events (the tunnels coming up at start) causes one listing when it
// has settled.
//
// Where events cannot be had (another system, or the subscription
// failed), the list is read every WatchOptions.Fallback, and the
// subscription tried again then.
//
// One goroutine, Run, owns the list; readers take Snapshot.
type Watcher struct {
	opt WatchOptions
	cur atomic.Pointer[Snapshot]
	// listed: Run has published a listing (even an empty one).
	listed bool
}

// WatchOptions configure a Watcher.
type WatchOptions struct {
	// Skip rejects links by name (nil rejects none). It is called at
	// every listing and for every link event, so it may follow a config.
	Skip func(name string) bool
	// Settle is how long a listing waits after the first event of a
	// burst; default 100 ms.
	Settle time.Duration
	// Fallback is how often the list is read while no events can be had;
	// default 30 s.
	Fallback time.Duration
	Log      *slog.Logger
	// List replaces the system's listing (List). The kernel's events say
	// nothing about such a list, so it is read every Fallback instead.
	List func(skip func(string) bool) ([]Interface, error)

	// list and subscribe are the system's (tests replace them).
	list      func(skip func(string) bool) ([]Interface, error)
	subscribe func(ctx context.Context) (<-chan event, error)
}

var errCustomList = errors.New("a custom list has no change events")

// Snapshot is the list of interfaces as of one listing.
type Snapshot struct {
	Interfaces []Interface
	// Err is why the listing failed (Interfaces is then the last good
	// one's).
	Err error
	// Changed is closed when a newer Snapshot replaces this one.
	Changed <-chan struct{}
	changed chan struct{}
}

// event is one change the kernel told: to link index (named name, for a
// link event; "" for an address event).
type event struct {
	index int
	name  string
	link  bool
	gone  bool
}

// NewWatcher makes a Watcher; its first Snapshot is empty until Run has
// listed.
func NewWatcher(o WatchOptions) *Watcher {
	if o.Skip == nil {
		o.Skip = func(string) bool { return false }
	}
	if o.Settle <= 0 {
		o.Settle = 100 * time.Millisecond
	}
	if o.Fallback <= 0 {
		o.Fallback = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.List != nil {
		o.list = o.List
		o.subscribe = func(context.Context) (<-chan event, error) { return nil, errCustomList }
	}
	if o.list == nil {
		o.list = list
	}
	if o.subscribe == nil {
		o.subscribe = subscribe
	}
	w := &Watcher{opt: o}
	c := make(chan struct{})
	w.cur.Store(&Snapshot{Changed: c, changed: c})
	return w
}

// Snapshot returns the latest list.
func (w *Watcher) Snapshot() *Snapshot { return w.cur.Load() }

// Run follows the interfaces until ctx ends and returns nil. The
// subscription and every listing happen on Run's own goroutine, so a
// caller that runs it in a network namespace (a locked thread) watches
// that namespace.
func (w *Watcher) Run(ctx context.Context) error {
	settle := time.NewTimer(w.opt.Settle)
	settle.Stop()
	poll := time.NewTicker(w.opt.Fallback)
	defer poll.Stop()
	// names are the links the events told of, so an address event on a
	// skipped link (a tunnel's) is told apart from one on the uplink.
	names := map[int]string{}
	failedOnce, pending := false, false
	for {
		events, err := w.opt.subscribe(ctx)
		switch {
		case errors.Is(err, errCustomList):
		case err != nil && !failedOnce:
			w.opt.Log.Warn("interface change events unavailable; listing interfaces every "+w.opt.Fallback.String()+" instead", "err", err)
			failedOnce = true
		case err == nil && failedOnce:
			w.opt.Log.Info("interface change events available again")
			failedOnce = false
		}
		clear(names)
		// Listing after subscribing misses no change made in between.
		settle.Stop()
		pending = false
		w.relist()
		poll.Reset(w.opt.Fallback)
		if err != nil {
			events = nil
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				settle.Stop()
				return nil
			case ev, ok := <-events:
				if !ok {
					if ctx.Err() != nil {
						return nil
					}
					w.opt.Log.Info("interface change events stopped (the kernel dropped some); subscribing again")
					// Not in a tight loop if they keep stopping.
					select {
					case <-ctx.Done():
						return nil
					case <-time.After(w.opt.Settle):
					}
					break wait
				}
				if !w.matters(ev, names) {
					continue
				}
				// One listing per burst: the timer runs from the
				// burst's first event.
				if !pending {
					settle.Reset(w.opt.Settle)
					pending = true
				}
			case <-settle.C:
				pending = false
				w.relist()
			case <-poll.C:
				if events == nil {
					// Try the events again; relists either way.
					break wait
				}
			}
		}
	}
}

// matters reports whether ev can change the list, keeping names current.
func (w *Watcher) matters(ev event, names map[int]string) bool {
	if ev.link {
		if ev.gone {
			delete(names, ev.index)
		} else {
			names[ev.index] = ev.name
		}
		return !w.opt.Skip(ev.name)
	}
	name, ok := names[ev.index]
	// An address on a link no event named yet: list to be sure.
	return !ok || !w.opt.Skip(name)
}

// relist reads the list and publishes it if it differs from the last.
func (w *Watcher) relist() {
	ifs, err := w.opt.list(w.opt.Skip)
	old := w.cur.Load()
	if err != nil {
		if old.Err != nil {
			return
		}
		w.opt.Log.Warn("listing interfaces", "err", err)
		ifs = old.Interfaces
	} else if w.listed && old.Err == nil && slices.EqualFunc(ifs, old.Interfaces, sameInterface) {
		return
	}
	w.listed = true
	c := make(chan struct{})
	w.cur.Store(&Snapshot{Interfaces: ifs, Err: err, Changed: c, changed: c})
	close(old.changed)
}

func sameInterface(a, b Interface) bool {
	return a.Index == b.Index && a.Name == b.Name && a.Up == b.Up && a.Loop == b.Loop && slices.Equal(a.Addrs, b.Addrs)
}
