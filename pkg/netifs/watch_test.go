package netifs

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeKernel is the system a Watcher sees in a test: the interfaces, the
// listings made, and the event subscriptions.
type fakeKernel struct {
	mu     sync.Mutex
	ifs    []Interface
	lists  int
	subErr error
	subs   []chan event
}

func (k *fakeKernel) list(skip func(string) bool) ([]Interface, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lists++
	var out []Interface
	for _, i := range k.ifs {
		if !skip(i.Name) {
			out = append(out, i)
		}
	}
	return out, nil
}

func (k *fakeKernel) subscribe(ctx context.Context) (<-chan event, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.subErr != nil {
		return nil, k.subErr
	}
	c := make(chan event, 1000)
	k.subs = append(k.subs, c)
	return c, nil
}

func (k *fakeKernel) listings() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lists
}

func (k *fakeKernel) set(ifs ...Interface) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.ifs = ifs
}

// send sends ev on the latest subscription.
func (k *fakeKernel) send(ev ...event) {
	k.mu.Lock()
	c := k.subs[len(k.subs)-1]
	k.mu.Unlock()
	for _, e := range ev {
		c <- e
	}
}

var (
	uplink = Interface{Index: 2, Name: "eth0", Up: true, Addrs: []netip.Addr{netip.MustParseAddr("192.168.1.5")}}
	tunnel = Interface{Index: 9, Name: "pl-7", Up: true, Addrs: []netip.Addr{netip.MustParseAddr("10.254.7.1")}}
)

func startWatcher(t *testing.T, k *fakeKernel) *Watcher {
	t.Helper()
	w := NewWatcher(WatchOptions{
		Skip:      func(name string) bool { return strings.HasPrefix(name, "pl-") },
		list:      k.list,
		subscribe: k.subscribe,
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	synctest.Wait()
	return w
}

// An idle machine costs nothing: one listing at start, none in an hour
// without events, and no new snapshot.
func TestWatchIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := &fakeKernel{ifs: []Interface{uplink, tunnel}}
		w := startWatcher(t, k)
		first := w.Snapshot()
		if k.listings() != 1 || len(first.Interfaces) != 1 || first.Interfaces[0].Name != "eth0" {
			t.Fatalf("after start: %d listings, %+v", k.listings(), first.Interfaces)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if k.listings() != 1 || w.Snapshot() != first {
			t.Errorf("an idle hour: %d listings, snapshot replaced: %v", k.listings(), w.Snapshot() != first)
		}
		allocs := testing.AllocsPerRun(1, func() {
			time.Sleep(time.Hour)
			synctest.Wait()
		})
		// The sleep itself allocates a timer; the watcher nothing.
		if allocs > 2 {
			t.Errorf("an idle hour allocates %v times", allocs)
		}
	})
}

// A change on the uplink is seen within the settle time, a burst costs
// one listing, and the tunnels' links cost none.
func TestWatchChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := &fakeKernel{ifs: []Interface{uplink, tunnel}}
		w := startWatcher(t, k)
		// The subscription names the links (ListExisting).
		k.send(event{index: 2, name: "eth0", link: true}, event{index: 9, name: "pl-7", link: true})
		synctest.Wait()
		time.Sleep(time.Second)
		synctest.Wait()
		n := k.listings()

		// 250 tunnels' links and addresses come and go: nothing listed.
		for i := range 250 {
			k.send(event{index: 100 + i, name: "pl-x", link: true}, event{index: 100 + i}, event{index: 9})
		}
		synctest.Wait()
		time.Sleep(time.Second)
		synctest.Wait()
		if k.listings() != n {
			t.Errorf("tunnel events caused %d listings", k.listings()-n)
		}

		// DHCP gives the uplink a new address: seen within 100 ms.
		snap := w.Snapshot()
		moved := uplink
		moved.Addrs = []netip.Addr{netip.MustParseAddr("192.168.1.77")}
		k.set(moved, tunnel)
		start := time.Now()
		k.send(event{index: 2}, event{index: 2}, event{index: 2})
		select {
		case <-snap.Changed:
		case <-time.After(time.Minute):
			t.Fatal("address change not seen")
		}
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Errorf("address change seen after %v", d)
		}
		if got := w.Snapshot().Interfaces; len(got) != 1 || got[0].Addrs[0] != moved.Addrs[0] {
			t.Errorf("after the change: %+v", got)
		}
		if k.listings() != n+1 {
			t.Errorf("a burst of 3 events: %d listings, want 1", k.listings()-n)
		}

		// The link goes down: seen.
		snap = w.Snapshot()
		down := moved
		down.Up = false
		k.set(down, tunnel)
		k.send(event{index: 2, name: "eth0", link: true})
		synctest.Wait()
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		select {
		case <-snap.Changed:
		default:
			t.Fatal("link down not seen")
		}
		if got := w.Snapshot().Interfaces; len(got) != 1 || got[0].Up {
			t.Errorf("after link down: %+v", got)
		}

		// An event that changes nothing listed leaves the snapshot.
		snap = w.Snapshot()
		k.send(event{index: 2})
		synctest.Wait()
		time.Sleep(time.Second)
		synctest.Wait()
		if w.Snapshot() != snap {
			t.Error("an event with no change replaced the snapshot")
		}

		// An address on a link no event has named yet is listed.
		n = k.listings()
		k.send(event{index: 55})
		synctest.Wait()
		time.Sleep(time.Second)
		synctest.Wait()
		if k.listings() != n+1 {
			t.Errorf("address on an unknown link: %d listings, want 1", k.listings()-n)
		}
	})
}

// Without events, the list is read at the fallback interval; when the
// events stop (the kernel dropped some), the watcher subscribes and lists
// again.
func TestWatchFallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := &fakeKernel{ifs: []Interface{uplink}, subErr: errors.New("no netlink here")}
		w := startWatcher(t, k)
		if k.listings() != 1 {
			t.Fatalf("%d listings at start", k.listings())
		}
		snap := w.Snapshot()
		moved := uplink
		moved.Addrs = []netip.Addr{netip.MustParseAddr("192.168.1.77")}
		k.set(moved)
		time.Sleep(30*time.Second + time.Millisecond)
		synctest.Wait()
		if k.listings() != 2 {
			t.Errorf("after 30 s without events: %d listings, want 2", k.listings())
		}
		select {
		case <-snap.Changed:
		default:
			t.Error("fallback listing did not publish the change")
		}

		// The events come back at the next try.
		k.mu.Lock()
		k.subErr = nil
		k.mu.Unlock()
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if len(k.subs) != 1 {
			t.Fatalf("%d subscriptions after events came back", len(k.subs))
		}
		n := k.listings()
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if k.listings() != n {
			t.Errorf("with events: %d listings in 10 idle minutes", k.listings()-n)
		}

		// The subscription ends: subscribed again and listed.
		close(k.subs[0])
		synctest.Wait()
		time.Sleep(time.Second)
		synctest.Wait()
		if len(k.subs) != 2 || k.listings() != n+1 {
			t.Errorf("after the events stopped: %d subscriptions, %d listings (want 2, 1)", len(k.subs), k.listings()-n)
		}
	})
}
