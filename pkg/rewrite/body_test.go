package rewrite

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/sipmsg"
)

// The bodies of issue 15 item 4 as golden packets, in both directions: each
// template is rendered where the packet is (the sender's node, the wire,
// the receiver's node), read from the sender's phone by the sender's
// Device and written by the receiver's. {S} is the sending phone, {R} the
// receiving one, {R2} the receiving node's line 2. Literals written out in
// a template (the dialog's call-id) must cross as they are.
const (
	// blfNotifyTmpl is a Yealink-style busy-lamp NOTIFY: the sender's line
	// tells the watcher that it is in a call with the watcher's neighbour
	// line 2, the state a directed pickup reads.
	blfNotifyTmpl = `NOTIFY sip:w@{R}:5060 SIP/2.0
Via: SIP/2.0/UDP {S}:5060;branch=z9hG4bK-blf
From: <sip:101@{S}>;tag=n1
To: <sip:w@{R}>;tag=w1
Call-ID: blf1@10.0.9.9
CSeq: 3 NOTIFY
Contact: <sip:101@{S}:5060>
Event: dialog
Subscription-State: active;expires=1800
Content-Type: application/dialog-info+xml
Content-Length: {len}

<?xml version="1.0"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="2" state="full" entity="sip:101@{S}">
<dialog id="d1" call-id="c9@10.0.1.1" local-tag="lt1" remote-tag="rt1" direction="recipient">
<state>confirmed</state>
<local><identity display="Line 1">sip:101@{S}</identity><target uri="sip:101@{S}:5060"/></local>
<remote><identity>sip:102@{R2}</identity><target uri="sip:102@{R2}"/></remote>
</dialog>
</dialog-info>
`
	// mwiNotifyTmpl is a message-waiting NOTIFY.
	mwiNotifyTmpl = `NOTIFY sip:w@{R} SIP/2.0
Via: SIP/2.0/UDP {S}:5060;branch=z9hG4bK-mwi
From: <sip:vm@{S}>;tag=m1
To: <sip:w@{R}>;tag=m2
Call-ID: mwi1
CSeq: 2 NOTIFY
Event: message-summary
Subscription-State: active
Content-Type: application/simple-message-summary
Content-Length: {len}

Messages-Waiting: yes
Message-Account: sip:*97@{S}
Voice-Message: 2/8 (0/2)
`
	// ssrcInviteTmpl offers SDP with the source's CNAME, as RFC 3550
	// phones write it.
	ssrcInviteTmpl = `INVITE sip:w@{R} SIP/2.0
Via: SIP/2.0/UDP {S}:5060;branch=z9hG4bK-ssrc
From: <sip:a@{S}>;tag=s1
To: <sip:w@{R}>
Call-ID: ssrc1
CSeq: 1 INVITE
Contact: <sip:a@{S}>
Content-Type: application/sdp
Content-Length: {len}

v=0
o=- 1 1 IN IP4 {S}
s=-
c=IN IP4 {S}
t=0 0
m=audio 10000 RTP/AVP 0
a=ssrc:305419896 cname:a@{S}
`
	// noTypeOKTmpl answers with SDP but no Content-Type.
	noTypeOKTmpl = `SIP/2.0 200 OK
Via: SIP/2.0/UDP {R}:5060;branch=z9hG4bK-nt
From: <sip:w@{R}>;tag=w1
To: <sip:a@{S}>;tag=a1
Call-ID: nt1
CSeq: 1 INVITE
Contact: <sip:a@{S}>
Content-Length: {len}

v=0
o=- 2 2 IN IP4 {S}
s=-
c=IN IP4 {S}
t=0 0
m=audio 20000 RTP/AVP 0
`
)

// hopAt is where a packet from one phone to another is, and the addresses
// it gives {S}, {R} and {R2}.
type hopAt struct{ s, r, r2 string }

func (h hopAt) render(tmpl string) []byte {
	s := strings.NewReplacer("{S}", h.s, "{R}", h.r, "{R2}", h.r2, "\n", "\r\n").Replace(tmpl)
	head, body, _ := strings.Cut(s, "\r\n\r\n")
	return []byte(strings.Replace(head, "{len}", strconv.Itoa(len(body)), 1) + "\r\n\r\n" + body)
}

func (h hopAt) packet(tmpl string) []byte { return udp4(h.s, h.r, 5060, 5060, h.render(tmpl)) }

