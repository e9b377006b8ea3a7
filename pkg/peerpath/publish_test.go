package peerpath

import (
	"reflect"
	"testing"
	"testing/synctest"
	"time"
)

// TestStatusPublishedOnChange: while no peer's status changes, the ticks
// publish nothing new (Status returns the same map, nothing allocated for
// it); a change publishes a new one.
func TestStatusPublishedOnChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newSimWorld(t, 1)
		a, _ := w.site(1, portRestricted, nil)
		b, _ := w.site(2, portRestricted, nil)
		w.pair(a, b)
		settle(t, a, b, punchWindow, settled(PathDirect))
		settle(t, a, b, time.Second, func(s Status) bool { return s.RTT > 0 })
		time.Sleep(time.Second)
		same := func() uintptr { return reflect.ValueOf(a.mgr.Status()).Pointer() }
		first := same()
		for range 50 {
			time.Sleep(tick)
			if same() != first {
				t.Fatalf("status republished with nothing changed: %v", a.mgr.Status()[b.pub])
			}
		}
		w.net.Block(betweenSites)
		// The direct path stops answering: the status moves (offline or
		// relayed), and with it the map.
		deadline := time.Now().Add(time.Minute)
		for same() == first {
			if time.Now().After(deadline) {
				t.Fatalf("status not republished a minute after the path broke: %v", a.mgr.Status()[b.pub])
			}
			time.Sleep(tick)
		}
		// And settles on the relay, nothing left in flight.
		settle(t, a, b, time.Minute, settled(PathRelay))
	})
}
