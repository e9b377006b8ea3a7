// Package logring keeps the daemon's recent warnings and errors in memory,
// so that the web console can show them to an owner who has no shell to
// read the journal with. It is a slog.Handler that passes every record on to
// the real handler and copies those at or above a level into a fixed-size
// ring: memory stays bounded however noisy the daemon gets.
package logring

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"time"
)

// Line is one kept record, formatted as the journal shows it.
type Line struct {
	Time  time.Time  `json:"time"`
	Level slog.Level `json:"level"`
	Text  string     `json:"text"`
}

// maxLine bounds one kept line; a record carrying a whole packet dump must
// not fill the ring's memory.
const maxLine = 2 << 10

// Ring is the shared store behind every handler derived from one New.
type Ring struct {
	mu    sync.Mutex
	lines []Line // ring buffer, len == cap once full
	next  int    // where the next line goes once full
	full  bool
}

// Handler tees records into a Ring.
type Handler struct {
	next  slog.Handler
	ring  *Ring
	level slog.Leveler
	// format renders kept records; its own attrs and groups follow With*.
	format slog.Handler
	buf    *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) { return l.b.Write(p) }

// New returns a handler passing records to next and keeping the last size
// records at level or above in its Ring.
func New(next slog.Handler, size int, level slog.Leveler) *Handler {
	buf := &lockedBuffer{}
	return &Handler{
		next:   next,
		ring:   &Ring{lines: make([]Line, 0, size)},
		level:  level,
		buf:    buf,
		format: slog.NewTextHandler(buf, &slog.HandlerOptions{Level: level, ReplaceAttr: dropTime}),
	}
}

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey) {
		return slog.Attr{}
	}
	return a
}

// Ring returns the store the handler keeps lines in.
func (h *Handler) Ring() *Ring { return h.ring }

// Enabled reports whether either the next handler or the ring wants level.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level.Level() || h.next.Enabled(ctx, l)
}

// Handle passes r on and keeps a copy if it is at the ring's level.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if h.next.Enabled(ctx, r.Level) {
		err = h.next.Handle(ctx, r)
	}
	if r.Level >= h.level.Level() {
		h.buf.mu.Lock()
		h.buf.b.Reset()
		h.format.Handle(ctx, r)
		text := bytes.TrimRight(h.buf.b.Bytes(), "\n")
		if len(text) > maxLine {
			text = append(text[:maxLine:maxLine], "…"...)
		}
		line := Line{Time: r.Time, Level: r.Level, Text: string(text)}
		h.buf.mu.Unlock()
		h.ring.add(line)
	}
	return err
}

// WithAttrs returns a handler adding attrs to both outputs.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(attrs)
	c.format = h.format.WithAttrs(attrs)
	return &c
}

// WithGroup returns a handler grouping later attrs in both outputs.
func (h *Handler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	c.format = h.format.WithGroup(name)
	return &c
}

func (r *Ring) add(l Line) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.lines) < cap(r.lines) {
		r.lines = append(r.lines, l)
		return
	}
	if cap(r.lines) == 0 {
		return
	}
	r.lines[r.next] = l
	r.next = (r.next + 1) % len(r.lines)
	r.full = true
}

// Lines returns the kept lines, oldest first.
func (r *Ring) Lines() []Line {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Line, 0, len(r.lines))
	if r.full {
		out = append(out, r.lines[r.next:]...)
		out = append(out, r.lines[:r.next]...)
		return out
	}
	return append(out, r.lines...)
}
