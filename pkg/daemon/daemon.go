// Package daemon is peerlined's command line: flags, logging, signals, and
// the choice between running, checking the config, printing the key and
// cleaning up. It lives outside cmd/ so that main stays one statement and
// this stays testable; the node it runs is built by package node.
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/peerline/peerline/pkg/bootconfig"
	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/logring"
	"github.com/peerline/peerline/pkg/node"
)

// benchNoRewriteEnv set to 1 makes the node leave the SIP/RTP rewriter out
// of its tunnels, for the lab benchmark that measures what the rewriter
// costs (pkg/peerlab BenchmarkRewriteLabTunnel, mk/rewrite.mk). No phone
// can call through such a tunnel: never set it on a Pi.
const benchNoRewriteEnv = "PEERLINED_BENCH_NO_REWRITE"

// ErrUsage is returned for bad flags; the flag package has printed why.
var ErrUsage = errors.New("bad usage")

// Main runs peerlined with args (without the program name).
func Main(ctx context.Context, args []string, version string) error {
	fs := flag.NewFlagSet("peerlined", flag.ContinueOnError)
	configPath := fs.String("config", config.DefaultPath, "config `file`")
	checkConfig := fs.Bool("check-config", false, "check the config file and exit; non-zero with the reason if it is wrong")
	cleanup := fs.Bool("cleanup", false, "remove every namespace, link, socket and line address this node's prefix may have left, and exit")
	publicKey := fs.Bool("public-key", false, "print this node's public key (creating the key on first use) and exit")
	bootConfig := fs.String("boot-config", "", "apply this first-boot `file` (peerline.txt on the boot partition) to -config and the uplink's network files, and exit")
	bootConfigError := fs.String("boot-config-error", bootconfig.DefaultErrorFile, "`file` in which the boot config's problems are reported, for the status page and peerline status")
	bootFile := fs.String("boot-file", bootconfig.DefaultBootFile, "the boot partition's peerline.txt, which the web console's settings page edits")
	verbose := fs.Bool("v", false, "log debug messages (WireGuard's too)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return ErrUsage
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q; see peerlined -h", fs.Arg(0))
	}
	if *showVersion {
		fmt.Println("peerlined", version)
		return nil
	}
	// Before config.Load: on a first boot this is what makes the config.
	if *bootConfig != "" {
		log, _ := newLogger(os.Stderr, *verbose)
		return bootconfig.Apply(bootconfig.ApplyOptions{BootFile: *bootConfig, ConfigPath: *configPath, ErrorFile: *bootConfigError, Log: log})
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	if *checkConfig {
		fmt.Printf("%s: ok (%d peers, %d lines, prefix %q)\n", *configPath, len(cfg.Peers), len(cfg.Lines), cfg.Prefix)
		return nil
	}
	if *publicKey {
		k, err := node.PublicKey(cfg)
		if err != nil {
			return err
		}
		fmt.Println(k)
		return nil
	}
	log, ring := newLogger(os.Stderr, *verbose)
	log = log.With("node", cfg.Name)
	if *cleanup {
		return node.Cleanup(cfg, log)
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	reload := make(chan *config.Config, 1)
	go watchReload(ctx, *configPath, reload, log)
	log.Info("starting", "version", version, "config", *configPath)
	return node.Run(ctx, node.Options{
		Config:              cfg,
		ConfigPath:          *configPath,
		Reload:              reload,
		Log:                 log,
		Ring:                ring,
		Version:             version,
		BootConfigErrorFile: *bootConfigError,
		BootFile:            *bootFile,
		BenchNoRewrite:      os.Getenv(benchNoRewriteEnv) == "1",
	})
}

// watchReload re-reads the config on SIGHUP; a config that does not
// validate is logged and the running one kept.
func watchReload(ctx context.Context, path string, reload chan<- *config.Config, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			cfg, err := config.Load(path)
			if err != nil {
				log.Error("not reloading: config is wrong; keeping the running one", "err", err)
				continue
			}
			select {
			case reload <- cfg:
			case <-ctx.Done():
				return
			}
		}
	}
}

// ringSize is how many warnings and errors the console's logs page keeps.
const ringSize = 300

// newLogger logs to w and keeps the last warnings and errors in a ring
// for the web console, whose owner has no journal to read.
func newLogger(w io.Writer, verbose bool) (*slog.Logger, *logring.Ring) {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	h := logring.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}), ringSize, slog.LevelWarn)
	return slog.New(h), h.Ring()
}
