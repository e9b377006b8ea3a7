package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// The prober's messages are one line of text in one UDP datagram:
//
//	plprobe1 ECHO <nonce>              client → server: who am I?
//	plprobe1 SEEN <nonce> <ip:port>    server → client: your public endpoint
//	plprobe1 FROM <nonce> <k>          server socket k → a client's mapping
//
// nonce is 16 hex digits; k is a small decimal number.
const probeMagic = "plprobe1"

type probeMsg struct {
	kind  string // "ECHO", "SEEN" or "FROM"
	nonce string
	seen  netip.AddrPort // SEEN
	from  int            // FROM
}

func (m probeMsg) append(b []byte) []byte {
	b = append(b, probeMagic+" "+m.kind+" "+m.nonce...)
	switch m.kind {
	case "SEEN":
		b = append(b, ' ')
		b = m.seen.AppendTo(b)
	case "FROM":
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(m.from), 10)
	}
	return b
}

// parseProbe parses a prober datagram; anything else (stray traffic, a
// truncated or mangled packet) is reported as not ok.
func parseProbe(b []byte) (probeMsg, bool) {
	f := bytes.Fields(b)
	if len(f) < 3 || string(f[0]) != probeMagic || len(f[2]) != 16 {
		return probeMsg{}, false
	}
	if _, err := hex.DecodeString(string(f[2])); err != nil {
		return probeMsg{}, false
	}
	m := probeMsg{kind: string(f[1]), nonce: string(f[2])}
	switch {
	case m.kind == "ECHO" && len(f) == 3:
		return m, true
	case m.kind == "SEEN" && len(f) == 4:
		ap, err := netip.ParseAddrPort(string(f[3]))
		if err != nil {
			return probeMsg{}, false
		}
		m.seen = ap
		return m, true
	case m.kind == "FROM" && len(f) == 4 && len(f[3]) <= 3:
		k, err := strconv.Atoi(string(f[3]))
		if err != nil || k < 0 {
			return probeMsg{}, false
		}
		m.from = k
		return m, true
	}
	return probeMsg{}, false
}

func newNonce() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ProbeServer answers "who am I" probes on one or more UDP sockets inside
// a host (a STUN server in a few lines): each ECHO is answered, from the
// socket it reached, with the source endpoint the server saw.
type ProbeServer struct {
	conns []net.PacketConn
	addrs []netip.AddrPort
	wg    sync.WaitGroup
	once  sync.Once
}

// StartProbeServer listens on each of addrs inside h (port 0 picks a free
// port) and answers probes until Close.
func StartProbeServer(h *Host, addrs ...netip.AddrPort) (*ProbeServer, error) {
	s := &ProbeServer{}
	for _, a := range addrs {
		c, err := h.ListenPacket("udp4", a.String())
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("probe server on %s: listening on %v: %w", h, a, err)
		}
		s.conns = append(s.conns, c)
		s.addrs = append(s.addrs, c.LocalAddr().(*net.UDPAddr).AddrPort())
	}
	for _, c := range s.conns {
		s.wg.Add(1)
		go s.runEcho(c)
	}
	return s, nil
}

// Addrs returns the endpoints the server listens on, in the order given.
func (s *ProbeServer) Addrs() []netip.AddrPort { return s.addrs }

// Close stops the server and waits for its goroutines.
func (s *ProbeServer) Close() error {
	s.once.Do(func() {
		for _, c := range s.conns {
			c.Close()
		}
	})
	s.wg.Wait()
	return nil
}

func (s *ProbeServer) runEcho(c net.PacketConn) {
	defer s.wg.Done()
	buf := make([]byte, 512)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return // closed
		}
		m, ok := parseProbe(buf[:n])
		if !ok || m.kind != "ECHO" {
			continue
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		seen := ua.AddrPort()
		seen = netip.AddrPortFrom(seen.Addr().Unmap(), seen.Port())
		reply := probeMsg{kind: "SEEN", nonce: m.nonce, seen: seen}.append(nil)
		c.WriteTo(reply, from)
	}
}

// sendFrom sends a FROM message from the server's socket k to dst.
func (s *ProbeServer) sendFrom(k int, nonce string, dst netip.AddrPort) error {
	msg := probeMsg{kind: "FROM", nonce: nonce, from: k}.append(nil)
	_, err := s.conns[k].WriteTo(msg, net.UDPAddrFromAddrPort(dst))
	return err
}

// ObserveMapping asks the probe server endpoint srv which public endpoint
// c's packets arrive from: the mapping the NATs on the way gave c for srv.
// It retries every 250 ms (for a lossy Internet) until ctx is done. c is
// read by ObserveMapping meanwhile; datagrams other than the answer are
// discarded.
func ObserveMapping(ctx context.Context, c net.PacketConn, srv netip.AddrPort) (netip.AddrPort, error) {
	nonce := newNonce()
	req := probeMsg{kind: "ECHO", nonce: nonce}.append(nil)
	buf := make([]byte, 512)
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return netip.AddrPort{}, fmt.Errorf("no answer from probe server %v after %d attempts: %w", srv, attempt, err)
		}
		if _, err := c.WriteTo(req, net.UDPAddrFromAddrPort(srv)); err != nil {
			return netip.AddrPort{}, fmt.Errorf("probing %v: %w", srv, err)
		}
		deadline := time.Now().Add(250 * time.Millisecond)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		c.SetReadDeadline(deadline)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return netip.AddrPort{}, err
				}
				break // timeout (or ICMP error): send again
			}
			if m, ok := parseProbe(buf[:n]); ok && m.kind == "SEEN" && m.nonce == nonce {
				c.SetReadDeadline(time.Time{})
				return m.seen, nil
			}
		}
	}
}

