package rewrite

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"strconv"

	"github.com/peerline/peerline/pkg/sipmsg"
)

// A call to a peer that is offline must fail at once (issue 3 item 7): left
// alone, the INVITE sits in WireGuard's queue while the phone rings back
// for the 32 s of its transaction timer and then shows a timeout. So while
// the daemon's path manager says the peer is offline (SetPeerState), an
// initial INVITE from a local phone is not sent: Device answers it with a
// 480 Temporarily Unavailable, written back into the TUN as if the peer had
// sent it. RFC 3261 §8.1.3.2 and §17.1.1.2: a final non-2xx response ends
// the INVITE client transaction, and a 4xx the call attempt; baresip shows
// "480 Peer Offline" and hangs up, Yealink phones show the reason phrase.
//
// Only initial INVITEs (no To tag) are answered: a re-INVITE inside a call
// (hold, session timer) goes to WireGuard as before, so a short outage in a
// call that is about to recover never ends the call from this side. Other
// requests pass too, with one exception: the ACK that acknowledges one of
// these 480s (its To tag is one we made, offlineTagPrefix) belongs to a
// transaction the peer never saw, so it is absorbed instead of reaching the
// peer's phone as a stray when the tunnel comes back.
//
// CANCEL is passed, not answered: a phone sends CANCEL only after a
// provisional response (RFC 3261 §9.1), and this 480 is final and comes
// first, so a CANCEL for it never comes; a CANCEL seen while the peer is
// offline is for an INVITE that did reach the peer, and the peer's phone
// must see it when the tunnel comes back.
//
// The response is built statelessly from the INVITE, the same one for every
// retransmission: Via, From, To, Call-ID and CSeq copied (folded lines
// unfolded), a To tag derived from the dialog's identifiers, a Warning
// carrying the path manager's reason, Content-Length: 0. Nothing is kept
// per call, so a restarted daemon loses nothing.

// offlineTagPrefix starts the To tag of every 480 Device makes.
const offlineTagPrefix = "peerline-offline-"

// replyOffset is where a 480 starts in the buffer handed to the inner
// device: wireguard-go writes at device.MessageTransportOffsetContent, and
// the Linux TUN needs room in front for its virtio header.
const replyOffset = 16

// maxVias bounds the Via fields copied; an INVITE with more is passed on.
const maxVias = 16

// maxWarning bounds the reason text put into the Warning header.
const maxWarning = 120

// peerState is what SetPeerState last said, published as one pointer.
type peerState struct {
	reason string // as given
	text   string // reason made safe for a quoted-string
}

// SetPeerState tells the Device whether its peer is reachable; reason says
// why not (for people: it goes into the 480's Warning header). It is cheap
// and safe to call from any goroutine, as often as the path manager
// re-evaluates its peers. A new Device assumes the peer is online.
func (d *Device) SetPeerState(online bool, reason string) {
	if !online {
		// The reason first, so that an INVITE seen the moment the flag
		// flips already finds it.
		if p := d.offlineReason.Load(); p == nil || p.reason != reason {
			d.offlineReason.Store(&peerState{reason: reason, text: warningText(reason)})
		}
	}
	d.offline.Store(!online)
}

// PeerOnline reports what SetPeerState last said.
func (d *Device) PeerOnline() bool { return !d.offline.Load() }

