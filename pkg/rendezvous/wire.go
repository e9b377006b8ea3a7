package rendezvous

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/peerline/peerline/pkg/nodekey"
)

// Header values.
const (
	Magic   = 0xF5
	Version = 1
	// HeaderLen is magic, version, type and a reserved zero byte.
	HeaderLen = 4
)

// Type is a message type. Requests (node to server) and replies or pushes
// (server to node) have distinct types, and the type is authenticated.
type Type uint8

const (
	TypeCookie          Type = 0x01 // server → node, not sealed
	TypeRegister        Type = 0x10 // node → server
	TypeRegisterReply   Type = 0x11 // server → node
	TypeConnect         Type = 0x12 // node → server
	TypeConnectReply    Type = 0x13 // server → node
	TypeIncoming        Type = 0x14 // server → node (pushed)
	TypePunch           Type = 0x15 // server → node (pushed)
	TypeUnregister      Type = 0x16 // node → server
	TypeUnregisterReply Type = 0x17 // server → node
	TypeInvitePut       Type = 0x18 // node → server
	TypeInvitePutReply  Type = 0x19 // server → node
	TypeInviteJoin      Type = 0x1A // server → node (pushed): a join box for an invite the node stored
	TypeRelay           Type = 0x20 // node → server → node, not sealed
	TypeProbe           Type = 0x30 // node → node, sealed with PeerAEAD
	TypeProbeReply      Type = 0x31 // node → node, sealed with PeerAEAD
	TypeBye             Type = 0x32 // node → node, sealed with PeerAEAD: going offline
	TypePair            Type = 0x33 // node → node, sealed with PeerAEAD: pairing data (PairMsg)
	TypeInviteGet       Type = 0x40 // anyone → server, not sealed
	TypeInvite          Type = 0x41 // server → anyone, not sealed; never longer than its InviteGet
)

// Sealed reports whether messages of type t travel in a sealed envelope.
func (t Type) Sealed() bool {
	switch t {
	case TypeRegister, TypeRegisterReply, TypeConnect, TypeConnectReply,
		TypeIncoming, TypePunch, TypeUnregister, TypeUnregisterReply,
		TypeInvitePut, TypeInvitePutReply, TypeInviteJoin:
		return true
	}
	return false
}

// Request reports whether t is sent by a node to the server in an envelope.
func (t Type) Request() bool {
	return t == TypeRegister || t == TypeConnect || t == TypeUnregister || t == TypeInvitePut
}

func (t Type) String() string {
	switch t {
	case TypeCookie:
		return "cookie"
	case TypeRegister:
		return "register"
	case TypeRegisterReply:
		return "register-reply"
	case TypeConnect:
		return "connect"
	case TypeConnectReply:
		return "connect-reply"
	case TypeIncoming:
		return "incoming"
	case TypePunch:
		return "punch"
	case TypeUnregister:
		return "unregister"
	case TypeUnregisterReply:
		return "unregister-reply"
	case TypeInvitePut:
		return "invite-put"
	case TypeInvitePutReply:
		return "invite-put-reply"
	case TypeInviteJoin:
		return "invite-join"
	case TypeInviteGet:
		return "invite-get"
	case TypeInvite:
		return "invite"
	case TypeRelay:
		return "relay"
	case TypeProbe:
		return "probe"
	case TypeProbeReply:
		return "probe-reply"
	case TypeBye:
		return "bye"
	case TypePair:
		return "pair"
	}
	return fmt.Sprintf("type(%#x)", uint8(t))
}

func known(t Type) bool {
	switch t {
	case TypeCookie, TypeRelay, TypeProbe, TypeProbeReply, TypeBye, TypePair, TypeInviteGet, TypeInvite:
		return true
	}
	return t.Sealed()
}

// Errors returned by the parsers. Callers count them; none is ever answered.
var (
	ErrShort     = errors.New("rendezvous: message too short")
	ErrMagic     = errors.New("rendezvous: not a rendezvous message")
	ErrVersion   = errors.New("rendezvous: unknown version")
	ErrType      = errors.New("rendezvous: unknown message type")
	ErrMalformed = errors.New("rendezvous: malformed message")
	ErrTooLong   = errors.New("rendezvous: message too long")
)

// Limits.
const (
	// MaxBox is the largest node-to-node box a Connect, Incoming or Punch
	// carries: room for a few endpoints and pairing data, well below a
	// 1280-byte IPv6 datagram with every header.
	MaxBox = 512
	// MaxPacket is the largest datagram a node or server needs to read.
	MaxPacket = 1500
	// MaxLocalEndpoints bounds the LAN endpoints in a PeerInfo.
	MaxLocalEndpoints = 8
)

