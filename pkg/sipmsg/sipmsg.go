// Package sipmsg rewrites the IPv4 address literals of a SIP message without
// otherwise changing a byte of it.
//
// peerline's tunnels carry addresses relative to the two ends of a tunnel
// (design §4, package numplan), so every address a phone wrote into a SIP
// message must be mapped the same way as the IP header that carries it, or
// replies, media and call-backs go to the wrong node. A full SIP parser would
// re-serialise the message; phones and digest authentication care about the
// exact bytes, so this package tokenises instead: it finds header lines and SDP
// lines, replaces address literals inside the fields that carry a peer's
// address (see Rewrite), recomputes Content-Length, and copies everything else
// through verbatim, including the line endings (CRLF or bare LF).
//
// An address literal is four decimal octets 0-255 separated by dots, each written without a leading zero (a lone
// "0" is fine, "010" is not an octet, as in RFC 3986's dec-octet), forming the
// whole of a run of digits and dots. The run must not touch a letter, '-' or
// '_' on either side, because then it is part of a host name or a token such as
// a branch, not an address. So "110.0.1.15", "10.0.1.1234", "10.0.1.1.5",
// "10.0.1.1." and "x10.0.1.1" are left alone; "sip:a@10.0.1.1:5060",
// "received=10.0.1.1;" and "IN IP4 10.0.1.1/127" are rewritten.
//
// SDP is handled here rather than in a package of its own because only three
// line types matter and they need no SDP parsing beyond "line starts with".
//
// The package is pure (standard library only) and, given a destination buffer
// with enough capacity, allocation-free: the rewriter calls it for every SIP
// datagram that crosses a tunnel. Errors are sentinels, not wrapped, so that
// hostile input costs no allocation either.
package sipmsg

import (
	"errors"
	"strconv"
)

// Errors returned by Rewrite. The caller is expected to pass such a message on
// unchanged and count it.
var (
	ErrNotSIP           = errors.New("sipmsg: not a SIP request or response line")
	ErrNoHeaderEnd      = errors.New("sipmsg: no empty line after the headers")
	ErrMalformedHeader  = errors.New("sipmsg: malformed header line")
	ErrBadContentLength = errors.New("sipmsg: bad Content-Length")
	ErrBadContentType   = errors.New("sipmsg: more than one Content-Type")
)

// maxContentLengthDigits bounds the Content-Length value so that parsing it
// cannot overflow; no datagram is longer than 65535 bytes anyway.
const maxContentLengthDigits = 9

// header kinds, by what Rewrite does with the header.
const (
	kindOther = iota // copied verbatim
	kindAddr         // address literals rewritten
	kindContentLength
	kindContentType
)

// layout is where the parts of a message are, found by scan.
type layout struct {
	bodyStart, bodyEnd int
	// clStart and clEnd bound the Content-Length digits; clStart < 0 when the
	// message has no Content-Length (then the body is the rest of the
	// datagram, RFC 3261 §18.3).
	clStart, clEnd int
	sdp            bool
}

// Rewrite appends msg to dst with the IPv4 literals in the fields below mapped
// by mapAddr, and Content-Length recomputed if the body length changed. It
// reports whether anything changed; when nothing did, the appended message is
// identical to msg.
//
// Rewritten fields, every occurrence in each:
//   - the Request-URI of a request line (including its maddr= parameter);
//   - the headers Via (v), Contact (m), From (f), To (t), Route, Record-Route,
//     Refer-To (r), Referred-By (b) and P-Asserted-Identity, names compared
//     case-insensitively, folded continuation lines included;
//   - in an application/sdp body, the o= and c= lines (session and media
//     level) and a=rtcp: lines.
//
// 0.0.0.0 (hold) is never passed to mapAddr. Every other header, including
// Authorization and Proxy-Authorization (their uri= is covered by the digest),
// response status lines and non-SDP bodies are copied unchanged.
//
// On error dst is returned as it was and the message should be passed on
// untouched.
func Rewrite(dst, msg []byte, mapAddr func([4]byte) ([4]byte, bool)) (out []byte, changed bool, err error) {
	l, err := scan(msg)
	if err != nil {
		return dst, false, err
	}
	body := msg[l.bodyStart:l.bodyEnd]
	bodyLen := len(body)
	if l.sdp {
		var d int
		d, changed = sdpDelta(body, mapAddr)
		bodyLen += d
	}

	out = dst
	i := 0
	first := true
	kind := kindOther
	for i < l.bodyStart {
		line, next := lineAt(msg, i)
		switch {
		case first:
			first = false
			if uriStart, uriEnd, ok := requestURI(line); ok {
				out = append(out, msg[i:i+uriStart]...)
				var c bool
				out, c = appendMapped(out, line[uriStart:uriEnd], mapAddr)
				changed = changed || c
				out = append(out, msg[i+uriEnd:next]...)
			} else {
				out = append(out, msg[i:next]...)
			}
		case len(line) > 0 && (line[0] == ' ' || line[0] == '\t'):
			// A folded continuation belongs to the header above it.
			if kind == kindAddr {
				var c bool
				out, c = appendMapped(out, line, mapAddr)
				changed = changed || c
				out = append(out, msg[i+len(line):next]...)
			} else {
				out = append(out, msg[i:next]...)
			}
		case len(line) == 0:
			out = append(out, msg[i:next]...)
		default:
			var colon int
			kind, colon = headerKind(line)
			switch {
			case kind == kindAddr:
				out = append(out, line[:colon+1]...)
				var c bool
				out, c = appendMapped(out, line[colon+1:], mapAddr)
				changed = changed || c
				out = append(out, msg[i+len(line):next]...)
			case kind == kindContentLength && bodyLen != len(body):
				out = append(out, msg[i:l.clStart]...)
				out = strconv.AppendInt(out, int64(bodyLen), 10)
				out = append(out, msg[l.clEnd:next]...)
			default:
				out = append(out, msg[i:next]...)
			}
		}
		i = next
	}
	if l.sdp {
		out = appendSDP(out, body, mapAddr)
	} else {
		out = append(out, body...)
	}
	out = append(out, msg[l.bodyEnd:]...)
	return out, changed, nil
}

