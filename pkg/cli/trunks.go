package cli

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/peerline/peerline/pkg/control"
)

// trunks prints each configured trunk and where its registration stands.
func (c *client) trunks(args []string) error {
	asJSON, _, err := c.flags("trunks", args, 0)
	if err != nil {
		return err
	}
	var ts control.Trunks
	if err := c.call(control.CmdTrunks, nil, &ts); err != nil {
		return err
	}
	if asJSON {
		return c.printJSON(ts)
	}
	if len(ts.Trunks) == 0 {
		fmt.Fprintln(c.out, `no trunks; add an outside SIP account under "trunks" in the config (docs/sip-service.md)`)
		return nil
	}
	w := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tREGISTRAR\tUSER\tPREFIX\tLINES\tCALLS\tSTATUS")
	for _, t := range ts.Trunks {
		lines := make([]string, len(t.Lines))
		for i, l := range t.Lines {
			lines[i] = strconv.Itoa(l)
		}
		status := t.Status
		if t.State == "registered" && t.Until != nil {
			status += " as " + dash(t.Contact) + ", for " + until(*t.Until)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", t.Name, t.Registrar, t.User, dash(t.Prefix), strings.Join(lines, ","), t.Calls, status)
	}
	return w.Flush()
}
