package dhcpd

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/tokenbucket"
)

const (
	// LeaseTime is what phones are told. Lines are stable whatever the
	// lease says; a long lease only spares DHCP traffic and keeps phones
	// working through a daemon restart.
	LeaseTime = 24 * time.Hour
	// ReclaimAfter is how long a binding must have been silent before its
	// line may go to another phone, and only when every line is bound.
	ReclaimAfter = 30 * 24 * time.Hour
	// offerTTL is how long a line stays reserved for a MAC that was offered
	// it but has not requested it yet.
	offerTTL = time.Minute
	// declineQuarantine keeps a line whose phone address a client reported
	// in use (DHCPDECLINE) out of the free pool for a while.
	declineQuarantine = time.Hour
	// seenFlushEvery bounds how often last-seen-only changes reach the SD
	// card.
	seenFlushEvery = time.Hour
	// logEvery is the minimum interval between two log lines of one kind
	// for events a flood can repeat (malformed packets, table full).
	logEvery = time.Minute
	// maxText caps strings taken from packets (vendor class, hostname,
	// User-Agent).
	maxText = 128
)

// Reasons a packet is dropped as malformed; Stats.Malformed counts them.
const (
	reasonParse     = "unparsable"      // not a DHCP message at all
	reasonOp        = "not-a-request"   // BOOTREPLY: another server or a loop
	reasonHType     = "not-ethernet"    // htype/hlen other than Ethernet
	reasonMAC       = "bad-mac"         // zero, broadcast or multicast chaddr
	reasonRelayed   = "relayed"         // giaddr set: no relay belongs on the phone port
	reasonNoType    = "no-message-type" // BOOTP or option 53 missing
	reasonWrongType = "unexpected-type" // OFFER/ACK/NAK or unknown type from a client
)

type hwaddr [6]byte

func (h hwaddr) String() string { return net.HardwareAddr(h[:]).String() }

// binding is one phone's line. Exported fields are what leases.json holds.
type binding struct {
	MAC         hwaddr
	Line        int
	VendorClass string
	Hostname    string
	UserAgent   string
	Bound       time.Time // first ACK
	LastSeen    time.Time // last DHCP packet
}

type offer struct {
	mac     hwaddr
	line    int
	expires time.Time
}

// Stats are the server's counters since New.
type Stats struct {
	Bound       int               `json:"bound"`
	Offered     int               `json:"offered"`
	Malformed   map[string]uint64 `json:"malformed"`
	RateLimited uint64            `json:"rate_limited"` // new MACs over the limit, dropped
	TableFull   uint64            `json:"table_full"`   // new MACs with no line left
	QueueFull   uint64            `json:"queue_full"`   // packets dropped before handling
	EnsureFail  uint64            `json:"ensure_failed"`
	Received    uint64            `json:"received"` // packets handled
	Replies     uint64            `json:"replies"`
}

// reply is what handle decided to send.
type reply struct {
	msg *dhcpv4.DHCPv4
	dst netip.Addr // 255.255.255.255 or the client's address
	src netip.Addr // the Pi's side of the line, 10.0.s.2
}

// table is the DHCP state: bindings, pending offers, counters. It does no
// I/O besides calling ensure, so tests and the fuzz target drive it
// directly. It is not safe for concurrent use: the Server's run goroutine
// owns it.
type table struct {
	log          *slog.Logger
	provisionURL func(line int) string

	static   [numplan.MaxLine + 1]bool
	byLine   [numplan.MaxLine + 1]*binding
	offered  [numplan.MaxLine + 1]*offer
	declined [numplan.MaxLine + 1]time.Time
	byMAC    map[hwaddr]*binding
	offers   map[hwaddr]*offer
	newMACs  tokenbucket.Bucket

	// dirty: a binding was added, removed or changed in a way that must
	// reach the disk now. seenDirty: only last-seen times changed.
	dirty, seenDirty bool

	malformed map[string]uint64
	stats     Stats
	logLimit  map[string]logState
}

type logState struct {
	last       time.Time
	suppressed uint64
}