// AppendHeader appends the 4-byte header for type t.
func AppendHeader(dst []byte, t Type) []byte {
	return append(dst, Magic, Version, byte(t), 0)
}

// ParseHeader checks the header of b and returns its type. It costs a few
// comparisons, so a server can drop junk before any cryptography.
func ParseHeader(b []byte) (Type, error) {
	if len(b) < HeaderLen {
		return 0, ErrShort
	}
	if b[0] != Magic {
		return 0, ErrMagic
	}
	if b[1] != Version {
		return 0, ErrVersion
	}
	t := Type(b[2])
	if !known(t) || b[3] != 0 {
		return 0, ErrType
	}
	return t, nil
}

// IsRendezvous reports whether b looks like a rendezvous datagram, for a
// node demultiplexing its WireGuard socket.
func IsRendezvous(b []byte) bool { return len(b) >= HeaderLen && b[0] == Magic }

// Message is a sealed message body.
type Message interface {
	Type() Type
	// Append appends the body (not the header or envelope) to dst.
	Append(dst []byte) []byte
}

// ReplyID ties a reply to its request: the first 8 bytes of the request's
// envelope nonce.
type ReplyID [8]byte

// Register announces a node to the server on the port it is sent to. Its
// body is empty; the sender, time and source address are in the envelope and
// the datagram.
type Register struct{}

// RegisterReply tells a node the source address the server saw (its NAT
// mapping towards that server port) and how long the registration lasts.
type RegisterReply struct {
	ReplyTo  ReplyID
	Observed netip.AddrPort
	Port     uint8  // server port index: 0 (main) or 1 (second)
	TTL      uint16 // seconds until the registration expires without refresh
}

// Connect asks the server to introduce the sender to Target. Box is sealed
// for Target (PeerAEAD); the server forwards it unread.
type Connect struct {
	Target nodekey.Key
	Box    []byte
}

// ConnectReply acknowledges a Connect. It says nothing about the target:
// whether it is online or paired is for the target to show by connecting
// back.
type ConnectReply struct {
	ReplyTo ReplyID
	Status  Status
}

// Status is the outcome of a request.
type Status uint8

const (
	StatusOK            Status = 0 // accepted (forwarded, or waiting for the other side)
	StatusRateLimited   Status = 1 // too many requests; retry later
	StatusNotRegistered Status = 2 // the sender must register first
)

// Incoming tells a node that From wants to connect, with From's box. The
// node answers with Connect(From) if it is paired with From.
type Incoming struct {
	From nodekey.Key
	Box  []byte
}

// Punch tells a node that Peer asked for it too: here are Peer's endpoints
// as the server saw them on its two ports (a zero AddrPort if unknown),
// Peer's box, when to start probing (DelayMs after receipt), and a relay
// session id for sending WireGuard packets through the server.
type Punch struct {
	Peer      nodekey.Key
	Endpoints [2]netip.AddrPort
	DelayMs   uint16
	Session   uint64
	Box       []byte
}

// Unregister removes the sender's registration (on shutdown).
type Unregister struct{}

// UnregisterReply acknowledges an Unregister.
type UnregisterReply struct{ ReplyTo ReplyID }

func (Register) Type() Type        { return TypeRegister }
func (RegisterReply) Type() Type   { return TypeRegisterReply }
func (Connect) Type() Type         { return TypeConnect }
func (ConnectReply) Type() Type    { return TypeConnectReply }
func (Incoming) Type() Type        { return TypeIncoming }
func (Punch) Type() Type           { return TypePunch }
func (Unregister) Type() Type      { return TypeUnregister }
func (UnregisterReply) Type() Type { return TypeUnregisterReply }

func (Register) Append(dst []byte) []byte { return dst }

func (m RegisterReply) Append(dst []byte) []byte {
	dst = append(dst, m.ReplyTo[:]...)
	dst = AppendAddrPort(dst, m.Observed)
	dst = append(dst, m.Port)
	return binary.BigEndian.AppendUint16(dst, m.TTL)
}

func (m Connect) Append(dst []byte) []byte {
	dst = append(dst, m.Target[:]...)
	return appendBox(dst, m.Box)
}

func (m ConnectReply) Append(dst []byte) []byte {
	dst = append(dst, m.ReplyTo[:]...)
	return append(dst, byte(m.Status))
}

func (m Incoming) Append(dst []byte) []byte {
	dst = append(dst, m.From[:]...)
	return appendBox(dst, m.Box)
}

