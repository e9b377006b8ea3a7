package supervisor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/peerline/peerline/pkg/atomicfile"
)

// statusFresh is how long status.json's runtime figures (heap,
// goroutines) may go without a rewrite while nothing else changed.
const statusFresh = 30 * time.Second

// statusWriter writes status.json when what it says changed: at every
// status interval the daemon encodes its status again (into a buffer it
// keeps), and rewrites the file only if anything before "updated" differs
// from the last one written, or its runtime figures are statusFresh old.
// Otherwise it only sets the file's modification time to the status's
// time, which ReadStatus reports as Updated: a reader waiting for a status
// taken after some moment (the lab's counters) gets one at the next
// interval either way. An idle node with hundreds of peers thus encodes
// once per interval and writes nothing.
type statusWriter struct {
	path string
	buf  bytes.Buffer
	enc  *json.Encoder
	// head is the last written file up to its "updated" field, at when.
	head []byte
	at   time.Time

	writeFile func(path string, data []byte, perm os.FileMode) error
	chtimes   func(path string, atime, mtime time.Time) error
}

func newStatusWriter(path string) *statusWriter {
	w := &statusWriter{path: path, writeFile: atomicfile.WriteFile, chtimes: os.Chtimes}
	w.enc = json.NewEncoder(&w.buf)
	w.enc.SetIndent("", "  ")
	return w
}

// write records st; wrote says whether the file was rewritten.
func (w *statusWriter) write(st *Status) (wrote bool, err error) {
	w.buf.Reset()
	if err := w.enc.Encode(st); err != nil {
		return false, fmt.Errorf("encoding status: %w", err)
	}
	b := w.buf.Bytes()
	head := b
	// The encoder writes fields in order, Updated and Runtime last, each
	// top-level field on a line of its own indented by two spaces; no
	// string holds a raw newline.
	if i := bytes.LastIndex(b, []byte("\n  \"updated\": ")); i >= 0 {
		head = b[:i]
	}
	if w.head != nil && bytes.Equal(head, w.head) && st.Updated.Sub(w.at) < statusFresh {
		if err := w.chtimes(w.path, st.Updated, st.Updated); err == nil {
			return false, nil
		}
		// Gone or unwritable: write it whole.
	}
	w.head = w.head[:0]
	if err := w.writeFile(w.path, b, 0o640); err != nil {
		return false, fmt.Errorf("writing status: %w", err)
	}
	// The modification time is the status's own, as after a touch, so
	// that Updated never says later than the status was taken.
	w.chtimes(w.path, st.Updated, st.Updated)
	w.head = append(w.head, head...)
	w.at = st.Updated
	return true, nil
}
