package bootconfig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerline/peerline/pkg/adminpass"
)

func TestEdit(t *testing.T) {
	in := "# header\r\n# name = kitchen\r\nwifi_ssid = a\r\nrendezvous = a:1 K\r\nrendezvous = b:2 L\r\n"
	got := Edit(in, map[string]string{"name": "attic", "rendezvous": "c:3 M", "wifi_ssid": "", "time_zone": "UTC"})
	want := "# header\r\n# name = kitchen\r\nname = attic\r\nrendezvous = c:3 M\r\ntime_zone = UTC\r\n"
	if got != want {
		t.Errorf("Edit =\n%q\nwant\n%q", got, want)
	}
	if got := Edit("", map[string]string{"name": "x"}); got != "name = x\n" {
		t.Errorf("Edit of an empty file = %q", got)
	}
}

func TestRedact(t *testing.T) {
	in := "name = a\nwifi_password = secret1234\n ADMIN_PASSWORD = hunter22\njoin = CODE\n# wifi_password = example\n"
	got := Redact(in)
	for _, s := range []string{"secret1234", "hunter22", "CODE"} {
		if strings.Contains(got, s) {
			t.Errorf("Redact left %q in:\n%s", s, got)
		}
	}
	if !strings.Contains(got, "name = a") || !strings.Contains(got, "# wifi_password = example") {
		t.Errorf("Redact changed other lines:\n%s", got)
	}
}

func TestApplyOneShot(t *testing.T) {
	boot := good + "admin_password = correct horse\n"
	o := testOpts(t, boot)
	if err := Apply(o); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(o.BootFile)
	if strings.Contains(string(b), "admin_password") {
		t.Errorf("admin_password still on the card:\n%s", b)
	}
	if !strings.Contains(string(b), "wifi_password") {
		t.Errorf("other settings lost:\n%s", b)
	}
	enc, err := adminpass.Load(adminpass.Path(filepath.Dir(o.ConfigPath)))
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := adminpass.Verify(enc, "correct horse"); !ok {
		t.Error("stored hash does not match")
	}
	last, _ := os.ReadFile(filepath.Join(filepath.Dir(o.ConfigPath), lastGoodFile))
	if strings.Contains(string(last), "correct horse") {
		t.Error("the last-good copy keeps the admin password")
	}
}

func TestApplyJoinOnce(t *testing.T) {
	code := "080PP-0Z214-WH70H-9REKM-JTZB0-86HWZ-2BBE3-CP03H-1BQYT-607"
	if _, err := Parse([]byte(good + "join = " + code)); err != nil {
		t.Skipf("the README's example code does not parse here: %v", err)
	}
	o := testOpts(t, good+"join = "+code+"\n")
	// A read-only card: the line stays, and must not be used twice.
	if err := os.Chmod(o.BootFile, 0o400); err != nil {
		t.Fatal(err)
	}
	if err := Apply(o); err != nil {
		t.Fatal(err)
	}
	state := filepath.Dir(o.ConfigPath)
	b, err := os.ReadFile(filepath.Join(state, JoinFile))
	if err != nil || strings.TrimSpace(string(b)) != code {
		t.Fatalf("join file = %q, %v; want the code", b, err)
	}
	os.Remove(filepath.Join(state, JoinFile)) // the daemon used it
	// The card kept the line (root writes a 0400 file, so put it back).
	os.Chmod(o.BootFile, 0o600)
	if err := os.WriteFile(o.BootFile, []byte(good+"join = "+code+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := Apply(o); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(state, JoinFile)); !errors.Is(err, os.ErrNotExist) {
		t.Error("the same join code was handed on twice")
	}
}

func TestParseOneShotProblems(t *testing.T) {
	for in, want := range map[string]string{
		"admin_password = short":   "line 1: admin_password: the password has 5 characters; use at least 8",
		"join = not-a-code at all": "line 1: join:",
	} {
		_, err := Parse([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want %q...", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), `"short"`) {
			t.Errorf("Parse(%q) quotes the password back: %v", in, err)
		}
	}
}

func TestUpdate(t *testing.T) {
	o := testOpts(t, good)
	if err := Apply(o); err != nil {
		t.Fatal(err)
	}
	o.NetworkDir = filepath.Join(t.TempDir(), "must-not-be-written")
	err := Update(o, map[string]string{"time_zone": "Mars/Base"})
	var be *Error
	if !errors.As(err, &be) || !strings.Contains(err.Error(), `time_zone: "Mars/Base" is not in the tz database`) {
		t.Fatalf("Update with a bad zone = %v, want the parser's message", err)
	}
	if err := Update(o, map[string]string{"name": "attic", "time_zone": "Europe/Paris", "wifi_ssid": "New Net", "wifi_password": "new password"}); err != nil {
		t.Fatal(err)
	}
	c := loadConfig(t, o.ConfigPath)
	if c.Name != "attic" || c.Phones.TimeZone != "Europe/Paris" {
		t.Errorf("config after Update: name %q zone %q", c.Name, c.Phones.TimeZone)
	}
	b, _ := os.ReadFile(o.BootFile)
	if !strings.Contains(string(b), "name = attic") || !strings.Contains(string(b), "# comment") {
		t.Errorf("boot file after Update:\n%s", b)
	}
	wpa, _ := os.ReadFile(o.WPAFile)
	if !strings.Contains(string(wpa), "ssid=4e6577204e6574") {
		t.Errorf("Wi-Fi file not rewritten:\n%s", wpa)
	}
	if _, err := os.Stat(o.NetworkDir); !errors.Is(err, os.ErrNotExist) {
		t.Error("Update wrote the networkd file")
	}
	if err := Update(o, map[string]string{"admin_password": "x"}); err == nil {
		t.Error("Update of admin_password allowed")
	}
}

// FuzzEdit: whatever the file holds, setting a key leaves exactly one line
// setting it, with the value, and every line about other keys as it was.
func FuzzEdit(f *testing.F) {
	f.Add(good, "attic")
	f.Add("# name = x\r\nname = a\r\nname = b\r\n", "c")
	f.Add("", "")
	f.Add("name\n=\n;name = z\n", "y y")
	f.Fuzz(func(t *testing.T, text, val string) {
		if strings.ContainsAny(val, "\r\n") || strings.TrimSpace(val) != val {
			return
		}
		out := Edit(text, map[string]string{"name": val})
		var names []string
		var others, before []string
		for _, l := range strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), "\n") {
			if k, set, _ := keyOf(l); set && k == "name" {
				names = append(names, l)
			} else if set {
				others = append(others, strings.TrimSuffix(l, "\r"))
			}
		}
		for _, l := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
			if k, set, _ := keyOf(l); set && k != "name" {
				before = append(before, strings.TrimSuffix(l, "\r"))
			}
		}
		want := 1
		if val == "" {
			want = 0
		}
		if len(names) != want || want == 1 && names[0] != "name = "+val {
			t.Fatalf("Edit(%q, name=%q) set lines %q", text, val, names)
		}
		if strings.Join(others, "\n") != strings.Join(before, "\n") {
			t.Fatalf("Edit(%q) changed other settings:\n%q\nwant\n%q", text, others, before)
		}
	})
}
