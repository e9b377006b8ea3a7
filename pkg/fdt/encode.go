package fdt

import (
	"encoding/binary"
	"sort"
)

// New returns an empty tree (a root node only), to build one with AddChild
// and Set.
func New() *Tree {
	return &Tree{Root: &Node{}, phandles: map[uint32]*Node{}}
}

// Reindex rebuilds the phandle index after the tree was changed.
func (t *Tree) Reindex() {
	t.phandles = map[uint32]*Node{}
	t.indexPhandles(t.Root)
}

// Encode writes the tree as a version 17 DTB, as dtc lays it out: header,
// memory reservations, structure block, strings block. Property names are
// stored once each, in order of first use.
func (t *Tree) Encode() []byte {
	be := binary.BigEndian
	var strs []byte
	strOff := map[string]uint32{}
	var st []byte
	put := func(v uint32) { st = be.AppendUint32(st, v) }
	pad := func() {
		for len(st)%4 != 0 {
			st = append(st, 0)
		}
	}
	var walk func(n *Node)
	walk = func(n *Node) {
		put(tokenBeginNode)
		st = append(st, n.Name...)
		st = append(st, 0)
		pad()
		for _, p := range n.Props {
			off, ok := strOff[p.Name]
			if !ok {
				off = uint32(len(strs))
				strOff[p.Name] = off
				strs = append(strs, p.Name...)
				strs = append(strs, 0)
			}
			put(tokenProp)
			put(uint32(len(p.Value)))
			put(off)
			st = append(st, p.Value...)
			pad()
		}
		for _, c := range n.Children {
			walk(c)
		}
		put(tokenEndNode)
	}
	walk(t.Root)
	put(tokenEnd)

	rsv := make([]byte, 0, 16*(len(t.Reserve)+1))
	for _, r := range t.Reserve {
		rsv = be.AppendUint64(rsv, r[0])
		rsv = be.AppendUint64(rsv, r[1])
	}
	rsv = append(rsv, make([]byte, 16)...)

	offRsv := uint32(headerSize) // 40: 8-aligned, where dtc puts it
	offStruct := offRsv + uint32(len(rsv))
	offStrings := offStruct + uint32(len(st))
	total := offStrings + uint32(len(strs))
	out := make([]byte, offRsv, total)
	be.PutUint32(out[0:], Magic)
	be.PutUint32(out[4:], total)
	be.PutUint32(out[8:], offStruct)
	be.PutUint32(out[12:], offStrings)
	be.PutUint32(out[16:], offRsv)
	be.PutUint32(out[20:], 17)
	be.PutUint32(out[24:], 16)
	be.PutUint32(out[28:], t.BootCPU)
	be.PutUint32(out[32:], uint32(len(strs)))
	be.PutUint32(out[36:], uint32(len(st)))
	out = append(out, rsv...)
	out = append(out, st...)
	out = append(out, strs...)
	return out
}

// Equal reports whether two nodes have the same name, the same properties
// (compared as a set: order does not matter to the kernel) and equal
// children in the same order.
func Equal(a, b *Node) bool {
	if a.Name != b.Name || len(a.Props) != len(b.Props) || len(a.Children) != len(b.Children) {
		return false
	}
	pa, pb := sortedProps(a), sortedProps(b)
	for i := range pa {
		if pa[i].Name != pb[i].Name || string(pa[i].Value) != string(pb[i].Value) {
			return false
		}
	}
	for i := range a.Children {
		if !Equal(a.Children[i], b.Children[i]) {
			return false
		}
	}
	return true
}

func sortedProps(n *Node) []Prop {
	p := append([]Prop(nil), n.Props...)
	sort.SliceStable(p, func(i, j int) bool { return p[i].Name < p[j].Name })
	return p
}
