package ntpd

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

// clientPacket is a 48-byte request: LI 0, version vn, mode, and transmit
// timestamp xmt (what the client will look for as origin).
func clientPacket(vn, mode byte, xmt time.Time) []byte {
	b := make([]byte, headerLen)
	b[0] = vn<<3 | mode
	b[2] = 6 // poll 64 s
	putTimestamp(b[offTransmit:], xmt)
	return b
}

var (
	t0     = time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)
	synced = Clock{Synced: true, MaxError: 250 * time.Millisecond}
)

func TestRespondRejects(t *testing.T) {
	tests := []struct {
		name string
		req  []byte
	}{
		{"empty", nil},
		{"short header", clientPacket(4, modeClient, t0)[:47]},
		{"version 0", clientPacket(0, modeClient, t0)},
		{"version 5", clientPacket(5, modeClient, t0)},
		{"version 7", clientPacket(7, modeClient, t0)},
		{"server mode", clientPacket(4, modeServer, t0)},
		{"symmetric active", clientPacket(4, 1, t0)},
		{"broadcast", clientPacket(4, 5, t0)},
		{"control (ntpq)", clientPacket(2, 6, t0)},
		{"private (monlist)", clientPacket(2, 7, t0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if resp, ok := Respond(tt.req, t0, t0, synced); ok {
				t.Errorf("Respond(%x) = %x, want no answer", tt.req, resp)
			}
		})
	}
}

func TestRespondSynced(t *testing.T) {
	xmt := t0.Add(-3 * time.Hour) // a client far off
	rx := t0
	tx := t0.Add(150 * time.Microsecond)
	for vn := byte(1); vn <= 4; vn++ {
		req := clientPacket(vn, modeClient, xmt)
		resp, ok := Respond(req, rx, tx, synced)
		if !ok {
			t.Fatalf("version %d: no answer", vn)
		}
		if len(resp) != headerLen {
			t.Fatalf("version %d: len = %d, want %d", vn, len(resp), headerLen)
		}
		if got, want := resp[0], vn<<3|modeServer; got != want {
			t.Errorf("version %d: LI/VN/mode = %#x, want %#x", vn, got, want)
		}
		if resp[1] != 2 {
			t.Errorf("version %d: stratum = %d, want 2", vn, resp[1])
		}
		if resp[2] != req[2] {
			t.Errorf("poll = %d, want the request's %d", resp[2], req[2])
		}
		if int8(resp[3]) != precision {
			t.Errorf("precision = %d, want %d", int8(resp[3]), precision)
		}
		if !bytes.Equal(resp[offOrigin:offOrigin+8], req[offTransmit:offTransmit+8]) {
			t.Errorf("origin %x, want the request's transmit %x", resp[offOrigin:offOrigin+8], req[offTransmit:offTransmit+8])
		}
		if got := timestamp(resp[offReceive:], t0); !near(got, rx) {
			t.Errorf("receive = %v, want %v", got, rx)
		}
		if got := timestamp(resp[offTransmit:], t0); !near(got, tx) {
			t.Errorf("transmit = %v, want %v", got, tx)
		}
		ref := timestamp(resp[offRefTime:], t0)
		if ref.After(rx) || rx.Sub(ref) > 64*time.Second {
			t.Errorf("reference time %v, want within 64 s before %v", ref, rx)
		}
		if got, want := binary.BigEndian.Uint32(resp[offRootDisp:]), uint32(0x4000); got != want {
			t.Errorf("root dispersion = %#x, want %#x (0.25 s)", got, want)
		}
	}
}

