package lab

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"
)

func TestImpairmentValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		imp     Impairment
		wantErr bool
	}{
		{"zero", Impairment{}, false},
		{"netem-like", Impairment{Delay: 50 * time.Millisecond, Loss: 0.01, Limit: 100}, false},
		{"all lost", Impairment{Loss: 1}, false},
		{"negative delay", Impairment{Delay: -time.Millisecond}, true},
		{"loss as percent", Impairment{Loss: 1.5}, true},
		{"negative loss", Impairment{Loss: -0.1}, true},
		{"negative limit", Impairment{Limit: -1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.imp.validate(); (err != nil) != tc.wantErr {
				t.Errorf("validate(%+v) = %v, want error %v", tc.imp, err, tc.wantErr)
			}
		})
	}
}

func TestDelayLine(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var d delayLine
	for i, off := range []time.Duration{30, 10, 20, 10} {
		if !d.push(queued{due: t0.Add(off * time.Millisecond), in: i}, 4) {
			t.Fatalf("push %d refused below the limit", i)
		}
	}
	if d.push(queued{due: t0, in: 9}, 4) {
		t.Error("push beyond the limit accepted")
	}
	if next, _ := d.next(); !next.Equal(t0.Add(10 * time.Millisecond)) {
		t.Errorf("next() = %v, want t0+10ms", next)
	}
	if _, ok := d.popDue(t0.Add(9 * time.Millisecond)); ok {
		t.Error("popDue before anything is due returned a frame")
	}
	var order []int
	for {
		f, ok := d.popDue(t0.Add(time.Second))
		if !ok {
			break
		}
		order = append(order, f.in)
	}
	// Due order; the two frames due at +10ms in arrival order.
	if want := []int{1, 3, 2, 0}; !equalInts(order, want) {
		t.Errorf("pop order = %v, want %v", order, want)
	}
	if d.len() != 0 {
		t.Errorf("len() = %d after draining", d.len())
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// frame builds vnet header + Ethernet frame.
func frame(dst, src byte, etype uint16, payload string) []byte {
	b := make([]byte, vnetHdrLen, vnetHdrLen+14+len(payload))
	b = append(b, 2, 0, 0, 0, 0, dst) // locally administered unicast
	if dst == 0xff {
		copy(b[vnetHdrLen:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	}
	b = append(b, 2, 0, 0, 0, 0, src, byte(etype>>8), byte(etype))
	return append(b, payload...)
}

func TestParseFrame(t *testing.T) {
	for _, tc := range []struct {
		name      string
		b         []byte
		ok, ip    bool
		broadcast bool
	}{
		{"ipv4", frame(1, 2, 0x0800, "x"), true, true, false},
		{"ipv6", frame(1, 2, 0x86dd, "x"), true, true, false},
		{"arp broadcast", frame(0xff, 2, 0x0806, "x"), true, false, true},
		{"vlan ipv4", frame(1, 2, 0x8100, "\x00\x01\x08\x00"), true, true, false},
		{"short", frame(1, 2, 0x0800, "")[:vnetHdrLen+13], false, false, false},
		{"empty", nil, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fi, ok := parseFrame(tc.b)
			if ok != tc.ok || fi.ip != tc.ip || (ok && fi.flood() != tc.broadcast) {
				t.Errorf("parseFrame() = %+v, %v; want ok %v ip %v flood %v", fi, ok, tc.ok, tc.ip, tc.broadcast)
			}
		})
	}
}

func FuzzParseFrame(f *testing.F) {
	f.Add(frame(1, 2, 0x0800, "x"))
	f.Add(frame(0xff, 2, 0x0806, ""))
	f.Add(frame(1, 2, 0x8100, "\x00\x01\x86\xdd"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fi, ok := parseFrame(b)
		if ok != (len(b) >= vnetHdrLen+14) {
			t.Fatalf("parseFrame(%d bytes) ok = %v", len(b), ok)
		}
		if ok && !bytes.Equal(fi.src[:], b[vnetHdrLen+6:vnetHdrLen+12]) {
			t.Fatalf("src = %x, want %x", fi.src, b[vnetHdrLen+6:vnetHdrLen+12])
		}
	})
}

// fakePort is a switchPort made of channels. Frames written to it go to
// out, with the time they were written.
type fakePort struct {
	in     chan []byte
	out    chan written
	closed chan struct{}
	once   sync.Once
}

type written struct {
	at   time.Time
	data []byte
}

func newFakePort() *fakePort {
	return &fakePort{in: make(chan []byte), out: make(chan written, 100), closed: make(chan struct{})}
}

func (p *fakePort) Read(b []byte) (int, error) {
	select {
	case f := <-p.in:
		return copy(b, f), nil
	case <-p.closed:
		return 0, io.EOF
	}
}

func (p *fakePort) WriteFrame(b []byte) error {
	select {
	case p.out <- written{time.Now(), bytes.Clone(b)}:
		return nil
	default:
		return errors.New("fake port full")
	}
}

func (p *fakePort) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

// expect waits for a frame on p carrying payload.
func (p *fakePort) expect(t *testing.T, payload string) written {
	t.Helper()
	select {
	case w := <-p.out:
		if got := string(w.data[vnetHdrLen+14:]); got != payload {
			t.Fatalf("port got %q, want %q", got, payload)
		}
		return w
	case <-time.After(2 * time.Second):
		t.Fatalf("port got nothing, want %q", payload)
	}
	return written{}
}

func (p *fakePort) expectNone(t *testing.T, wait time.Duration) {
	t.Helper()
	select {
	case w := <-p.out:
		t.Fatalf("port got %q, want nothing", w.data[vnetHdrLen+14:])
	case <-time.After(wait):
	}
}

// startFakeSwitch runs a switch with n fake ports; rnd, if given, replaces
// the random source deciding loss (it is only called by the switch
// goroutine).
func startFakeSwitch(t *testing.T, imp Impairment, n int, rnd ...func() float64) (*impairSwitch, []*fakePort) {
	t.Helper()
	s := newImpairSwitch(discardLogger(), imp)
	if len(rnd) > 0 {
		s.rand = rnd[0]
	}
	ctx, cancel := context.WithCancel(t.Context())
	go s.run(ctx)
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			t.Error("switch did not stop within 5 s of cancel")
		}
	})
	var ports []*fakePort
	for range n {
		p := newFakePort()
		if err := s.addPort(p); err != nil {
			t.Fatal(err)
		}
		ports = append(ports, p)
	}
	return s, ports
}