func newTable(log *slog.Logger, static []int, provisionURL func(int) string, now time.Time) *table {
	t := &table{
		log:          log,
		provisionURL: provisionURL,
		byMAC:        make(map[hwaddr]*binding),
		offers:       make(map[hwaddr]*offer),
		newMACs:      tokenbucket.Full(newMACBurst, now),
		malformed:    make(map[string]uint64),
		logLimit:     make(map[string]logState),
	}
	for _, s := range static {
		if numplan.ValidLine(s) {
			t.static[s] = true
		}
	}
	return t
}

// add inserts a loaded binding; it reports why it cannot.
func (t *table) add(b *binding) error {
	switch {
	case !numplan.ValidLine(b.Line):
		return fmt.Errorf("line %d is outside 1..254", b.Line)
	case t.byLine[b.Line] != nil:
		return fmt.Errorf("line %d is bound twice (%s and %s)", b.Line, t.byLine[b.Line].MAC, b.MAC)
	case t.byMAC[b.MAC] != nil:
		return fmt.Errorf("MAC %s is bound twice (lines %d and %d)", b.MAC, t.byMAC[b.MAC].Line, b.Line)
	}
	t.byLine[b.Line] = b
	t.byMAC[b.MAC] = b
	return nil
}

func (t *table) remove(b *binding) {
	t.byLine[b.Line] = nil
	delete(t.byMAC, b.MAC)
	t.dirty = true
}

func (t *table) dropOffer(o *offer) {
	t.offered[o.line] = nil
	delete(t.offers, o.mac)
}

// bindings returns the bindings ordered by line.
func (t *table) bindings() []*binding {
	var out []*binding
	for _, b := range t.byLine {
		if b != nil {
			out = append(out, b)
		}
	}
	return out
}

// expire drops offers not requested in time and returns their lines, which
// the Pi's side no longer needs.
func (t *table) expire(now time.Time) []int {
	var lines []int
	for _, o := range t.offers {
		if now.After(o.expires) {
			t.dropOffer(o)
			if t.byLine[o.line] == nil {
				lines = append(lines, o.line)
			}
		}
	}
	slices.Sort(lines)
	return lines
}

// free reports whether line s can be given to a new MAC.
func (t *table) free(s int, now time.Time) bool {
	return !t.static[s] && t.byLine[s] == nil && t.offered[s] == nil && !now.Before(t.declined[s])
}

// nextFree returns the lowest free line, or 0.
func (t *table) nextFree(now time.Time) int {
	for s := numplan.MinLine; s <= numplan.MaxLine; s++ {
		if t.free(s, now) {
			return s
		}
	}
	return 0
}

// reclaimable returns the least recently seen binding silent for longer
// than ReclaimAfter, or nil.
func (t *table) reclaimable(now time.Time) *binding {
	var oldest *binding
	for _, b := range t.byLine {
		if b != nil && now.Sub(b.LastSeen) > ReclaimAfter && (oldest == nil || b.LastSeen.Before(oldest.LastSeen)) {
			oldest = b
		}
	}
	return oldest
}

// handle decides what to do with one packet from the phone port: it
// updates the table and returns the reply to send, if any. ensure is
// called before a reply that hands out a line; if it fails, nothing is
// answered and no new binding is kept.
func (t *table) handle(pkt []byte, now time.Time, ensure func(line int) error) (reply, bool) {
	t.stats.Received++
	m, mac, reason := parse(pkt)
	if reason != "" {
		t.countMalformed(reason, now)
		return reply{}, false
	}
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		return t.discover(m, mac, now, ensure)
	case dhcpv4.MessageTypeRequest:
		return t.request(m, mac, now, ensure)
	case dhcpv4.MessageTypeRelease:
		t.release(m, mac, now)
	case dhcpv4.MessageTypeDecline:
		t.decline(m, mac, now)
	case dhcpv4.MessageTypeInform:
		return t.inform(m, mac, now)
	default:
		t.countMalformed(reasonWrongType, now)
	}
	return reply{}, false
}

