package wgtunnel

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
)

func TestUAPIConfig(t *testing.T) {
	var priv, pub nodekey.Key
	priv[0], pub[0] = 1, 2
	got := uapiConfig(Config{
		PrivateKey: priv,
		Peer: Peer{
			PublicKey:  pub,
			Endpoint:   netip.MustParseAddrPort("198.51.100.2:51824"),
			AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.254.0.0/16"), netip.MustParsePrefix("10.255.0.0/16")},
			Keepalive:  25 * time.Second,
		},
	})
	want := "private_key=01" + strings.Repeat("00", 31) + "\n" +
		"replace_peers=true\n" +
		"public_key=02" + strings.Repeat("00", 31) + "\n" +
		"endpoint=198.51.100.2:51824\n" +
		"persistent_keepalive_interval=25\n" +
		"replace_allowed_ips=true\n" +
		"allowed_ip=10.254.0.0/16\n" +
		"allowed_ip=10.255.0.0/16\n"
	if got != want {
		t.Errorf("uapiConfig() =\n%s\nwant\n%s", got, want)
	}
}

func TestParseStatus(t *testing.T) {
	st := parseStatus("private_key=00\npublic_key=01\nendpoint=198.51.100.2:51824\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\nrx_bytes=100\ntx_bytes=200\nerrno=0\n")
	if st.Endpoint != "198.51.100.2:51824" || st.RxBytes != 100 || st.TxBytes != 200 || !st.LastHandshake.Equal(time.Unix(1700000000, 5)) {
		t.Errorf("parseStatus() = %+v", st)
	}
	if st := parseStatus("last_handshake_time_sec=0\nlast_handshake_time_nsec=0\n"); !st.LastHandshake.IsZero() {
		t.Errorf("no handshake yet parsed as %v, want zero time", st.LastHandshake)
	}
	if st := parseStatus("endpoint=192.0.2.1:1\r\nrx_bytes=7"); st.Endpoint != "192.0.2.1:1" || st.RxBytes != 7 {
		t.Errorf("CRLF and no final newline: %+v", st)
	}
	// The path manager reads every awake tunnel's status every few seconds.
	get := "private_key=00\npublic_key=01\nendpoint=198.51.100.2:51824\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\nrx_bytes=100\ntx_bytes=200\nerrno=0\n"
	if n := testing.AllocsPerRun(100, func() { parseStatus(get) }); n != 0 {
		t.Errorf("parseStatus allocates %v times, want 0", n)
	}
}

func TestInitiatesFirst(t *testing.T) {
	var a, b nodekey.Key
	a[0], b[0] = 1, 2
	if !initiatesFirst(a, b) || initiatesFirst(b, a) {
		t.Errorf("initiatesFirst: want exactly the smaller key to start")
	}
	if initiatesFirst(a, a) {
		t.Errorf("initiatesFirst(a, a) = true; a node paired with itself must not race itself")
	}
}
