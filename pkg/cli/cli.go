// Package cli is the peerline command: it asks peerlined over the control
// socket and prints the answer for people, or as JSON with --json for
// scripts. Every command is a thin layer over one control request, so what
// the CLI shows is exactly what the daemon knows.
package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/control"
)

// ErrUsage is returned for bad usage after the usage text was printed.
var ErrUsage = errors.New("bad usage")

// ExitCode is the process exit status for err: 2 for usage, 3 when the
// daemon is not running, 1 otherwise.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrUsage):
		return 2
	case errors.Is(err, control.ErrNoDaemon):
		return 3
	}
	return 1
}

// configPaths are tried in order to find the daemon's run directory: the
// appliance's generated config, then the one of a hand installation.
var configPaths = []string{"/data/peerline/peerlined.json", config.DefaultPath}

const usage = `usage: peerline [-socket PATH | -config FILE] COMMAND [--json] [ARGS]

commands:
  status               the node: name, key, ready, lines, peers online
  peers                paired peers: index, name, online, path, RTT, tunnel MTU, NAT, last handshake
  phones               phones on the phone port: line, MAC, model, address, lease, in a call
  phones forget LINE   free LINE: its phone gets a new line when it asks again
  phones label LINE TEXT  name LINE ("" removes the label)
  lines                SIP: each line's URI and registration, peers' short numbers and names, dial decisions
  trunks               outside SIP accounts: registrar, prefix, lines, registered or why not
  calls                calls through the tunnels, live and last 24 h: packets, loss, jitter, MOS
  invite [--ttl 24h]   make a one-time code (and QR code) another Pi joins with
  invite --list        the invites made here; invite --revoke ID withdraws one
  join CODE            pair with the Pi that made CODE
  remove PEER          unpair PEER (index or name): its tunnel goes
  rename PEER NAME     call PEER NAME here, whatever it calls itself
  logs                 peerlined's recent warnings and errors
  ping PEER            one probe to PEER: round trip and path
  version              this command's version

--json after a command prints the daemon's answer as JSON.
`

// Main runs the command line args (without the program name).
func Main(ctx context.Context, args []string, out io.Writer, version string) (err error) {
	fs := flag.NewFlagSet("peerline", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage) }
	socket := fs.String("socket", "", "control socket of peerlined (default: from the config)")
	configPath := fs.String("config", "", "peerlined's config file, to find its control socket")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return ErrUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return ErrUsage
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	c := &client{out: out}
	var run func([]string) error
	switch cmd {
	case "status":
		run = c.status
	case "peers":
		run = c.peers
	case "phones":
		run = c.phones
	case "lines":
		run = c.lines
	case "trunks":
		run = c.trunks
	case "calls":
		run = c.calls
	case "invite":
		run = c.invite
	case "join":
		run = c.join
	case "remove":
		run = c.remove
	case "ping":
		run = c.ping
	case "rename":
		run = c.rename
	case "logs":
		run = c.logs
	case "version":
		fmt.Fprintln(out, "peerline", version)
		return nil
	case "help":
		fmt.Fprint(out, usage)
		return nil
	default:
		fmt.Fprintf(os.Stderr, "peerline: unknown command %q\n\n", cmd)
		fs.Usage()
		return ErrUsage
	}
	path, err := socketPath(*socket, *configPath)
	if err != nil {
		return err
	}
	defer func() {
		if errors.Is(err, errHelp) {
			err = nil
		}
	}()
	c.call = func(command string, args, result any) error {
		// join waits up to 20 s for the other Pi.
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return control.Call(ctx, path, command, args, result)
	}
	return run(rest)
}

// socketPath finds the control socket: -socket, else the run directory of
// -config or of the first config file that exists.
func socketPath(socket, configPath string) (string, error) {
	if socket != "" {
		return socket, nil
	}
	paths := configPaths
	if configPath != "" {
		paths = []string{configPath}
	}
	for _, p := range paths {
		cfg, err := config.Load(p)
		if err == nil {
			return control.SocketPath(cfg.RunDir), nil
		}
		if configPath != "" || !errors.Is(err, os.ErrNotExist) && !strings.Contains(err.Error(), "does not exist") {
			return "", fmt.Errorf("finding the control socket: %w", err)
		}
	}
	// No config at all: the default run directory of the default prefix.
	var cfg config.Config
	cfg.PhonePort = "eth0"
	if err := cfg.Validate(); err != nil {
		return "", err
	}
	return control.SocketPath(cfg.RunDir), nil
}

