package supervisor

import (
	"os"
	"path/filepath"
	"testing"
)

// TestStatusFileMode: status.json names the peers and their endpoints, so
// only the daemon's user and group may read it (issue 13 item 8), like the
// control socket (0660) through which `peerline status` gets the same data.
func TestStatusFileMode(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig(t)
	h.start(cfg)
	defer h.stop()
	fi, err := os.Stat(filepath.Join(cfg.RunDir, statusFile))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fi.Mode().Perm(), os.FileMode(0o640); got != want {
		t.Errorf("status.json mode = %v, want %v (nothing for others)", got, want)
	}
}
