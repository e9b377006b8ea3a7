// Package fdt reads and writes flattened device trees (DTB files, the
// "Devicetree Specification" v0.4 §5 format) in pure Go.
//
// The image build uses it to check, from the device trees on the SD card's
// boot partition, that everything a Pi needs to reach its root filesystem has
// a driver in the initramfs (package bootcheck), and to derive the Pi 5 D0
// overlay from the kernel's C0 and D0 device trees. A DTB read at build time
// is not trusted input in the network sense, but Parse treats it as hostile
// all the same: every offset and length is checked against the blob, nesting
// is bounded, and a malformed blob is an error, never a panic (FuzzParse).
//
// The tree is kept in the blob's order (nodes and properties), so
// Parse(Encode(t)) gives back t, and a node is found by path or by phandle.
package fdt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Magic is the first word of every DTB.
const Magic = 0xd00dfeed

// Structure block tokens (Devicetree Specification §5.4.1).
const (
	tokenBeginNode = 1
	tokenEndNode   = 2
	tokenProp      = 3
	tokenNop       = 4
	tokenEnd       = 9
)

const (
	headerSize = 40
	// maxDepth bounds nesting: real trees are under 10 deep, and a hostile
	// blob must not be able to make the reader recurse without limit.
	maxDepth = 64
)

// ErrFormat is wrapped by every error about a malformed blob.
var ErrFormat = errors.New("not a valid flattened device tree")

// Tree is a parsed device tree.
type Tree struct {
	Root *Node
	// Reserve is the memory reservation block, as (address, size) pairs.
	Reserve [][2]uint64
	// BootCPU is the header's boot_cpuid_phys.
	BootCPU uint32

	phandles map[uint32]*Node
}

// Node is one node of a tree.
type Node struct {
	// Name is the full node name, unit address included ("mmc@7e300000");
	// the root's is "".
	Name     string
	Props    []Prop
	Children []*Node
	Parent   *Node
}

// Prop is one property: its name and raw value.
type Prop struct {
	Name  string
	Value []byte
}

func formatErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, a...))
}

// Parse reads a DTB. Versions 16 and 17 (every dtc output since 2008) are
// accepted; trailing bytes after totalsize are ignored.
func Parse(b []byte) (*Tree, error) {
	if len(b) < headerSize {
		return nil, formatErr("%d bytes is shorter than the %d-byte header", len(b), headerSize)
	}
	be := binary.BigEndian
	if m := be.Uint32(b); m != Magic {
		return nil, formatErr("magic %#x, want %#x", m, uint32(Magic))
	}
	total := be.Uint32(b[4:])
	offStruct, offStrings, offRsv := be.Uint32(b[8:]), be.Uint32(b[12:]), be.Uint32(b[16:])
	version, lastComp := be.Uint32(b[20:]), be.Uint32(b[24:])
	bootCPU := be.Uint32(b[28:])
	sizeStrings, sizeStruct := be.Uint32(b[32:]), be.Uint32(b[36:])
	if uint64(total) > uint64(len(b)) || total < headerSize {
		return nil, formatErr("totalsize %d, blob is %d bytes", total, len(b))
	}
	if version < 16 || lastComp > 17 {
		return nil, formatErr("version %d (last compatible %d); only 16 and 17 are read", version, lastComp)
	}
	b = b[:total]
	if !within(offStruct, sizeStruct, total) || !within(offStrings, sizeStrings, total) || offRsv < headerSize || offRsv >= total {
		return nil, formatErr("block offsets out of range (struct %d+%d, strings %d+%d, reserve %d, total %d)",
			offStruct, sizeStruct, offStrings, sizeStrings, offRsv, total)
	}
	t := &Tree{BootCPU: bootCPU, phandles: map[uint32]*Node{}}
	for off := offRsv; ; off += 16 {
		if off+16 > total || off+16 < off {
			return nil, formatErr("memory reservation block runs past the end")
		}
		addr, size := be.Uint64(b[off:]), be.Uint64(b[off+8:])
		if addr == 0 && size == 0 {
			break
		}
		t.Reserve = append(t.Reserve, [2]uint64{addr, size})
	}
	p := parser{s: b[offStruct : offStruct+sizeStruct], strs: b[offStrings : offStrings+sizeStrings]}
	tok, err := p.token()
	if err != nil {
		return nil, err
	}
	if tok != tokenBeginNode {
		return nil, formatErr("structure block starts with token %d, not a node", tok)
	}
	root, err := p.node(nil, 0)
	if err != nil {
		return nil, err
	}
	if root.Name != "" {
		return nil, formatErr("root node is named %q", root.Name)
	}
	if tok, err = p.token(); err != nil {
		return nil, err
	} else if tok != tokenEnd {
		return nil, formatErr("token %d after the root node, want END", tok)
	}
	t.Root = root
	t.indexPhandles(root)
	return t, nil
}