func TestRespondUnsynced(t *testing.T) {
	req := clientPacket(4, modeClient, t0)
	resp, ok := Respond(req, t0, t0, Clock{})
	if !ok {
		t.Fatal("no answer: a kiss-o'-death was expected")
	}
	if li := resp[0] >> 6; li != leapAlarm {
		t.Errorf("LI = %d, want %d (alarm)", li, leapAlarm)
	}
	if resp[1] != 0 {
		t.Errorf("stratum = %d, want 0 (kiss-o'-death)", resp[1])
	}
	if got := string(resp[offRefID : offRefID+4]); got != "INIT" {
		t.Errorf("kiss code = %q, want INIT", got)
	}
	zero := make([]byte, 8)
	for name, off := range map[string]int{"reference": offRefTime, "receive": offReceive, "transmit": offTransmit} {
		if !bytes.Equal(resp[off:off+8], zero) {
			t.Errorf("%s timestamp = %x, want zero: no time may leak from an unsynchronized clock", name, resp[off:off+8])
		}
	}
	if !bytes.Equal(resp[offOrigin:offOrigin+8], req[offTransmit:offTransmit+8]) {
		t.Error("origin must echo the request's transmit timestamp so the client can match the reply")
	}
}

func TestRespondNeverAmplifies(t *testing.T) {
	req := append(clientPacket(4, modeClient, t0), make([]byte, 68)...) // extension field + MAC
	resp, ok := Respond(req, t0, t0, synced)
	if !ok || len(resp) != headerLen {
		t.Fatalf("Respond(%d bytes) = %d bytes, %v; want %d bytes", len(req), len(resp), ok, headerLen)
	}
}

func TestTimestampRoundTrip(t *testing.T) {
	for _, tm := range []time.Time{
		t0,
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2036, 2, 7, 6, 28, 15, 999999999, time.UTC), // last second of era 0
		time.Date(2036, 2, 7, 6, 28, 16, 0, time.UTC),         // first of era 1
		time.Date(2060, 1, 1, 0, 0, 0, 5, time.UTC),
	} {
		b := make([]byte, 8)
		putTimestamp(b, tm)
		if got := timestamp(b, tm.Add(40*365*24*time.Hour)); !near(got, tm) {
			t.Errorf("timestamp(putTimestamp(%v)) = %v", tm, got)
		}
	}
}

func TestShortFormat(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want uint32
	}{
		{-time.Second, 0},
		{0, 0},
		{time.Second, 0x10000},
		{1500 * time.Millisecond, 0x18000},
		{70000 * time.Second, 0xffffffff},
	}
	for _, tt := range tests {
		if got := shortFormat(tt.d); got != tt.want {
			t.Errorf("shortFormat(%v) = %#x, want %#x", tt.d, got, tt.want)
		}
	}
}

// near allows for the 2^-32 s resolution of NTP timestamps.
func near(a, b time.Time) bool {
	d := a.Sub(b)
	return d > -time.Microsecond && d < time.Microsecond
}

func FuzzHandle(f *testing.F) {
	for vn := byte(0); vn < 8; vn++ {
		for mode := byte(0); mode < 8; mode++ {
			f.Add(clientPacket(vn, mode, t0))
		}
	}
	f.Add([]byte{})
	f.Add(append(clientPacket(4, modeClient, t0), 1, 2, 3))
	f.Fuzz(func(t *testing.T, req []byte) {
		for _, c := range []Clock{synced, {}} {
			resp, ok := Respond(req, t0, t0, c)
			if !ok {
				if resp != nil {
					t.Fatal("no answer but bytes returned")
				}
				continue
			}
			if len(resp) > len(req) || len(resp) != headerLen {
				t.Fatalf("answer of %d bytes to a request of %d", len(resp), len(req))
			}
			if req[0]&7 != modeClient || resp[0]&7 != modeServer || resp[0]>>3&7 != req[0]>>3&7 {
				t.Fatalf("answered %#x with %#x", req[0], resp[0])
			}
			if !bytes.Equal(resp[offOrigin:offOrigin+8], req[offTransmit:offTransmit+8]) {
				t.Fatal("origin is not the request's transmit timestamp")
			}
			if !c.Synced && (resp[0]>>6 != leapAlarm || resp[1] != 0) {
				t.Fatal("unsynchronized clock answered without alarm")
			}
		}
	})
}
