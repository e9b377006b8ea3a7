//go:build linux && lab

package lab_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
)

var (
	vpsIP1 = netip.MustParsePrefix("203.0.113.10/24")
	vpsIP2 = netip.MustParsePrefix("198.18.0.10/15")
)

// natWorld is an Internet with a VPS holding two addresses.
type natWorld struct {
	l    *lab.Lab
	inet *lab.Internet
	vps  *lab.Host
}

func newNATWorld(t *testing.T, imp lab.Impairment) *natWorld {
	t.Helper()
	l := labtest.New(t)
	labtest.RequireTools(t, "nft", "ping")
	inet, err := l.Internet(t.Context(), "inet", imp)
	check(t, err)
	vps, err := l.PublicHost("vps", inet, vpsIP1, vpsIP2)
	check(t, err)
	return &natWorld{l: l, inet: inet, vps: vps}
}

// natBox puts a NAT number k of the given kind on the Internet with one
// host behind it.
func (w *natWorld) natBox(t *testing.T, k int, kind lab.NATKind, policy lab.InputPolicy) (*lab.NAT, *lab.Host) {
	t.Helper()
	name := fmt.Sprintf("nat-%s-%s", kind, policy)
	n, err := w.l.NAT(name, kind, policy, w.inet,
		netip.MustParsePrefix(fmt.Sprintf("198.51.100.%d/24", 11+k)),
		netip.MustParsePrefix(fmt.Sprintf("192.168.%d.1/24", 1+k)))
	check(t, err)
	h, err := n.AddHost("pi-"+string(kind)+"-"+string(policy), netip.MustParsePrefix(fmt.Sprintf("192.168.%d.2/24", 1+k)))
	check(t, err)
	return n, h
}

// TestNATKinds checks that each lab NAT behaves as its RFC 4787 class, with
// both input policies, as a UDP prober on the host behind it sees it.
func TestNATKinds(t *testing.T) {
	w := newNATWorld(t, lab.Impairment{})
	type tc struct {
		kind   lab.NATKind
		policy lab.InputPolicy
	}
	var cases []tc
	for _, kind := range lab.NATKinds() {
		for _, policy := range lab.InputPolicies() {
			cases = append(cases, tc{kind, policy})
		}
	}
	for k, c := range cases {
		t.Run(string(c.kind)+"/"+string(c.policy), func(t *testing.T) {
			n, pi := w.natBox(t, k, c.kind, c.policy)
			ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
			defer cancel()
			got, err := lab.ProbeNAT(ctx, pi, w.vps, vpsIP1.Addr(), vpsIP2.Addr())
			if err != nil {
				t.Fatalf("ProbeNAT: %v", err)
			}
			t.Logf("%s/%s: mapping %s %v, filtering %s %v, mapping kept %v",
				c.kind, c.policy, got.Mapping, got.Mapped, got.Filtering, got.Arrived, got.MappingKept)
			if got.Mapping != c.kind.Mapping() {
				t.Errorf("mapping = %s (seen as %v), want %s", got.Mapping, got.Mapped, c.kind.Mapping())
			}
			if got.Filtering != c.kind.Filtering() {
				t.Errorf("filtering = %s (arrived from (ip1,p1), (ip1,p2), (ip2,p1): %v), want %s",
					got.Filtering, got.Arrived, c.kind.Filtering())
			}
			for _, m := range got.Mapped {
				if m.Addr() != n.WAN() {
					t.Errorf("public address seen by the VPS = %v, want the NAT's WAN %v", m.Addr(), n.WAN())
				}
			}
			// fc forwards the unsolicited packet to the host, so the
			// mapping stays; sym maps per destination anyway; for rc and
			// pr only policy drop keeps it (docs/design.md §7.2).
			wantKept := c.kind == lab.FullCone || (c.kind != lab.Symmetric && c.policy == lab.InputDrop)
			if got.MappingKept != wantKept {
				t.Errorf("mapping kept after refused unsolicited packets = %v, want %v", got.MappingKept, wantKept)
			}
			if t.Failed() {
				out, _ := n.Run(ctx, "nft", "list", "ruleset")
				t.Logf("ruleset of %s:\n%s", n.Name(), out)
			}
		})
	}
}

