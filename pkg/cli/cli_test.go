package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/control"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// fakeDaemon answers the control commands from fixed data and records what
// it was asked to forget.
func fakeDaemon(t *testing.T) (socket string, forgotten *[]int) {
	t.Helper()
	now = func() time.Time { return t0 }
	t.Cleanup(func() { now = time.Now })
	hs := t0.Add(-42 * time.Second)
	rtt := control.Duration(23 * time.Millisecond)
	st := control.Status{
		Name: "alice", Version: "v1", PublicKey: "KEY=", Ready: true, Started: t0.Add(-time.Hour),
		Lines: []int{1, 2}, ActiveLines: []int{2},
		Peers: []control.Peer{
			{Index: 7, Name: "bob", Up: true, Online: true, Path: "direct", Endpoint: "198.51.100.2:51827", MTU: 1184, RTT: &rtt, LastHandshake: &hs,
				Rewrite: []control.DirectionCounters{
					{Direction: "outbound", Packets: 10, Dropped: []control.ReasonCount{{Reason: "sip_flood"}, {Reason: "no_room", Count: 1}}},
					{Direction: "inbound", Packets: 5000, SIPInDialog: 12,
						Dropped:    []control.ReasonCount{{Reason: "sip_flood", Count: 1200}, {Reason: "sip_refused", Count: 3}},
						SIPRefused: []control.ReasonCount{{Reason: "bad-content-length", Count: 3}},
						Latency:    &control.RewriterLatency{Sampled: 300, P50Ns: 450, P99Ns: 1900}},
				}},
			{Index: 9, Name: "carol", Error: "tunnel: UDP port in use"},
		},
	}
	phones := []control.Phone{
		{Line: 1, Label: "kitchen", MAC: "00:0b:82:01:02:03", Vendor: "Grandstream", Model: "GXP1610", Addr: netip.MustParseAddr("10.0.1.1"), Bound: t0.Add(-48 * time.Hour), LastSeen: t0.Add(-time.Minute)},
		{Line: 2, MAC: "80:5e:c0:01:02:03", Vendor: "Yealink", Addr: netip.MustParseAddr("10.0.2.1"), Bound: t0.Add(-time.Hour), LastSeen: t0, InCall: true},
	}
	var got []int
	socket = filepath.Join(t.TempDir(), control.SocketName)
	srv, err := control.Listen(socket, map[string]control.Handler{
		control.CmdStatus: func(context.Context, json.RawMessage) (any, error) { return st, nil },
		control.CmdPhones: func(context.Context, json.RawMessage) (any, error) { return phones, nil },
		control.CmdLines: func(context.Context, json.RawMessage) (any, error) {
			return control.Lines{
				Service: "on", Node: "alice",
				Lines: []control.Line{
					{Line: 1, Label: "kitchen", URIs: []string{"sip:1@alice", "sip:kitchen@alice"}, Address: netip.MustParseAddr("10.0.1.1"), Account: true,
						Registration: &control.Registration{Contact: "sip:1@10.0.1.1", Source: "10.0.1.1:5060", UserAgent: "GXP1610", Digest: "MD5", Expires: t0.Add(time.Hour)}},
					{Line: 2, URIs: []string{"sip:2@alice"}, Address: netip.MustParseAddr("10.0.2.1")},
				},
				Peers:     []control.PeerLine{{Peer: 7, Name: "bob", Line: 2, Label: "hall", URI: "sip:2@bob", Short: "7*2", Dial: "bob.2", Address: netip.MustParseAddr("10.7.2.1")}},
				Decisions: []control.DialDecision{{Time: t0.Add(-5 * time.Second), From: "10.0.1.1:5060", Dialled: "bob.2@10.0.1.2", Decision: "peer", Code: 302, Target: "sip:2@10.7.2.1", Reason: "name bob"}},
				Registrar: control.RegistrarCounts{Registered: 3, Challenged: 4, Refused: 1},
			}, nil
		},
		control.CmdTrunks: func(context.Context, json.RawMessage) (any, error) {
			until := t0.Add(250 * time.Second)
			return control.Trunks{Trunks: []control.Trunk{
				{Name: "sipgate", Registrar: "sipgate.de:5060", User: "4930123456", Prefix: "0", Lines: []int{1, 2}, State: "registered", Status: "registered", Contact: "sip:4930123456@203.0.113.5:40123", Until: &until, Calls: 1},
				{Name: "pbx", Registrar: "pbx.example:5060", User: "21", Lines: []int{3}, State: "waiting", Status: "waiting: line 3 is not up on the phone port yet"},
			}}, nil
		},
		control.CmdRename: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a control.RenameArgs
			json.Unmarshal(raw, &a)
			return control.PeerRef{Index: 7, Name: a.Name}, nil
		},
		control.CmdLabelLine: func(_ context.Context, raw json.RawMessage) (any, error) { return nil, nil },
		control.CmdLogs: func(context.Context, json.RawMessage) (any, error) {
			return []control.LogLine{{Time: t0, Level: "WARN", Text: "msg=trouble"}}, nil
		},
		control.CmdForgetPhone: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a control.ForgetPhoneArgs
			json.Unmarshal(raw, &a)
			if a.Line != 1 && a.Line != 2 {
				return nil, errors.New("line 5 has no phone; `peerline phones` lists the lines in use")
			}
			got = append(got, a.Line)
			return nil, nil
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return socket, &got
}

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := Main(context.Background(), args, &out, "test")
	return out.String(), err
}

