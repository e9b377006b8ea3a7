package registrar

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/peerline/peerline/pkg/atomicfile"
	"github.com/peerline/peerline/pkg/numplan"
)

// PasswordsFile is the file in the state directory that keeps the lines'
// SIP passwords, readable by root alone (0600).
const PasswordsFile = "sip-passwords.json"

// Passwords are the lines' generated SIP passwords. A line gets its
// password the first time it is asked for (when its phone fetches its
// configuration file), and keeps it across restarts, so a provisioned
// phone goes on registering. Safe for concurrent use.
type Passwords struct {
	path string

	mu   sync.Mutex
	byLn map[int]string
}

// OpenPasswords reads the passwords kept in stateDir; a missing file is an
// empty table.
func OpenPasswords(stateDir string) (*Passwords, error) {
	p := &Passwords{path: filepath.Join(stateDir, PasswordsFile), byLn: map[int]string{}}
	b, err := os.ReadFile(p.path)
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the SIP passwords: %w", err)
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("reading the SIP passwords in %s: %w; remove the file and re-provision the phones (they fetch new passwords when they restart)", p.path, err)
	}
	for k, v := range m {
		line, err := strconv.Atoi(k)
		if err != nil || !numplan.ValidLine(line) || v == "" {
			return nil, fmt.Errorf("reading the SIP passwords in %s: entry %q is not a line's password; remove the file and re-provision the phones", p.path, k)
		}
		p.byLn[line] = v
	}
	return p, nil
}

// Lookup returns line's password, if it has one; it never makes one.
func (p *Passwords) Lookup(line int) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pw, ok := p.byLn[line]
	return pw, ok
}

// Get returns line's password, making and saving one if it has none.
func (p *Passwords) Get(line int) (string, error) {
	if !numplan.ValidLine(line) {
		return "", fmt.Errorf("line %d is outside %d-%d", line, numplan.MinLine, numplan.MaxLine)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if pw, ok := p.byLn[line]; ok {
		return pw, nil
	}
	pw := newPassword()
	p.byLn[line] = pw
	if err := p.saveLocked(); err != nil {
		delete(p.byLn, line)
		return "", err
	}
	return pw, nil
}

// Forget drops line's password, so the line's next phone gets a new one.
func (p *Passwords) Forget(line int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	pw, ok := p.byLn[line]
	if !ok {
		return nil
	}
	delete(p.byLn, line)
	if err := p.saveLocked(); err != nil {
		p.byLn[line] = pw
		return err
	}
	return nil
}

// Accounts is the registrar's view of the table: user "s" is line s.
func (p *Passwords) Accounts(user string) (line int, password string, ok bool) {
	line, err := strconv.Atoi(user)
	if err != nil || strconv.Itoa(line) != user || !numplan.ValidLine(line) {
		return 0, "", false
	}
	pw, ok := p.Lookup(line)
	return line, pw, ok
}

func (p *Passwords) saveLocked() error {
	m := make(map[string]string, len(p.byLn))
	for l, pw := range p.byLn {
		m[strconv.Itoa(l)] = pw
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(p.path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving the SIP passwords: %w", err)
	}
	return nil
}

// newPassword is 16 characters from a 32-letter alphabet without look-alike
// characters (80 bits): typed by hand on a phone's keypad if provisioning
// is not used, and far beyond guessing at the failure limit's pace.
func newPassword() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	for i := range b {
		b[i] = alphabet[b[i]&31]
	}
	return string(b[:])
}
