package dhcpd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/peerline/peerline/pkg/numplan"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func provURL(line int) string { return fmt.Sprintf("http://10.0.%d.2", line) }

// fakeLines records EnsureLine/RemoveLine calls; lines in fail fail.
type fakeLines struct {
	mu      sync.Mutex
	ensured []int
	removed []int
	fail    map[int]bool
}

func (f *fakeLines) EnsureLine(_ context.Context, line int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail[line] {
		return errors.New("netlink says no")
	}
	f.ensured = append(f.ensured, line)
	return nil
}

func (f *fakeLines) RemoveLine(_ context.Context, line int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, line)
	return nil
}

func (f *fakeLines) ensuredLines() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ensured)
}

func (f *fakeLines) removedLines() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.removed)
}

func okEnsure(int) error { return nil }

func mac(n int) net.HardwareAddr {
	return net.HardwareAddr{0x00, 0x0b, 0x82, byte(n >> 16), byte(n >> 8), byte(n)}
}

func hw(m net.HardwareAddr) hwaddr {
	var h hwaddr
	copy(h[:], m)
	return h
}

func msg(t testing.TB, typ dhcpv4.MessageType, m net.HardwareAddr, mods ...dhcpv4.Modifier) []byte {
	t.Helper()
	d, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(m), dhcpv4.WithMessageType(typ)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return d.ToBytes()
}

func discover(t testing.TB, m net.HardwareAddr, mods ...dhcpv4.Modifier) []byte {
	return msg(t, dhcpv4.MessageTypeDiscover, m, mods...)
}

// selecting is a REQUEST answering line's offer.
func selecting(t testing.TB, m net.HardwareAddr, want netip.Addr, sid netip.Addr) []byte {
	mods := []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(want.AsSlice()))}
	if sid.IsValid() {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(sid.AsSlice())))
	}
	return msg(t, dhcpv4.MessageTypeRequest, m, mods...)
}

func renewing(t testing.TB, m net.HardwareAddr, ci netip.Addr) []byte {
	return msg(t, dhcpv4.MessageTypeRequest, m, dhcpv4.WithClientIP(ci.AsSlice()))
}

func mustParse(t testing.TB, r reply) *dhcpv4.DHCPv4 {
	t.Helper()
	d, err := dhcpv4.FromBytes(r.msg.ToBytes())
	if err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	return d
}

// bindPhone runs DISCOVER and REQUEST for m and returns its line.
func bindPhone(t testing.TB, tb *table, m net.HardwareAddr, now time.Time) int {
	t.Helper()
	r, ok := tb.handle(discover(t, m), now, okEnsure)
	if !ok {
		t.Fatalf("DISCOVER from %s: no OFFER", m)
	}
	line, _ := numplan.LocalPhone(addrOf(r.msg.YourIPAddr))
	r, ok = tb.handle(selecting(t, m, phoneAddr(line), gateway(line)), now, okEnsure)
	if !ok || r.msg.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("REQUEST from %s for line %d: got %v, want ACK", m, line, r.msg)
	}
	return line
}

// fakeConn is a net.PacketConn fed by a channel; replies go to out.
type fakeConn struct {
	in        chan []byte
	out       chan sent
	closeOnce sync.Once
	closed    chan struct{}
}

type sent struct {
	b   []byte
	dst net.Addr
}

func newFakeConn() *fakeConn {
	return &fakeConn{in: make(chan []byte, 16), out: make(chan sent, 16), closed: make(chan struct{})}
}

func (c *fakeConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case p := <-c.in:
		return copy(b, p), &net.UDPAddr{IP: net.IPv4zero, Port: 68}, nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	}
}

func (c *fakeConn) WriteTo(b []byte, dst net.Addr) (int, error) {
	select {
	case c.out <- sent{slices.Clone(b), dst}:
	case <-c.closed:
		return 0, net.ErrClosed
	}
	return len(b), nil
}

func (c *fakeConn) Close() error                     { c.closeOnce.Do(func() { close(c.closed) }); return nil }
func (c *fakeConn) LocalAddr() net.Addr              { return &net.UDPAddr{Port: 67} }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }
func (c *fakeConn) exchange(t *testing.T, p []byte) sent {
	t.Helper()
	c.in <- p
	select {
	case s := <-c.out:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no reply within 5s")
	}
	return sent{}
}
