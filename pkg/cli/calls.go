package cli

import (
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/peerline/peerline/pkg/control"
)

// calls prints the calls through the tunnels and their media quality. Loss
// and jitter are those of the received direction: what the local phone
// hears after the Internet, the side worth looking at when someone
// complains; --json has both directions.
func (c *client) calls(args []string) error {
	asJSON, _, err := c.flags("calls", args, 0)
	if err != nil {
		return err
	}
	var calls []control.CallInfo
	if err := c.call(control.CmdCalls, nil, &calls); err != nil {
		return err
	}
	if asJSON {
		if calls == nil {
			calls = []control.CallInfo{}
		}
		return c.printJSON(calls)
	}
	if len(calls) == 0 {
		fmt.Fprintln(c.out, "no calls through the tunnels in the last few minutes")
		return nil
	}
	w := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "PEER\tLINE\tREMOTE\tSENT\tRECEIVED\tLOSS\tJITTER\tSINCE\tLAST PACKET")
	for _, k := range calls {
		peer := strconv.Itoa(k.Peer)
		if k.PeerName != "" {
			peer += " (" + k.PeerName + ")"
		}
		r := k.Received
		loss, jitter := "-", "-"
		if r.Expected > 0 {
			loss = strconv.FormatFloat(r.LossPercent, 'f', 1, 64) + "%"
		}
		if r.ClockRate > 0 && r.Packets > 1 {
			jitter = strconv.FormatFloat(float64(r.Jitter)/float64(time.Millisecond), 'f', 1, 64) + " ms"
		}
		// The address the phone dials; the media port is in --json.
		addr := "-"
		if k.Remote.IsValid() {
			addr = k.Remote.Addr().String()
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", peer, k.Line, addr, k.Sent.Packets, r.Packets, loss, jitter, ago(k.Since), ago(k.LastPacket))
	}
	return w.Flush()
}
