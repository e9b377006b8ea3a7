package rewrite

import (
	"bytes"
	"testing"
	"unsafe"
)

// TestIdleDeviceIsSmall: a tunnel that carries no call (most of a node's
// 253, parked or offline) keeps no dialog, SDP or RTP flow table; each is
// made with its first use, and then works as before (the other tests).
func TestIdleDeviceIsSmall(t *testing.T) {
	// 51 KB with the tables inline; about 10 KB without.
	if size := unsafe.Sizeof(Device{}); size > 12<<10 {
		t.Errorf("a Device takes %d bytes before any use, want at most 12 KiB (tables made on first use)", size)
	}
	h := newDlgHarness(t)
	d := h.d
	if d.dialogs.sets != nil || d.sdp.e != nil || d.flows[outbound].slots != nil || d.flows[inbound].slots != nil {
		t.Fatal("a new Device holds tables")
	}
	// What the peer says alone makes no dialog, and so no table.
	if !h.send(dlg{start: "OPTIONS", callID: "c-0", fromTag: "b0", cseq: "OPTIONS", wantPass: true}) {
		t.Fatal("an OPTIONS from the peer did not pass")
	}
	if d.dialogs.sets != nil {
		t.Error("a message from the peer outside any dialog made the dialog table")
	}
	if e, c, n := d.dialogs.count(0); e+c+n != 0 {
		t.Errorf("empty dialog table counts %d, %d, %d entries", e, c, n)
	}
	if !h.send(dlg{out: true, start: "INVITE", callID: "c-1", fromTag: "a1", cseq: "INVITE", wantPass: true}) {
		t.Fatal("a local phone's INVITE did not pass")
	}
	if d.dialogs.sets == nil {
		t.Fatal("a local phone's INVITE made no dialog table")
	}
	if e, _, _ := d.dialogs.count(int64(h.d.clock())); e != 1 {
		t.Errorf("after an INVITE the dialog table holds %d early dialogs, want 1", e)
	}
	if d.sdp.clock(1, 96) != 0 {
		t.Error("an empty SDP table knows a clock rate")
	}
	r := Wrap(&rtpTUN{pkt: bytes.Clone(rtpLocalA)}, bobAtAlice, nil)
	bufs, sizes := [][]byte{make([]byte, 2048)}, make([]int, 1)
	if _, err := r.Read(bufs, sizes, testOffset); err != nil {
		t.Fatal(err)
	}
	if r.flows[outbound].slots == nil || r.flows[inbound].slots != nil {
		t.Errorf("after one outbound RTP packet: outbound flow index made %v, inbound %v; want only the outbound one", r.flows[outbound].slots != nil, r.flows[inbound].slots != nil)
	}
	if c := r.Calls(); len(c) != 1 {
		t.Errorf("Calls() = %+v, want the one flow", c)
	}
}
