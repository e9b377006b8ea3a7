package bootconfig

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/peerline/peerline/pkg/atomicfile"
	"github.com/peerline/peerline/pkg/config"
)

// The image's paths (see notes/image-contract.md); ApplyOptions fields left
// empty take these.
const (
	DefaultBootFile   = "/boot/firmware/peerline.txt"
	DefaultNetworkDir = "/run/systemd/network"
	DefaultWPAFile    = "/run/peerline/wpa_supplicant-wlan0.conf"
	DefaultErrorFile  = "/run/peerline/boot-config-error"
	DefaultPhonePort  = "eth0"
	// NetworkFile is the name of the uplink's systemd-networkd file.
	NetworkFile = "10-peerline-uplink.network"
	// defaultName is the node name until the file gives one.
	defaultName = "peerline"
	// lastGoodFile, next to the config, keeps the last boot config that
	// applied cleanly, so that a broken file still leaves the uplink it
	// described last time (/run starts empty on every boot).
	lastGoodFile = "last-good-peerline.txt"
)

// ApplyOptions says where Apply reads and writes. Only BootFile and
// ConfigPath are needed; the rest default to the image's paths.
type ApplyOptions struct {
	// BootFile is the user's peerline.txt on the FAT partition.
	BootFile string
	// ConfigPath is the daemon's JSON config, merged into and kept.
	ConfigPath string
	// NetworkDir receives NetworkFile for systemd-networkd.
	NetworkDir string
	// WPAFile is wpa_supplicant's config for the Wi-Fi, written 0600
	// because it holds the key; removed when no Wi-Fi is configured.
	WPAFile string
	// ErrorFile holds what is wrong with BootFile, for the status page;
	// removed when the file is fine.
	ErrorFile string
	// StateDir is written into the config's state_dir; default: the
	// directory of ConfigPath (the image keeps both in /data/peerline).
	StateDir string
	// PhonePort is written into the config's phone_port.
	PhonePort string
	// RunDir is written into the config's run_dir; default: the directory
	// of ErrorFile, the runtime directory peerlined.service gives the
	// daemon (its sandbox makes every other path under /run read-only).
	RunDir string
	Log    *slog.Logger
}

