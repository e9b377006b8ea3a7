package lab

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNetstring(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr bool // after the wanted messages
	}{
		{name: "two", in: `5:hello,0:,`, want: []string{"hello", ""}},
		{name: "json", in: `49:{"response":true,"ok":true,"data":"","token":"1"},`, want: []string{`{"response":true,"ok":true,"data":"","token":"1"}`}},
		{name: "missing comma", in: `5:hello;`, wantErr: true},
		{name: "bad length", in: `x:hello,`, wantErr: true},
		{name: "negative", in: `-1:,`, wantErr: true},
		{name: "too long", in: `99999:`, wantErr: true},
		{name: "truncated", in: `5:hel`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReader(strings.NewReader(tt.in))
			for _, w := range tt.want {
				got, err := readNetstring(r, 1000)
				if err != nil || string(got) != w {
					t.Fatalf("readNetstring() = %q, %v, want %q", got, err, w)
				}
			}
			_, err := readNetstring(r, 1000)
			if tt.wantErr && (err == nil || err == io.EOF) {
				t.Errorf("readNetstring() at end = %v, want a format error", err)
			}
			if !tt.wantErr && err != io.EOF {
				t.Errorf("readNetstring() at end = %v, want io.EOF", err)
			}
		})
	}
	if got := string(appendNetstring(nil, []byte("hello"))); got != "5:hello," {
		t.Errorf("appendNetstring(hello) = %q, want %q", got, "5:hello,")
	}
}