func within(off, size, total uint32) bool {
	return uint64(off)+uint64(size) <= uint64(total) && off >= headerSize
}

type parser struct {
	s, strs []byte
	off     int
}

// token reads the next token, skipping NOPs.
func (p *parser) token() (uint32, error) {
	for {
		if p.off+4 > len(p.s) {
			return 0, formatErr("structure block ends inside a token")
		}
		tok := binary.BigEndian.Uint32(p.s[p.off:])
		p.off += 4
		if tok != tokenNop {
			return tok, nil
		}
	}
}

func (p *parser) align() {
	p.off = (p.off + 3) &^ 3
}

// node reads a node whose BEGIN_NODE token has been read.
func (p *parser) node(parent *Node, depth int) (*Node, error) {
	if depth > maxDepth {
		return nil, formatErr("nodes nested deeper than %d", maxDepth)
	}
	end := bytes.IndexByte(p.s[p.off:], 0)
	if end < 0 {
		return nil, formatErr("node name not terminated")
	}
	n := &Node{Name: string(p.s[p.off : p.off+end]), Parent: parent}
	if depth > 0 && (n.Name == "" || strings.ContainsRune(n.Name, '/')) {
		return nil, formatErr("bad node name %q", n.Name)
	}
	p.off += end + 1
	p.align()
	for {
		tok, err := p.token()
		if err != nil {
			return nil, err
		}
		switch tok {
		case tokenProp:
			if len(n.Children) > 0 {
				return nil, formatErr("property after a subnode in %q", n.Name)
			}
			if p.off+8 > len(p.s) {
				return nil, formatErr("property header runs past the structure block")
			}
			size := binary.BigEndian.Uint32(p.s[p.off:])
			nameOff := binary.BigEndian.Uint32(p.s[p.off+4:])
			p.off += 8
			if uint64(size) > uint64(len(p.s)-p.off) {
				return nil, formatErr("property of %d bytes runs past the structure block", size)
			}
			if uint64(nameOff) >= uint64(len(p.strs)) {
				return nil, formatErr("property name offset %d outside the strings block", nameOff)
			}
			ne := bytes.IndexByte(p.strs[nameOff:], 0)
			if ne < 0 {
				return nil, formatErr("property name not terminated")
			}
			val := make([]byte, size)
			copy(val, p.s[p.off:p.off+int(size)])
			n.Props = append(n.Props, Prop{Name: string(p.strs[nameOff : int(nameOff)+ne]), Value: val})
			p.off += int(size)
			p.align()
		case tokenBeginNode:
			c, err := p.node(n, depth+1)
			if err != nil {
				return nil, err
			}
			n.Children = append(n.Children, c)
		case tokenEndNode:
			return n, nil
		default:
			return nil, formatErr("unexpected token %d in node %q", tok, n.Name)
		}
	}
}

func (t *Tree) indexPhandles(n *Node) {
	for _, name := range []string{"phandle", "linux,phandle"} {
		if v, ok := n.U32(name); ok && v != 0 && v != 0xffffffff {
			if _, dup := t.phandles[v]; !dup {
				t.phandles[v] = n
			}
		}
	}
	for _, c := range n.Children {
		t.indexPhandles(c)
	}
}

// ByPhandle returns the node with that phandle, or nil.
func (t *Tree) ByPhandle(ph uint32) *Node {
	return t.phandles[ph]
}

// Lookup returns the node at an absolute path ("/soc/mmc@7e300000"), or nil.
// A path component without a unit address matches a node whose name has
// one, if it is the only such node, as in the kernel's of_find_node_by_path.
func (t *Tree) Lookup(path string) *Node {
	if !strings.HasPrefix(path, "/") {
		return nil
	}
	n := t.Root
	for _, comp := range strings.Split(strings.Trim(path, "/"), "/") {
		if comp == "" {
			continue
		}
		n = n.Child(comp)
		if n == nil {
			return nil
		}
	}
	return n
}

// Symbol resolves a label from /__symbols__ (DTBs built with dtc -@), or
// returns nil.
func (t *Tree) Symbol(label string) *Node {
	sym := t.Lookup("/__symbols__")
	if sym == nil {
		return nil
	}
	path, ok := sym.String(label)
	if !ok {
		return nil
	}
	return t.Lookup(path)
}

