package control

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLossPercent(t *testing.T) {
	tests := []struct {
		name     string
		expected uint64
		lost     int64
		want     float64
	}{
		{"nothing expected", 0, 0, 0},
		{"nothing lost", 500, 0, 0},
		{"duplicates outnumber losses", 500, -3, 0},
		{"one in a thousand", 1000, 1, 0.1},
		{"half", 200, 100, 50},
		{"more lost than expected (wrapped counters)", 10, 20, 100},
	}
	for _, tt := range tests {
		if got := LossPercent(tt.expected, tt.lost); got != tt.want {
			t.Errorf("%s: LossPercent(%d, %d) = %v, want %v", tt.name, tt.expected, tt.lost, got, tt.want)
		}
	}
}

// TestCallInfoJSON fixes the field names scripts read.
func TestCallInfoJSON(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	in := CallInfo{
		Peer: 7, PeerName: "bob", Line: 1,
		Local:  netip.MustParseAddrPort("10.0.1.1:10000"),
		Remote: netip.MustParseAddrPort("10.7.2.1:20000"),
		Since:  t0, LastPacket: t0.Add(time.Minute),
		Sent:     CallStream{Packets: 3000, Expected: 3000, PayloadType: 0, ClockRate: 8000},
		Received: CallStream{Packets: 2997, Expected: 3000, Lost: 3, LossPercent: 0.1, Jitter: Duration(2500 * time.Microsecond), ClockRate: 8000},
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"peer":7`, `"peer_name":"bob"`, `"line":1`, `"remote":"10.7.2.1:20000"`, `"loss_percent":0.1`, `"jitter_ms":2.500`, `"since":"2026-11-23T12:00:00Z"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON %s lacks %s", b, want)
		}
	}
	var out CallInfo
	if err := json.Unmarshal(b, &out); err != nil || !reflect.DeepEqual(out, in) {
		t.Errorf("round trip = %+v, %v, want %+v", out, err, in)
	}
}