func (m Punch) Append(dst []byte) []byte {
	dst = append(dst, m.Peer[:]...)
	dst = AppendAddrPort(dst, m.Endpoints[0])
	dst = AppendAddrPort(dst, m.Endpoints[1])
	dst = binary.BigEndian.AppendUint16(dst, m.DelayMs)
	dst = binary.BigEndian.AppendUint64(dst, m.Session)
	return appendBox(dst, m.Box)
}

func (Unregister) Append(dst []byte) []byte { return dst }

func (m UnregisterReply) Append(dst []byte) []byte { return append(dst, m.ReplyTo[:]...) }

// ParseBody parses the plaintext body of a sealed message of type t.
// Trailing bytes must be zero: they are padding, which requests carry so
// that a reply is never larger than its request.
func ParseBody(t Type, b []byte) (Message, error) {
	r := reader{b: b}
	var m Message
	switch t {
	case TypeRegister:
		m = Register{}
	case TypeRegisterReply:
		var v RegisterReply
		r.bytes(v.ReplyTo[:])
		v.Observed = r.addrPort()
		v.Port = r.u8()
		v.TTL = r.u16()
		if v.Port > 1 {
			r.fail()
		}
		m = v
	case TypeConnect:
		var v Connect
		r.bytes(v.Target[:])
		v.Box = r.box()
		m = v
	case TypeConnectReply:
		var v ConnectReply
		r.bytes(v.ReplyTo[:])
		v.Status = Status(r.u8())
		m = v
	case TypeIncoming:
		var v Incoming
		r.bytes(v.From[:])
		v.Box = r.box()
		m = v
	case TypePunch:
		var v Punch
		r.bytes(v.Peer[:])
		v.Endpoints[0] = r.addrPort()
		v.Endpoints[1] = r.addrPort()
		v.DelayMs = r.u16()
		v.Session = r.u64()
		v.Box = r.box()
		m = v
	case TypeUnregister:
		m = Unregister{}
	case TypeUnregisterReply:
		var v UnregisterReply
		r.bytes(v.ReplyTo[:])
		m = v
	case TypeInvitePut:
		m = parseInvitePut(&r)
	case TypeInvitePutReply:
		m = parseInvitePutReply(&r)
	case TypeInviteJoin:
		m = parseInviteJoin(&r)
	default:
		return nil, ErrType
	}
	if err := r.padding(); err != nil {
		return nil, err
	}
	return m, nil
}

// AddrPortLen is the encoded size of an endpoint: a 16-byte address (IPv4
// as IPv4-mapped IPv6) and a port. All zero means "none".
const AddrPortLen = 18

// AppendAddrPort appends the 18-byte form of ap.
func AppendAddrPort(dst []byte, ap netip.AddrPort) []byte {
	if !ap.IsValid() {
		return append(dst, make([]byte, AddrPortLen)...)
	}
	a := ap.Addr().As16()
	dst = append(dst, a[:]...)
	return binary.BigEndian.AppendUint16(dst, ap.Port())
}

func parseAddrPort(b []byte) (netip.AddrPort, bool) {
	a := netip.AddrFrom16([16]byte(b[:16]))
	port := binary.BigEndian.Uint16(b[16:])
	if a.IsUnspecified() && port == 0 {
		return netip.AddrPort{}, true
	}
	if a.IsUnspecified() || port == 0 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), port), true
}

func appendBox(dst, box []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(box)))
	return append(dst, box...)
}

// reader reads fixed fields; after the first error every read returns zero
// and err stays set, so parsers read straight through and check once.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.err = ErrShort
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = ErrMalformed
	}
}

func (r *reader) bytes(dst []byte) { copy(dst, r.take(len(dst))) }

func (r *reader) u8() uint8 {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if b := r.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if b := r.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *reader) i64() int64 { return int64(r.u64()) }

func (r *reader) addrPort() netip.AddrPort {
	b := r.take(AddrPortLen)
	if b == nil {
		return netip.AddrPort{}
	}
	ap, ok := parseAddrPort(b)
	if !ok {
		r.fail()
	}
	return ap
}

func (r *reader) box() []byte { return r.prefixed(MaxBox) }