// answerLocked handles the SIP datagram pkt (checked, unfragmented, from a
// local phone) if the offline rules above take it: it returns true if pkt
// must not be sent. ds is the outbound state, locked.
func (d *Device) answerLocked(ds *dirState, pkt []byte, ihl int) bool {
	udp := pkt[ihl:]
	if len(udp) < udpHeaderLen || int(binary.BigEndian.Uint16(udp[offUDPLen:])) != len(udp) {
		return false
	}
	msg := udp[udpHeaderLen:]
	switch {
	case hasPrefix(msg, "ACK "):
		if isOfflineACK(msg) {
			d.count(outbound, SIPOfflineACK)
			return true
		}
	case hasPrefix(msg, "INVITE "):
		if !d.offline.Load() {
			return false
		}
		var f inviteFields
		if !f.parse(msg) {
			return false
		}
		text := "peer offline"
		if p := d.offlineReason.Load(); p != nil && p.text != "" {
			text = p.text
		}
		reply := append(ds.reply[:0], make([]byte, replyOffset)...)
		reply, ok := appendOffline480(reply, pkt, ihl, &f, text, ds.replyID)
		ds.reply = reply[:0]
		if !ok {
			return false
		}
		ds.replyID++
		if err := d.writeReplyLocked(ds, reply); err != nil {
			// Without the answer, sending the INVITE is the better of
			// two evils: the phone rings out as it did before.
			d.events[outbound].n[evOfflineReplyFailed].Add(1)
			if !d.loggedEv[outbound][evOfflineReplyFailed].Swap(true) {
				d.log.LogAttrs(context.Background(), slog.LevelWarn,
					"rewrite: writing the answer to a call for an offline peer failed; the call was sent on",
					slog.String("err", err.Error()))
			}
			return false
		}
		d.count(outbound, SIPPeerOffline)
		return true
	}
	return false
}

// writeReplyLocked writes the packet reply[replyOffset:] to the inner
// device, in fragments if it exceeds the MTU, as Write would a reply from
// the peer. The inner device is safe for concurrent use (wireguard-go
// writes to it from a goroutine per peer).
func (d *Device) writeReplyLocked(ds *dirState, reply []byte) error {
	pkt := reply[replyOffset:]
	ds.replyList = append(ds.replyList[:0], reply)
	if mtu := d.mtu(); len(pkt) > mtu {
		sp := newSplitter(pkt, mtu)
		ds.replyList = ds.replyList[:0]
		for k := range sp.n {
			if k == len(ds.replyFrags) {
				ds.replyFrags = append(ds.replyFrags, make([]byte, replyOffset+max(mtu, minMTU)))
			}
			b := ds.replyFrags[k][:cap(ds.replyFrags[k])]
			n := sp.frag(k, b[replyOffset:])
			ds.replyList = append(ds.replyList, b[:replyOffset+n])
		}
	}
	_, err := d.inner.Write(ds.replyList, replyOffset)
	clear(ds.replyList)
	return err
}

// inviteFields are the header fields of an initial INVITE that its
// response copies, as they appear in the message (values may be folded).
type inviteFields struct {
	via                   [maxVias][]byte
	nvia                  int
	from, to, callID, seq []byte
	// privacy are the Privacy values (anon.go reads them), the first
	// maxPrivacy.
	privacy  [maxPrivacy][]byte
	nprivacy int
}

// maxPrivacy bounds the Privacy fields read; one is usual.
const maxPrivacy = 4

