package sipmsg

// Impersonation finds, in a message that arrived from a peer and has been
// rewritten for this node, an address the peer may not claim (ours reports
// which literals those are: for the rewriter 10.0.s.p, our own lines, and
// other nodes' 10.k.s.p) in a header field where the peer may only name
// itself. It returns the field's lower-case long name
// ("from", "contact", ...) and true, or "" and false when there is none or
// the message cannot be parsed or rewritten (Check; the caller checks those
// with HasAddr, or drops them).
//
// The rule is the package doc's "Who may be named"; the cases are what a
// real call needs:
//
// In a request from the peer, the peer's phone is the originator, so a
// field that says who sent it, where it came from or where to send the
// replies and later requests must name the peer's side: Via, From,
// Contact, Record-Route, Path, Reply-To, P-Asserted-Identity,
// P-Preferred-Identity and Remote-Party-ID. Our own address there would
// show our phone a call from its neighbour line ("Mum (line 2)"), or send
// its responses and BYE to it. Legitimate: the Request-URI and To (the
// request is addressed to our phone; after a redirect the To still names the
// line first called, which may be another of ours), Route, Refer-To (the
// peer's phone transfers ours to another of our lines), Referred-By (the
// peer calls our line 2 because our line 1 transferred it), Diversion,
// History-Info and P-Called-Party-ID (they name the lines the call was
// addressed to, ours after one of our phones redirected it).
//
// A response from the peer answers a request of one of our phones: Via,
// From, To, Record-Route and Path are copies of what that phone sent (its
// transaction would not match them otherwise), so ours may be in them. The
// fields that say who answered must name the peer's side: Contact (the
// target of every later request in the dialog), P-Asserted-Identity,
// P-Preferred-Identity, Remote-Party-ID and Reply-To. The exception is the
// Contact of a 3xx: the peer's phone redirecting our call to another of our
// own lines (call forwarding to a neighbour) is a redirect, not a disguise,
// and our phone then calls its neighbour directly.
func Impersonation(msg []byte, ours func([4]byte) bool) (field string, found bool) {
	l, r := rewritable(msg)
	if r != 0 {
		return "", false
	}
	line, i := lineAt(msg, 0)
	response, redirect := false, false
	if hasPrefixFold(line, "SIP/2.0 ") {
		response, redirect = true, line[len("SIP/2.0 ")] == '3'
	}
	for i < l.bodyStart {
		end, lineEnd := fieldAt(msg, i, l.bodyStart)
		if lineEnd == i {
			break
		}
		name, colon := identityField(msg[i:lineEnd], response, redirect)
		if name != "" && HasAddr(msg[i+colon+1:end], ours) {
			return name, true
		}
		i = end
	}
	return "", false
}

// identityField returns the lower-case long name of a header field in which
// the sender of a request (or of a response, with response, and of a 3xx
// with redirect) may name only itself, and the index of its colon; "" for
// every other field.
func identityField(f []byte, response, redirect bool) (name string, colon int) {
	h, colon := headerOf(f)
	switch h {
	case hdrContact:
		if redirect {
			return "", 0
		}
	case hdrPAssertedIdentity, hdrPPreferredIdentity, hdrRemotePartyID, hdrReplyTo:
	case hdrFrom, hdrVia, hdrRecordRoute, hdrPath:
		if response {
			return "", 0
		}
	default:
		return "", 0
	}
	return headerNames[h], colon
}
