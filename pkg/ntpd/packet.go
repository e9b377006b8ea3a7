package ntpd

import (
	"encoding/binary"
	"time"
)

// Header layout (RFC 5905 §7.3): byte 0 holds LI (2 bits), VN (3 bits)
// and Mode (3 bits); timestamps are 32.32 fixed point seconds since 1900.
const (
	headerLen = 48

	modeClient = 3
	modeServer = 4

	leapNone  = 0
	leapAlarm = 3 // clock not synchronized

	// precision is log2 seconds of the clock's resolution: 2^-20 ≈ 1 µs,
	// what a Pi's system clock reads to.
	precision = -20

	offRootDelay = 4
	offRootDisp  = 8
	offRefID     = 12
	offRefTime   = 16
	offOrigin    = 24
	offReceive   = 32
	offTransmit  = 40
)

// ntpEpochOffset is the seconds from 1900-01-01 (NTP era 0) to 1970-01-01.
const ntpEpochOffset = 2208988800

// Clock is what the server knows about the Pi's system clock when it answers.
type Clock struct {
	// Synced is false while the clock has not been set from an upstream
	// source (kernel STA_UNSYNC); the answer is then a kiss-o'-death.
	Synced bool
	// MaxError bounds the clock's error (the kernel's maxerror); it is sent
	// as root dispersion so that clients can weigh the answer.
	MaxError time.Duration
}

// request is the part of a client packet the answer depends on.
type request struct {
	version  uint8
	poll     uint8
	transmit [8]byte // echoed as the origin timestamp
}

// parseRequest accepts only NTP client-mode packets (mode 3, version 1-4,
// at least a full header); anything else is not ours to answer: servers,
// broadcasts, control (mode 6) and private (mode 7) queries, which are the
// classic amplification vectors.
func parseRequest(b []byte) (request, bool) {
	if len(b) < headerLen {
		return request{}, false
	}
	vn := b[0] >> 3 & 7
	mode := b[0] & 7
	if mode != modeClient || vn < 1 || vn > 4 {
		return request{}, false
	}
	r := request{version: vn, poll: b[2]}
	copy(r.transmit[:], b[offTransmit:offTransmit+8])
	return r, true
}

// Respond returns the answer to the packet req, received at rx and sent at
// tx, or ok=false if req is not a client request. The answer is always
// headerLen bytes, never more than req: extension fields and MACs are not
// echoed, so a reply can never amplify.
//
// With an unsynchronized clock the answer is a kiss-o'-death (RFC 5905
// §7.4): LI 3 (alarm), stratum 0, reference ID "INIT", and no timestamps
// but the echoed origin. A client that checks any one of LI, stratum or a
// zero transmit timestamp (RFC 4330 §5 asks for all three) discards it and
// keeps its own time, so a Pi without RTC that has not synced yet never
// hands a phone a wrong date.
func Respond(req []byte, rx, tx time.Time, c Clock) (resp []byte, ok bool) {
	r, ok := parseRequest(req)
	if !ok {
		return nil, false
	}
	b := make([]byte, headerLen)
	b[2] = r.poll
	b[3] = byte(256 + precision) // two's complement of a signed exponent
	copy(b[offOrigin:], r.transmit[:])
	if !c.Synced {
		b[0] = leapAlarm<<6 | r.version<<3 | modeServer
		b[1] = 0 // stratum 0: kiss-o'-death
		copy(b[offRefID:], "INIT")
		return b, true
	}
	b[0] = leapNone<<6 | r.version<<3 | modeServer
	// The Pi learns time from one upstream (systemd-timesyncd or chrony)
	// whose stratum it cannot ask for cheaply; 2 is what a client of a
	// public pool server (stratum 1 or 2) would claim at the least, and
	// phones only compare it against 16.
	b[1] = 2
	// Root delay is unknown and folded into the dispersion: the kernel's
	// maxerror is the bound ntpd/chrony keep as rootdelay/2 + rootdisp.
	binary.BigEndian.PutUint32(b[offRootDisp:], shortFormat(c.MaxError))
	// Reference ID: the upstream's address is unknown; zero cannot match
	// a client's own address, so loop detection stays quiet.
	// The reference time must not be zero (clients read zero as "never
	// synchronized"); the last whole 64 s before rx is a conservative
	// stand-in for the time of the last clock update.
	putTimestamp(b[offRefTime:], rx.Truncate(64*time.Second))
	putTimestamp(b[offReceive:], rx)
	putTimestamp(b[offTransmit:], tx)
	return b, true
}

// shortFormat encodes d as NTP short format (16.16 seconds), saturating.
func shortFormat(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	if d >= 65535*time.Second {
		return 0xffffffff
	}
	return uint32(d * (1 << 16) / time.Second)
}

// putTimestamp writes t as an NTP timestamp; times after 2036 wrap into
// era 1 as RFC 5905 §6 intends.
func putTimestamp(b []byte, t time.Time) {
	sec := uint32(uint64(t.Unix() + ntpEpochOffset))
	frac := uint32(uint64(t.Nanosecond()) << 32 / uint64(time.Second))
	binary.BigEndian.PutUint32(b, sec)
	binary.BigEndian.PutUint32(b[4:], frac)
}

// timestamp decodes an NTP timestamp relative to pivot's era: the result
// is the time within ±68 years of pivot that has those 64 bits.
func timestamp(b []byte, pivot time.Time) time.Time {
	sec := binary.BigEndian.Uint32(b)
	frac := binary.BigEndian.Uint32(b[4:])
	pivotSec := uint32(uint64(pivot.Unix() + ntpEpochOffset))
	delta := int64(int32(sec - pivotSec))
	ns := int64(uint64(frac) * uint64(time.Second) >> 32)
	return time.Unix(pivot.Unix()+delta, ns)
}
