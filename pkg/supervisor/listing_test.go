package supervisor

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/netsetup/netsetuptest"
	"github.com/peerline/peerline/pkg/nodekey"
)

// heldListing is a netsetup whose namespace listing, while held, waits
// (up to 2 s) for a third tunnel to start and says whether it did.
type heldListing struct {
	*netsetuptest.Recorder
	tun    *fakeTunnels
	hold   atomic.Bool
	waited chan bool
}

func (o *heldListing) Namespaces(prefix string) ([]string, error) {
	if o.hold.Load() {
		deadline := time.Now().Add(2 * time.Second)
		for o.tun.count() < 3 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		o.waited <- o.tun.count() >= 3
	}
	return o.Recorder.Namespaces(prefix)
}

// TestNewPeerBuiltWhileListing: a reload that adds a peer builds it while
// the namespaces and links are listed (10-100 ms with 253 peers), not
// after; the peers already running are still checked against the listing.
func TestNewPeerBuiltWhileListing(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig(t)
	net := &heldListing{Recorder: h.rec, tun: h.tun, waited: make(chan bool, 4)}
	s := New(cfg, Options{Net: net, StartTunnel: h.tun.start, Firewall: h.fw, Key: testKey, ListenTunnels: loopbackMux, Log: testLog(t), CheckInterval: time.Hour, StatusInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	h.sup, h.cancel, h.done, h.reload = s, cancel, make(chan error, 1), make(chan *config.Config)
	h.started = time.Now().UTC()
	go func() { h.done <- s.Run(ctx, h.reload) }()
	h.waitReady(cfg)

	// Peer 9's namespace vanishes meanwhile: the reload still finds it.
	if err := h.rec.DeleteNamespace("pl-9"); err != nil {
		t.Fatal(err)
	}
	h.rec.Take()
	net.hold.Store(true)
	k, _ := nodekey.Generate()
	next := *cfg
	next.Peers = append(slices.Clone(cfg.Peers), config.Peer{Index: 11, Name: "dave", PublicKey: k.Public(), Endpoint: "198.51.100.11:51820"})
	h.reload <- &next
	h.sup.Do(t.Context(), func() {})
	net.hold.Store(false)
	select {
	case built := <-net.waited:
		if !built {
			t.Error("the namespaces were listed before the new peer's tunnel was started; want them listed while it is built")
		}
	default:
		t.Fatal("the reload listed no namespaces")
	}
	st, err := ReadStatus(cfg.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	up := 0
	for _, p := range st.Peers {
		if p.Up {
			up++
		}
	}
	if up != 3 || !st.Ready {
		t.Errorf("after the reload %d peers up, ready %v; want 3 and ready", up, st.Ready)
	}
	if got := h.rec.Take(); !containsAll(got, "ns add pl-11", "ns add pl-9") {
		t.Errorf("reload transcript lacks the new peer 11 or the rebuilt peer 9:\n%s", got)
	}
	h.stop()
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
