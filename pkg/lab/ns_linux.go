//go:build linux

package lab

import (
	"fmt"
	"os/exec"
	"runtime"
	"sync"
	"syscall"

	"github.com/vishvananda/netns"
)

func platformCheck() error { return nil }

// doInNamespace runs fn on a fresh goroutine locked to its OS thread, after
// switching that thread into the namespace at path. The goroutine exits
// without unlocking, so the runtime terminates the thread instead of reusing
// it in the wrong namespace.
func doInNamespace(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: this thread is discarded.
		ns, err := netns.GetFromPath(path)
		if err != nil {
			errc <- fmt.Errorf("opening namespace %s: %w", path, err)
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("entering namespace %s: %w", path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

func procAttr() *syscall.SysProcAttr {
	// Pdeathsig fires when the *thread* that forked the child exits, not the
	// process (golang/go#27505). startCmd therefore forks from a thread that
	// lives as long as the process.
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

var spawner struct {
	once sync.Once
	ch   chan func()
}

// startCmd starts cmd from a dedicated goroutine locked to its OS thread for
// the life of the process, so that Pdeathsig means "when this process dies".
// doInNamespace discards threads, and any of them could otherwise be the
// parent thread of a child.
func startCmd(cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		spawner.ch = make(chan func())
		go func() {
			runtime.LockOSThread()
			for f := range spawner.ch {
				f()
			}
		}()
	})
	errc := make(chan error, 1)
	spawner.ch <- func() { errc <- cmd.Start() }
	return <-errc
}