func (o *ApplyOptions) fill() {
	if o.BootFile == "" {
		o.BootFile = DefaultBootFile
	}
	if o.NetworkDir == "" {
		o.NetworkDir = DefaultNetworkDir
	}
	if o.WPAFile == "" {
		o.WPAFile = DefaultWPAFile
	}
	if o.ErrorFile == "" {
		o.ErrorFile = DefaultErrorFile
	}
	if o.StateDir == "" && o.ConfigPath != "" {
		o.StateDir = filepath.Dir(o.ConfigPath)
	}
	if o.RunDir == "" {
		o.RunDir = filepath.Dir(o.ErrorFile)
	}
	if o.PhonePort == "" {
		o.PhonePort = DefaultPhonePort
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// Apply reads the boot file and applies it: the daemon config at ConfigPath
// (name, rendezvous servers, phone settings, lines, phone port, state
// directory merged in; peers and everything else kept), the uplink's
// networkd file and the Wi-Fi file. It runs on every boot, before the
// network and the daemon start.
//
// A wrong boot file changes nothing: ErrorFile says which line is wrong and
// what to write, the previous config stays, the uplink is set up as the last
// good file said, and the returned error (for the journal) is an *Error. So
// that the daemon can still start and show the problem on the status page,
// a config is created with defaults if there is none yet. A missing boot file
// is not an error: the current settings are kept.
func Apply(opts ApplyOptions) error {
	opts.fill()
	log := opts.Log.With("path", opts.BootFile)
	if opts.ConfigPath == "" {
		return errors.New("applying boot config: no daemon config path given")
	}
	for _, d := range []struct {
		dir  string
		mode os.FileMode
	}{
		{filepath.Dir(opts.ConfigPath), 0o700},
		{opts.StateDir, 0o700},
		{filepath.Dir(opts.ErrorFile), 0o755},
		{filepath.Dir(opts.WPAFile), 0o755},
		{opts.NetworkDir, 0o755},
	} {
		if err := os.MkdirAll(d.dir, d.mode); err != nil {
			return fmt.Errorf("applying boot config: %w (is the data partition mounted?)", err)
		}
	}

	b, err := readBounded(opts.BootFile)
	if errors.Is(err, fs.ErrNotExist) {
		log.Warn("no boot config file: keeping the current settings; copy peerline.txt onto the boot partition to set Wi-Fi, name and servers")
		removeErrorFile(opts, log)
		if err := ensureConfig(opts, log); err != nil {
			return err
		}
		return applyLastGood(opts, log)
	}
	if err != nil {
		return failed(opts, log, &Error{Problems: []Problem{{What: "cannot read the file: " + err.Error(),
			Fix: "check the SD card; copy peerline.txt onto the boot partition again"}}})
	}
	f, err := Parse(b)
	if err != nil {
		return failed(opts, log, err)
	}
	old, exists, err := readConfig(opts.ConfigPath)
	if err != nil {
		return failed(opts, log, &Error{Problems: []Problem{{What: fmt.Sprintf("the daemon config %s is damaged (%v), so the boot config was not merged into it", opts.ConfigPath, err),
			Fix: "restore it from a backup, or delete it to start afresh (peers must then pair again)"}}})
	}
	cfg := merge(old, exists, f, opts)
	cfgBytes, err := marshalConfig(cfg)
	if err != nil {
		return fmt.Errorf("applying boot config: %w", err)
	}
	if _, err := config.Parse(cfgBytes); err != nil {
		return failed(opts, log, &Error{Problems: []Problem{{What: "the resulting daemon config is not valid: " + err.Error(),
			Fix: "check the settings above; if the boot config looks right, the daemon config " + opts.ConfigPath + " needs repair"}}})
	}
	if err := writeUplink(opts, f); err != nil {
		return fmt.Errorf("applying boot config: %w", err)
	}
	if err := writeIfChanged(opts.ConfigPath, cfgBytes, 0o600); err != nil {
		return fmt.Errorf("applying boot config: %w", err)
	}
	text, _ := decodeText(b)
	if err := writeIfChanged(filepath.Join(opts.StateDir, lastGoodFile), []byte(withoutOneShot(text)), 0o600); err != nil {
		return fmt.Errorf("applying boot config: %w", err)
	}
	applyOneShot(opts, f, text, log)
	removeErrorFile(opts, log)
	if f.WiFi == nil && f.Uplink.Interface == DefaultUplink {
		log.Warn("the boot config sets no Wi-Fi and no other uplink: the Pi has no way to the Internet; set wifi_ssid, wifi_password and wifi_country in peerline.txt")
	}
	log.Info("boot config applied", "name", cfg.Name, "uplink", f.Uplink.Interface, "static", f.Uplink.Address.IsValid(),
		"wifi", f.WiFi != nil, "rendezvous", len(cfg.Rendezvous), "lines", cfg.Lines, "phone_dhcp", cfg.Phones.DHCP)
	return nil
}

// failed handles a wrong boot file: report it, keep (or first create) the
// config and bring the uplink up as it was last time.
func failed(opts ApplyOptions, log *slog.Logger, problem error) error {
	msg := fmt.Sprintf("%s is wrong; nothing in it was applied.\n", opts.BootFile)
	var e *Error
	if errors.As(problem, &e) {
		for _, p := range e.Problems {
			msg += p.String() + "\n"
		}
	} else {
		msg += problem.Error() + "\n"
	}
	if err := atomicfile.WriteFile(opts.ErrorFile, []byte(msg), 0o644); err != nil {
		log.Error("cannot write the error file for the status page", "err", err)
	}
	if err := ensureConfig(opts, log); err != nil {
		log.Error("no daemon config to start with", "err", err)
	}
	if err := applyLastGood(opts, log); err != nil {
		log.Error("cannot set up the uplink from the last good boot config", "err", err)
	}
	return fmt.Errorf("boot config %s: %w", opts.BootFile, problem)
}

func removeErrorFile(opts ApplyOptions, log *slog.Logger) {
	if err := os.Remove(opts.ErrorFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Error("cannot remove the old error file", "err", err)
	}
}

// ensureConfig writes a default config if there is none, so that the
// daemon starts on a first boot and its status page can say what is wrong.
func ensureConfig(opts ApplyOptions, log *slog.Logger) error {
	if _, err := os.Stat(opts.ConfigPath); !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	b, err := marshalConfig(merge(config.Config{}, false, &File{}, opts))
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(opts.ConfigPath, b, 0o600); err != nil {
		return fmt.Errorf("writing a default daemon config: %w", err)
	}
	log.Info("wrote a default daemon config", "config", opts.ConfigPath)
	return nil
}

// applyLastGood writes the uplink and Wi-Fi files from the last boot config
// that applied cleanly, or for DHCP on the default uplink if there was none.
func applyLastGood(opts ApplyOptions, log *slog.Logger) error {
	f := &File{Uplink: Uplink{Interface: DefaultUplink}}
	if b, err := readBounded(filepath.Join(opts.StateDir, lastGoodFile)); err == nil {
		if good, err := Parse(b); err == nil {
			f = good
			log.Info("uplink set up from the last good boot config")
		}
	}
	return writeUplink(opts, f)
}

func readBounded(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return io.ReadAll(io.LimitReader(fh, MaxSize+1))
}

// readConfig decodes the existing config strictly but without filling in
// defaults, so that writing it back changes only what the boot file sets.
func readConfig(path string) (c config.Config, exists bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return config.Config{}, false, nil
	}
	if err != nil {
		return config.Config{}, false, err
	}
	if _, err := config.Parse(b); err != nil {
		return config.Config{}, true, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return config.Config{}, true, err
	}
	return c, true, nil
}

// merge sets what the boot file owns. Settings the file leaves out keep the
// config's value, or get the first-boot default for a new config.
func merge(c config.Config, exists bool, f *File, opts ApplyOptions) config.Config {
	if !exists {
		c.Name = defaultName
		c.Phones.DHCP = true
	}
	if f.Name != "" {
		c.Name = f.Name
	}
	if f.Rendezvous != nil {
		c.Rendezvous = f.Rendezvous
	}
	if f.TimeZone != "" {
		c.Phones.TimeZone = f.TimeZone
	}
	if f.PhoneDHCP != nil {
		c.Phones.DHCP = *f.PhoneDHCP
	}
	if f.Lines != nil {
		c.Lines = f.Lines
	} else if !c.Phones.DHCP && len(c.Lines) == 0 {
		// Without DHCP a phone only works on a static line; line 1 is
		// where a phone configured by hand expects to be.
		c.Lines = []int{1}
	}
	c.PhonePort = opts.PhonePort
	c.StateDir = opts.StateDir
	c.RunDir = opts.RunDir
	// [] rather than null: the file is read by people too.
	if c.Lines == nil {
		c.Lines = []int{}
	}
	if c.Peers == nil {
		c.Peers = []config.Peer{}
	}
	return c
}

func marshalConfig(c config.Config) ([]byte, error) {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding daemon config: %w", err)
	}
	return append(b, '\n'), nil
}

