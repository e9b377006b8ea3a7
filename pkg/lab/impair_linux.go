//go:build linux

package lab

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// packetPort is a switch port: an AF_PACKET socket bound to one interface
// of the Internet namespace.
//
// The socket uses PACKET_VNET_HDR. Frames that a namespace's own stack
// sends into a veth carry only a partial checksum (checksum offload) and
// may be GSO super-frames; read raw and written to another veth, they
// would arrive with bad checksums and be dropped. With the vnet header the
// kernel tells us which checksum is still to do and how to segment, and on
// write finishes both, exactly as for a virtio NIC. PACKET_IGNORE_OUTGOING
// keeps the frames the switch writes from being read back.
type packetPort struct {
	f *os.File // non-blocking, registered with the runtime poller
}

// openSwitchPort opens a packet socket on interface ifname inside h. The
// socket keeps its namespace, so it is used from ordinary goroutines.
func openSwitchPort(h *Host, ifname string) (switchPort, error) {
	return In(h, func() (switchPort, error) {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return nil, err
		}
		proto := htons(unix.ETH_P_ALL)
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return nil, fmt.Errorf("opening packet socket: %w", err)
		}
		for _, o := range []struct {
			name string
			opt  int
		}{{"PACKET_VNET_HDR", unix.PACKET_VNET_HDR}, {"PACKET_IGNORE_OUTGOING", unix.PACKET_IGNORE_OUTGOING}} {
			if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, o.opt, 1); err != nil {
				unix.Close(fd)
				return nil, fmt.Errorf("setting %s: %w", o.name, err)
			}
		}
		// Room for bursts while the switch goroutine is busy.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("binding packet socket to %s: %w", ifname, err)
		}
		return &packetPort{f: os.NewFile(uintptr(fd), "packet:"+ifname)}, nil
	})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (p *packetPort) Read(b []byte) (int, error) { return p.f.Read(b) }

func (p *packetPort) Close() error { return p.f.Close() }

// WriteFrame sends b (vnet header + frame) without waiting: a socket
// buffer that is full means a congested port, and the frame is dropped.
func (p *packetPort) WriteFrame(b []byte) error {
	rc, err := p.f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		_, werr = unix.Write(int(fd), b)
		return true // never wait for writability
	})
	if err != nil {
		return err
	}
	return werr
}