func TestCommands(t *testing.T) {
	socket, forgotten := fakeDaemon(t)
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"status"}, []string{"node        alice", "ready       yes", "lines       1, 2", "in a call   2", "peers       2 paired, 1 online", "1h0m0s ago",
			"rewriter    1204 packets dropped (inbound sip_flood 1200, inbound sip_refused 3, outbound no_room 1): `peerline peers` says which peer"}},
		{[]string{"peers"}, []string{
			"INDEX  NAME   ONLINE                          PATH    RTT   MTU   NAT  LAST HANDSHAKE  DROPPED  ENDPOINT",
			"7      bob    yes                             direct  23ms  1184  -    42s ago         1204     198.51.100.2:51827",
			"9      carol  error: tunnel: UDP port in use  -       -     -     -    never           -        -",
			"peer 7 dropped: outbound no_room 1, inbound sip_flood 1200, inbound sip_refused 3 (bad-content-length 3)",
			"peer 7 rewriter: inbound p50 450ns p99 1.9µs per packet",
		}},
		{[]string{"phones"}, []string{
			"LINE  LABEL    MAC                MODEL    ADDRESS   LEASED       LAST SEEN  IN A CALL",
			"1     kitchen  00:0b:82:01:02:03  GXP1610  10.0.1.1  48h0m0s ago  1m0s ago   no",
			"2     -        80:5e:c0:01:02:03  Yealink  10.0.2.1  1h0m0s ago   0s ago     yes",
		}},
		{[]string{"lines"}, []string{
			"SIP service: on",
			"LINE  LABEL    ADDRESS   SIP URI                        ACCOUNT  REGISTERED",
			"1     kitchen  10.0.1.1  sip:1@alice sip:kitchen@alice  yes      from 10.0.1.1:5060 (GXP1610) with MD5, for 3600s",
			"2     -        10.0.2.1  sip:2@alice                    not yet  no",
			"PEER  NAME  LINE  LABEL  ADDRESS   SHORT  NAME TO DIAL  SIP URI",
			"7     bob   2     hall   10.7.2.1  7*2    bob.2         sip:2@bob",
			"5s ago  10.0.1.1:5060  bob.2@10.0.1.2  302 peer  sip:2@10.7.2.1  name bob",
			"registrar: 3 registered, 0 unregistered, 4 challenged, 1 refused, 0 rate-limited",
		}},
		{[]string{"lines", "--json"}, []string{`"uris": [`, `"sip:kitchen@alice"`, `"short": "7*2"`, `"decision": "peer"`}},
		{[]string{"trunks"}, []string{
			"NAME     REGISTRAR         USER        PREFIX  LINES  CALLS  STATUS",
			"sipgate  sipgate.de:5060   4930123456  0       1,2    1      registered as sip:4930123456@203.0.113.5:40123, for 250s",
			"pbx      pbx.example:5060  21          -       3      0      waiting: line 3 is not up on the phone port yet",
		}},
		{[]string{"trunks", "--json"}, []string{`"name": "sipgate"`, `"state": "waiting"`}},
		{[]string{"rename", "7", "Bob K."}, []string{"peer 7 is now called Bob K. here"}},
		{[]string{"phones", "label", "2", " hall "}, []string{"line 2 is labelled hall"}},
		{[]string{"logs"}, []string{"WARN msg=trouble"}},
		{[]string{"phones", "forget", "2"}, []string{"line 2 is free"}},
		{[]string{"phones", "forget", "1", "--json"}, []string{`"forgotten": 1`}},
	}
	for _, tt := range tests {
		out, err := run(t, append([]string{"-socket", socket}, tt.args...)...)
		if err != nil {
			t.Errorf("peerline %v: %v", tt.args, err)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("peerline %v output lacks %q:\n%s", tt.args, w, out)
			}
		}
	}
	if want := []int{2, 1}; len(*forgotten) != 2 || (*forgotten)[0] != 2 || (*forgotten)[1] != 1 {
		t.Errorf("daemon was asked to forget %v, want %v", *forgotten, want)
	}
}

