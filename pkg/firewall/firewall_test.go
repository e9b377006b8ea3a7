package firewall

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden rulesets in testdata/")

// checkGolden compares a ruleset with testdata/name; -update rewrites it.
// The goldens are the rules as a reviewer reads them: a change to the
// policy shows up as a diff of this text.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("ruleset %s =\n%s\nwant\n%s", name, got, want)
	}
}

func TestPeerRules(t *testing.T) {
	tests := []struct {
		golden string
		peer   Peer
	}{
		{"peer-7-lines-1-2.nft", Peer{Index: 7, Tunnel: "pl7", ToPhones: "veth0", Lines: []int{2, 1}}},
		// A node without lines serves no phone: nothing may come in.
		{"peer-7-no-lines.nft", Peer{Index: 7, Tunnel: "pl7", ToPhones: "veth0"}},
		// The lab benchmark's tunnel without the rewriter: wire form.
		{"peer-7-no-rewrite.nft", Peer{Index: 7, Tunnel: "pl7", ToPhones: "veth0", Lines: []int{2, 1}, NoRewrite: true}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			got := PeerRules(tt.peer)
			checkGolden(t, tt.golden, got)
			checkCommon(t, got)
		})
	}
}

func TestNodeRules(t *testing.T) {
	tests := []struct {
		golden string
		node   Node
	}{
		{"node-default.nft", Node{PhonePort: "eth0", Lines: []int{1, 2}, Peers: []int{9, 7}, VethPrefix: "plv"}},
		{"node-internet.nft", Node{PhonePort: "eth0", Lines: []int{1}, Peers: []int{7}, VethPrefix: "plv", Internet: true}},
		{"node-bare.nft", Node{PhonePort: "eth0", VethPrefix: "plv"}},
		{"node-no-rewrite.nft", Node{PhonePort: "eth0", Lines: []int{1, 2}, Peers: []int{9, 7}, VethPrefix: "plv", NoRewrite: true}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			got := NodeRules(tt.node)
			checkGolden(t, tt.golden, got)
			checkCommon(t, got)
			if masq := strings.Contains(got, "masquerade"); masq != tt.node.Internet {
				t.Errorf("masquerade in rules = %v, want %v (phones.internet)", masq, tt.node.Internet)
			}
		})
	}
}

// TestNoRewriteRules: without the rewriter the rules are the same rules,
// one for one, with the wire plan where ours and the peer's were, so that
// the benchmark's tunnel without the rewriter passes exactly what the one
// with it passes, after as many rules.
func TestNoRewriteRules(t *testing.T) {
	node := Node{PhonePort: "eth0", Lines: []int{1, 2}, Peers: []int{9, 7}, VethPrefix: "plv"}
	wl := strings.Split(NodeRules(node), "\n")
	node.NoRewrite = true
	nl := strings.Split(NodeRules(node), "\n")
	if len(wl) != len(nl) {
		t.Fatalf("node rules: %d lines with the rewriter, %d without", len(wl), len(nl))
	}
	set := ""
	for k := range wl {
		// Toward a peer the local plan is the wire sender and the peer's
		// the wire receiver; back from it, the peer's plan is the wire
		// sender and our phones are the receiver's.
		want := wl[k]
		if f := strings.Fields(want); len(f) == 3 && f[0] == "set" {
			set = f[1]
		}
		switch {
		case strings.Contains(want, "elements") && set == setToPeers:
			want = strings.NewReplacer("10.7.0.0/16", "10.254.0.0/16", "10.9.0.0/16", "10.254.0.0/16").Replace(want)
		case strings.Contains(want, "elements") && set == setFromPeers:
			want = strings.NewReplacer("10.7.0.0/16", "10.255.0.0/16", "10.9.0.0/16", "10.255.0.0/16").Replace(want)
		case strings.Contains(want, "@"+setToPeers):
			want = strings.NewReplacer("10.0.0.0/16", "10.255.0.0/16").Replace(want)
		case strings.Contains(want, "@"+setFromPeers):
			want = strings.NewReplacer("10.0.1.1", "10.254.1.1", "10.0.2.1", "10.254.2.1").Replace(want)
		}
		if nl[k] != want {
			t.Errorf("node rule %d without the rewriter = %q, want %q", k, nl[k], want)
		}
	}
	peer := Peer{Index: 7, Tunnel: "pl7", ToPhones: "veth0", Lines: []int{1, 2}}
	pw := PeerRules(peer)
	peer.NoRewrite = true
	pn := PeerRules(peer)
	if want := strings.NewReplacer("10.7.0.0/16", "10.255.0.0/16", "10.0.1.1", "10.254.1.1", "10.0.2.1", "10.254.2.1").Replace(pw); pn != want {
		t.Errorf("peer rules without the rewriter =\n%s\nwant\n%s", pn, want)
	}
}

