package peerlab

import (
	"bytes"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/numplan"
)

// The call-flow lab (flows_lab_test.go) checks what each phone received
// through the two Pis against docs/design.md §4 field by field: a phone must know
// itself as 10.0.s.1 and everything at the other node as 10.i.s.p, i being
// its own node's index for that node. A value check alone cannot tell a
// correct own address from the other phone's 10.0.s.1 leaking through
// unmapped, so which of the two a field must hold depends on the field and
// on whether the message is a request or a response.

// sipFields are the headers that carry a phone's address (docs/design.md §4), by
// full and compact name, lower-cased.
var sipFields = map[string]string{
	"via": "via", "v": "via",
	"from": "from", "f": "from",
	"to": "to", "t": "to",
	"contact": "contact", "m": "contact",
	"route": "route", "record-route": "record-route",
	"refer-to": "refer-to", "r": "refer-to",
	"referred-by": "referred-by", "b": "referred-by",
	"p-asserted-identity": "p-asserted-identity",
}

// ownFields are the fields that name the receiving phone itself: in a
// request its Request-URI and To, in a response the Via and From it wrote.
func ownField(field string, request bool) bool {
	if request {
		return field == "request-uri" || field == "to"
	}
	return field == "via" || field == "from"
}

// AddrProblems lists every address in msg, as phone own received it from a
// phone at the node it numbers peerNode, that is not where docs/design.md §4 says it
// must be: the receiver itself (10.0.s.1, in the fields ownField names) or
// the other node (10.peerNode.s.p, everywhere else). c=IN IP4 0.0.0.0 (hold)
// must stay as it is. Each problem names the line.
func AddrProblems(msg []byte, own netip.Addr, peerNode uint8) []string {
	head, body, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	lines := strings.Split(string(head), "\r\n")
	request := !strings.HasPrefix(lines[0], "SIP/2.0 ")
	var probs []string
	check := func(field, line, value string) {
		for _, a := range lab.AddressLiterals([]byte(value)) {
			var bad string
			switch {
			case field == "c" && a == netip.IPv4Unspecified():
			case ownField(field, request):
				if a != own {
					bad = fmt.Sprintf("want the receiver itself, %s", own)
				}
			default:
				if i, _, _, ok := numplan.Split(a); !ok || i != peerNode {
					bad = fmt.Sprintf("want the other node's 10.%d.s.p", peerNode)
				}
			}
			if bad != "" {
				probs = append(probs, fmt.Sprintf("%s has %s, %s: %q", field, a, bad, line))
			}
		}
	}
	if request {
		if f := strings.Fields(lines[0]); len(f) == 3 {
			check("request-uri", lines[0], f[1])
		}
	}
	for _, line := range lines[1:] {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if field, ok := sipFields[strings.ToLower(strings.TrimSpace(name))]; ok {
			check(field, line, value)
		}
	}
	ctype := ""
	for _, line := range lines[1:] {
		if name, value, ok := strings.Cut(line, ":"); ok {
			if n := strings.ToLower(strings.TrimSpace(name)); n == "content-type" || n == "c" {
				ctype = strings.ToLower(strings.TrimSpace(value))
			}
		}
	}
	dialogInfo := strings.HasPrefix(ctype, "application/dialog-info+xml")
	for _, line := range strings.Split(string(body), "\r\n") {
		switch {
		case strings.HasPrefix(line, "o="):
			check("o", line, line[2:])
		case strings.HasPrefix(line, "c="):
			check("c", line, line[2:])
		case strings.HasPrefix(line, "a=rtcp:"):
			check("a=rtcp", line, line[7:])
		case strings.HasPrefix(line, "a=ssrc:"):
			check("a=ssrc", line, line[7:])
		case strings.HasPrefix(strings.ToLower(line), "message-account:"):
			check("message-account", line, line[len("message-account:"):])
		case dialogInfo:
			// The watched dialog's identifiers cross unchanged (a
			// directed pickup copies them into Replaces); every other
			// address names a line of the notifying node in these flows.
			check("dialog-info", line, dialogIDs.ReplaceAllString(line, ""))
		}
	}
	return probs
}

// dialogIDs matches the dialog-info attributes that are opaque identifiers.
var dialogIDs = regexp.MustCompile(`\s(?:id|call-id|local-tag|remote-tag)\s*=\s*("[^"]*"|'[^']*')`)

