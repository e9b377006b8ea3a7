// Package provision makes the files a factory-reset desk phone fetches when it
// boots on the Pi's phone port, and serves them over HTTP: a per-phone
// configuration (Grandstream GXP16xx XML, Yealink T19P .cfg) that turns the
// phone into a direct-IP-call phone of its line s, and a phonebook of the
// paired peers' lines in each vendor's format.
//
// Generation (Config, Phonebook) is pure: it renders the text/templates
// embedded from rootfs/usr/share/peerline/provision, whose comments cite the
// vendor documents every key comes from. Serving (Server) answers only on the
// phone port and only with the file of the phone that asks: the requester's
// source address must map to a DHCP binding, the kernel's neighbour entry for
// that address must hold the binding's MAC (so a device that gives itself a
// phone's address gets nothing), and a per-MAC file must be that MAC's
// (authorize).
//
// The phones are told to fetch over HTTP: both vendors' factory settings
// accept the provisioning server from DHCP option 66 (Grandstream P145 "Allow
// DHCP Option 43 and Option 66 to override server", factory 1, and "Config
// Upgrade Via" P212, factory 1 = HTTP; Yealink detects option 66 at start-up).
// Option 66 is URL(s), with no trailing slash. docs/phones.md lists what is
// confirmed and what is not, including whether a factory T19P honours the
// http:// scheme in option 66 or falls back to TFTP (pkg/tftpd serves the same
// files through Server's handler).
package provision

import (
	"bytes"
	"cmp"
	"encoding/xml"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"unicode"
	"unicode/utf8"

	"github.com/peerline/peerline/pkg/dialplan"
	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/rootfs"
)

// Vendor is a phone maker whose file formats this package writes.
type Vendor int

const (
	// Grandstream is the GXP16xx family (GXP1610 and its siblings).
	Grandstream Vendor = iota + 1
	// Yealink is the SIP-T19P and T19P E2.
	Yealink
)

// String returns the lower-case vendor name used in URLs.
func (v Vendor) String() string {
	switch v {
	case Grandstream:
		return "grandstream"
	case Yealink:
		return "yealink"
	}
	return "vendor(" + strconv.Itoa(int(v)) + ")"
}

// Directory is what the phones of one node are told about the world.
type Directory struct {
	// NodeName is this node's name; phones show "<NodeName> <label>".
	NodeName string
	// TimeZone is an IANA zone such as "Europe/Berlin"; "" means UTC.
	TimeZone string
	// Lines are this node's phone lines (all phones on this Pi).
	Lines []Line
	// Peers are the paired remote nodes.
	Peers []Peer
	// Password returns local line s's SIP password, made on first use; nil
	// when the Pi runs no SIP service, and the phone is then provisioned
	// for direct IP calls only, with no account to register.
	Password func(s int) (string, error)
}

// Line is a local phone line s.
type Line struct {
	Line int
	// Label names the line; "" means "line <s>".
	Label string
}

// Peer is a paired remote node as this node numbers it.
type Peer struct {
	// Index is i in 10.i.s.p.
	Index int
	Name  string
	// Lines are the peer's lines; empty means line 1 only.
	Lines []int
	// LineLabels are the peer's own names for its lines, as it announced
	// them; an entry shows "<peer> - <label>" instead of "line <s>".
	LineLabels map[int]string
}

// maxName bounds names and labels on the phones' small screens, and the
// length of anything a peer chose that ends up in a file.
const maxName = 48

// ErrInvalid is wrapped by the errors Config and Phonebook return for a
// Directory, line or MAC they cannot describe to a phone.
var ErrInvalid = errors.New("provision: invalid input")

