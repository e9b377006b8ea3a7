package cli

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestCommandHelp: `peerline CMD --help` shows the command's arguments from
// the usage text and succeeds, without asking the daemon anything.
func TestCommandHelp(t *testing.T) {
	for _, tc := range []struct{ cmd, want string }{
		{"join", "  peerline join CODE "},
		{"ping", "  peerline ping PEER "},
		{"remove", "  peerline remove PEER "},
		{"phones forget", "  peerline phones forget LINE "},
		{"invite", "  peerline invite --list "},
		{"status", "  peerline status "},
		{"peers", "  peerline peers "},
		{"calls", "  peerline calls "},
	} {
		lines := commandLines(tc.cmd)
		if !strings.Contains(lines, tc.want) {
			t.Errorf("commandLines(%q) = %q, want it to contain %q", tc.cmd, lines, tc.want)
		}
		args := append([]string{"-socket", "/nonexistent/control.sock"}, strings.Fields(tc.cmd)...)
		if err := Main(context.Background(), append(args, "--help"), io.Discard, "test"); err != nil {
			t.Errorf("peerline %s --help = %v, want nil", tc.cmd, err)
		}
	}
	if got := commandLines("join"); strings.Contains(got, "invite") {
		t.Errorf("commandLines(join) = %q, has other commands' lines", got)
	}
}
