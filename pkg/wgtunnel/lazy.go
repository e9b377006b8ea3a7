package wgtunnel

import (
	"encoding/binary"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

// Lazy devices (issue 16). A wireguard-go device costs about a quarter of a
// MiB of heap whatever it carries: two 64 KiB message buffers held by its
// TUN reader and its receiver, a handshake queue of 4096 entries, four
// 1024-entry queues, and fifteen goroutines. A node with 253 peers, most of
// them idle or switched off, held 253 of them. So a Tunnel keeps only what
// is cheap for its whole life (the TUN link, its UAPI socket, the rewriter
// and its state, the peer's configuration) and runs the device only while
// the peer is in use:
//
//   - while awake, WireGuard's persistent keepalive (which the path manager
//     turns on once it knows a path, StartKeepalive) runs only while the
//     tunnel carries data: after keepaliveIdle without a data packet either
//     way it is turned off, and on again with the next one. So an online
//     peer that is not called lets its session expire and parks like one
//     that is switched off; the path manager's own probes on the node's
//     socket keep its NAT mappings and its online state (pkg/peerpath);
//   - it wakes (the device is made and configured again) when the phone
//     side sends a packet into the TUN (a call being placed: the packet is
//     left in the TUN and is the first the new device reads), when a
//     WireGuard message from the peer reaches its share of the socket (the
//     message is held and handed to the new device), when the path manager
//     turns the keepalive on (a path was found), and when `wg set` talks to
//     its UAPI socket;
//   - it parks (the device is closed) when it has no session and nothing
//     came in for a while: a peer that never answered since waking after
//     parkNever, one whose last handshake is older than WireGuard's session
//     life (so the peer's keys have expired too) after parkIdle without a
//     packet in; and in both cases the phone side sent nothing into the
//     TUN for parkNever (a call being placed to a peer that does not
//     answer keeps its device while the phone retries).
//
// While parked, Status and the UAPI socket's get answer from what the
// device last said (endpoint, last handshake, byte counts), so `wg show`
// lists every peer; the byte counts go on from there when it wakes.
//
// (Variables only so that the lab test can shorten them.)
var (
	parkCheck = 15 * time.Second
	parkNever = 30 * time.Second
	parkIdle  = 2 * time.Minute
	// sessionLife is WireGuard's RejectAfterTime: after it neither end
	// uses the session's keys.
	sessionLife = 180 * time.Second
	// keepaliveIdle is how long the persistent keepalive outlives the
	// tunnel's last data packet: a call's media keeps it on, and a short
	// pause (a call on hold, between calls) does not cost the session.
	keepaliveIdle = 2 * time.Minute
	// peerWakeRead is how long a device woken by its peer waits at most
	// for its answer to go out before it reads the TUN (wakeLocked).
	peerWakeRead = time.Second
)

// keepaliveWanted says whether an awake device's persistent keepalive
// should run: the path manager asked for it (wanted) and a data packet
// went either way within keepaliveIdle of now (dataAt).
func keepaliveWanted(now time.Time, wanted bool, dataAt time.Time) bool {
	return wanted && now.Sub(dataAt) < keepaliveIdle
}

// isData reports whether a WireGuard message is a transport message that
// carries a packet: not a handshake, a cookie or a keepalive (a transport
// header and an empty payload's tag, 32 bytes).
func isData(b []byte) bool {
	return len(b) > device.MessageKeepaliveSize && binary.LittleEndian.Uint32(b) == device.MessageTransportType
}

// shouldPark is the parking rule. wokeAt is when the device was made,
// handshake the last completed handshake (any incarnation), rxAt when a
// packet last came in from the peer, readAt when the device last read one
// from the TUN. Nothing was read for parkNever either: a packet read just
// before parking would be lost with the device (and with it the handshake
// it started).
func shouldPark(now, wokeAt, handshake, rxAt, readAt time.Time) bool {
	if now.Sub(readAt) < parkNever {
		return false
	}
	if handshake.Before(wokeAt) {
		// Nothing answered since waking.
		return now.Sub(wokeAt) >= parkNever && now.Sub(rxAt) >= parkNever
	}
	return now.Sub(handshake) >= sessionLife && now.Sub(rxAt) >= parkIdle
}

// baseTUN is the TUN a Tunnel keeps for its life.
type baseTUN interface {
	tun.Device
	// interrupt makes reads fail until resume; waitReadable blocks until
	// a packet waits (without reading it) or interrupt; parks reports
	// whether these work (else the device stays up).
	interrupt()
	resume()
	waitReadable() error
	parks() bool
}

// view is one device's life over the Tunnel's TUN: its Close lets go of
// the TUN (the next device reads from it) instead of removing it, and it
// has events of its own, ended with it. It reads nothing until open: the
// device's TUN reader starts before the peer is configured, and would drop
// the packet that woke it.
type view struct {
	tun.Device // the TUN as the device sees it: through the rewriter
	base       baseTUN
	events     chan tun.Event
	ready      chan struct{}
	done       chan struct{}
	readyOnce  sync.Once
	closeOnce  sync.Once
	// reads counts the reads that returned packets, for the parking rule.
	reads *atomic.Uint64
}

func newView(wrapped tun.Device, base baseTUN, reads *atomic.Uint64) *view {
	return &view{Device: wrapped, base: base, events: make(chan tun.Event), ready: make(chan struct{}), done: make(chan struct{}), reads: reads}
}

// open lets the device read: it is configured and up.
func (v *view) open() { v.readyOnce.Do(func() { close(v.ready) }) }

func (v *view) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case <-v.ready:
	case <-v.done:
		return 0, os.ErrClosed
	}
	n, err := v.Device.Read(bufs, sizes, offset)
	if n > 0 {
		v.reads.Add(1)
	}
	return n, err
}

func (v *view) Events() <-chan tun.Event { return v.events }

func (v *view) Close() error {
	v.closeOnce.Do(func() {
		close(v.done)
		v.base.interrupt()
		close(v.events)
	})
	return nil
}

// File is not the device's to use.
func (v *view) File() *os.File { return nil }
