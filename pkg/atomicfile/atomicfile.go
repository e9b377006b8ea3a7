// Package atomicfile writes files so that a reader, or the next boot after a
// power cut, sees either the old content or the new, never a torn mix. A Pi
// on an SD card loses power without warning; keys and the peer table must
// survive that.
//
// Every write goes the same four steps: write a temporary file in the same
// directory, fsync it, rename it over the target, fsync the directory. The
// rename is atomic on POSIX file systems, so a crash at any point leaves the
// old file or the new one; the two fsyncs make "new" survive a power cut once
// WriteFile has returned.
//
// A writer that dies between creating its temporary file and the rename
// leaves that file behind. The writer holds an exclusive flock on its
// temporary file while it works, so the next write to the same path can tell
// a dead writer's leftover (lock free) from a live writer's work in progress
// (lock held) and removes only the former.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// tempPrefix is the name prefix of path's temporary files: hidden, and
// specific to path so that cleaning up never touches another file's.
func tempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp-" }

// WriteFile replaces path with data: it writes a temporary file in the same
// directory, syncs it, renames it over path and syncs the directory so the
// rename itself is durable. The file has mode perm from its creation on, so
// it is never readable by more users than asked for.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	defer tmp.release()
	if err := os.Rename(tmp.name, path); err != nil {
		os.Remove(tmp.name)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// WriteNew creates path with data only if path does not exist yet, with the
// same guarantees as WriteFile; if it exists, WriteNew leaves it alone and
// returns an error that matches fs.ErrExist. Two processes creating the same
// file (say, the node key on first start) thus agree on one content instead
// of the second silently replacing what the first already handed out.
func WriteNew(path string, data []byte, perm os.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	defer tmp.release()
	// link(2), unlike rename(2), fails if the target exists, and like
	// rename it makes the complete file appear at once.
	linkErr := os.Link(tmp.name, path)
	os.Remove(tmp.name)
	if linkErr != nil {
		if errors.Is(linkErr, fs.ErrExist) {
			return fmt.Errorf("creating %s: %w", path, fs.ErrExist)
		}
		return fmt.Errorf("creating %s: %w", path, linkErr)
	}
	return syncDir(filepath.Dir(path))
}

// tempFile is a synced temporary file whose lock is still held.
type tempFile struct {
	name   string
	unlock func()
}

func (t tempFile) release() { t.unlock() }

// writeTemp writes data to a new locked temporary file next to path and
// syncs it, after removing temporary files that dead writers left.
func writeTemp(path string, data []byte, perm os.FileMode) (tempFile, error) {
	dir := filepath.Dir(path)
	removeStale(dir, tempPrefix(path))
	f, unlock, err := createLocked(dir, tempPrefix(path))
	if err != nil {
		return tempFile{}, fmt.Errorf("writing %s: %w", path, err)
	}
	name := f.Name()
	fail := func(err error) (tempFile, error) {
		f.Close()
		os.Remove(name)
		unlock()
		return tempFile{}, fmt.Errorf("writing %s: %w", path, err)
	}
	// CreateTemp uses 0600; the final mode is set before any data goes in,
	// so the file never holds the data with wider permissions than asked.
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("syncing: %w", err))
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	return tempFile{name: name, unlock: unlock}, nil
}

// maxCreateTries bounds retries when another process's cleanup takes our
// fresh temporary file in the instant before we lock it.
const maxCreateTries = 3

// createLocked creates a temporary file and locks it. Between the two steps
// another writer's removeStale may see it unlocked and take it; then the
// lock fails or the name no longer leads to our file, and we try again with
// a new one. Once locked and still in place, nobody removes it.
func createLocked(dir, prefix string) (*os.File, func(), error) {
	for try := 1; ; try++ {
		f, err := os.CreateTemp(dir, prefix+"*")
		if err != nil {
			return nil, nil, err
		}
		// The lock must stay held until the rename; a duplicate
		// descriptor keeps it after f is closed.
		unlock, err := lock(f)
		if err == nil {
			ours, _ := f.Stat()
			there, statErr := os.Stat(f.Name())
			if statErr == nil && ours != nil && os.SameFile(ours, there) {
				return f, unlock, nil
			}
			err = errors.New("temporary file was removed by another writer")
			unlock()
		} else {
			os.Remove(f.Name())
		}
		f.Close()
		if try == maxCreateTries {
			return nil, nil, fmt.Errorf("locking temporary file: %w", err)
		}
	}
}

// removeStale removes the temporary files of one target that no live writer
// holds. Failing to clean up never fails a write: the leftovers are hidden
// and small, and the next write tries again.
func removeStale(dir, prefix string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if held, err := heldByOther(f); err == nil && !held {
			os.Remove(p)
		}
		f.Close()
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}
