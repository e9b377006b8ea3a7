package sipmsg

import (
	"bytes"
	"strconv"
)

// Reason says why Rewrite refused a message. Every error Rewrite returns is a
// Reason, so a caller can count refusals in an array indexed by it without
// allocating; the zero Reason means "no error".
type Reason uint8

// Reasons returned by Rewrite.
const (
	// ErrNotSIP: the first line is neither a request line nor a status line.
	ErrNotSIP Reason = 1 + iota
	// ErrNoHeaderEnd: the datagram ends before the empty line that ends the
	// headers (a truncated message).
	ErrNoHeaderEnd
	// ErrMalformedHeader: a header field is not "name: value", or a
	// continuation line comes before any header.
	ErrMalformedHeader
	// ErrBadContentLength: Content-Length is missing digits, has leading
	// zeros, appears twice, or is larger than the rest of the datagram.
	ErrBadContentLength
	// ErrBadContentType: more than one Content-Type.
	ErrBadContentType
	// ErrEncodedBody: a body of a type that is rewritten (SDP, dialog
	// info, message summary) under a Content-Encoding other than identity
	// (gzip): its addresses can be neither read nor mapped.
	ErrEncodedBody

	// NumReasons is one more than the largest Reason, for counter arrays.
	NumReasons
)

var reasonNames = [NumReasons]string{
	0:                   "ok",
	ErrNotSIP:           "not-sip",
	ErrNoHeaderEnd:      "no-header-end",
	ErrMalformedHeader:  "malformed-header",
	ErrBadContentLength: "bad-content-length",
	ErrBadContentType:   "bad-content-type",
	ErrEncodedBody:      "encoded-body",
}

var reasonTexts = [NumReasons]string{
	0:                   "sipmsg: no error",
	ErrNotSIP:           "sipmsg: not a SIP request or response line",
	ErrNoHeaderEnd:      "sipmsg: no empty line after the headers",
	ErrMalformedHeader:  "sipmsg: malformed header line",
	ErrBadContentLength: "sipmsg: bad Content-Length",
	ErrBadContentType:   "sipmsg: more than one Content-Type",
	ErrEncodedBody:      "sipmsg: an SDP, dialog-info or message-summary body under a Content-Encoding",
}

// String returns a short name fit for a metric label ("bad-content-length").
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "reason-" + strconv.Itoa(int(r))
}

func (r Reason) Error() string {
	if r < NumReasons {
		return reasonTexts[r]
	}
	return "sipmsg: reason " + strconv.Itoa(int(r))
}

// Mappable reports whether msg holds, anywhere at all, an address literal
// that mapAddr would change. It is the test for a message Rewrite refused:
// passing such a message on unchanged would hand the other side addresses
// in our plan, which it reads as its own (a local 10.0.s.p is one of its own
// phones there), so the caller drops it; a refused message with nothing
// mappable in it is harmless and passes unchanged.
func Mappable(msg []byte, mapAddr func([4]byte) ([4]byte, bool)) bool {
	return MappableThird(msg, mapAddr, nil)
}

// MappableThird is Mappable for a tunnel that also names third nodes: a
// literal third can name counts as mappable, since the other node would
// read it as one of its own nodes.
func MappableThird(msg []byte, mapAddr func([4]byte) ([4]byte, bool), third Third) bool {
	return HasAddr(msg, func(a [4]byte) bool {
		if _, ok := mapOne(a, mapAddr); ok {
			return true
		}
		_, ok := wireTag(a, third)
		return ok
	})
}

// ReasonOf returns the Reason of an error returned by Rewrite: 0 for nil.
func ReasonOf(err error) Reason {
	if err == nil {
		return 0
	}
	if r, ok := err.(Reason); ok {
		return r
	}
	return NumReasons
}

// MaxGrowth is the most Rewrite (or RewriteThird) can append for a message
// of n bytes: every literal may grow from 7 bytes to a wire name (the
// longest growth), and Content-Length by as many digits.
func MaxGrowth(n int) int {
	return n + (n/7+1)*(maxWireName-len("0.0.0.0")) + maxContentLengthDigits
}

// maxContentLengthDigits bounds the Content-Length value so that parsing it
// cannot overflow; no datagram is longer than 65535 bytes anyway.
const maxContentLengthDigits = 9

// header kinds, by what Rewrite does with the header.
const (
	kindOther = iota // copied verbatim
	kindAddr         // address literals rewritten
	kindContentLength
	kindContentType
	kindContentEncoding
)