type client struct {
	out  io.Writer
	call func(command string, args, result any) error
}

// flags parses a command's own flags: --json, and nargs positional
// arguments.
func (c *client) flags(name string, args []string, nargs int) (asJSON bool, pos []string, err error) {
	fs := flag.NewFlagSet("peerline "+name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	commandUsage(fs, name)
	j := fs.Bool("json", false, "print the answer as JSON")
	// Allow --json after positional arguments too: "phones forget 3 --json".
	var rest []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return false, nil, usageError(err)
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(rest) != nargs {
		fmt.Fprintf(os.Stderr, "peerline %s: want %d argument(s), got %d\n\n%s", name, nargs, len(rest), usage)
		return false, nil, ErrUsage
	}
	return *j, rest, nil
}

// errHelp ends a command whose --help was asked for; Main returns nil.
var errHelp = errors.New("help shown")

// usageError is what a command returns when its flags do not parse.
func usageError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return errHelp
	}
	return ErrUsage
}

// commandUsage makes `peerline NAME --help` show the command's lines of the
// usage text, with its arguments, before its flags.
func commandUsage(fs *flag.FlagSet, name string) {
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage:\n%s\nflags:\n", commandLines(name))
		fs.PrintDefaults()
	}
}

// commandLines are the lines of the usage text about command name.
func commandLines(name string) string {
	var b strings.Builder
	for line := range strings.Lines(usage) {
		if strings.HasPrefix(line, "  "+name+" ") {
			b.WriteString("  peerline " + line[2:])
		}
	}
	return b.String()
}

func (c *client) printJSON(v any) error {
	enc := json.NewEncoder(c.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (c *client) status(args []string) error {
	asJSON, _, err := c.flags("status", args, 0)
	if err != nil {
		return err
	}
	var st control.Status
	if err := c.call(control.CmdStatus, nil, &st); err != nil {
		return err
	}
	if asJSON {
		return c.printJSON(st)
	}
	online := 0
	for _, p := range st.Peers {
		if p.Online {
			online++
		}
	}
	ready := "yes"
	if !st.Ready {
		ready = "no (still setting up, or something failed: see `peerline peers` and `journalctl -u peerlined`)"
	}
	w := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "node\t%s\n", st.Name)
	fmt.Fprintf(w, "version\t%s\n", st.Version)
	fmt.Fprintf(w, "public key\t%s\n", st.PublicKey)
	fmt.Fprintf(w, "ready\t%s\n", ready)
	fmt.Fprintf(w, "up since\t%s (%s)\n", st.Started.Local().Format(time.DateTime), ago(st.Started))
	fmt.Fprintf(w, "lines\t%s\n", joinInts(st.Lines, "none"))
	fmt.Fprintf(w, "in a call\t%s\n", joinInts(st.ActiveLines, "none"))
	fmt.Fprintf(w, "peers\t%d paired, %d online\n", len(st.Peers), online)
	fmt.Fprintf(w, "rewriter\t%s\n", rewriterSummary(st.Peers))
	if len(st.Rendezvous) > 0 {
		fmt.Fprintf(w, "rendezvous\t%s\n", strings.Join(st.Rendezvous, ", "))
	}
	if st.BootConfigError != "" {
		fmt.Fprintf(w, "boot config\tWRONG: %s\n", st.BootConfigError)
	}
	return w.Flush()
}

func (c *client) peers(args []string) error {
	asJSON, _, err := c.flags("peers", args, 0)
	if err != nil {
		return err
	}
	var st control.Status
	if err := c.call(control.CmdStatus, nil, &st); err != nil {
		return err
	}
	if asJSON {
		return c.printJSON(st.Peers)
	}
	if len(st.Peers) == 0 {
		fmt.Fprintln(c.out, "no peers paired yet")
		return nil
	}
	w := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "INDEX\tNAME\tONLINE\tPATH\tRTT\tMTU\tNAT\tLAST HANDSHAKE\tDROPPED\tENDPOINT")
	for _, p := range st.Peers {
		online := "no"
		switch {
		case p.Error != "":
			online = "error: " + p.Error
		case p.Online:
			online = "yes"
		}
		rtt := "-"
		if p.RTT != nil {
			rtt = time.Duration(*p.RTT).Round(100 * time.Microsecond).String()
		}
		hs := "never"
		if p.LastHandshake != nil {
			hs = ago(*p.LastHandshake)
		}
		mtu := "-"
		if p.MTU > 0 {
			mtu = strconv.Itoa(p.MTU)
		}
		dropped := "-"
		if p.Rewrite != nil {
			var n uint64
			for _, d := range p.Rewrite {
				n += d.DroppedTotal()
			}
			dropped = strconv.FormatUint(n, 10)
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Index, dash(p.Name), online, dash(p.Path), rtt, mtu, dash(p.NATClass), hs, dropped, dash(p.Endpoint))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, p := range st.Peers {
		if p.PathReason != "" && (p.Path == "relay" || !p.Online) {
			fmt.Fprintf(c.out, "peer %d: %s\n", p.Index, p.PathReason)
		}
	}
	for _, p := range st.Peers {
		if d := control.DroppedText(p.Rewrite); d != "" {
			fmt.Fprintf(c.out, "peer %d dropped: %s\n", p.Index, d)
		}
		if l := control.LatencyText(p.Rewrite); l != "" {
			fmt.Fprintf(c.out, "peer %d rewriter: %s\n", p.Index, l)
		}
	}
	return nil
}

// rewriterSummary is what the tunnels' rewriters dropped, in all, and the
// reasons with the most.
func rewriterSummary(peers []control.Peer) string {
	total := map[string]uint64{}
	var sum uint64
	for _, p := range peers {
		for _, d := range p.Rewrite {
			for _, r := range d.Dropped {
				total[d.Direction+" "+r.Reason] += r.Count
				sum += r.Count
			}
		}
	}
	if sum == 0 {
		return "nothing dropped"
	}
	keys := make([]string, 0, len(total))
	for k, n := range total {
		if n > 0 {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(total[b], total[a]), cmp.Compare(a, b)) })
	parts := make([]string, 0, 3)
	for _, k := range keys[:min(len(keys), 3)] {
		parts = append(parts, fmt.Sprintf("%s %d", k, total[k]))
	}
	more := ""
	if len(keys) > 3 {
		more = ", ..."
	}
	return fmt.Sprintf("%d packets dropped (%s%s): `peerline peers` says which peer", sum, strings.Join(parts, ", "), more)
}

