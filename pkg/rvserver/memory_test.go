package rvserver

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
)

// BenchmarkFullTables fills every table of a server with the default
// limits (Config{}) to its bound, with the largest entries the wire
// allows, and reports the live heap that takes: what the configuration
// bounds the server's memory to, whatever the flood. make bench-attack
// writes it to bench/out/rendezvous-memory.json next to the lab figures
// (a lab flood fills only some tables).
func BenchmarkFullTables(b *testing.B) {
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		h := newHarness(b, Config{})
		s, now := h.s, h.clock.now()
		c := s.cfg
		addr := func(i int) netip.AddrPort {
			// Spread over enough /24s that no per-prefix share binds
			// before the table does.
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i / 200), byte(i % 200)}), uint16(1024+i%60000))
		}
		key := func(i int) nodekey.Key {
			var k nodekey.Key
			copy(k[:], fmt.Appendf(nil, "full tables %d", i))
			return k
		}
		s.mu.Lock()
		var nodes []*node
		for i := range c.MaxNodes {
			k, _ := nodekey.Generate()
			a, err := rendezvous.ServerAEAD(s.priv, k.Public())
			if err != nil {
				b.Fatal(err)
			}
			s.registerLocked(k.Public(), a, addr(i), 0, now)
			s.keys.put(k.Public(), a)
			nodes = append(nodes, s.nodes[k.Public()])
		}
		for i := range s.keys.max - c.MaxNodes { // the key cache holds twice as many keys
			a, _ := rendezvous.ServerAEAD(s.priv, key(i))
			s.keys.put(key(i), a)
		}
		for i := range c.MaxPending {
			s.putPendingLocked([2]nodekey.Key{nodes[i%len(nodes)].pub, key(i)}, pending{box: make([]byte, rendezvous.MaxBox), at: now}, addr(i))
		}
		for i := 0; len(s.sessions) < c.MaxSessions; i++ {
			na, nb := nodes[i%len(nodes)], nodes[(i/len(nodes)+1+i)%len(nodes)]
			if na != nb {
				s.sessionLocked(na, nb, now)
			}
		}
		for i := range c.MaxReplay {
			var n nonce
			copy(n[:], fmt.Appendf(nil, "%d", i))
			s.replay.add(nodes[i%len(nodes)].pub, n, now)
		}
		for i := range c.MaxPrefixes {
			s.prefixes.allow(netip.PrefixFrom(netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)}), 24), now, c.PrefixPerSec, c.PrefixBurst)
		}
		for i := range c.MaxInvites {
			var id [rendezvous.InviteIDLen]byte
			copy(id[:], fmt.Appendf(nil, "%d", i))
			j := i / c.MaxInvitesPerOwner
			src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{101, byte(j >> 16), byte(j >> 8), byte(j)}), 40000)
			if !s.invites.put(key(j), src, rendezvous.InvitePut{ID: id, Expires: now.Add(time.Hour), Blob: make([]byte, rendezvous.MaxInviteBlob)}, now) {
				b.Fatalf("invite %d refused", i)
			}
		}
		st := s.limitStatsLocked()
		sizes := map[string]int{
			"nodes": len(s.nodes), "key_cache": s.keys.l.Len(), "pending": len(s.pending), "sessions": len(s.sessions),
			"replay_nonces": st.ReplayNonces, "prefixes": st.Prefixes, "invites": len(s.invites.byID),
		}
		s.mu.Unlock()
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(s)
		live := float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
		b.ReportMetric(live, "live-MiB")
		if dir := os.Getenv("BENCH_OUT"); dir != "" {
			out, _ := json.MarshalIndent(map[string]any{
				"live_heap_mib_all_tables_full": live,
				"limits":                        "defaults (Config{}: max-nodes 10000 and what derives from it)",
				"entries":                       sizes,
				"note":                          "the live heap when every table holds its maximum of the largest entries; without a memory limit Go lets the heap grow to about twice what is live, so rendezvousd sets a soft limit of 64 MiB + 16 KiB per max-nodes (220 MiB by default)",
			}, "", "  ")
			if err := os.WriteFile(filepath.Join(cmp.Or(dir, "."), "rendezvous-memory.json"), append(out, '\n'), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
}