// TestNATRebinding checks that FlushConntrack and ChangeWAN give an
// established UDP flow a new public endpoint, and that the flow carries on.
func TestNATRebinding(t *testing.T) {
	w := newNATWorld(t, lab.Impairment{})
	srv, err := lab.StartProbeServer(w.vps, netip.AddrPortFrom(vpsIP1.Addr(), 0))
	check(t, err)
	defer srv.Close()
	for k, kind := range lab.NATKinds() {
		t.Run(string(kind), func(t *testing.T) {
			n, pi := w.natBox(t, k, kind, lab.InputDrop)
			ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
			defer cancel()
			c, err := pi.ListenPacket("udp4", "0.0.0.0:0")
			check(t, err)
			defer c.Close()
			observe := func() netip.AddrPort {
				t.Helper()
				m, err := lab.ObserveMapping(ctx, c, srv.Addrs()[0])
				check(t, err)
				return m
			}
			m0 := observe()
			if again := observe(); again != m0 {
				t.Fatalf("mapping changed without rebinding: %v then %v", m0, again)
			}
			check(t, n.FlushConntrack())
			m1 := observe()
			if m1 == m0 || m1.Addr() != m0.Addr() {
				t.Errorf("after FlushConntrack: mapping %v, want a new port on %v (was %v)", m1, m0.Addr(), m0)
			}
			newWAN := netip.MustParsePrefix(fmt.Sprintf("198.51.100.%d/24", 101+k))
			check(t, n.ChangeWAN(newWAN))
			if n.WAN() != newWAN.Addr() {
				t.Errorf("WAN() = %v after ChangeWAN(%v)", n.WAN(), newWAN)
			}
			m2 := observe()
			if m2.Addr() != newWAN.Addr() {
				t.Errorf("after ChangeWAN(%v): mapping %v, want it on the new address", newWAN, m2)
			}
			out, err := n.Run(ctx, "ip", "-4", "-o", "addr", "show", "dev", "wan")
			check(t, err)
			if strings.Contains(out, m0.Addr().String()+"/") {
				t.Errorf("old WAN address still on wan: %s", out)
			}
			t.Logf("%s: %v -> flush -> %v -> new WAN -> %v", kind, m0, m1, m2)
		})
	}
}

// TestNATTwoHosts puts two hosts behind one full-cone NAT on a plain Linux
// bridge: they reach each other on the LAN, get distinct mappings for the
// same local port, and unsolicited packets reach the host that owns each
// mapping.
func TestNATTwoHosts(t *testing.T) {
	l := labtest.New(t)
	labtest.RequireTools(t, "nft", "ping")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	inet, err := l.Bridge("inet")
	check(t, err)
	vps, err := l.PublicHost("vps", inet, vpsIP1, vpsIP2)
	check(t, err)
	n, err := l.NAT("home", lab.FullCone, lab.InputDrop, inet,
		netip.MustParsePrefix("198.51.100.11/24"), netip.MustParsePrefix("192.168.7.1/24"))
	check(t, err)
	h1, err := n.AddHost("pi1", netip.MustParsePrefix("192.168.7.2/24"))
	check(t, err)
	h2, err := n.AddHost("pi2", netip.MustParsePrefix("192.168.7.3/24"))
	check(t, err)
	if _, err := h1.Run(ctx, "ping", "-c", "1", "-W", "2", "192.168.7.3"); err != nil {
		t.Errorf("LAN ping between hosts behind one NAT: %v", err)
	}
	if err := n.Attach(h1, netip.MustParsePrefix("10.9.9.9/24")); err == nil {
		t.Error("Attach with an address outside the LAN: nil error")
	}

	srv, err := lab.StartProbeServer(vps, netip.AddrPortFrom(vpsIP1.Addr(), 0))
	check(t, err)
	defer srv.Close()
	other, err := vps.ListenPacket("udp4", netip.AddrPortFrom(vpsIP2.Addr(), 0).String())
	check(t, err)
	defer other.Close()
	var mapped [2]netip.AddrPort
	for i, h := range []*lab.Host{h1, h2} {
		c, err := h.ListenPacket("udp4", "0.0.0.0:5000")
		check(t, err)
		defer c.Close()
		mapped[i], err = lab.ObserveMapping(ctx, c, srv.Addrs()[0])
		check(t, err)
		msg := []byte("for pi" + strconv.Itoa(i+1))
		if _, err := other.WriteTo(msg, net.UDPAddrFromAddrPort(mapped[i])); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		k, _, err := c.ReadFrom(buf)
		if err != nil || string(buf[:k]) != string(msg) {
			t.Errorf("pi%d: unsolicited packet to its mapping %v: got %q, %v; want %q", i+1, mapped[i], buf[:k], err, msg)
		}
	}
	t.Logf("same local port 5000 on two hosts: mappings %v", mapped)
	if mapped[0] == mapped[1] {
		t.Errorf("two hosts got the same mapping %v", mapped[0])
	}
}

