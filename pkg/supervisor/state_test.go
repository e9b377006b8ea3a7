package supervisor

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/peerline/peerline/pkg/atomicfile"
	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/nodekey"
)

// TestStateSavedInBackground: startSaveState returns at once and its wait
// once the write is done, so that a reconcile building a peer meanwhile
// pays for the slower of the two, not both; an unchanged state is not
// written again, a changed one is.
func TestStateSavedInBackground(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const fsync = 40 * time.Millisecond
		var writes atomic.Int32
		var last []byte
		s := &Supervisor{
			cfg:   &config.Config{PhonePort: "eth0", StateDir: t.TempDir()},
			log:   testLog(t),
			peers: map[int]*peer{7: {cfg: config.Peer{Index: 7, PublicKey: testKey.Public()}}},
			lines: []int{1},
			writeState: func(_ string, b []byte, _ os.FileMode) error {
				time.Sleep(fsync)
				writes.Add(1)
				last = b
				return nil
			},
		}
		start := time.Now()
		wait := s.startSaveState()
		if d := time.Since(start); d != 0 {
			t.Errorf("startSaveState took %v; want it to return before the write", d)
		}
		// The build of a peer, as long as the write.
		time.Sleep(fsync)
		wait()
		if d := time.Since(start); d != fsync {
			t.Errorf("a build and a save of %v each took %v together; want %v", fsync, d, fsync)
		}
		if writes.Load() != 1 || !bytes.Contains(last, []byte(`"index": 7`)) {
			t.Fatalf("writes = %d, last = %s; want one write listing peer 7", writes.Load(), last)
		}
		s.saveState()
		if writes.Load() != 1 {
			t.Errorf("an unchanged state was written again (%d writes)", writes.Load())
		}
		k, _ := nodekey.Generate()
		s.peers[11] = &peer{cfg: config.Peer{Index: 11, PublicKey: k.Public()}}
		s.saveState()
		if writes.Load() != 2 || !bytes.Contains(last, []byte(`"index": 11`)) {
			t.Errorf("writes = %d, last = %s; want a second write listing peer 11", writes.Load(), last)
		}
		// A failed write is tried again at the next save.
		s.writeState = func(string, []byte, os.FileMode) error { return os.ErrPermission }
		delete(s.peers, 11)
		s.saveState()
		s.writeState = func(_ string, b []byte, _ os.FileMode) error { writes.Add(1); last = b; return nil }
		s.saveState()
		if writes.Load() != 3 || bytes.Contains(last, []byte(`"index": 11`)) {
			t.Errorf("writes = %d, last = %s; want the state without peer 11 written after a failed write", writes.Load(), last)
		}
	})
}

// TestStateOnDiskBeforeStatus: whenever the status file shows a peer added
// or removed by a reload, the state file on disk already says so (a
// restart after a crash at any moment removes what a later config drops).
func TestStateOnDiskBeforeStatus(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig(t)
	h.start(cfg)
	statePeers := func() []int {
		st, err := loadState(cfg.StateDir)
		if err != nil || st == nil {
			t.Errorf("reading the state file: %v", err)
			return nil
		}
		var is []int
		for _, p := range st.Peers {
			is = append(is, p.Index)
		}
		return is
	}
	var checked atomic.Int32
	h.sup.Do(t.Context(), func() {
		w := h.sup.statusFile
		w.writeFile = func(path string, b []byte, perm os.FileMode) error {
			var shown []int
			for _, i := range []int{7, 9, 11} {
				// The file is compact JSON (statusfile.go).
				if bytes.Contains(b, fmt.Appendf(nil, `"device":"pl%d"`, i)) {
					shown = append(shown, i)
				}
			}
			if got := statePeers(); !slices.Equal(got, shown) {
				t.Errorf("status shows peers %v while the state file lists %v", shown, got)
			}
			checked.Add(1)
			return atomicfile.WriteFile(path, b, perm)
		}
	})
	k, _ := nodekey.Generate()
	added := *cfg
	added.Peers = append(slices.Clone(cfg.Peers), config.Peer{Index: 11, Name: "dave", PublicKey: k.Public(), Endpoint: "198.51.100.11:51820"})
	h.reload <- &added
	h.sup.Do(t.Context(), func() {})
	h.reload <- cfg
	h.sup.Do(t.Context(), func() {})
	if checked.Load() < 2 {
		t.Errorf("%d status writes checked; want one per reload at least", checked.Load())
	}
	if got := statePeers(); !slices.Equal(got, []int{7, 9}) {
		t.Errorf("state after the removal lists %v; want [7 9]", got)
	}
	if _, err := os.Stat(filepath.Join(cfg.RunDir, statusFile)); err != nil {
		t.Error(err)
	}
	h.stop()
}