// layout is where the parts of a message are, found by scan.
type layout struct {
	bodyStart, bodyEnd int
	// clStart and clEnd bound the Content-Length digits; clStart < 0 when the
	// message has no Content-Length (then the body is the rest of the
	// datagram, RFC 3261 §18.3).
	clStart, clEnd int
	typ            BodyType
	encoded        bool
}

// Rewrite appends msg to dst with the IPv4 literals in the fields listed in
// the package doc mapped by mapAddr, and Content-Length recomputed if the
// body length changed. It reports whether anything changed; when nothing
// did, the appended message is identical to msg. 0.0.0.0 is never passed to
// mapAddr.
//
// On error, which is always a Reason, dst is returned as it was; the caller
// passes the message on untouched, or drops it if Mappable says it carries
// addresses of our plan.
func Rewrite(dst, msg []byte, mapAddr func([4]byte) ([4]byte, bool)) (out []byte, changed bool, err error) {
	return RewriteThird(dst, msg, mapAddr, nil)
}

// RewriteThird is Rewrite on a tunnel that names third nodes (see Third):
// in the Request-URI and the header fields whose literals are mapped, a
// literal that mapAddr leaves alone but third can name becomes its wire
// name, and a wire name third knows becomes a literal. third may be nil.
func RewriteThird(dst, msg []byte, mapAddr func([4]byte) ([4]byte, bool), third Third) (out []byte, changed bool, err error) {
	m, err := Parse(msg)
	if err != nil {
		return dst, false, err
	}
	return m.Rewrite(dst, mapAddr, third)
}

// Rewrite is RewriteThird of a message Parse accepted, for a caller that
// also reads it: the message is scanned once. Its only error is
// ErrEncodedBody.
func (m *Message) Rewrite(dst []byte, mapAddr func([4]byte) ([4]byte, bool), third Third) (out []byte, changed bool, err error) {
	msg, l := m.msg, m.l
	body := msg[l.bodyStart:l.bodyEnd]
	if l.hidden() {
		return dst, false, ErrEncodedBody
	}
	bodyLen := len(body)
	if l.typ != BodyOther {
		var d int
		d, changed = bodyDelta(l.typ, body, mapAddr)
		bodyLen += d
	}

	out = dst
	// The start line.
	line, i := lineAt(msg, 0)
	if uriStart, uriEnd, ok := requestURI(line); ok {
		out = append(out, msg[:uriStart]...)
		var c bool
		out, c = appendMappedURIs(out, line[uriStart:uriEnd], true, mapAddr, third)
		changed = changed || c
		out = append(out, msg[uriEnd:i]...)
	} else {
		out = append(out, msg[:i]...)
	}
	// The header fields, each with its continuation lines.
	for i < l.bodyStart {
		end, lineEnd := fieldAt(msg, i, l.bodyStart)
		if lineEnd == i {
			// The empty line.
			out = append(out, msg[i:end]...)
			i = end
			continue
		}
		kind, colon := headerKind(msg[i:lineEnd])
		switch {
		case kind == kindAddr:
			out = append(out, msg[i:i+colon+1]...)
			var c bool
			out, c = appendMappedURIs(out, msg[i+colon+1:end], false, mapAddr, third)
			changed = changed || c
		case kind == kindContentLength && bodyLen != len(body):
			out = append(out, msg[i:l.clStart]...)
			out = strconv.AppendInt(out, int64(bodyLen), 10)
			out = append(out, msg[l.clEnd:end]...)
		default:
			out = append(out, msg[i:end]...)
		}
		i = end
	}
	if l.typ != BodyOther {
		out = appendBody(out, l.typ, body, mapAddr)
	} else {
		out = append(out, body...)
	}
	out = append(out, msg[l.bodyEnd:]...)
	return out, changed, nil
}