// writeIfChanged spares the SD card writes that would not change anything.
func writeIfChanged(path string, b []byte, perm os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm() == perm {
			return nil
		}
	}
	return atomicfile.WriteFile(path, b, perm)
}

// writeUplink writes the networkd file and the Wi-Fi file (or removes it).
func writeUplink(opts ApplyOptions, f *File) error {
	if err := atomicfile.WriteFile(filepath.Join(opts.NetworkDir, NetworkFile), []byte(NetworkdConfig(f.Uplink)), 0o644); err != nil {
		return err
	}
	if f.WiFi == nil {
		if err := os.Remove(opts.WPAFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	wpa, err := WPASupplicantConfig(*f.WiFi)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(opts.WPAFile, []byte(wpa), 0o600)
}

const generatedHeader = "# Written on every boot by peerline-boot.service from peerline.txt on the\n# boot partition; edit that file instead, changes here are lost.\n"

// NetworkdConfig is the systemd-networkd file for the uplink: DHCP, or the
// static address, gateway and DNS servers.
func NetworkdConfig(u Uplink) string {
	var b strings.Builder
	b.WriteString(generatedHeader)
	fmt.Fprintf(&b, "\n[Match]\nName=%s\n\n[Network]\n", u.Interface)
	if u.Address.IsValid() {
		fmt.Fprintf(&b, "Address=%s\nGateway=%s\n", u.Address, u.Gateway)
	} else {
		b.WriteString("DHCP=yes\n")
	}
	for _, d := range u.DNS {
		fmt.Fprintf(&b, "DNS=%s\n", d)
	}
	return b.String()
}

// WPASupplicantConfig is wpa_supplicant's config for the network. The SSID
// is written in hex and the key as the PSK derived from the password, so no
// character in either (quotes, #, backslashes) needs escaping, and the
// password itself is not stored in /run.
func WPASupplicantConfig(w WiFi) (string, error) {
	psk, err := PSK(w.Password, w.SSID)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(generatedHeader)
	fmt.Fprintf(&b, "ctrl_interface=/run/wpa_supplicant\nupdate_config=0\ncountry=%s\n\nnetwork={\n", w.Country)
	fmt.Fprintf(&b, "\tssid=%s\n", hex.EncodeToString([]byte(w.SSID)))
	// Hidden networks answer only probes that name them.
	b.WriteString("\tscan_ssid=1\n")
	b.WriteString("\tkey_mgmt=WPA-PSK WPA-PSK-SHA256\n")
	fmt.Fprintf(&b, "\tpsk=%s\n}\n", psk)
	return b.String(), nil
}

// PSK is the WPA2 pre-shared key for a password and SSID, in hex:
// PBKDF2-HMAC-SHA1 with 4096 rounds (IEEE 802.11i), as wpa_passphrase
// prints it. A password that is already 64 hex digits is the PSK itself.
func PSK(password, ssid string) (string, error) {
	if hexPSKRE.MatchString(password) {
		return strings.ToLower(password), nil
	}
	k, err := pbkdf2.Key(sha1.New, password, []byte(ssid), 4096, 32)
	if err != nil {
		return "", fmt.Errorf("deriving the Wi-Fi key: %w", err)
	}
	return hex.EncodeToString(k), nil
}
