//go:build linux && lab

package wgtunnel

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/peerline/peerline/pkg/labtest"
)

// TestUAPIPastInotifyLimit opens more UAPI listeners than the default
// per-user inotify limit (128) allows watches: wireguard-go's own
// listener took one inotify instance each, and tunnels past about 124
// failed with "too many open files". Every socket must open, answer a
// connection, and be gone once its listener closes.
func TestUAPIPastInotifyLimit(t *testing.T) {
	labtest.RequireRoot(t)
	const n = 300
	var names []string
	var ls []net.Listener
	for i := range n {
		name := fmt.Sprintf("plt%d-%d", os.Getpid(), i)
		l, err := listenUAPI(name)
		if err != nil {
			t.Fatalf("listener %d of %d: %v", i+1, n, err)
		}
		t.Cleanup(func() { l.Close() })
		names = append(names, name)
		ls = append(ls, l)
	}
	sock := func(name string) string { return filepath.Join("/var/run/wireguard", name+".sock") }
	for _, name := range []string{names[0], names[n-1]} {
		if _, err := os.Stat(sock(name)); err != nil {
			t.Errorf("socket of %s: %v", name, err)
		}
	}
	last := ls[n-1]
	accepted := make(chan error, 1)
	go func() {
		c, err := last.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	c, err := net.Dial("unix", sock(names[n-1]))
	if err != nil {
		t.Fatalf("connecting to the last socket: %v", err)
	}
	c.Close()
	if err := <-accepted; err != nil {
		t.Fatalf("the last listener did not accept: %v", err)
	}
	ls[0].Close()
	if _, err := os.Stat(sock(names[0])); !os.IsNotExist(err) {
		t.Errorf("socket of %s after Close: %v, want it removed", names[0], err)
	}
}
