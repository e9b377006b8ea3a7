package invite

import (
	"fmt"
	"strings"
)

// alphabet is Crockford's base32: no I, L, O (they look like 1 and 0) and no
// U (accidental words), so a code read aloud or from a screen is hard to get
// wrong.
const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// groupLen is how many characters Code shows between dashes.
const groupLen = 5

// digit maps a typed character to its value; -1 is not a code character.
var digit = func() (d [256]int8) {
	for i := range d {
		d[i] = -1
	}
	for i := range len(alphabet) {
		d[alphabet[i]] = int8(i)
		d[alphabet[i]|0x20] = int8(i) // lower case
	}
	for c, v := range map[byte]int8{'O': 0, 'o': 0, 'I': 1, 'i': 1, 'L': 1, 'l': 1} {
		d[c] = v
	}
	return d
}()

// encode32 writes b as base32, five bits a character, most significant
// first, the last character padded with zero bits.
func encode32(b []byte) string {
	var sb strings.Builder
	sb.Grow((len(b)*8 + 4) / 5)
	var acc, bits uint
	for _, c := range b {
		acc = acc<<8 | uint(c)
		bits += 8
		for bits >= 5 {
			bits -= 5
			sb.WriteByte(alphabet[acc>>bits&31])
		}
	}
	if bits > 0 {
		sb.WriteByte(alphabet[acc<<(5-bits)&31])
	}
	return sb.String()
}

// decode32 reverses encode32, skipping dashes and white space. A character
// outside the alphabet, a padding bit set or a character too many are typos.
func decode32(s string) ([]byte, error) {
	out := make([]byte, 0, len(s)*5/8)
	var acc, bits uint
	pos := 0 // among code characters, for the message
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '-', ' ', '\t', '\n', '\r':
			continue
		}
		pos++
		v := digit[c]
		if v < 0 {
			what := fmt.Sprintf("%q", c)
			if c >= 0x80 {
				what = "a non-ASCII character"
			}
			return nil, fmt.Errorf("%w (%s, character %d, cannot be in a code)", ErrTypo, what, pos)
		}
		acc = acc<<5 | uint(v)
		bits += 5
		if bits >= 8 {
			bits -= 8
			out = append(out, byte(acc>>bits))
		}
		acc &= 1<<bits - 1
	}
	// encode32 leaves fewer than five bits over, all zero.
	if bits >= 5 || acc != 0 {
		return nil, fmt.Errorf("%w (a character is missing or one too many)", ErrTypo)
	}
	return out, nil
}

// group inserts a dash every groupLen characters.
func group(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i += groupLen {
		if i > 0 {
			sb.WriteByte('-')
		}
		sb.WriteString(s[i:min(i+groupLen, len(s))])
	}
	return sb.String()
}
