package adminpass

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

var fast = Params{Memory: 64, Time: 1, Threads: 1}

func TestHashVerify(t *testing.T) {
	h, err := Hash("correct horse", fast)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("Hash = %q, want a PHC argon2id string", h)
	}
	h2, _ := Hash("correct horse", fast)
	if h == h2 {
		t.Error("two hashes of one password are equal; the salt is not random")
	}
	for _, tc := range []struct {
		pw   string
		want bool
	}{{"correct horse", true}, {"correct hors", false}, {"", false}, {"Correct horse", false}} {
		got, err := Verify(h, tc.pw)
		if err != nil || got != tc.want {
			t.Errorf("Verify(%q) = %v, %v; want %v", tc.pw, got, err, tc.want)
		}
	}
}

func TestVerifyRejectsMalformed(t *testing.T) {
	good, _ := Hash("password1", fast)
	parts := strings.Split(good, "$")
	for name, enc := range map[string]string{
		"empty":      "",
		"bcrypt":     "$2a$10$abcdefghijklmnopqrstuu",
		"argon2i":    strings.Replace(good, "argon2id", "argon2i", 1),
		"huge mem":   strings.Join([]string{"", "argon2id", "v=19", "m=9999999,t=1,p=1", parts[4], parts[5]}, "$"),
		"huge time":  strings.Join([]string{"", "argon2id", "v=19", "m=64,t=1000,p=1", parts[4], parts[5]}, "$"),
		"bad base64": strings.Join([]string{"", "argon2id", "v=19", "m=64,t=1,p=1", "!!", parts[5]}, "$"),
		"short key":  strings.Join([]string{"", "argon2id", "v=19", "m=64,t=1,p=1", parts[4], "AAAA"}, "$"),
	} {
		if ok, err := Verify(enc, "password1"); ok || err == nil {
			t.Errorf("%s: Verify = %v, %v; want an error", name, ok, err)
		}
	}
}

func TestCheck(t *testing.T) {
	for pw, ok := range map[string]bool{"short": false, "long enough": true, strings.Repeat("a", 129): false, "\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8": false, "ümlauts ok": true} {
		if err := Check(pw); (err == nil) != ok {
			t.Errorf("Check(%q) = %v, want ok=%v", pw, err, ok)
		}
	}
}

func TestStoreLoad(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", FileName)
	if _, err := Load(p); !errors.Is(err, ErrNotSet) {
		t.Fatalf("Load of a missing file = %v, want ErrNotSet", err)
	}
	h, _ := Hash("password1", fast)
	if err := Store(p, h); err != nil {
		t.Fatal(err)
	}
	got, err := Load(p)
	if err != nil || got != h {
		t.Fatalf("Load = %q, %v; want %q", got, err, h)
	}
}

func FuzzVerify(f *testing.F) {
	good, _ := Hash("password1", fast)
	f.Add(good, "password1")
	f.Add("$argon2id$v=19$m=64,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA", "x")
	f.Fuzz(func(t *testing.T, enc, pw string) {
		ok, err := Verify(enc, pw)
		if ok && err != nil {
			t.Fatal("match with an error")
		}
	})
}

// BenchmarkHashDefault is what one login or first-use attempt costs.
func BenchmarkHashDefault(b *testing.B) {
	for b.Loop() {
		if _, err := Hash("correct horse battery", Default); err != nil {
			b.Fatal(err)
		}
	}
}