// bodyTrips are the two directions: Alice's line 1 to Bob's line 2 and back
// (Bob is 7 at Alice's node, Alice 4 at Bob's).
var bodyTrips = []struct {
	name                string
	sendPeer, recvPeer  uint8
	atSender, wire, atR hopAt
}{
	{"alice to bob", bobAtAlice, aliceAtBob,
		hopAt{"10.0.1.1", "10.7.2.1", "10.7.2.1"}, hopAt{"10.255.1.1", "10.254.2.1", "10.254.2.1"}, hopAt{"10.4.1.1", "10.0.2.1", "10.0.2.1"}},
	{"bob to alice", aliceAtBob, bobAtAlice,
		hopAt{"10.0.2.1", "10.4.1.1", "10.4.2.1"}, hopAt{"10.255.2.1", "10.254.1.1", "10.254.2.1"}, hopAt{"10.7.2.1", "10.0.1.1", "10.0.2.1"}},
}

// hop reads pkt from a phone (read) or writes it from the wire through a
// Device of tunnel peer, and returns what came out and that direction's
// counts.
func hop(t *testing.T, pkt []byte, peer uint8, read bool) ([][]byte, Counts) {
	t.Helper()
	inner := newFakeTUN()
	d := Wrap(inner, peer, nil)
	if read {
		inner.toRead = [][]byte{pkt}
		return readOnce(t, d, 1), d.Stats().Outbound
	}
	buf := make([]byte, len(pkt), len(pkt)+512)
	copy(buf, pkt)
	if _, err := d.Write([][]byte{buf}, 0); err != nil {
		t.Fatal(err)
	}
	return inner.written, d.Stats().Inbound
}

func TestBodiesGolden(t *testing.T) {
	for _, tmpl := range []struct{ name, text string }{
		{"BLF dialog-info NOTIFY", blfNotifyTmpl},
		{"MWI message-summary NOTIFY", mwiNotifyTmpl},
		{"SDP a=ssrc cname", ssrcInviteTmpl},
		{"SDP without Content-Type", noTypeOKTmpl},
	} {
		for _, trip := range bodyTrips {
			t.Run(tmpl.name+"/"+trip.name, func(t *testing.T) {
				sent, c := hop(t, trip.atSender.packet(tmpl.text), trip.sendPeer, true)
				if want := trip.wire.packet(tmpl.text); len(sent) != 1 || !bytes.Equal(sent[0], want) {
					t.Fatalf("sender's node sent\n%q\nwant\n%q\n(counts %+v)", sent, want, c)
				}
				checkPacket(t, sent[0])
				got, c := hop(t, sent[0], trip.recvPeer, false)
				if want := trip.atR.packet(tmpl.text); len(got) != 1 || !bytes.Equal(got[0], want) {
					t.Fatalf("receiver's node wrote\n%q\nwant\n%q\n(counts %+v)", got, want, c)
				}
				checkPacket(t, got[0])
			})
		}
	}
}

// TestEncodedBodyDropped: SDP (or dialog info, or a message summary) under
// gzip cannot be mapped or checked, so it is dropped and counted, from a
// phone and from the peer, even when no literal shows in the compressed
// bytes.
func TestEncodedBodyDropped(t *testing.T) {
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	w.Write([]byte("v=0\r\no=- 1 1 IN IP4 10.0.1.1\r\nc=IN IP4 10.0.1.1\r\n"))
	w.Close()
	msg := func(h hopAt) []byte {
		return []byte("INVITE sip:w@" + h.r + " SIP/2.0\r\nVia: SIP/2.0/UDP " + h.s + ";branch=z9hG4bK-gz\r\n" +
			"From: <sip:a@" + h.s + ">;tag=g\r\nTo: <sip:w@" + h.r + ">\r\nCall-ID: gz1\r\nCSeq: 1 INVITE\r\n" +
			"Content-Type: application/sdp\r\nContent-Encoding: gzip\r\nContent-Length: " + strconv.Itoa(z.Len()) + "\r\n\r\n" + z.String())
	}
	trip := bodyTrips[0]
	for _, tt := range []struct {
		name string
		pkt  []byte
		read bool
		peer uint8
	}{
		{"from a phone", udp4(trip.atSender.s, trip.atSender.r, 5060, 5060, msg(trip.atSender)), true, trip.sendPeer},
		{"from the peer", udp4(trip.wire.s, trip.wire.r, 5060, 5060, msg(trip.wire)), false, trip.recvPeer},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, c := hop(t, tt.pkt, tt.peer, tt.read)
			if len(out) != 0 {
				t.Fatalf("sent %q, want it dropped", out)
			}
			if c.SIPRefused != 1 || c.SIPRefusals["encoded-body"] != 1 {
				t.Errorf("counts %+v, want SIPRefused 1 (encoded-body)", c)
			}
		})
	}
}

