package wgmux

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
)

// TestNoInitiationWhileAnswering: an initiation the device sends while it
// has the peer's to answer does not go on the wire (answering.go); once the
// device answered, or after crossHold, its initiations go again.
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