// parse checks what every message must have before it may touch the table.
func parse(pkt []byte) (*dhcpv4.DHCPv4, hwaddr, string) {
	var mac hwaddr
	m, err := dhcpv4.FromBytes(pkt)
	if err != nil {
		return nil, mac, reasonParse
	}
	if m.OpCode != dhcpv4.OpcodeBootRequest {
		return nil, mac, reasonOp
	}
	if m.HWType != iana.HWTypeEthernet || len(m.ClientHWAddr) != len(mac) {
		return nil, mac, reasonHType
	}
	copy(mac[:], m.ClientHWAddr)
	// The low bit of the first octet marks group addresses; a NIC never
	// has one, and all-zero is no address.
	if mac == (hwaddr{}) || mac[0]&1 != 0 {
		return nil, mac, reasonMAC
	}
	if gi := m.GatewayIPAddr; gi != nil && !gi.IsUnspecified() {
		return nil, mac, reasonRelayed
	}
	if !m.Options.Has(dhcpv4.OptionDHCPMessageType) {
		return nil, mac, reasonNoType
	}
	return m, mac, ""
}

func (t *table) discover(m *dhcpv4.DHCPv4, mac hwaddr, now time.Time, ensure func(int) error) (reply, bool) {
	if b := t.byMAC[mac]; b != nil {
		t.seen(b, m, now)
		if !t.ensure(b.Line, ensure) {
			return reply{}, false
		}
		return t.answer(m, dhcpv4.MessageTypeOffer, b.Line), true
	}
	if o := t.offers[mac]; o != nil {
		o.expires = now.Add(offerTTL)
		if !t.ensure(o.line, ensure) {
			return reply{}, false
		}
		return t.answer(m, dhcpv4.MessageTypeOffer, o.line), true
	}
	if !t.newMACs.Take(now, newMACRate, newMACBurst, 1) {
		t.stats.RateLimited++
		t.logLimited("rate", now, slog.LevelWarn, "DHCP: too many new phones at once, some requests dropped; a phone retries on its own",
			"limit_per_second", newMACRate, "burst", newMACBurst)
		return reply{}, false
	}
	line := t.nextFree(now)
	if line == 0 {
		if old := t.reclaimable(now); old != nil {
			line = old.Line
			t.log.Warn("DHCP: every line is bound; reclaiming the line of the phone silent longest",
				"line", line, "mac", old.MAC.String(), "last_seen", old.LastSeen.UTC().Format(time.RFC3339), "new_mac", mac.String())
			t.remove(old)
		}
	}
	if line == 0 {
		t.stats.TableFull++
		t.logLimited("full", now, slog.LevelError,
			"DHCP: phone table full, new phone not answered: all lines are bound or configured by hand; free one with `peerline phones forget <line>`",
			"mac", mac.String())
		return reply{}, false
	}
	o := &offer{mac: mac, line: line, expires: now.Add(offerTTL)}
	t.offers[mac] = o
	t.offered[line] = o
	if !t.ensure(line, ensure) {
		t.dropOffer(o)
		return reply{}, false
	}
	return t.answer(m, dhcpv4.MessageTypeOffer, line), true
}

func (t *table) request(m *dhcpv4.DHCPv4, mac hwaddr, now time.Time, ensure func(int) error) (reply, bool) {
	want := requested(m)
	sid := m.ServerIdentifier()
	line := 0
	if b := t.byMAC[mac]; b != nil {
		line = b.Line
	} else if o := t.offers[mac]; o != nil {
		line = o.line
	}
	if sid != nil && (line == 0 || !sid.Equal(gateway(line).AsSlice())) {
		// SELECTING another server's offer (or a server identifier that is
		// not ours): the client chose someone else. Forget our offer.
		if o := t.offers[mac]; o != nil {
			t.dropOffer(o)
		}
		return reply{}, false
	}
	if line == 0 {
		// No record of this client: INIT-REBOOT or RENEWING after our
		// bindings were lost. Give it the line it asks for if that line is
		// free, so phones keep their addresses; otherwise stay silent
		// (RFC 2131 §4.3.2) and let it fall back to DISCOVER.
		s, ok := numplan.LocalPhone(want)
		if !ok || !t.free(s, now) {
			return reply{}, false
		}
		if !t.newMACs.Take(now, newMACRate, newMACBurst, 1) {
			t.stats.RateLimited++
			return reply{}, false
		}
		line = s
	}
	if want != phoneAddr(line) {
		// A bound or offered client asking for an address that is not its
		// own (another network's lease, or a line it lost).
		return t.answer(m, dhcpv4.MessageTypeNak, line), true
	}
	if !t.ensure(line, ensure) {
		return reply{}, false
	}
	b := t.byMAC[mac]
	if b == nil {
		if o := t.offers[mac]; o != nil {
			t.dropOffer(o)
		}
		b = &binding{MAC: mac, Line: line, Bound: now, LastSeen: now}
		if err := t.add(b); err != nil {
			// Unreachable: the line was checked free and the MAC unbound.
			t.log.Error("DHCP: internal error binding a phone", "err", err)
			return reply{}, false
		}
		t.dirty = true
		t.log.Info("DHCP: phone bound to line", "line", line, "mac", mac.String(), "addr", phoneAddr(line).String(),
			"vendor_class", text(m.ClassIdentifier()), "hostname", text(m.HostName()))
	}
	t.seen(b, m, now)
	return t.answer(m, dhcpv4.MessageTypeAck, line), true
}

