package invite

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/peerline/peerline/pkg/nodekey"
)

// VersionShort is the version of the short code format (ShortCode). Long
// codes keep Version.
const VersionShort = 2

// MaxBlobLen is the size of every blob SealBlob writes and the most Open
// accepts. All blobs have the same size so that the servers storing them
// learn nothing from it (not the name's length, not how many servers the
// invite lists). It is small enough for a rendezvous message (MaxBox 512)
// with room to spare, and holds, next to a 32-byte name, up to 4 servers
// that are IPv4 or IPv6 addresses (with default ports) or DNS names of up
// to 27 characters, 2 servers with names of up to 105 characters, or one
// of any length. SealBlob refuses anything larger: print the long code
// (Code) for such an invite.
const MaxBlobLen = 320

// Blob layout:
//
//	version(1) = blobVersion
//	nonce(24)
//	XChaCha20-Poly1305 with the key HKDF-SHA256(secret, no salt,
//	blobKeyLabel), associated data version and BlobID(secret), of:
//	  inviter(32) expires(4) name-length(1) name(≤ 32)
//	  flags(1): bits 0-1 number of servers - 1; other bits zero
//	  per server: as in a version-1 code (kind, host, ports, key)
//	  zeros up to the end
//	tag(16)
const (
	blobVersion  = 1
	blobNonceLen = chacha20poly1305.NonceSizeX
	blobOverhead = 1 + blobNonceLen + chacha20poly1305.Overhead
	// maxBlobPlain is the plaintext of a MaxBlobLen blob.
	maxBlobPlain = MaxBlobLen - blobOverhead
	// minBlobPlain holds no name and one server with a one-character
	// name. SealBlob pads every blob to MaxBlobLen, but Open takes less, so
	// that a later peerline may pad less without breaking this one.
	minBlobPlain = nodekey.Len + 4 + 1 + 1 + 1 + 3 + nodekey.Len
)

// Labels for what is derived from an invite's secret. Each use has its
// own, so that the ID the servers see says nothing about the key that
// opens the blob, and neither has anything in common with Proof or ID.
const (
	blobIDLabel  = "peerline invite blob id v1"
	blobKeyLabel = "peerline invite blob key v1"
	joinKeyLabel = "peerline invite join key v1"
	// joinNonceLabel keys the join box's synthetic nonce.
	joinNonceLabel = "peerline invite join nonce v1"
)

// derive returns n bytes derived from secret for the use label names.
func derive(secret [16]byte, label string, n int) []byte {
	k, err := hkdf.Key(sha256.New, secret[:], nil, label, n)
	if err != nil {
		// Only a length beyond 255 hash blocks fails.
		panic("invite: deriving " + label + ": " + err.Error())
	}
	return k
}

// BlobID is the ID under which the blob of the invite with this secret is
// stored. It is derived from the secret one way, so a server that sees it
// learns neither the secret nor the blob's key.
func BlobID(secret [16]byte) [16]byte {
	return [16]byte(derive(secret, blobIDLabel, 16))
}

func blobAEAD(secret [16]byte) cipher.AEAD { return secretAEAD(secret, blobKeyLabel) }

// secretAEAD is the XChaCha20-Poly1305 keyed for one use (label) of an
// invite's secret: the blob, or a join box.
func secretAEAD(secret [16]byte, label string) cipher.AEAD {
	a, err := chacha20poly1305.NewX(derive(secret, label, chacha20poly1305.KeySize))
	if err != nil {
		panic("invite: " + err.Error()) // only a key of the wrong size fails
	}
	return a
}

// blobAD is the associated data of a blob or a join box: its version and
// the invite's blob ID, so neither can be moved to another invite or read
// as another version, even by whoever holds the secret.
func blobAD(version byte, secret [16]byte) []byte {
	id := BlobID(secret)
	return append([]byte{version}, id[:]...)
}

// Short reports whether iv came from a version-2 code: then Inviter, Name
// and Servers (but for Servers[0]'s address, with a zero Key) are unknown
// until Open.
func (iv Invite) Short() bool { return iv.short }

