package nodekey

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPublicMatchesWG(t *testing.T) {
	// Pair printed by `wg genkey | tee /dev/stderr | wg pubkey`.
	priv, err := Parse("EI1mjysvXOTKAgD4781cIY3O/LalPFV0ORgUlmfF+1Y=")
	if err != nil {
		t.Fatal(err)
	}
	const want = "Y9//y9jiDSs1pIpWEtgYbJYWCjgZwXRRhhcrL4bDhzc="
	if got := priv.Public().String(); got != want {
		t.Errorf("Public() = %s, want %s", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	for _, s := range []string{"", "not base64!", "AAAA"} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) = nil error, want one", s)
		}
	}
}

func TestLoadOrCreate(t *testing.T) {
	p := filepath.Join(t.TempDir(), "node.key")
	k1, created, err := LoadOrCreate(p)
	if err != nil || !created {
		t.Fatalf("first LoadOrCreate = %v, created %v", err, created)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	k2, created, err := LoadOrCreate(p)
	if err != nil || created || k1 != k2 {
		t.Fatalf("second LoadOrCreate = %v, created %v, same %v; want the same key loaded", err, created, k1 == k2)
	}
	os.WriteFile(p, []byte("garbage"), 0o600)
	if _, _, err := LoadOrCreate(p); err == nil {
		t.Fatal("LoadOrCreate on a damaged key succeeded; it must refuse rather than silently change identity")
	}
}

// Processes starting together on first boot must end up with one identity.
func TestLoadOrCreateConcurrent(t *testing.T) {
	p := filepath.Join(t.TempDir(), "node.key")
	const n = 8
	keys := make(chan Key, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			k, _, err := LoadOrCreate(p)
			keys <- k
			errs <- err
		}()
	}
	var first Key
	for i := range n {
		if err := <-errs; err != nil {
			t.Fatalf("LoadOrCreate = %v", err)
		}
		k := <-keys
		if i == 0 {
			first = k
		} else if k != first {
			t.Fatalf("concurrent LoadOrCreate returned different keys; the file holds one identity")
		}
	}
	onDisk, _, err := LoadOrCreate(p)
	if err != nil || onDisk != first {
		t.Fatalf("key on disk differs from the one handed out (%v)", err)
	}
}