// release keeps the binding: lines are stable, and a phone that releases
// on its way down gets the same line when it comes back. Only an offer not
// yet taken is dropped.
func (t *table) release(m *dhcpv4.DHCPv4, mac hwaddr, now time.Time) {
	if b := t.byMAC[mac]; b != nil {
		t.seen(b, m, now)
		return
	}
	if o := t.offers[mac]; o != nil {
		t.dropOffer(o)
	}
}

// decline means the client found its address in use: some device on the
// port has 10.0.s.1 configured by hand. The line is set aside for a while
// and the client gets another one at its next DISCOVER.
func (t *table) decline(m *dhcpv4.DHCPv4, mac hwaddr, now time.Time) {
	line := 0
	if b := t.byMAC[mac]; b != nil {
		line = b.Line
	} else if o := t.offers[mac]; o != nil {
		line = o.line
	}
	if line == 0 || requested(m) != phoneAddr(line) {
		return
	}
	if b := t.byMAC[mac]; b != nil {
		t.remove(b)
	}
	if o := t.offers[mac]; o != nil {
		t.dropOffer(o)
	}
	t.declined[line] = now.Add(declineQuarantine)
	t.log.Warn("DHCP: a phone reports its address already in use; another device on the phone port has it configured by hand. "+
		"Add that line to the static lines in the config, or remove the device",
		"line", line, "addr", phoneAddr(line).String(), "mac", mac.String())
}

// inform answers a client that configured 10.0.s.1 by hand with the
// options of line s (router, DNS, NTP, provisioning URL).
func (t *table) inform(m *dhcpv4.DHCPv4, mac hwaddr, now time.Time) (reply, bool) {
	s, ok := numplan.LocalPhone(addrOf(m.ClientIPAddr))
	if !ok {
		return reply{}, false
	}
	if b := t.byMAC[mac]; b != nil && b.Line == s {
		t.seen(b, m, now)
	}
	r := t.answer(m, dhcpv4.MessageTypeAck, s)
	r.msg.YourIPAddr = net.IPv4zero
	r.msg.Options.Del(dhcpv4.OptionIPAddressLeaseTime)
	return r, true
}

func (t *table) ensure(line int, ensure func(int) error) bool {
	if err := ensure(line); err != nil {
		t.stats.EnsureFail++
		return false
	}
	return true
}

// seen notes a packet from a bound phone.
func (t *table) seen(b *binding, m *dhcpv4.DHCPv4, now time.Time) {
	b.LastSeen = now
	t.seenDirty = true
	if vc := text(m.ClassIdentifier()); vc != "" && vc != b.VendorClass {
		b.VendorClass = vc
		t.dirty = true
	}
	if hn := text(m.HostName()); hn != "" && hn != b.Hostname {
		b.Hostname = hn
		t.dirty = true
	}
}

