package cli

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/peerline/peerline/pkg/control"
)

// lines prints the SIP service's view: this node's lines with their URIs
// and registrations, the peers' lines as dialled here, and the latest
// dial-plan decisions.
func (c *client) lines(args []string) error {
	asJSON, _, err := c.flags("lines", args, 0)
	if err != nil {
		return err
	}
	var ls control.Lines
	if err := c.call(control.CmdLines, nil, &ls); err != nil {
		return err
	}
	if asJSON {
		return c.printJSON(ls)
	}
	fmt.Fprintf(c.out, "SIP service: %s\n", ls.Service)
	if len(ls.Lines) == 0 {
		fmt.Fprintln(c.out, "no lines yet; plug a phone into the phone port")
	} else {
		w := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "LINE\tLABEL\tADDRESS\tSIP URI\tACCOUNT\tREGISTERED")
		for _, l := range ls.Lines {
			account := "not yet"
			if l.Account {
				account = "yes"
			}
			reg := "no"
			if r := l.Registration; r != nil {
				ua := ""
				if r.UserAgent != "" {
					ua = " (" + r.UserAgent + ")"
				}
				digest := ""
				if r.Digest != "" {
					digest = " with " + r.Digest
				}
				reg = fmt.Sprintf("from %s%s%s, for %s", r.Source, ua, digest, until(r.Expires))
			}
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", l.Line, dash(l.Label), l.Address, dash(strings.Join(l.URIs, " ")), account, reg)
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	if len(ls.Peers) > 0 {
		fmt.Fprintln(c.out)
		w := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "PEER\tNAME\tLINE\tLABEL\tADDRESS\tSHORT\tNAME TO DIAL\tSIP URI")
		for _, p := range ls.Peers {
			fmt.Fprintf(w, "%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", p.Peer, dash(p.Name), p.Line, dash(p.Label), p.Address, p.Short, dash(p.Dial), dash(p.URI))
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	if len(ls.Decisions) > 0 {
		fmt.Fprintln(c.out)
		w := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "WHEN\tFROM\tDIALLED\tANSWER\tTARGET\tWHY")
		for _, d := range ls.Decisions {
			fmt.Fprintf(w, "%s\t%s\t%s\t%d %s\t%s\t%s\n", ago(d.Time), d.From, d.Dialled, d.Code, d.Decision, dash(d.Target), d.Reason)
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	r := ls.Registrar
	fmt.Fprintf(c.out, "\nregistrar: %d registered, %d unregistered, %d challenged, %d refused, %d rate-limited\n",
		r.Registered, r.Unregistered, r.Challenged, r.Refused, r.Limited)
	return nil
}

// until says how long until t, to the second.
func until(t time.Time) string {
	d := t.Sub(now()).Round(time.Second)
	if d <= 0 {
		return "expired"
	}
	return strconv.Itoa(int(d/time.Second)) + "s"
}
