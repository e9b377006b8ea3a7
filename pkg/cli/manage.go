package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/peerline/peerline/pkg/control"
)

func (c *client) rename(args []string) error {
	asJSON, pos, err := c.flags("rename", args, 2)
	if err != nil {
		return err
	}
	var r control.PeerRef
	if err := c.call(control.CmdRename, control.RenameArgs{Peer: pos[0], Name: pos[1]}, &r); err != nil {
		return err
	}
	if asJSON {
		return c.printJSON(r)
	}
	fmt.Fprintf(c.out, "peer %d is now called %s here (its own announcements no longer change that)\n", r.Index, r.Name)
	return nil
}

func (c *client) label(args []string) error {
	asJSON, pos, err := c.flags("phones label", args, 2)
	if err != nil {
		return err
	}
	line, err := strconv.Atoi(pos[0])
	if err != nil {
		return fmt.Errorf("%q is not a line number; `peerline phones` lists them", pos[0])
	}
	if err := c.call(control.CmdLabelLine, control.LabelLineArgs{Line: line, Label: pos[1]}, nil); err != nil {
		return err
	}
	if asJSON {
		return c.printJSON(control.LabelLineArgs{Line: line, Label: strings.TrimSpace(pos[1])})
	}
	if strings.TrimSpace(pos[1]) == "" {
		fmt.Fprintf(c.out, "line %d has no label now\n", line)
		return nil
	}
	fmt.Fprintf(c.out, "line %d is labelled %s\n", line, strings.TrimSpace(pos[1]))
	return nil
}

func (c *client) logs(args []string) error {
	asJSON, _, err := c.flags("logs", args, 0)
	if err != nil {
		return err
	}
	var lines []control.LogLine
	if err := c.call(control.CmdLogs, nil, &lines); err != nil {
		return err
	}
	if asJSON {
		if lines == nil {
			lines = []control.LogLine{}
		}
		return c.printJSON(lines)
	}
	if len(lines) == 0 {
		fmt.Fprintln(c.out, "no warnings or errors since peerlined started")
		return nil
	}
	for _, l := range lines {
		fmt.Fprintf(c.out, "%s %s %s\n", l.Time.Local().Format("2006-01-02 15:04:05"), l.Level, l.Text)
	}
	return nil
}
