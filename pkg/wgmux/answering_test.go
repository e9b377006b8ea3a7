package wgmux

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
)

// TestNoInitiationWhileAnswering: an initiation the device sends while it
// has the peer's to answer does not go on the wire at once (answering.go);
// once the device answered, or after crossHold, its initiations go again.
func TestNoInitiationWhileAnswering(t *testing.T) {
	k, err := nodekey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	m, err := Listen("127.0.0.1:0", k, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	peer, err := nodekey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	b := m.Bind(peer.Public())
	ep, err := b.ParseEndpoint(sink.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	idx := uint32(7)
	initiation := func() []byte {
		idx++
		p := make([]byte, initiationLen)
		p[0] = msgInitiation
		binary.LittleEndian.PutUint32(p[4:], idx)
		return p
	}
	got := func() bool {
		t.Helper()
		sink.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		buf := make([]byte, 256)
		n, _, err := sink.ReadFrom(buf)
		return err == nil && n == initiationLen
	}
	tests := []struct {
		name      string
		answering time.Duration // ago; < 0: not answering
		answered  bool          // the device sent its response since
		sent      bool
	}{
		{"nothing to answer", -1, false, true},
		{"the peer's initiation just handed over", 0, false, false},
		{"handed over, and answered", 0, true, true},
		{"handed over crossHold ago, never answered", crossHold, false, true},
	}
	for _, tt := range tests {
		b.crossMu.Lock()
		b.answering = time.Time{}
		if tt.answering >= 0 {
			b.answering = time.Now().Add(-tt.answering)
		}
		b.crossMu.Unlock()
		if tt.answered {
			resp := make([]byte, responseLen)
			resp[0] = msgResponse
			if err := b.Send([][]byte{resp}, ep); err != nil {
				t.Fatal(err)
			}
			sink.SetReadDeadline(time.Now().Add(time.Second))
			sink.ReadFrom(make([]byte, 256)) // the response
		}
		if err := b.Send([][]byte{initiation()}, ep); err != nil {
			t.Fatal(err)
		}
		if sent := got(); sent != tt.sent {
			t.Errorf("%s: initiation sent %v, want %v", tt.name, sent, tt.sent)
		}
	}
}

// TestHeldInitiation: an initiation the device sends while it has the
// peer's to answer is held, not recorded as sent (CopyInitiation would send
// it), and goes crossHold after the peer's was handed over if the device
// did not answer; if the answer goes out, it is discarded.
func TestHeldInitiation(t *testing.T) {
	k, err := nodekey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	m, err := Listen("127.0.0.1:0", k, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	idx := uint32(40)
	for _, answer := range []bool{false, true} {
		peer, err := nodekey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		b := m.Bind(peer.Public())
		if _, _, err := b.Open(0); err != nil {
			t.Fatal(err)
		}
		ep, err := b.ParseEndpoint(sink.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		idx++
		p := make([]byte, initiationLen)
		p[0] = msgInitiation
		binary.LittleEndian.PutUint32(p[4:], idx)
		handed := time.Now()
		b.crossMu.Lock()
		b.answering = handed
		b.crossMu.Unlock()
		if err := b.Send([][]byte{p}, ep); err != nil {
			t.Fatal(err)
		}
		b.sentMu.Lock()
		recorded := !b.sent.at.IsZero()
		b.sentMu.Unlock()
		if recorded {
			t.Errorf("answer %v: a held initiation is recorded as sent", answer)
		}
		if answer {
			resp := make([]byte, responseLen)
			resp[0] = msgResponse
			if err := b.Send([][]byte{resp}, ep); err != nil {
				t.Fatal(err)
			}
		}
		// What reaches the sink until crossHold and a margin after.
		var got []byte
		for {
			sink.SetReadDeadline(handed.Add(crossHold + 500*time.Millisecond))
			buf := make([]byte, 256)
			n, _, err := sink.ReadFrom(buf)
			if err != nil {
				break
			}
			if n == initiationLen && buf[0] == msgInitiation {
				got = buf[:n]
				if since := time.Since(handed); since < crossHold-50*time.Millisecond {
					t.Errorf("answer %v: held initiation went %v after the peer's was handed over, before crossHold", answer, since)
				}
				break
			}
		}
		switch {
		case answer && got != nil:
			t.Errorf("answer %v: the held initiation went out after the device answered", answer)
		case !answer && got == nil:
			t.Errorf("answer %v: the held initiation did not go out crossHold after, unanswered", answer)
		case !answer && binary.LittleEndian.Uint32(got[4:]) != idx:
			t.Errorf("answer %v: initiation %d went out, want %d", answer, binary.LittleEndian.Uint32(got[4:]), idx)
		}
		b.sentMu.Lock()
		recorded = !b.sent.at.IsZero() && binary.LittleEndian.Uint32(b.sent.msg[4:]) == idx
		b.sentMu.Unlock()
		if recorded == answer {
			t.Errorf("answer %v: recorded as sent after crossHold %v, want %v", answer, recorded, !answer)
		}
		// Close stops the loss repair's resend of what went out.
		b.Close()
	}
}
