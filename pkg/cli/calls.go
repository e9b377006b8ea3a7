package cli

import (
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/peerline/peerline/pkg/control"
)

// calls prints the live calls through the tunnels, then those of the last
// 24 h, with their media quality. Loss, jitter and MOS are those of the
// received direction: what the local phone hears after the Internet, the
// side worth looking at when someone complains; --json has both
// directions.
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
		fmt.Fprintln(c.out, "no calls through the tunnels in the last 24 hours")
		return nil
	}
	w := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tPEER\tLINE\tREMOTE\tSTATE\tLENGTH\tSENT\tRECEIVED\tLOSS\tJITTER\tMOS\tLAST PACKET")
	for _, k := range calls {
		peer := strconv.Itoa(k.Peer)
		if k.PeerName != "" {
			peer += " (" + k.PeerName + ")"
		}
		r := k.Received
		loss, jitter, mos := "-", "-", "-"
		if r.Expected > 0 {
			loss = strconv.FormatFloat(r.LossPercent, 'f', 1, 64) + "%"
		}
		if r.ClockRate > 0 && r.Packets > 1 {
			jitter = strconv.FormatFloat(float64(r.Jitter)/float64(time.Millisecond), 'f', 1, 64) + " ms"
		}
		if k.MOS > 0 {
			mos = strconv.FormatFloat(k.MOS, 'f', 1, 64)
		}
		state := k.State
		if state == "" {
			state = "-"
		}
		// The address the phone dials; the media port is in --json.
		addr := "-"
		if k.Remote.IsValid() {
			addr = k.Remote.Addr().String()
		}
		length := k.LastPacket.Sub(k.Since).Round(time.Second)
		fmt.Fprintf(w, "%d\t%s\t%d\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", k.ID, peer, k.Line, addr, state, max(length, 0),
			k.Sent.Packets, r.Packets, loss, jitter, mos, ago(k.LastPacket))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	// A hang-up or re-INVITE that never arrived is often explained by
	// what the tunnel's rewriter dropped: once per peer.
	seen := map[int]bool{}
	for _, k := range calls {
		if len(k.RewriteDropped) == 0 || seen[k.Peer] {
			continue
		}
		seen[k.Peer] = true
		fmt.Fprintf(c.out, "peer %d's tunnel dropped: %s\n", k.Peer, control.ReasonText(k.RewriteDropped))
	}
	return nil
}
