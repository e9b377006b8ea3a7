package lab

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func contextWithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

func TestStaleNamespaces(t *testing.T) {
	list := []string{
		"plt-100-0 (id: 3)",
		"plt-100-1",
		"plt-200-0 (id: 4)",
		"pl-peer-7 (id: 5)", // the daemon's, never ours to touch
		"plt-300",           // not a lab name
		"plt-x-1",
		"plt-400-x",
		"other",
		"",
	}
	alive := func(pid int) bool { return pid == 200 }
	got := StaleNamespaces(list, alive)
	want := []string{"plt-100-0", "plt-100-1"}
	if !slices.Equal(got, want) {
		t.Errorf("StaleNamespaces() = %q, want %q", got, want)
	}
}

func TestSafeName(t *testing.T) {
	if got, want := safeName("piA/phone 1:x"), "piA_phone_1_x"; got != want {
		t.Errorf("safeName() = %q, want %q", got, want)
	}
}

func TestNFTPackets(t *testing.T) {
	listing := `table ip labpmtu {
	chain out {
		type filter hook output priority filter; policy accept;
		icmp type destination-unreachable icmp code frag-needed counter packets 6 bytes 3360 drop
	}
}`
	if got := nftPackets(listing); got != 6 {
		t.Errorf("nftPackets = %d, want 6", got)
	}
	if got := nftPackets("counter packets x bytes 0"); got != 0 {
		t.Errorf("nftPackets of a garbled listing = %d, want 0", got)
	}
}
