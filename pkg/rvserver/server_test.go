package rvserver

import (
	"crypto/cipher"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
)

// clock is a settable test clock, or (real) time.Now: inside a
// testing/synctest bubble, a fake clock that time.Sleep moves.
type clock struct {
	mu   sync.Mutex
	t    time.Time
	real bool
}

func (c *clock) now() time.Time {
	if c.real {
		return time.Now()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type sent struct {
	port int
	to   netip.AddrPort
	b    []byte
}

// harness drives Server.handle in-process and records what it sends.
type harness struct {
	t     testing.TB
	s     *Server
	clock *clock
	out   []sent
	w     scratch
}

func newHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, clock: &clock{t: time.Unix(1700000000, 0)}}
	if cfg.Now != nil {
		h.clock.real = true // time.Now, in a synctest bubble
	}
	cfg.StateDir = t.TempDir()
	cfg.Now = h.clock.now
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.s = s
	return h
}

// deliver hands b from src to the server on port and returns what it sent.
func (h *harness) deliver(b []byte, src netip.AddrPort, port int) []sent {
	h.out = h.out[:0]
	h.s.handle(b, src, port, &h.w, func(port int, to netip.AddrPort, b []byte) {
		h.out = append(h.out, sent{port, to, append([]byte(nil), b...)})
	})
	return h.out
}

// testNode is a node as the server sees it from outside.
type testNode struct {
	priv, pub nodekey.Key
	aead      cipher.AEAD
	addr      netip.AddrPort
	cookie    [rendezvous.CookieLen]byte
}

func (h *harness) node(addr string) *testNode {
	k, _ := nodekey.Generate()
	a, err := rendezvous.NodeAEAD(k, h.s.PublicKey())
	if err != nil {
		h.t.Fatal(err)
	}
	return &testNode{priv: k, pub: k.Public(), aead: a, addr: netip.MustParseAddrPort(addr)}
}

