//go:build unix

package atomicfile

import (
	"errors"
	"os"
	"syscall"
)

// lock takes an exclusive flock on f's open file and keeps it, through a
// duplicate descriptor, until unlock is called, even after f is closed. The
// kernel drops the lock when the process dies, which is what lets the next
// writer recognise a dead writer's leftovers.
func lock(f *os.File) (unlock func(), err error) {
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return func() {}, err
	}
	syscall.CloseOnExec(fd)
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		syscall.Close(fd)
		return func() {}, err
	}
	return func() { syscall.Close(fd) }, nil
}

// heldByOther reports whether some open file still holds a lock on f; if
// not, f's writer is gone.
func heldByOther(f *os.File) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	// Released when the caller closes f.
	return false, nil
}
