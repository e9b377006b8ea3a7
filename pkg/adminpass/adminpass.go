// Package adminpass stores the web console's admin password as an argon2id
// hash (RFC 9106) in a file in the node's state directory. Both ways of
// setting it use this package: the console's first-use page and the
// admin_password line of peerline.txt, which the boot service hashes and
// removes from the card.
//
// The hash is written in the PHC string form
// ($argon2id$v=19$m=...,t=...,p=...$salt$hash), so the cost can be raised
// later without invalidating stored passwords.
package adminpass

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/peerline/peerline/pkg/atomicfile"
)

// FileName is the hash's file in the state directory.
const FileName = "admin-password"

// Path is the password file of a node with this state directory.
func Path(stateDir string) string { return filepath.Join(stateDir, FileName) }

// Params are argon2id's cost parameters.
type Params struct {
	// Memory in KiB, Time in passes, Threads in lanes.
	Memory  uint32
	Time    uint32
	Threads uint8
}

// Default costs 32 MiB and, on the shared x86 build machine,
// 0.15-0.37 s (BenchmarkHashDefault); a Pi is slower. Cheap for one
// login, dear for someone trying many (logins are also rate-limited, and
// one hash runs at a time, so memory stays bounded).
var Default = Params{Memory: 32 << 10, Time: 2, Threads: 2}

// Length limits: a passphrase may be long, but not so long that hashing it
// becomes the attack.
const (
	MinLength = 8
	MaxLength = 128
)

// ErrNotSet means no password has been set yet.
var ErrNotSet = errors.New("no admin password is set")

// Check says what is wrong with a new password, in words for its owner.
func Check(pw string) error {
	switch n := utf8.RuneCountInString(pw); {
	case !utf8.ValidString(pw):
		return errors.New("the password is not valid text")
	case n < MinLength:
		return fmt.Errorf("the password has %d characters; use at least %d (a few words are easy to remember)", n, MinLength)
	case len(pw) > MaxLength:
		return fmt.Errorf("the password is %d bytes long; use at most %d", len(pw), MaxLength)
	}
	return nil
}

// Hash returns the PHC string for pw with a fresh random salt.
func Hash(pw string, p Params) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Bounds on the parameters read back from a file, so that a damaged or
// planted file cannot make one login take a gigabyte or a minute.
const (
	maxMemory  = 256 << 10
	maxTime    = 16
	maxThreads = 16
)

// Verify reports whether pw matches the PHC string encoded; a malformed
// string is an error, never a match.
func Verify(encoded, pw string) (bool, error) {
	parts := strings.Split(strings.TrimSpace(encoded), "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return false, errors.New("the stored password hash is not an argon2id hash")
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false, errors.New("the stored password hash has an unknown argon2 version")
	}
	var p Params
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil ||
		p.Memory < 8 || p.Memory > maxMemory || p.Time < 1 || p.Time > maxTime || p.Threads < 1 || p.Threads > maxThreads {
		return false, errors.New("the stored password hash has bad parameters")
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(want) < 16 || len(want) > 64 {
		return false, errors.New("the stored password hash is damaged")
	}
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// Load returns the stored hash, or ErrNotSet.
func Load(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", ErrNotSet
	}
	if err != nil {
		return "", fmt.Errorf("reading the admin password file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", ErrNotSet
	}
	return s, nil
}

// Store writes a hash, readable by root only.
func Store(path, encoded string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("saving the admin password: %w", err)
	}
	if err := atomicfile.WriteFile(path, []byte(encoded+"\n"), 0o600); err != nil {
		return fmt.Errorf("saving the admin password: %w", err)
	}
	return nil
}

// Set hashes pw with p and stores the hash at path: what every place that
// sets the password (the console, peerline.txt) does.
func Set(path, pw string, p Params) error {
	enc, err := Hash(pw, p)
	if err != nil {
		return err
	}
	return Store(path, enc)
}
