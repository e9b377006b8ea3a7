package rewrite

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn/bindtest"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/peerline/peerline/pkg/numplan"
)

// fakeTUN is a tun.Device that hands out the packets in toRead, one batch per
// Read, and records what is written to it.
type fakeTUN struct {
	toRead [][]byte

	mu      sync.Mutex // guards written: Write runs on several goroutines
	written [][]byte

	events chan tun.Event
	closes int
}

func newFakeTUN(toRead ...[]byte) *fakeTUN {
	return &fakeTUN{toRead: toRead, events: make(chan tun.Event, 1)}
}

func (f *fakeTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(f.toRead) == 0 {
		return 0, os.ErrClosed
	}
	n := 0
	for n < len(bufs) && n < len(f.toRead) {
		sizes[n] = copy(bufs[n][offset:], f.toRead[n])
		n++
	}
	f.toRead = f.toRead[n:]
	return n, nil
}

func (f *fakeTUN) Write(bufs [][]byte, offset int) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range bufs {
		f.written = append(f.written, bytes.Clone(b[offset:]))
	}
	return len(bufs), nil
}

func (f *fakeTUN) File() *os.File           { return nil }
func (f *fakeTUN) MTU() (int, error)        { return 1420, nil }
func (f *fakeTUN) Name() (string, error)    { return "pl7", nil }
func (f *fakeTUN) Events() <-chan tun.Event { return f.events }
func (f *fakeTUN) BatchSize() int           { return 4 }
func (f *fakeTUN) Close() error             { f.closes++; return nil }

func newTestLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

const testOffset = 16 // wireguard-go reads behind its transport header

func TestDeviceRead(t *testing.T) {
	ipv6 := append([]byte{0x60, 0, 0, 0, 0, 0, 17, 64}, make([]byte, 32)...)
	invite := atAlice.fromAlice(inviteTmpl)
	tests := []struct {
		name string
		room int // len(bufs[i]) past the offset
		in   []byte
		want []byte
	}{
		{"RTP in place", 2048, rtpLocalA, rtpWire},
		{"INVITE grows", 2048, invite, onWireA.fromAlice(inviteTmpl)},
		{"INVITE grows into exactly the room there is", len(onWireA.fromAlice(inviteTmpl)), invite, onWireA.fromAlice(inviteTmpl)},
		// Passed with only its IP addresses mapped, it would carry our
		// 10.0.1.1 to the peer, where it names the peer's own line 1.
		{"INVITE without room to grow: dropped", len(invite), invite, nil},
		{"IPv6 unchanged", 2048, ipv6, ipv6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Wrap(newFakeTUN(tt.in), bobAtAlice, nil)
			bufs := [][]byte{make([]byte, testOffset+tt.room)}
			sizes := make([]int, 1)
			n, err := d.Read(bufs, sizes, testOffset)
			if n != 1 || err != nil {
				t.Fatalf("Read() = %d, %v, want 1, nil", n, err)
			}
			if got := bufs[0][testOffset : testOffset+sizes[0]]; !bytes.Equal(got, tt.want) {
				t.Errorf("Read(%q) =\n%q\nwant\n%q", tt.in, got, tt.want)
			}
		})
	}
}

