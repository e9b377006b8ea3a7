package netsetup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/peerline/peerline/pkg/netsetup/internal/check"
	"golang.org/x/sys/unix"
)

// runDir is where named namespaces live, as with `ip netns`.
const runDir = "/run/netns"

// Do runs fn inside the named network namespace and returns fn's error.
// ns "" means the caller's own namespace: fn then runs on the calling
// goroutine.
//
// fn runs on a fresh goroutine locked to its OS thread, which is never
// unlocked, so the runtime ends the thread when fn returns instead of
// handing it, still in ns, to another goroutine (and if the goroutine lands
// on the main thread, which cannot end, it hands the work on to another).
// Whatever fn opens (a
// socket, a TUN) stays in ns after Do returns; goroutines that fn starts do
// not run in ns.
func Do(ns string, fn func() error) error {
	if ns == "" {
		return fn()
	}
	fd, _, err := openNS(ns)
	if err != nil {
		return fmt.Errorf("entering namespace %s: %w", ns, err)
	}
	defer unix.Close(fd)
	return onDiscardedThread(func() error {
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			return stepError("entering namespace "+ns, err)
		}
		return fn()
	})
}

// onDiscardedThread runs fn on a new goroutine locked to its thread for good.
func onDiscardedThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// The main thread cannot exit: the runtime parks it for good
			// instead, and it would stay in the namespace, keeping the
			// namespace alive after deletion and making /proc/PID/ns/net
			// (the main thread's) point there, so that `nsenter -t PID -n`
			// enters the wrong namespace. Hold the main thread while
			// another thread, which can exit, does the work.
			err := onDiscardedThread(fn)
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		// No UnlockOSThread: fn may have changed the thread's namespace,
		// and a goroutine that exits locked takes its thread with it.
		errc <- fn()
	}()
	return <-errc
}

// nsID tells one namespace from another: the nsfs device and inode of its
// bind mount. A name deleted and made again gets a new inode.
type nsID struct{ dev, ino uint64 }

// openNS opens /run/netns/NAME and makes sure it is a mounted namespace, not
// a stale file left by a crash between creating the file and mounting onto
// it (setns on such a file fails with a bare EINVAL).
func openNS(name string) (fd int, id nsID, err error) {
	if err := check.NamespaceName(name); err != nil {
		return -1, nsID{}, err
	}
	path := filepath.Join(runDir, name)
	fd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return -1, nsID{}, ErrNoNamespace
	}
	if err != nil {
		return -1, nsID{}, stepError("opening "+path, err)
	}
	var fsst unix.Statfs_t
	if err := unix.Fstatfs(fd, &fsst); err != nil {
		unix.Close(fd)
		return -1, nsID{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	if fsst.Type != unix.NSFS_MAGIC {
		unix.Close(fd)
		return -1, nsID{}, fmt.Errorf("%s is a stale file, not a mounted namespace (EnsureNamespace replaces it): %w", path, ErrNoNamespace)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, nsID{}, fmt.Errorf("stat %s: %w", path, err)
	}
	return fd, nsID{dev: st.Dev, ino: st.Ino}, nil
}

// nsState says what /run/netns/NAME is.
type nsState int

const (
	nsAbsent nsState = iota
	nsMounted
	nsStale
)

func statNS(path string) (nsState, error) {
	var fsst unix.Statfs_t
	err := unix.Statfs(path, &fsst)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nsAbsent, nil
	case err != nil:
		return nsAbsent, fmt.Errorf("statfs %s: %w", path, err)
	case fsst.Type == unix.NSFS_MAGIC:
		return nsMounted, nil
	default:
		return nsStale, nil
	}
}

// prepareRunDir makes /run/netns a shared mount point, as `ip netns add`
// does, so that namespaces mounted later also appear in mount namespaces
// made after this one (`ip netns exec` makes one per command).
func prepareRunDir() error {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return stepError("creating "+runDir, err)
	}
	err := unix.Mount("", runDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		// Not a mount point yet: make it one by binding it onto itself.
		if err := unix.Mount(runDir, runDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return stepError("bind-mounting "+runDir+" onto itself", err)
		}
		err = unix.Mount("", runDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return stepError("making "+runDir+" a shared mount", err)
	}
	return nil
}

// createNamed makes a new namespace and mounts it at path, on a thread that
// is then thrown away (unshare moves the calling thread). It does what
// netns.NewNamed does, except that it removes the file again if the mount
// fails: NewNamed leaves it behind, which is how stale files come about.
func createNamed(path string) error {
	return onDiscardedThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
		if err != nil {
			return err
		}
		f.Close()
		self := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
		if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
			os.Remove(path)
			return fmt.Errorf("bind-mounting %s: %w", self, err)
		}
		return nil
	})
}

// removeNamed unmounts and removes path. A file that is not mounted (stale)
// and a file that is not there are both fine.
func removeNamed(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// listNamespaces lists the entries of /run/netns starting with prefix.
func listNamespaces(prefix string) ([]string, error) {
	ents, err := os.ReadDir(runDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if len(e.Name()) >= len(prefix) && e.Name()[:len(prefix)] == prefix {
			names = append(names, e.Name())
		}
	}
	return names, nil // ReadDir sorts by name
}
