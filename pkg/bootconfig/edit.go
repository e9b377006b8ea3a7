package bootconfig

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/peerline/peerline/pkg/adminpass"
	"github.com/peerline/peerline/pkg/atomicfile"
	"github.com/peerline/peerline/pkg/config"
)

// Files in the state directory for the one-shot settings of peerline.txt.
const (
	// JoinFile holds the code of `join =` until the daemon has used it.
	JoinFile = "boot-join"
	// joinDoneFile holds the SHA-256 of the last code handed on, so a
	// line that could not be removed from a read-only card is not used
	// twice.
	joinDoneFile = "boot-join.done"
)

// Edit returns text with each key of set given its value: the first line
// setting the key is replaced, later ones removed; a key not set yet goes
// after its commented example ("# key = ...") or at the end. An empty value
// removes the key. Comments and every other line stay as they were.
func Edit(text string, set map[string]string) string {
	crlf := strings.Contains(text, "\r\n")
	lines := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	for _, key := range keys {
		val, ok := set[key]
		if !ok {
			continue
		}
		done := false
		example := -1
		out := lines[:0:0]
		for _, l := range lines {
			k, isSetting, commented := keyOf(l)
			if k == key && isSetting {
				if done || val == "" {
					continue
				}
				out = append(out, key+" = "+val)
				done = true
				continue
			}
			if k == key && commented {
				example = len(out)
			}
			out = append(out, l)
		}
		if !done && val != "" {
			if example >= 0 {
				out = slices.Insert(out, example+1, key+" = "+val)
			} else {
				if len(out) > 0 && out[len(out)-1] == "" {
					out = out[:len(out)-1]
				}
				out = append(out, key+" = "+val, "")
			}
		}
		lines = out
	}
	s := strings.Join(lines, "\n")
	if crlf {
		s = strings.ReplaceAll(s, "\n", "\r\n")
	}
	return s
}

// keyOf returns the key a line sets, or the key of a commented example.
func keyOf(line string) (key string, setting, commented bool) {
	l := strings.TrimSpace(strings.TrimSuffix(line, "\r"))
	if rest, ok := strings.CutPrefix(l, "#"); ok {
		k, _, ok := strings.Cut(rest, "=")
		return strings.ToLower(strings.TrimSpace(k)), false, ok
	}
	k, _, ok := strings.Cut(l, "=")
	if !ok || l == "" || l[0] == ';' {
		return "", false, false
	}
	return strings.ToLower(strings.TrimSpace(k)), true, false
}

// Redact returns text with the values of secret settings replaced, for a
// diagnostics bundle.
func Redact(text string) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if k, set, _ := keyOf(l); set && slices.Contains(secretKeys, k) {
			lines[i] = k + " = <removed>"
		}
	}
	return strings.Join(lines, "\n")
}

// withoutOneShot drops admin_password and join: what must not stay on the
// card or in the last-good copy once applied.
func withoutOneShot(text string) string {
	return Edit(text, map[string]string{"admin_password": "", "join": ""})
}