func (n *testNode) seal(t testing.TB, m rendezvous.Message, now time.Time) []byte {
	t.Helper()
	b, err := rendezvous.Seal(nil, n.aead, n.pub, n.cookie, now, m, rendezvous.MinRequestLen)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// open opens a sealed server message to n.
func (n *testNode) open(t testing.TB, b []byte) rendezvous.Message {
	t.Helper()
	e, err := rendezvous.ParseEnvelope(b)
	if err != nil {
		t.Fatalf("server sent %d bytes that are not an envelope: %v", len(b), err)
	}
	m, err := e.Open(n.aead, nil)
	if err != nil {
		t.Fatalf("server message to %s does not open: %v", n.addr, err)
	}
	return m
}

// request sends m from n on port, fetching a cookie first if needed, and
// returns the opened reply plus anything else the server sent.
func (h *harness) request(n *testNode, m rendezvous.Message, port int) (rendezvous.Message, []sent) {
	h.t.Helper()
	for range 2 {
		out := h.deliver(n.seal(h.t, m, h.clock.now()), n.addr, port)
		if len(out) == 1 && len(out[0].b) == rendezvous.CookieMsgLen {
			c, err := rendezvous.ParseCookie(out[0].b)
			if err != nil {
				h.t.Fatal(err)
			}
			n.cookie = c.Cookie
			continue
		}
		var rest []sent
		var reply rendezvous.Message
		for _, o := range out {
			if o.to == n.addr && reply == nil {
				reply = n.open(h.t, o.b)
				continue
			}
			rest = append(rest, o)
		}
		return reply, rest
	}
	h.t.Fatalf("server kept asking %s for a cookie", n.addr)
	return nil, nil
}

func (h *harness) register(n *testNode, port int) rendezvous.RegisterReply {
	h.t.Helper()
	r, _ := h.request(n, rendezvous.Register{}, port)
	rr, ok := r.(rendezvous.RegisterReply)
	if !ok {
		h.t.Fatalf("register from %s: reply %#v", n.addr, r)
	}
	return rr
}

func TestRegister(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.node("198.51.100.10:40000")
	// Without a cookie: only a Cookie comes back, smaller than the request.
	req := a.seal(t, rendezvous.Register{}, h.clock.now())
	out := h.deliver(req, a.addr, 0)
	if len(out) != 1 || len(out[0].b) > len(req) || out[0].to != a.addr {
		t.Fatalf("first register: sent %+v; want one Cookie to the sender", out)
	}
	if h.s.Stats().Nodes != 0 {
		t.Fatal("a request without a cookie registered a node")
	}
	for port := range 2 {
		rr := h.register(a, port)
		if rr.Observed != a.addr || int(rr.Port) != port || rr.TTL != 120 {
			t.Errorf("register on port %d = %+v; want observed %s", port, rr, a.addr)
		}
	}
	// An exact replay is dropped without an answer.
	req = a.seal(t, rendezvous.Register{}, h.clock.now())
	if out := h.deliver(req, a.addr, 0); len(out) != 1 {
		t.Fatalf("fresh register: %d replies", len(out))
	}
	if out := h.deliver(req, a.addr, 0); len(out) != 0 || h.s.Stats().Replays != 1 {
		t.Errorf("replayed register: %d replies, %d replays counted; want none and 1", len(out), h.s.Stats().Replays)
	}
}

func TestRejected(t *testing.T) {
	h := newHarness(t, Config{})
	victim := h.node("198.51.100.10:40000")
	h.register(victim, 0)
	mallory := h.node("203.0.113.66:5000")
	h.register(mallory, 0) // has a valid cookie for her own address
	now := h.clock.now()
	good := victim.seal(t, rendezvous.Register{}, now)

	flip := func(b []byte, i int) []byte { c := append([]byte(nil), b...); c[i] ^= 1; return c }
	// Mallory seals with her own key but claims the victim's.
	impostor := *mallory
	impostor.pub = victim.pub
	tests := []struct {
		name string
		b    []byte
		src  netip.AddrPort
	}{
		{"tampered ciphertext", flip(good, len(good)-20), victim.addr},
		{"tampered sender", flip(good, rendezvous.HeaderLen+rendezvous.CookieLen+3), victim.addr},
		{"tampered time", flip(good, rendezvous.HeaderLen+rendezvous.CookieLen+32+7), victim.addr},
		{"wrong key (impostor)", impostor.seal(t, rendezvous.Register{}, now), mallory.addr},
		{"stale", victim.seal(t, rendezvous.Register{}, now.Add(-61*time.Second)), victim.addr},
		{"future", victim.seal(t, rendezvous.Register{}, now.Add(61*time.Second)), victim.addr},
		{"victim's packet from another address", good, mallory.addr},
		{"unknown version", func() []byte { c := append([]byte(nil), good...); c[1] = 2; return c }(), victim.addr},
		{"unknown type", func() []byte { c := append([]byte(nil), good...); c[2] = 0x3f; return c }(), victim.addr},
		{"reply type sent to server", func() []byte { c := append([]byte(nil), good...); c[2] = byte(rendezvous.TypeRegisterReply); return c }(), victim.addr},
		{"truncated", good[:len(good)-1], victim.addr},
		{"header only", good[:rendezvous.HeaderLen], victim.addr},
		{"empty", nil, victim.addr},
	}
	for _, tt := range tests {
		h.s.mu.Lock()
		before := h.s.nodes[victim.pub].seen
		h.s.mu.Unlock()
		h.clock.add(time.Millisecond)
		out := h.deliver(tt.b, tt.src, 0)
		for _, o := range out {
			if o.to != tt.src || len(o.b) > len(tt.b) || len(o.b) != rendezvous.CookieMsgLen {
				t.Errorf("%s: server sent %d bytes to %s for %d received; want at most a Cookie back", tt.name, len(o.b), o.to, len(tt.b))
			}
		}
		h.s.mu.Lock()
		after := h.s.nodes[victim.pub].seen
		h.s.mu.Unlock()
		if after != before {
			t.Errorf("%s: changed the victim's registration", tt.name)
		}
	}
}

// TestAmplification sends junk and mutated valid packets from a stranger's
// address: whatever the server sends back is never larger than what it got,
// and nothing goes anywhere else.
func TestAmplification(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.node("198.51.100.10:40000")
	h.register(a, 0)
	// The largest answer an InviteGet can get.
	h.putInvite(a, [rendezvous.InviteIDLen]byte{1}, h.clock.now().Add(time.Hour), make([]byte, rendezvous.MaxInviteBlob))
	stranger := netip.MustParseAddrPort("203.0.113.9:9999")
	r := rand.New(rand.NewPCG(1, 2))
	seeds := [][]byte{
		a.seal(t, rendezvous.Register{}, h.clock.now()),
		a.seal(t, rendezvous.Connect{Target: a.pub, Box: make([]byte, 300)}, h.clock.now()),
		rendezvous.AppendRelay(nil, 1, make([]byte, 100)),
		rendezvous.Cookie{}.Append(nil),
		rendezvous.AppendInviteGet(nil, [rendezvous.InviteIDLen]byte{1}, nil),
		a.seal(t, rendezvous.InvitePut{ID: [rendezvous.InviteIDLen]byte{1}, Expires: h.clock.now().Add(time.Hour), Blob: make([]byte, 300)}, h.clock.now()),
	}
	for i := range 20000 {
		b := append([]byte(nil), seeds[i%len(seeds)]...)
		switch i % 4 {
		case 0:
			b = b[:r.IntN(len(b)+1)]
		case 1:
			b[r.IntN(len(b))] ^= byte(1 + r.IntN(255))
		case 2:
			b = make([]byte, r.IntN(200))
			for j := range b {
				b[j] = byte(r.Uint32())
			}
			if len(b) > 3 {
				b[0], b[1], b[3] = rendezvous.Magic, rendezvous.Version, 0
			}
		}
		checkAmplification(t, h, b, stranger)
	}
}

func checkAmplification(t testing.TB, h *harness, b []byte, src netip.AddrPort) {
	total := 0
	for _, o := range h.deliver(b, src, 0) {
		if o.to != src {
			t.Fatalf("input % x from %s made the server send to %s", b, src, o.to)
		}
		total += len(o.b)
	}
	if total > len(b) {
		t.Fatalf("input of %d bytes got %d bytes back", len(b), total)
	}
}

// FuzzServerHandle: from an address nobody registered, no input makes the
// server send more than it received, or send anywhere else.
func FuzzServerHandle(f *testing.F) {
	h := newHarness(f, Config{})
	a := h.node("198.51.100.10:40000")
	h.register(a, 0)
	f.Add(a.seal(f, rendezvous.Register{}, h.clock.now()))
	f.Add(rendezvous.AppendRelay(nil, 1, []byte("x")))
	h.putInvite(a, [rendezvous.InviteIDLen]byte{1}, h.clock.now().Add(time.Hour), make([]byte, rendezvous.MaxInviteBlob))
	f.Add(rendezvous.AppendInviteGet(nil, [rendezvous.InviteIDLen]byte{1}, nil))
	f.Add(a.seal(f, rendezvous.InvitePut{ID: [rendezvous.InviteIDLen]byte{1}, Expires: h.clock.now().Add(time.Hour), Blob: []byte("blob")}, h.clock.now()))
	stranger := netip.MustParseAddrPort("203.0.113.9:9999")
	f.Fuzz(func(t *testing.T, b []byte) {
		checkAmplification(t, h, b, stranger)
	})
}

// introduce registers a and b and has both connect; it returns the punches
// each received.
func introduce(t *testing.T, h *harness, a, b *testNode) (rendezvous.Punch, rendezvous.Punch) {
	t.Helper()
	r, pushes := h.request(a, rendezvous.Connect{Target: b.pub, Box: []byte("a→b")}, 0)
	if cr, ok := r.(rendezvous.ConnectReply); !ok || cr.Status != rendezvous.StatusOK {
		t.Fatalf("a's connect: reply %#v", r)
	}
	if len(pushes) != 1 || pushes[0].to != b.addr {
		t.Fatalf("a's connect pushed %+v; want an Incoming to b", pushes)
	}
	in, ok := b.open(t, pushes[0].b).(rendezvous.Incoming)
	if !ok || in.From != a.pub || string(in.Box) != "a→b" {
		t.Fatalf("b got %#v; want Incoming from a with a's box", in)
	}
	r, pushes = h.request(b, rendezvous.Connect{Target: a.pub, Box: []byte("b→a")}, 0)
	if cr, ok := r.(rendezvous.ConnectReply); !ok || cr.Status != rendezvous.StatusOK {
		t.Fatalf("b's connect: reply %#v", r)
	}
	var pa, pb rendezvous.Punch
	var got int
	all := append(pushes, h.out...)
	for _, o := range all {
		switch o.to {
		case a.addr:
			if p, ok := a.open(t, o.b).(rendezvous.Punch); ok {
				pa, got = p, got|1
			}
		case b.addr:
			if p, ok := b.open(t, o.b).(rendezvous.Punch); ok {
				pb, got = p, got|2
			}
		}
	}
	if got != 3 {
		t.Fatalf("after both connected, punches went to %+v; want one each", all)
	}
	return pa, pb
}

func TestIntroductionAndRelay(t *testing.T) {
	h := newHarness(t, Config{RelayBytesPerSec: 1000, RelayBurst: 1000})
	a := h.node("198.51.100.10:40000")
	b := h.node("198.51.100.20:50000")
	h.register(a, 0)
	h.register(a, 1)
	h.register(b, 0)
	pa, pb := introduce(t, h, a, b)
	if pa.Peer != b.pub || pa.Endpoints != [2]netip.AddrPort{b.addr, {}} || string(pa.Box) != "b→a" {
		t.Errorf("a's punch = %+v; want b's endpoint on port 0 and b's box", pa)
	}
	if pb.Peer != a.pub || pb.Endpoints != [2]netip.AddrPort{a.addr, a.addr} || string(pb.Box) != "a→b" {
		t.Errorf("b's punch = %+v; want a's endpoints on both ports and a's box", pb)
	}
	if pa.Session == 0 || pa.Session != pb.Session {
		t.Fatalf("sessions %d and %d; want one shared non-zero id", pa.Session, pb.Session)
	}
	pkt := rendezvous.AppendRelay(nil, pa.Session, make([]byte, 400))
	for _, tt := range []struct {
		name string
		src  netip.AddrPort
		to   netip.AddrPort
	}{{"a to b", a.addr, b.addr}, {"b to a", b.addr, a.addr}, {"stranger", netip.MustParseAddrPort("203.0.113.1:1"), netip.AddrPort{}}} {
		out := h.deliver(pkt, tt.src, 0)
		switch {
		case !tt.to.IsValid() && len(out) != 0:
			t.Errorf("%s: relay forwarded %+v; want dropped", tt.name, out)
		case tt.to.IsValid() && (len(out) != 1 || out[0].to != tt.to || len(out[0].b) != len(pkt)):
			t.Errorf("%s: relay sent %+v; want the same %d bytes to %s", tt.name, out, len(pkt), tt.to)
		}
	}
	if out := h.deliver(rendezvous.AppendRelay(nil, pa.Session+1, nil), a.addr, 0); len(out) != 0 {
		t.Error("relay with an unknown session was forwarded")
	}
	// a has spent 412 of its 1000-byte burst; two more packets exceed it.
	h.deliver(pkt, a.addr, 0)
	if out := h.deliver(pkt, a.addr, 0); len(out) != 0 {
		t.Error("relay beyond the rate limit was forwarded")
	}
	// The same pair keeps its session.
	pa2, _ := introduce(t, h, a, b)
	if pa2.Session != pa.Session {
		t.Errorf("second introduction got session %d, want %d again", pa2.Session, pa.Session)
	}
}

// TestUnpairedLearnsNothing: a registered node that b did not pair with
// gets the same answer whether b is online or not, and never b's endpoint.
func TestUnpairedLearnsNothing(t *testing.T) {
	h := newHarness(t, Config{})
	b := h.node("198.51.100.20:50000")
	s := h.node("203.0.113.9:9999")
	h.register(s, 0)
	offline := h.node("198.51.100.30:1")
	rOffline, pushOffline := h.request(s, rendezvous.Connect{Target: offline.pub}, 0)
	h.register(b, 0)
	rOnline, pushOnline := h.request(s, rendezvous.Connect{Target: b.pub}, 0)
	if !sameReply(rOffline, rOnline) {
		t.Errorf("replies differ for an offline (%+v) and an online (%+v) target", rOffline, rOnline)
	}
	if len(pushOffline) != 0 || len(pushOnline) != 1 || pushOnline[0].to != b.addr {
		t.Fatalf("pushes %+v, %+v; want only an Incoming to b", pushOffline, pushOnline)
	}
	// b is not paired with s, so it never connects back; s asks again and
	// still gets nothing but an acknowledgement.
	for range 3 {
		h.clock.add(time.Second)
		r, pushes := h.request(s, rendezvous.Connect{Target: b.pub}, 0)
		if _, ok := r.(rendezvous.ConnectReply); !ok {
			t.Fatalf("reply %#v", r)
		}
		for _, p := range pushes {
			if p.to == s.addr {
				t.Fatalf("server pushed %#v to the unpaired node", s.open(t, p.b))
			}
		}
	}
	// An unregistered stranger (no registration) is told to register.
	x := h.node("203.0.113.10:1")
	if r, _ := h.request(x, rendezvous.Connect{Target: b.pub}, 0); r.(rendezvous.ConnectReply).Status != rendezvous.StatusNotRegistered {
		t.Errorf("unregistered connect: %+v", r)
	}
}

func sameReply(a, b rendezvous.Message) bool {
	x, ok1 := a.(rendezvous.ConnectReply)
	y, ok2 := b.(rendezvous.ConnectReply)
	return ok1 && ok2 && x.Status == y.Status
}

func TestExpiryAndEviction(t *testing.T) {
	h := newHarness(t, Config{MaxNodes: 2})
	// Three networks holding one node each: the full table drops the
	// least recently refreshed (TestNodeTableFlood has one network
	// holding many).
	a, b, c := h.node("192.0.2.1:1"), h.node("198.51.100.2:2"), h.node("203.0.113.3:3")
	h.register(a, 0)
	h.clock.add(time.Second)
	h.register(b, 0)
	h.clock.add(time.Second)
	h.register(c, 0) // evicts a, the least recently refreshed
	h.s.mu.Lock()
	_, hasA := h.s.nodes[a.pub]
	h.s.mu.Unlock()
	if st := h.s.Stats(); hasA || st.Nodes != 2 || st.Evicted != 1 {
		t.Errorf("after 3 registrations with max 2: a kept %v, stats %+v", hasA, st)
	}
	h.clock.add(90 * time.Second)
	h.register(b, 0)
	h.clock.add(40 * time.Second) // c is 130 s old, b 40 s
	h.s.sweep()
	if st := h.s.Stats(); st.Nodes != 1 {
		t.Errorf("after expiry: %d nodes, want 1 (b)", st.Nodes)
	}
	if r, _ := h.request(b, rendezvous.Unregister{}, 0); r.Type() != rendezvous.TypeUnregisterReply || h.s.Stats().Nodes != 0 {
		t.Errorf("unregister: %#v, %d nodes left", r, h.s.Stats().Nodes)
	}
}

func TestCookieRotation(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.node("198.51.100.1:1")
	h.register(a, 0)
	h.clock.add(cookieEpoch) // previous epoch's cookie still works
	if out := h.deliver(a.seal(t, rendezvous.Register{}, h.clock.now()), a.addr, 0); len(out) != 1 || len(out[0].b) == rendezvous.CookieMsgLen {
		t.Fatalf("register with last epoch's cookie: %+v; want a sealed reply", out)
	}
	h.clock.add(2 * cookieEpoch)
	if out := h.deliver(a.seal(t, rendezvous.Register{}, h.clock.now()), a.addr, 0); len(out) != 1 || len(out[0].b) != rendezvous.CookieMsgLen {
		t.Fatalf("register with a cookie 3 epochs old: %+v; want a new Cookie", out)
	}
}
