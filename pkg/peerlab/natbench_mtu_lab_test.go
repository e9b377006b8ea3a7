//go:build linux && lab

package peerlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"testing"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/lab"
)

// smallMTUResult is the small-MTU row of nat-matrix.json (issue 14.1): two
// Pis behind port-restricted routers whose uplinks carry 1280 bytes and
// drop the ICMP that would say so, paired NAT_RUNS times. Besides the first
// packet, each run sends one datagram of the largest size a phone on a
// 1500-byte port sends whole (1472 bytes of UDP payload, Don't Fragment
// set, as a desk phone's big INVITE) from phone B to phone A and counts
// whether it arrived the first time.
type smallMTUResult struct {
	PathMTU        int     `json:"path_mtu"`
	ICMP           string  `json:"icmp"`
	TunnelMTU      int     `json:"tunnel_mtu"`
	Runs           int     `json:"runs"`
	Connected      int     `json:"connected"`
	FirstPacketP50 float64 `json:"first_packet_ms_p50"`
	FirstPacketP95 float64 `json:"first_packet_ms_p95"`
	LargeDelivered int     `json:"large_datagram_delivered"`
	LargeP50       float64 `json:"large_datagram_ms_p50"`
	LargeP95       float64 `json:"large_datagram_ms_p95"`
}

// addSmallMTURow adds "small_mtu" to the matrix unless NAT_ONLY names
// another case.
func addSmallMTURow(b *testing.B, out map[string]any, runs int) {
	if only := os.Getenv("NAT_ONLY"); only != "" && only != "small-mtu" {
		return
	}
	out["small_mtu"] = benchSmallMTU(b, runs)
}

func benchSmallMTU(b *testing.B, runs int) smallMTUResult {
	r := smallMTUResult{PathMTU: lab.MinPathMTU, ICMP: "filtered", TunnelMTU: config.DefaultMTU, Runs: runs}
	// PEERLINE_LAB_TUNNEL_MTU=1420 measures the old default on this path.
	if m, err := strconv.Atoi(os.Getenv("PEERLINE_LAB_TUNNEL_MTU")); err == nil && m > 0 {
		r.TunnelMTU = m
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(runs)*30*time.Second+time.Minute)
	defer cancel()
	l := newLab(b)
	defer l.Close()
	n, err := Build(ctx, l, Options{Peerlined: peerlinedBin, NAT: &NATOptions{
		A: lab.PortRestricted, B: lab.PortRestricted, Policy: lab.InputDrop, Impairment: benchDelay,
		Rendezvousd: rendezvousdBin, Peerline: peerlineBin,
		beforePairing: func(n *Network) error {
			for _, nat := range []*lab.NAT{n.NATA, n.NATB} {
				if err := nat.BlackHole(lab.MinPathMTU); err != nil {
					return err
				}
			}
			if r.TunnelMTU == config.DefaultMTU {
				return nil
			}
			return n.setTunnelMTU(ctx, r.TunnelMTU)
		},
	}})
	if err != nil {
		b.Fatalf("small MTU: %v", err)
	}
	var firsts, larges []time.Duration
	for run := range runs {
		pr := n.Pairing
		if run > 0 {
			if pr, err = n.repair(ctx); err != nil {
				fmt.Fprintf(os.Stderr, "small-mtu run %d: not connected: %v\n", run, err)
				continue
			}
		}
		r.Connected++
		firsts = append(firsts, pr.FirstPacket)
		d, err := largeDatagram(ctx, n.B, n.A)
		if err != nil {
			fmt.Fprintf(os.Stderr, "small-mtu run %d: first packet %v, large datagram: %v\n", run, pr.FirstPacket.Round(time.Millisecond), err)
			continue
		}
		r.LargeDelivered++
		larges = append(larges, d)
		fmt.Fprintf(os.Stderr, "small-mtu run %d: first packet %v, 1472-byte DF datagram in %v\n", run, pr.FirstPacket.Round(time.Millisecond), d.Round(100*time.Microsecond))
	}
	r.FirstPacketP50, r.FirstPacketP95 = natPercentile(firsts, 0.5), natPercentile(firsts, 0.95)
	r.LargeP50, r.LargeP95 = natPercentile(larges, 0.5), natPercentile(larges, 0.95)
	fmt.Fprintf(os.Stderr, "small-mtu: %d/%d connected, first packet p50 %.0f ms p95 %.0f ms, %d large datagrams arrived the first time, p50 %.1f ms\n",
		r.Connected, runs, r.FirstPacketP50, r.FirstPacketP95, r.LargeDelivered, r.LargeP50)
	return r
}

// largeDatagram sends one 1472-byte UDP datagram (DF set: Linux's default
// for UDP) from from's phone to to's phone and returns how long it took to
// arrive, once.
func largeDatagram(ctx context.Context, from, to *Node) (time.Duration, error) {
	const port = 40000
	conn, err := lab.In(to.PhoneHost, func() (*net.UDPConn, error) {
		return net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(to.PhoneAddr(), port)))
	})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	out, err := lab.In(from.PhoneHost, func() (*net.UDPConn, error) {
		return net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(from.AddrOf(to), port)))
	})
	if err != nil {
		return 0, err
	}
	defer out.Close()
	start := time.Now()
	if _, err := out.Write(make([]byte, 1472)); err != nil {
		return 0, err
	}
	if err := conn.SetReadDeadline(time.Now().Add(3 * time.Second)); err != nil {
		return 0, err
	}
	buf := make([]byte, 2048)
	for {
		k, _, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return 0, errors.New("not arrived within 3 s")
			}
			return 0, err
		}
		if k == 1472 {
			return time.Since(start), nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
}