func TestDeviceWrite(t *testing.T) {
	ok := onWireB.fromBob(okTmpl)
	tests := []struct {
		name string
		in   []byte
		want []byte
	}{
		{"RTP in place", rtpWire, swapAddrs(rtpLocalA)},
		{"200 OK shrinks", ok, atAlice.fromBob(okTmpl)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := newFakeTUN()
			d := Wrap(inner, bobAtAlice, nil)
			buf := make([]byte, testOffset+len(tt.in), 4096)
			copy(buf[testOffset:], tt.in)
			bufs := [][]byte{buf}
			if n, err := d.Write(bufs, testOffset); n != 1 || err != nil {
				t.Fatalf("Write() = %d, %v, want 1, nil", n, err)
			}
			if len(inner.written) != 1 || !bytes.Equal(inner.written[0], tt.want) {
				t.Errorf("Write(%q) wrote\n%q\nwant\n%q", tt.in, inner.written, tt.want)
			}
			if got := bufs[0][testOffset:]; !bytes.Equal(got, tt.want) {
				t.Errorf("Write(%q) left bufs[0] = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestDeviceWriteGrows uses the spare capacity of a buffer handed to Write.
// numplan never lengthens an address on the way in (10.255 and 10.254 are as
// long as any node index), so this drives the path through a peer whose
// packet is mapped outbound-style; what matters is the reslicing.
func TestDeviceWriteGrows(t *testing.T) {
	inner := newFakeTUN()
	d := Wrap(inner, bobAtAlice, nil)
	in := atAlice.fromAlice(inviteTmpl)
	want := onWireA.fromAlice(inviteTmpl)
	buf := make([]byte, testOffset+len(in), testOffset+len(want))
	copy(buf[testOffset:], in)
	bufs := [][]byte{buf}
	ds := &d.dirs[outbound]
	ds.mu.Lock()
	got := d.slowLocked(ds, outbound, bufs[0][testOffset:cap(bufs[0])], len(in), 0)
	ds.mu.Unlock()
	if got != len(want) || !bytes.Equal(buf[testOffset:testOffset+got], want) {
		t.Errorf("rewrite(%q) = %q, want %q", in, buf[testOffset:testOffset+got], want)
	}
}

func TestDeviceStats(t *testing.T) {
	inner := newFakeTUN(rtpLocalA, atAlice.fromAlice(inviteTmpl), []byte{0x60}, rtpLocalA[:10])
	d := Wrap(inner, bobAtAlice, nil)
	bufs := make([][]byte, 4)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	if n, err := d.Read(bufs, make([]int, 4), testOffset); n != 4 || err != nil {
		t.Fatalf("Read() = %d, %v, want 4, nil", n, err)
	}
	w := bytes.Clone(onWireB.fromBob(okTmpl))
	if _, err := d.Write([][]byte{w}, 0); err != nil {
		t.Fatalf("Write() error %v", err)
	}
	got := d.Stats()
	want := Stats{
		Outbound: Counts{Packets: 4, Plain: 1, SIPRewritten: 1, NonIPv4: 1, Malformed: 1},
		// The 200 answers the phone's INVITE: a message of its dialog.
		Inbound: Counts{Packets: 1, SIPRewritten: 1, SIPInDialog: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

func TestDeviceMediaPackets(t *testing.T) {
	// Line 2's phone, both ways: its count is the sum of the directions'.
	line2Out := udp4("10.0.2.1", "10.7.1.1", 10002, 20000, rtpLocalA[28:])
	line2In := udp4("10.255.1.1", "10.254.2.1", 20000, 10002, rtpLocalA[28:])
	inner := newFakeTUN(rtpLocalA, atAlice.fromAlice(inviteTmpl), rtpLocalA, line2Out)
	d := Wrap(inner, bobAtAlice, nil)
	bufs := make([][]byte, 4)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	if n, err := d.Read(bufs, make([]int, 4), testOffset); n != 4 || err != nil {
		t.Fatalf("Read() = %d, %v, want 4, nil", n, err)
	}
	if _, err := d.Write([][]byte{bytes.Clone(rtpWire), line2In}, 0); err != nil {
		t.Fatalf("Write() error %v", err)
	}
	// Two RTP packets out and one in for line 1's phone, one each way for
	// line 2's; the INVITE is signalling, not media.
	for _, tt := range []struct{ line, want int }{{1, 3}, {2, 2}, {3, 0}, {0, 0}, {-1, 0}, {255, 0}, {300, 0}} {
		if got := d.MediaPackets(tt.line); got != uint64(tt.want) {
			t.Errorf("MediaPackets(%d) = %d, want %d", tt.line, got, tt.want)
		}
	}
}

func TestDeviceDelegates(t *testing.T) {
	inner := newFakeTUN()
	var log strings.Builder
	// The supervisor's logger names the tunnel already; Wrap must not
	// name it again ("peer=7 peer=7").
	d := Wrap(inner, bobAtAlice, newTestLogger(&log).With("peer", 7))
	if mtu, err := d.MTU(); mtu != 1420 || err != nil {
		t.Errorf("MTU() = %d, %v, want 1420, nil", mtu, err)
	}
	if name, err := d.Name(); name != "pl7" || err != nil {
		t.Errorf("Name() = %q, %v, want pl7, nil", name, err)
	}
	if d.BatchSize() != 4 || d.Events() != inner.Events() || d.File() != nil {
		t.Errorf("BatchSize, Events or File not the inner device's")
	}
	for range 2 {
		if err := d.Close(); err != nil {
			t.Errorf("Close() = %v, want nil", err)
		}
	}
	if inner.closes != 1 {
		t.Errorf("Close() twice closed the inner device %d times, want 1", inner.closes)
	}
	if n := strings.Count(log.String(), "peer="); n != 1 || !strings.Contains(log.String(), "peer=7") {
		t.Errorf("Close() logged %q, want the peer in it once", log.String())
	}
}

// TestDeviceLogsOnce checks that trouble is logged once per kind, not per
// packet.
func TestDeviceLogsOnce(t *testing.T) {
	var log strings.Builder
	bad := []byte{0x45, 0, 0, 1}
	d := Wrap(newFakeTUN(bad, bad, bad), bobAtAlice, newTestLogger(&log))
	bufs := [][]byte{make([]byte, 64), make([]byte, 64), make([]byte, 64)}
	if _, err := d.Read(bufs, make([]int, 3), 0); err != nil {
		t.Fatalf("Read() error %v", err)
	}
	if n := strings.Count(log.String(), "kind=malformed"); n != 1 {
		t.Errorf("3 malformed packets logged %d lines, want 1:\n%s", n, log.String())
	}
}

// TestDeviceConcurrent reads and writes at once, as wireguard-go does; run
// with -race.
func TestDeviceConcurrent(t *testing.T) {
	const n = 200
	in := make([][]byte, n)
	for i := range in {
		in[i] = atAlice.fromAlice(inviteTmpl)
	}
	d := Wrap(newFakeTUN(in...), bobAtAlice, nil)
	// A clock that moves a second per batch keeps the SIP flood limit out
	// of the way.
	var clock atomic.Int64
	d.clock = func() int64 { return clock.Add(int64(time.Second)) }
	var wg sync.WaitGroup
	wg.Go(func() {
		bufs := [][]byte{make([]byte, 2048)}
		for range n {
			if _, err := d.Read(bufs, make([]int, 1), 0); err != nil {
				t.Errorf("Read() error %v", err)
				return
			}
		}
	})
	for range 2 {
		wg.Go(func() {
			for range n {
				b := bytes.Clone(onWireB.fromBob(okTmpl))
				if _, err := d.Write([][]byte{b}, 0); err != nil {
					t.Errorf("Write() error %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if s := d.Stats(); s.Outbound.SIPRewritten != n || s.Inbound.SIPRewritten != 2*n {
		t.Errorf("Stats() = %+v, want %d SIP rewritten out and %d in", s, n, 2*n)
	}
}

func TestDeviceReadRTPAllocs(t *testing.T) {
	d := Wrap(&repeatTUN{pkt: rtpLocalA}, bobAtAlice, nil)
	bufs := [][]byte{make([]byte, 2048)}
	sizes := make([]int, 1)
	allocs := testing.AllocsPerRun(1000, func() {
		_, _ = d.Read(bufs, sizes, testOffset)
	})
	if allocs != 0 {
		t.Errorf("Read of an RTP packet allocates %v times, want 0", allocs)
	}
}

// repeatTUN reads the same packet forever.
type repeatTUN struct {
	fakeTUN
	pkt []byte
}

func (r *repeatTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	sizes[0] = copy(bufs[0][offset:], r.pkt)
	return 1, nil
}

// TestDeviceOverWireGuard runs a call set-up and its media through two real
// wireguard-go devices joined by channel binds, each with its TUN wrapped:
// what Alice's phone sends must arrive at Bob's phone in Bob's node's terms,
// and back.
// wireGuardPair joins Alice's node (index 0, knows Bob as 7) and Bob's (1,
// knows Alice as 4) with two wireguard-go devices over channel binds, each
// TUN wrapped, and returns the TUNs.
func wireGuardPair(t *testing.T) [2]*tuntest.ChannelTUN {
	t.Helper()
	tuns, _ := wireGuardPairDevices(t)
	return tuns
}

// wireGuardPairDevices is wireGuardPair, and also returns the two rewriters.
func wireGuardPairDevices(t *testing.T) ([2]*tuntest.ChannelTUN, [2]*Device) {
	t.Helper()
	goroutineLeakCheck(t)
	binds := bindtest.NewChannelBinds()
	var devs [2]*Device
	var tuns [2]*tuntest.ChannelTUN
	var keys [2]*ecdh.PrivateKey
	for i := range keys {
		k, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k
	}
	// bindtest delivers to the other bind on "port" 1 (from bind 0) or 2
	// (from bind 1).
	index := [2]uint8{bobAtAlice, aliceAtBob}
	for i := range 2 {
		tuns[i] = tuntest.NewChannelTUN()
		logger := &device.Logger{Verbosef: device.DiscardLogf, Errorf: device.DiscardLogf}
		devs[i] = Wrap(tuns[i].TUN(), index[i], nil)
		dev := device.NewDevice(devs[i], binds[i], logger)
		t.Cleanup(dev.Close)
		var cfg strings.Builder
		fmt.Fprintf(&cfg, "private_key=%s\nreplace_peers=true\n", hex.EncodeToString(keys[i].Bytes()))
		fmt.Fprintf(&cfg, "public_key=%s\nendpoint=127.0.0.1:%d\nreplace_allowed_ips=true\n",
			hex.EncodeToString(keys[1-i].PublicKey().Bytes()), i+1)
		for _, p := range numplan.WirePrefixes {
			fmt.Fprintf(&cfg, "allowed_ip=%s\n", p)
		}
		if err := dev.IpcSet(cfg.String()); err != nil {
			t.Fatalf("IpcSet(device %d) error %v", i, err)
		}
		if err := dev.Up(); err != nil {
			t.Fatalf("Up(device %d) error %v", i, err)
		}
	}
	return tuns, devs
}

func TestDeviceOverWireGuard(t *testing.T) {
	tuns := wireGuardPair(t)
	steps := []struct {
		name     string
		from, to int
		send     []byte
		want     []byte
	}{
		{"INVITE", 0, 1, atAlice.fromAlice(inviteTmpl), atBob.fromAlice(inviteTmpl)},
		{"200 OK", 1, 0, atBob.fromBob(okTmpl), atAlice.fromBob(okTmpl)},
		{"RTP Alice to Bob", 0, 1, rtpLocalA, rtpLocalB},
		{"RTP Bob to Alice", 1, 0, swapAddrs(rtpLocalB), swapAddrs(rtpLocalA)},
		{"call-back", 1, 0, atBob.fromBob(callBackTmpl), atAlice.fromBob(callBackTmpl)},
	}
	for _, s := range steps {
		tuns[s.from].Outbound <- s.send
		select {
		case got := <-tuns[s.to].Inbound:
			if !bytes.Equal(got, s.want) {
				t.Errorf("%s: sent\n%q\nreceived\n%q\nwant\n%q", s.name, s.send, got, s.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: nothing received within 10s", s.name)
		}
	}
}

// goroutineLeakCheck fails t if goroutines started during the test are still
// running a moment after its cleanups (wireguard-go's device_test.go does the
// same).
func goroutineLeakCheck(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Errorf("%d goroutines leaked:\n%s", runtime.NumGoroutine()-before, buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// TestDeviceRefusedSIP: a SIP message sipmsg refuses passes unchanged
// unless it holds an address of our plan, which would name the wrong phone
// at the other end: then it is dropped. Both are counted by sipmsg's reason.
func TestDeviceRefusedSIP(t *testing.T) {
	truncated := func(src, dst, uri string) []byte {
		return udp4(src, dst, 5060, 5060, []byte("INVITE sip:bob@"+uri+" SIP/2.0\r\nVia: SIP/2.0/UDP "+uri+"\r\n"))
	}
	badLength := func(src, dst string) []byte {
		return udp4(src, dst, 5060, 5060, []byte("OPTIONS sip:"+dst+" SIP/2.0\r\nContent-Length: 0099\r\n\r\n"))
	}
	tests := []struct {
		name string
		read bool // from a local phone (Read), else from the wire (Write)
		pkt  []byte
		sent bool // passed on, payload unchanged
		want Counts
	}{
		{"local addresses, from the phone", true, truncated("10.0.1.1", "10.7.2.1", "10.7.2.1"), false,
			Counts{Packets: 1, SIPRefused: 1, SIPRefusals: map[string]uint64{"no-header-end": 1}}},
		{"no address of ours, from the phone", true, truncated("10.0.1.1", "10.7.2.1", "192.0.2.9"), true,
			Counts{Packets: 1, SIPUnparsable: 1, SIPRefusals: map[string]uint64{"no-header-end": 1}}},
		{"wire addresses, from the peer", false, badLength("10.255.2.1", "10.254.1.1"), false,
			Counts{Packets: 1, SIPRefused: 1, SIPRefusals: map[string]uint64{"bad-content-length": 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := newFakeTUN()
			d := Wrap(inner, bobAtAlice, nil)
			var sent [][]byte
			var got Counts
			if tt.read {
				inner.toRead = [][]byte{tt.pkt}
				sent = readOnce(t, d, 1)
				got = d.Stats().Outbound
			} else {
				if _, err := d.Write([][]byte{bytes.Clone(tt.pkt)}, 0); err != nil {
					t.Fatal(err)
				}
				sent = inner.written
				got = d.Stats().Inbound
			}
			if (len(sent) == 1) != tt.sent {
				t.Errorf("%d packets passed, want sent=%v", len(sent), tt.sent)
			}
			if tt.sent {
				if p := udpPayload(sent[0]); !bytes.Equal(p, udpPayload(tt.pkt)) {
					t.Errorf("payload changed: %q", p)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Stats() = %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
