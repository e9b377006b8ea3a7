package rvserver

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"

	"github.com/peerline/peerline/pkg/nodekey"
)

// ErrUsage is returned for bad flags; the flag package has printed why.
var ErrUsage = errors.New("bad usage")

// Main is rendezvousd's command line (args without the program name). It
// lives here rather than in cmd/ so that it can be tested.
func Main(ctx context.Context, args []string, version string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rendezvousd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	fs.StringVar(&cfg.Listen[0], "listen", DefaultListen, "main UDP address: registrations, introductions and relay")
	fs.StringVar(&cfg.Listen[1], "listen2", DefaultListen2, "second UDP address (another port, or another IP): nodes compare their mappings to both to detect a symmetric NAT")
	fs.StringVar(&cfg.StateDir, "state-dir", DefaultDir, "directory for the server key ("+KeyFile+")")
	fs.IntVar(&cfg.MaxNodes, "max-nodes", 10000, "most registrations kept in memory (about 1 kB each)")
	fs.IntVar(&cfg.RelayBytesPerSec, "relay-rate", 256<<10, "bytes per second one node may send through the relay")
	fs.IntVar(&cfg.MaxPending, "max-pending", 0, "most one-sided introductions kept (0: 4 × max-nodes, about 0.5 kB each)")
	fs.IntVar(&cfg.MaxSessions, "max-sessions", 0, "most relay sessions kept (0: 2 × max-nodes, about 0.5 kB each)")
	fs.IntVar(&cfg.MaxReplay, "max-replay", 0, "most request nonces kept against replays (0: 16 × max-nodes, about 0.2 kB each)")
	fs.Float64Var(&cfg.RequestPerSec, "request-rate", 0, "sealed requests per second one node key may make (0: 10)")
	fs.Float64Var(&cfg.PrefixPerSec, "prefix-rate", 0, "sealed requests per second one source /24 (IPv6 /56) may make, however many keys it uses (0: 500)")
	memLimit := fs.Int("memory-limit", 0, "soft memory limit in MiB for the Go runtime (0: 64 + 16 KiB per max-nodes, room for every table full; GOMEMLIMIT, if set, wins over the default)")
	fs.DurationVar(&cfg.PunchDelay, "punch-delay", 0, "delay both nodes wait after an introduction before probing")
	publicKey := fs.Bool("public-key", false, "print the server's public key (creating the key on first use) and exit")
	checkConfig := fs.Bool("check-config", false, "check the flags, addresses and key file, print a summary and exit; non-zero with the reason if something is wrong")
	verbose := fs.Bool("v", false, "log debug messages")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return ErrUsage
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q; see rendezvousd -h", fs.Arg(0))
	}
	if *showVersion {
		fmt.Fprintln(stdout, "rendezvousd", version)
		return nil
	}
	if *checkConfig {
		summary, err := CheckConfig(cfg)
		if err != nil {
			return err
		}
		mem := "memory limit from GOMEMLIMIT"
		if *memLimit > 0 || os.Getenv("GOMEMLIMIT") == "" {
			mem = fmt.Sprintf("memory limit %d MiB", cmp.Or(max(*memLimit, 0), defaultMemoryLimitMiB(cfg.MaxNodes)))
		}
		fmt.Fprintln(stdout, summary+"; "+mem)
		return nil
	}
	log := newLogger(stderr, *verbose)
	if *publicKey {
		s, err := New(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, s.PublicKey())
		return nil
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	s, err := New(cfg, log)
	if err != nil {
		return err
	}
	limit := setMemoryLimit(*memLimit, cfg.MaxNodes)
	log.Info("starting", "version", version, "memory_limit_mib", limit>>20)
	return s.Run(ctx)
}

// CheckConfig checks what Run would need without binding or creating
// anything: the two addresses parse and differ, the numbers make sense, and
// the key file is readable (or the state directory writable, if the key is
// still to be made). It returns a one-line summary.
func CheckConfig(cfg Config) (string, error) {
	cfg = cfg.withDefaults()
	var addrs [2]*net.UDPAddr
	for i, a := range cfg.Listen {
		flagName := [2]string{"-listen", "-listen2"}[i]
		ua, err := net.ResolveUDPAddr("udp", a)
		if err != nil {
			return "", fmt.Errorf("%s %q: want host:port or :port, e.g. :3478: %w", flagName, a, err)
		}
		if ua.Port == 0 {
			return "", fmt.Errorf("%s %q: give a fixed port (nodes are configured with it), e.g. :3478", flagName, a)
		}
		addrs[i] = ua
	}
	if addrs[0].String() == addrs[1].String() {
		return "", fmt.Errorf("-listen and -listen2 are both %s: the second must differ in port or address", addrs[0])
	}
	if cfg.MaxNodes < 1 {
		return "", fmt.Errorf("-max-nodes %d: must be at least 1", cfg.MaxNodes)
	}
	if err := cfg.Limits.validate(); err != nil {
		return "", err
	}
	keyPath := filepath.Join(cfg.StateDir, KeyFile)
	keyNote := ""
	b, err := os.ReadFile(keyPath)
	switch {
	case err == nil:
		k, err := nodekey.Parse(string(b))
		if err != nil {
			return "", fmt.Errorf("key file %s is damaged (%w); delete it to make a new key (every node must then be given the new public key)", keyPath, err)
		}
		keyNote = "public key " + k.Public().String()
	case errors.Is(err, os.ErrNotExist):
		if err := writable(cfg.StateDir); err != nil {
			return "", fmt.Errorf("no key yet and cannot create one: state directory %s is not writable (set -state-dir, or StateDirectory= in the unit): %w", cfg.StateDir, err)
		}
		keyNote = "key will be created in " + keyPath
	default:
		return "", fmt.Errorf("cannot read key file %s (check its owner and mode 0600): %w", keyPath, err)
	}
	return fmt.Sprintf("rendezvousd: ok (listen %s and %s, max %d nodes, %d pending introductions, %d relay sessions, %d replay nonces; %g requests/s per key, %g per source prefix; %s)",
		addrs[0], addrs[1], cfg.MaxNodes, cfg.MaxPending, cfg.MaxSessions, cfg.MaxReplay, cfg.RequestPerSec, cfg.PrefixPerSec, keyNote), nil
}

// writable reports whether dir takes a file, or, if it does not exist yet,
// whether its parent would let New create it. It leaves nothing behind.
func writable(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		dir = filepath.Dir(dir)
	}
	f, err := os.CreateTemp(dir, ".check-*")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}

func newLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// setMemoryLimit sets the Go runtime's soft memory limit: mib if given,
// else GOMEMLIMIT if the environment sets one, else enough for every table
// full (Limits): about 13 KiB of live heap per max-nodes with the default
// limits (BenchmarkFullTables), plus the runtime. Without a limit the
// garbage collector lets the heap grow to twice what is live, so a server
// whose tables a flood has filled would hold about twice what they need.
// It returns the limit in force.
func setMemoryLimit(mib, maxNodes int) int64 {
	if mib <= 0 && os.Getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1)
	}
	if mib <= 0 {
		mib = defaultMemoryLimitMiB(maxNodes)
	}
	debug.SetMemoryLimit(int64(mib) << 20)
	return int64(mib) << 20
}

func defaultMemoryLimitMiB(maxNodes int) int {
	if maxNodes <= 0 {
		maxNodes = 10000
	}
	return 64 + maxNodes*16/1024
}
