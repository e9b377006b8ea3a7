// Package sipmsg rewrites the IPv4 address literals of a SIP message without
// otherwise changing a byte of it.
//
// peerline's tunnels carry addresses relative to the two ends of a tunnel
// (docs/design.md §4, package numplan), so every address a phone wrote into a SIP
// message must be mapped the same way as the IP header that carries it, or
// replies, media and call-backs go to the wrong node. A full SIP parser would
// re-serialise the message; phones and digest authentication care about the
// exact bytes, so this package tokenises instead: it finds header fields and
// SDP lines, replaces address literals inside the fields that carry a peer's
// address (see Rewrite), recomputes Content-Length, and copies everything else
// through verbatim, including the line endings (CRLF or bare LF).
//
// # Address literals
//
// An address literal is four decimal octets 0-255 separated by dots, each
// written without a leading zero (a lone "0" is fine, "010" is not an octet,
// as in RFC 3986's dec-octet), forming the whole of a run of digits and dots.
// The run must not touch a letter, '-' or '_' on either side, because then it
// is part of a host name or a token such as a branch, not an address. So
// "110.0.1.15", "10.0.1.1234", "10.0.1.1.5", "10.0.1.1." and "x10.0.1.1" are
// left alone; "sip:a@10.0.1.1:5060", "received=10.0.1.1;" and
// "IN IP4 10.0.1.1/127" are rewritten. Replacing a literal never moves a run
// boundary, which is why mapping with a bijection and then with its inverse
// gives back the input byte for byte (the property the fuzz targets check).
//
// # Which fields
//
// Every occurrence of a literal is mapped in: the Request-URI; the header
// fields that name a party or a hop — Via, Contact, From, To, Route,
// Record-Route, Path, Refer-To, Referred-By, Reply-To, P-Asserted-Identity,
// P-Preferred-Identity, P-Called-Party-ID, Remote-Party-ID, Diversion and
// History-Info, with their compact forms (v m f t r b) — including their URI
// parameters (maddr=, received=) and display names, because phones take caller
// ID and call-back addresses from all of them; and in the bodies below.
// m= ports are never touched: the map is 1:1. RewriteThird also turns a
// third node's literal into a wire name, and back, in the Request-URI and
// those header fields (Third explains why).
//
// # Which bodies
//
// A body's type is its Content-Type, and it is read only under no
// Content-Encoding or "identity" (issue 15 item 4 decided each case):
//   - application/sdp: the o=, c= (session and media level), a=rtcp:,
//     a=candidate:, a=remote-candidates: and a=ssrc: lines. a=ssrc carries
//     the source's CNAME, which RFC 3550 phones build as user@address: it
//     names the sender, so it is mapped like o=. (RTCP SDES packets carry
//     the same CNAME; the rewriter does not touch RTP or RTCP payloads, so
//     a phone comparing the two sees two spellings of one source. Desk
//     phones key their streams on the SSRC, not the CNAME.)
//   - a body without a Content-Type that starts with "v=0" and a line
//     ending is SDP too: RFC 3261 §20.15 requires the type, but a phone
//     that gets such a body reads it as SDP, so it must be mapped as SDP.
//   - application/dialog-info+xml (RFC 4235, busy-lamp fields and directed
//     pickup): every literal (entity=, <identity>, <target uri=>, display
//     names) except in the values of the attributes id, call-id,
//     local-tag and remote-tag. Those are the watched dialog's identifiers,
//     which a phone doing a directed pickup copies into the Replaces of its
//     INVITE; the Call-ID and tags they must match cross unchanged, so they
//     cross unchanged too.
//   - application/simple-message-summary (RFC 3842, message waiting):
//     every literal; Message-Account names the voicemail account, the
//     optional message headers after it name parties.
//   - one of these types under gzip (or any encoding but identity) is
//     refused with ErrEncodedBody, whatever it holds: its addresses can be
//     neither mapped nor checked, and passed on they would point the far
//     phone at its own lines. The rewriter drops it and counts it. An
//     encoded body of another type is not read in any case and passes.
//
// The reader (Parse, Message) finds bodies by the same rules, so the
// rewriter's other readers of a message see the body Rewrite sees.
//
// What is left alone on purpose:
//   - 0.0.0.0, the old way of putting a call on hold (RFC 2543), whatever the
//     map says about it;
//   - Call-ID, and with it Replaces, Join and In-Reply-To: they are opaque
//     dialog identifiers that both phones compare byte for byte, and a Call-ID
//     crosses the tunnel unchanged, so the copies of it must too. For the same
//     reason the header part of a URI (after '?', as in a Refer-To carrying
//     "?Replaces=...") is not rewritten;
//   - Authorization and Proxy-Authorization: their uri= is covered by the
//     digest response;
//   - status lines, Warning, Call-Info, Alert-Info and every header not listed
//     above;
//   - bodies of other types (application/pidf+xml presence, message/sipfrag
//     of a transfer's progress, text/plain MESSAGEs) pass as they are;
//     multipart bodies (RFC 4475 mpart01) too: no phone we support sends
//     SDP inside multipart.
//
// # Framing
//
// Header fields may be folded over several lines (RFC 3261 §7.3.1), with
// line breaks even between the name and the colon; a field is handled as the
// whole of its lines. Names compare case-insensitively, in long or compact
// form. The body is what follows the first empty line, Content-Length bytes of
// it (or the rest of the datagram when there is no Content-Length, RFC 3261
// §18.3); bytes past it are copied unchanged. When the SDP grows or shrinks,
// the Content-Length digits (long or "l:" form, any spacing, folded or not)
// are rewritten in place; leading zeros are refused because the recomputed
// value, written without them, would not map back to the same bytes.
//
// # Hostile input
//
// Every datagram a peer sends is untrusted. Rewrite runs in time linear in
// the message, never loops on its input, and appends at most
// MaxGrowth(len(msg)) bytes to dst (a literal grows from 7 to at most 15
// bytes, or to a wire name of at most 46), so a destination buffer of that
// capacity is never reallocated.
// What it cannot parse it refuses with an error that is always a Reason: a
// small set of constants the rewriter counts by, with no allocation. The
// caller then passes the message on unchanged — unless Mappable finds an
// address of our plan anywhere in it, or the reason is ErrEncodedBody (an
// encoded body may hide such addresses). Such a message would carry our local
// addresses across the tunnel unmapped, where the other node reads 10.0.s.p
// as one of its own phones: a peer's malformed message could make our phone
// signal to a neighbour line, or ours theirs. That is the one unsafe case,
// and it is dropped (and counted); a malformed message without such
// addresses is harmless to pass, and the phone that gets it rejects it or
// not as it would without peerline. The RFC 4475 torture messages in
// testdata/rfc4475 are the regression corpus.
//
// # Who may be named
//
// A paired peer may only ever appear as its own phones. The IP source of
// what it sends is checked by the rewriter; the message inside could still
// claim to come from one of our own lines: a From of wire 10.254.2.1 is
// our 10.0.2.1 once mapped, and our phone would show the call as coming
// from its neighbour. Impersonation finds such a field in a message from
// the peer after it was mapped: an address the peer may not claim (the
// rewriter's test: our own 10.0.s.p, or another node's 10.k.s.p) in a
// field where the sender names itself — in a request Via, From, Contact,
// Record-Route, Path, Reply-To, P-Asserted-Identity, P-Preferred-Identity
// and Remote-Party-ID, display names included; in a response only Contact
// (except in a 3xx, a redirect to one of our lines), P-Asserted-Identity,
// P-Preferred-Identity, Remote-Party-ID and Reply-To, since its Via, From
// and To are copies of our own request. Our addresses are legitimate in the
// Request-URI, To, Route, Refer-To, Referred-By, Diversion, History-Info and
// P-Called-Party-ID of a request: they say whom the request is for, whom a
// transfer or redirect on our side sent it to, and who on our side referred
// it (Impersonation's doc gives the call each case comes from). The rewriter
// drops such a message and counts it; it drops an inbound message it cannot
// parse if it holds any such address (HasAddr), since it cannot tell
// where. The SDP is not checked here: media addresses are not an identity.
//
// # What counts as SIP
//
// IsSIP is the strict sniff (a method in capitals, one space, a sip:, sips:
// or tel: URI, or a status line), and a datagram it accepts is rewritten or
// refused. The rewriter also hands this package every other datagram to or
// from a SIP port but keep-alives (KeepAlive), and any datagram on other
// ports that LooksLikeSIP: a message with a leading blank line, a
// lower-case or long method, a tab or double space, a bracketed or
// non-SIP Request-URI. Rewrite parses the forms whose request line is
// still Method SP URI SP SIP/2.0 (any token, any URI) and maps them like
// any other; the rest it refuses, and they are then passed only if they
// hold no address of the plan. So the rule above holds for every datagram
// the rewriter sees as SIP, not only for well-formed ones.
//
// # Why SDP lives here
//
// SDP is handled here rather than in a package of its own because only a few
// line types matter and they need no SDP parsing beyond "line starts with".
//
// The package is pure (standard library only) and, given a destination buffer
// with enough capacity, allocation-free: the rewriter calls it for every SIP
// datagram that crosses a tunnel.
package sipmsg
