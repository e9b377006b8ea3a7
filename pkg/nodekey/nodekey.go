// Package nodekey is a node's WireGuard static key pair: the node's identity.
// The private key is made on the node and never leaves it; peers pin the
// public key.
package nodekey

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/crypto/curve25519"

	"github.com/peerline/peerline/pkg/atomicfile"
)

// Len is the length of a Curve25519 key.
const Len = 32

// Key is a Curve25519 private or public key.
type Key [Len]byte

// Generate returns a new clamped private key.
func Generate() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return Key{}, fmt.Errorf("generating key: %w", err)
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k, nil
}

// Public returns the public key of private key k.
func (k Key) Public() Key {
	var pub Key
	curve25519.ScalarBaseMult((*[32]byte)(&pub), (*[32]byte)(&k))
	return pub
}

// IsZero reports whether k is unset.
func (k Key) IsZero() bool { return k == Key{} }

// String is the base64 form that `wg` prints and config files hold.
func (k Key) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// Hex is the form WireGuard's UAPI expects.
func (k Key) Hex() string { return hex.EncodeToString(k[:]) }

// Parse reads a base64 key as `wg genkey`/`wg pubkey` print it.
func Parse(s string) (Key, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return Key{}, fmt.Errorf("key %q is not base64 (as printed by `wg pubkey`): %w", s, err)
	}
	if len(b) != Len {
		return Key{}, fmt.Errorf("key %q is %d bytes, want %d", s, len(b), Len)
	}
	var k Key
	copy(k[:], b)
	return k, nil
}

// MarshalText and UnmarshalText let config files hold keys in base64.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

func (k *Key) UnmarshalText(b []byte) error {
	p, err := Parse(string(b))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// LoadOrCreate reads the private key at path, or makes one there (mode 0600)
// on first start. created reports which happened.
func LoadOrCreate(path string) (k Key, created bool, err error) {
	b, err := os.ReadFile(path)
	if err == nil {
		k, err = Parse(string(b))
		if err != nil {
			return Key{}, false, fmt.Errorf("node key %s is damaged (%w); restore it from a backup, or delete it to make a new identity (every peer must then pair again)", path, err)
		}
		return k, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return Key{}, false, fmt.Errorf("reading node key: %w", err)
	}
	k, err = Generate()
	if err != nil {
		return Key{}, false, err
	}
	// WriteNew: the file appears complete and 0600 from its first moment,
	// and if another process (`peerlined -public-key` while the daemon
	// starts) made a key in the meantime, that one wins and we load it:
	// two keys handed out would be two identities.
	err = atomicfile.WriteNew(path, []byte(k.String()+"\n"), 0o600)
	if errors.Is(err, fs.ErrExist) {
		k, _, err := LoadOrCreate(path)
		return k, false, err
	}
	if err != nil {
		return Key{}, false, fmt.Errorf("saving new node key: %w", err)
	}
	return k, true, nil
}
