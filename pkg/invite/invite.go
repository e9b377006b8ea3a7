// Package invite is how two peerline nodes first learn of each other: the
// invite code one node prints (`peerline invite`) and the other accepts
// (`peerline join CODE`), the proof of the code's one-time secret that the
// joiner sends, the inviter's store of pending invites, and the Hello both
// sides exchange while pairing.
//
// A code holds everything the joiner needs and nothing it can get wrong
// silently: the inviter's public key (which the joiner pins), the rendezvous
// servers through which to reach it (with their keys, so the joiner can talk
// to them authenticated), a one-time secret and an expiry. The secret never
// crosses a rendezvous server in the clear: the joiner sends
// Proof(secret, inviter, joiner) inside a box sealed for the inviter
// (rendezvous.PeerAEAD), so a server that copies the box learns nothing it
// could use, and the proof names the joiner, so it cannot be replayed by
// anyone else.
//
// # Code format
//
// The code is binary, written in Crockford's base32 (digits and letters
// without I, L, O, U; case does not matter; O reads as 0 and I, L as 1;
// dashes and spaces are ignored), shown in groups of five:
//
//	version(1) = 1
//	flags(1): bits 0-1 number of servers - 1; other bits zero
//	expires(4): Unix seconds, big-endian
//	inviter(32) secret(16)
//	name-length(1) name(≤ 32, UTF-8)
//	per server:
//	  kind(1): bits 0-1 host kind (0 DNS name, 1 IPv4, 2 IPv6),
//	           bit 2 port follows (else 3478),
//	           bit 3 second port follows (else port + 1); other bits zero
//	  DNS name: char-count(1), then three characters from
//	           "\0abcdefghijklmnopqrstuvwxyz0123456789-." per two bytes
//	           (base 40), so a typical host name costs two thirds of its length
//	  IPv4: 4 bytes; IPv6: 16 bytes
//	  [port(2)] [second port(2)] key(32)
//	crc(4): CRC-32C of everything before, big-endian
//
// The CRC comes first when parsing: any change of one character (or two
// neighbouring ones) changes at most ten consecutive bits, and CRC-32 catches
// every burst that short, so a mistyped code is reported as a typo, never as
// a different invite. A future version must keep the version byte first and
// the CRC last so that this version says "update" rather than "typo".
//
// # Short codes
//
// A version-1 code is long (160 to 190 characters for one server) because
// it carries two 32-byte keys. A version-2 code (ShortCode: 48 characters
// for a server by IPv4 address, 60 for one named rv.example.org) holds only
// what the joiner needs to fetch the rest, and the secret, with the CRC
// last as in version 1, so it catches typos as well:
//
//	version(1) = 2
//	flags(1): the server's kind byte as in version 1 (host kind, ports
//	          follow); bits 4-7 zero
//	expires(4) secret(16)
//	the server's host and ports as in version 1, without its key
//	crc(4): CRC-32C of everything before, big-endian
//
// The rest (inviter key, name, every server with its key, the expiry
// again) is the invite's blob (SealBlob), which the inviter stores on its
// rendezvous servers under BlobID(secret). The joiner fetches it from the
// server the code names and opens it (Open) with the secret. Both the ID
// and the blob's key are derived from the secret with their own labels, so
// the server, which sees the ID and the ciphertext, can neither read the
// blob nor make one the joiner would accept. The joiner learns the
// inviter's key from the blob only, so a short code is exactly as strong as
// its 128-bit secret, as a long one is.
package invite

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/peerline/peerline/pkg/nodekey"
)

// Version is the code format this package writes.
const Version = 1

// Limits of an invite.
const (
	MaxServers = 4
	MaxNameLen = 32 // bytes of UTF-8
	// DefaultPort is the rendezvous server's usual main port; its second
	// port is usually DefaultPort+1. Both cost nothing in a code.
	DefaultPort = 3478
)

// URIPrefix starts the QR form of a code. It is upper case, like the code,
// so that the whole URI fits QR's alphanumeric mode (5.5 bits a character
// instead of 8), which makes the symbol smaller and easier to scan.
const URIPrefix = "PEERLINE:JOIN/"

// Errors from Parse and Open. Each says what the person holding the code
// should do.
var (
	ErrTypo      = errors.New("the invite code has a typo: check it letter by letter")
	ErrVersion   = errors.New("the invite was made by a newer peerline: update this Pi")
	ErrMalformed = errors.New("this is not a valid peerline invite: ask the inviter for a new one (`peerline invite`)")
	// ErrBlob is Open's error: the blob fetched for a short code is not
	// that code's. The wrapped text says whether it did not open (changed,
	// or sealed with another secret) or opened but disagrees with the code.
	ErrBlob = errors.New("the rest of the invite, stored on the rendezvous server, does not match the code: ask the inviter for a new code (`peerline invite`)")
)

