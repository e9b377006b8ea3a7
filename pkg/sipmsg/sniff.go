package sipmsg

// LooksLikeSIP is the loose sniff for UDP payloads on ports that are not SIP
// ports: it reports whether p might be meant as a SIP message, even one
// that IsSIP and Rewrite refuse, such as a message behind a blank line, a
// lower-case or over-long method, a double space or a tab in the request
// line, a Request-URI in angle brackets or with another scheme. Whatever it
// accepts is either rewritten or checked for addresses of the plan (and
// dropped if it has any), so a false positive costs only the slow path; a
// false negative lets plan addresses through. It therefore accepts text
// that, after optional blanks and line breaks, starts with a letter and
// whose first line holds "sip/", "sip:", "sips:" or "tel:" in any case. RTP,
// RTCP, STUN, DTLS and ZRTP never start with a letter, so the voice path
// pays one compare.
//
// Everything IsSIP accepts passes this test too (an upper-case letter first,
// "sip/", "sip:", "sips:" or "tel:" on the first line), so it is not asked
// first: this runs for every UDP datagram off the SIP port, RTP included.
func LooksLikeSIP(p []byte) bool {
	i := 0
	for i < len(p) && isBlank(p[i]) {
		i++
	}
	if i == len(p) || !isLetter(p[i]) {
		return false
	}
	for ; i+4 <= len(p) && p[i] != '\n'; i++ {
		if p[i]|0x20 != 's' && p[i]|0x20 != 't' {
			continue
		}
		if hasPrefixFold(p[i:], "sip/") || hasPrefixFold(p[i:], "sip:") ||
			hasPrefixFold(p[i:], "sips:") || hasPrefixFold(p[i:], "tel:") {
			return true
		}
	}
	return false
}

// KeepAlive reports whether p is empty or only blanks and line breaks: the
// CRLF keep-alives of RFC 5626 §4.4.1 and what phones send instead of them.
// They carry no address and pass as they are.
func KeepAlive(p []byte) bool {
	for _, c := range p {
		if !isBlank(c) {
			return false
		}
	}
	return true
}

// HasAddr reports whether msg holds, anywhere, an address literal for which
// match is true. It is the check for messages that cannot be parsed: where
// a field cannot be told from another, every literal counts.
func HasAddr(msg []byte, match func([4]byte) bool) bool {
	for i := 0; ; {
		_, end, a, ok := nextAddr(msg, i)
		if !ok {
			return false
		}
		if match(a) {
			return true
		}
		i = end
	}
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func isLetter(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }
