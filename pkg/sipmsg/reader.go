package sipmsg

// The reader: where the parts of a SIP message are, for code that needs to
// look at a message rather than rewrite it (package rewrite's offline
// answer and its RTP clock table). It is the tokenizer Rewrite itself runs
// on, so the two can never disagree on where a field or the body is: the
// body is what Content-Length says (or the rest of the datagram), and its
// type is what Content-Type and Content-Encoding say. Nothing here
// allocates; every slice returned points into the message.

// Message is a SIP message whose framing Parse accepted.
type Message struct {
	msg []byte
	l   layout
}

// Parse finds the start line, header fields and body of msg. It refuses, with
// a Reason, exactly what Rewrite refuses for its framing (a message with a
// body Rewrite cannot read, ErrEncodedBody, is accepted here: its Encoded
// says so).
func Parse(msg []byte) (Message, error) {
	l, r := scan(msg)
	if r != 0 {
		return Message{}, r
	}
	return Message{msg: msg, l: l}, nil
}

// Check returns the Reason Rewrite would refuse msg with, nil if it would
// not: Parse's framing errors, and ErrEncodedBody. It rewrites nothing.
func Check(msg []byte) error {
	if _, r := rewritable(msg); r != 0 {
		return r
	}
	return nil
}

// rewritable is scan and the one refusal that is not about framing: a body
// Rewrite must read but cannot (ErrEncodedBody). Rewrite, Check and
// Impersonation all refuse by it.
func rewritable(msg []byte) (layout, Reason) {
	l, r := scan(msg)
	if r == 0 && l.hidden() {
		r = ErrEncodedBody
	}
	return l, r
}

// hidden reports whether the body is of a type Rewrite maps but under an
// encoding it cannot read.
func (l *layout) hidden() bool {
	return l.typ != BodyOther && l.encoded && l.bodyEnd > l.bodyStart
}

// StartLine is the request or status line, without its line ending.
func (m *Message) StartLine() []byte {
	line, _ := lineAt(m.msg, 0)
	return line
}

// Fields returns an iterator over the header fields, in order.
func (m *Message) Fields() Fields {
	_, i := lineAt(m.msg, 0)
	return Fields{msg: m.msg, i: i, end: m.l.bodyStart}
}

// Body is the message body: Content-Length bytes after the empty line, or
// the rest of the datagram without a Content-Length.
func (m *Message) Body() []byte { return m.msg[m.l.bodyStart:m.l.bodyEnd] }

// BodyType is what the body is, by its Content-Type (see BodyType).
func (m *Message) BodyType() BodyType { return m.l.typ }

// Encoded reports whether a Content-Encoding other than identity applies
// to the body (gzip, a list): then it is not text this package reads.
func (m *Message) Encoded() bool { return m.l.encoded }

// SDP returns the body if it is SDP this package reads: of type
// application/sdp (or without a Content-Type and starting "v=0") and not
// encoded. It returns nil otherwise.
func (m *Message) SDP() []byte {
	if m.l.typ != BodySDP || m.l.encoded {
		return nil
	}
	return m.Body()
}

// BodyType is the type of a message body, as far as this package reads it.
type BodyType uint8

const (
	// BodyOther is any other type, or an empty body.
	BodyOther BodyType = iota
	// BodySDP is application/sdp, or a body without a Content-Type that
	// starts with "v=0" and a line ending: phones read it as SDP, so it
	// is rewritten as SDP (RFC 3261 §20.15 requires the Content-Type; not
	// every stack sends it).
	BodySDP
	// BodyDialogInfo is application/dialog-info+xml (RFC 4235), the state
	// of a watched line in the NOTIFYs of busy-lamp fields and directed
	// pickup.
	BodyDialogInfo
	// BodyMessageSummary is application/simple-message-summary (RFC
	// 3842), the message-waiting NOTIFY.
	BodyMessageSummary
)

// Fields iterates over the header fields of a Message.
type Fields struct {
	msg    []byte
	i, end int
}

// Next returns the next header field, or false after the last.
func (it *Fields) Next() (Field, bool) {
	if it.i >= it.end {
		return Field{}, false
	}
	end, lineEnd := fieldAt(it.msg, it.i, it.end)
	if lineEnd == it.i {
		it.i = it.end
		return Field{}, false
	}
	f := it.msg[it.i:lineEnd]
	h, colon := headerOf(f)
	it.i = end
	return Field{Raw: f, colon: colon, h: h}, true
}

// Field is a header field: its whole text, continuation lines included,
// without the line ending of its last line.
type Field struct {
	Raw   []byte
	colon int
	h     header
}

// Name is the field's name as written (before any LWS and the colon).
func (f Field) Name() []byte {
	n := 0
	for n < len(f.Raw) && class[f.Raw[n]]&clToken != 0 {
		n++
	}
	return f.Raw[:n]
}

// Value is everything after the colon, line breaks of folded lines
// included, leading blanks not removed.
func (f Field) Value() []byte { return f.Raw[f.colon+1:] }

// Is reports whether the field is the header long (its lower-case long
// name, "call-id"), written in long or compact form in any case. Is knows
// the headers listed in this package; for others it is always false.
func (f Field) Is(long string) bool { return f.h != hdrOther && headerNames[f.h] == long }

// Lines iterates over the lines of a body (SDP, a message summary):
// terminated by CRLF or a bare LF, the last one possibly by nothing.
type Lines struct {
	b []byte
	i int
}