// NATProbe is what ProbeNAT observed of the NAT(s) between a client and a
// probe server with two addresses ip1 and ip2 and two ports p1 and p2.
type NATProbe struct {
	Mapping   Mapping
	Filtering Filtering
	// Mapped is the client's public endpoint as seen at (ip1, p1),
	// (ip1, p2) and (ip2, p1), all from one client socket.
	Mapped [3]netip.AddrPort
	// Arrived tells which of the unsolicited packets sent from (ip1, p1),
	// (ip1, p2) and (ip2, p1) to a second socket's mapping got through
	// after that socket had sent to (ip1, p1) only.
	Arrived [3]bool
	// MappingKept reports whether the second socket, sending afterwards
	// to (ip2, p1), kept its mapping. A NAT with input policy accept
	// loses it when (ip2, p1)'s packet was refused: the conntrack entry
	// that refusal left blocks the port (docs/design.md §7.2).
	MappingKept bool
}

// ProbeNAT classifies the NAT in front of client as RFC 4787 does (the
// tests of RFC 5780 §4.3 and §4.4, without a STUN dependency). It runs a
// probe server in server on ip1 and ip2 and the client sockets in client,
// and takes about a second plus a few round trips.
func ProbeNAT(ctx context.Context, client, server *Host, ip1, ip2 netip.Addr) (NATProbe, error) {
	var res NATProbe
	first, err := server.ListenPacket("udp4", netip.AddrPortFrom(ip1, 0).String())
	if err != nil {
		return res, fmt.Errorf("probe server on %s: %w", server, err)
	}
	p1 := first.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	first.Close() // only picks a port free on both addresses (almost surely)
	srv, err := StartProbeServer(server,
		netip.AddrPortFrom(ip1, p1), netip.AddrPortFrom(ip1, 0), netip.AddrPortFrom(ip2, p1))
	if err != nil {
		return res, err
	}
	defer srv.Close()
	dst := srv.Addrs()

	listen := func() (net.PacketConn, error) { return client.ListenPacket("udp4", "0.0.0.0:0") }
	c1, err := listen()
	if err != nil {
		return res, fmt.Errorf("probe client on %s: %w", client, err)
	}
	defer c1.Close()
	start := time.Now()
	for i, d := range dst {
		if res.Mapped[i], err = ObserveMapping(ctx, c1, d); err != nil {
			return res, err
		}
	}
	rtt := time.Since(start) / 3
	switch m := res.Mapped; {
	case m[0] == m[1] && m[1] == m[2]:
		res.Mapping = EIM
	case m[0] == m[1]:
		res.Mapping = ADM
	default:
		res.Mapping = APDM
	}

	c2, err := listen()
	if err != nil {
		return res, fmt.Errorf("probe client on %s: %w", client, err)
	}
	defer c2.Close()
	mapped, err := ObserveMapping(ctx, c2, dst[0])
	if err != nil {
		return res, err
	}
	nonce := newNonce()
	recv := make(chan int, 16)
	go func() {
		defer close(recv)
		buf := make([]byte, 512)
		c2.SetReadDeadline(time.Now().Add(500*time.Millisecond + 4*rtt))
		for {
			n, _, err := c2.ReadFrom(buf)
			if err != nil {
				return
			}
			if m, ok := parseProbe(buf[:n]); ok && m.kind == "FROM" && m.nonce == nonce && m.from < 3 {
				recv <- m.from
			}
		}
	}()
	// Three rounds against loss; (ip1, p1) last in each, so a NAT cannot
	// let the others through because of it.
	for round := 0; round < 3; round++ {
		for _, k := range []int{1, 2, 0} {
			if err := srv.sendFrom(k, nonce, mapped); err != nil {
				return res, fmt.Errorf("probe server sending to %v: %w", mapped, err)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	for k := range recv {
		res.Arrived[k] = true
	}
	switch a := res.Arrived; {
	case !a[0]:
		return res, fmt.Errorf("NAT probe: nothing from %v reached mapping %v, which had just sent there: the path loses too much", dst[0], mapped)
	case a[1] && a[2]:
		res.Filtering = EIF
	case a[1] && !a[2]:
		res.Filtering = ADF
	case !a[1] && !a[2]:
		res.Filtering = APDF
	default:
		return res, fmt.Errorf("NAT probe: a packet from another address (%v) got through but not one from another port (%v): no RFC 4787 filtering does that", dst[2], dst[1])
	}
	c2.SetReadDeadline(time.Time{})
	after, err := ObserveMapping(ctx, c2, dst[2])
	if err != nil {
		return res, err
	}
	res.MappingKept = after == mapped
	return res, nil
}
