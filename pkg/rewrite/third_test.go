package rewrite

import (
	"bytes"
	"strings"
	"testing"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/sipmsg"
)

// The keys of three nodes: Alice numbers Bob 7 and Carol 9; Bob numbers
// Alice 4 and Carol 5.
var (
	aliceKey = nodekey.Key{1}
	bobKey   = nodekey.Key{2}
	carolKey = nodekey.Key{3}
	daveKey  = nodekey.Key{4}
)

// referFromBob is the REFER Bob's phone sends to transfer Alice's call to
// Carol's phone.
const referFromBob = "REFER sip:a@10.4.1.1:5060 SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 10.0.1.1:5060;branch=z9hG4bK1\r\n" +
	"To: <sip:a@10.4.1.1>;tag=1\r\n" +
	"From: <sip:b@10.0.1.1>;tag=2\r\n" +
	"Call-ID: x@10.0.1.1\r\n" +
	"CSeq: 3 REFER\r\n" +
	"Contact: <sip:b@10.0.1.1:5060>\r\n" +
	"Refer-To: <sip:c@10.5.1.1>\r\n" +
	"Referred-By: <sip:b@10.0.1.1>\r\n" +
	"Content-Length: 0\r\n\r\n"

// TestTransferToThirdNode sends Bob's REFER through Bob's Device (out of
// tunnel 4) and Alice's (in from tunnel 7): Alice's phone must be told to
// call Carol at Alice's own index for her, 9.
func TestTransferToThirdNode(t *testing.T) {
	atBob := Wrap(newFakeTUN(udp4("10.0.1.1", "10.4.1.1", 5060, 5060, []byte(referFromBob))), 4, nil)
	atBob.SetThirdNodes(NewThirdNodes(bobKey, aliceKey, map[int]nodekey.Key{4: aliceKey, 5: carolKey}))
	bufs := [][]byte{make([]byte, testOffset+2048)}
	sizes := make([]int, 1)
	if n, err := atBob.Read(bufs, sizes, testOffset); n != 1 || err != nil {
		t.Fatalf("Read() = %d, %v", n, err)
	}
	wire := append([]byte(nil), bufs[0][testOffset:testOffset+sizes[0]]...)
	checkPacket(t, wire)
	if bytes.Contains(wire, []byte("10.5.1.1")) || !bytes.Contains(wire, []byte(".peerline.invalid>")) {
		t.Errorf("on the wire, Carol's phone should be a wire name:\n%s", wire[28:])
	}

	for _, tt := range []struct {
		name  string
		nodes map[int]nodekey.Key
		want  string
	}{
		{"Alice knows Carol", map[int]nodekey.Key{7: bobKey, 9: carolKey, 3: daveKey}, "Refer-To: <sip:c@10.9.1.1>\r\n"},
		{"Alice does not know Carol", map[int]nodekey.Key{7: bobKey, 3: daveKey}, ".peerline.invalid>\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			inner := newFakeTUN()
			atAlice := Wrap(inner, 7, nil)
			atAlice.SetThirdNodes(NewThirdNodes(aliceKey, bobKey, tt.nodes))
			buf := make([]byte, testOffset+len(wire), 4096)
			copy(buf[testOffset:], wire)
			if n, err := atAlice.Write([][]byte{buf}, testOffset); n != 1 || err != nil {
				t.Fatalf("Write() = %d, %v", n, err)
			}
			if len(inner.written) != 1 {
				t.Fatalf("wrote %d packets", len(inner.written))
			}
			got := inner.written[0]
			checkPacket(t, got)
			msg := string(got[28:])
			for _, want := range []string{tt.want, "Referred-By: <sip:b@10.7.1.1>\r\n", "REFER sip:a@10.0.1.1:5060 SIP/2.0\r\n"} {
				if !strings.Contains(msg, want) {
					t.Errorf("at Alice's phone, missing %q:\n%s", want, msg)
				}
			}
		})
	}
}

func TestThirdNodesTags(t *testing.T) {
	atBob := NewThirdNodes(bobKey, aliceKey, map[int]nodekey.Key{4: aliceKey, 5: carolKey, 6: daveKey, 0: carolKey, 254: daveKey})
	atAlice := NewThirdNodes(aliceKey, bobKey, map[int]nodekey.Key{7: bobKey, 9: carolKey})
	onOtherTunnel := NewThirdNodes(aliceKey, daveKey, map[int]nodekey.Key{9: carolKey})
	carol, ok := atBob.WireTag([4]byte{10, 5, 1, 1})
	if !ok {
		t.Fatal("Bob's tunnel to Alice does not name Carol")
	}
	if got, _ := atAlice.WireTag([4]byte{10, 9, 2, 1}); got != carol {
		t.Errorf("the two ends disagree on Carol's tag: %x, %x", carol, got)
	}
	if other, _ := onOtherTunnel.WireTag([4]byte{10, 9, 1, 1}); other == carol {
		t.Error("Carol has the same tag on two tunnels: a tag would mean something off its tunnel")
	}
	for _, a := range [][4]byte{{10, 4, 1, 1}, {10, 0, 1, 1}, {10, 254, 1, 1}, {10, 8, 1, 1}, {192, 5, 1, 1}} {
		if _, ok := atBob.WireTag(a); ok {
			t.Errorf("WireTag(%v) named: only third nodes Bob knows have tags", a)
		}
	}
	if i, ok := atAlice.LocalNode(carol); !ok || i != 9 {
		t.Errorf("Alice's LocalNode(Carol) = %d, %v, want 9", i, ok)
	}
	var none *ThirdNodes
	if _, ok := none.WireTag([4]byte{10, 5, 1, 1}); ok {
		t.Error("nil ThirdNodes names a node")
	}
	var _ sipmsg.Third = none
}