// scan finds the header end, Content-Length and Content-Type of msg, and
// rejects what it cannot rewrite safely.
func scan(msg []byte) (layout, Reason) {
	l := layout{clStart: -1, clEnd: -1}
	line, i := lineAt(msg, 0)
	if i == len(msg) && (len(msg) == 0 || msg[len(msg)-1] != '\n') {
		return l, ErrNoHeaderEnd
	}
	if !startLine(line) {
		return l, ErrNotSIP
	}
	// Find the empty line first, so that fields can be taken whole.
	hdrStart := i
	for {
		if i >= len(msg) {
			return l, ErrNoHeaderEnd
		}
		start := i
		line, i = lineAt(msg, i)
		if i == len(msg) && msg[len(msg)-1] != '\n' {
			// The last line has no terminator, so there is no empty line.
			return l, ErrNoHeaderEnd
		}
		if len(line) == 0 {
			l.bodyStart = i
			break
		}
		if start == hdrStart && (line[0] == ' ' || line[0] == '\t') {
			return l, ErrMalformedHeader
		}
	}
	sawType, encoded := false, false
	for i = hdrStart; i < l.bodyStart; {
		end, lineEnd := fieldAt(msg, i, l.bodyStart)
		if lineEnd == i {
			break
		}
		f := msg[i:lineEnd]
		kind, colon := headerKind(f)
		if colon < 0 {
			return l, ErrMalformedHeader
		}
		switch kind {
		case kindContentLength:
			if l.clStart >= 0 {
				return l, ErrBadContentLength
			}
			s, e, ok := digits(f, colon+1)
			if !ok {
				return l, ErrBadContentLength
			}
			l.clStart, l.clEnd = i+s, i+e
		case kindContentType:
			if sawType {
				return l, ErrBadContentType
			}
			sawType = true
			l.typ = bodyType(f[colon+1:])
		case kindContentEncoding:
			encoded = encoded || !isIdentity(f[colon+1:])
		}
		i = end
	}
	l.encoded = encoded
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
	if !sawType {
		if b := msg[l.bodyStart:l.bodyEnd]; hasPrefix(b, "v=0\n") || hasPrefix(b, "v=0\r\n") {
			l.typ = BodySDP
		}
	}
	return l, 0
}

// fieldAt returns the end of the header field that starts at i (past the
// terminator of its last continuation line, at most limit) and the end of
// the field without that last terminator. For the empty line lineEnd == i.
func fieldAt(msg []byte, i, limit int) (end, lineEnd int) {
	line, end := lineAt(msg, i)
	lineEnd = i + len(line)
	if len(line) == 0 {
		return end, lineEnd
	}
	for end < limit && (msg[end] == ' ' || msg[end] == '\t') {
		line, next := lineAt(msg, end)
		lineEnd = end + len(line)
		end = next
	}
	return end, lineEnd
}

// skipLWS skips blanks and the line breaks of folded lines: inside a field
// a CR or LF is always followed by a blank, so all four are just space.
func skipLWS(f []byte, i int) int {
	for i < len(f) && (f[i] == ' ' || f[i] == '\t' || f[i] == '\r' || f[i] == '\n') {
		i++
	}
	return i
}

// digits returns the bounds of the Content-Length value in f[from:]: one run
// of digits between optional LWS. Leading zeros are refused so that a
// rewritten length, always written without them, maps back to the same bytes.
func digits(f []byte, from int) (start, end int, ok bool) {
	start = skipLWS(f, from)
	i := start
	for i < len(f) && isDigit(f[i]) {
		i++
	}
	end = i
	n := end - start
	if n == 0 || n > maxContentLengthDigits || skipLWS(f, i) != len(f) || (n > 1 && f[start] == '0') {
		return 0, 0, false
	}
	return start, end, true
}

// bodyType returns the type of a Content-Type value, ignoring case, LWS
// and parameters.
func bodyType(v []byte) BodyType {
	i := skipLWS(v, 0)
	if !hasPrefixFold(v[i:], "application") {
		return BodyOther
	}
	i = skipLWS(v, i+len("application"))
	if i == len(v) || v[i] != '/' {
		return BodyOther
	}
	i = skipLWS(v, i+1)
	for _, t := range [...]struct {
		sub string
		typ BodyType
	}{{"sdp", BodySDP}, {"dialog-info+xml", BodyDialogInfo}, {"simple-message-summary", BodyMessageSummary}} {
		if hasPrefixFold(v[i:], t.sub) {
			if k := i + len(t.sub); k == len(v) || class[v[k]]&clToken == 0 {
				return t.typ
			}
		}
	}
	return BodyOther
}

// isIdentity reports whether a Content-Encoding value is empty or
// "identity": anything else (gzip, a list) means the body is not plain text.
func isIdentity(v []byte) bool {
	i := skipLWS(v, 0)
	if i == len(v) {
		return true
	}
	if !hasPrefixFold(v[i:], "identity") {
		return false
	}
	return skipLWS(v, i+len("identity")) == len(v)
}

