package supervisor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/maphash"
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
	// buf and enc are kept: a 253-peer status is about a megabyte, which
	// encoding afresh every interval made a good part of an idle node's
	// garbage. The file is compact JSON (no indenting pass and no second
	// buffer for it); `jq . status.json` shows it indented.
	buf bytes.Buffer
	enc *json.Encoder
	// head is a hash of the last written file up to its "updated" field
	// (a copy would be another megabyte kept), at when. A collision
	// delays a rewrite until the next change or statusFresh.
	head uint64
	seed maphash.Seed
	at   time.Time

	writeFile func(path string, data []byte, perm os.FileMode) error
}

func newStatusWriter(path string) *statusWriter {
	w := &statusWriter{path: path, seed: maphash.MakeSeed(), writeFile: atomicfile.WriteFile}
	w.enc = json.NewEncoder(&w.buf)
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
	// The encoder writes fields in order, Updated and Runtime last; a
	// key's quotes inside a string value would be escaped, so the last
	// `,"updated":` is the field's.
	if i := bytes.LastIndex(b, []byte(`,"updated":`)); i >= 0 {
		head = b[:i]
	}
	h := maphash.Bytes(w.seed, head)
	if !w.at.IsZero() && h == w.head && st.Updated.Sub(w.at) < statusFresh {
		if err := os.Chtimes(w.path, st.Updated, st.Updated); err == nil {
			return false, nil
		}
		// Gone or unwritable: write it whole.
	}
	w.at = time.Time{}
	if err := w.writeFile(w.path, b, 0o640); err != nil {
		return false, fmt.Errorf("writing status: %w", err)
	}
	// The modification time is the status's own, as after a touch, so
	// that Updated never says later than the status was taken.
	os.Chtimes(w.path, st.Updated, st.Updated)
	w.head, w.at = h, st.Updated
	return true, nil
}
