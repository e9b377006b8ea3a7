package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/control"
)

// callsClient is a client of a control server that answers calls with
// calls.
func callsClient(t *testing.T, calls []control.CallInfo) (*client, *bytes.Buffer) {
	t.Helper()
	now = func() time.Time { return t0 }
	t.Cleanup(func() { now = time.Now })
	socket := filepath.Join(t.TempDir(), control.SocketName)
	srv, err := control.Listen(socket, map[string]control.Handler{
		control.CmdCalls: func(context.Context, json.RawMessage) (any, error) { return calls, nil },
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	var out bytes.Buffer
	return &client{out: &out, call: func(command string, args, result any) error {
		return control.Call(ctx, socket, command, args, result)
	}}, &out
}

func TestCalls(t *testing.T) {
	calls := []control.CallInfo{
		{
			ID: 4, State: control.CallLive, MOS: 4.38,
			Peer: 7, PeerName: "bob", Line: 1,
			Local: netip.MustParseAddrPort("10.0.1.1:10000"), Remote: netip.MustParseAddrPort("10.7.2.1:20000"),
			Since: t0.Add(-90 * time.Second), LastPacket: t0,
			Sent:           control.CallStream{Packets: 4500, Expected: 4500, ClockRate: 8000},
			Received:       control.CallStream{Packets: 4491, Expected: 4500, Lost: 9, LossPercent: 0.2, Jitter: control.Duration(2340 * time.Microsecond), ClockRate: 8000},
			RewriteDropped: []control.ReasonCount{{Reason: "inbound sip_flood", Count: 1200}},
		},
		{
			// Early media only one way, payload type unknown: no jitter.
			ID: 2, State: control.CallEnded,
			Peer: 9, Line: 2,
			Local: netip.MustParseAddrPort("10.0.2.1:10002"), Remote: netip.MustParseAddrPort("10.9.1.1:30000"),
			Since: t0.Add(-5 * time.Second), LastPacket: t0.Add(-4 * time.Second),
			Received: control.CallStream{Packets: 50, Expected: 50, PayloadType: 96},
		},
	}
	c, out := callsClient(t, calls)
	if err := c.calls(nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ID  PEER     LINE  REMOTE    STATE  LENGTH  SENT  RECEIVED  LOSS  JITTER  MOS  LAST PACKET",
		"4   7 (bob)  1     10.7.2.1  live   1m30s   4500  4491      0.2%  2.3 ms  4.4  0s ago",
		"2   9        2     10.9.1.1  ended  1s      0     50        0.0%  -       -    4s ago",
		"peer 7's tunnel dropped: inbound sip_flood 1200",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("calls output lacks %q:\n%s", want, out)
		}
	}

	out.Reset()
	if err := c.calls([]string{"--json"}); err != nil {
		t.Fatal(err)
	}
	var got []control.CallInfo
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || len(got) != 2 || got[0].Received.Lost != 9 || got[1].Remote != calls[1].Remote ||
		len(got[0].RewriteDropped) != 1 || got[0].RewriteDropped[0].Count != 1200 {
		t.Errorf("calls --json = %+v, %v:\n%s", got, err, out)
	}
}

func TestCallsNone(t *testing.T) {
	c, out := callsClient(t, nil)
	if err := c.calls(nil); err != nil || !strings.Contains(out.String(), "no calls") {
		t.Errorf("calls = %v, output %q, want it to say there are none", err, out)
	}
	out.Reset()
	if err := c.calls([]string{"--json"}); err != nil || strings.TrimSpace(out.String()) != "[]" {
		t.Errorf("calls --json = %v, output %q, want []", err, out)
	}
	if err := c.calls([]string{"extra"}); ExitCode(err) != 2 {
		t.Errorf("calls extra = %v, want a usage error", err)
	}
}