// checkCommon holds for every ruleset, whatever the goldens say: it
// replaces the table atomically and forwards nothing by default.
func checkCommon(t *testing.T, rules string) {
	t.Helper()
	if !strings.HasPrefix(rules, "table inet peerline\ndelete table inet peerline\n") {
		t.Errorf("ruleset does not replace the table in one transaction:\n%s", rules)
	}
	if !strings.Contains(rules, "hook forward priority filter; policy drop;") {
		t.Errorf("ruleset does not drop forwarded packets by default:\n%s", rules)
	}
	// The mask of the old rule let 10.0.0.1 and 10.0.s.5 through.
	if strings.Contains(rules, "&") {
		t.Errorf("ruleset matches addresses by mask; only exact phone addresses may be reached:\n%s", rules)
	}
}

// TestNodeChange: a change of peers alone is a transaction of set
// elements, one add or delete per set per peer; anything else is a reload.
func TestNodeChange(t *testing.T) {
	base := Node{PhonePort: "eth0", Lines: []int{1, 2}, Peers: []int{9, 7}, VethPrefix: "plv"}
	with := func(f func(*Node)) Node { n := base; n.Peers = slices.Clone(base.Peers); f(&n); return n }
	for _, tt := range []struct {
		name     string
		from, to Node
		want     string
		ok       bool
	}{
		{"same", base, base, "", true},
		{"same, other order", base, with(func(n *Node) { n.Peers = []int{7, 9} }), "", true},
		{"add", base, with(func(n *Node) { n.Peers = append(n.Peers, 12) }),
			"add element inet peerline to_peers { \"plv12\" . 10.12.0.0/16 }\n" +
				"add element inet peerline from_peers { \"plv12\" . 10.12.0.0/16 }\n", true},
		{"remove and add", base, with(func(n *Node) { n.Peers = []int{9, 3} }),
			"delete element inet peerline to_peers { \"plv7\" . 10.7.0.0/16 }\n" +
				"delete element inet peerline from_peers { \"plv7\" . 10.7.0.0/16 }\n" +
				"add element inet peerline to_peers { \"plv3\" . 10.3.0.0/16 }\n" +
				"add element inet peerline from_peers { \"plv3\" . 10.3.0.0/16 }\n", true},
		{"from none", with(func(n *Node) { n.Peers = nil }), with(func(n *Node) { n.Peers = []int{7} }),
			"add element inet peerline to_peers { \"plv7\" . 10.7.0.0/16 }\n" +
				"add element inet peerline from_peers { \"plv7\" . 10.7.0.0/16 }\n", true},
		{"no rewrite", with(func(n *Node) { n.NoRewrite = true }), with(func(n *Node) { n.NoRewrite = true; n.Peers = []int{9} }),
			"delete element inet peerline to_peers { \"plv7\" . 10.254.0.0/16 }\n" +
				"delete element inet peerline from_peers { \"plv7\" . 10.255.0.0/16 }\n", true},
		{"lines", base, with(func(n *Node) { n.Lines = []int{1}; n.Peers = append(n.Peers, 12) }), "", false},
		{"internet", base, with(func(n *Node) { n.Internet = true }), "", false},
		{"rewriter", base, with(func(n *Node) { n.NoRewrite = true }), "", false},
		{"phone port", base, with(func(n *Node) { n.PhonePort = "eth1" }), "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := NodeChange(tt.from, tt.to)
			if got != tt.want || ok != tt.ok {
				t.Errorf("NodeChange = %q, %v, want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestPhoneSet(t *testing.T) {
	for _, tt := range []struct {
		lines []int
		node  uint8
		want  string
	}{
		{nil, 0, ""},
		{[]int{0, 255, -1}, 0, ""},
		{[]int{3, 1, 254}, 0, "{ 10.0.1.1, 10.0.3.1, 10.0.254.1 }"},
		{[]int{3, 1}, 254, "{ 10.254.1.1, 10.254.3.1 }"},
	} {
		if got := phoneSet(tt.lines, tt.node); got != tt.want {
			t.Errorf("phoneSet(%v, %d) = %q, want %q", tt.lines, tt.node, got, tt.want)
		}
	}
}

func inPlace(ns string, fn func() error) error { return fn() }

// fakeNFT writes a shell script standing in for nft.
func fakeNFT(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "nft")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadTextReportsNFTErrors(t *testing.T) {
	nft := fakeNFT(t, "echo 'Error: syntax error' >&2; exit 1\n")
	err := Loader{Do: inPlace, NFT: nft}.loadText("pl-7", "table inet peerline")
	if err == nil || !strings.Contains(err.Error(), "namespace pl-7") || !strings.Contains(err.Error(), "syntax error") {
		t.Errorf("loadText with a failing nft = %v, want an error naming the namespace and nft's message", err)
	}
	err = Loader{Do: inPlace, NFT: nft}.loadText("", "table inet peerline")
	if err == nil || !strings.Contains(err.Error(), "node's namespace") {
		t.Errorf("loadText in the node's namespace with a failing nft = %v, want an error naming it", err)
	}
}

func TestLoadTextPassesRules(t *testing.T) {
	dir := t.TempDir()
	nft := fakeNFT(t, "echo \"$@\" > "+dir+"/args; cat > "+dir+"/stdin\n")
	if err := (Loader{Do: inPlace, NFT: nft}).loadText("pl-7", "RULES\n"); err != nil {
		t.Fatal(err)
	}
	args, _ := os.ReadFile(filepath.Join(dir, "args"))
	stdin, _ := os.ReadFile(filepath.Join(dir, "stdin"))
	if string(args) != "-f -\n" || string(stdin) != "RULES\n" {
		t.Errorf("nft ran with args %q stdin %q, want \"-f -\" and the rules", args, stdin)
	}
}

// TestLoadErrorsSayWhatToDo: a load that the kernel (here, entering the
// namespace) refuses names the namespace, says the table there is as it
// was, and what to do about the cause.
func TestLoadErrorsSayWhatToDo(t *testing.T) {
	node := Node{PhonePort: "eth0", Lines: []int{1}, Peers: []int{7}, VethPrefix: "plv"}
	for _, tt := range []struct {
		err  error
		want string
	}{
		{syscall.EPERM, "needs root"},
		{refusedError{syscall.EOPNOTSUPP}, "Linux 5.6"},
		{refusedError{syscall.EBUSY}, "next check"},
		{fmt.Errorf("entering namespace pl-7: %w", syscall.ENOENT), "makes the namespace again"},
		{buildError{errors.New("interface name is too long")}, "report it with the log"},
	} {
		failing := Loader{Do: func(string, func() error) error { return tt.err }}
		for _, r := range []Ruleset{node, Peer{Index: 7, Tunnel: "pl7", ToPhones: "veth0", Lines: []int{1}}} {
			err := failing.Load("pl-7", r)
			if !errors.Is(err, tt.err) {
				t.Errorf("Load(%T) = %v, want it to wrap %v", r, err, tt.err)
				continue
			}
			for _, w := range []string{"namespace pl-7", "unchanged", tt.want} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load(%T) = %q, want it to say %q", r, err, w)
				}
			}
		}
		if errors.Is(tt.err, syscall.ENOENT) {
			continue // nothing to delete where there is no namespace
		}
		if err := failing.Delete(""); !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Delete = %v, want %v and %q", err, tt.err, tt.want)
		}
	}
	gone := Loader{Do: func(string, func() error) error {
		return refusedError{fmt.Errorf("netlink receive: %w", syscall.ENOENT)}
	}}
	if err := gone.Delete("pl-7"); err != nil {
		t.Errorf("Delete of a missing table = %v, want nil", err)
	}
}

// TestChangeNeedsPeersOnly: Change refuses two tables that differ in more
// than their peers before it sends anything, and sends nothing when the
// peers are the same.
func TestChangeNeedsPeersOnly(t *testing.T) {
	sent := false
	l := Loader{Do: func(string, func() error) error { sent = true; return nil }}
	a := Node{PhonePort: "eth0", Lines: []int{1}, Peers: []int{7}, VethPrefix: "plv"}
	b := a
	b.Lines = []int{1, 2}
	if err := l.Change("", a, b); !errors.Is(err, ErrNotPeersOnly) || sent {
		t.Errorf("Change of lines = %v (sent %v), want ErrNotPeersOnly and nothing sent", err, sent)
	}
	c := a
	c.Peers = []int{7}
	if err := l.Change("", a, c); err != nil || sent {
		t.Errorf("Change of nothing = %v (sent %v), want nil and nothing sent", err, sent)
	}
}

func TestList(t *testing.T) {
	missing := fakeNFT(t, "echo 'Error: No such file or directory; did you mean table ‘x’?' >&2; exit 1\n")
	if _, err := (Loader{Do: inPlace, NFT: missing}).List("pl-7"); !errors.Is(err, ErrNoTable) {
		t.Errorf("List of a missing table = %v, want ErrNoTable", err)
	}
	present := fakeNFT(t, "echo \"listing $*\"\n")
	if got, err := (Loader{Do: inPlace, NFT: present}).List(""); err != nil || got != "listing list table inet peerline\n" {
		t.Errorf("List = %q, %v, want nft's output", got, err)
	}
	broken := fakeNFT(t, "echo 'Error: Operation not permitted' >&2; exit 1\n")
	if _, err := (Loader{Do: inPlace, NFT: broken}).List(""); err == nil || errors.Is(err, ErrNoTable) {
		t.Errorf("List with a failing nft = %v, want an error", err)
	}
}

func TestListWithoutNFT(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	ran := false
	_, err := Loader{Do: func(string, func() error) error { ran = true; return nil }}.List("pl-7")
	if !errors.Is(err, ErrNoNFT) || ran {
		t.Errorf("List without nft = %v (ran %v), want ErrNoNFT before anything runs", err, ran)
	}
}
