package registrar

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPasswords(t *testing.T) {
	dir := t.TempDir()
	p, err := OpenPasswords(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := p.Accounts("1"); ok {
		t.Fatal("line 1 has an account before any password was made")
	}
	pw1, err := p.Get(1)
	if err != nil {
		t.Fatal(err)
	}
	if len(pw1) != 16 {
		t.Errorf("password %q: want 16 characters", pw1)
	}
	if again, _ := p.Get(1); again != pw1 {
		t.Errorf("Get(1) again = %q, want the same %q", again, pw1)
	}
	pw2, _ := p.Get(2)
	if pw2 == pw1 {
		t.Error("lines 1 and 2 got the same password")
	}
	fi, err := os.Stat(filepath.Join(dir, PasswordsFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("passwords file mode %v, want 0600", fi.Mode().Perm())
	}

	// A restart reads them back.
	q, err := OpenPasswords(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		user string
		line int
		pw   string
		ok   bool
	}{
		{"1", 1, pw1, true},
		{"2", 2, pw2, true},
		{"3", 0, "", false},
		{"01", 0, "", false},
		{"+1", 0, "", false},
		{"0", 0, "", false},
		{"alice", 0, "", false},
	} {
		line, pw, ok := q.Accounts(tt.user)
		if ok != tt.ok || (ok && (line != tt.line || pw != tt.pw)) {
			t.Errorf("Accounts(%q) = %d, %q, %v; want %d, %q, %v", tt.user, line, pw, ok, tt.line, tt.pw, tt.ok)
		}
	}
	// A forgotten line's next phone gets a new password, also after a
	// restart.
	if err := q.Forget(1); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := q.Accounts("1"); ok {
		t.Error("line 1 still has an account after Forget")
	}
	r, _ := OpenPasswords(dir)
	if _, ok := r.Lookup(1); ok {
		t.Error("line 1's password came back after a restart")
	}
	if pw, _ := r.Get(1); pw == pw1 {
		t.Error("line 1 got its old password again")
	}
	if _, err := q.Get(300); err == nil {
		t.Error("Get(300) made a password for a line that cannot exist")
	}
}

func TestPasswordsBadFile(t *testing.T) {
	dir := t.TempDir()
	for _, body := range []string{"{", `{"x": "pw"}`, `{"1": ""}`, `{"999": "pw"}`} {
		if err := os.WriteFile(filepath.Join(dir, PasswordsFile), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := OpenPasswords(dir)
		if err == nil || !strings.Contains(err.Error(), "remove the file") {
			t.Errorf("OpenPasswords(%q) error = %v, want one saying to remove the file", body, err)
		}
	}
}
