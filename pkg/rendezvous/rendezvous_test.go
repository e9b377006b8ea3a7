package rendezvous

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
)

func key(t testing.TB) nodekey.Key {
	t.Helper()
	k, err := nodekey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var (
	ap4 = netip.MustParseAddrPort("198.51.100.7:40001")
	ap6 = netip.MustParseAddrPort("[2001:db8::1]:3478")
	pk  = nodekey.Key{1, 2, 3, 4, 5}
)

// messages is one of each sealed message, with every field set.
var messages = []Message{
	Register{},
	RegisterReply{ReplyTo: ReplyID{1, 2, 3, 4, 5, 6, 7, 8}, Observed: ap4, Port: 1, TTL: 120},
	RegisterReply{Observed: ap6},
	Connect{Target: pk, Box: []byte("sealed for the target")},
	Connect{Target: pk},
	ConnectReply{ReplyTo: ReplyID{9}, Status: StatusRateLimited},
	Incoming{From: pk, Box: bytes.Repeat([]byte{7}, MaxBox)},
	Punch{Peer: pk, Endpoints: [2]netip.AddrPort{ap4, ap6}, DelayMs: 150, Session: 0xdeadbeef01, Box: []byte{1}},
	Punch{Peer: pk, Endpoints: [2]netip.AddrPort{ap4, {}}},
	Unregister{},
	UnregisterReply{ReplyTo: ReplyID{8}},
	InvitePut{ID: [InviteIDLen]byte{1, 2, 3}, Expires: time.Unix(1700000000, 0), Blob: bytes.Repeat([]byte{9}, MaxInviteBlob)},
	InvitePut{ID: [InviteIDLen]byte{4}},
	InvitePutReply{ReplyTo: ReplyID{7}, ID: [InviteIDLen]byte{5}, Stored: true},
	InvitePutReply{ID: [InviteIDLen]byte{6}},
	InviteJoin{ID: [InviteIDLen]byte{8}, Box: []byte("sealed join box")},
	InviteJoin{ID: [InviteIDLen]byte{9}},
}

func TestBodyRoundTrip(t *testing.T) {
	for _, m := range messages {
		b := m.Append(nil)
		got, err := ParseBody(m.Type(), b)
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Errorf("ParseBody(%s, Append(%+v)) = %+v, %v; want it back", m.Type(), m, got, err)
		}
		// Zero padding is allowed, anything else after the body is not.
		if _, err := ParseBody(m.Type(), append(b, 0, 0, 0)); err != nil {
			t.Errorf("ParseBody(%s) with zero padding: %v", m.Type(), err)
		}
		if _, err := ParseBody(m.Type(), append(b, 0, 1)); err == nil {
			t.Errorf("ParseBody(%s) with non-zero trailing bytes succeeded", m.Type())
		}
		for n := range len(b) {
			if _, err := ParseBody(m.Type(), b[:n]); err == nil && !allZero(b[n:]) {
				t.Errorf("ParseBody(%s) of %d of %d bytes succeeded", m.Type(), n, len(b))
			}
		}
	}
}

func allZero(b []byte) bool { return !bytes.ContainsFunc(b, func(r rune) bool { return r != 0 }) }

