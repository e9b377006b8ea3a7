package sipmsg

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestRewriteHostile feeds datagram-sized messages shaped to make a careless
// tokenizer loop, go quadratic or grow its output: each must finish fast,
// grow within MaxGrowth, and map back to the input. A quadratic scan of
// 64 kB takes seconds; the linear one takes well under a millisecond, so
// the limit leaves room for a loaded machine.
func TestRewriteHostile(t *testing.T) {
	const n = 65000
	head := "INVITE sip:b@10.7.1.1 SIP/2.0\r\n"
	tests := []struct {
		name string
		msg  string
	}{
		{"question marks in a URI", head + "Contact: <" + strings.Repeat("?", n) + "\r\n\r\n"},
		{"URI openings and question marks", head + "Contact: " + strings.Repeat("<?", n/2) + "\r\n\r\n"},
		{"user parts", head + "Contact: <" + strings.Repeat("?@", n/2) + "10.0.1.1>\r\n\r\n"},
		{"one long digit run", head + "Via: " + strings.Repeat("1.", n/2) + "\r\n\r\n"},
		{"all literals", head + "Via: " + strings.Repeat("10.0.1.1,", n/9) + "\r\n\r\n"},
		{"folded lines", head + "Via: x" + strings.Repeat("\r\n 10.0.1.1", n/10) + "\r\n\r\n"},
		{"many headers", head + strings.Repeat("v:10.0.1.1\n", n/11) + "\n"},
		{"quotes and escapes", head + "To: " + strings.Repeat(`"\`, n/2) + "\r\n\r\n"},
		{"SDP of literals", head + "c: application/sdp\r\n\r\n" + strings.Repeat("c=10.0.1.1\n", n/11)},
		{"no header end", head + strings.Repeat("v: 10.0.1.1\r\n", n/13)},
		{"empty lines as SDP", head + "c: application/sdp\r\n\r\n" + strings.Repeat("\n", n)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := []byte(tt.msg)
			dst := make([]byte, 0, MaxGrowth(len(msg)))
			start := time.Now()
			out, _, err := Rewrite(dst, msg, swap)
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("Rewrite(%s, %d bytes) took %v", tt.name, len(msg), d)
			}
			if err != nil {
				if !bytes.Equal(out, dst) {
					t.Errorf("Rewrite(%s) error %v but wrote to dst", tt.name, err)
				}
				return
			}
			if &out[:1][0] != &dst[:1][0] {
				t.Errorf("Rewrite(%s) reallocated a MaxGrowth buffer: %d -> %d bytes", tt.name, len(msg), len(out))
			}
			back, _, err := Rewrite(nil, out, swap)
			if err != nil || !bytes.Equal(back, msg) {
				t.Errorf("Rewrite twice of %s: %v, round trip differs", tt.name, err)
			}
		})
	}
}
