//go:build linux && lab

package lab_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
	"golang.org/x/sys/unix"
)

var (
	pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)
	pingRTT     = regexp.MustCompile(`rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms`)
)

type pingResult struct {
	sent, received int
	min, avg, max  time.Duration
}

// ping runs iputils ping in h and parses its summary.
func ping(ctx context.Context, t *testing.T, h *lab.Host, dst string, args ...string) pingResult {
	t.Helper()
	argv := append([]string{"ping", "-q", "-n"}, args...)
	out, err := h.Run(ctx, append(argv, dst)...)
	// ping exits 1 when some replies are missing: that is a result here.
	m := pingSummary.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("ping %s: %v\n%s", dst, err, out)
	}
	var r pingResult
	r.sent, _ = strconv.Atoi(m[1])
	r.received, _ = strconv.Atoi(m[2])
	if m := pingRTT.FindStringSubmatch(out); m != nil {
		ms := func(s string) time.Duration {
			f, _ := strconv.ParseFloat(s, 64)
			return time.Duration(f * float64(time.Millisecond))
		}
		r.min, r.avg, r.max = ms(m[1]), ms(m[2]), ms(m[3])
	}
	return r
}

// checkRTT checks round trips against the expected want. The fastest one
// shows what the switch adds: never less than want, and only timer
// slack more. The average also carries the load of a shared 2-core
// machine (other tests' processes delay ping's wakeups), so it only gets
// a sanity bound.
func checkRTT(t *testing.T, r pingResult, want time.Duration) {
	t.Helper()
	if r.min < want || r.min > want+10*time.Millisecond {
		t.Errorf("fastest round trip %v, want %v to %v", r.min, want, want+10*time.Millisecond)
	}
	if r.avg > want+100*time.Millisecond {
		t.Errorf("average round trip %v, want about %v", r.avg, want)
	}
}

func twoPublicHosts(t *testing.T, imp lab.Impairment) (*lab.Lab, *lab.Internet, *lab.Host, *lab.Host) {
	t.Helper()
	l := labtest.New(t)
	labtest.RequireTools(t, "ping")
	inet, err := l.Internet(t.Context(), "inet", imp)
	check(t, err)
	a, err := l.PublicHost("a", inet, netip.MustParsePrefix("198.51.100.1/24"))
	check(t, err)
	b, err := l.PublicHost("b", inet, netip.MustParsePrefix("198.51.100.2/24"))
	check(t, err)
	// Without the hosts' IPv6 chatter (MLD, router solicitations) the
	// switch's counters count the test's packets only.
	for _, h := range []*lab.Host{a, b} {
		check(t, h.Sysctl("net.ipv6.conf.all.disable_ipv6", "1"))
	}
	return l, inet, a, b
}

// TestImpairDelay checks that a ping across the Internet takes 2×delay,
// for delays changed at run time.
func TestImpairDelay(t *testing.T) {
	_, inet, a, _ := twoPublicHosts(t, lab.Impairment{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ping(ctx, t, a, "198.51.100.2", "-c", "1", "-W", "2") // ARP
	for _, delay := range []time.Duration{0, 25 * time.Millisecond, 50 * time.Millisecond} {
		check(t, inet.SetImpairment(lab.Impairment{Delay: delay}))
		r := ping(ctx, t, a, "198.51.100.2", "-c", "20", "-i", "0.02", "-W", "2")
		t.Logf("one-way delay %v: %d/%d replies, rtt min/avg/max %v/%v/%v", delay, r.received, r.sent, r.min, r.avg, r.max)
		if r.received != r.sent {
			t.Errorf("delay %v: %d of %d pings answered, want all", delay, r.received, r.sent)
		}
		checkRTT(t, r, 2*delay)
	}
}

// TestImpairLoss checks random loss over a few thousand packets: UDP one
// way (the loss itself) and ping (the round trip loses 1-(1-p)², about 2p).
func TestImpairLoss(t *testing.T) {
	const loss = 0.01
	_, inet, a, b := twoPublicHosts(t, lab.Impairment{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ping(ctx, t, a, "198.51.100.2", "-c", "1", "-W", "2") // ARP before loss starts
	check(t, inet.SetImpairment(lab.Impairment{Loss: loss}))

	rx, err := b.ListenPacket("udp4", "198.51.100.2:9000")
	check(t, err)
	defer rx.Close()
	tx, err := a.ListenPacket("udp4", "198.51.100.1:0")
	check(t, err)
	defer tx.Close()
	const n = 4000
	before := inet.Stats()
	got := make(chan int)
	go func() {
		buf := make([]byte, 64)
		count := 0
		for {
			rx.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := rx.ReadFrom(buf); err != nil {
				got <- count
				return
			}
			count++
		}
	}()
	dst := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.51.100.2:9000"))
	for i := range n {
		if _, err := tx.WriteTo([]byte("x"), dst); err != nil {
			t.Fatal(err)
		}
		if i%50 == 49 {
			time.Sleep(5 * time.Millisecond) // stay below socket buffers
		}
	}
	received := <-got
	st := inet.Stats()
	lost := n - received
	t.Logf("UDP one way, loss %.1f%%: %d of %d lost (%.2f%%); switch counted %d lost, %d overflow",
		loss*100, lost, n, 100*float64(lost)/n, st.Lost-before.Lost, st.Overflow-before.Overflow)
	// Binomial(4000, 0.01): mean 40, sd 6.3; 15..75 is beyond 4 sd.
	if lost < 15 || lost > 75 {
		t.Errorf("UDP: %d of %d lost, want about %d", lost, n, int(n*loss))
	}
	if d := st.Lost - before.Lost; d != uint64(lost) {
		t.Errorf("switch counted %d lost frames, the receiver missed %d", d, lost)
	}

	r := ping(ctx, t, a, "198.51.100.2", "-c", "1000", "-i", "0.002", "-W", "1")
	pl := float64(r.sent-r.received) / float64(r.sent)
	t.Logf("ping, loss %.1f%% each way: %d of %d lost (%.2f%%, expected %.2f%%)", loss*100, r.sent-r.received, r.sent, 100*pl, 100*(1-(1-loss)*(1-loss)))
	// Binomial(1000, 0.0199): mean 20, sd 4.4.
	if lost := r.sent - r.received; lost < 4 || lost > 40 {
		t.Errorf("ping: %d of %d lost, want about 20", lost, r.sent)
	}
}

// TestImpairBounded checks that the delay line holds at most Limit frames,
// counts the rest, and that Close stops the switch.
func TestImpairBounded(t *testing.T) {
	l, inet, a, b := twoPublicHosts(t, lab.Impairment{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ping(ctx, t, a, "198.51.100.2", "-c", "1", "-W", "2") // ARP
	const limit = 20
	check(t, inet.SetImpairment(lab.Impairment{Delay: 300 * time.Millisecond, Limit: limit}))
	rx, err := b.ListenPacket("udp4", "198.51.100.2:9000")
	check(t, err)
	defer rx.Close()
	tx, err := a.ListenPacket("udp4", "198.51.100.1:0")
	check(t, err)
	defer tx.Close()
	before := inet.Stats()
	dst := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.51.100.2:9000"))
	const n = 100
	for range n {
		tx.WriteTo([]byte("x"), dst)
	}
	received := 0
	buf := make([]byte, 64)
	rx.SetReadDeadline(time.Now().Add(time.Second))
	for {
		if _, _, err := rx.ReadFrom(buf); err != nil {
			break
		}
		received++
	}
	st := inet.Stats()
	t.Logf("burst of %d into a %d-frame delay line: %d received, %d overflow", n, limit, received, st.Overflow-before.Overflow)
	if received > limit || received == 0 {
		t.Errorf("received %d of a burst of %d, want 1..%d", received, n, limit)
	}
	if got := st.Overflow - before.Overflow; got != uint64(n-received) {
		t.Errorf("overflow counted %d, want %d (sent %d, received %d)", got, n-received, n, received)
	}

	check(t, inet.SetImpairment(lab.Impairment{}))
	if err := inet.SetImpairment(lab.Impairment{Loss: 1.5}); err == nil {
		t.Error("SetImpairment with loss 1.5: nil error")
	}
	check(t, inet.Close())
	select {
	case <-inet.Done():
	default:
		t.Error("Done not closed after Close")
	}
	check(t, inet.Close())
	h, err := l.Host("late")
	check(t, err)
	if _, err := inet.Attach(h, "eth0", ""); !errors.Is(err, lab.ErrClosed) {
		t.Errorf("Attach after Close = %v, want ErrClosed", err)
	}
}

// TestNATImpair runs UDP through a NAT and an impaired Internet together:
// the prober still sees the NAT's class, and round trips take 2×delay.
func TestNATImpair(t *testing.T) {
	const delay = 25 * time.Millisecond
	w := newNATWorld(t, lab.Impairment{Delay: delay, Loss: 0.01})
	n, pi := w.natBox(t, 0, lab.RestrictedCone, lab.InputDrop)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	got, err := lab.ProbeNAT(ctx, pi, w.vps, vpsIP1.Addr(), vpsIP2.Addr())
	if err != nil {
		t.Fatalf("ProbeNAT through %v: %v", w.inet.Impairment(), err)
	}
	if got.Mapping != lab.EIM || got.Filtering != lab.ADF {
		t.Errorf("through an impaired Internet: %s/%s, want EIM/ADF", got.Mapping, got.Filtering)
	}
	r := ping(ctx, t, pi, vpsIP1.Addr().String(), "-c", "50", "-i", "0.02", "-W", "2")
	t.Logf("pi behind %s to VPS, delay %v loss 1%%: %d/%d replies, rtt min/avg/max %v/%v/%v",
		n.Kind(), delay, r.received, r.sent, r.min, r.avg, r.max)
	if r.received < r.sent-6 {
		t.Errorf("ping through NAT: %d of %d answered, want all but a few (1%% loss each way)", r.received, r.sent)
	}
	checkRTT(t, r, 2*delay)
}

// TestImpairOffloads sends what a namespace's stack hands to a veth
// unsegmented and without checksums (TCP segmentation offload, UDP GSO as
// wireguard-go uses it) across the switch, with a delay so frames queue.
func TestImpairOffloads(t *testing.T) {
	_, _, a, b := twoPublicHosts(t, lab.Impairment{Delay: 5 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	ln, err := b.Listen("tcp4", "198.51.100.2:9001")
	check(t, err)
	defer ln.Close()
	const size = 8 << 20
	gotTCP := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			gotTCP <- -1
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(15 * time.Second))
		n, _ := io.Copy(io.Discard, c)
		gotTCP <- n
	}()
	c, err := a.Dial(ctx, "tcp4", "198.51.100.2:9001")
	check(t, err)
	start := time.Now()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := c.Write(make([]byte, size)); err != nil {
		t.Fatalf("TCP write: %v", err)
	}
	c.Close()
	if n := <-gotTCP; n != size {
		t.Errorf("TCP: received %d bytes, want %d", n, size)
	}
	t.Logf("TCP: %d MiB in %v", size>>20, time.Since(start).Round(time.Millisecond))

	rx, err := b.ListenPacket("udp4", "198.51.100.2:9002")
	check(t, err)
	defer rx.Close()
	tx, err := a.ListenPacket("udp4", "198.51.100.1:0")
	check(t, err)
	defer tx.Close()
	const seg, segs = 1000, 8
	rc, err := tx.(*net.UDPConn).SyscallConn()
	check(t, err)
	var serr error
	check(t, rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT, seg) }))
	check(t, serr)
	dst := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.51.100.2:9002"))
	if _, err := tx.WriteTo(make([]byte, seg*segs), dst); err != nil {
		t.Fatalf("UDP GSO write: %v", err)
	}
	buf := make([]byte, 65536)
	for i := range segs {
		rx.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := rx.ReadFrom(buf)
		if err != nil {
			t.Fatalf("UDP GSO: datagram %d of %d: %v", i+1, segs, err)
		}
		if n != seg {
			t.Errorf("UDP GSO: datagram %d has %d bytes, want %d", i+1, n, seg)
		}
	}
}