func TestParseBodyRejects(t *testing.T) {
	long := Connect{Target: pk, Box: make([]byte, MaxBox+1)}.Append(nil)
	tests := []struct {
		name string
		t    Type
		b    []byte
		want error
	}{
		{"unknown type", 0x7f, nil, ErrType},
		{"cookie is not a body", TypeCookie, nil, ErrType},
		{"box too long", TypeConnect, long, ErrTooLong},
		{"port index 2", TypeRegisterReply, append(RegisterReply{Observed: ap4}.Append(nil)[:26], 2, 0, 0), ErrMalformed},
		{"address without port", TypeRegisterReply, append(append(make([]byte, 8), netip.MustParseAddr("::ffff:1.2.3.4").AsSlice()...), 0, 0, 0, 0, 0), ErrMalformed},
	}
	for _, tt := range tests {
		if _, err := ParseBody(tt.t, tt.b); !errors.Is(err, tt.want) {
			t.Errorf("%s: ParseBody = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestParseHeader(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"ok", []byte{Magic, Version, byte(TypeRegister), 0}, nil},
		{"short", []byte{Magic, Version, byte(TypeRegister)}, ErrShort},
		{"wireguard initiation", []byte{1, 0, 0, 0}, ErrMagic},
		{"version 2", []byte{Magic, 2, byte(TypeRegister), 0}, ErrVersion},
		{"version 0", []byte{Magic, 0, byte(TypeRegister), 0}, ErrVersion},
		{"unknown type", []byte{Magic, Version, 0x34, 0}, ErrType},
		{"reserved byte set", []byte{Magic, Version, byte(TypeRegister), 1}, ErrType},
	}
	for _, tt := range tests {
		if _, err := ParseHeader(tt.b); !errors.Is(err, tt.want) {
			t.Errorf("%s: ParseHeader(% x) = %v, want %v", tt.name, tt.b, err, tt.want)
		}
	}
}

func TestCookieAndRelayRoundTrip(t *testing.T) {
	c := Cookie{Cookie: [CookieLen]byte{1, 2}, ReplyTo: ReplyID{3}, ServerTime: 1700000000123}
	b := c.Append(nil)
	if len(b) != CookieMsgLen {
		t.Fatalf("cookie is %d bytes, want %d", len(b), CookieMsgLen)
	}
	if got, err := ParseCookie(b); err != nil || got != c {
		t.Errorf("ParseCookie(Append(%+v)) = %+v, %v", c, got, err)
	}
	if _, err := ParseCookie(b[:len(b)-1]); err == nil {
		t.Error("ParseCookie of a truncated cookie succeeded")
	}
	if CookieMsgLen >= MinRequestLen || CookieMsgLen >= EnvelopeOverhead {
		t.Errorf("a cookie (%d bytes) must be smaller than any sealed request (%d)", CookieMsgLen, EnvelopeOverhead)
	}
	r := AppendRelay(nil, 42, []byte("wireguard"))
	id, p, err := ParseRelay(r)
	if err != nil || id != 42 || string(p) != "wireguard" {
		t.Errorf("ParseRelay = %d, %q, %v", id, p, err)
	}
	if _, _, err := ParseRelay(AppendRelay(nil, 0, nil)); err == nil {
		t.Error("ParseRelay accepted session 0")
	}
	if _, _, err := ParseRelay(r[:RelayHeaderLen-1]); err == nil {
		t.Error("ParseRelay accepted a truncated header")
	}
}

func TestRepliesFitPaddedRequest(t *testing.T) {
	for _, m := range messages {
		// Pushes go to a registered node's address, not to a request's
		// source.
		if m.Type().Request() || m.Type() == TypeIncoming || m.Type() == TypePunch || m.Type() == TypeInviteJoin {
			continue
		}
		if n := EnvelopeOverhead + len(m.Append(nil)); n > MinRequestLen {
			t.Errorf("%s is %d bytes sealed, more than a padded request (%d)", m.Type(), n, MinRequestLen)
		}
	}
}

func TestSealOpen(t *testing.T) {
	node, server, other := key(t), key(t), key(t)
	na, err := NodeAEAD(node, server.Public())
	if err != nil {
		t.Fatal(err)
	}
	sa, _ := ServerAEAD(server, node.Public())
	oa, _ := NodeAEAD(other, server.Public())
	now := time.UnixMilli(1700000000000)
	m := Connect{Target: pk, Box: []byte("box")}
	b, err := Seal(nil, na, node.Public(), [CookieLen]byte{5}, now, m, MinRequestLen)
	if err != nil {
		t.Fatal(err)
	}
	if want := EnvelopeOverhead + len(m.Append(nil)); len(b) != want {
		t.Errorf("sealed connect is %d bytes, want %d (already above the padding)", len(b), want)
	}
	if r, _ := Seal(nil, na, node.Public(), [CookieLen]byte{}, now, Register{}, MinRequestLen); len(r) != MinRequestLen {
		t.Errorf("sealed register is %d bytes, want padded to %d", len(r), MinRequestLen)
	}
	env, err := ParseEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	if env.Sender != node.Public() || env.Time != now.UnixMilli() || env.Cookie[0] != 5 || env.Type != TypeConnect {
		t.Errorf("envelope = %+v", env)
	}
	got, err := env.Open(sa, nil)
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("server Open = %+v, %v; want %+v", got, err, m)
	}
	// Another node's key (a stranger claiming to be node) does not open.
	forged, _ := Seal(nil, oa, node.Public(), [CookieLen]byte{5}, now, m, 0)
	fe, _ := ParseEnvelope(forged)
	if _, err := fe.Open(sa, nil); !errors.Is(err, ErrAuth) {
		t.Errorf("Open of a message sealed with another key = %v, want ErrAuth", err)
	}
	// Every single-bit change anywhere is detected.
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x10
		ce, err := ParseEnvelope(c)
		if err != nil {
			continue // header change: rejected before crypto
		}
		if _, err := ce.Open(sa, nil); err == nil {
			t.Errorf("flipping a bit in byte %d went unnoticed", i)
		}
	}
	for n := range EnvelopeOverhead {
		if _, err := ParseEnvelope(b[:n]); err == nil {
			t.Errorf("ParseEnvelope of %d bytes succeeded", n)
		}
	}
}

