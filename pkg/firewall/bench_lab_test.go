//go:build linux && lab

package firewall

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
)

// The firewall's loads, over netlink and with nft -f, side by side. The
// daemon loads over netlink; the text path is what it ran before and the
// reference the tests hold the messages to.

// benchPeer is a peer table as a node with two lines has it.
var benchPeer = Peer{Index: 7, Tunnel: "pl7", ToPhones: "veth0", Lines: []int{1, 2}}

// benchNode is a node table of n peers, 1..n.
func benchNode(n int) Node {
	return Node{PhonePort: "eth0", Lines: []int{1, 2}, Peers: many(n), VethPrefix: "plv"}
}

// BenchmarkNodeAddOne is what adding one peer to a node with 252 and
// removing it again costs: the whole table loaded again, or one element
// per set added and deleted in place; each over netlink and with nft.
func BenchmarkNodeAddOne(b *testing.B) {
	labtest.RequireRoot(b)
	labtest.RequireTools(b, "nft")
	loader := loaderIn(benchHost(b))
	b.Run("reload/netlink", func(b *testing.B) {
		for b.Loop() {
			must(b, loader.Load("", benchNode(253)))
		}
	})
	b.Run("reload/text", func(b *testing.B) {
		rules := benchNode(253).Rules()
		for b.Loop() {
			must(b, loader.loadText("", rules))
		}
	})
	b.Run("element/netlink", func(b *testing.B) {
		must(b, loader.Load("", benchNode(252)))
		for b.Loop() {
			must(b, loader.Change("", benchNode(252), benchNode(253)))
			must(b, loader.Change("", benchNode(253), benchNode(252)))
		}
	})
	b.Run("element/text", func(b *testing.B) {
		must(b, loader.Load("", benchNode(252)))
		add, _ := NodeChange(benchNode(252), benchNode(253))
		remove, _ := NodeChange(benchNode(253), benchNode(252))
		for b.Loop() {
			must(b, loader.loadText("", add))
			must(b, loader.loadText("", remove))
		}
	})
}

// BenchmarkPeerLoad is a peer namespace's table loaded whole, as a new
// peer's build does, over netlink and with nft.
func BenchmarkPeerLoad(b *testing.B) {
	labtest.RequireRoot(b)
	labtest.RequireTools(b, "nft")
	loader := loaderIn(benchHost(b))
	b.Run("netlink", func(b *testing.B) {
		for b.Loop() {
			must(b, loader.Load("", benchPeer))
		}
	})
	b.Run("text", func(b *testing.B) {
		rules := benchPeer.Rules()
		for b.Loop() {
			must(b, loader.loadText("", rules))
		}
	})
}