// scan finds the header end, Content-Length and Content-Type of msg, and
// rejects what it cannot rewrite safely.
func scan(msg []byte) (layout, error) {
	l := layout{clStart: -1, clEnd: -1}
	line, i := lineAt(msg, 0)
	if i == len(msg) && (len(msg) == 0 || msg[len(msg)-1] != '\n') {
		return l, ErrNoHeaderEnd
	}
	if !startLine(line) {
		return l, ErrNotSIP
	}
	kind := kindOther
	sawType := false
	firstHeader := true
	for {
		if i >= len(msg) {
			return l, ErrNoHeaderEnd
		}
		lineStart := i
		line, i = lineAt(msg, i)
		if i == len(msg) && msg[len(msg)-1] != '\n' {
			// The last line has no terminator, so there is no empty line.
			return l, ErrNoHeaderEnd
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			switch {
			case firstHeader:
				return l, ErrMalformedHeader
			case kind == kindContentLength:
				// A folded Content-Length is legal but never sent; refusing it
				// keeps the length patch to one contiguous run of digits.
				return l, ErrBadContentLength
			}
			continue
		}
		firstHeader = false
		var colon int
		kind, colon = headerKind(line)
		if colon < 0 {
			return l, ErrMalformedHeader
		}
		switch kind {
		case kindContentLength:
			if l.clStart >= 0 {
				return l, ErrBadContentLength
			}
			s, e, ok := digits(line, colon+1)
			if !ok {
				return l, ErrBadContentLength
			}
			l.clStart, l.clEnd = lineStart+s, lineStart+e
		case kindContentType:
			if sawType {
				return l, ErrBadContentType
			}
			sawType = true
			l.sdp = isSDPType(line[colon+1:])
		}
	}
	l.bodyStart = i
	l.bodyEnd = len(msg)
	if l.clStart >= 0 {
		n := 0
		for _, c := range msg[l.clStart:l.clEnd] {
			n = n*10 + int(c-'0')
		}
		if n > len(msg)-l.bodyStart {
			return l, ErrBadContentLength
		}
		l.bodyEnd = l.bodyStart + n
	}
	return l, nil
}

// lineAt returns the line that starts at i without its terminator ("\r\n" or
// "\n"), and the index just past the terminator.
func lineAt(msg []byte, i int) (line []byte, next int) {
	j := i
	for j < len(msg) && msg[j] != '\n' {
		j++
	}
	if j == len(msg) {
		return msg[i:j], j
	}
	next = j + 1
	if j > i && msg[j-1] == '\r' {
		j--
	}
	return msg[i:j], next
}

// startLine reports whether line is a SIP request or status line.
func startLine(line []byte) bool {
	if hasPrefixFold(line, "SIP/2.0 ") {
		// Status-Line = SIP-Version SP Status-Code SP Reason-Phrase; some
		// stacks drop the last SP when the reason is empty.
		r := line[len("SIP/2.0 "):]
		if len(r) < 3 || !isDigit(r[0]) || !isDigit(r[1]) || !isDigit(r[2]) {
			return false
		}
		return len(r) == 3 || r[3] == ' '
	}
	_, _, ok := requestURI(line)
	return ok
}

