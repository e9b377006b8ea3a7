//go:build linux && lab

package peerlab

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
)

// The flood of TestSIPFloodDuringCall: new OPTIONS, each its own Call-ID,
// from B's phone host to A's phone, far over the rewriter's 50/s, bounded
// in count and time.
const (
	floodRate = 1000 // messages per second
	floodMax  = 15 * floodRate
	floodPort = 5099
	// floodBefore is how long the flood runs before B hangs up: long
	// enough to spend the shared limit's burst of 100 many times over.
	floodBefore = 2 * time.Second
)

// TestSIPFloodDuringCall (issue 15.5): while B's side floods A's phone with
// new requests, B hangs up an established call. The BYE belongs to a dialog
// A's phone is in, so A's rewriter lets it past the flood limit: the
// capture on A's phone shows it arriving within one retransmission of B's
// phone sending it (the original or the first retransmission), while the
// flood's own messages are limited. With one limit for all SIP, the BYE lost
// the race 95 % of the time, and the far phone stayed in the call 11.5 s.
func TestSIPFloodDuringCall(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireTools(t, "tcpdump")
	ctx, n := newNetwork(t, 2*time.Minute)
	pa, pb, err := n.StartPhones(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer pb.Close()
	defer pa.Close()
	dir := t.TempDir()
	caps := map[string]*lab.Capture{}
	for name, h := range map[string]*lab.Host{"A": n.A.PhoneHost, "B": n.B.PhoneHost} {
		c, err := h.Capture(ctx, "eth0", filepath.Join(dir, "phone"+name+".pcap"), "udp")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Stop() })
		caps[name] = c
	}

	uri := "sip:b@" + n.A.AddrOf(n.B).String()
	if err := pa.Dial(ctx, uri); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*Phone{pa, pb} {
		if _, err := p.WaitEstablished(ctx); err != nil {
			t.Fatalf("phone %s: call to %s not established: %v", p.Node.Name, uri, err)
		}
	}

	// The flood, from B's phone host to A's phone as B's side dials it.
	target := netip.AddrPortFrom(n.B.AddrOf(n.A), 5060)
	conn, err := lab.In(n.B.PhoneHost, func() (*net.UDPConn, error) {
		return net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(n.B.PhoneAddr(), floodPort)), net.UDPAddrFromAddrPort(target))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	floodCtx, stopFlood := context.WithTimeout(ctx, floodMax/floodRate*time.Second)
	defer stopFlood()
	var sent atomic.Int64
	floodDone := make(chan error, 1)
	go func() { floodDone <- sipFlood(floodCtx, conn, n.B.PhoneAddr(), target, &sent) }()

	if err := sleep(ctx, floodBefore); err != nil {
		t.Fatal(err)
	}
	hungUp := time.Now()
	if err := pb.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 2)
	for _, p := range []*Phone{pa, pb} {
		go func() { _, err := p.WaitClosed(ctx); closed <- err }()
	}
	for range 2 {
		if err := <-closed; err != nil {
			t.Errorf("a phone did not see the hang-up: %v", err)
		}
	}
	t.Logf("both phones saw the hang-up %v after B hung up", time.Since(hungUp).Round(time.Millisecond))
	// A moment more of flood, so that a BYE retransmission would meet it
	// too, then the flood stops.
	_ = sleep(ctx, 500*time.Millisecond)
	stopFlood()
	if err := <-floodDone; err != nil {
		t.Fatalf("flood: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	for _, c := range caps {
		c.Stop()
	}

	// What B's phone sent and A's phone received, from the captures.
	byes := func(name string, want func(lab.Datagram) bool) []lab.Datagram {
		ds, err := lab.ReadDatagrams(caps[name].Path())
		if err != nil {
			t.Fatal(err)
		}
		var out []lab.Datagram
		for _, d := range ds {
			for _, part := range SplitGSO(d) {
				if bytes.HasPrefix(part.Payload, []byte("BYE ")) && want(part) {
					out = append(out, part)
				}
			}
		}
		return out
	}
	sentBy := byes("B", func(d lab.Datagram) bool { return d.Src.Addr() == n.B.PhoneAddr() && d.Src.Port() != floodPort })
	gotAt := byes("A", func(d lab.Datagram) bool { return d.Dst.Addr() == n.A.PhoneAddr() })
	floodIn := 0
	if ds, err := lab.ReadDatagrams(caps["A"].Path()); err == nil {
		for _, d := range ds {
			if d.Dst.Addr() == n.A.PhoneAddr() && bytes.HasPrefix(d.Payload, []byte("OPTIONS ")) {
				floodIn++
			}
		}
	}
	t.Logf("flood: %d OPTIONS sent at %d/s, %d reached phone A; B's phone sent %d BYE(s), A's phone received %d",
		sent.Load(), floodRate, floodIn, len(sentBy), len(gotAt))
	if len(sentBy) == 0 || len(gotAt) == 0 {
		t.Fatalf("B sent %d BYEs, A received %d: want the hang-up to arrive", len(sentBy), len(gotAt))
	}
	// Within one retransmission: by the time the first BYE reached A, B
	// had sent it at most twice (RFC 3261's T1 = 500 ms between them).
	before := 0
	for _, d := range sentBy {
		if !d.Time.After(gotAt[0].Time) {
			before++
		}
	}
	t.Logf("first BYE reached phone A %v after B's phone first sent it, after %d transmission(s)",
		gotAt[0].Time.Sub(sentBy[0].Time).Round(time.Microsecond), before)
	if before > 2 {
		t.Errorf("the BYE reached phone A only after %d transmissions from B (first sent %v, arrived %v): want the original or its first retransmission",
			before, sentBy[0].Time.Format(time.StampMicro), gotAt[0].Time.Format(time.StampMicro))
	}

	// The flood was limited and the BYE let through, and A's daemon says
	// so where an operator looks (`peerline peers --json`).
	st, err := n.A.StatusSince(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var flood, inDialog uint64
	for _, p := range st.Peers {
		if p.Rewrite != nil {
			flood, inDialog = p.Rewrite.Inbound.Dropped.SIPFlood, p.Rewrite.Inbound.SIPInDialog
		}
	}
	t.Logf("node A's rewriter: %d dropped as sip_flood, %d let through in a dialog", flood, inDialog)
	if flood == 0 || inDialog == 0 {
		t.Errorf("node A's rewriter dropped %d as sip_flood and let %d through in a dialog: want both", flood, inDialog)
	}
	n.A.peerline = peerlineBin
	var peers []control.Peer
	if err := n.A.cli(ctx, &peers, "peers", "--json"); err != nil {
		t.Fatal(err)
	}
	var cliFlood uint64
	for _, p := range peers {
		for _, d := range p.Rewrite {
			for _, r := range d.Dropped {
				if d.Direction == "inbound" && r.Reason == "sip_flood" {
					cliFlood += r.Count
				}
			}
		}
	}
	if cliFlood == 0 {
		t.Errorf("peerline peers --json on A shows no inbound sip_flood drops: %+v", peers)
	}
}

// sipFlood sends new OPTIONS to target at floodRate until ctx ends or
// floodMax are sent, counting them in sent.
func sipFlood(ctx context.Context, conn *net.UDPConn, from netip.Addr, target netip.AddrPort, sent *atomic.Int64) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var buf []byte
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		for range floodRate / 100 {
			k := sent.Load()
			if k >= floodMax {
				return nil
			}
			buf = fmt.Appendf(buf[:0], "OPTIONS sip:a@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s:%d;branch=z9hG4bK-flood%d\r\nMax-Forwards: 70\r\n"+
				"From: <sip:flood@%s>;tag=f%d\r\nTo: <sip:a@%s>\r\nCall-ID: flood-%d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
				target.Addr(), from, floodPort, k, from, k, target.Addr(), k)
			if _, err := conn.Write(buf); err != nil {
				// An ICMP error from a phone that refused one: the
				// flood goes on.
				continue
			}
			sent.Add(1)
		}
	}
}