// appendMappedURIs appends a header field value (or, with inURI, a
// Request-URI) to dst with every address literal mapped, except inside
// the header part of a URI: from a '?' in a URI to its end. A '?' followed by
// an '@' before the URI ends is in the user part (user-unreserved), since
// '@' must be escaped in URI headers. '<', '>' and '?' inside a quoted
// display name mean nothing. Mapping only rewrites digit runs, so the state
// below evolves the same way over the output, and mapping back undoes it.
//
// With third, a literal mapAddr leaves alone may become a wire name and a
// wire name a literal (Third). A name ends in letters and a literal touches
// none, so neither replacement moves the boundary of another run either.
func appendMappedURIs(dst, s []byte, inURI bool, mapAddr func([4]byte) ([4]byte, bool), third Third) ([]byte, bool) {
	changed := false
	done := 0
	inQuote, inHeaders := false, false
	// stop is where the last search for the end of a user part stopped: at
	// the first '@' or '>' after the '?' that started it, or at len(s). Any
	// later '?' before stop would find the same byte, so it is searched for
	// again only past stop, which keeps the whole scan linear even for
	// "<?<?<?...".
	stop := -1
	for i := 0; i < len(s); {
		if class[s[i]]&(clDigitDot|clURI) == 0 {
			// Most bytes are neither: skip them without the switch.
			i++
			continue
		}
		c := s[i]
		switch {
		case class[c]&clDigitDot != 0:
			j := i + 1
			for j < len(s) && class[s[j]]&clDigitDot != 0 {
				j++
			}
			if inHeaders || (i > 0 && class[s[i-1]]&clWord != 0) {
				i = j
				continue
			}
			if j == len(s) || class[s[j]]&clWord == 0 {
				if a, ok := parseQuad(s[i:j]); ok {
					if b, ok := mapOne(a, mapAddr); ok {
						dst = append(dst, s[done:i]...)
						dst = appendAddr(dst, b)
						done = j
						changed = true
					} else if tag, ok := wireTag(a, third); ok {
						dst = append(dst, s[done:i]...)
						dst = AppendWireName(dst, a[2], a[3], tag)
						done = j
						changed = true
					}
				}
			} else if third != nil {
				if sl, p, tag, end, ok := wireNameAt(s, i, j); ok {
					if node, ok := third.LocalNode(tag); ok {
						dst = append(dst, s[done:i]...)
						dst = appendAddr(dst, [4]byte{10, node, sl, p})
						done = end
						changed = true
						j = end
					}
				}
			}
			i = j
			continue
		case inQuote:
			switch c {
			case '\\':
				i++ // the escaped byte, whatever it is
			case '"':
				inQuote = false
			}
		case c == '"':
			inQuote = true
		case c == '<':
			inURI, inHeaders = true, false
		case c == '>':
			inURI, inHeaders = false, false
		case c == '?' && inURI && !inHeaders:
			if stop <= i {
				stop = i + 1
				for stop < len(s) && s[stop] != '@' && s[stop] != '>' {
					stop++
				}
			}
			inHeaders = stop == len(s) || s[stop] != '@'
		}
		i++
	}
	return append(dst, s[done:]...), changed
}

// sdpLine reports where the rewritable part of an SDP line starts, or -1 for
// lines that are copied as they are.
func sdpLine(line []byte) int {
	if len(line) < 2 || line[1] != '=' {
		return -1
	}
	switch line[0] {
	case 'o', 'c':
		return 2
	case 'a':
		// Most a= lines are none of these (rtpmap, fmtp, direction).
		switch a := line[2:]; {
		case hasPrefix(a, "rtcp:"):
			return len("a=rtcp:")
		case hasPrefix(a, "candidate:"):
			return len("a=candidate:")
		case hasPrefix(a, "remote-candidates:"):
			return len("a=remote-candidates:")
		case hasPrefix(a, "ssrc:"):
			return len("a=ssrc:")
		}
	}
	return -1
}

