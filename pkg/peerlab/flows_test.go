package peerlab

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/lab"
)

// crlf turns a readable message into wire form.
func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

func TestAddrProblems(t *testing.T) {
	own := netip.MustParseAddr("10.0.1.1")
	const peerNode = 4
	tests := []struct {
		name string
		msg  string
		want []string // substrings, one per expected problem, in order
	}{
		{
			name: "request mapped right",
			msg: "INVITE sip:b@10.0.1.1:5070 SIP/2.0\nVia: SIP/2.0/UDP 10.4.1.1:5070;branch=x\n" +
				"From: <sip:a@10.4.1.1>;tag=1\nTo: <sip:b@10.0.1.1>\nCall-ID: 1@10.0.1.1\n" +
				"Contact: <sip:a@10.4.1.1:5070;maddr=10.4.1.1>\nRefer-To: <sip:c@10.4.2.1>\n\n" +
				"o=- 1 1 IN IP4 10.4.1.1\nc=IN IP4 10.4.1.1\na=rtcp:16001 IN IP4 10.4.1.1\n",
		},
		{
			name: "hold address left alone",
			msg:  "INVITE sip:b@10.0.1.1 SIP/2.0\nv: SIP/2.0/UDP 10.4.1.1\n\no=- 1 1 IN IP4 10.4.1.1\nc=IN IP4 0.0.0.0\n",
		},
		{
			name: "sender's local form leaked",
			msg:  "INVITE sip:b@10.0.1.1 SIP/2.0\nVia: SIP/2.0/UDP 10.0.1.1:5060\nm: <sip:a@10.0.1.1>\n\nc=IN IP4 10.0.1.1\n",
			want: []string{"via has 10.0.1.1", "contact has 10.0.1.1", "c has 10.0.1.1"},
		},
		{
			name: "wire form leaked",
			msg:  "INVITE sip:b@10.254.1.1 SIP/2.0\nVia: SIP/2.0/UDP 10.255.1.1\n\na=rtcp:1 IN IP4 10.255.1.1\n",
			want: []string{"request-uri has 10.254.1.1", "via has 10.255.1.1", "a=rtcp has 10.255.1.1"},
		},
		{
			name: "response: own Via and From, peer To and Contact",
			msg:  "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 10.0.1.1\nFrom: <sip:a@10.0.1.1>\nTo: <sip:b@10.4.1.1>\nContact: <sip:b@10.4.1.1>\n\n",
		},
		{
			name: "response: Via not restored",
			msg:  "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 10.7.1.1\nTo: <sip:b@10.0.1.1>\n\n",
			want: []string{"via has 10.7.1.1", "to has 10.0.1.1"},
		},
		{
			name: "BLF and MWI bodies mapped right",
			msg: "NOTIFY sip:w@10.0.1.1 SIP/2.0\nContent-Type: application/dialog-info+xml\n\n" +
				"<dialog-info entity=\"sip:b@10.4.1.1\">\n<dialog id=\"d@10.0.1.1\" call-id=\"c@10.0.1.1\">\n" +
				"<local><identity>sip:b@10.4.1.1</identity><target uri=\"sip:b@10.4.1.1\"/></local>\n" +
				"Message-Account: sip:*97@10.4.1.1\na=ssrc:1 cname:b@10.4.1.1\n",
		},
		{
			name: "BLF and MWI bodies leaked",
			msg: "NOTIFY sip:w@10.0.1.1 SIP/2.0\nc: application/dialog-info+xml\n\n" +
				"<dialog-info entity=\"sip:b@10.255.1.1\">\n<remote><target uri=\"sip:c@10.0.2.1\"/></remote>\n" +
				"Message-Account: sip:*97@10.0.1.1\na=ssrc:1 cname:b@10.0.1.1\n",
			want: []string{"dialog-info has 10.255.1.1", "dialog-info has 10.0.2.1", "message-account has 10.0.1.1", "a=ssrc has 10.0.1.1"},
		},
		{
			name: "other fields are not ours",
			msg:  "OPTIONS sip:b@10.0.1.1 SIP/2.0\nCall-Info: <http://10.0.1.1/x>\nUser-Agent: 10.0.0.9\n\n",
		},
	}
	for _, tt := range tests {
		got := AddrProblems(crlf(tt.msg), own, peerNode)
		if len(got) != len(tt.want) {
			t.Errorf("%s: AddrProblems = %q, want %d problems %q", tt.name, got, len(tt.want), tt.want)
			continue
		}
		for i, w := range tt.want {
			if !strings.Contains(got[i], w) {
				t.Errorf("%s: problem %d = %q, want it to say %q", tt.name, i, got[i], w)
			}
		}
	}
}

func TestContentLengthProblem(t *testing.T) {
	tests := []struct {
		msg  string
		want string
	}{
		{"INVITE x SIP/2.0\nContent-Length: 5\n\nv=0\n", ""},
		{"INVITE x SIP/2.0\nl:   5\n\nv=0\n", ""},
		{"INVITE x SIP/2.0\nContent-Length: 6\n\nv=0\n", "body has 5 bytes"},
		{"INVITE x SIP/2.0\nContent-Length: x\n\n", "unreadable"},
		{"INVITE x SIP/2.0\n\n", "no Content-Length"},
		{"INVITE x SIP/2.0\nContent-Length: 0\n", "no empty line"},
	}
	for _, tt := range tests {
		got := ContentLengthProblem(crlf(tt.msg))
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("ContentLengthProblem(%q) = %q, want %q", tt.msg, got, tt.want)
		}
	}
}