// prefixed reads a 2-byte length and that many bytes, at most max; empty is
// nil.
func (r *reader) prefixed(max int) []byte {
	n := int(r.u16())
	if n > max {
		if r.err == nil {
			r.err = ErrTooLong
		}
		return nil
	}
	b := r.take(n)
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// padding checks that what is left is zero padding.
func (r *reader) padding() error {
	if r.err != nil {
		return r.err
	}
	for _, c := range r.b {
		if c != 0 {
			return ErrMalformed
		}
	}
	return nil
}

// Cookie is the server's answer to a sealed request whose cookie is missing,
// stale, or whose time is outside the window: the cookie to present from
// this source address, the request's ReplyID, and the server's clock (unix
// milliseconds) so a node with a wrong clock can correct its timestamps. It
// is not authenticated: forging it only denies service, which an on-path
// attacker can do anyway.
type Cookie struct {
	Cookie     [CookieLen]byte
	ReplyTo    ReplyID
	ServerTime int64
}

// CookieLen is the length of a return-routability cookie.
const CookieLen = 16

// CookieMsgLen is the size of a Cookie datagram; it is smaller than any
// sealed request, so answering with it never amplifies.
const CookieMsgLen = HeaderLen + CookieLen + 8 + 8

// Append appends the whole Cookie datagram.
func (m Cookie) Append(dst []byte) []byte {
	dst = AppendHeader(dst, TypeCookie)
	dst = append(dst, m.Cookie[:]...)
	dst = append(dst, m.ReplyTo[:]...)
	return binary.BigEndian.AppendUint64(dst, uint64(m.ServerTime))
}

// ParseCookie parses a whole Cookie datagram.
func ParseCookie(b []byte) (Cookie, error) {
	t, err := ParseHeader(b)
	if err != nil {
		return Cookie{}, err
	}
	if t != TypeCookie {
		return Cookie{}, ErrType
	}
	if len(b) != CookieMsgLen {
		return Cookie{}, ErrMalformed
	}
	r := reader{b: b[HeaderLen:]}
	var m Cookie
	r.bytes(m.Cookie[:])
	r.bytes(m.ReplyTo[:])
	m.ServerTime = r.i64()
	return m, r.err
}

// RelayHeaderLen is the overhead of a relayed packet.
const RelayHeaderLen = HeaderLen + 8

// AppendRelay appends a Relay datagram carrying payload in session.
func AppendRelay(dst []byte, session uint64, payload []byte) []byte {
	dst = AppendHeader(dst, TypeRelay)
	dst = binary.BigEndian.AppendUint64(dst, session)
	return append(dst, payload...)
}

// ParseRelay returns the session and payload of a Relay datagram. The
// payload aliases b.
func ParseRelay(b []byte) (session uint64, payload []byte, err error) {
	t, err := ParseHeader(b)
	if err != nil {
		return 0, nil, err
	}
	if t != TypeRelay {
		return 0, nil, ErrType
	}
	if len(b) < RelayHeaderLen {
		return 0, nil, ErrShort
	}
	session = binary.BigEndian.Uint64(b[HeaderLen:])
	if session == 0 {
		return 0, nil, ErrMalformed
	}
	return session, b[RelayHeaderLen:], nil
}

// PeerInfo is what one node tells another in a Box: its LAN endpoints (for
// two nodes behind the same NAT) and when it wrote this, so that a stale box
// replayed by a server can be told apart.
type PeerInfo struct {
	Time  int64 // unix milliseconds
	Local []netip.AddrPort
	// Pair is pairing data (pkg/invite's Hello) when the box is part of
	// joining by invite; nil otherwise. The rendezvous layer does not read
	// it.
	Pair []byte
}

// MaxPair bounds PeerInfo.Pair.
const MaxPair = 256

// Append appends the encoded PeerInfo.
func (p PeerInfo) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(p.Time))
	dst = append(dst, byte(len(p.Local)))
	for _, ap := range p.Local {
		dst = AppendAddrPort(dst, ap)
	}
	if p.Pair != nil {
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(p.Pair)))
		dst = append(dst, p.Pair...)
	}
	return dst
}

// ParsePeerInfo parses an opened Box.
func ParsePeerInfo(b []byte) (PeerInfo, error) {
	r := reader{b: b}
	var p PeerInfo
	p.Time = r.i64()
	n := int(r.u8())
	if n > MaxLocalEndpoints {
		return PeerInfo{}, ErrTooLong
	}
	for range n {
		ap := r.addrPort()
		if r.err == nil && !ap.IsValid() {
			r.fail()
		}
		p.Local = append(p.Local, ap)
	}
	if r.err == nil && len(r.b) > 0 {
		n := int(r.u16())
		if n > MaxPair {
			return PeerInfo{}, ErrTooLong
		}
		p.Pair = append([]byte{}, r.take(n)...)
	}
	if r.err != nil {
		return PeerInfo{}, r.err
	}
	if len(r.b) != 0 {
		return PeerInfo{}, ErrMalformed
	}
	return p, nil
}