// Child returns the child named name (exactly, or by base name when that is
// unique), or nil.
func (n *Node) Child(name string) *Node {
	var base *Node
	count := 0
	for _, c := range n.Children {
		if c.Name == name {
			return c
		}
		if c.BaseName() == name {
			base = c
			count++
		}
	}
	if count == 1 {
		return base
	}
	return nil
}

// BaseName is the node name without its unit address.
func (n *Node) BaseName() string {
	name, _, _ := strings.Cut(n.Name, "@")
	return name
}

// Path is the node's absolute path.
func (n *Node) Path() string {
	if n.Parent == nil {
		return "/"
	}
	var parts []string
	for m := n; m.Parent != nil; m = m.Parent {
		parts = append(parts, m.Name)
	}
	var sb strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		sb.WriteByte('/')
		sb.WriteString(parts[i])
	}
	return sb.String()
}

// Prop returns the named property.
func (n *Node) Prop(name string) (Prop, bool) {
	for _, p := range n.Props {
		if p.Name == name {
			return p, true
		}
	}
	return Prop{}, false
}

// Has reports whether the node has the property.
func (n *Node) Has(name string) bool {
	_, ok := n.Prop(name)
	return ok
}

// U32 returns a one-cell property.
func (n *Node) U32(name string) (uint32, bool) {
	p, ok := n.Prop(name)
	if !ok || len(p.Value) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(p.Value), true
}

// Cells returns a property as a list of 32-bit cells; false if it is
// missing or not a whole number of cells.
func (n *Node) Cells(name string) ([]uint32, bool) {
	p, ok := n.Prop(name)
	if !ok {
		return nil, false
	}
	return p.Cells()
}

// Strings returns a string-list property ("compatible").
func (n *Node) Strings(name string) []string {
	p, ok := n.Prop(name)
	if !ok {
		return nil
	}
	return p.Strings()
}

// String returns the first string of a string property.
func (n *Node) String(name string) (string, bool) {
	s := n.Strings(name)
	if len(s) == 0 {
		return "", false
	}
	return s[0], true
}

// Compatible is the node's compatible list, most specific first.
func (n *Node) Compatible() []string {
	return n.Strings("compatible")
}

// Enabled reports whether the node's status is "okay" (or "ok", or absent),
// as the kernel's of_device_is_available.
func (n *Node) Enabled() bool {
	s, ok := n.String("status")
	return !ok || s == "okay" || s == "ok"
}

// Cells decodes a value as 32-bit big-endian cells.
func (p Prop) Cells() ([]uint32, bool) {
	if len(p.Value)%4 != 0 {
		return nil, false
	}
	c := make([]uint32, len(p.Value)/4)
	for i := range c {
		c[i] = binary.BigEndian.Uint32(p.Value[4*i:])
	}
	return c, true
}

// Strings decodes a NUL-separated string list; a value that is not one
// (no final NUL) gives nil.
func (p Prop) Strings() []string {
	if len(p.Value) == 0 || p.Value[len(p.Value)-1] != 0 {
		return nil
	}
	return strings.Split(string(p.Value[:len(p.Value)-1]), "\x00")
}

// Set replaces the named property's value, or appends the property.
func (n *Node) Set(name string, value []byte) {
	v := append([]byte(nil), value...)
	for i := range n.Props {
		if n.Props[i].Name == name {
			n.Props[i].Value = v
			return
		}
	}
	n.Props = append(n.Props, Prop{Name: name, Value: v})
}

// AddChild appends a new empty child node and returns it.
func (n *Node) AddChild(name string) *Node {
	c := &Node{Name: name, Parent: n}
	n.Children = append(n.Children, c)
	return c
}

// StringValue encodes a string list as a property value.
func StringValue(s ...string) []byte {
	var b []byte
	for _, x := range s {
		b = append(b, x...)
		b = append(b, 0)
	}
	return b
}

// CellValue encodes cells as a property value.
func CellValue(c ...uint32) []byte {
	b := make([]byte, 4*len(c))
	for i, x := range c {
		binary.BigEndian.PutUint32(b[4*i:], x)
	}
	return b
}

// Delete removes the named property, if present.
func (n *Node) Delete(name string) {
	for i := range n.Props {
		if n.Props[i].Name == name {
			n.Props = append(n.Props[:i], n.Props[i+1:]...)
			return
		}
	}
}