// parse fills f from msg and reports whether msg is an initial INVITE that
// can be answered: a message sipmsg parses, request line "INVITE ...
// SIP/2.0", each of From, To, Call-ID and CSeq exactly once, at least one
// Via, CSeq's method INVITE, and no tag in To. Anything else is left to the
// peer to judge.
func (f *inviteFields) parse(msg []byte) bool {
	m, err := sipmsg.Parse(msg)
	if err != nil {
		return false
	}
	line := m.StartLine()
	if !hasPrefix(line, "INVITE ") || !bytes.HasSuffix(line, []byte(" SIP/2.0")) {
		return false
	}
	fs := m.Fields()
	for h, ok := fs.Next(); ok; h, ok = fs.Next() {
		var dst *[]byte
		switch {
		case h.Is("via"):
			if f.nvia == maxVias {
				return false
			}
			f.via[f.nvia] = h.Value()
			f.nvia++
			continue
		case h.Is("from"):
			dst = &f.from
		case h.Is("to"):
			dst = &f.to
		case h.Is("call-id"):
			dst = &f.callID
		case h.Is("cseq"):
			dst = &f.seq
		default:
			if f.nprivacy < maxPrivacy && equalFold(h.Name(), "privacy") {
				f.privacy[f.nprivacy] = h.Value()
				f.nprivacy++
			}
			continue
		}
		if *dst != nil {
			return false
		}
		*dst = h.Value()
	}
	if f.nvia == 0 || f.from == nil || f.to == nil || f.callID == nil || f.seq == nil {
		return false
	}
	if _, tagged, ok := toTag(f.to); tagged || !ok {
		return false // a re-INVITE, or a To whose tag we could not find
	}
	seq := bytes.TrimSpace(unfoldedOrNil(f.seq))
	sp := bytes.IndexAny(seq, " \t")
	if sp <= 0 || sp > 10 || string(bytes.TrimSpace(seq[sp:])) != "INVITE" {
		return false
	}
	num := seq[:sp]
	for _, c := range num {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

// isOfflineACK reports whether msg is an ACK for a 480 this package made.
func isOfflineACK(msg []byte) bool {
	m, err := sipmsg.Parse(msg)
	if err != nil {
		return false
	}
	var to []byte
	fs := m.Fields()
	for h, ok := fs.Next(); ok; h, ok = fs.Next() {
		if h.Is("to") {
			if to != nil {
				return false
			}
			to = h.Value()
		}
	}
	tag, tagged, _ := toTag(to)
	return tagged && hasPrefix(tag, offlineTagPrefix)
}

// appendOffline480 appends to dst the IPv4/UDP packet answering the INVITE
// in pkt (checked, header length ihl, fields f): from the address and port
// the phone sent it to, to the phone's. ok is false if a field cannot be
// copied into a well-formed response.
func appendOffline480(dst, pkt []byte, ihl int, f *inviteFields, warning string, id uint16) (_ []byte, ok bool) {
	start := len(dst)
	if dst, ok = appendReplyHead(dst, "SIP/2.0 480 Peer Offline", f, offlineTagPrefix); !ok {
		return dst, false
	}
	dst = append(dst, "Warning: 399 peerline \""...)
	dst = append(dst, warning...)
	dst = append(dst, "\"\r\n"...)
	return finishReply(dst, start, pkt, ihl, id)
}

// appendReplyHead appends room for the IPv4 and UDP headers, then status
// and the fields a response copies from the INVITE f (Via, From, To with
// a tag of ours starting tagPrefix, Call-ID, CSeq), each line ended. The
// caller adds its own fields and calls finishReply.
func appendReplyHead(dst []byte, status string, f *inviteFields, tagPrefix string) (_ []byte, ok bool) {
	dst = append(dst, make([]byte, ipHeaderLen+udpHeaderLen)...)
	dst = append(dst, status...)
	dst = append(dst, "\r\n"...)
	for _, v := range f.via[:f.nvia] {
		if dst, ok = appendField(dst, "Via: ", v); !ok {
			return dst, false
		}
		dst = append(dst, "\r\n"...)
	}
	for _, h := range [...]struct {
		name  string
		value []byte
	}{{"From: ", f.from}, {"To: ", f.to}, {"Call-ID: ", f.callID}, {"CSeq: ", f.seq}} {
		if dst, ok = appendField(dst, h.name, h.value); !ok {
			return dst, false
		}
		if h.name == "To: " {
			// The same tag for every retransmission of this INVITE, so
			// that the phone sees one answer however often it asks.
			dst = append(dst, ";tag="...)
			dst = append(dst, tagPrefix...)
			dst = strconv.AppendUint(dst, dialogHash(f), 16)
		}
		dst = append(dst, "\r\n"...)
	}
	return dst, true
}

// finishReply ends the response that starts at dst[start:] (made by
// appendReplyHead and the caller's fields) and fills in its IPv4 and UDP
// headers: from the address and port the request in pkt (checked, header
// length ihl) was sent to, back to where it came from.
func finishReply(dst []byte, start int, pkt []byte, ihl int, id uint16) (_ []byte, ok bool) {
	dst = append(dst, "Server: peerline\r\nContent-Length: 0\r\n\r\n"...)
	if len(dst)-start > maxPacket {
		return dst, false
	}
	p := dst[start:]
	binary.BigEndian.PutUint16(p[0:], 0x4500) // version 4, IHL 5
	binary.BigEndian.PutUint16(p[offTotalLen:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], id)
	binary.BigEndian.PutUint16(p[offFlags:], 0) // may be fragmented on the way
	p[8] = 64                                   // TTL
	p[offProto] = protoUDP
	copy(p[offSrc:offSrc+4], pkt[offDst:offDst+4])
	copy(p[offDst:offDst+4], pkt[offSrc:offSrc+4])
	setIPChecksum(p[:ipHeaderLen])
	u, in := p[ipHeaderLen:], pkt[ihl:]
	copy(u[0:2], in[2:4]) // from the port the request was sent to
	copy(u[2:4], in[0:2]) // to the port it came from
	binary.BigEndian.PutUint16(u[offUDPLen:], uint16(len(u)))
	binary.BigEndian.PutUint16(u[offUDPChecksum:], 0)
	c := ^fold(sum(u, sum(p[offSrc:offDst+4], uint32(protoUDP)+uint32(len(u)))))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[offUDPChecksum:], c)
	return dst, true
}

// appendField appends name and the value v unfolded and trimmed, without a
// line ending. A value that is empty or holds a control
// character other than a tab after unfolding is refused.
func appendField(dst []byte, name string, v []byte) ([]byte, bool) {
	dst = append(dst, name...)
	start := len(dst)
	v = bytes.TrimLeft(v, " \t")
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' {
			// A line break inside a field value is a fold: it and the
			// white space around it read as one space.
			for i+1 < len(v) && (v[i+1] == '\r' || v[i+1] == '\n' || v[i+1] == ' ' || v[i+1] == '\t') {
				i++
			}
			c = ' '
		} else if c < 0x20 && c != '\t' || c == 0x7f {
			return dst, false
		}
		dst = append(dst, c)
	}
	for len(dst) > start && (dst[len(dst)-1] == ' ' || dst[len(dst)-1] == '\t') {
		dst = dst[:len(dst)-1]
	}
	return dst, len(dst) > start
}