func TestJSONOutputs(t *testing.T) {
	socket, _ := fakeDaemon(t)
	out, err := run(t, "-socket", socket, "peers", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var peers []control.Peer
	if err := json.Unmarshal([]byte(out), &peers); err != nil || len(peers) != 2 || peers[0].RTT == nil || time.Duration(*peers[0].RTT) != 23*time.Millisecond {
		t.Errorf("peers --json = %v, %v:\n%s", peers, err, out)
	}
	// The rewriter's counters by reason, in peers and status alike.
	for _, args := range [][]string{{"peers", "--json"}, {"status", "--json"}} {
		out, err := run(t, append([]string{"-socket", socket}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{`"reason": "sip_flood"`, `"count": 1200`, `"sip_in_dialog": 12`, `"p99_ns": 1900`, `"bad-content-length"`} {
			if !strings.Contains(out, want) {
				t.Errorf("peerline %v lacks %s:\n%s", args, want, out)
			}
		}
	}
	out, err = run(t, "-socket", socket, "phones", "-json")
	if err != nil {
		t.Fatal(err)
	}
	var phones []control.Phone
	if err := json.Unmarshal([]byte(out), &phones); err != nil || len(phones) != 2 || !phones[1].InCall {
		t.Errorf("phones --json = %v, %v:\n%s", phones, err, out)
	}
}

func TestErrors(t *testing.T) {
	socket, _ := fakeDaemon(t)
	tests := []struct {
		args     []string
		wantErr  string
		wantCode int
	}{
		{[]string{"-socket", socket, "phones", "forget", "5"}, "`peerline phones` lists", 1},
		{[]string{"-socket", socket, "phones", "forget", "x"}, `"x" is not a line number`, 1},
		{[]string{"-socket", socket, "phones", "forget"}, "bad usage", 2},
		{[]string{"-socket", socket, "dial"}, "bad usage", 2},
		{[]string{}, "bad usage", 2},
		{[]string{"-socket", filepath.Join(t.TempDir(), "none.sock"), "status"}, "systemctl start peerlined", 3},
		{[]string{"-config", filepath.Join(t.TempDir(), "none.json"), "status"}, "does not exist", 1},
	}
	for _, tt := range tests {
		_, err := run(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) || ExitCode(err) != tt.wantCode {
			t.Errorf("peerline %v = %v (exit %d), want an error containing %q, exit %d", tt.args, err, ExitCode(err), tt.wantErr, tt.wantCode)
		}
	}
}

// TestJoinError: a join whose answer was lost says that its outcome is
// unknown and how to find out; the daemon's own errors pass unchanged.
func TestJoinError(t *testing.T) {
	lost := joinError(fmt.Errorf("reading peerlined's answer: %w", io.ErrUnexpectedEOF))
	if !strings.Contains(lost.Error(), "peerline peers") || !errors.Is(lost, io.ErrUnexpectedEOF) {
		t.Errorf("lost answer: %v", lost)
	}
	remote := &control.RemoteError{Message: "this invite expired"}
	if got := joinError(remote); got != remote {
		t.Errorf("daemon's error became %v", got)
	}
	if got := joinError(control.ErrNoDaemon); got != control.ErrNoDaemon {
		t.Errorf("no daemon became %v", got)
	}
}
