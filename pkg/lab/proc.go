package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Proc is a long-running program started by Host.Start. It runs in its own
// process group, with stdout and stderr going to LogPath.
type Proc struct {
	host    *Host
	name    string
	cmd     *exec.Cmd
	logPath string

	done chan struct{} // closed when the process has been waited for
	err  error         // exit error; valid after done is closed

	stopOnce sync.Once
	stopErr  error
}

// Start starts argv inside the host as a long-running process called name
// (used for its log file, <host>-<name>.log in Lab.Dir). The process gets its
// own process group and is killed if this process dies. It is stopped when
// ctx is cancelled, by Proc.Stop, or by Lab.Close. For environment variables,
// start through env(1): h.Start(ctx, "peerlined", "env", "K=V", "peerlined", …)
// (env and nsenter exec in place, so Pid is the program's).
func (h *Host) Start(ctx context.Context, name string, argv ...string) (*Proc, error) {
	if len(argv) == 0 {
		return nil, errors.New("start: empty command")
	}
	l := h.lab
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	logPath := uniquePath(l.dir, safeName(h.name+"-"+name), ".log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("host %s: starting %s: %w", h, name, err)
	}
	defer logf.Close() // the child has its own copy
	full := append([]string{"--net=" + h.NSPath(), "--"}, argv...)
	cmd := exec.Command("nsenter", full...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = procAttr()
	if err := startCmd(cmd); err != nil {
		return nil, fmt.Errorf("host %s: starting %s: %w", h, name, err)
	}
	p := &Proc{host: h, name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	l.procs = append(l.procs, p)
	go p.wait()
	go func() {
		select {
		case <-ctx.Done():
			p.Stop(stopGrace)
		case <-p.done:
		}
	}()
	l.log.Info("process started", "host", h.name, "proc", name, "pid", cmd.Process.Pid, "path", logPath)
	return p, nil
}

func (p *Proc) wait() {
	p.err = p.cmd.Wait()
	close(p.done)
	p.host.lab.log.Info("process exited", "host", p.host.name, "proc", p.name, "pid", p.Pid(), "err", p.err)
}

// Name is the name given to Start.
func (p *Proc) Name() string { return p.name }

// Host is the host the process runs in.
func (p *Proc) Host() *Host { return p.host }

// Pid is the process id (also its process group id).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// LogPath is the file receiving the process's stdout and stderr.
func (p *Proc) LogPath() string { return p.logPath }

// Log returns the process's output so far.
func (p *Proc) Log() (string, error) {
	b, err := os.ReadFile(p.logPath)
	return string(b), err
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit error (nil for exit status 0). Call it after Done
// is closed.
func (p *Proc) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return errors.New("process still running")
	}
}

// Wait waits for the process to exit, bounded by ctx.
func (p *Proc) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s on %s: %w", p.name, p.host, ctx.Err())
	}
}

// Stop sends SIGTERM to the process group, waits up to grace for the process
// to exit, then sends SIGKILL to the group. It returns nil once the process
// is gone, whatever its exit status. Repeated calls return the first result.
func (p *Proc) Stop(grace time.Duration) error {
	p.stopOnce.Do(func() { p.stopErr = stopAll([]*Proc{p}, grace) })
	return p.stopErr
}

// stopAll stops procs together: SIGTERM to every process group, one shared
// grace period, then SIGKILL to the groups still there. Members of a group
// that outlive their leader are killed too.
func stopAll(procs []*Proc, grace time.Duration) error {
	for _, p := range procs {
		select {
		case <-p.done:
		default:
			syscall.Kill(-p.Pid(), syscall.SIGTERM)
		}
	}
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	var errs []error
	for _, p := range procs {
		select {
		case <-p.done:
		case <-deadline.C:
			deadline.Reset(0) // already late: don't wait for the others
		}
		// Kill what is left of the group: the leader if it ignored
		// SIGTERM, or children it left behind. The group id cannot be
		// reused while any member is alive, so this only hits our own.
		if err := syscall.Kill(-p.Pid(), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("killing %s (pid %d): %w", p.name, p.Pid(), err))
			continue
		}
		select {
		case <-p.done:
		case <-time.After(grace):
			errs = append(errs, fmt.Errorf("%s (pid %d) on %s did not exit after SIGKILL", p.name, p.Pid(), p.host))
		}
	}
	return errors.Join(errs...)
}

// processAlive reports whether a process with this pid exists.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
