package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Generation returns the nftables ruleset generation of namespace ns: a
// counter the kernel bumps on every change to any table there. Reading it
// is one netlink round trip, no process, so the periodic check asks it
// first and lists a table (an nft run) only when it moved.
func (l Loader) Generation(ns string) (uint32, error) {
	var gen uint32
	err := l.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return err
		}
		tv := unix.Timeval{Sec: 2}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		if err := unix.Sendto(fd, getGenRequest(1), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return err
		}
		buf := make([]byte, 4096)
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return err
		}
		gen, err = parseGenReply(buf[:n])
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("reading the nftables generation in %s: %w", where(ns), err)
	}
	return gen, nil
}

const (
	nlmsgHeaderLen  = 16
	nfgenmsgLen     = 4
	msgTypeGetGen   = unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN
	msgTypeNewGen   = unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWGEN
	netlinkAttrHead = 4
	// nlaTypeMask clears the nested and byte-order flags of an attribute type.
	nlaTypeMask = 0x3fff
)

// getGenRequest is NFT_MSG_GETGEN: a netlink header and an nfgenmsg.
func getGenRequest(seq uint32) []byte {
	b := make([]byte, nlmsgHeaderLen+nfgenmsgLen)
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], msgTypeGetGen)
	binary.NativeEndian.PutUint16(b[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(b[8:], seq)
	b[16], b[17] = unix.AF_UNSPEC, unix.NFNETLINK_V0
	return b
}

var errNoGen = errors.New("no generation in the kernel's answer")

// parseGenReply finds NFTA_GEN_ID in the kernel's NFT_MSG_NEWGEN answer.
func parseGenReply(b []byte) (uint32, error) {
	for len(b) >= nlmsgHeaderLen {
		size := int(binary.NativeEndian.Uint32(b[0:]))
		typ := binary.NativeEndian.Uint16(b[4:])
		if size < nlmsgHeaderLen || size > len(b) {
			return 0, errNoGen
		}
		msg := b[nlmsgHeaderLen:size]
		switch typ {
		case unix.NLMSG_ERROR:
			if len(msg) >= 4 {
				if code := int32(binary.NativeEndian.Uint32(msg)); code != 0 {
					return 0, unix.Errno(-code)
				}
			}
		case msgTypeNewGen:
			if len(msg) < nfgenmsgLen {
				return 0, errNoGen
			}
			attrs := msg[nfgenmsgLen:]
			for len(attrs) >= netlinkAttrHead {
				alen := int(binary.NativeEndian.Uint16(attrs[0:]))
				atyp := binary.NativeEndian.Uint16(attrs[2:]) & nlaTypeMask
				if alen < netlinkAttrHead || alen > len(attrs) {
					return 0, errNoGen
				}
				if atyp == unix.NFTA_GEN_ID && alen >= netlinkAttrHead+4 {
					return binary.BigEndian.Uint32(attrs[netlinkAttrHead:]), nil
				}
				attrs = attrs[min((alen+3)&^3, len(attrs)):]
			}
			return 0, errNoGen
		}
		b = b[min((size+3)&^3, len(b)):]
	}
	return 0, errNoGen
}
