package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	for _, content := range []string{"old", "new content"} {
		if err := WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatalf("WriteFile(%q) = %v", content, err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != content {
			t.Fatalf("ReadFile after WriteFile(%q) = %q, %v", content, got, err)
		}
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the file (temporary files left behind)", len(entries))
	}
}

func TestWriteFileMissingDir(t *testing.T) {
	err := WriteFile(filepath.Join(t.TempDir(), "nope", "x"), []byte("x"), 0o600)
	if err == nil {
		t.Fatal("WriteFile into a missing directory succeeded, want an error")
	}
}

func TestWriteNew(t *testing.T) {
	p := filepath.Join(t.TempDir(), "node.key")
	if err := WriteNew(p, []byte("first"), 0o600); err != nil {
		t.Fatalf("WriteNew on a new path = %v", err)
	}
	err := WriteNew(p, []byte("second"), 0o600)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("WriteNew on an existing path = %v, want fs.ErrExist", err)
	}
	got, _ := os.ReadFile(p)
	if string(got) != "first" {
		t.Errorf("content after a refused WriteNew = %q, want %q", got, "first")
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the file", len(entries))
	}
}

// A temporary file whose writer is alive (lock held) must survive another
// writer's clean-up; one whose writer is gone must not.
func TestStaleTempFiles(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "peers.json")
	dead := filepath.Join(dir, tempPrefix(p)+"dead")
	if err := os.WriteFile(dead, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	live, err := os.CreateTemp(dir, tempPrefix(p)+"*")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	unlock, err := lock(live)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	other := filepath.Join(dir, ".other.json.tmp-1")
	if err := os.WriteFile(other, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("v"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		want bool
	}{{dead, false}, {live.Name(), true}, {other, true}} {
		_, err := os.Stat(c.path)
		if exists := err == nil; exists != c.want {
			t.Errorf("%s exists = %v after a write, want %v", filepath.Base(c.path), exists, c.want)
		}
	}
}