func (c *client) phones(args []string) error {
	if len(args) > 0 && args[0] == "forget" {
		return c.forget(args[1:])
	}
	if len(args) > 0 && args[0] == "label" {
		return c.label(args[1:])
	}
	asJSON, _, err := c.flags("phones", args, 0)
	if err != nil {
		return err
	}
	var phones []control.Phone
	if err := c.call(control.CmdPhones, nil, &phones); err != nil {
		return err
	}
	if asJSON {
		if phones == nil {
			phones = []control.Phone{}
		}
		return c.printJSON(phones)
	}
	if len(phones) == 0 {
		fmt.Fprintln(c.out, "no phones have asked for an address yet; plug one into the phone port and wait for it to boot")
		return nil
	}
	w := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "LINE\tLABEL\tMAC\tMODEL\tADDRESS\tLEASED\tLAST SEEN\tIN A CALL")
	for _, p := range phones {
		model := p.Model
		if model == "" {
			model = p.Vendor
		}
		inCall := "no"
		if p.InCall {
			inCall = "yes"
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Line, dash(p.Label), p.MAC, dash(model), p.Addr, ago(p.Bound), ago(p.LastSeen), inCall)
	}
	return w.Flush()
}

func (c *client) forget(args []string) error {
	asJSON, pos, err := c.flags("phones forget", args, 1)
	if err != nil {
		return err
	}
	line, err := strconv.Atoi(pos[0])
	if err != nil {
		return fmt.Errorf("%q is not a line number; `peerline phones` lists them", pos[0])
	}
	if err := c.call(control.CmdForgetPhone, control.ForgetPhoneArgs{Line: line}, nil); err != nil {
		return err
	}
	if asJSON {
		return c.printJSON(map[string]int{"forgotten": line})
	}
	fmt.Fprintf(c.out, "line %d is free; its phone gets a new line the next time it asks for an address\n", line)
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func joinInts(v []int, none string) string {
	if len(v) == 0 {
		return none
	}
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

// now is replaced by tests so that ages print the same every run.
var now = time.Now

// ago says how long ago t was, to the second, in the form people read.
func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now().Sub(t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}
