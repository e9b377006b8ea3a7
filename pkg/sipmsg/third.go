package sipmsg

import "strconv"

// Third names, on one tunnel, the nodes other than its two ends.
//
// The wire plan of a tunnel has a literal for a line at either end
// (10.255.s.p, 10.254.s.p) but none for a third node: its index is local to
// each node, so 10.k.s.p written by one end means whatever the other end
// numbers k. A blind transfer writes exactly such an address: Bob's phone
// sends Alice's a REFER whose Refer-To is Carol's phone in Bob's numbering.
// So in the URIs of header fields (and the Request-URI), a literal of a node
// the tunnel can name crosses as a host name instead,
//
//	s.p.H.L.peerline.invalid
//
// where H and L are the high and low 32 bits of the node's tag, in decimal.
// The tag is agreed by both ends without asking each other (package rewrite
// derives it from the node's and the tunnel's public keys), so the
// receiving end turns the name back into a literal in its own numbering, or
// leaves it as it is when it does not know the node: under .invalid
// (RFC 6761) the name resolves nowhere, so the phone's transfer fails
// instead of reaching a wrong party.
//
// Only canonical names (what AppendWireName writes: decimal without leading
// zeros, lower case) are mapped back, so that mapping out and back gives the
// input byte for byte; anything else in a name's place passes unchanged.
type Third interface {
	// WireTag returns the tag of the node a local address is at, when the
	// tunnel can name that node (going out).
	WireTag(a [4]byte) (tag uint64, ok bool)
	// LocalNode returns this node's index for the node a tag names (coming
	// in).
	LocalNode(tag uint64) (node uint8, ok bool)
}

// WireNameSuffix ends every wire name of a third node's line.
const WireNameSuffix = "peerline.invalid"

// maxWireName is the longest wire name: 255.255.4294967295.4294967295.
// followed by the suffix.
const maxWireName = len("255.255.4294967295.4294967295.") + len(WireNameSuffix)

// AppendWireName appends the wire name of line s, host p at the node
// tagged tag.
func AppendWireName(dst []byte, s, p uint8, tag uint64) []byte {
	dst = strconv.AppendUint(dst, uint64(s), 10)
	dst = append(dst, '.')
	dst = strconv.AppendUint(dst, uint64(p), 10)
	dst = append(dst, '.')
	dst = strconv.AppendUint(dst, tag>>32, 10)
	dst = append(dst, '.')
	dst = strconv.AppendUint(dst, tag&0xffffffff, 10)
	dst = append(dst, '.')
	return append(dst, WireNameSuffix...)
}

// wireNameAt parses a wire name whose digit-and-dot run is s[i:j]: the run
// must end in '.', be followed by the suffix and a byte that cannot extend
// a host name, and hold four canonical numbers. end is where the name ends.
func wireNameAt(s []byte, i, j int) (sl, p uint8, tag uint64, end int, ok bool) {
	if s[j-1] != '.' || !hasPrefix(s[j:], WireNameSuffix) {
		return 0, 0, 0, 0, false
	}
	end = j + len(WireNameSuffix)
	if end < len(s) && class[s[end]]&(clWord|clDigitDot) != 0 {
		return 0, 0, 0, 0, false
	}
	var n [4]uint64
	k := i
	for f := range n {
		start := k
		for k < j && isDigit(s[k]) {
			n[f] = n[f]*10 + uint64(s[k]-'0')
			k++
			if k-start > 10 {
				return 0, 0, 0, 0, false
			}
		}
		if k == start || k == j || s[k] != '.' || (k-start > 1 && s[start] == '0') {
			return 0, 0, 0, 0, false
		}
		k++
	}
	if k != j || n[0] > 255 || n[1] > 255 || n[2] > 0xffffffff || n[3] > 0xffffffff {
		return 0, 0, 0, 0, false
	}
	return uint8(n[0]), uint8(n[1]), n[2]<<32 | n[3], end, true
}