// ContentLengthProblem says whether msg's Content-Length (or l:) disagrees
// with the length of its body; "" if it agrees.
func ContentLengthProblem(msg []byte) string {
	head, body, ok := bytes.Cut(msg, []byte("\r\n\r\n"))
	if !ok {
		return "no empty line after the headers"
	}
	for _, line := range strings.Split(string(head), "\r\n")[1:] {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if n := strings.ToLower(strings.TrimSpace(name)); n != "content-length" && n != "l" {
			continue
		}
		cl, err := strconv.Atoi(strings.TrimSpace(value))
		if err != nil {
			return fmt.Sprintf("unreadable %q", line)
		}
		if cl != len(body) {
			return fmt.Sprintf("%q but the body has %d bytes", line, len(body))
		}
		return ""
	}
	return "no Content-Length"
}

// Received is a SIP message as one phone received it.
type Received struct {
	// At names the receiving phone ("A" or "B").
	At string
	lab.Datagram
}

// Golden renders what the phones received, in order, for a golden file:
// volatile identifiers normalised (lab.NormalizeSIP), retransmissions left
// out, and how many IP fragments carried each message.
func Golden(title string, msgs []Received) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n", title)
	seen := map[string]bool{}
	for _, m := range msgs {
		text := lab.NormalizeSIP(m.Payload)
		key := m.At + "\x00" + text
		if seen[key] {
			continue
		}
		seen[key] = true
		frag := ""
		if m.Fragments > 1 {
			frag = fmt.Sprintf(", in %d IP fragments", m.Fragments)
		}
		fmt.Fprintf(&b, "\n=== %s received from %s%s\n%s", m.At, m.Src, frag, text)
		if !strings.HasSuffix(text, "\n") {
			b.WriteString("\n")
		}
	}
	return b.String()
}

// SplitGSO undoes what a capture shows of UDP GRO: wireguard-go coalesces
// datagrams of one flow that it writes to the TUN in one batch (equal sizes,
// the last one maybe shorter) into a single UDP GSO packet, which the kernel
// splits again only before the phone's socket, so tcpdump on the phone's
// link sees one datagram holding several. The pcap does not keep the
// segment size, so it is recovered from the content: SIP messages end where
// their Content-Length says, and RTP packets of one stream start every n
// bytes with the same version and SSRC. A datagram that is neither comes
// back as it was.
func SplitGSO(d lab.Datagram) []lab.Datagram {
	var parts [][]byte
	if lab.IsSIP(d.Payload) {
		parts = splitSIP(d.Payload)
	} else {
		parts = splitRTP(d.Payload)
	}
	if len(parts) == 1 {
		return []lab.Datagram{d}
	}
	out := make([]lab.Datagram, len(parts))
	for i, p := range parts {
		out[i] = d
		out[i].Payload = p
	}
	return out
}

// splitSIP cuts p after each message whose Content-Length ends it before
// the end of p, if what follows starts like SIP; a wrong Content-Length
// thus leaves p whole, and ContentLengthProblem reports it.
func splitSIP(p []byte) [][]byte {
	var parts [][]byte
	for {
		end := sipEnd(p)
		if end <= 0 || end >= len(p) || !lab.IsSIP(p[end:]) {
			return append(parts, p)
		}
		parts = append(parts, p[:end])
		p = p[end:]
	}
}

// sipEnd is where the message at the start of p ends by its Content-Length,
// or -1.
func sipEnd(p []byte) int {
	head, _, ok := bytes.Cut(p, []byte("\r\n\r\n"))
	if !ok {
		return -1
	}
	for _, line := range strings.Split(string(head), "\r\n")[1:] {
		name, value, ok := strings.Cut(line, ":")
		if n := strings.ToLower(strings.TrimSpace(name)); ok && (n == "content-length" || n == "l") {
			cl, err := strconv.Atoi(strings.TrimSpace(value))
			if err != nil || cl < 0 {
				return -1
			}
			return len(head) + 4 + cl
		}
	}
	return -1
}

// splitRTP cuts p into RTP packets of the smallest size n at which every
// n-th byte starts an RTP version 2 header with p's SSRC.
func splitRTP(p []byte) [][]byte {
	const hdr = 12
	if len(p) < 2*hdr || p[0]>>6 != 2 {
		return [][]byte{p}
	}
	ssrc := p[8:12]
	for n := hdr + 1; n+hdr <= len(p); n++ {
		ok := true
		for off := n; off < len(p) && ok; off += n {
			seg := p[off:]
			ok = len(seg) >= hdr && seg[0]>>6 == 2 && bytes.Equal(seg[8:12], ssrc)
		}
		if !ok {
			continue
		}
		var parts [][]byte
		for off := 0; off < len(p); off += n {
			parts = append(parts, p[off:min(off+n, len(p))])
		}
		return parts
	}
	return [][]byte{p}
}
