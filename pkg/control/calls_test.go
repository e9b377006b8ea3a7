package control

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestCallInfoJSON fixes the field names scripts read.
func TestCallInfoJSON(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	rtt := Duration(42 * time.Millisecond)
	in := CallInfo{
		ID: 3, State: CallLive, RTT: &rtt, MOS: 4.38,
		Peer: 7, PeerName: "bob", Line: 1,
		Local:  netip.MustParseAddrPort("10.0.1.1:10000"),
		Remote: netip.MustParseAddrPort("10.7.2.1:20000"),
		Since:  t0, LastPacket: t0.Add(time.Minute),
		Sent:     CallStream{Packets: 3000, Expected: 3000, PayloadType: 0, ClockRate: 8000},
		Received: CallStream{Packets: 2997, Expected: 3000, Lost: 3, LossPercent: 0.1, Jitter: Duration(2500 * time.Microsecond), ClockRate: 8000, MOS: 4.38, MinMOS: 4.1},
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"peer":7`, `"peer_name":"bob"`, `"line":1`, `"remote":"10.7.2.1:20000"`, `"loss_percent":0.1`, `"jitter_ms":2.500`, `"since":"2026-11-23T12:00:00Z"`, `"id":3`, `"state":"live"`, `"rtt_ms":42.000`, `"mos":4.38`, `"min_mos":4.1`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON %s lacks %s", b, want)
		}
	}
	var out CallInfo
	if err := json.Unmarshal(b, &out); err != nil || !reflect.DeepEqual(out, in) {
		t.Errorf("round trip = %+v, %v, want %+v", out, err, in)
	}
}