// Server is a rendezvous server as an invite names it.
type Server struct {
	// Host is a DNS name or an IP literal (no brackets, no zone).
	Host string
	// Port and Port2 are the server's main and second UDP port.
	Port, Port2 uint16
	// Key is the server's public key (rendezvousd -public-key).
	Key nodekey.Key
}

// Invite is what a code carries.
type Invite struct {
	// Inviter is the inviting node's public key; the joiner pins it.
	Inviter nodekey.Key
	// Name is the inviter's node name, for display only (it proves nothing).
	Name string
	// Servers are the inviter's rendezvous servers, 1 to MaxServers.
	Servers []Server
	// Secret is the one-time secret the joiner proves it knows.
	Secret [16]byte
	// Expires is when the inviter stops accepting the code (whole seconds).
	Expires time.Time

	// short marks an invite parsed from a version-2 code and not yet
	// opened: Inviter, Name and the servers' keys are still unknown, and
	// nothing may trust or re-encode them as a long code.
	short bool
}

// Expired reports whether the invite is no longer accepted at now.
func (iv Invite) Expired(now time.Time) bool { return !now.Before(iv.Expires) }

// ID names the invite in lists and logs without revealing its secret.
func (iv Invite) ID() string { return secretID(iv.Secret) }

func secretID(secret [16]byte) string {
	h := sha256.New()
	h.Write([]byte("peerline invite id v1"))
	h.Write(secret[:])
	return hex.EncodeToString(h.Sum(nil)[:4])
}

// hostnameRE is a DNS name as pkg/config accepts one for a rendezvous
// server, in the lower case a code carries.
var hostnameRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

const maxHostLen = 253

// Validate reports why iv cannot be written as a code, if it cannot. A
// Short invite is checked as what its version-2 code holds (one server's
// address, the expiry); any other as a complete invite, which Code,
// ShortCode and SealBlob can all write.
func (iv Invite) Validate() error {
	if iv.short {
		if len(iv.Servers) != 1 {
			return fmt.Errorf("short invite names %d rendezvous servers; its code names exactly one", len(iv.Servers))
		}
		if err := validServer(1, iv.Servers[0], false); err != nil {
			return err
		}
		return validExpiry(iv.Expires)
	}
	if iv.Inviter.IsZero() {
		return errors.New("invite has no inviter key")
	}
	if err := validName(iv.Name); err != nil {
		return err
	}
	if n := len(iv.Servers); n < 1 || n > MaxServers {
		return fmt.Errorf("invite lists %d rendezvous servers; it needs 1 to %d (add one to the config's \"rendezvous\")", n, MaxServers)
	}
	for n, s := range iv.Servers {
		if err := validServer(n+1, s, true); err != nil {
			return err
		}
	}
	return validExpiry(iv.Expires)
}

// validServer checks the n-th server; needKey is false for the one a
// version-2 code names, whose key only the blob holds.
func validServer(n int, s Server, needKey bool) error {
	if _, _, err := hostKind(s.Host); err != nil {
		return fmt.Errorf("rendezvous server %d: %w", n, err)
	}
	if s.Port == 0 || s.Port2 == 0 || s.Port == s.Port2 {
		return fmt.Errorf("rendezvous server %d (%s): ports %d and %d: need two different ports from 1 to 65535", n, s.Host, s.Port, s.Port2)
	}
	if needKey && s.Key.IsZero() {
		return fmt.Errorf("rendezvous server %d (%s) has no key; get it with `rendezvousd -public-key` on the server", n, s.Host)
	}
	return nil
}

// validExpiry checks that an expiry fits a code's 32 bits of Unix seconds.
func validExpiry(t time.Time) error {
	if sec := t.Unix(); t.IsZero() || sec < 0 || sec > 1<<32-1 {
		return fmt.Errorf("invite expiry %v is out of range", t)
	}
	return nil
}

// validName checks a node name shown to people: short, UTF-8, and free of
// anything that could garble or disguise a terminal line (control
// characters, bidirectional overrides, line separators).
func validName(name string) error {
	if len(name) > MaxNameLen {
		return fmt.Errorf("node name %q is %d bytes; use at most %d", name, len(name), MaxNameLen)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("node name %q is not UTF-8", name)
	}
	for _, r := range name {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || unicode.In(r, unicode.Zl, unicode.Zp) {
			return fmt.Errorf("node name %q contains the control character %U; use letters, digits and punctuation", name, r)
		}
	}
	return nil
}

// Host kinds in a code.
const (
	kindName = 0
	kindIPv4 = 1
	kindIPv6 = 2

	flagPort  = 1 << 2
	flagPort2 = 1 << 3
)

