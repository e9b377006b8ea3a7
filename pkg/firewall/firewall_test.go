package firewall

import (
	"errors"
	"strings"
	"testing"
)

func TestPeerRules(t *testing.T) {
	got := PeerRules("pl7", "veth0")
	const want = `table inet peerline
delete table inet peerline
table inet peerline {
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "veth0" accept
		iifname "pl7" oifname "veth0" ip daddr & 255.255.0.3 == 10.0.0.1 meta l4proto udp accept
		iifname "pl7" oifname "veth0" ip daddr & 255.255.0.3 == 10.0.0.1 icmp type echo-request accept
	}
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		iifname "lo" accept
		iifname "veth0" accept
	}
}
`
	if got != want {
		t.Errorf("PeerRules(pl7, veth0) =\n%s\nwant\n%s", got, want)
	}
}

func TestLoadReportsNFTErrors(t *testing.T) {
	inPlace := func(ns string, fn func() error) error { return fn() }
	err := Loader{Do: inPlace, NFT: "/bin/false"}.Load("pl-7", "table inet peerline")
	if err == nil || !strings.Contains(err.Error(), "namespace pl-7") {
		t.Errorf("Load with a failing nft = %v, want an error naming the namespace", err)
	}
}

func TestLoadWithoutNFT(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	ran := false
	err := Loader{Do: func(string, func() error) error { ran = true; return nil }}.Load("pl-7", "")
	if !errors.Is(err, ErrNoNFT) || ran {
		t.Errorf("Load without nft = %v (ran %v), want ErrNoNFT before anything runs", err, ran)
	}
}