// requestURI returns the bounds of the Request-URI in a request line
// (Method SP Request-URI SP SIP-Version); ok is false for anything else.
func requestURI(line []byte) (start, end int, ok bool) {
	i := 0
	for i < len(line) && class[line[i]]&clToken != 0 {
		i++
	}
	if i == 0 || i == len(line) || line[i] != ' ' {
		return 0, 0, false
	}
	start = i + 1
	end = start
	for end < len(line) && line[end] != ' ' {
		end++
	}
	if end == start || end == len(line) {
		return 0, 0, false
	}
	v := line[end+1:]
	if len(v) != len("SIP/2.0") || !hasPrefixFold(v, "SIP/2.0") {
		return 0, 0, false
	}
	return start, end, true
}

// headerKind classifies a header line and returns the index of its colon, or
// -1 if the line is not "token *WSP :".
func headerKind(line []byte) (kind, colon int) {
	i := 0
	for i < len(line) && class[line[i]]&clToken != 0 {
		i++
	}
	n := i
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	if n == 0 || i == len(line) || line[i] != ':' {
		return kindOther, -1
	}
	colon = i
	// Names we care about are short: lower-case them on the stack so that
	// the switch below compares strings without allocating.
	var buf [len("p-asserted-identity")]byte
	if n > len(buf) {
		return kindOther, colon
	}
	for k := range n {
		c := line[k]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[k] = c
	}
	switch string(buf[:n]) {
	case "via", "v", "contact", "m", "from", "f", "to", "t", "route",
		"record-route", "refer-to", "r", "referred-by", "b", "p-asserted-identity":
		return kindAddr, colon
	case "content-length", "l":
		return kindContentLength, colon
	case "content-type", "c":
		return kindContentType, colon
	}
	return kindOther, colon
}

// digits returns the bounds of the Content-Length value in line[from:]: one
// run of digits between optional blanks. Leading zeros are refused so that a
// rewritten length, always written without them, maps back to the same bytes.
func digits(line []byte, from int) (start, end int, ok bool) {
	i := from
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	start = i
	for i < len(line) && isDigit(line[i]) {
		i++
	}
	end = i
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	n := end - start
	if n == 0 || n > maxContentLengthDigits || i != len(line) || (n > 1 && line[start] == '0') {
		return 0, 0, false
	}
	return start, end, true
}

// isSDPType reports whether a Content-Type value is application/sdp, ignoring
// case, blanks and parameters.
func isSDPType(v []byte) bool {
	i := 0
	for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
		i++
	}
	v = v[i:]
	const t = "application/sdp"
	if !hasPrefixFold(v, t) {
		return false
	}
	v = v[len(t):]
	return len(v) == 0 || v[0] == ';' || v[0] == ' ' || v[0] == '\t'
}

// sdpLine reports where the rewritable part of an SDP line starts, or -1 for
// lines that are copied as they are.
func sdpLine(line []byte) int {
	switch {
	case len(line) >= 2 && (line[0] == 'o' || line[0] == 'c') && line[1] == '=':
		return 2
	case hasPrefix(line, "a=rtcp:"):
		return len("a=rtcp:")
	}
	return -1
}

// sdpDelta returns how much the SDP body grows under mapAddr, and whether any
// literal changes.
func sdpDelta(body []byte, mapAddr func([4]byte) ([4]byte, bool)) (delta int, changed bool) {
	for i := 0; i < len(body); {
		line, next := lineAt(body, i)
		if k := sdpLine(line); k >= 0 {
			d, c := mappedDelta(line[k:], mapAddr)
			delta += d
			changed = changed || c
		}
		i = next
	}
	return delta, changed
}

// appendSDP appends body with the literals of its o=, c= and a=rtcp: lines
// mapped.
func appendSDP(dst, body []byte, mapAddr func([4]byte) ([4]byte, bool)) []byte {
	for i := 0; i < len(body); {
		line, next := lineAt(body, i)
		if k := sdpLine(line); k >= 0 {
			dst = append(dst, line[:k]...)
			dst, _ = appendMapped(dst, line[k:], mapAddr)
			dst = append(dst, body[i+len(line):next]...)
		} else {
			dst = append(dst, body[i:next]...)
		}
		i = next
	}
	return dst
}

// mapOne maps a literal, keeping 0.0.0.0 (hold) whatever mapAddr says.
func mapOne(a [4]byte, mapAddr func([4]byte) ([4]byte, bool)) ([4]byte, bool) {
	if a == [4]byte{} {
		return a, false
	}
	b, ok := mapAddr(a)
	if !ok || b == a {
		return a, false
	}
	return b, true
}

// appendMapped appends s to dst with every address literal mapped.
func appendMapped(dst, s []byte, mapAddr func([4]byte) ([4]byte, bool)) ([]byte, bool) {
	changed := false
	done := 0
	for i := 0; ; {
		start, end, a, ok := nextAddr(s, i)
		if !ok {
			break
		}
		i = end
		b, ok := mapOne(a, mapAddr)
		if !ok {
			continue
		}
		dst = append(dst, s[done:start]...)
		dst = appendAddr(dst, b)
		done = end
		changed = true
	}
	return append(dst, s[done:]...), changed
}

