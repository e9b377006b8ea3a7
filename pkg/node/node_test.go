package node

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/control"
)

func testConfig(t *testing.T) *config.Config {
	t.Helper()
	dir := t.TempDir()
	c := &config.Config{
		Name:      "bob",
		Prefix:    "pl",
		StateDir:  filepath.Join(dir, "state"),
		RunDir:    filepath.Join(dir, "run"),
		PhonePort: "eth0",
		Lines:     []int{1},
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestLockComesFirst: while another daemon holds the run directory's lock,
// Run and Cleanup refuse before anything else: no state directory, no node
// key, no control socket, nothing bound, and the error says what to do.
func TestLockComesFirst(t *testing.T) {
	cfg := testConfig(t)
	unlock, err := lockRunDir(cfg.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	log := slog.New(slog.DiscardHandler)
	err = Run(context.Background(), Options{Config: cfg, ConfigPath: filepath.Join(t.TempDir(), "peerlined.json"), Reload: make(chan *config.Config), Log: log})
	if !errors.Is(err, ErrAlreadyRunning) || !strings.Contains(err.Error(), "stop it first") || !strings.Contains(err.Error(), filepath.Join(cfg.RunDir, lockFile)) {
		t.Errorf("second Run = %v; want ErrAlreadyRunning naming the lock and saying to stop the other first", err)
	}
	if err := Cleanup(cfg, log); !errors.Is(err, ErrAlreadyRunning) || !strings.Contains(err.Error(), "stop it first") {
		t.Errorf("Cleanup while running = %v; want ErrAlreadyRunning saying to stop it first", err)
	}
	for _, p := range []string{cfg.StateDir, cfg.PrivateKeyFile, control.SocketPath(cfg.RunDir)} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after a refused start: %v; want it not made", p, err)
		}
	}
}

// TestLockReleased: the lock goes with its holder, so the next daemon
// starts; and the holder's pid is in the file for the message.
func TestLockReleased(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	unlock, err := lockRunDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockRunDir(dir); !errors.Is(err, ErrAlreadyRunning) || !strings.Contains(err.Error(), "pid ") {
		t.Errorf("second lock = %v; want ErrAlreadyRunning with the holder's pid", err)
	}
	unlock()
	unlock2, err := lockRunDir(dir)
	if err != nil {
		t.Fatalf("lock after unlock = %v; want it free", err)
	}
	unlock2()
}

// TestOpenState: the state directory is made with the key in it, owner
// only, and the same key comes back on the next start.
func TestOpenState(t *testing.T) {
	cfg := testConfig(t)
	k1, created, err := openState(cfg)
	if err != nil || !created {
		t.Fatalf("first openState = %v, created %v; want a new key", err, created)
	}
	if fi, err := os.Stat(cfg.StateDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state directory: %v, mode %v; want 0700", err, fi.Mode().Perm())
	}
	k2, created, err := openState(cfg)
	if err != nil || created || k1 != k2 {
		t.Errorf("second openState = %v, created %v, same key %v; want the first key again", err, created, k1 == k2)
	}
	pub, err := PublicKey(cfg)
	if err != nil || pub != k1.Public() {
		t.Errorf("PublicKey = %v, %v; want %v", pub, err, k1.Public())
	}
}