// applyOneShot stores the console password and the join code of f, and
// removes their lines from the boot file. A card that cannot be written
// (mounted read-only) keeps them, which is safe: the password is checked
// against the stored hash and the code against the last one used.
func applyOneShot(opts ApplyOptions, f *File, text string, log interface {
	Info(string, ...any)
	Warn(string, ...any)
}) {
	if f.AdminPassword == "" && f.Join == "" {
		return
	}
	if f.AdminPassword != "" {
		path := adminpass.Path(opts.StateDir)
		if enc, err := adminpass.Load(path); err == nil {
			if ok, _ := adminpass.Verify(enc, f.AdminPassword); ok {
				goto join
			}
		}
		if err := adminpass.Set(path, f.AdminPassword, adminpass.Default); err != nil {
			log.Warn("admin_password not applied", "err", err)
		} else {
			log.Info("web console password set from peerline.txt")
		}
	}
join:
	if f.Join != "" {
		sum := sha256.Sum256([]byte(f.Join))
		h := hex.EncodeToString(sum[:])
		done := filepath.Join(opts.StateDir, joinDoneFile)
		if b, err := os.ReadFile(done); err == nil && strings.TrimSpace(string(b)) == h {
			log.Info("join code in peerline.txt was used before; not joining again")
		} else if err := atomicfile.WriteFile(filepath.Join(opts.StateDir, JoinFile), []byte(f.Join+"\n"), 0o600); err != nil {
			log.Warn("join code not handed to the daemon", "err", err)
		} else if err := atomicfile.WriteFile(done, []byte(h+"\n"), 0o600); err != nil {
			log.Warn("join code: cannot remember it was used", "err", err)
		} else {
			log.Info("join code from peerline.txt handed to the daemon")
		}
	}
	if err := writeIfChanged(opts.BootFile, []byte(withoutOneShot(text)), 0o600); err != nil {
		log.Warn("could not remove admin_password and join from peerline.txt (is the boot partition read-only?); they were applied, remove them yourself", "err", err)
	}
}

// Update changes settings in the boot file, the way the owner would with
// a text editor, and applies them as Apply does on the next boot: the file
// is checked with the same parser (so the same messages), written
// atomically, merged into the daemon config, which is checked again, and
// the Wi-Fi file rewritten. The uplink's networkd file is left alone (the
// console does not edit the uplink's address). A non-nil error is an
// *Error when the new settings are wrong; nothing was written then.
func Update(opts ApplyOptions, set map[string]string) error {
	opts.fill()
	b, err := readBounded(opts.BootFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading %s: %w", opts.BootFile, err)
	}
	text, err := decodeText(b)
	if err != nil {
		return &Error{Problems: []Problem{{What: err.Error(), Fix: "save the file as UTF-8"}}}
	}
	for k := range set {
		if !slices.Contains(keys, k) || k == "admin_password" || k == "join" {
			return fmt.Errorf("bootconfig: %q cannot be updated", k)
		}
	}
	text = Edit(text, set)
	f, err := Parse([]byte(text))
	if err != nil {
		return err
	}
	old, exists, err := readConfig(opts.ConfigPath)
	if err != nil {
		return fmt.Errorf("the daemon config %s is damaged (%v); nothing was changed", opts.ConfigPath, err)
	}
	cfg := merge(old, exists, f, opts)
	cfgBytes, err := marshalConfig(cfg)
	if err != nil {
		return err
	}
	if _, err := config.Parse(cfgBytes); err != nil {
		return &Error{Problems: []Problem{{What: "the resulting daemon config is not valid: " + err.Error(), Fix: "check the settings"}}}
	}
	if err := atomicfile.WriteFile(opts.BootFile, []byte(text), 0o600); err != nil {
		return fmt.Errorf("writing %s (is the boot partition read-only?): %w", opts.BootFile, err)
	}
	if err := writeIfChanged(opts.ConfigPath, cfgBytes, 0o600); err != nil {
		return fmt.Errorf("writing the daemon config: %w", err)
	}
	if err := writeIfChanged(filepath.Join(opts.StateDir, lastGoodFile), []byte(withoutOneShot(text)), 0o600); err != nil {
		return err
	}
	if f.WiFi != nil {
		wpa, err := WPASupplicantConfig(*f.WiFi)
		if err != nil {
			return err
		}
		if err := writeIfChanged(opts.WPAFile, []byte(wpa), 0o600); err != nil {
			return fmt.Errorf("writing the Wi-Fi file: %w", err)
		}
	}
	return nil
}

// Read parses the boot file as it is now; a missing file is an empty one.
func Read(path string) (*File, error) {
	b, err := readBounded(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Parse(nil)
	}
	if err != nil {
		return nil, err
	}
	return Parse(b)
}

// CheckName checks a node, peer or line name as the name setting does.
func CheckName(v string) error { return checkName(v) }
