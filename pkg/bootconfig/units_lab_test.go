//go:build linux && lab

package bootconfig

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/labtest"
)

// unitFiles are the units this package's boot step belongs with.
var unitFiles = []string{"peerlined.service", "peerline-boot.service"}

// TestUnitsVerify runs `systemd-analyze verify` on the units, with their
// /usr/bin/peerlined pointing at a freshly built daemon (verify checks that
// every command exists and is executable). verify reports unknown keys and
// values it cannot parse as warnings and still exits 0, so any output at all
// fails the test. It needs no root; it is a lab test because it needs
// systemd-analyze (and /bin/kill, which peerlined.service reloads with) and
// builds the daemon.
func TestUnitsVerify(t *testing.T) {
	labtest.RequireTools(t, "systemd-analyze", "/bin/kill") // peerlined.service's ExecReload
	bin := os.Getenv("PEERLINED")
	dir := t.TempDir()
	if bin == "" {
		bin = filepath.Join(dir, "peerlined")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/peerline/peerline/cmd/peerlined").CombinedOutput()
		if err != nil {
			t.Fatalf("building peerlined: %v\n%s", err, out)
		}
	}
	var paths []string
	for _, name := range unitFiles {
		b, err := os.ReadFile(filepath.Join("..", "..", "systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "/usr/bin/peerlined ") {
			t.Fatalf("%s does not run /usr/bin/peerlined", name)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), "/usr/bin/peerlined ", bin+" ")), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "systemd-analyze", append([]string{"verify", "--man=no"}, paths...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify %s: %v\n%s", strings.Join(unitFiles, " "), err, out)
	}
}

// TestUnitsVerifyCatchesErrors makes sure the check above can fail: a typo
// in a key and a missing binary must both be reported.
func TestUnitsVerifyCatchesErrors(t *testing.T) {
	labtest.RequireTools(t, "systemd-analyze")
	dir := t.TempDir()
	for _, tc := range []struct{ name, unit string }{
		{"typo", "[Service]\nType=oneshot\nExecStart=/bin/true\nWatchdogSecc=30s\n"},
		{"missing binary", "[Service]\nType=oneshot\nExecStart=/nonexistent/peerlined\n"},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".service")
		if err := os.WriteFile(p, []byte(tc.unit), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("systemd-analyze", "verify", "--man=no", p).CombinedOutput()
		if err == nil && len(strings.TrimSpace(string(out))) == 0 {
			t.Errorf("%s: systemd-analyze verify reported nothing", tc.name)
		}
	}
}
