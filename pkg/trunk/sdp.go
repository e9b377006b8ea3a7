package trunk

import (
	"bytes"
	"net/netip"
	"strconv"
)

// MaxSDP bounds the SDP bodies the trunk reads; a phone's or provider's
// offer is well under 2 kB.
const MaxSDP = 8192

// mediaDest reads where an SDP body wants its audio: the connection
// address of the first m=audio section (its own c= line, else the
// session's) and that section's port. Only IPv4 is relayed.
func mediaDest(body []byte) (netip.AddrPort, bool) {
	if len(body) > MaxSDP {
		return netip.AddrPort{}, false
	}
	var session, media netip.Addr
	port, inAudio, seenAudio, inMedia := 0, false, false, false
	for line := range bytes.Lines(body) {
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case bytes.HasPrefix(line, []byte("m=")):
			inMedia = true
			if seenAudio {
				// Only the first audio section counts.
				inAudio = false
				continue
			}
			f := bytes.Fields(line[2:])
			inAudio = len(f) >= 2 && string(f[0]) == "audio"
			if inAudio {
				seenAudio = true
				n, err := strconv.Atoi(string(f[1]))
				if err != nil || n < 1 || n > 65535 {
					return netip.AddrPort{}, false
				}
				port = n
			}
		case bytes.HasPrefix(line, []byte("c=")):
			f := bytes.Fields(line[2:])
			if len(f) != 3 || string(f[0]) != "IN" || string(f[1]) != "IP4" {
				continue
			}
			a, err := netip.ParseAddr(string(f[2]))
			if err != nil || !a.Is4() {
				continue
			}
			switch {
			case inAudio:
				media = a
			case !inMedia:
				session = a
			}
		}
	}
	if !seenAudio || port == 0 {
		return netip.AddrPort{}, false
	}
	if media.IsValid() {
		return netip.AddrPortFrom(media, uint16(port)), true
	}
	if session.IsValid() {
		return netip.AddrPortFrom(session, uint16(port)), true
	}
	return netip.AddrPort{}, false
}

// relaySDP returns a copy of body that sends the audio to the relay: every
// IPv4 c= and the o= address become addr, the first m=audio port becomes
// port, and a=rtcp lines go (RTCP is not relayed; phones then send it to
// port+1, where nothing answers, which costs nothing).
func relaySDP(body []byte, addr netip.Addr, port uint16) []byte {
	var out bytes.Buffer
	out.Grow(len(body) + 32)
	seenAudio := false
	for line := range bytes.Lines(body) {
		content := bytes.TrimRight(line, "\r\n")
		switch {
		case bytes.HasPrefix(content, []byte("o=")):
			f := bytes.Fields(content[2:])
			if len(f) == 6 && string(f[3]) == "IN" && string(f[4]) == "IP4" {
				f[5] = []byte(addr.String())
				content = append([]byte("o="), bytes.Join(f, []byte(" "))...)
			}
		case bytes.HasPrefix(content, []byte("c=")):
			f := bytes.Fields(content[2:])
			if len(f) == 3 && string(f[0]) == "IN" && string(f[1]) == "IP4" {
				content = []byte("c=IN IP4 " + addr.String())
			}
		case bytes.HasPrefix(content, []byte("m=")):
			f := bytes.Fields(content[2:])
			if !seenAudio && len(f) >= 2 && string(f[0]) == "audio" {
				seenAudio = true
				f[1] = strconv.AppendUint(nil, uint64(port), 10)
				content = append([]byte("m="), bytes.Join(f, []byte(" "))...)
			}
		case bytes.HasPrefix(content, []byte("a=rtcp:")):
			continue
		}
		out.Write(content)
		out.WriteString("\r\n")
	}
	return out.Bytes()
}
