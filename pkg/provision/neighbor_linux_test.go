package provision

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestUsableNeighbor(t *testing.T) {
	tests := []struct {
		name  string
		state int
		want  bool
	}{
		{"reachable", unix.NUD_REACHABLE, true},
		{"stale", unix.NUD_STALE, true},
		{"delay", unix.NUD_DELAY, true},
		{"probe", unix.NUD_PROBE, true},
		{"permanent", unix.NUD_PERMANENT, true},
		{"incomplete", unix.NUD_INCOMPLETE, false},
		{"failed", unix.NUD_FAILED, false},
		{"noarp", unix.NUD_NOARP, false},
		{"none", unix.NUD_NONE, false},
	}
	for _, tt := range tests {
		if got := usableNeighbor(tt.state); got != tt.want {
			t.Errorf("usableNeighbor(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
}