// TestLearnSDPWithoutType: the clock table reads the SDP the rewriter
// rewrites, including one sent without a Content-Type, and only what
// Content-Length covers.
func TestLearnSDPWithoutType(t *testing.T) {
	var tb sdpTable
	body := "v=0\r\nc=IN IP4 10.7.2.1\r\nm=audio 20000 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\n"
	sip := parseSIP([]byte("SIP/2.0 200 OK\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body))
	tb.learn(&sip, nil)
	ep := uint64(10<<24|7<<16|2<<8|1)<<16 | 20000
	if got := tb.clock(ep, 96); got != 48000 {
		t.Errorf("clock(96) = %d after SDP without a Content-Type, want 48000", got)
	}
	var past sdpTable
	sip = parseSIP([]byte("SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n" + body))
	past.learn(&sip, nil)
	if got := past.clock(ep, 96); got != 0 {
		t.Errorf("clock(96) = %d from bytes past Content-Length, want 0", got)
	}
}

// opaqueAttrRE matches the dialog-info attributes whose values cross
// unchanged (sipmsg's doc, "Which bodies").
var opaqueAttrRE = regexp.MustCompile(`[ \t\r\n](?:[A-Za-z0-9._-]+:)?(?i:id|call-id|local-tag|remote-tag)[ \t\r\n]*=[ \t\r\n]*("[^"]*"|'[^']*')`)

// bodyLeak is the body half of leavesNoPlanAddress, worked out
// independently of sipmsg's rewriting (only its framing, Parse, is
// shared): it returns a description of the first address literal the map
// would still change in a body of a type the rewriter reads, or of a
// readable body that left encoded; "" if there is none.
func bodyLeak(msg []byte, mapAddr func([4]byte) ([4]byte, bool)) string {
	m, err := sipmsg.Parse(msg)
	if err != nil {
		return ""
	}
	body := m.Body()
	if m.BodyType() != sipmsg.BodyOther && m.Encoded() && len(body) > 0 {
		return "a readable body under a Content-Encoding"
	}
	var spans [][]byte
	switch m.BodyType() {
	case sipmsg.BodySDP:
		for _, line := range bytes.Split(body, []byte("\n")) {
			for _, p := range []string{"o=", "c=", "a=rtcp:", "a=candidate:", "a=remote-candidates:", "a=ssrc:"} {
				if bytes.HasPrefix(line, []byte(p)) {
					spans = append(spans, line[len(p):])
					break
				}
			}
		}
	case sipmsg.BodyMessageSummary:
		spans = [][]byte{body}
	case sipmsg.BodyDialogInfo:
		done := 0
		for _, loc := range opaqueAttrRE.FindAllSubmatchIndex(body, -1) {
			spans = append(spans, body[done:loc[2]])
			done = loc[3]
		}
		spans = append(spans, body[done:])
	}
	for _, s := range spans {
		for _, a := range literals(s) {
			if a == ([4]byte{}) {
				continue
			}
			if b, ok := mapAddr(a); ok && b != a {
				return fmt.Sprintf("%v still to map in %q", netip.AddrFrom4(a), s)
			}
		}
	}
	return ""
}

// literals returns the dotted quads of s that touch no letter, digit, dot,
// '-' or '_' on either side, parsed by netip (which refuses leading zeros).
func literals(s []byte) [][4]byte {
	word := func(c byte) bool {
		return c == '.' || c == '-' || c == '_' || '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'z'
	}
	var out [][4]byte
	for i := 0; i < len(s); {
		if !word(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && word(s[j]) {
			j++
		}
		if a, err := netip.ParseAddr(string(s[i:j])); err == nil && a.Is4() {
			out = append(out, a.As4())
		}
		i = j
	}
	return out
}

// learnBytes is learn for a message in this node's plan.
func (t *sdpTable) learnBytes(msg []byte) {
	sip := parseSIP(msg)
	t.learn(&sip, nil)
}

// TestLearnInbound: a message from the peer is learnt as it came, its
// media address mapped as the rewrite maps it (hold stays 0.0.0.0).
func TestLearnInbound(t *testing.T) {
	var tb sdpTable
	body := "v=0\r\nc=IN IP4 10.255.2.1\r\nm=audio 20000 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\n"
	sip := parseSIP([]byte("SIP/2.0 200 OK\r\nContent-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body))
	tb.learn(&sip, func(a [4]byte) ([4]byte, bool) { return numplan.FromWire(a, bobAtAlice) })
	if got := tb.clock(uint64(10<<24|7<<16|2<<8|1)<<16|20000, 96); got != 48000 {
		t.Errorf("clock(10.7.2.1:20000, 96) = %d, want 48000", got)
	}
}
