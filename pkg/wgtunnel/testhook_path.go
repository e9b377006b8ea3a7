package wgtunnel

import (
	"fmt"
	"os"
	"path/filepath"
)

// TestHookFile is where the test hook of process pid reads the instant at
// which to rekey (testhook.go, built only with the tag peerline_testhook).
func TestHookFile(pid int) string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("peerline-testhook-%d", pid))
}
