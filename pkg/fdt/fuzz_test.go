package fdt

import (
	"bytes"
	"os"
	"testing"
)

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o644) }

// FuzzParse feeds arbitrary bytes to Parse. It must never panic; whatever it
// accepts must survive Encode and Parse unchanged, Encode must be a fixed
// point, and every lookup helper must work on the result.
func FuzzParse(f *testing.F) {
	good := sample().Encode()
	f.Add(good)
	f.Add(New().Encode())
	f.Add(good[:len(good)/2])
	f.Add([]byte{0xd0, 0x0d, 0xfe, 0xed})
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := Parse(b)
		if err != nil {
			return
		}
		enc := tr.Encode()
		again, err := Parse(enc)
		if err != nil {
			t.Fatalf("Parse(Encode(Parse(b))): %v", err)
		}
		if !Equal(tr.Root, again.Root) {
			t.Fatalf("tree changed through Encode and Parse")
		}
		if enc2 := again.Encode(); !bytes.Equal(enc, enc2) {
			t.Fatalf("Encode is not a fixed point")
		}
		var walk func(n *Node, depth int)
		walk = func(n *Node, depth int) {
			if depth > maxDepth+1 {
				t.Fatalf("tree deeper than the limit")
			}
			if got := tr.Lookup(n.Path()); got == nil {
				t.Fatalf("Lookup(%q) = nil for a node in the tree", n.Path())
			}
			_ = n.Compatible()
			_ = n.Enabled()
			for _, p := range n.Props {
				_, _ = p.Cells()
				_ = p.Strings()
			}
			for _, c := range n.Children {
				walk(c, depth+1)
			}
		}
		walk(tr.Root, 0)
		_ = tr.Symbol("x")
	})
}
