package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/ip4defrag"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Capture is tcpdump writing what crosses one interface of a host to a pcap
// file, for as long as a flow runs.
type Capture struct {
	proc *Proc
	path string
}

// Capture starts tcpdump on ifname inside h, writing every packet (whole,
// unbuffered) that matches the pcap filter expression to path. It returns
// once tcpdump is capturing, so nothing sent after it returns is missed.
// Stop ends it and flushes the file.
func (h *Host) Capture(ctx context.Context, ifname, path string, filter ...string) (*Capture, error) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		return nil, fmt.Errorf("capturing needs tcpdump (apt-get install tcpdump): %w", err)
	}
	argv := append([]string{"tcpdump", "-i", ifname, "-w", path, "-U", "-n", "-s", "0", "--immediate-mode"}, filter...)
	p, err := h.Start(ctx, "tcpdump-"+ifname, argv...)
	if err != nil {
		return nil, err
	}
	c := &Capture{proc: p, path: path}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(5 * time.Second)
	for {
		// tcpdump says so on stderr once the socket is bound and filtered.
		if log, _ := p.Log(); strings.Contains(log, "listening on") {
			return c, nil
		}
		select {
		case <-p.Done():
			tail, _ := tailFile(p.LogPath(), 5)
			return nil, fmt.Errorf("host %s: tcpdump on %s exited at start (%v): %s", h, ifname, p.Err(), tail)
		case <-deadline:
			p.Stop(stopGrace)
			return nil, fmt.Errorf("host %s: tcpdump on %s did not start capturing within 5 s", h, ifname)
		case <-ctx.Done():
			p.Stop(stopGrace)
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

// Path is the pcap file.
func (c *Capture) Path() string { return c.path }

// Stop ends the capture; the file is complete when it returns.
func (c *Capture) Stop() error { return c.proc.Stop(stopGrace) }

// Datagram is one UDP datagram read back from a capture, reassembled if it
// crossed the wire as IPv4 fragments.
type Datagram struct {
	Time     time.Time
	Src, Dst netip.AddrPort
	// Fragments is how many IPv4 fragments carried it; 1 if it was whole.
	Fragments int
	Payload   []byte
}

// ReadDatagrams reads the UDP datagrams of an Ethernet pcap file (as
// tcpdump writes on a veth), reassembling IPv4 fragments. Packets that are
// not IPv4 UDP are skipped.
func ReadDatagrams(path string) ([]Datagram, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("reading capture %s: %w", path, err)
	}
	defrag := ip4defrag.NewIPv4Defragmenter()
	frags := map[uint16]int{} // fragments seen per IP id, so far
	var out []Datagram
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("reading capture %s: %w", path, err)
		}
		pkt := gopacket.NewPacket(data, r.LinkType(), gopacket.Default)
		ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if !ok {
			continue
		}
		n := 1
		if ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0 {
			frags[ip.Id]++
			whole, err := defrag.DefragIPv4WithTimestamp(ip, ci.Timestamp)
			if err != nil {
				return out, fmt.Errorf("reassembling IP id %d in %s: %w", ip.Id, path, err)
			}
			if whole == nil {
				continue
			}
			n = frags[ip.Id]
			delete(frags, ip.Id)
			ip = whole
			if ip.Protocol != layers.IPProtocolUDP {
				continue
			}
			// The reassembled layer holds the joined payload; decode the
			// transport from it.
			pkt = gopacket.NewPacket(ip.Payload, layers.LayerTypeUDP, gopacket.Default)
		}
		udp, ok := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if !ok {
			continue
		}
		src, _ := netip.AddrFromSlice(ip.SrcIP.To4())
		dst, _ := netip.AddrFromSlice(ip.DstIP.To4())
		out = append(out, Datagram{
			Time:      ci.Timestamp,
			Src:       netip.AddrPortFrom(src, uint16(udp.SrcPort)),
			Dst:       netip.AddrPortFrom(dst, uint16(udp.DstPort)),
			Fragments: n,
			Payload:   bytes.Clone(udp.Payload),
		})
	}
	return out, nil
}

// sipStart matches the first line of a SIP request or response.
var sipStart = regexp.MustCompile(`^(?:[A-Z]+ \S+ SIP/2\.0|SIP/2\.0 \d{3} )`)

// IsSIP reports whether a datagram's payload starts like a SIP message.
func IsSIP(payload []byte) bool { return sipStart.Match(payload) }

// sipVolatile are the parts of a SIP message that change on every run:
// identifiers the phones make up, and the SDP session id and version.
var sipVolatile = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`(?im)^(Call-ID|i)([ \t]*:[ \t]*)\S+`), "${1}${2}<call-id>"},
	{regexp.MustCompile(`(?i)\b(branch|tag)=[^;,\s>]+`), "${1}=<${1}>"},
	{regexp.MustCompile(`(?m)^o=(\S+) \d+ \d+ `), "o=${1} <sess-id> <sess-version> "},
	{regexp.MustCompile(`(?im)^(Date|Timestamp)([ \t]*:[ \t]*).*$`), "${1}${2}<${1}>"},
}

// NormalizeSIP returns msg as text for a golden file: identifiers that
// change per run (Call-ID, branch, tag, SDP session id and version, Date)
// replaced by placeholders, and CRLF shown as a line end. Everything else,
// addresses above all, is kept as it was.
func NormalizeSIP(msg []byte) string {
	s := strings.ReplaceAll(string(msg), "\r\n", "\n")
	for _, v := range sipVolatile {
		s = v.re.ReplaceAllString(s, v.with)
	}
	return s
}

// ipv4Literal matches dotted-quad IPv4 address literals.
var ipv4Literal = regexp.MustCompile(`(?:^|[^0-9.])((?:[0-9]{1,3}\.){3}[0-9]{1,3})(?:[^0-9.]|$)`)

// AddressLiterals returns every IPv4 address literal in a message, in order
// (repeated ones included).
func AddressLiterals(msg []byte) []netip.Addr {
	var out []netip.Addr
	for rest := msg; ; {
		m := ipv4Literal.FindSubmatchIndex(rest)
		if m == nil {
			return out
		}
		if a, err := netip.ParseAddr(string(rest[m[2]:m[3]])); err == nil {
			out = append(out, a)
		}
		// The delimiter after a literal may start the next one's context.
		rest = rest[m[3]:]
	}
}