func TestGolden(t *testing.T) {
	at := time.Unix(0, 0)
	src := netip.MustParseAddrPort("10.4.1.1:5070")
	msg := crlf("OPTIONS sip:b@10.0.1.1 SIP/2.0\nVia: SIP/2.0/UDP 10.4.1.1;branch=z9-1\n\n")
	got := Golden("t", []Received{
		{At: "B", Datagram: lab.Datagram{Time: at, Src: src, Fragments: 1, Payload: msg}},
		{At: "B", Datagram: lab.Datagram{Time: at, Src: src, Fragments: 1, Payload: msg}}, // a retransmission
		{At: "A", Datagram: lab.Datagram{Time: at, Src: src, Fragments: 3, Payload: crlf("SIP/2.0 200 OK\n\n")}},
	})
	want := "# t\n\n=== B received from 10.4.1.1:5070\nOPTIONS sip:b@10.0.1.1 SIP/2.0\nVia: SIP/2.0/UDP 10.4.1.1;branch=<branch>\n\n" +
		"\n=== A received from 10.4.1.1:5070, in 3 IP fragments\nSIP/2.0 200 OK\n\n"
	if got != want {
		t.Errorf("Golden = %q\nwant %q", got, want)
	}
}

func TestSplitGSO(t *testing.T) {
	rtpPkt := func(seq byte, payload string) []byte {
		return append([]byte{0x80, 0x65, 0x1f, seq, 0, 0, 0x33, 0xe0, 0x0e, 0x05, 0x38, 0x4e}, payload...)
	}
	sip1 := crlf("SIP/2.0 100 Trying\nContent-Length: 0\n\n")
	sip2 := crlf("SIP/2.0 180 Ringing\nl: 3\n\nabc")
	badCL := crlf("SIP/2.0 100 Trying\nContent-Length: 2\n\n")
	tests := []struct {
		name string
		in   []byte
		want [][]byte
	}{
		{"one RTP packet", rtpPkt(1, "abcd"), [][]byte{rtpPkt(1, "abcd")}},
		{"two RTP packets", append(rtpPkt(1, "abcd"), rtpPkt(2, "efgh")...), [][]byte{rtpPkt(1, "abcd"), rtpPkt(2, "efgh")}},
		{"shorter last RTP packet", append(append(rtpPkt(1, "abcd"), rtpPkt(2, "efgh")...), rtpPkt(3, "ij")...),
			[][]byte{rtpPkt(1, "abcd"), rtpPkt(2, "efgh"), rtpPkt(3, "ij")}},
		{"two SIP messages", append(append([]byte{}, sip1...), sip2...), [][]byte{sip1, sip2}},
		{"wrong Content-Length stays whole", append(append([]byte{}, badCL...), sip2...), [][]byte{append(append([]byte{}, badCL...), sip2...)}},
		{"not RTP", []byte("hello, world, hello, world"), [][]byte{[]byte("hello, world, hello, world")}},
	}
	for _, tt := range tests {
		var got [][]byte
		for _, d := range SplitGSO(lab.Datagram{Payload: tt.in}) {
			got = append(got, d.Payload)
		}
		if len(got) != len(tt.want) {
			t.Errorf("%s: SplitGSO gave %d parts %q, want %q", tt.name, len(got), got, tt.want)
			continue
		}
		for i := range got {
			if string(got[i]) != string(tt.want[i]) {
				t.Errorf("%s: part %d = %q, want %q", tt.name, i, got[i], tt.want[i])
			}
		}
	}
}

// FuzzSplitGSO checks that splitting a captured datagram never loses or
// invents a byte and that the field checks read any capture without
// panicking.
func FuzzSplitGSO(f *testing.F) {
	f.Add(crlf("SIP/2.0 100 Trying\nContent-Length: 0\n\nSIP/2.0 180 Ringing\nl: 3\n\nabc"))
	f.Add([]byte{0x80, 0x65, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4, 9, 0x80, 0x65, 0, 2, 0, 0, 0, 0, 1, 2, 3, 4, 9})
	f.Add(crlf("INVITE sip:b@10.0.1.1 SIP/2.0\nVia: SIP/2.0/UDP 10.4.1.1\nl: 99999999999\n\nc=IN IP4 10.0.1.1\n"))
	own := netip.MustParseAddr("10.0.1.1")
	f.Fuzz(func(t *testing.T, b []byte) {
		var joined []byte
		for _, d := range SplitGSO(lab.Datagram{Payload: b}) {
			if len(d.Payload) == 0 && len(b) > 0 {
				t.Fatalf("SplitGSO(%q) made an empty part", b)
			}
			joined = append(joined, d.Payload...)
			AddrProblems(d.Payload, own, 4)
			ContentLengthProblem(d.Payload)
		}
		if string(joined) != string(b) {
			t.Fatalf("SplitGSO(%q) parts join to %q", b, joined)
		}
	})
}
