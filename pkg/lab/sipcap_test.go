package lab

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNormalizeSIP(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{
			name: "identifiers",
			in: "INVITE sip:b@10.0.1.1:5070 SIP/2.0\r\n" +
				"Via: SIP/2.0/UDP 10.4.1.1:5070;branch=z9hG4bK-123-1-0;rport\r\n" +
				"From: <sip:a@10.4.1.1>;tag=123SIPpTag001\r\n" +
				"To: <sip:b@10.0.1.1>;tag=abc\r\n" +
				"Call-ID: 1-123@10.0.1.1\r\n\r\n" +
				"o=uac 53655765 2353687637 IN IP4 10.4.1.1\r\n",
			want: "INVITE sip:b@10.0.1.1:5070 SIP/2.0\n" +
				"Via: SIP/2.0/UDP 10.4.1.1:5070;branch=<branch>;rport\n" +
				"From: <sip:a@10.4.1.1>;tag=<tag>\n" +
				"To: <sip:b@10.0.1.1>;tag=<tag>\n" +
				"Call-ID: <call-id>\n\n" +
				"o=uac <sess-id> <sess-version> IN IP4 10.4.1.1\n",
		},
		{
			name: "compact call-id and date",
			in:   "SIP/2.0 200 OK\r\ni:  x@y\r\nDate: Mon, 23 Nov 2026 03:00:00 GMT\r\n\r\n",
			want: "SIP/2.0 200 OK\ni:  <call-id>\nDate: <Date>\n\n",
		},
		{
			name: "addresses stay",
			in:   "c=IN IP4 0.0.0.0\r\na=rtcp:16001 IN IP4 10.7.1.1\r\n",
			want: "c=IN IP4 0.0.0.0\na=rtcp:16001 IN IP4 10.7.1.1\n",
		},
	}
	for _, tt := range tests {
		if got := NormalizeSIP([]byte(tt.in)); got != tt.want {
			t.Errorf("%s: NormalizeSIP(%q) = %q, want %q", tt.name, tt.in, got, tt.want)
		}
	}
}

func TestAddressLiterals(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"sip:a@10.4.1.1:5070;maddr=10.4.1.1", []string{"10.4.1.1", "10.4.1.1"}},
		{"IN IP4 0.0.0.0", []string{"0.0.0.0"}},
		{"10.0.1.1.5 and 1.2.3", nil},
		{"v=0", nil},
	}
	for _, tt := range tests {
		var got []string
		for _, a := range AddressLiterals([]byte(tt.in)) {
			got = append(got, a.String())
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("AddressLiterals(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestIsSIP(t *testing.T) {
	for in, want := range map[string]bool{
		"INVITE sip:b@10.0.1.1 SIP/2.0\r\n": true,
		"SIP/2.0 180 Ringing\r\n":           true,
		"\x80\x00\x01\x02":                  false,
		"GET / HTTP/1.1\r\n":                false,
	} {
		if got := IsSIP([]byte(in)); got != want {
			t.Errorf("IsSIP(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestSIPpArgs(t *testing.T) {
	got := strings.Join(SIPpArgs(SIPpOpts{
		Scenario: "/s/x_uac.xml", Addr: "10.0.1.1", Port: 5070, MediaPort: 16000,
		Remote: "10.7.1.1:5070", Service: "b", Keys: map[string]string{"z": "1", "a": "2"},
		Timeout: 15 * time.Second, RecvTimeout: 3 * time.Second,
	}, "/d/err", "/d/msg"), " ")
	want := "sipp -sf /s/x_uac.xml -i 10.0.1.1 -mi 10.0.1.1 -p 5070 -m 1 -l 1 -nostdin -timeout 15s -timeout_error " +
		"-recv_timeout 3000 -trace_err -error_file /d/err -trace_msg -message_file /d/msg -mp 16000 -s b -key a 2 -key z 1 10.7.1.1:5070"
	if got != want {
		t.Errorf("SIPpArgs = %q\nwant %q", got, want)
	}
	def := strings.Join(SIPpArgs(SIPpOpts{Scenario: "s.xml", Addr: "10.0.1.1"}, "e", "m"), " ")
	if !strings.Contains(def, "-p 5060 ") || !strings.Contains(def, "-timeout 20s ") || strings.Contains(def, "-mp") {
		t.Errorf("SIPpArgs defaults = %q, want port 5060, 20 s and no -mp", def)
	}
}