// mappedDelta returns how much appendMapped would grow s.
func mappedDelta(s []byte, mapAddr func([4]byte) ([4]byte, bool)) (delta int, changed bool) {
	for i := 0; ; {
		start, end, a, ok := nextAddr(s, i)
		if !ok {
			return delta, changed
		}
		i = end
		if b, ok := mapOne(a, mapAddr); ok {
			delta += addrLen(b) - (end - start)
			changed = true
		}
	}
}

// nextAddr finds the first address literal in s at or after i (see the package
// doc for what counts as one).
func nextAddr(s []byte, i int) (start, end int, a [4]byte, ok bool) {
	for i < len(s) {
		if class[s[i]]&clDigitDot == 0 {
			i++
			continue
		}
		j := i + 1
		for j < len(s) && class[s[j]]&clDigitDot != 0 {
			j++
		}
		if (i == 0 || class[s[i-1]]&clWord == 0) && (j == len(s) || class[s[j]]&clWord == 0) {
			if a, ok := parseQuad(s[i:j]); ok {
				return i, j, a, true
			}
		}
		i = j
	}
	return 0, 0, a, false
}

// parseQuad parses exactly "d.d.d.d" with octets 0-255 and no leading zeros.
func parseQuad(b []byte) (a [4]byte, ok bool) {
	if len(b) < len("0.0.0.0") || len(b) > len("255.255.255.255") {
		return a, false
	}
	k := 0
	for p := range 4 {
		n, start := 0, k
		for k < len(b) && isDigit(b[k]) {
			n = n*10 + int(b[k]-'0')
			k++
		}
		d := k - start
		if d == 0 || d > 3 || n > 255 || (d > 1 && b[start] == '0') {
			return a, false
		}
		a[p] = byte(n)
		if p < 3 {
			if k == len(b) || b[k] != '.' {
				return a, false
			}
			k++
		}
	}
	return a, k == len(b)
}

func appendAddr(dst []byte, a [4]byte) []byte {
	for p, o := range a {
		if p > 0 {
			dst = append(dst, '.')
		}
		dst = strconv.AppendUint(dst, uint64(o), 10)
	}
	return dst
}

func addrLen(a [4]byte) int {
	n := 3
	for _, o := range a {
		switch {
		case o >= 100:
			n += 3
		case o >= 10:
			n += 2
		default:
			n++
		}
	}
	return n
}

// IsSIP reports whether a UDP payload looks like a SIP message: a status line
// ("SIP/2.0 "), or an upper-case method followed by a sip:, sips: or tel:
// URI. It is a sniff, not a validation: it runs for every UDP packet, and
// rejects RTP, RTCP, STUN, DTLS and keep-alives on their first byte.
func IsSIP(p []byte) bool {
	if len(p) < 8 || p[0] < 'A' || p[0] > 'Z' {
		return false
	}
	if string(p[:8]) == "SIP/2.0 " {
		return true
	}
	// The longest registered method is SUBSCRIBE; leave room for extensions.
	const maxMethod = 16
	i := 1
	for i < len(p) && i <= maxMethod && 'A' <= p[i] && p[i] <= 'Z' {
		i++
	}
	if i > maxMethod || i >= len(p) || p[i] != ' ' {
		return false
	}
	u := p[i+1:]
	return hasPrefixFold(u, "sip:") || hasPrefixFold(u, "sips:") || hasPrefixFold(u, "tel:")
}

// Byte classes.
const (
	clDigitDot = 1 << iota // part of an address run
	clWord                 // glues to an address run: letters, '-', '_'
	clToken                // RFC 3261 token character
)

var class = func() (t [256]uint8) {
	for c := '0'; c <= '9'; c++ {
		t[c] |= clDigitDot | clToken
	}
	t['.'] |= clDigitDot | clToken
	for c := 'a'; c <= 'z'; c++ {
		t[c] |= clWord | clToken
		t[c-'a'+'A'] |= clWord | clToken
	}
	t['-'] |= clWord | clToken
	t['_'] |= clWord | clToken
	for _, c := range "!%*+`'~" {
		t[c] |= clToken
	}
	return t
}()

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func hasPrefix(b []byte, s string) bool {
	return len(b) >= len(s) && string(b[:len(s)]) == s
}

// hasPrefixFold is an ASCII case-insensitive hasPrefix for a lower- or
// upper-case s.
func hasPrefixFold(b []byte, s string) bool {
	if len(b) < len(s) {
		return false
	}
	for i := range len(s) {
		c, d := b[i], s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}