func TestDeriveRejectsLowOrderKey(t *testing.T) {
	if _, err := NodeAEAD(key(t), nodekey.Key{}); err == nil {
		t.Error("NodeAEAD with an all-zero server key succeeded; anyone could compute that key")
	}
}

func TestBox(t *testing.T) {
	a, b, srv := key(t), key(t), key(t)
	ab, _ := PeerAEAD(a, b.Public())
	ba, _ := PeerAEAD(b, a.Public())
	info := PeerInfo{Time: 1700000000000, Local: []netip.AddrPort{netip.MustParseAddrPort("192.168.1.20:51820"), ap6}}
	box, err := SealBox(ab, a.Public(), b.Public(), info)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenBox(ba, a.Public(), b.Public(), box)
	if err != nil || !reflect.DeepEqual(got, info) {
		t.Fatalf("OpenBox = %+v, %v; want %+v", got, err, info)
	}
	// The server (or anyone else) derives a different key with a or b.
	sa, _ := PeerAEAD(srv, b.Public())
	if _, err := OpenBox(sa, a.Public(), b.Public(), box); err == nil {
		t.Error("a third key opened a box between a and b")
	}
	forged, _ := SealBox(sa, a.Public(), b.Public(), info)
	if _, err := OpenBox(ba, a.Public(), b.Public(), forged); err == nil {
		t.Error("b accepted a box forged by a third party as coming from a")
	}
	// Swapping sender and recipient (reflecting b's own box) fails.
	if _, err := OpenBox(ba, b.Public(), a.Public(), box); err == nil {
		t.Error("OpenBox accepted a box with sender and recipient swapped")
	}
}

func TestPeerInfoRejects(t *testing.T) {
	tooMany := PeerInfo{Local: make([]netip.AddrPort, MaxLocalEndpoints+1)}
	for i := range tooMany.Local {
		tooMany.Local[i] = ap4
	}
	for name, b := range map[string][]byte{
		"too many":  tooMany.Append(nil),
		"zero addr": PeerInfo{Local: []netip.AddrPort{{}}}.Append(nil),
		"trailing":  append(PeerInfo{}.Append(nil), 0),
		"short":     make([]byte, 8),
	} {
		if _, err := ParsePeerInfo(b); err == nil {
			t.Errorf("%s: ParsePeerInfo succeeded", name)
		}
	}
}

func TestProbe(t *testing.T) {
	a, b, c := key(t), key(t), key(t)
	ab, err := PeerAEAD(a, b.Public())
	if err != nil {
		t.Fatal(err)
	}
	ba, _ := PeerAEAD(b, a.Public())
	ca, _ := PeerAEAD(c, a.Public())
	id, err := NewTxID()
	if err != nil {
		t.Fatal(err)
	}
	want := Probe{Sender: a.Public(), TxID: id, Time: 1700000000123}
	for _, kind := range []string{"probe", "reply", "bye"} {
		want.Reply, want.Bye = kind == "reply", kind == "bye"
		pkt, err := AppendProbe(nil, ab, b.Public(), want)
		if err != nil {
			t.Fatal(err)
		}
		if len(pkt) != ProbeLen || !IsRendezvous(pkt) {
			t.Fatalf("probe is %d bytes, want %d with the rendezvous magic", len(pkt), ProbeLen)
		}
		if s, ok := ProbeSender(pkt); !ok || s != a.Public() {
			t.Fatalf("ProbeSender = %v %v", s, ok)
		}
		got, err := OpenProbe(pkt, ba, b.Public())
		if err != nil || got != want {
			t.Fatalf("OpenProbe = %+v, %v; want %+v", got, err, want)
		}
		// Only the two nodes' key opens it, only for the recipient.
		if _, err := OpenProbe(pkt, ca, b.Public()); err == nil {
			t.Error("a third node's key opened the probe")
		}
		if _, err := OpenProbe(pkt, ba, c.Public()); err == nil {
			t.Error("the probe opened for another recipient")
		}
		// A probe cannot be turned into a reply (the type is authenticated),
		// and no byte can change.
		for i := range pkt {
			bad := append([]byte(nil), pkt...)
			bad[i] ^= 0x01
			if _, err := OpenProbe(bad, ba, b.Public()); err == nil {
				t.Fatalf("flipping byte %d still opened", i)
			}
		}
	}
}