// Config returns the configuration file of the phone on local line, whose
// MAC is mac: Grandstream XML or Yealink .cfg.
func Config(vendor Vendor, dir Directory, line int, mac net.HardwareAddr) ([]byte, error) {
	if len(mac) != 6 {
		return nil, fmt.Errorf("%w: MAC %q is not a 6-byte Ethernet address", ErrInvalid, mac)
	}
	d, err := newConfigData(dir, line)
	if err != nil {
		return nil, err
	}
	d.MAC = strings.ReplaceAll(mac.String(), ":", "")
	if dir.Password != nil {
		pw, err := dir.Password(line)
		if err != nil {
			return nil, fmt.Errorf("the SIP password of line %d: %w", line, err)
		}
		if pw == "" || strings.ContainsFunc(pw, func(r rune) bool { return r <= ' ' || r > '~' || r == '<' || r == '&' }) {
			return nil, fmt.Errorf("%w: the SIP password of line %d is empty or not plain printable ASCII", ErrInvalid, line)
		}
		// The account: user and authentication ID are the line number,
		// the Pi's side of the line is the registrar. No outbound proxy:
		// the Pi redirects a call by name or short number, and the
		// phone then calls the address directly, as if typed.
		d.Registrar, d.AuthID, d.Password = d.Pi, d.UserID, pw
	}
	switch vendor {
	case Grandstream:
		d.PosixTZ, err = posixTZ(dir.TimeZone)
		if err != nil {
			return nil, err
		}
		return render("grandstream.xml.tmpl", d)
	case Yealink:
		yz, err := yealinkZone(dir.TimeZone)
		if err != nil {
			return nil, err
		}
		d.yealinkTZ = yz
		return render("yealink.cfg.tmpl", d)
	}
	return nil, fmt.Errorf("%w: unknown vendor %v", ErrInvalid, vendor)
}

// URL is the provisioning server URL that DHCP option 66 gives the phone on
// line s: "http://10.0.s.2", the Pi's side of the line, with no trailing
// slash. Grandstream joins the server path and the file name with a "/" of
// its own, so "http://10.0.s.2/" would make it ask for "//cfg<mac>.xml"; the
// vendor-derived DHCP set-ups (Wazo, FusionPBX, Grandstream's examples) send
// the URL without one. The server still accepts any number of leading
// slashes (parsePath), for phones that add one anyway.
func URL(line int) string {
	return "http://" + numplan.LineGateway(uint8(line)).String()
}

// YealinkCommon returns the file served for y000000000031.cfg and
// y000000000053.cfg: the mandatory header and nothing about any phone.
func YealinkCommon() ([]byte, error) {
	return render("yealink-common.cfg.tmpl", nil)
}

// Phonebook returns the phonebook of the phone on local line: every line of
// every peer ("bob - line 2" at 10.7.2.1) and the other local lines
// ("alice - line 2" at 10.0.2.1), sorted by name.
func Phonebook(vendor Vendor, dir Directory, line int) ([]byte, error) {
	if !numplan.ValidLine(line) {
		return nil, fmt.Errorf("%w: line %d is outside %d-%d", ErrInvalid, line, numplan.MinLine, numplan.MaxLine)
	}
	entries, err := phonebookEntries(dir, line)
	if err != nil {
		return nil, err
	}
	data := phonebookData{Node: cleanName(dir.NodeName), Entries: entries}
	switch vendor {
	case Grandstream:
		return render("grandstream-phonebook.xml.tmpl", data)
	case Yealink:
		return render("yealink-phonebook.xml.tmpl", data)
	}
	return nil, fmt.Errorf("%w: unknown vendor %v", ErrInvalid, vendor)
}

// configData is what the configuration templates see.
type configData struct {
	Node         string
	Line         int
	Label        string
	DisplayName  string
	UserID       string
	MAC          string // 12 lower-case hex digits
	Pi           string // 10.0.s.2: gateway, NTP, provisioning and phonebook server
	ServerURL    string
	PhonebookURL string
	PosixTZ      string
	// Registrar, AuthID and Password are the line's SIP account; all ""
	// when the Pi runs no SIP service.
	Registrar string
	AuthID    string
	Password  string
	yealinkTZ
}

type phonebookData struct {
	Node    string
	Entries []entry
}

type entry struct {
	Name string
	Addr netip.Addr
	// Dial is the name a registered phone dials for the line, the user
	// part of its SIP URI sip:<line>@<node> put as the Pi's dial plan
	// reads it (<node>.<line>); "" for a local line or a node whose name
	// makes no SIP host.
	Dial string
}

func newConfigData(dir Directory, line int) (configData, error) {
	if !numplan.ValidLine(line) {
		return configData{}, fmt.Errorf("%w: line %d is outside %d-%d", ErrInvalid, line, numplan.MinLine, numplan.MaxLine)
	}
	node := cleanName(dir.NodeName)
	if node == "" {
		return configData{}, fmt.Errorf("%w: the node has no name; set node_name in the config", ErrInvalid)
	}
	label := lineLabel(dir, line)
	pi := numplan.LineGateway(uint8(line)).String()
	return configData{
		Node:         node,
		Line:         line,
		Label:        label,
		DisplayName:  fitName(node, " ", label),
		UserID:       strconv.Itoa(line),
		Pi:           pi,
		ServerURL:    URL(line) + "/",
		PhonebookURL: URL(line) + "/phonebook/" + Yealink.String() + ".xml",
	}, nil
}

