package cli

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/invite/qrterm"
)

// invite makes an invite (or lists or revokes them) and prints the code and
// a QR code of it.
func (c *client) invite(args []string) error {
	fs := flag.NewFlagSet("peerline invite", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	commandUsage(fs, "invite")
	asJSON := fs.Bool("json", false, "print the answer as JSON")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the code is valid")
	list := fs.Bool("list", false, "list the invites made on this Pi instead")
	revoke := fs.String("revoke", "", "revoke the invite with this `ID` (see --list)")
	noQR := fs.Bool("no-qr", false, "print the code only, no QR code")
	long := fs.Bool("long", false, "print the long form of the code, which works even if the rendezvous server restarts before it is used")
	if err := fs.Parse(args); err != nil {
		return usageError(err)
	}
	if fs.NArg() != 0 {
		return ErrUsage
	}
	switch {
	case *revoke != "":
		if err := c.call(control.CmdRevokeInvite, control.RevokeInviteArgs{ID: *revoke}, nil); err != nil {
			return err
		}
		fmt.Fprintf(c.out, "invite %s revoked: its code no longer pairs\n", *revoke)
		return nil
	case *list:
		var out []control.InviteEntry
		if err := c.call(control.CmdInvites, nil, &out); err != nil {
			return err
		}
		if *asJSON {
			return c.printJSON(out)
		}
		if len(out) == 0 {
			fmt.Fprintln(c.out, "no invites")
			return nil
		}
		w := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "ID\tSTATE\tCREATED\tEXPIRES\tJOINED BY")
		for _, e := range out {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", e.ID, e.State, e.Created.Local().Format("2006-01-02 15:04"),
				e.Expires.Local().Format("2006-01-02 15:04"), dash(e.Joiner))
		}
		return w.Flush()
	}
	var r control.InviteResult
	if err := c.call(control.CmdInvite, control.InviteArgs{TTL: control.Duration(*ttl)}, &r); err != nil {
		return err
	}
	if *asJSON {
		return c.printJSON(r)
	}
	if *long && r.Code != r.LongCode {
		r.Code, r.URI = r.LongCode, r.LongURI
	}
	fmt.Fprintf(c.out, "Invite %s, valid until %s, for one Pi.\n\n", r.ID, r.Expires.Local().Format("2006-01-02 15:04"))
	if r.Note != "" {
		fmt.Fprintf(c.out, "(%s)\n\n", r.Note)
	}
	fmt.Fprintf(c.out, "On the other Pi, run:\n\n  peerline join %s\n\n", r.Code)
	if !*noQR {
		q, err := qrterm.Render(r.URI)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.out, "or scan:\n\n%s\n", q)
	}
	fmt.Fprintln(c.out, "Keep the code to yourself: whoever has it can pair with this Pi until it is used.")
	return nil
}

func (c *client) join(args []string) error {
	fs := flag.NewFlagSet("peerline join", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	commandUsage(fs, "join")
	asJSON := fs.Bool("json", false, "print the answer as JSON")
	if err := fs.Parse(args); err != nil {
		return usageError(err)
	}
	if fs.NArg() == 0 {
		fmt.Fprint(os.Stderr, "peerline join: give the code that `peerline invite` printed on the other Pi\n")
		return ErrUsage
	}
	// A code read aloud or pasted may come in several words.
	code := strings.Join(fs.Args(), "")
	fmt.Fprintln(os.Stderr, "asking the inviting Pi; this takes a few seconds...")
	var r control.PeerRef
	if err := c.call(control.CmdJoin, control.JoinArgs{Code: code}, &r); err != nil {
		return joinError(err)
	}
	if *asJSON {
		return c.printJSON(r)
	}
	fmt.Fprintf(c.out, "paired with %s: it is peer %d here; call its phones at 10.%d.s.1 (s = the line)\n", dash(r.Name), r.Index, r.Index)
	return nil
}

// joinError explains a join whose answer never came back (peerlined
// stopped, or the connection broke): whether it paired is unknown here,
// and a guess either way would be wrong half the time.
func joinError(err error) error {
	var remote *control.RemoteError
	if errors.As(err, &remote) || errors.Is(err, control.ErrNoDaemon) {
		return err
	}
	return fmt.Errorf("%w\npeerlined's answer to the join was lost, so whether it paired is unknown here: `peerline peers` shows it; if the other Pi is not listed, run the join again (an unfinished pairing is undone on both Pis, and the code works again)", err)
}

func (c *client) remove(args []string) error {
	asJSON, pos, err := c.flags("remove", args, 1)
	if err != nil {
		return err
	}
	var r control.PeerRef
	if err := c.call(control.CmdRemove, control.PeerArgs{Peer: pos[0]}, &r); err != nil {
		return err
	}
	if asJSON {
		return c.printJSON(r)
	}
	fmt.Fprintf(c.out, "removed peer %d (%s): its tunnel is gone; pair again with an invite\n", r.Index, dash(r.Name))
	return nil
}

func (c *client) ping(args []string) error {
	asJSON, pos, err := c.flags("ping", args, 1)
	if err != nil {
		return err
	}
	var r control.PingResult
	if err := c.call(control.CmdPing, control.PeerArgs{Peer: pos[0]}, &r); err != nil {
		return err
	}
	if asJSON {
		return c.printJSON(r)
	}
	fmt.Fprintf(c.out, "peer %d (%s): %v via %s %s\n", r.Index, dash(r.Name), time.Duration(r.RTT).Round(10*time.Microsecond), dash(r.Path), r.Endpoint)
	return nil
}
