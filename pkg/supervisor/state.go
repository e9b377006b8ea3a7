package supervisor

import (
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

func (s *Supervisor) saveState() {
	st := &state{PhonePort: s.cfg.PhonePort, Lines: s.lines}
	for _, i := range slices.Sorted(maps.Keys(s.peers)) {
		st.Peers = append(st.Peers, statePeer{Index: i, PublicKey: s.peers[i].cfg.PublicKey})
	}
	if err := saveStateFile(s.cfg.StateDir, st); err != nil {
		s.log.Error("saving state", "err", err)
	}
}

func saveStateFile(dir string, st *state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, stateFile), append(b, '\n'), 0o600)
}