func TestSwitchLearnsAndFloods(t *testing.T) {
	_, p := startFakeSwitch(t, Impairment{}, 3)
	// Unknown destination: flooded to every other port.
	p[0].in <- frame(2, 1, 0x0800, "hello")
	p[1].expect(t, "hello")
	p[2].expect(t, "hello")
	p[0].expectNone(t, 20*time.Millisecond)
	// Host 1 is now known on port 0: a reply goes there only.
	p[1].in <- frame(1, 2, 0x0800, "reply")
	p[0].expect(t, "reply")
	p[2].expectNone(t, 20*time.Millisecond)
	// Broadcast ARP goes everywhere else.
	p[2].in <- frame(0xff, 3, 0x0806, "who-has")
	p[0].expect(t, "who-has")
	p[1].expect(t, "who-has")
}

func TestSwitchDelay(t *testing.T) {
	const delay = 40 * time.Millisecond
	_, p := startFakeSwitch(t, Impairment{Delay: delay}, 2)
	sent := time.Now()
	p[0].in <- frame(2, 1, 0x0800, "ip")
	if w := p[1].expect(t, "ip"); w.at.Sub(sent) < delay {
		t.Errorf("IP frame forwarded after %v, want >= %v", w.at.Sub(sent), delay)
	}
	sent = time.Now()
	p[0].in <- frame(0xff, 1, 0x0806, "arp")
	if w := p[1].expect(t, "arp"); w.at.Sub(sent) >= delay {
		t.Errorf("ARP frame forwarded after %v, want it undelayed", w.at.Sub(sent))
	}

}

func TestSwitchLoss(t *testing.T) {
	// Every other draw is below the loss probability.
	k := 0
	s, p := startFakeSwitch(t, Impairment{Loss: 0.5}, 2, func() float64 { k++; return float64(k%2) * 0.9 })
	for _, payload := range []string{"a", "b", "c", "d"} {
		p[0].in <- frame(2, 1, 0x0800, payload)
	}
	p[1].expect(t, "a")
	p[1].expect(t, "c")
	p[1].expectNone(t, 20*time.Millisecond)
	// Non-IP frames are never lost.
	p[0].in <- frame(0xff, 1, 0x0806, "arp")
	p[1].expect(t, "arp")
	if st := s.stats.snapshot(); st.Lost != 2 || st.Forwarded != 3 {
		t.Errorf("stats = %+v, want 2 lost, 3 forwarded", st)
	}
}

// TestSwitchDrop: the drop hook sees each IP packet from its IP header on
// and drops those it chooses, counted as lost.
func TestSwitchDrop(t *testing.T) {
	s, p := startFakeSwitch(t, Impairment{}, 2)
	drop := func(ip []byte) bool { return string(ip) == "b" }
	s.drop.Store(&drop)
	for _, payload := range []string{"a", "b", "c"} {
		p[0].in <- frame(2, 1, 0x0800, payload)
	}
	p[1].expect(t, "a")
	p[1].expect(t, "c")
	p[1].expectNone(t, 20*time.Millisecond)
	if st := s.stats.snapshot(); st.Lost != 1 || st.Forwarded != 2 {
		t.Errorf("stats = %+v, want 1 lost, 2 forwarded", st)
	}
}

func TestSwitchOverflow(t *testing.T) {
	s, p := startFakeSwitch(t, Impairment{Delay: 100 * time.Millisecond, Limit: 3}, 2)
	for _, payload := range []string{"1", "2", "3", "4", "5"} {
		p[0].in <- frame(2, 1, 0x0800, payload)
	}
	for _, payload := range []string{"1", "2", "3"} {
		p[1].expect(t, payload)
	}
	p[1].expectNone(t, 150*time.Millisecond)
	if st := s.stats.snapshot(); st.Overflow != 2 || st.Frames != 5 || st.Forwarded != 3 {
		t.Errorf("stats = %+v, want 5 frames, 3 forwarded, 2 overflow", st)
	}
}

func TestSwitchStops(t *testing.T) {
	s := newImpairSwitch(discardLogger(), Impairment{Delay: time.Second})
	ctx, cancel := context.WithCancel(t.Context())
	go s.run(ctx)
	p := newFakePort()
	if err := s.addPort(p); err != nil {
		t.Fatal(err)
	}
	p.in <- frame(2, 1, 0x0800, "queued") // still in the delay line at stop
	cancel()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		t.Fatal("switch did not stop")
	}
	select {
	case <-p.closed:
	default:
		t.Error("port not closed when the switch stopped")
	}
	if err := s.addPort(newFakePort()); !errors.Is(err, ErrClosed) {
		t.Errorf("addPort after stop = %v, want ErrClosed", err)
	}
}