// dialogHash is FNV-1a over the fields that identify the INVITE.
func dialogHash(f *inviteFields) uint64 {
	h := uint64(14695981039346656037)
	for _, v := range [][]byte{f.callID, f.from, f.seq} {
		for _, c := range v {
			h = (h ^ uint64(c)) * 1099511628211
		}
		h = (h ^ 0xff) * 1099511628211 // a separator no field ends with
	}
	return h
}

// unfoldedOrNil returns v with folds replaced by spaces; it allocates only
// for a folded value, which phones do not send.
func unfoldedOrNil(v []byte) []byte {
	if !bytes.ContainsAny(v, "\r\n") {
		return v
	}
	out, _ := appendField(nil, "", v)
	return out
}

// toTag returns the tag parameter of a From or To value: the parameters
// after the name-addr's '>' or, for a bare addr-spec, after the URI (which
// may not hold ';' there, RFC 3261 §20.10). ok is false for a value whose
// quotes or angle brackets do not close, where a tag cannot be told from
// the rest.
func toTag(v []byte) (tag []byte, tagged, ok bool) {
	inQuote := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '<':
			gt := bytes.IndexByte(v[i:], '>')
			if gt < 0 {
				return nil, false, false
			}
			tag, tagged = paramTag(v[i+gt+1:])
			return tag, tagged, true
		}
	}
	if inQuote {
		return nil, false, false
	}
	tag, tagged = paramTag(v)
	return tag, tagged, true
}

func paramTag(params []byte) ([]byte, bool) {
	_, params, found := bytes.Cut(params, []byte(";"))
	for found {
		var p []byte
		p, params, found = bytes.Cut(params, []byte(";"))
		name, value, _ := bytes.Cut(p, []byte("="))
		if equalFold(bytes.TrimSpace(name), "tag") {
			return bytes.TrimSpace(value), true
		}
	}
	return nil, false
}

// warningText makes reason safe for the Warning header's quoted string:
// printable ASCII only, no quote or backslash, bounded.
func warningText(reason string) string {
	b := make([]byte, 0, min(len(reason), maxWarning))
	for i := 0; i < len(reason) && len(b) < maxWarning; i++ {
		switch c := reason[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\'')
		case c < 0x20 || c >= 0x7f:
			b = append(b, ' ')
		default:
			b = append(b, c)
		}
	}
	return string(bytes.TrimSpace(b))
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