// ShortCode is iv's version-2 code, naming iv.Servers[0] (its address
// only), in groups of five like Code. The joiner needs the blob
// (SealBlob) from that server as well. It panics if iv is not valid (see
// Validate).
func (iv Invite) ShortCode() string { return group(encode32(iv.mustShort())) }

// ShortURI is ShortCode for a QR code: URIPrefix and the code without
// dashes.
func (iv Invite) ShortURI() string { return URIPrefix + encode32(iv.mustShort()) }

func (iv Invite) mustShort() []byte {
	b, err := iv.appendShort(nil)
	if err != nil {
		panic("invite: encoding an invalid invite: " + err.Error())
	}
	return b
}

func (iv Invite) appendShort(b []byte) ([]byte, error) {
	if err := iv.Validate(); err != nil {
		return nil, err
	}
	start := len(b)
	srv := appendServer(nil, iv.Servers[0])
	b = append(b, VersionShort, srv[0])
	b = binary.BigEndian.AppendUint32(b, uint32(iv.Expires.Unix()))
	b = append(b, iv.Secret[:]...)
	b = append(b, srv[1:]...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli)), nil
}

// parseShort reads the body of a version-2 code whose CRC is correct.
func parseShort(body []byte) (Invite, error) {
	bad := func(format string, args ...any) (Invite, error) {
		return Invite{}, fmt.Errorf("%w (%s)", ErrMalformed, fmt.Sprintf(format, args...))
	}
	r := &reader{b: body[1:]}
	iv := Invite{short: true}
	flags := r.byte()
	iv.Expires = time.Unix(int64(binary.BigEndian.Uint32(r.take(4))), 0)
	copy(iv.Secret[:], r.take(16))
	s, err := readServer(r, flags)
	if err != nil {
		return bad("server: %v", err)
	}
	iv.Servers = []Server{s}
	switch {
	case r.short:
		return bad("truncated")
	case len(r.b) != 0:
		return bad("%d bytes left over", len(r.b))
	}
	if err := iv.Validate(); err != nil {
		return bad("%v", err)
	}
	if again, _ := iv.appendShort(nil); string(again[:len(again)-4]) != string(body) {
		return bad("not in canonical form")
	}
	return iv, nil
}

