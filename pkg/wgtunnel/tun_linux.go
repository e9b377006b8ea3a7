package wgtunnel

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// createTUN makes the tunnel's TUN in the calling thread's namespace and
// returns a minimal tun.Device over it.
//
// wireguard-go's own (tun.CreateTUN, tun.CreateTUNFromFile) costs about
// 10 MiB of heap per device, which for 253 peers is most of a Pi's memory:
// it always asks for IFF_VNET_HDR, so it reports a batch size of 128 and the
// device allocates a read batch of 128 buffers of 64 KiB; it allocates TCP
// and UDP GRO tables (1.6 MiB) even without offloads; and it runs two
// goroutines and a netlink socket per TUN to report link changes. Phones
// speak UDP (SIP, RTP) at tens of packets a second, which offloads do not
// help; the MTU is fixed by the config (and wireguard-go's MTU lookup by
// name fails from outside the namespace anyway); and the supervisor brings
// the device up itself. So this one reads and writes one packet at a time,
// allocates nothing per packet, and reports no events.
func createTUN(name string, mtu int) (baseTUN, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("creating TUN %s: %w", name, err)
	}
	if err := setMTU(name, mtu); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// The tunnels carry IPv4 only. With IPv6 on, the kernel sends router
	// solicitations and MLD reports into the TUN when the link comes up,
	// which would wake a parked device for nothing (lazy.go). Kernels
	// without IPv6 have no such file.
	if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", []byte("1"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		unix.Close(fd)
		return nil, fmt.Errorf("turning off IPv6 on %s: %w", name, err)
	}
	// Non-blocking before the file is handed to the runtime's poller, so
	// that Close wakes a blocked Read.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &plainTUN{file: os.NewFile(uintptr(fd), "/dev/net/tun"), name: name, mtu: mtu, events: make(chan tun.Event)}, nil
}

// setMTU sets the link's MTU in the calling thread's namespace.
func setMTU(name string, mtu int) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("setting MTU of %s: %w", name, err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	ifr.SetUint32(uint32(mtu))
	if err := unix.IoctlIfreq(s, unix.SIOCSIFMTU, ifr); err != nil {
		return fmt.Errorf("setting MTU of %s to %d: %w", name, mtu, err)
	}
	return nil
}

// plainTUN is a TUN without offloads: one packet per Read and Write.
type plainTUN struct {
	file      *os.File
	name      string
	mtu       int
	events    chan tun.Event
	closeOnce sync.Once

	// mu orders interrupt, resume and WakeRead, which share the read
	// deadline: interrupted while parked or closing, woken while a
	// WakeRead waits to be seen by Read.
	mu          sync.Mutex
	interrupted bool
	woken       bool
}

var _ tun.Device = (*plainTUN)(nil)

func (t *plainTUN) File() *os.File { return t.file }

func (t *plainTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := t.file.Read(bufs[0][offset:])
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) && t.takeWake() {
			return 0, nil
		}
		return 0, err
	}
	sizes[0] = n
	return 1, nil
}

// WakeRead makes a blocked Read (or the next one) return no packet and no
// error, once: the rewriter queues a packet of its own for the peer (an
// answer to a call it refuses) and needs its Read called to hand it over.
// It does nothing while the TUN is interrupted.
func (t *plainTUN) WakeRead() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.woken = true
	if !t.interrupted {
		t.file.SetReadDeadline(time.Unix(1, 0))
	}
}

// takeWake reports whether a Read that hit the deadline was woken by
// WakeRead (and clears the deadline), rather than interrupted.
func (t *plainTUN) takeWake() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.interrupted || !t.woken {
		return false
	}
	t.woken = false
	t.file.SetReadDeadline(time.Time{})
	return true
}

func (t *plainTUN) Write(bufs [][]byte, offset int) (int, error) {
	var first error
	for i, b := range bufs {
		if _, err := t.file.Write(b[offset:]); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return i, err
			}
			// A packet the kernel refuses (the link is not up yet, a
			// malformed packet) is dropped, as a NIC would; the rest of
			// the batch still goes, and the first error is reported for
			// wireguard-go to log.
			first = cmp.Or(first, err)
		}
	}
	return len(bufs), first
}

// interrupt makes a blocked Read (and waitReadable) return at once, and
// every Read until resume: how a parked device's reader lets go of the TUN
// without closing it.
func (t *plainTUN) interrupt() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.interrupted = true
	t.file.SetReadDeadline(time.Unix(1, 0))
}

// resume undoes interrupt. A WakeRead not yet seen is forgotten: the
// reader it was for is gone, and the parked waiter (waitReadable) must not
// see the deadline. The rewriter's queued packet then leaves with the next
// Read; a refused call's INVITE retransmission brings one.
func (t *plainTUN) resume() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.interrupted, t.woken = false, false
	t.file.SetReadDeadline(time.Time{})
}

// waitReadable blocks until a packet is waiting to be read, without
// reading it, or until interrupt or Close.
func (t *plainTUN) waitReadable() error {
	rc, err := t.file.SyscallConn()
	if err != nil {
		return err
	}
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		if err != nil && err != unix.EINTR {
			perr = err
			return true
		}
		return n > 0
	})
	return cmp.Or(err, perr)
}

func (t *plainTUN) MTU() (int, error)        { return t.mtu, nil }
func (t *plainTUN) Name() (string, error)    { return t.name, nil }
func (t *plainTUN) Events() <-chan tun.Event { return t.events }
func (t *plainTUN) BatchSize() int           { return 1 }

// Close closes the TUN (which removes the link) and ends Events.
func (t *plainTUN) Close() error {
	var err error
	t.closeOnce.Do(func() {
		err = t.file.Close()
		close(t.events)
	})
	return err
}

func (t *plainTUN) parks() bool { return true }
