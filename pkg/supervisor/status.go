package supervisor

import (
	"encoding/json"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/peerpath"
	"github.com/peerline/peerline/pkg/rewrite"
)

const statusFile = "status.json"

// Status is the daemon's view of the node, written to <run_dir>/status.json
// for the CLI, the lab and people debugging, until the control socket comes.
type Status struct {
	Name      string `json:"name"`
	PID       int    `json:"pid"`
	PublicKey string `json:"public_key"`
	Ready     bool   `json:"ready"`
	Lines     []int  `json:"lines"`
	// ActiveLines are the lines whose phones sent or got media through a
	// tunnel in the last status interval: in a call with a peer. Calls
	// between two phones of this node do not cross a tunnel and are not
	// seen here.
	ActiveLines []int `json:"active_lines"`
	// NATClass is this node's own NAT mapping as the rendezvous servers
	// saw it: "none", "cone", "symmetric", or "" before any answered.
	NATClass string       `json:"nat_class,omitempty"`
	Peers    []PeerStatus `json:"peers"`
	// Updated is when the status was taken. The file is rewritten only
	// when anything above changed, or Runtime is 30 s old; in between,
	// its modification time says when it was last found current, and
	// ReadStatus gives that as Updated. Updated and Runtime stay the last
	// fields (statusWriter compares what comes before them).
	Updated time.Time `json:"updated"`
	// Runtime is the daemon's memory and goroutine figures.
	Runtime *RuntimeStatus `json:"runtime,omitempty"`
}

// PeerStatus is one tunnel's state.
type PeerStatus struct {
	Index  int    `json:"index"`
	Name   string `json:"name,omitempty"`
	Device string `json:"device"`
	Up     bool   `json:"up"`
	// Parked: the tunnel is up but its WireGuard device is closed until
	// the peer is used (pkg/wgtunnel, lazy devices).
	Parked   bool   `json:"parked,omitempty"`
	Error    string `json:"error,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
	// MTU is the largest packet the tunnel carries to the peer; the
	// rewriter fragments larger ones (docs/mtu.md).
	MTU int `json:"mtu,omitempty"`
	// Online, Path, PathReason, RTT and NAT are the path manager's view
	// (pkg/peerpath).
	Online     bool          `json:"online"`
	Path       string        `json:"path,omitempty"`
	PathReason string        `json:"path_reason,omitempty"`
	RTT        time.Duration `json:"rtt_ns,omitempty"`
	NAT        string        `json:"nat,omitempty"`
	// Gone: the peer said it was shutting down, or stopped answering
	// probes; a handshake from before then proves nothing.
	Gone          bool           `json:"gone,omitempty"`
	LastHandshake *time.Time     `json:"last_handshake,omitempty"`
	RxBytes       uint64         `json:"rx_bytes"`
	TxBytes       uint64         `json:"tx_bytes"`
	Rewrite       *rewrite.Stats `json:"rewrite,omitempty"`
	// RewriteLatency is the time packets spent in the rewriter (sampled).
	RewriteLatency *rewrite.Latency `json:"rewrite_latency,omitempty"`
}

// ReadStatus reads the status file a daemon with this run directory writes.
func ReadStatus(runDir string) (*Status, error) {
	f, err := os.Open(filepath.Join(runDir, statusFile))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The time and the content come from the same open file: the daemon
	// replaces the file by rename (atomicfile), so a second look by path
	// could pair this content with a newer file's time.
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	// The daemon leaves an unchanged status as it is and only sets the
	// file's time to when it found it still current (statusWriter).
	if fi.ModTime().After(st.Updated) {
		st.Updated = fi.ModTime().UTC()
	}
	return &st, nil
}

// Lines are the lines served as of the last status (every few seconds),
// for callers that must not wait for the supervisor's loop.
func (s *Supervisor) Lines() []int {
	if l := s.linesSnap.Load(); l != nil {
		return *l
	}
	return nil
}

func (s *Supervisor) status() *Status {
	lines := slices.Clone(s.lines)
	s.linesSnap.Store(&lines)
	st := &Status{
		Name:        s.cfg.Name,
		PID:         os.Getpid(),
		PublicKey:   s.key.Public().String(),
		Ready:       s.ready,
		Lines:       s.lines,
		ActiveLines: s.active,
		Updated:     time.Now().UTC(),
		Runtime:     readRuntime(),
		Peers:       make([]PeerStatus, 0, len(s.peers)),
	}
	var paths map[nodekey.Key]peerpath.Status
	if s.paths != nil {
		paths = s.paths.Status()
		st.NATClass = s.paths.NATClass()
	}
	for _, i := range slices.Sorted(maps.Keys(s.peers)) {
		p := s.peers[i]
		ps := PeerStatus{Index: i, Name: p.cfg.Name, Device: s.names.Device(i), Up: p.tunnel != nil && p.err == nil}
		if p.err != nil {
			ps.Error = p.err.Error()
		}
		if p.tunnel != nil {
			if pt, ok := p.tunnel.(parker); ok {
				ps.Parked = pt.Parked()
			}
			if ts, err := p.tunnel.Status(); err == nil {
				ps.Endpoint = ts.Endpoint
				ps.RxBytes, ps.TxBytes = ts.RxBytes, ts.TxBytes
				if !ts.LastHandshake.IsZero() {
					h := ts.LastHandshake.UTC()
					ps.LastHandshake = &h
				}
			}
		}
		if ps.Up {
			if pp, ok := paths[p.cfg.PublicKey]; ok {
				ps.Online, ps.Path, ps.PathReason, ps.RTT, ps.NAT = pp.Online, string(pp.Path), pp.Reason, pp.RTT, pp.NAT
				ps.Gone = pp.Bye || pp.Silent
			}
		}
		if p.rewrite != nil {
			rs, rl := p.rewrite.Stats(), p.rewrite.Latency()
			ps.Rewrite, ps.RewriteLatency = &rs, &rl
			ps.MTU, _ = p.rewrite.MTU()
		}
		st.Peers = append(st.Peers, ps)
	}
	return st
}

func (s *Supervisor) writeStatus() { s.writeStatusOf(s.status()) }

// writeStatusOf writes st, a status taken by s.status.
func (s *Supervisor) writeStatusOf(st *Status) {
	s.limitMemory()
	if s.statusFile == nil {
		s.statusFile = newStatusWriter(filepath.Join(s.cfg.RunDir, statusFile))
	}
	if _, err := s.statusFile.write(st); err != nil {
		s.log.Error("writing status", "err", err)
	}
}

// sampleMedia reads every tunnel's per-line media counters and marks the
// lines whose count grew since the last reading as in a call.
func (s *Supervisor) sampleMedia() {
	seen := map[[2]int]uint64{}
	active := map[int]bool{}
	for i, p := range s.peers {
		if p.rewrite == nil {
			continue
		}
		for _, l := range s.lines {
			n := p.rewrite.MediaPackets(l)
			k := [2]int{i, l}
			if n > s.mediaSeen[k] {
				active[l] = true
			}
			seen[k] = n
		}
	}
	s.mediaSeen = seen
	s.active = slices.Sorted(maps.Keys(active))
}

// parker is a tunnel that parks its device while idle (wgtunnel.Tunnel).
type parker interface{ Parked() bool }
