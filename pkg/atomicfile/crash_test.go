package atomicfile

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// crashEnv makes the test binary a writer for TestCrash instead of a test
// run: its value is the file to write.
const crashEnv = "ATOMICFILE_CRASH_WRITER"

const (
	crashSize     = 256 << 10 // large enough that a write takes a while
	crashMaxKills = 200
	crashBudget   = 8 * time.Second
)

// crashVersions are the two contents the writer alternates between. They
// differ in every byte, so any mix of the two is caught.
func crashVersions() [2][]byte {
	return [2][]byte{
		bytes.Repeat([]byte("A"), crashSize),
		bytes.Repeat([]byte("B"), crashSize),
	}
}

// TestCrashWriter is the writer process of TestCrash; as a normal test it
// does nothing.
func TestCrashWriter(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("writer process for TestCrash")
	}
	v := crashVersions()
	// Tell the parent the loop is about to start, so that its random delay
	// lands on writes rather than on process start-up.
	fmt.Println("ready")
	// Bounded so that an orphaned writer cannot run forever.
	deadline := time.Now().Add(time.Minute)
	for n := 0; time.Now().Before(deadline); n++ {
		if err := WriteFile(path, v[n%2], 0o600); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

// TestCrash kills a writer with SIGKILL at random points and checks each time
// that the file holds exactly one of the two versions: never torn, never
// missing, and that dead writers' temporary files do not pile up.
//
// SIGKILL leaves the page cache intact, so this checks atomicity against a
// crashing process, not durability against a power cut; that needs the
// fsyncs, which only a power-cut loop on hardware can test.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a writer process 200 times")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "peers.json")
	v := crashVersions()
	// Leftovers of a writer that died in an older life, or of one that never
	// locked: the first write must clean them up.
	for i := range 3 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s%d", tempPrefix(path), i)), []byte("junk"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	start := time.Now()
	var kills, gotA, gotB, leftTemp, maxTemp int
	for kills < crashMaxKills && time.Since(start) < crashBudget {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashWriter$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+path)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil || line != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("writer did not start: %q, %v; stderr: %s", line, err, stderr.String())
		}
		if kills == 0 {
			// The file must exist before the first kill counts.
			waitForFile(t, path)
		}
		time.Sleep(time.Duration(rng.Int64N(int64(15 * time.Millisecond))))
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("writer ended by itself (%v) instead of being killed; stderr: %s", err, stderr.String())
		}
		kills++

		got, err := os.ReadFile(path)
		switch {
		case err != nil:
			t.Fatalf("after kill %d: %v; the file must always exist", kills, err)
		case bytes.Equal(got, v[0]):
			gotA++
		case bytes.Equal(got, v[1]):
			gotB++
		default:
			t.Fatalf("after kill %d: file is torn: %d bytes, %q...", kills, len(got), got[:min(len(got), 16)])
		}
		temps := countTemps(t, path)
		if temps > 0 {
			leftTemp++
		}
		maxTemp = max(maxTemp, temps)
		// A writer cleans up before it creates its own temporary file, so
		// at most the killed one's and one that a writer killed while
		// cleaning up could not reach yet remain.
		if temps > 2 {
			t.Fatalf("after kill %d: %d temporary files left; dead writers' files must be removed", kills, temps)
		}
	}
	t.Logf("%d kills in %v: %d left version A, %d version B, %d left a temporary file (killed mid-write), at most %d at once",
		kills, time.Since(start).Round(time.Millisecond), gotA, gotB, leftTemp, maxTemp)
	if kills < 20 {
		t.Fatalf("only %d kills in %v; the machine is too slow for this test to mean anything", kills, crashBudget)
	}
	if gotA == 0 || gotB == 0 || leftTemp == 0 {
		t.Fatalf("kills never landed on both versions and mid-write (A %d, B %d, mid-write %d): the test did not exercise the writer", gotA, gotB, leftTemp)
	}
	if err := WriteFile(path, []byte("final"), 0o600); err != nil {
		t.Fatal(err)
	}
	if n := countTemps(t, path); n != 0 {
		t.Errorf("after a clean write %d temporary files remain, want 0", n)
	}
}

func waitForFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("writer did not create %s within 10s", path)
		}
		time.Sleep(time.Millisecond)
	}
}

func countTemps(t *testing.T, path string) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tempPrefix(path)) {
			n++
		}
	}
	return n
}