func TestEventDecode(t *testing.T) {
	// Captured from baresip 1.0.0 ctrl_tcp.
	msgs := []string{
		`{"event":true,"type":"CALL_ESTABLISHED","class":"call","accountaor":"sip:b@10.0.1.2","direction":"incoming","peeruri":"sip:a@10.0.1.1","id":"1fcd69ffd6b95b8d","param":"sip:a@10.0.1.1"}`,
		`{"event":true,"type":"CALL_RTCP","class":"call","accountaor":"sip:a@10.0.1.1","direction":"outgoing","peeruri":"sip:b@10.0.1.2","id":"1fcd69ffd6b95b8d","param":"audio","rtcp_stats":{"tx":{"sent":250,"lost":0,"jit":125},"rx":{"sent":251,"lost":2,"jit":1000},"rtt":300}}`,
	}
	var evs []Event
	for _, m := range msgs {
		var ev Event
		if err := json.Unmarshal([]byte(m), &ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if got := evs[0]; got.Type != EventCallEstablished || got.Direction != "incoming" || got.PeerURI != "sip:a@10.0.1.1" || got.CallID != "1fcd69ffd6b95b8d" || got.RTCP != nil {
		t.Errorf("established event = %+v", got)
	}
	want := RTCPStats{Tx: RTCPDir{Sent: 250, Jitter: 125}, Rx: RTCPDir{Sent: 251, Lost: 2, Jitter: 1000}, RTT: 300}
	if got := evs[1].RTCP; got == nil || *got != want {
		t.Errorf("rtcp stats = %+v, want %+v", got, want)
	}
}

func TestWaitIncoming(t *testing.T) {
	p := &Phone{cursors: map[string]int{}, incomingSeen: map[string]bool{}, notify: make(chan struct{})}
	add := func(typ, dir, id, peer string) {
		p.handle(ctrlMsg{Event: true}, Event{Type: typ, Direction: dir, CallID: id, PeerURI: peer})
	}
	p.log = discardLogger()
	// An auto-answered call (no CALL_INCOMING), then a manually answered one.
	add(EventCallRemoteSDP, "incoming", "c1", "sip:a@10.0.1.1")
	add(EventCallEstablished, "incoming", "c1", "sip:a@10.0.1.1")
	add(EventCallClosed, "incoming", "c1", "sip:a@10.0.1.1")
	add(EventCallEstablished, "outgoing", "c2", "sip:a@10.0.1.1")
	add(EventCallIncoming, "incoming", "c3", "sip:c@10.0.1.3")
	add(EventCallEstablished, "incoming", "c3", "sip:c@10.0.1.3")
	ctx := t.Context()
	for _, want := range []struct{ typ, id string }{{EventCallEstablished, "c1"}, {EventCallIncoming, "c3"}} {
		ev, err := p.WaitIncoming(ctx)
		if err != nil || ev.Type != want.typ || ev.CallID != want.id {
			t.Fatalf("WaitIncoming() = %+v, %v, want %s of %s", ev, err, want.typ, want.id)
		}
	}
	// Per-type cursors: established events are still all there.
	for _, id := range []string{"c1", "c2", "c3"} {
		ev, err := p.WaitEstablished(ctx)
		if err != nil || ev.CallID != id {
			t.Fatalf("WaitEstablished() = %+v, %v, want call %s", ev, err, id)
		}
	}
	// Nothing more: a bounded wait fails, and says what it saw.
	short, cancel := contextWithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := p.WaitIncoming(short); err == nil || !strings.Contains(err.Error(), "CALL_INCOMING") {
		t.Errorf("WaitIncoming() with no new call = %v, want a timeout listing the events", err)
	}
	// An event arriving while waiting wakes the waiter.
	go func() {
		time.Sleep(10 * time.Millisecond)
		add(EventCallClosed, "outgoing", "c2", "")
	}()
	if ev, err := p.WaitClosed(ctx); err != nil || ev.CallID != "c1" {
		t.Fatalf("WaitClosed() = %+v, %v, want c1", ev, err)
	}
	if ev, err := p.WaitClosed(ctx); err != nil || ev.CallID != "c2" {
		t.Fatalf("WaitClosed() = %+v, %v, want c2", ev, err)
	}
	// When the connection ends, waiters fail at once.
	p.mu.Lock()
	p.readErr = errors.New("baresip control connection closed")
	p.changedLocked()
	p.mu.Unlock()
	if _, err := p.WaitClosed(ctx); err == nil {
		t.Error("WaitClosed() after the connection ended = nil error")
	}
}

// Captured from baresip 1.0.0 logs: a short call without RTCP, with the
// status line that precedes it when statmode is on, and a longer one.
const baresipLog = `a@10.0.1.1: Call established: sip:b@10.0.1.2
[0:00:04] audio=64000/64000 (bit/s)    call: terminate call '1fcd69ffd6b95b8d' with sip:b@10.0.1.2
sip:a@10.0.1.1: Call with sip:b@10.0.1.2 terminated (duration: 4 secs)

audio           Transmit:     Receive:
packets:            200          200
avg. bitrate:      64.0         64.0  (kbit/s)
errors:               0            0
sip:a@10.0.1.1: Call with sip:b@10.0.1.2 terminated (duration: 1 min 7 secs)

audio           Transmit:     Receive:
packets:           3350         3348
avg. bitrate:      64.0         63.9  (kbit/s)
errors:               0            0
pkt.report:        3300         3290
lost:                 0            2
jitter:             0.3          1.1  (ms)
`

func TestParseCallStats(t *testing.T) {
	got := ParseCallStats(baresipLog)
	want := []CallStats{
		{Peer: "sip:b@10.0.1.2", Duration: 4 * time.Second, TxPackets: 200, RxPackets: 200, TxKbps: 64, RxKbps: 64},
		{Peer: "sip:b@10.0.1.2", Duration: 67 * time.Second, TxPackets: 3350, RxPackets: 3348, TxKbps: 64, RxKbps: 63.9,
			HaveRTCP: true, RxLost: 2, TxJitter: 0.3, RxJitter: 1.1},
	}
	if len(got) != len(want) {
		t.Fatalf("ParseCallStats() = %d summaries %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("ParseCallStats()[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestBaresipConfig(t *testing.T) {
	opts := PhoneOpts{Addr: "10.0.1.1", User: "a", AutoAnswer: true}
	if err := opts.setDefaults(); err != nil {
		t.Fatal(err)
	}
	cfg := BaresipConfig(opts, "/lab/tone.wav", "/lab/rec")
	for _, want := range []string{
		"sip_listen           10.0.1.1:5060\n",
		"audio_source         aufile,/lab/tone.wav\n",
		"audio_player         aubridge,nil\n",
		"module               g711.so\n",
		"module               sndfile.so\n",
		"module_app           ctrl_tcp.so\n",
		"ctrl_tcp_listen      127.0.0.1:4444\n",
		"snd_path             /lab/rec\n",
		"dns_server           127.0.0.1:53\n",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("BaresipConfig() lacks %q:\n%s", want, cfg)
		}
	}
	if got, want := BaresipAccount(opts), "<sip:a@10.0.1.1>;regint=0;answermode=auto\n"; got != want {
		t.Errorf("BaresipAccount() = %q, want %q", got, want)
	}
	opts = PhoneOpts{Addr: "10.0.1.2", SIPPort: 5070}
	opts.setDefaults()
	if got, want := BaresipAccount(opts), "<sip:phone@10.0.1.2:5070>;regint=0\n"; got != want {
		t.Errorf("BaresipAccount() = %q, want %q", got, want)
	}
	for _, bad := range []PhoneOpts{{}, {Addr: "::1"}, {Addr: "10.0.1.1", User: "a@b"}} {
		if err := bad.setDefaults(); err == nil {
			t.Errorf("PhoneOpts%+v.setDefaults() = nil, want an error", bad)
		}
	}
}

func TestWavComplete(t *testing.T) {
	dir := t.TempDir()
	hdr := func(riffSize uint32, body int) []byte {
		b := []byte("RIFF\x00\x00\x00\x00WAVE")
		b[4], b[5], b[6], b[7] = byte(riffSize), byte(riffSize>>8), byte(riffSize>>16), byte(riffSize>>24)
		return append(b, bytes.Repeat([]byte{0}, body)...)
	}
	tests := []struct {
		name string
		data []byte
		want bool
	}{
		{name: "finalized", data: hdr(4+100, 100), want: true},
		{name: "still writing", data: hdr(0, 100)},
		{name: "header only", data: hdr(36, 32)},
		{name: "not wav", data: append([]byte("OggS"), make([]byte, 100)...)},
	}
	for _, tt := range tests {
		path := filepath.Join(dir, tt.name+".wav")
		os.WriteFile(path, tt.data, 0o644)
		if got := wavComplete(path); got != tt.want {
			t.Errorf("wavComplete(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
}