// lineAt returns the line that starts at i without its terminator ("\r\n" or
// "\n"), and the index just past the terminator.
func lineAt(msg []byte, i int) (line []byte, next int) {
	k := bytes.IndexByte(msg[i:], '\n')
	if k < 0 {
		return msg[i:], len(msg)
	}
	j := i + k
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

// appendSDP appends body with the literals of the lines sdpLine names
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

// bodyDelta returns how much a body of type typ grows under mapAddr, and
// whether any literal changes.
func bodyDelta(typ BodyType, body []byte, mapAddr func([4]byte) ([4]byte, bool)) (delta int, changed bool) {
	if typ == BodySDP {
		// Every INVITE and its answer: the line loop without nextSpan.
		return sdpDelta(body, mapAddr)
	}
	for i := 0; i < len(body); {
		start, end, next := nextSpan(typ, body, i)
		d, c := mappedDelta(body[start:end], mapAddr)
		delta += d
		changed = changed || c
		i = next
	}
	return delta, changed
}

// appendBody appends a body of type typ with the literals of its SDP lines
// (sdpLine) or spans (nextSpan) mapped.
func appendBody(dst []byte, typ BodyType, body []byte, mapAddr func([4]byte) ([4]byte, bool)) []byte {
	if typ == BodySDP {
		return appendSDP(dst, body, mapAddr)
	}
	done := 0
	for i := 0; i < len(body); {
		start, end, next := nextSpan(typ, body, i)
		dst = append(dst, body[done:start]...)
		dst, _ = appendMapped(dst, body[start:end], mapAddr)
		done = end
		i = next
	}
	return append(dst, body[done:]...)
}

// nextSpan returns the first part of a body that is not SDP (SDP has its
// own line loop), at or after i, whose literals are mapped, and where to
// look for the next one (past end, and past i):
//   - a message summary: all the rest;
//   - dialog info: up to the next value of an attribute that is an opaque
//     identifier (opaqueValue), which is skipped.
//
// The spans are found by bytes that mapping never changes, so they are the
// same in a body and in its mapped form.
func nextSpan(typ BodyType, body []byte, i int) (start, end, next int) {
	if typ == BodyDialogInfo {
		if vs, ve, ok := opaqueValue(body, i); ok {
			return i, vs, ve
		}
	}
	return i, len(body), len(body)
}

// opaqueValue finds, at or after i, the quoted value of the next XML
// attribute named id, call-id, local-tag or remote-tag (after any
// namespace prefix, in any case). They are the dialog identifiers of RFC
// 4235: a phone doing a directed pickup copies them into the Replaces of
// its INVITE, where they must match the Call-ID and tags that cross the
// tunnel unchanged, so they cross unchanged too.
func opaqueValue(b []byte, i int) (vs, ve int, ok bool) {
	// noDouble and noSingle are set once that quote is known not to occur
	// again, so that an unclosed quote is not searched for at every '='.
	var noDouble, noSingle bool
	for {
		k := bytes.IndexByte(b[i:], '=')
		if k < 0 {
			return 0, 0, false
		}
		eq := i + k
		i = eq + 1
		ne := eq
		for ne > 0 && (b[ne-1] == ' ' || b[ne-1] == '\t' || b[ne-1] == '\r' || b[ne-1] == '\n') {
			ne--
		}
		ns := ne
		for ns > 0 && isXMLName(b[ns-1]) {
			ns--
		}
		if ns == ne || ns == 0 || !isBlank(b[ns-1]) || !opaqueAttr(b[ns:ne]) {
			continue
		}
		q := skipLWS(b, eq+1)
		if q == len(b) || (b[q] != '"' && b[q] != '\'') || (b[q] == '"' && noDouble) || (b[q] == '\'' && noSingle) {
			continue
		}
		c := bytes.IndexByte(b[q+1:], b[q])
		if c < 0 {
			if b[q] == '"' {
				noDouble = true
			} else {
				noSingle = true
			}
			continue
		}
		return q + 1, q + 1 + c, true
	}
}

func isXMLName(c byte) bool {
	return class[c]&(clWord|clDigitDot) != 0 || c == ':'
}

// opaqueAttr reports whether an XML attribute name, after any prefix, is
// one of the dialog identifiers opaqueValue skips.
func opaqueAttr(name []byte) bool {
	if c := bytes.LastIndexByte(name, ':'); c >= 0 {
		name = name[c+1:]
	}
	return len(name) == len("id") && hasPrefixFold(name, "id") ||
		len(name) == len("call-id") && hasPrefixFold(name, "call-id") ||
		len(name) == len("local-tag") && hasPrefixFold(name, "local-tag") ||
		len(name) == len("remote-tag") && hasPrefixFold(name, "remote-tag")
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

// wireTag asks third for the tag of a literal that mapOne left alone,
// never for 0.0.0.0.
func wireTag(a [4]byte, third Third) (uint64, bool) {
	if third == nil || a == [4]byte{} {
		return 0, false
	}
	return third.WireTag(a)
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
	clURI                  // changes appendMappedURIs' state: " \ < > ?
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
	for _, c := range `"\<>?` {
		t[c] |= clURI
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
