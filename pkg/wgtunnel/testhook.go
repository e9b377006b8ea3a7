//go:build peerline_testhook

package wgtunnel

import (
	"fmt"
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
//
// And PEERLINE_TESTHOOK_LAZY, read at start, shortens lazy.go's timers
// for pkg/peerlab's TestLazyIdleCall: comma-separated name=duration pairs
// of parkCheck, parkNever, parkIdle, sessionLife and keepaliveIdle.

func init() {
	s := os.Getenv("PEERLINE_TESTHOOK_LAZY")
	if s == "" {
		return
	}
	vars := map[string]*time.Duration{"parkCheck": &parkCheck, "parkNever": &parkNever, "parkIdle": &parkIdle,
		"sessionLife": &sessionLife, "keepaliveIdle": &keepaliveIdle}
	for kv := range strings.SplitSeq(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		d, err := time.ParseDuration(v)
		if p := vars[k]; p != nil && err == nil {
			*p = d
			continue
		}
		fmt.Fprintf(os.Stderr, "PEERLINE_TESTHOOK_LAZY: %q is not one of parkCheck, parkNever, parkIdle, sessionLife, keepaliveIdle = a duration\n", kv)
		os.Exit(2)
	}
}

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