// answer builds an OFFER, ACK or NAK for line s.
func (t *table) answer(req *dhcpv4.DHCPv4, typ dhcpv4.MessageType, s int) reply {
	gw := gateway(s)
	resp := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        req.HWType,
		TransactionID: req.TransactionID,
		Flags:         req.Flags,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		ClientHWAddr:  req.ClientHWAddr,
		Options:       dhcpv4.Options{},
	}
	resp.UpdateOption(dhcpv4.OptMessageType(typ))
	resp.UpdateOption(dhcpv4.OptServerIdentifier(gw.AsSlice()))
	// RFC 6842: echo the client identifier.
	if ci := req.Options.Get(dhcpv4.OptionClientIdentifier); ci != nil {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientIdentifier, ci))
	}
	r := reply{msg: resp, dst: netip.AddrFrom4([4]byte{255, 255, 255, 255}), src: gw}
	t.stats.Replies++
	if typ == dhcpv4.MessageTypeNak {
		// RFC 2131 §4.3.2: a NAK is broadcast, the client may have no
		// usable address.
		return r
	}
	resp.ClientIPAddr = req.ClientIPAddr
	resp.YourIPAddr = phoneAddr(s).AsSlice()
	resp.UpdateOption(dhcpv4.OptIPAddressLeaseTime(LeaseTime))
	resp.UpdateOption(dhcpv4.OptSubnetMask(net.CIDRMask(30, 32)))
	resp.UpdateOption(dhcpv4.OptRouter(gw.AsSlice()))
	resp.UpdateOption(dhcpv4.OptDNS(gw.AsSlice()))
	resp.UpdateOption(dhcpv4.OptNTPServers(gw.AsSlice()))
	if t.provisionURL != nil {
		if u := t.provisionURL(s); u != "" {
			resp.UpdateOption(dhcpv4.OptTFTPServerName(u))
		}
	}
	// A client that has an address (RENEWING, INFORM) gets a unicast
	// reply; one that has none yet cannot receive unicast before it has
	// configured its address, and we cannot prime the ARP cache from a UDP
	// socket, so it gets a broadcast on the phone port.
	if ci := addrOf(req.ClientIPAddr); ci.IsValid() && !ci.IsUnspecified() {
		r.dst = ci
	}
	return r
}

func (t *table) countMalformed(reason string, now time.Time) {
	t.malformed[reason]++
	t.logLimited("malformed:"+reason, now, slog.LevelWarn,
		"DHCP: malformed packets on the phone port ignored (a broken or misconfigured device?)",
		"reason", reason, "total", t.malformed[reason])
}

// logLimited logs at most once per logEvery for key, with the number of
// events not logged since.
func (t *table) logLimited(key string, now time.Time, level slog.Level, msg string, args ...any) {
	st := t.logLimit[key]
	if !st.last.IsZero() && now.Sub(st.last) < logEvery {
		st.suppressed++
		t.logLimit[key] = st
		return
	}
	if st.suppressed > 0 {
		args = append(args, "suppressed_since_last_log", st.suppressed)
	}
	t.log.Log(context.Background(), level, msg, args...)
	t.logLimit[key] = logState{last: now}
}

func (t *table) snapshot() Stats {
	st := t.stats
	st.Bound = len(t.byMAC)
	st.Offered = len(t.offers)
	st.Malformed = make(map[string]uint64, len(t.malformed))
	for k, v := range t.malformed {
		st.Malformed[k] = v
	}
	return st
}

// requested is the address a REQUEST or DECLINE asks about: ciaddr when
// the client has one (RENEWING, REBINDING), else option 50.
func requested(m *dhcpv4.DHCPv4) netip.Addr {
	if a := addrOf(m.ClientIPAddr); a.IsValid() && !a.IsUnspecified() {
		return a
	}
	return addrOf(m.RequestedIPAddress())
}

func addrOf(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	return a.Unmap()
}

func phoneAddr(s int) netip.Addr { return numplan.Phone(0, uint8(s)) }
func gateway(s int) netip.Addr   { return numplan.LineGateway(uint8(s)) }

// text keeps printable ASCII of s, at most maxText bytes: these strings
// come from any device on the port and end up in logs, JSON and the CLI.
func text(s string) string {
	out := make([]byte, 0, min(len(s), maxText))
	for i := 0; i < len(s) && len(out) < maxText; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			out = append(out, c)
		}
	}
	return string(out)
}