// BenchmarkFirewallAB times each operation over netlink and with nft in
// turn, A B A B, FIREWALL_ROUNDS times (default 30), so that both meet the
// same machine, and writes bench/out/firewall.json: per operation and
// path, the minimum, median and maximum in milliseconds, and the load
// average before and after. The operations are what issue 16's figures
// are made of: a new peer's table, eight peers' tables at once (a cold
// start builds eight peers at a time), and one peer added to and removed
// from a node of 252.
func BenchmarkFirewallAB(b *testing.B) {
	labtest.RequireRoot(b)
	labtest.RequireTools(b, "nft")
	rounds := 30
	if n, err := strconv.Atoi(os.Getenv("FIREWALL_ROUNDS")); err == nil && n > 0 {
		rounds = min(n, 1000)
	}
	l := labtest.New(b)
	hosts := make([]Loader, 8)
	for k := range hosts {
		h, err := l.Host(fmt.Sprintf("peer%d", k))
		must(b, err)
		hosts[k] = loaderIn(h)
	}
	node := hosts[0]
	addText, _ := NodeChange(benchNode(252), benchNode(253))
	removeText, _ := NodeChange(benchNode(253), benchNode(252))
	parallel := func(load func(Loader) error) error {
		var wg sync.WaitGroup
		errs := make([]error, len(hosts))
		for k, h := range hosts {
			wg.Go(func() { errs[k] = load(h) })
		}
		wg.Wait()
		return cmp.Or(errs...)
	}
	type op struct {
		name          string
		setup         func() error
		netlink, text func() error
	}
	ops := []op{
		{"peer_table_load", nil,
			func() error { return node.Load("", benchPeer) },
			func() error { return node.loadText("", benchPeer.Rules()) }},
		{"peer_table_load_8_at_once", nil,
			func() error { return parallel(func(h Loader) error { return h.Load("", benchPeer) }) },
			func() error { return parallel(func(h Loader) error { return h.loadText("", benchPeer.Rules()) }) }},
		{"node_253_add_and_remove_one", func() error { return node.Load("", benchNode(252)) },
			func() error {
				return cmp.Or(node.Change("", benchNode(252), benchNode(253)), node.Change("", benchNode(253), benchNode(252)))
			},
			func() error { return cmp.Or(node.loadText("", addText), node.loadText("", removeText)) }},
		{"node_253_table_load", nil,
			func() error { return node.Load("", benchNode(253)) },
			func() error { return node.loadText("", benchNode(253).Rules()) }},
	}
	loadBefore := loadAvg()
	results := map[string]map[string]summary{}
	for b.Loop() {
		for _, o := range ops {
			var nl, text []time.Duration
			for range rounds {
				for _, path := range []struct {
					run func() error
					out *[]time.Duration
				}{{o.netlink, &nl}, {o.text, &text}} {
					if o.setup != nil {
						must(b, o.setup())
					}
					start := time.Now()
					must(b, path.run())
					*path.out = append(*path.out, time.Since(start))
				}
			}
			results[o.name] = map[string]summary{"netlink": summarize(nl), "text": summarize(text)}
		}
	}
	for _, o := range ops {
		r := results[o.name]
		b.Logf("%s: netlink %s, text %s", o.name, r["netlink"], r["text"])
		b.ReportMetric(r["netlink"].Median, o.name+"_netlink_ms")
		b.ReportMetric(r["text"].Median, o.name+"_text_ms")
	}
	writeBench(b, "firewall.json", map[string]any{
		"rounds":        rounds,
		"loadavg_start": loadBefore,
		"loadavg_end":   loadAvg(),
		"ms":            results,
	})
}

// summary is a sample's minimum, median and maximum in milliseconds.
type summary struct {
	N      int     `json:"n"`
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

func (s summary) String() string {
	return fmt.Sprintf("median %.2f ms (%.2f-%.2f, n=%d)", s.Median, s.Min, s.Max, s.N)
}

func summarize(d []time.Duration) summary {
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return math.Round(float64(x.Microseconds())) / 1000 }
	median := d[len(d)/2]
	if len(d)%2 == 0 {
		median = (d[len(d)/2-1] + median) / 2
	}
	return summary{N: len(d), Min: ms(d[0]), Median: ms(median), Max: ms(d[len(d)-1])}
}

// loadAvg is the machine's load average (1, 5, 15 minutes) as the kernel
// reports it.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

func benchHost(b *testing.B) *lab.Host {
	h, err := labtest.New(b).Host("node")
	must(b, err)
	return h
}

// writeBench writes v as JSON to bench/out/name (BENCH_OUT overrides the
// directory).
func writeBench(b *testing.B, name string, v any) {
	b.Helper()
	dir := cmp.Or(os.Getenv("BENCH_OUT"), filepath.Join("..", "..", "bench", "out"))
	must(b, os.MkdirAll(dir, 0o755))
	out, err := json.MarshalIndent(v, "", "  ")
	must(b, err)
	path := filepath.Join(dir, name)
	must(b, os.WriteFile(path, append(out, '\n'), 0o644))
	b.Logf("wrote %s", path)
}