// punch runs a bare hole punch between fresh sockets on a and b: each
// learns its public endpoint from srv, then sends to the other's, and
// answers every packet it receives at the source it actually came from.
// It reports whether each side heard the other within the time limit.
func punch(ctx context.Context, t *testing.T, a, b *lab.Host, srv netip.AddrPort) (aHeard, bHeard bool) {
	t.Helper()
	var conns [2]net.PacketConn
	var mapped [2]netip.AddrPort
	for i, h := range []*lab.Host{a, b} {
		c, err := h.ListenPacket("udp4", "0.0.0.0:0")
		check(t, err)
		defer c.Close()
		conns[i] = c
		mapped[i], err = lab.ObserveMapping(ctx, c, srv)
		check(t, err)
	}
	var heard [2]bool
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			c, peer := conns[i], mapped[1-i]
			deadline := time.Now().Add(1500 * time.Millisecond)
			dsts := []net.Addr{net.UDPAddrFromAddrPort(peer)}
			buf := make([]byte, 64)
			for time.Now().Before(deadline) {
				for _, d := range dsts {
					c.WriteTo([]byte("punch"), d)
				}
				c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
				if _, from, err := c.ReadFrom(buf); err == nil && !heard[i] {
					heard[i] = true
					dsts = append(dsts, from) // answer the source seen
					// Keep sending a little, so that the peer hears us too.
					if soon := time.Now().Add(200 * time.Millisecond); soon.Before(deadline) {
						deadline = soon
					}
				}
			}
		})
	}
	wg.Wait()
	return heard[0], heard[1]
}

// TestNATPunchTheory checks that the lab's NATs reproduce the expected
// hole-punching outcome of docs/design.md §7.1 with input policy drop:
// every pair connects directly except pr × sym and sym × sym. This is the
// baseline the peerline NAT matrix is judged against.
func TestNATPunchTheory(t *testing.T) {
	w := newNATWorld(t, lab.Impairment{})
	srv, err := lab.StartProbeServer(w.vps, netip.AddrPortFrom(vpsIP1.Addr(), 0))
	check(t, err)
	defer srv.Close()
	kinds := lab.NATKinds()
	var left, right []*lab.Host
	for i, kind := range kinds {
		for side, hosts := range []*[]*lab.Host{&left, &right} {
			k := 2*i + side
			name := fmt.Sprintf("%s%d", kind, side)
			n, err := w.l.NAT("nat-"+name, kind, lab.InputDrop, w.inet,
				netip.MustParsePrefix(fmt.Sprintf("198.51.100.%d/24", 11+k)),
				netip.MustParsePrefix(fmt.Sprintf("192.168.%d.1/24", 1+k)))
			check(t, err)
			h, err := n.AddHost("pi-"+name, netip.MustParsePrefix(fmt.Sprintf("192.168.%d.2/24", 1+k)))
			check(t, err)
			*hosts = append(*hosts, h)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	for i, ka := range kinds {
		for j := i; j < len(kinds); j++ {
			kb := kinds[j]
			ah, bh := punch(ctx, t, left[i], right[j], srv.Addrs()[0])
			direct := ah && bh
			want := !(kb == lab.Symmetric && (ka == lab.PortRestricted || ka == lab.Symmetric))
			t.Logf("%s × %s: direct %v (heard: %v, %v), theory %v", ka, kb, direct, ah, bh, want)
			if direct != want {
				t.Errorf("%s × %s: direct = %v, want %v", ka, kb, direct, want)
			}
		}
	}
}