// LinesOf returns an iterator over the lines of b.
func LinesOf(b []byte) Lines { return Lines{b: b} }

// Next returns the next line without its line ending, or false at the end.
func (it *Lines) Next() ([]byte, bool) {
	if it.i >= len(it.b) {
		return nil, false
	}
	line, next := lineAt(it.b, it.i)
	it.i = next
	return line, true
}

// header names the headers this package knows, whatever it does with them.
type header uint8

const (
	hdrOther header = iota
	hdrVia
	hdrContact
	hdrFrom
	hdrTo
	hdrRoute
	hdrRecordRoute
	hdrPath
	hdrReferTo
	hdrReferredBy
	hdrReplyTo
	hdrPAssertedIdentity
	hdrPPreferredIdentity
	hdrPCalledPartyID
	hdrRemotePartyID
	hdrDiversion
	hdrHistoryInfo
	hdrContentLength
	hdrContentType
	hdrContentEncoding
	hdrCallID
	hdrCSeq
	numHeaders
)

// headerNames are the lower-case long names; headerKinds what Rewrite does
// with each.
var (
	headerNames = [numHeaders]string{
		hdrVia: "via", hdrContact: "contact", hdrFrom: "from", hdrTo: "to",
		hdrRoute: "route", hdrRecordRoute: "record-route", hdrPath: "path",
		hdrReferTo: "refer-to", hdrReferredBy: "referred-by", hdrReplyTo: "reply-to",
		hdrPAssertedIdentity: "p-asserted-identity", hdrPPreferredIdentity: "p-preferred-identity",
		hdrPCalledPartyID: "p-called-party-id", hdrRemotePartyID: "remote-party-id",
		hdrDiversion: "diversion", hdrHistoryInfo: "history-info",
		hdrContentLength: "content-length", hdrContentType: "content-type",
		hdrContentEncoding: "content-encoding", hdrCallID: "call-id", hdrCSeq: "cseq",
	}
	headerKinds = [numHeaders]uint8{
		hdrVia: kindAddr, hdrContact: kindAddr, hdrFrom: kindAddr, hdrTo: kindAddr,
		hdrRoute: kindAddr, hdrRecordRoute: kindAddr, hdrPath: kindAddr,
		hdrReferTo: kindAddr, hdrReferredBy: kindAddr, hdrReplyTo: kindAddr,
		hdrPAssertedIdentity: kindAddr, hdrPPreferredIdentity: kindAddr,
		hdrPCalledPartyID: kindAddr, hdrRemotePartyID: kindAddr,
		hdrDiversion: kindAddr, hdrHistoryInfo: kindAddr,
		hdrContentLength: kindContentLength, hdrContentType: kindContentType,
		hdrContentEncoding: kindContentEncoding,
	}
)

// headerOf identifies a header field and returns the index of its colon,
// or -1 if the field is not "token LWS :".
func headerOf(f []byte) (h header, colon int) {
	i := 0
	for i < len(f) && class[f[i]]&clToken != 0 {
		i++
	}
	n := i
	i = skipLWS(f, i)
	if n == 0 || i == len(f) || f[i] != ':' {
		return hdrOther, -1
	}
	colon = i
	// Names we know are short: lower-case them on the stack so that the
	// switch below compares strings without allocating. This runs for
	// every header field of every message.
	var buf [len("p-preferred-identity")]byte
	if n > len(buf) {
		return hdrOther, colon
	}
	for k := range n {
		c := f[k]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[k] = c
	}
	if n == 1 {
		return compactHeaders[buf[0]], colon
	}
	switch string(buf[:n]) {
	case "via":
		h = hdrVia
	case "contact":
		h = hdrContact
	case "from":
		h = hdrFrom
	case "to":
		h = hdrTo
	case "route":
		h = hdrRoute
	case "record-route":
		h = hdrRecordRoute
	case "path":
		h = hdrPath
	case "refer-to":
		h = hdrReferTo
	case "referred-by":
		h = hdrReferredBy
	case "reply-to":
		h = hdrReplyTo
	case "p-asserted-identity":
		h = hdrPAssertedIdentity
	case "p-preferred-identity":
		h = hdrPPreferredIdentity
	case "p-called-party-id":
		h = hdrPCalledPartyID
	case "remote-party-id":
		h = hdrRemotePartyID
	case "diversion":
		h = hdrDiversion
	case "history-info":
		h = hdrHistoryInfo
	case "content-length":
		h = hdrContentLength
	case "content-type":
		h = hdrContentType
	case "content-encoding":
		h = hdrContentEncoding
	case "call-id":
		h = hdrCallID
	case "cseq":
		h = hdrCSeq
	}
	return h, colon
}

// compactHeaders are the compact forms (RFC 3261 §7.3.3) of the headers
// this package knows, by lower-case letter.
var compactHeaders = [256]header{
	'v': hdrVia, 'm': hdrContact, 'f': hdrFrom, 't': hdrTo, 'r': hdrReferTo, 'b': hdrReferredBy,
	'l': hdrContentLength, 'c': hdrContentType, 'e': hdrContentEncoding, 'i': hdrCallID,
}

// headerKind is what Rewrite does with a header field, and the index of
// its colon (-1 for a field that is not "token LWS :").
func headerKind(f []byte) (kind, colon int) {
	h, colon := headerOf(f)
	return int(headerKinds[h]), colon
}
