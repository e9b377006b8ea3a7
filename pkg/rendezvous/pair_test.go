package rendezvous

import (
	"bytes"
	"reflect"
	"testing"
)

func TestPair(t *testing.T) {
	a, b, c := key(t), key(t), key(t)
	ab, _ := PeerAEAD(a, b.Public())
	ba, _ := PeerAEAD(b, a.Public())
	ca, _ := PeerAEAD(c, a.Public())
	for _, data := range [][]byte{{}, []byte("hello"), bytes.Repeat([]byte{7}, MaxPairData)} {
		want := PairMsg{Sender: a.Public(), Time: 1700000000123, Data: data}
		pkt, err := AppendPair([]byte("x"), ab, b.Public(), want)
		if err != nil {
			t.Fatal(err)
		}
		pkt = pkt[1:]
		if len(pkt) != MinPairLen+len(data) || !IsRendezvous(pkt) {
			t.Fatalf("pair datagram of %d bytes for %d of data, want %d with the magic", len(pkt), len(data), MinPairLen+len(data))
		}
		if typ, err := ParseHeader(pkt); err != nil || typ != TypePair {
			t.Fatalf("ParseHeader = %v, %v", typ, err)
		}
		if _, ok := ProbeSender(pkt); ok && len(pkt) == ProbeLen {
			t.Fatal("a pair datagram passes for a probe")
		}
		got, err := OpenPair(pkt, ba, b.Public())
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("OpenPair = %+v, %v; want %+v", got, err, want)
		}
		if _, err := OpenPair(pkt, ca, b.Public()); err == nil {
			t.Error("a third node's key opened it")
		}
		if _, err := OpenPair(pkt, ba, c.Public()); err == nil {
			t.Error("it opened for another recipient")
		}
		bad := bytes.Clone(pkt)
		bad[len(bad)-1] ^= 1
		if _, err := OpenPair(bad, ba, b.Public()); err == nil {
			t.Error("a changed datagram opened")
		}
	}
	if _, err := AppendPair(nil, ab, b.Public(), PairMsg{Data: make([]byte, MaxPairData+1)}); err == nil {
		t.Error("AppendPair took more than MaxPairData")
	}
}

// FuzzOpenPair: whatever arrives, opening it as pairing data never panics,
// and nothing but the datagram the two nodes sealed opens.
func FuzzOpenPair(f *testing.F) {
	a, b := key(f), key(f)
	ab, _ := PeerAEAD(a, b.Public())
	ba, _ := PeerAEAD(b, a.Public())
	good, err := AppendPair(nil, ab, b.Public(), PairMsg{Sender: a.Public(), Time: 5, Data: []byte("hello")})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:MinPairLen-1])
	probe, _ := AppendProbe(nil, ab, b.Public(), Probe{Sender: a.Public()})
	f.Add(probe)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		m, err := OpenPair(pkt, ba, b.Public())
		if err != nil {
			return
		}
		if !bytes.Equal(pkt, good) || m.Sender != a.Public() || string(m.Data) != "hello" {
			t.Fatalf("a datagram that is not the sealed one opened: % x", pkt)
		}
	})
}