// appendBlobPlain appends the blob's plaintext, without padding, for a
// valid invite.
func (iv Invite) appendBlobPlain(b []byte) []byte {
	b = append(b, iv.Inviter[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(iv.Expires.Unix()))
	b = append(b, byte(len(iv.Name)))
	b = append(b, iv.Name...)
	b = append(b, byte(len(iv.Servers)-1))
	for _, s := range iv.Servers {
		b = appendServer(b, s)
		b = append(b, s.Key[:]...)
	}
	return b
}

// SealBlob returns iv's blob, MaxBlobLen bytes: its inviter key, name,
// expiry and all its servers with their keys, encrypted and authenticated
// with a key derived from iv.Secret, for the inviter to store on its
// servers under BlobID(iv.Secret). It fails if iv is not valid or Short,
// or lists more or longer servers than a blob holds (see MaxBlobLen).
func SealBlob(iv Invite) ([]byte, error) {
	if iv.short {
		return nil, errors.New("a short invite cannot be sealed: its inviter key is unknown until Open")
	}
	if err := iv.Validate(); err != nil {
		return nil, err
	}
	pt := iv.appendBlobPlain(make([]byte, 0, maxBlobPlain))
	if len(pt) > maxBlobPlain {
		return nil, fmt.Errorf("the invite's name and %d rendezvous servers take %d bytes, but a short code's blob holds %d: use the long code, or shorter server names", len(iv.Servers), len(pt), maxBlobPlain)
	}
	pt = pt[:maxBlobPlain] // the capacity was zeroed by make
	out := make([]byte, 1+blobNonceLen, MaxBlobLen)
	out[0] = blobVersion
	rand.Read(out[1:]) // never fails (crypto/rand since Go 1.24)
	return blobAEAD(iv.Secret).Seal(out, out[1:], pt, blobAD(blobVersion, iv.Secret)), nil
}

// Open completes a Short invite from its blob: it decrypts and verifies
// the blob with iv.Secret, checks that the blob's expiry is the code's and
// that it lists the code's server, then sets Inviter, Name and Servers
// (the blob's, in its order) and clears Short. Its errors wrap ErrBlob;
// on error iv is unchanged.
func (iv *Invite) Open(blob []byte) error {
	if !iv.short {
		return errors.New("invite: Open needs a short invite from Parse, and this one is complete")
	}
	if err := iv.Validate(); err != nil {
		return fmt.Errorf("invite: opening a short invite changed since Parse: %w", err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w (%s)", ErrBlob, fmt.Sprintf(format, args...))
	}
	if len(blob) < blobOverhead+minBlobPlain || len(blob) > MaxBlobLen {
		return bad("%d bytes, but a blob has %d to %d", len(blob), blobOverhead+minBlobPlain, MaxBlobLen)
	}
	// Not ErrVersion for a higher one: the blob comes from a server, which
	// could then make the joiner believe it needs an update. The code's
	// version fixes the blob's, so a new blob layout needs a new code
	// version, which Parse reports.
	if blob[0] != blobVersion {
		return bad("unknown blob version %d", blob[0])
	}
	nonce, sealed := blob[1:1+blobNonceLen], blob[1+blobNonceLen:]
	pt, err := blobAEAD(iv.Secret).Open(nil, nonce, sealed, blobAD(blob[0], iv.Secret))
	if err != nil {
		return bad("it does not open with the code's secret: it was changed, or stored for another code")
	}
	full, err := parseBlobPlain(pt)
	if err != nil {
		return bad("it opens with the code's secret but is malformed: %v", err)
	}
	full.Secret = iv.Secret
	if !full.Expires.Equal(iv.Expires) {
		return bad("it expires %v, the code %v", full.Expires.UTC(), iv.Expires.UTC())
	}
	want := iv.Servers[0]
	found := false
	for _, s := range full.Servers {
		if s.Host == want.Host && s.Port == want.Port && s.Port2 == want.Port2 {
			found = true
			break
		}
	}
	if !found {
		return bad("it does not list the code's rendezvous server %s (ports %d, %d)", want.Host, want.Port, want.Port2)
	}
	*iv = full
	return nil
}

// parseBlobPlain reads what appendBlobPlain wrote, and the zeros after it.
func parseBlobPlain(pt []byte) (Invite, error) {
	r := &reader{b: pt}
	var iv Invite
	copy(iv.Inviter[:], r.take(nodekey.Len))
	iv.Expires = time.Unix(int64(binary.BigEndian.Uint32(r.take(4))), 0)
	nameLen := int(r.byte())
	if nameLen > MaxNameLen {
		return Invite{}, fmt.Errorf("name of %d bytes", nameLen)
	}
	iv.Name = string(r.take(nameLen))
	flags := r.byte()
	if flags&^3 != 0 {
		return Invite{}, fmt.Errorf("unknown flags %#x", flags)
	}
	iv.Servers = make([]Server, int(flags)+1)
	for n := range iv.Servers {
		s, err := readServer(r, r.byte())
		if err != nil {
			return Invite{}, fmt.Errorf("server %d: %v", n+1, err)
		}
		copy(s.Key[:], r.take(nodekey.Len))
		iv.Servers[n] = s
	}
	if r.short {
		return Invite{}, errors.New("truncated")
	}
	for _, c := range r.b {
		if c != 0 {
			return Invite{}, errors.New("data after the servers")
		}
	}
	if err := iv.Validate(); err != nil {
		return Invite{}, err
	}
	// One encoding per invite, as for codes.
	if again := iv.appendBlobPlain(nil); string(again) != string(pt[:len(pt)-len(r.b)]) {
		return Invite{}, errors.New("not in canonical form")
	}
	return iv, nil
}
