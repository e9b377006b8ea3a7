package privacy

import (
	"fmt"
	"slices"
	"strings"
)

// Withhold is the config's setting for hiding one's own identity on
// outgoing calls: always from some lines, or for one call when the number
// dialled starts with a prefix (the prefix is removed before routing).
type Withhold struct {
	// Prefix, e.g. "*31*", withholds the identity of the call dialled
	// after it. Digits, '*' and '#' only, at most 8.
	Prefix string `json:"prefix,omitempty"`
	// Lines always withhold their identity.
	Lines []int `json:"lines,omitempty"`
}

// Validate checks the setting against the node's lines.
func (w Withhold) Validate(lines []int) error {
	if len(w.Prefix) > 8 || strings.Trim(w.Prefix, "0123456789*#") != "" {
		return fmt.Errorf("withhold prefix %q: want up to 8 of 0-9, * and # (such as *31*)", w.Prefix)
	}
	for _, l := range w.Lines {
		if !slices.Contains(lines, l) {
			return fmt.Errorf("withhold line %d is not one of this node's lines %v", l, lines)
		}
	}
	return nil
}

// Apply says whether a call dialled on line withholds its caller's
// identity, and returns the number to route (the prefix removed).
func (w Withhold) Apply(line int, dialled string) (number string, withhold bool) {
	if w.Prefix != "" && len(dialled) > len(w.Prefix) && strings.HasPrefix(dialled, w.Prefix) {
		return dialled[len(w.Prefix):], true
	}
	return dialled, slices.Contains(w.Lines, line)
}

// AnonymousFrom is RFC 3323 §4.1.1.3's From for a caller who withholds
// their identity, without the tag.
const AnonymousFrom = `"Anonymous" <sip:anonymous@anonymous.invalid>`

// Identity is who an outgoing call is from: a trunk account's caller ID.
type Identity struct {
	Display string // may be empty
	URI     string // e.g. sip:4930123456@provider.example
}

// Outgoing are the identity header values of an outgoing INVITE; an empty
// value means "leave the header out".
type Outgoing struct {
	From               string // without the tag, which the UA adds
	PPreferredIdentity string
	Privacy            string
}

// OutgoingHeaders says what to put in From, P-Preferred-Identity and
// Privacy for a call from id. Withholding (RFC 3323 §4.1.1.3, RFC 3325
// §9.3): From becomes the anonymous URI, so the called party sees nothing
// even if the provider does not implement privacy; the real identity goes
// in P-Preferred-Identity, so the provider can still check and bill it;
// and Privacy: id asks the provider to strip it (and the P-Asserted-
// Identity it makes from it) before the call leaves its network. The
// account's credentials (digest) do not depend on From.
func OutgoingHeaders(id Identity, withhold bool) Outgoing {
	named := "<" + id.URI + ">"
	if id.Display != "" {
		named = quote(id.Display) + " " + named
	}
	if !withhold {
		return Outgoing{From: named}
	}
	return Outgoing{From: AnonymousFrom, PPreferredIdentity: named, Privacy: "id"}
}

// quote makes a display name a quoted-string (RFC 3261 §25.1).
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			// CR, LF and other controls cannot be escaped in SIP.
			b.WriteByte(' ')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