// lineLabel is the label of local line s: its configured label, else "line s".
func lineLabel(dir Directory, s int) string {
	for _, l := range dir.Lines {
		if l.Line == s {
			if lbl := cleanName(l.Label); lbl != "" {
				return lbl
			}
		}
	}
	return "line " + strconv.Itoa(s)
}

// phonebookEntries lists what the phone on line sees. The separator is an
// ASCII " - ": the phones' LCD fonts are not known to have an em dash.
func phonebookEntries(dir Directory, line int) ([]entry, error) {
	node := cleanName(dir.NodeName)
	var out []entry
	for _, l := range dir.Lines {
		if !numplan.ValidLine(l.Line) {
			return nil, fmt.Errorf("%w: local line %d is outside %d-%d", ErrInvalid, l.Line, numplan.MinLine, numplan.MaxLine)
		}
		if l.Line == line {
			continue
		}
		out = append(out, entry{
			Name: fitName(node, " - ", lineLabel(dir, l.Line)),
			Addr: numplan.Phone(0, uint8(l.Line)),
		})
	}
	for _, p := range dir.Peers {
		if !numplan.ValidNode(p.Index) {
			return nil, fmt.Errorf("%w: peer %q has index %d outside %d-%d", ErrInvalid, p.Name, p.Index, numplan.MinNode, numplan.MaxNode)
		}
		name := cleanName(p.Name)
		if name == "" {
			name = "node " + strconv.Itoa(p.Index)
		}
		lines := p.Lines
		if len(lines) == 0 {
			lines = []int{1}
		}
		for _, s := range lines {
			if !numplan.ValidLine(s) {
				return nil, fmt.Errorf("%w: peer %q line %d is outside %d-%d", ErrInvalid, p.Name, s, numplan.MinLine, numplan.MaxLine)
			}
			what := cleanName(p.LineLabels[s])
			if what == "" {
				what = "line " + strconv.Itoa(s)
			}
			e := entry{
				Name: fitName(name, " - ", what),
				Addr: numplan.Phone(uint8(p.Index), uint8(s)),
			}
			if h := dialplan.HostName(p.Name); h != "" && dir.Password != nil {
				e.Dial = h + "." + strconv.Itoa(s)
			}
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b entry) int {
		return cmp.Or(
			cmp.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)),
			cmp.Compare(a.Name, b.Name),
			a.Addr.Compare(b.Addr),
		)
	})
	return out, nil
}

// fitName joins who and what, shortening who so that what (the line) stays
// visible within maxName runes.
func fitName(who, sep, what string) string {
	if who == "" {
		return truncate(what)
	}
	room := maxName - utf8.RuneCountInString(sep+what)
	if r := []rune(who); len(r) > room {
		who = strings.TrimRight(string(r[:max(room, 1)]), " ")
	}
	return truncate(who + sep + what)
}

// cleanName makes a name safe for every file format here: control characters
// (newlines above all, which would start a new key in a Yealink file) become
// spaces, runs of spaces collapse, invalid UTF-8 is dropped, and the result is
// cut to maxName runes. XML escaping happens later, in the templates.
func cleanName(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if r == utf8.RuneError {
			continue
		}
		if unicode.IsSpace(r) || !unicode.IsPrint(r) { // controls are not printable
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return truncate(b.String())
}

func truncate(s string) string {
	if utf8.RuneCountInString(s) <= maxName {
		return s
	}
	r := []rune(s)
	return strings.TrimRight(string(r[:maxName]), " ")
}

// xmlEscape is the templates' "xml" function.
func xmlEscape(s string) string {
	var b bytes.Buffer
	// EscapeText escapes quotes and newlines too, and cannot fail on a Buffer.
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

var templates = template.Must(template.New("provision").
	Funcs(template.FuncMap{"xml": xmlEscape}).
	ParseFS(mustSub(rootfs.Provision, rootfs.ProvisionDir), "*.tmpl"))

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

func render(name string, data any) ([]byte, error) {
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, path.Base(name), data); err != nil {
		return nil, fmt.Errorf("rendering %s: %w", name, err)
	}
	return b.Bytes(), nil
}
