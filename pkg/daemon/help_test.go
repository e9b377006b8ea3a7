package daemon

import (
	"regexp"
	"strings"
	"testing"
)

// TestHelp: -h lists every flag, each with a plain argument name where it
// takes one (flag takes the name from back-quoted words in the text, which
// once turned a quoted command into the argument's name).
func TestHelp(t *testing.T) {
	out, code := runPeerlined(t, "-h")
	if code != 0 {
		t.Fatalf("peerlined -h: exit %d, want 0\n%s", code, out)
	}
	for _, want := range []string{"\n  -config file\n", "\n  -boot-config file\n", "\n  -boot-config-error file\n", "\n  -check-config\n", "\n  -public-key\n", "\n  -cleanup\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("peerlined -h lacks %q:\n%s", want, out)
		}
	}
	// A flag line is "  -name" and at most one argument word.
	flagLine := regexp.MustCompile(`^  -[a-z-]+( [a-z]+)?$`)
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "  -") && !flagLine.MatchString(strings.SplitN(line, "\t", 2)[0]) {
			t.Errorf("garbled flag line %q", line)
		}
	}
}