// hostKind classifies a host and returns its canonical form.
func hostKind(host string) (kind byte, canon string, err error) {
	if a, err := netip.ParseAddr(host); err == nil {
		switch {
		case a.Zone() != "":
			return 0, "", fmt.Errorf("host %q has a zone; use an address that routes from anywhere", host)
		case a.IsUnspecified() || a.IsMulticast():
			return 0, "", fmt.Errorf("host %q is not a server's address", host)
		case a.Is4():
			return kindIPv4, a.String(), nil
		default:
			return kindIPv6, a.String(), nil
		}
	}
	lower := strings.ToLower(host)
	if len(lower) > maxHostLen || !hostnameRE.MatchString(lower) {
		return 0, "", fmt.Errorf("host %q is neither an IP address nor a DNS name", host)
	}
	return kindName, lower, nil
}

// Code returns the invite as people read and type it: base32 in groups of
// five separated by dashes. It panics if iv is not valid (see Validate) or
// is Short (a short invite has no inviter key to write until Open);
// invites from Store.Create always are valid.
func (iv Invite) Code() string { return group(encode32(iv.mustBinary())) }

// URI returns the data for a QR code: URIPrefix and the code without
// dashes. Parse accepts it as well.
func (iv Invite) URI() string { return URIPrefix + encode32(iv.mustBinary()) }

func (iv Invite) mustBinary() []byte {
	b, err := iv.appendBinary(nil)
	if err != nil {
		panic("invite: encoding an invalid invite: " + err.Error())
	}
	return b
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (iv Invite) appendBinary(b []byte) ([]byte, error) {
	if iv.short {
		return nil, errors.New("a short invite has no inviter key until it is opened with its blob")
	}
	if err := iv.Validate(); err != nil {
		return nil, err
	}
	start := len(b)
	b = append(b, Version, byte(len(iv.Servers)-1))
	b = binary.BigEndian.AppendUint32(b, uint32(iv.Expires.Unix()))
	b = append(b, iv.Inviter[:]...)
	b = append(b, iv.Secret[:]...)
	b = append(b, byte(len(iv.Name)))
	b = append(b, iv.Name...)
	for _, s := range iv.Servers {
		b = appendServer(b, s)
		b = append(b, s.Key[:]...)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli)), nil
}

// appendServer appends a valid server's kind byte, host and ports, without
// its key: all a version-2 code says about it.
func appendServer(b []byte, s Server) []byte {
	kind, host, _ := hostKind(s.Host)
	flags := kind
	if s.Port != DefaultPort {
		flags |= flagPort
	}
	if s.Port2 != s.Port+1 {
		flags |= flagPort2
	}
	b = append(b, flags)
	switch kind {
	case kindName:
		b = append(b, byte(len(host)))
		b = packName(b, host)
	case kindIPv4:
		a4 := netip.MustParseAddr(host).As4()
		b = append(b, a4[:]...)
	case kindIPv6:
		a16 := netip.MustParseAddr(host).As16()
		b = append(b, a16[:]...)
	}
	if flags&flagPort != 0 {
		b = binary.BigEndian.AppendUint16(b, s.Port)
	}
	if flags&flagPort2 != 0 {
		b = binary.BigEndian.AppendUint16(b, s.Port2)
	}
	return b
}

// maxCodeChars bounds what Parse reads, white space included.
const maxCodeChars = 4096

// Parse reads a code as Code, URI, ShortCode or ShortURI wrote it,
// forgiving case, dashes, spaces and line breaks. Its errors are ErrTypo,
// ErrVersion or ErrMalformed (test with errors.Is), with details. It does
// not check the expiry: compare Expired with the clock. An invite from a
// short code is Short: Open it with its blob before using it.
func Parse(code string) (Invite, error) {
	// The longest code (four servers with 253-character names) has under
	// 1,800 characters with its dashes; refusing far more up front keeps
	// the cost of hostile or pasted junk small.
	if len(code) > maxCodeChars {
		return Invite{}, fmt.Errorf("%w (it has %d characters; a code has fewer than %d)", ErrMalformed, len(code), maxCodeChars)
	}
	s := strings.TrimSpace(code)
	if len(s) >= len(URIPrefix) && strings.EqualFold(s[:len(URIPrefix)], URIPrefix) {
		s = s[len(URIPrefix):]
	}
	b, err := decode32(s)
	if err != nil {
		return Invite{}, err
	}
	// The shortest code of each version: no name, one server of the
	// smallest kind (a one-character DNS name or an IPv4 address). The
	// version byte may itself be mistyped, so this only picks a clearer
	// message; the CRC decides.
	minLen := 2 + 4 + 16 + 3 + 4
	if len(b) > 0 && b[0] == Version {
		minLen = 2 + 4 + nodekey.Len + 16 + 1 + 4
	}
	if len(b) < minLen {
		return Invite{}, fmt.Errorf("%w (it is too short: part of it is missing)", ErrTypo)
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return Invite{}, ErrTypo
	}
	switch {
	case body[0] == Version:
		return parseBody(body)
	case body[0] == VersionShort:
		return parseShort(body)
	case body[0] > VersionShort:
		return Invite{}, ErrVersion
	}
	return Invite{}, fmt.Errorf("%w (unknown version %d)", ErrMalformed, body[0])
}

