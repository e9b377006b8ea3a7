package supervisor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/peerline/peerline/pkg/atomicfile"
	"github.com/peerline/peerline/pkg/nodekey"
)

// state is what was applied, kept in the state directory so that a restart
// with a changed config can remove what the old one made.
type state struct {
	PhonePort string      `json:"phone_port"`
	Lines     []int       `json:"lines"`
	Peers     []statePeer `json:"peers"`
}

type statePeer struct {
	Index     int         `json:"index"`
	PublicKey nodekey.Key `json:"public_key"`
}

const stateFile = "applied.json"

func loadState(dir string) (*state, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("state file %s: %w", stateFile, err)
	}
	return &st, nil
}

// saveState writes what is applied now to the state file and returns once
// it is on disk.
func (s *Supervisor) saveState() { s.startSaveState()() }

// startSaveState writes what is applied now (s.peers, s.lines) to the state
// file in the background and returns a wait that returns once it is on
// disk (or failed, which is logged); Run's goroutine calls the wait before
// it reports anything that depends on the state (a status showing the
// change) and before the next save. A state equal to the last one written
// is not written again: a periodic check with nothing changed costs no
// fsync (a state file deleted by hand meanwhile comes back at the next
// change; leftovers are found by name in any case).
//
// Reconcile starts the save as soon as the peers it is about to build are
// in s.peers, so that it runs while they are built instead of after: a
// state listing a peer before its namespace exists is what a restart
// after a crash needs (it removes whatever the state lists and the config
// no longer does, and removing what was never built is a no-op).
func (s *Supervisor) startSaveState() (wait func()) {
	st := &state{PhonePort: s.cfg.PhonePort, Lines: slices.Clone(s.lines)}
	for _, i := range slices.Sorted(maps.Keys(s.peers)) {
		st.Peers = append(st.Peers, statePeer{Index: i, PublicKey: s.peers[i].cfg.PublicKey})
	}
	b, err := encodeState(st)
	if err != nil {
		s.log.Error("saving state", "err", err)
		return func() {}
	}
	if s.stateSaved != nil && bytes.Equal(b, s.stateSaved) {
		return func() {}
	}
	write := s.writeState
	if write == nil {
		write = atomicfile.WriteFile
	}
	path := filepath.Join(s.cfg.StateDir, stateFile)
	done := make(chan error, 1)
	go func() { done <- write(path, b, 0o600) }()
	return func() {
		if err := <-done; err != nil {
			s.log.Error("saving state", "err", err)
			s.stateSaved = nil
			return
		}
		s.stateSaved = b
	}
}

func encodeState(st *state) ([]byte, error) {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func saveStateFile(dir string, st *state) error {
	b, err := encodeState(st)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, stateFile), b, 0o600)
}
