package rendezvous

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
)

// FuzzParseBody: no panic, and whatever parses appends to bytes that parse
// to the same message.
func FuzzParseBody(f *testing.F) {
	for _, m := range messages {
		f.Add(byte(m.Type()), m.Append(nil))
	}
	f.Fuzz(func(t *testing.T, typ byte, b []byte) {
		m, err := ParseBody(Type(typ), b)
		if err != nil {
			return
		}
		if m.Type() != Type(typ) {
			t.Fatalf("ParseBody(%s) returned a %s", Type(typ), m.Type())
		}
		again, err := ParseBody(m.Type(), m.Append(nil))
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip: %+v -> %+v, %v", m, again, err)
		}
	})
}

// FuzzParseEnvelope: no panic; a parsed envelope keeps its bytes; opening
// with a key never panics and random input never authenticates.
func FuzzParseEnvelope(f *testing.F) {
	var nk, sk nodekey.Key
	nk[0], sk[0] = 1, 2
	aead, err := NodeAEAD(nk, sk.Public())
	if err != nil {
		f.Fatal(err)
	}
	for _, m := range messages {
		b, _ := Seal(nil, aead, nk.Public(), [CookieLen]byte{}, time.Unix(0, 0), m, MinRequestLen)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEnvelope(b)
		if err != nil {
			return
		}
		if e.Len() != len(b) || !e.Type.Sealed() || !bytes.Equal(b[HeaderLen+CookieLen:][:nodekey.Len], e.Sender[:]) {
			t.Fatalf("envelope %+v does not match its bytes", e)
		}
		e.Open(aead, nil)
	})
}

func FuzzParseCookie(f *testing.F) {
	f.Add(Cookie{ServerTime: 5}.Append(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCookie(b)
		if err != nil {
			return
		}
		if !bytes.Equal(c.Append(nil), b) {
			t.Fatalf("ParseCookie(% x) = %+v, which appends differently", b, c)
		}
	})
}

func FuzzParseRelay(f *testing.F) {
	f.Add(AppendRelay(nil, 7, []byte("payload")))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, p, err := ParseRelay(b)
		if err != nil {
			return
		}
		if !bytes.Equal(AppendRelay(nil, id, p), b) {
			t.Fatalf("ParseRelay(% x) does not append back", b)
		}
	})
}

func FuzzParsePeerInfo(f *testing.F) {
	f.Add(PeerInfo{Time: 1, Local: []netip.AddrPort{ap4, ap6}}.Append(nil))
	f.Add(PeerInfo{Time: 2, Pair: []byte("hello")}.Append(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePeerInfo(b)
		if err != nil {
			return
		}
		again, err := ParsePeerInfo(p.Append(nil))
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("round trip: %+v -> %+v, %v", p, again, err)
		}
	})
}

// FuzzOpenProbe: whatever arrives on a node's socket, opening it as a probe
// never panics, and nothing but a probe sealed by the two nodes opens.
func FuzzOpenProbe(f *testing.F) {
	a, b := key(f), key(f)
	ab, _ := PeerAEAD(a, b.Public())
	ba, _ := PeerAEAD(b, a.Public())
	good, err := AppendProbe(nil, ab, b.Public(), Probe{Sender: a.Public(), Time: 5})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:ProbeLen-1])
	f.Add(PeerInfo{Time: 1, Local: []netip.AddrPort{ap4}, Pair: []byte("x")}.Append(nil))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		p, err := OpenProbe(pkt, ba, b.Public())
		if err != nil {
			return
		}
		if !bytes.Equal(pkt, good) || p.Sender != a.Public() {
			t.Fatalf("a datagram that is not the sealed probe opened: % x", pkt)
		}
	})
}

// FuzzParseInviteGet: only datagrams of exactly InviteGetLen parse, they are
// exactly what AppendInviteGet makes, and no answer to one is longer.
func FuzzParseInviteGet(f *testing.F) {
	f.Add(AppendInviteGet(nil, [InviteIDLen]byte{1, 2, 3}, nil))
	f.Add(AppendInviteGet(nil, [InviteIDLen]byte{}, nil)[:InviteGetLen-1])
	f.Add(AppendInviteGet(nil, [InviteIDLen]byte{4}, []byte("join box")))
	f.Add(AppendInvite(nil, [InviteIDLen]byte{1}, []byte("blob")))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, join, err := ParseInviteGet(b)
		if err != nil {
			return
		}
		if len(join) > MaxInviteJoin {
			t.Fatalf("ParseInviteGet(% x): join box of %d bytes", b, len(join))
		}
		if !bytes.Equal(AppendInviteGet(nil, id, join), b) {
			t.Fatalf("ParseInviteGet(% x) = %x, %x, which appends differently", b, id, join)
		}
		if n := len(AppendInvite(nil, id, make([]byte, MaxInviteBlob))); n > len(b) {
			t.Fatalf("the longest answer (%d bytes) exceeds the %d-byte request", n, len(b))
		}
	})
}

// FuzzParseInvite: whatever parses appends back to the same bytes and stays
// within the limits.
func FuzzParseInvite(f *testing.F) {
	f.Add(AppendInvite(nil, [InviteIDLen]byte{1, 2, 3}, []byte("sealed blob")))
	f.Add(AppendInvite(nil, [InviteIDLen]byte{4}, nil))
	f.Add(AppendInvite(nil, [InviteIDLen]byte{5}, bytes.Repeat([]byte{6}, MaxInviteBlob)))
	f.Add(AppendInviteGet(nil, [InviteIDLen]byte{7}, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, blob, err := ParseInvite(b)
		if err != nil {
			return
		}
		if len(blob) > MaxInviteBlob || len(b) > InviteGetLen {
			t.Fatalf("ParseInvite accepted %d bytes with a %d-byte blob", len(b), len(blob))
		}
		if !bytes.Equal(AppendInvite(nil, id, blob), b) {
			t.Fatalf("ParseInvite(% x) does not append back", b)
		}
	})
}
