package rewrite

import (
	"context"
	"log/slog"
	"net/netip"

	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/sipmsg"
)

// sipPort is the SIP port. Every UDP datagram to or from it takes the SIP
// path, whatever it starts with, except keep-alives: a message sipmsg
// cannot parse must still be checked for addresses of the plan, or a blank
// line before the request line would carry them across unmapped. On other
// ports (phones may use any local port) a datagram takes the SIP path when
// sipmsg.LooksLikeSIP, a sniff loose enough to catch malformed SIP.
const sipPort = 5060

// notPeer returns the test for a literal, in a message from tunnel peer as
// mapped for our phones, that names someone the peer is not: any address
// of the plan but the peer's own 10.peer.s.p, so our own lines (10.0.s.p)
// and other nodes' (10.k.s.p). Addresses outside 10/8 are not ours to
// judge. Device makes it once, so that the check allocates nothing.
func notPeer(peer uint8) func([4]byte) bool {
	return func(a [4]byte) bool { return a[0] == 10 && a[1] != peer }
}

// impersonation checks an inbound SIP datagram as it is about to be written
// to the TUN (out, with the Result packet gave it): a message from the peer
// must not name one of our own lines, or another node's, where the sender
// names itself (sipmsg.Impersonation; other is notPeer's test). A message
// that was not parsed (the payload passes as it came) must hold no such
// address at all, since where it is cannot be told. It returns the field
// for the log ("unparsed" for the latter).
func impersonation(out []byte, res Result, other func([4]byte) bool) (field string, bad bool) {
	ihl := int(out[0]&0x0f) * 4
	if len(out) < ihl+udpHeaderLen {
		return "", false
	}
	p := out[ihl+udpHeaderLen:]
	switch res {
	case SIPRewritten, SIPUnchanged:
		return sipmsg.Impersonation(p, other)
	}
	if sipmsg.HasAddr(p, other) {
		return "unparsed", true
	}
	return "", false
}

// sampleEvery is the least time between two log lines about refused SIP
// messages of one direction: enough for an operator to tell a buggy phone
// (the same method and reason again and again) from a scan (many sources
// and methods), without a flood of log lines.
const sampleEvery = int64(10e9)

// sampleRefused logs what was refused, at most once per sampleEvery per
// direction: method, reason, size and source. It runs on the slow path of
// a dropped message only. src is its IP source as it arrived; the log
// names it as this node numbers it (the peer's line 2 is 10.i.2.1).
func (d *Device) sampleRefused(dir int, now int64, src [4]byte, pkt []byte, reason string) {
	last := d.sampled[dir].Load()
	if last != 0 && now-last < sampleEvery || !d.sampled[dir].CompareAndSwap(last, max(now, 1)) {
		return
	}
	ihl := int(pkt[0]&0x0f) * 4
	method := ""
	if len(pkt) >= ihl+udpHeaderLen {
		method = firstToken(pkt[ihl+udpHeaderLen:])
	}
	if dir == inbound {
		src, _ = numplan.FromWire(src, d.peer)
	}
	d.log.LogAttrs(context.Background(), slog.LevelWarn, "rewrite: refused a SIP message (a sample; all are counted)",
		slog.String("dir", numplan.Direction(dir).String()), slog.String("reason", reason),
		slog.String("method", method), slog.Int("size", len(pkt)),
		slog.String("source", netip.AddrFrom4(src).String()))
}

// firstToken returns the first word of a message, at most 16 bytes, with
// bytes that are not printable ASCII shown as '?': what the sender meant as
// the method or "SIP/2.0".
func firstToken(p []byte) string {
	i := 0
	for i < len(p) && (p[i] == '\r' || p[i] == '\n' || p[i] == ' ' || p[i] == '\t') {
		i++
	}
	var b []byte
	for ; i < len(p) && len(b) < 16 && p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n'; i++ {
		c := p[i]
		if c < 0x21 || c > 0x7e {
			c = '?'
		}
		b = append(b, c)
	}
	return string(b)
}

// refuseFragment reports whether the checked fragment pkt, about to pass
// unreassembled (over a reassembly limit), is the first fragment of a SIP
// message that must not pass unrewritten: one holding an address the map
// would change, or, from the peer, one it may not claim (impersonation's
// test for an unparsed message). It counts and logs it. Dropping the first
// fragment is enough: without it the rest never reassemble into a message,
// so none of their bytes reach a phone.
func (d *Device) refuseFragment(dir int, pkt []byte, now int64) bool {
	if !sipFirstFragment(pkt) {
		return false
	}
	ihl := int(pkt[0]&0x0f) * 4
	src := [4]byte(pkt[offSrc : offSrc+4])
	switch {
	case tunnelMap{d.peer, numplan.Direction(dir), d.third.Load()}.mustDrop(pkt[ihl+udpHeaderLen:]):
		d.count(dir, SIPRefused)
		d.sampleRefused(dir, now, src, pkt, "fragment-over-limit")
		return true
	case dir == inbound && sipmsg.HasAddr(pkt[ihl+udpHeaderLen:], d.notPeer):
		d.events[inbound].n[evDropImpersonation].Add(1)
		d.sampleRefused(dir, now, src, pkt, "impersonation:fragment")
		return true
	}
	return false
}
