package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrAlreadyRunning means another daemon with the same run directory (by
// default, the same prefix) holds the lock.
var ErrAlreadyRunning = errors.New("another peerlined with this prefix is running")

// lockFile is the lock's name in the run directory; it holds the pid of the
// daemon that took it.
const lockFile = "peerlined.lock"

// lockRunDir takes an exclusive lock in the run directory, so that two
// daemons (or a daemon and -cleanup) never fight over the same names,
// sockets and ports. The kernel drops the lock when the process dies, even
// by kill -9, so a crashed daemon never locks out the next one.
func lockRunDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating run directory: %w", err)
	}
	p := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(p)
		f.Close()
		return nil, fmt.Errorf("%w (pid %s, lock %s)", ErrAlreadyRunning, strings.TrimRight(string(pid), "\r\n"), p)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}
