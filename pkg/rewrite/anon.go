package rewrite

import (
	"context"
	"log/slog"
	"strconv"

	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/privacy"
)

// Anonymous calls from the peer (issue 18 item 5). The config's
// "anonymous" policy says, per peer by name or by default, what happens to
// a call whose caller withholds its identity (package privacy decides what
// counts: Privacy: id/user/header, an anonymous From URI, the display name
// "Anonymous"; the same rules as for trunk calls). Calls from peers reach
// the phones through this rewriter and nothing else on the Pi, so this is
// where the policy is enforced:
//
//   - accept: the call passes as any other (the default);
//   - refuse: the INVITE never reaches the phone; the rewriter answers the
//     caller with 433 Anonymity Disallowed (RFC 5079) itself, sent back
//     through the tunnel as if the called phone had answered;
//   - redirect to line N: likewise, with a 302 whose Contact is line N's
//     phone (sip:N@10.0.N.1 here, which the outbound map turns into the
//     wire's 10.255.N.1 and the caller's rewriter into 10.<its index for
//     us>.N.1: the address the caller would dial itself). The caller's
//     phone then calls line N, and that INVITE, addressed to line N,
//     passes: the redirect never loops.
//
// The answer is stateless, as the offline 480 is (offline.go): built from
// the INVITE's Via, From, To, Call-ID and CSeq, with a To tag derived from
// them (anonTagPrefix), so a retransmitted INVITE gets the same answer,
// and the caller's ACK for it is recognised by that tag and absorbed.
// Nothing is kept per call. Answering, rather than rewriting the INVITE's
// destination to line N, keeps the rewriter's map stateless: a rewritten
// destination would have to be applied to every later message and RTP
// packet of the call, in both directions, which is a table a restarted
// daemon loses mid-call; with a 302 the caller's phone places a new call
// to line N, which is an ordinary call through the ordinary map.
//
// The answer leaves through the tunnel: it is put on Read's pending
// queue (bounded, maxAnonPending) and the inner device is asked to wake a
// Read blocked on the TUN (WakeRead, if it has one); without it the answer
// leaves with the next packet read, or the INVITE's retransmission.
// Answers cost a token of the SIP flood limit like the INVITE they answer,
// so a flood of anonymous INVITEs is met by at most that many answers.

// anonTagPrefix starts the To tag of every 433 and 302 Device makes.
const anonTagPrefix = "peerline-anon-"

// maxAnonPending bounds the answers waiting for a Read: past it an answer
// is dropped (the caller retransmits).
const maxAnonPending = 32

// SetAnonymous sets the policy for anonymous calls from the peer: the
// rule the config gives this peer (privacy.Policy.RuleFor). The zero Rule
// accepts. Safe to call from any goroutine; the next INVITE uses it.
func (d *Device) SetAnonymous(r privacy.Rule) {
	if r.Action == "" || r.Action == privacy.Accept {
		d.anon.Store(nil)
		return
	}
	if p := d.anon.Load(); p != nil && *p == r {
		return
	}
	d.anon.Store(&r)
}

// Anonymous returns the rule SetAnonymous last set (the zero Rule for
// accept).
func (d *Device) Anonymous() privacy.Rule {
	if p := d.anon.Load(); p != nil {
		return *p
	}
	return privacy.Rule{}
}

// anonymousLocked applies the policy to the SIP datagram out from the
// peer, already mapped for our phones (local plan; sip is the message as
// it came, parsed). It returns true if out must not reach the phone: an
// INVITE answered here, or the ACK of such an answer. ds is the inbound
// state, locked.
func (d *Device) anonymousLocked(ds *dirState, out []byte, sip *parsedSIP) bool {
	if sip.err != nil {
		return false
	}
	line := sip.msg.StartLine()
	switch {
	case hasPrefix(line, "ACK "):
		if tag, tagged, _ := toTag(fieldValue(sip, "to")); tagged && hasPrefix(tag, anonTagPrefix) {
			d.count(inbound, SIPAnonymousACK)
			return true
		}
		return false
	case !hasPrefix(line, "INVITE "):
		return false
	}
	rule := d.anon.Load()
	if rule == nil {
		return false
	}
	ihl := int(out[0]&0x0f) * 4
	if len(out) < ihl+udpHeaderLen {
		return false
	}
	var f inviteFields
	if !f.parse(out[ihl+udpHeaderLen:]) {
		return false // a re-INVITE, or not one we can answer: the phone judges it
	}
	if classifyInvite(&f) == privacy.NotAnonymous {
		return false
	}
	called := int(out[offDst+2])
	var res Result
	switch rule.Action {
	case privacy.Refuse:
		res = SIPAnonymousRefused
	case privacy.Redirect:
		if called == rule.Line {
			return false // already the line anonymous calls go to
		}
		res = SIPAnonymousRedirected
	default:
		return false
	}
	reply, ok := appendAnonReply(ds.answer[:0], out, ihl, &f, rule.Line, res == SIPAnonymousRedirected, ds.replyID)
	ds.answer = reply[:0]
	ds.replyID++
	// Refused or redirected, the INVITE does not reach the phone, even
	// when the answer cannot be sent.
	d.count(inbound, res)
	if !ok || !d.sendToPeerLocked(ds, reply) {
		d.events[inbound].n[evAnonReplyFailed].Add(1)
		if !d.loggedEv[inbound][evAnonReplyFailed].Swap(true) {
			d.log.LogAttrs(context.Background(), slog.LevelWarn,
				"rewrite: an anonymous call was refused by policy but the answer could not be sent; the caller will time out",
				slog.Int("line", called))
		}
	}
	return true
}

