//go:build linux && lab

package wgtunnel

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/labtest"
)

// TestPlainTUNWakeRead: WakeRead makes a Read blocked on the TUN return
// no packet and no error once (the rewriter then hands over an answer of
// its own to the peer), the next Read blocks again, and an interrupt (a
// parking device) still wins over a wake.
func TestPlainTUNWakeRead(t *testing.T) {
	labtest.RequireRoot(t)
	l := labtest.New(t)
	h, err := l.Host("tun")
	if err != nil {
		t.Fatal(err)
	}
	var td baseTUN
	if err := h.Do(func() error {
		var err error
		td, err = createTUN("pltun0", 1380)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer td.Close()
	if err := h.IP("link", "set", "pltun0", "up"); err != nil {
		t.Fatal(err)
	}
	pt := td.(*plainTUN)
	type result struct {
		n   int
		err error
	}
	read := func() <-chan result {
		ch := make(chan result, 1)
		go func() {
			bufs, sizes := [][]byte{make([]byte, 2048)}, []int{0}
			n, err := td.Read(bufs, sizes, 0)
			ch <- result{n, err}
		}()
		return ch
	}
	wait := func(ch <-chan result, what string) result {
		t.Helper()
		select {
		case r := <-ch:
			return r
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: Read still blocked after 5 s", what)
			return result{}
		}
	}

	ch := read()
	time.Sleep(20 * time.Millisecond)
	pt.WakeRead()
	if r := wait(ch, "woken"); r.n != 0 || r.err != nil {
		t.Fatalf("woken Read = %d, %v; want 0, nil", r.n, r.err)
	}
	// Once only: the next Read blocks until something happens.
	ch = read()
	select {
	case r := <-ch:
		t.Fatalf("Read after the wake returned %d, %v; want it blocked", r.n, r.err)
	case <-time.After(100 * time.Millisecond):
	}
	pt.interrupt()
	if r := wait(ch, "interrupted"); !errors.Is(r.err, os.ErrDeadlineExceeded) {
		t.Fatalf("interrupted Read = %d, %v; want the deadline error", r.n, r.err)
	}
	// While interrupted a wake does not turn the interrupt into a packet.
	pt.WakeRead()
	if r := wait(read(), "interrupted and woken"); !errors.Is(r.err, os.ErrDeadlineExceeded) {
		t.Fatalf("interrupted, woken Read = %d, %v; want the deadline error", r.n, r.err)
	}
	// resume forgets the wake: the parked waiter must not see it.
	pt.resume()
	ch = read()
	select {
	case r := <-ch:
		t.Fatalf("Read after resume returned %d, %v; want it blocked", r.n, r.err)
	case <-time.After(100 * time.Millisecond):
	}
	pt.WakeRead()
	if r := wait(ch, "woken after resume"); r.n != 0 || r.err != nil {
		t.Fatalf("woken Read = %d, %v; want 0, nil", r.n, r.err)
	}
}
