package firewall

import (
	"slices"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// TestNetlinkRefusesLongNames: an interface name the kernel would cut to
// 15 bytes (and so match another interface) is refused before anything is
// sent, as nft refuses it, and the error says the rules could not be built
// (not that the namespace is made again, as for one that could not be
// entered).
func TestNetlinkRefusesLongNames(t *testing.T) {
	batches := recordBatches(t)
	l := Loader{Do: inPlace}
	for _, r := range []Ruleset{
		Peer{Index: 7, Tunnel: "a-tunnel-name-too-long", ToPhones: "veth0", Lines: []int{1}},
		Node{PhonePort: "eth0", VethPrefix: "a-long-prefix-v", Peers: []int{7}},
	} {
		err := l.Load("", r)
		if err == nil || !strings.Contains(err.Error(), "longer than 15 bytes") {
			t.Errorf("Load(%+v) = %v, want a refused name", r, err)
			continue
		}
		if !strings.Contains(err.Error(), "could not be built") || strings.Contains(err.Error(), "makes the namespace again") {
			t.Errorf("Load(%+v) = %q, want it to say the rules could not be built, without the namespace's hint", r, err)
		}
	}
	if len(*batches) != 0 {
		t.Errorf("refused names sent %d batches, want none", len(*batches))
	}
}

// TestLoadRefusesUnknownRuleset: a *Peer, a *Node or nil is a Ruleset
// too, but has no rules the builder knows; loading one fails before
// anything is sent, rather than leaving an empty table that filters
// nothing.
func TestLoadRefusesUnknownRuleset(t *testing.T) {
	batches := recordBatches(t)
	l := Loader{Do: inPlace}
	p := Peer{Index: 7, Tunnel: "pl7", ToPhones: "veth0", Lines: []int{1}}
	n := Node{PhonePort: "eth0", Lines: []int{1}, Peers: []int{7}, VethPrefix: "plv"}
	for _, r := range []Ruleset{&p, &n, nil} {
		err := l.Load("pl-7", r)
		if err == nil || !strings.Contains(err.Error(), "unknown ruleset") || !strings.Contains(err.Error(), "report it") {
			t.Errorf("Load(%T) = %v, want an unknown ruleset to report", r, err)
		}
	}
	if len(*batches) != 0 {
		t.Errorf("unknown rulesets sent %d batches, want none: %v", len(*batches), *batches)
	}
}

// recordBatches makes the Loader's batches go to a recorder for the test:
// each SendMessages call (one batch) as the message types it held.
func recordBatches(t *testing.T) *[][]netlink.HeaderType {
	var batches [][]netlink.HeaderType
	testDial = func(req []netlink.Message) ([]netlink.Message, error) {
		if req == nil {
			return nil, nil // the acknowledgements: none to wait for
		}
		var types []netlink.HeaderType
		for _, m := range req {
			types = append(types, m.Header.Type)
		}
		batches = append(batches, types)
		return req, nil
	}
	t.Cleanup(func() { testDial = nil })
	return &batches
}

const (
	batchBegin = unix.NFNL_MSG_BATCH_BEGIN
	batchEnd   = unix.NFNL_MSG_BATCH_END
)

func nftMsg(m int) netlink.HeaderType { return netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | m) }

// textRules counts the rules of an nft text, the lines of its chains
// after their "type" line.
func textRules(rules string) int {
	n, inChain := 0, false
	for line := range strings.Lines(rules) {
		switch {
		case strings.HasPrefix(line, "\tchain "):
			inChain = true
		case strings.HasPrefix(line, "\tset "), line == "\t}\n":
			inChain = false
		case inChain && strings.HasPrefix(line, "\t\t") && !strings.HasPrefix(line, "\t\ttype "):
			n++
		}
	}
	return n
}

// TestLoadIsOneBatch: a load is one batch (one transaction for the
// kernel) that declares, deletes and makes the table again, with a rule
// message for each rule of the text; a change of peers is one batch of
// set elements only. Without root: the messages go to a recorder.
func TestLoadIsOneBatch(t *testing.T) {
	batches := recordBatches(t)
	l := Loader{Do: inPlace}
	for _, r := range []Ruleset{
		Peer{Index: 7, Tunnel: "pl7", ToPhones: "veth0", Lines: []int{1, 2}},
		Peer{Index: 7, Tunnel: "pl7", ToPhones: "veth0"},
		Node{PhonePort: "eth0", Lines: []int{1, 2}, Peers: many(253), VethPrefix: "plv", Internet: true},
	} {
		*batches = nil
		if err := l.Load("pl-7", r); err != nil {
			t.Fatal(err)
		}
		if len(*batches) != 1 {
			t.Fatalf("Load(%T) sent %d batches, want 1", r, len(*batches))
		}
		b := (*batches)[0]
		want := []netlink.HeaderType{batchBegin, nftMsg(unix.NFT_MSG_NEWTABLE), nftMsg(unix.NFT_MSG_DELTABLE), nftMsg(unix.NFT_MSG_NEWTABLE)}
		if len(b) < 5 || !slices.Equal(b[:4], want) || b[len(b)-1] != batchEnd {
			t.Errorf("Load(%T) batch = %v, want it to start %v and end with %v", r, b, want, batchEnd)
		}
		if got, want := countType(b, nftMsg(unix.NFT_MSG_NEWRULE)), textRules(r.Rules()); got != want {
			t.Errorf("Load(%T) sent %d rules, the text has %d:\n%s", r, got, want, r.Rules())
		}
	}

	*batches = nil
	node := func(peers ...int) Node {
		return Node{PhonePort: "eth0", Lines: []int{1}, Peers: peers, VethPrefix: "plv"}
	}
	if err := l.Change("", node(many(252)...), node(2, 253)); err != nil {
		t.Fatal(err)
	}
	if len(*batches) != 1 {
		t.Fatalf("Change sent %d batches, want 1", len(*batches))
	}
	b := (*batches)[0]
	// 250 deleted from two sets, in messages of up to elementsPerMessage,
	// then one added to each.
	dels, adds := 2*((250+elementsPerMessage-1)/elementsPerMessage), 2
	if got := countType(b, nftMsg(unix.NFT_MSG_DELSETELEM)); got != dels {
		t.Errorf("Change sent %d element deletions, want %d", got, dels)
	}
	if got := countType(b, nftMsg(unix.NFT_MSG_NEWSETELEM)); got != adds {
		t.Errorf("Change sent %d element additions, want %d", got, adds)
	}
	if len(b) != dels+adds+2 {
		t.Errorf("Change batch = %v, want only set elements between begin and end", b)
	}
}

func countType(b []netlink.HeaderType, typ netlink.HeaderType) int {
	n := 0
	for _, t := range b {
		if t == typ {
			n++
		}
	}
	return n
}

func many(n int) []int {
	peers := make([]int, n)
	for k := range peers {
		peers[k] = k + 1
	}
	return peers
}
