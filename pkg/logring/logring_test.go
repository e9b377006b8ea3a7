package logring

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

func TestRingKeepsLastWarnings(t *testing.T) {
	var out bytes.Buffer
	h := New(slog.NewTextHandler(&out, nil), 3, slog.LevelWarn)
	log := slog.New(h).With("node", "a")
	log.Info("hello")
	for i := range 5 {
		log.Warn("trouble", "n", i)
	}
	log.WithGroup("g").Error("bad", "err", "x")
	got := h.Ring().Lines()
	if len(got) != 3 {
		t.Fatalf("Lines() = %d lines, want 3", len(got))
	}
	want := []string{`msg=trouble node=a n=3`, `msg=trouble node=a n=4`, `msg=bad node=a g.err=x`}
	for i, w := range want {
		if got[i].Text != w {
			t.Errorf("line %d = %q, want %q", i, got[i].Text, w)
		}
	}
	if !strings.Contains(out.String(), "msg=hello") || strings.Count(out.String(), "\n") != 7 {
		t.Errorf("next handler got %q, want all 7 records", out.String())
	}
}

func TestRingConcurrentAndBounded(t *testing.T) {
	h := New(slog.DiscardHandler, 10, slog.LevelWarn)
	log := slog.New(h)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				log.Warn(fmt.Sprint(g, i), "big", strings.Repeat("x", 5000))
			}
		}()
	}
	wg.Wait()
	lines := h.Ring().Lines()
	if len(lines) != 10 {
		t.Fatalf("Lines() = %d, want 10", len(lines))
	}
	for _, l := range lines {
		if len(l.Text) > maxLine+len("…") {
			t.Errorf("line of %d bytes kept, want at most %d", len(l.Text), maxLine)
		}
	}
}