// reader takes bytes off the front of a code; once short, it stays short.
type reader struct {
	b     []byte
	short bool
}

func (r *reader) take(n int) []byte {
	if r.short || len(r.b) < n {
		r.short = true
		return make([]byte, n)
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) byte() byte { return r.take(1)[0] }

func parseBody(body []byte) (Invite, error) {
	bad := func(format string, args ...any) (Invite, error) {
		return Invite{}, fmt.Errorf("%w (%s)", ErrMalformed, fmt.Sprintf(format, args...))
	}
	r := &reader{b: body[1:]}
	var iv Invite
	flags := r.byte()
	if flags&^3 != 0 {
		return bad("unknown flags %#x", flags)
	}
	iv.Expires = time.Unix(int64(binary.BigEndian.Uint32(r.take(4))), 0)
	copy(iv.Inviter[:], r.take(nodekey.Len))
	copy(iv.Secret[:], r.take(16))
	nameLen := int(r.byte())
	if nameLen > MaxNameLen {
		return bad("name of %d bytes", nameLen)
	}
	iv.Name = string(r.take(nameLen))
	iv.Servers = make([]Server, int(flags&3)+1)
	for n := range iv.Servers {
		s, err := readServer(r, r.byte())
		if err != nil {
			return bad("server %d: %v", n+1, err)
		}
		copy(s.Key[:], r.take(nodekey.Len))
		iv.Servers[n] = s
	}
	switch {
	case r.short:
		return bad("truncated")
	case len(r.b) != 0:
		return bad("%d bytes left over", len(r.b))
	}
	if err := iv.Validate(); err != nil {
		return bad("%v", err)
	}
	// A canonical code is the only encoding of its invite; anything else
	// (a port spelled out that is the default, an IPv4 address in a DNS
	// name field) did not come from Code.
	if again, _ := iv.appendBinary(nil); string(again[:len(again)-4]) != string(body) {
		return bad("not in canonical form")
	}
	return iv, nil
}

// readServer reads what appendServer wrote after the kind byte.
func readServer(r *reader, kind byte) (Server, error) {
	var s Server
	if kind&^(3|flagPort|flagPort2) != 0 {
		return s, fmt.Errorf("unknown flags %#x", kind)
	}
	switch kind & 3 {
	case kindName:
		chars := int(r.byte())
		host, ok := unpackName(r.take((chars+2)/3*2), chars)
		if !ok {
			return s, errors.New("bad host name")
		}
		s.Host = host
	case kindIPv4:
		s.Host = netip.AddrFrom4([4]byte(r.take(4))).String()
	case kindIPv6:
		s.Host = netip.AddrFrom16([16]byte(r.take(16))).String()
	default:
		return s, errors.New("unknown host kind")
	}
	s.Port = DefaultPort
	if kind&flagPort != 0 {
		s.Port = binary.BigEndian.Uint16(r.take(2))
	}
	s.Port2 = s.Port + 1
	if kind&flagPort2 != 0 {
		s.Port2 = binary.BigEndian.Uint16(r.take(2))
	}
	return s, nil
}

// nameChars are the characters of a DNS name in base 40; 0 pads.
const nameChars = "\x00abcdefghijklmnopqrstuvwxyz0123456789-."

// packName appends a lower-case DNS name three characters per two bytes.
func packName(b []byte, name string) []byte {
	for i := 0; i < len(name); i += 3 {
		var v uint16
		for j := i; j < i+3; j++ {
			v *= 40
			if j < len(name) {
				v += uint16(strings.IndexByte(nameChars, name[j]))
			}
		}
		b = binary.BigEndian.AppendUint16(b, v)
	}
	return b
}

// unpackName reverses packName, refusing padding inside the name and
// characters after its end.
func unpackName(p []byte, chars int) (string, bool) {
	if chars == 0 {
		return "", false
	}
	out := make([]byte, 0, len(p)/2*3)
	for i := 0; i+1 < len(p); i += 2 {
		v := int(binary.BigEndian.Uint16(p[i:]))
		if v >= 40*40*40 {
			return "", false
		}
		for _, d := range [3]int{v / 1600, v / 40 % 40, v % 40} {
			if d >= len(nameChars) {
				return "", false
			}
			out = append(out, nameChars[d])
		}
	}
	for j, c := range out {
		if (j < chars) != (c != 0) {
			return "", false
		}
	}
	return string(out[:chars]), true
}
