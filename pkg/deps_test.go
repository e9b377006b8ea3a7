package pkg_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The leaves of the package tree parse untrusted bytes or do arithmetic the
// packet path depends on; they stay pure (standard library only) so they can
// be fuzzed, reasoned about and reused without dragging in the kernel.
func TestPureLeaves(t *testing.T) {
	leaves := []string{"numplan", "sipmsg", "config", "atomicfile", "nodekey", "rendezvous", "invite", "dialplan", "privacy", "trunkconfig"}
	// Modules a pure leaf may use besides the standard library.
	allowed := map[string]bool{
		"github.com/peerline/peerline/pkg/numplan":     true,
		"github.com/peerline/peerline/pkg/atomicfile":  true,
		"github.com/peerline/peerline/pkg/nodekey":     true,
		"github.com/peerline/peerline/pkg/dialplan":    true,
		"github.com/peerline/peerline/pkg/privacy":     true,
		"github.com/peerline/peerline/pkg/trunkconfig": true,
		"golang.org/x/crypto/curve25519":               true,
		"golang.org/x/crypto/chacha20":                 true,
		"golang.org/x/crypto/chacha20poly1305":         true,
		"golang.org/x/crypto/hkdf":                     true,
	}
	for _, leaf := range leaves {
		pkg := "github.com/peerline/peerline/pkg/" + leaf
		out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep == pkg || allowed[dep] || strings.HasPrefix(dep, "golang.org/x/crypto/internal") || strings.HasPrefix(dep, "golang.org/x/sys/cpu") {
				continue
			}
			t.Errorf("%s imports %s; leaves must stay pure (standard library only)", leaf, dep)
		}
	}
}
