package rewrite

import (
	"testing"
	"unsafe"
)

// TestHotLayout checks what the RTP path's cost on a loaded machine rests
// on (hotDir, rtpFlow): what every packet of a direction writes lies on one
// cache line of its own, and a flow takes exactly two.
func TestHotLayout(t *testing.T) {
	const line = 64
	var h hotDir
	if end := unsafe.Offsetof(h.plain) + unsafe.Sizeof(h.plain); end > line {
		t.Errorf("hotDir's per-packet fields end at byte %d, past the first cache line", end)
	}
	if s := unsafe.Sizeof(h); s != 2*line {
		t.Errorf("hotDir is %d bytes, want %d: its own line and one that keeps the other direction's apart", s, 2*line)
	}
	if s := unsafe.Sizeof(rtpFlow{}); s != 2*line {
		t.Errorf("rtpFlow is %d bytes, want %d (two cache lines)", s, 2*line)
	}
	// What an RTP packet reads of the Device itself, in its first lines.
	var d Device
	if end := unsafe.Offsetof(d.flows) + unsafe.Sizeof(d.flows); end > 3*line {
		t.Errorf("Device.flows ends at byte %d: want it beside the fields every packet reads", end)
	}
	var f rtpFlow
	for name, end := range map[string]uintptr{
		"maxSeq":  unsafe.Offsetof(f.maxSeq) + 2,
		"transit": unsafe.Offsetof(f.transit) + 1,
		"packets": unsafe.Offsetof(f.packets) + 8,
	} {
		if end > line {
			t.Errorf("rtpFlow.%s ends at byte %d, past the first cache line", name, end)
		}
	}
	// The allocator puts hot, which holds no pointer, at the start of a
	// 256-byte slot: on a cache line.
	for range 8 {
		d := Wrap(&discardTUN{}, bobAtAlice, nil)
		for dir := range d.hot {
			if a := uintptr(unsafe.Pointer(&d.hot[dir])); a%line != 0 {
				t.Fatalf("hot[%d] at %#x: not on a cache line", dir, a)
			}
		}
		// A flow table's arrays grow by doubling: 128-byte flows in
		// power-of-two sizes stay on cache lines.
		for range 3 {
			d.flows[outbound].lookupLocked(flowKey{uint64(len(d.flows[outbound].flows)), 1}, 0)
			if a := uintptr(unsafe.Pointer(&d.flows[outbound].flows[0])); a%line != 0 {
				t.Fatalf("flows at %#x: not on a cache line", a)
			}
		}
	}
}
