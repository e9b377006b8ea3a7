package labtest

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestToolsMessage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		missing []string
		want    string
	}{
		{"one", []string{"systemd-analyze"},
			"lab test needs systemd-analyze (package systemd): apt-get install systemd, or sudo make deps, which installs everything the tests use"},
		{"path", []string{"/bin/kill"},
			"lab test needs /bin/kill (package procps): apt-get install procps, or sudo make deps, which installs everything the tests use"},
		{"one package twice", []string{"ip", "ss", "sox"},
			"lab test needs ip (package iproute2), ss (package iproute2), sox (package sox): apt-get install iproute2 sox, or sudo make deps, which installs everything the tests use"},
		{"unknown tool", []string{"frobnicate"},
			"lab test needs frobnicate: install it and put it in PATH"},
	} {
		if got := toolsMessage(tc.missing); got != tc.want {
			t.Errorf("%s: toolsMessage(%q) =\n%q\nwant\n%q", tc.name, tc.missing, got, tc.want)
		}
	}
}

// TestToolPackagesCoverCallers: every tool a test in the repository asks
// for with RequireTools has its package here, so no "needs X" message lacks
// the package to install.
func TestToolPackagesCoverCallers(t *testing.T) {
	call := regexp.MustCompile(`RequireTools\(\w+((?:, "[^"]+")+)\)`)
	arg := regexp.MustCompile(`"([^"]+)"`)
	n := 0
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range call.FindAllSubmatch(b, -1) {
			for _, a := range arg.FindAllSubmatch(m[1], -1) {
				n++
				if toolPackages[string(a[1])] == "" {
					t.Errorf("%s asks for %s, which toolPackages has no package for", path, a[1])
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Errorf("found only %d RequireTools arguments under pkg/; is the pattern stale?", n)
	}
}
