package supervisor

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func testStatus(peers int, at time.Time) *Status {
	st := &Status{Name: "alice", PID: 1, Ready: true, Lines: []int{1}, Updated: at, Runtime: &RuntimeStatus{HeapMB: 40, Goroutines: 900}}
	for i := range peers {
		st.Peers = append(st.Peers, PeerStatus{Index: i + 1, Device: "pl" + string(rune('a'+i%26)), Up: true, Online: i%2 == 0, RxBytes: 1000})
	}
	return st
}

// TestStatusWrittenOnChange: status.json is rewritten when what it says
// changes, or its runtime figures are 30 s old; otherwise only its time
// moves, and ReadStatus still reports a status taken after any moment
// before the last interval.
func TestStatusWrittenOnChange(t *testing.T) {
	dir := t.TempDir()
	w := newStatusWriter(filepath.Join(dir, statusFile))
	writes := 0
	write := w.writeFile
	w.writeFile = func(path string, data []byte, perm os.FileMode) error {
		writes++
		return write(path, data, perm)
	}
	t0 := time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC)
	step := func(st *Status, wantWrite bool, what string) {
		t.Helper()
		before := writes
		wrote, err := w.write(st)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if wrote != wantWrite || writes-before != map[bool]int{false: 0, true: 1}[wantWrite] {
			t.Errorf("%s: wrote=%v (%d writes), want %v", what, wrote, writes-before, wantWrite)
		}
		got, err := ReadStatus(dir)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !got.Updated.Equal(st.Updated) {
			t.Errorf("%s: ReadStatus says updated %v, want %v", what, got.Updated, st.Updated)
		}
		if len(got.Peers) != len(st.Peers) || got.Peers[0].Online != st.Peers[0].Online {
			t.Errorf("%s: ReadStatus peers differ from the status", what)
		}
	}
	step(testStatus(253, t0), true, "first")
	step(testStatus(253, t0.Add(5*time.Second)), false, "nothing changed")
	st := testStatus(253, t0.Add(10*time.Second))
	st.Runtime.HeapMB = 41
	step(st, false, "only the heap figure moved")
	st = testStatus(253, t0.Add(15*time.Second))
	st.Peers[0].Online = false
	step(st, true, "a peer went offline")
	st = testStatus(253, t0.Add(20*time.Second))
	st.Peers[0].Online = false
	step(st, false, "nothing changed since")
	st = testStatus(253, t0.Add(20*time.Second))
	st.Peers[7].RxBytes++
	step(st, true, "a counter moved")
	st.Updated = t0.Add(50 * time.Second)
	step(st, true, "runtime figures 30 s old")
	if err := os.Remove(w.path); err != nil {
		t.Fatal(err)
	}
	st.Updated = t0.Add(55 * time.Second)
	step(st, true, "the file was removed")
}

// BenchmarkStatusWrite: one status interval of an idle node with 253
// peers (status.json unchanged).
func BenchmarkStatusWrite(b *testing.B) {
	w := newStatusWriter(filepath.Join(b.TempDir(), statusFile))
	t0 := time.Now()
	for b.Loop() {
		t0 = t0.Add(time.Second)
		if _, err := w.write(testStatus(253, t0)); err != nil {
			b.Fatal(err)
		}
	}
}
