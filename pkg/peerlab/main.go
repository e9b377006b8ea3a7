package peerlab

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/peerline/peerline/pkg/lab"
)

// Main is peerlab's command line.
func Main(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("peerlab", flag.ContinueOnError)
	peerlined := fs.String("peerlined", "bin/peerlined", "peerlined binary to run on the simulated Pis")
	talk := fs.Duration("talk", 3*time.Second, "how long each call lasts")
	verbose := fs.Bool("v", false, "log what the lab does")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: peerlab [flags] demo")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() != 1 || fs.Arg(0) != "demo" {
		fs.Usage()
		return errors.New("say what to run: peerlab demo")
	}
	if os.Geteuid() != 0 {
		return errors.New("the lab builds network namespaces and needs root: run sudo make demo")
	}
	bin, err := filepath.Abs(*peerlined)
	if err == nil {
		_, err = exec.LookPath(bin)
	}
	if err != nil {
		return fmt.Errorf("peerlined binary %s: %w (run make build)", *peerlined, err)
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	l, err := lab.New(log)
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(out, "· tearing the lab down")
		if err := l.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "peerlab: cleanup:", err)
		}
	}()
	_, err = RunDemo(ctx, l, out, DemoOptions{Peerlined: bin, Talk: *talk, Log: log})
	if err != nil {
		if ctx.Err() != nil {
			return errors.New("interrupted")
		}
		fmt.Fprintln(out, "\nlast lines of each process log:")
		l.DumpLogs(out, 15)
		return err
	}
	return nil
}