// classifyInvite is privacy.Classify on the INVITE's From and Privacy
// fields: the same rules the trunks apply. It is reached only for initial
// INVITEs from the peer under a policy other than accept, so the strings
// it makes cost nothing on the RTP and in-dialog paths.
func classifyInvite(f *inviteFields) privacy.Why {
	h := privacy.Headers{From: string(unfoldedOrNil(f.from))}
	var buf [privacy.MaxHeader]byte
	p := buf[:0]
	for k, v := range f.privacy[:f.nprivacy] {
		if k > 0 {
			p = append(p, ',')
		}
		p = append(p, unfoldedOrNil(v)...)
		if len(p) > privacy.MaxHeader {
			p = p[:privacy.MaxHeader]
			break
		}
	}
	h.Privacy = string(p)
	return privacy.Classify(h)
}

// fieldValue returns the value of the header field named long in sip
// (the last if it repeats), or nil.
func fieldValue(sip *parsedSIP, long string) []byte {
	var v []byte
	fs := sip.msg.Fields()
	for h, ok := fs.Next(); ok; h, ok = fs.Next() {
		if h.Is(long) {
			v = h.Value()
		}
	}
	return v
}

// appendAnonReply appends to dst the answer, in the local plan, to the
// INVITE in out (mapped for our phones, header length ihl, fields f): a
// 302 to line's phone if redirect, else a 433.
func appendAnonReply(dst, out []byte, ihl int, f *inviteFields, line int, redirect bool, id uint16) (_ []byte, ok bool) {
	status := "SIP/2.0 433 Anonymity Disallowed"
	if redirect {
		status = "SIP/2.0 302 Moved Temporarily"
	}
	if dst, ok = appendReplyHead(dst, status, f, anonTagPrefix); !ok {
		return dst, false
	}
	if redirect {
		// Line s's phone in our plan, 10.0.s.1: the outbound map makes it
		// the wire's 10.255.s.1, and the caller's rewriter the address its
		// phones dial for our line s.
		dst = append(dst, "Contact: <sip:"...)
		dst = strconv.AppendInt(dst, int64(line), 10)
		dst = append(dst, "@10.0."...)
		dst = strconv.AppendInt(dst, int64(line), 10)
		dst = append(dst, ".1>\r\n"...)
	}
	dst = append(dst, "Warning: 399 peerline \"anonymous calls "...)
	if redirect {
		dst = append(dst, "go to line "...)
		dst = strconv.AppendInt(dst, int64(line), 10)
	} else {
		dst = append(dst, "are refused"...)
	}
	dst = append(dst, "\"\r\n"...)
	return finishReply(dst, 0, out, ihl, id)
}

// sendToPeerLocked maps reply (an IPv4 packet in the local plan, from one
// of our phones to the peer) for the wire as Read would, and queues it
// for Read, in fragments if it exceeds the tunnel MTU. It reports false if
// the reply cannot be sent: the outbound map refuses it, or too many
// answers wait. ds is the inbound state, locked; the outbound state is
// taken here (no path takes them the other way round).
func (d *Device) sendToPeerLocked(ds *dirState, reply []byte) bool {
	out, res, _ := packetOf(ds.answerOut[:0], reply, d.peer, numplan.Outbound, d.third.Load(), nil)
	if res == SIPRewritten {
		ds.answerOut = out[:0]
	}
	switch res {
	case SIPRewritten, SIPUnchanged:
	default:
		return false
	}
	o := &d.dirs[outbound]
	o.mu.Lock()
	if len(o.pending)-o.head >= maxAnonPending {
		o.mu.Unlock()
		return false
	}
	mtu := d.wire()
	if len(out) <= mtu {
		o.queueLocked(out)
	} else {
		sp := newSplitter(out, mtu)
		if cap(ds.answerFrag) < mtu {
			ds.answerFrag = make([]byte, max(mtu, minMTU))
		}
		for k := range sp.n {
			n := sp.frag(k, ds.answerFrag[:cap(ds.answerFrag)])
			o.queueLocked(ds.answerFrag[:n])
		}
	}
	o.mu.Unlock()
	d.count(outbound, SIPAnswerToPeer)
	if w, ok := d.inner.(interface{ WakeRead() }); ok {
		w.WakeRead()
	}
	return true
}

// queueLocked appends a copy of p to the pending queue Read returns
// first. ds is locked.
func (ds *dirState) queueLocked(p []byte) {
	if len(ds.pending) < cap(ds.pending) {
		ds.pending = ds.pending[:len(ds.pending)+1]
	} else {
		ds.pending = append(ds.pending, nil)
	}
	q := &ds.pending[len(ds.pending)-1]
	*q = append((*q)[:0], p...)
	ds.npending.Store(int32(len(ds.pending) - ds.head))
}
