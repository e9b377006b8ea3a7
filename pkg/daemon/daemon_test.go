package daemon

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/peerline/peerline/pkg/control"
)

// The flags are checked through a real process, as a user and systemd see
// them: the exit status and what is printed.
func runPeerlined(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestHelperMain$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), "PEERLINED_HELPER=1")
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// TestHelperMain is peerlined's main when run by runPeerlined.
func TestHelperMain(t *testing.T) {
	if os.Getenv("PEERLINED_HELPER") != "1" {
		t.Skip("helper process for the flag tests")
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	if err := Main(context.Background(), args, "test"); err != nil {
		os.Stderr.WriteString("peerlined: " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Exit(0)
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "peerlined.json")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFlags(t *testing.T) {
	dir := t.TempDir()
	good := writeConfig(t, `{"name": "bob", "phone_port": "eth0", "lines": [1], "state_dir": "`+dir+`/state", "run_dir": "`+dir+`/run", "peers": []}`)
	bad := writeConfig(t, `{"name": "bob", "phone_port": "eth0", "lines": [300], "peers": []}`)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"check good config", []string{"-config", good, "-check-config"}, 0, "ok (0 peers, 1 lines"},
		{"check bad config names the problem", []string{"-config", bad, "-check-config"}, 1, "lines: 300 is not a line number"},
		{"missing config says what to do", []string{"-config", filepath.Join(dir, "nope.json"), "-check-config"}, 1, "does not exist: pass -config"},
		{"stray argument", []string{"-config", good, "start"}, 1, `unexpected argument "start"`},
		{"unknown flag", []string{"-frobnicate"}, 1, "flag provided but not defined"},
		{"version", []string{"-version"}, 0, "peerlined test"},
		{"public key is made once and printed", []string{"-config", good, "-public-key"}, 0, "="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := runPeerlined(t, tt.args...)
			if code != tt.wantCode || !strings.Contains(out, tt.wantOut) {
				t.Errorf("peerlined %v: exit %d, output %q; want exit %d and %q", tt.args, code, out, tt.wantCode, tt.wantOut)
			}
		})
	}
	first, _ := runPeerlined(t, "-config", good, "-public-key")
	second, _ := runPeerlined(t, "-config", good, "-public-key")
	if first != second || len(strings.TrimSpace(first)) != 44 {
		t.Errorf("-public-key printed %q then %q; want the same 44-character key twice", first, second)
	}
	if fi, err := os.Stat(filepath.Join(dir, "state", "node.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("node key file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
}

// TestSecondDaemonRefused: peerlined started while another holds the run
// directory exits at once, saying what to do, before it makes the state
// directory or the control socket (and so before any port is bound: those
// come after both); -cleanup is refused alike.
func TestSecondDaemonRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, `{"name": "bob", "phone_port": "eth0", "lines": [1], "state_dir": "`+dir+`/state", "run_dir": "`+dir+`/run", "peers": []}`)
	if err := os.MkdirAll(filepath.Join(dir, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The first daemon, as far as the lock tells: the flock and its pid.
	lock, err := os.OpenFile(filepath.Join(dir, "run", "peerlined.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	lock.WriteString("4242\n")
	for _, args := range [][]string{{"-config", cfg}, {"-config", cfg, "-cleanup"}} {
		out, code := runPeerlined(t, args...)
		if code != 1 || !strings.Contains(out, "another peerlined with this prefix is running (pid 4242") || !strings.Contains(out, "stop it first (systemctl stop peerlined)") {
			t.Errorf("peerlined %v with the run directory locked: exit %d, output %q; want exit 1 naming pid 4242 and saying to stop it first", args, code, out)
		}
	}
	for _, p := range []string{filepath.Join(dir, "state"), filepath.Join(dir, "run", control.SocketName)} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after a refused start: %v; want it not made", p, err)
		}
	}
}
