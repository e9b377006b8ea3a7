//go:build peerline_testhook

package wgtunnel

import (
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/device"
)

// A test hook, built only with the tag peerline_testhook (pkg/peerlab's
// TestRekeyCrossing builds such a peerlined): on SIGUSR2 the daemon reads
// the wall-clock instant (Unix nanoseconds) in TestHookFile(its pid),
// waits for it, and then every tunnel rekeys as it does when its key
// reaches WireGuard's reject-after time while idle: the key may no longer
// send, and the keepalive that comes next starts a handshake. Two daemons
// given the same instant rekey together, which WireGuard's 120/180 s
// constants make too slow to wait for in a test.

var testHooked struct {
	once    sync.Once
	mu      sync.Mutex
	tunnels []*Tunnel
}

func testHook(t *Tunnel) {
	testHooked.mu.Lock()
	testHooked.tunnels = append(testHooked.tunnels, t)
	testHooked.mu.Unlock()
	testHooked.once.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGUSR2)
		go func() {
			for range ch {
				rekeyAt()
			}
		}()
	})
}

func rekeyAt() {
	b, err := os.ReadFile(TestHookFile(os.Getpid()))
	if err != nil {
		return
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return
	}
	time.Sleep(time.Until(time.Unix(0, ns)))
	testHooked.mu.Lock()
	defer testHooked.mu.Unlock()
	for _, t := range testHooked.tunnels {
		select {
		case <-t.closing:
			continue
		default:
		}
		t.mu.Lock()
		if t.dev != nil {
			if p := t.dev.LookupPeer(device.NoisePublicKey(t.peer)); p != nil {
				p.ExpireCurrentKeypairs()
				p.SendKeepalive()
				t.log.Info("test hook: keys expired, rekeying")
			}
		}
		t.mu.Unlock()
	}
}
