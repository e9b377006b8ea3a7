package control

import "time"

// Commands that change the node, shared by the web console and `peerline`.
const (
	// CmdRename takes RenameArgs and returns PeerRef: the owner's name for
	// a peer, kept even when the peer announces another one.
	CmdRename = "peer.rename"
	// CmdLabelLine takes LabelLineArgs: the owner's name for a local line
	// ("" removes it).
	CmdLabelLine = "phones.label"
	// CmdLogs returns []LogLine: peerlined's recent warnings and errors.
	CmdLogs = "logs"
	// CmdJoinStart takes JoinArgs and returns JoinProgress at once; the
	// join runs on in the daemon, followed with CmdJoinProgress.
	CmdJoinStart = "join.start"
	// CmdJoinProgress takes JoinProgressArgs and returns JoinProgress.
	CmdJoinProgress = "join.progress"
	// CmdDiagnostics returns Diagnostics: what a bug report needs.
	CmdDiagnostics = "diagnostics"
	// CmdSettings returns Settings; CmdSetSettings takes SettingsArgs,
	// writes them through peerline.txt and returns the new Settings.
	CmdSettings    = "settings"
	CmdSetSettings = "settings.set"
)

// RenameArgs name a peer (index or name) and its new name.
type RenameArgs struct {
	Peer string `json:"peer"`
	Name string `json:"name"`
}

// LabelLineArgs label a local line.
type LabelLineArgs struct {
	Line  int    `json:"line"`
	Label string `json:"label"`
}

// LogLine is one kept log record.
type LogLine struct {
	Time  time.Time `json:"time"`
	Level string    `json:"level"`
	Text  string    `json:"text"`
}

// JoinProgressArgs name a join started with CmdJoinStart.
type JoinProgressArgs struct {
	ID string `json:"id"`
}

// Join step states.
const (
	StepPending = "pending"
	StepActive  = "active"
	StepDone    = "done"
	StepFailed  = "failed"
)

// JoinStep is one stage of a join, as the console shows it.
type JoinStep struct {
	Name   string `json:"name"`
	State  string `json:"state"`
	Detail string `json:"detail,omitempty"`
}

// JoinProgress is where a join stands. Done is set once the peer is
// online or the join failed (Error says what to do).
type JoinProgress struct {
	ID      string     `json:"id"`
	Started time.Time  `json:"started"`
	Steps   []JoinStep `json:"steps"`
	Done    bool       `json:"done"`
	Error   string     `json:"error,omitempty"`
	Peer    *PeerRef   `json:"peer,omitempty"`
	// FromBootConfig is set for the join named by `join =` in peerline.txt.
	FromBootConfig bool `json:"from_boot_config,omitempty"`
}

// DiagnosticFile is one file of a diagnostics bundle.
type DiagnosticFile struct {
	Name string `json:"name"`
	Data []byte `json:"data"`
}

// Diagnostics is everything a bug report needs, secrets removed.
type Diagnostics struct {
	Files []DiagnosticFile `json:"files"`
}

// Settings are what the owner may change from the console; they live in
// peerline.txt on the boot partition, so a change survives the next boot.
type Settings struct {
	Name       string   `json:"name"`
	TimeZone   string   `json:"time_zone"`
	Rendezvous []string `json:"rendezvous"`
	WiFiSSID   string   `json:"wifi_ssid"`
	// WiFiPasswordSet says a password is stored; it is never sent back.
	WiFiPasswordSet bool   `json:"wifi_password_set"`
	WiFiCountry     string `json:"wifi_country"`
	// Uplink is the interface to the Internet ("wlan0" means Wi-Fi).
	Uplink string `json:"uplink"`
	// Writable is false when the boot partition cannot be written; the
	// settings are then shown but cannot be changed here.
	Writable bool   `json:"writable"`
	Problem  string `json:"problem,omitempty"`
	// Note says what a change did beyond being saved (set by
	// CmdSetSettings): whether the Wi-Fi took it at once.
	Note string `json:"note,omitempty"`
}

// SettingsArgs are the new settings. Rendezvous holds one server per line
// as in peerline.txt ("host:port KEY"); an empty WiFiPassword keeps the
// stored one.
type SettingsArgs struct {
	Name         string   `json:"name"`
	TimeZone     string   `json:"time_zone"`
	Rendezvous   []string `json:"rendezvous"`
	WiFiSSID     string   `json:"wifi_ssid"`
	WiFiPassword string   `json:"wifi_password,omitempty"`
	WiFiCountry  string   `json:"wifi_country"`
}
