package sipauth

import (
	"errors"
	"strings"
)

// Credentials are the fields of an Authorization header (RFC 3261 §25.1
// digest-response, RFC 7616 for algorithm names) that a registrar needs.
// The strings point into the parsed header value.
type Credentials struct {
	Username  string
	Realm     string
	Nonce     string
	URI       string
	Response  string
	Algorithm string // as sent; "" means MD5
	CNonce    string
	NC        string
	QOP       string
	Opaque    string
}

// maxHeader bounds what ParseAuthorization reads: a phone's Authorization
// header is a few hundred bytes, and the parser must not be a way to make
// the registrar work hard.
const maxHeader = 4096

var errMalformed = errors.New("malformed Authorization header")

// ParseAuthorization reads a Digest Authorization header value. The input
// comes from any device on the phone port, so it is treated as hostile:
// bounded in length, no allocation beyond the result, duplicate or
// unknown parameters and anything that is not digest refused or ignored as
// RFC 7616 says (unknown parameters are ignored, a repeated one is an
// error because two readers could pick different copies).
func ParseAuthorization(v string) (Credentials, error) {
	var c Credentials
	if len(v) > maxHeader {
		return c, errMalformed
	}
	v = trimLWS(v)
	scheme, rest, ok := cutLWS(v)
	if !ok || !strings.EqualFold(scheme, "Digest") {
		return c, errMalformed
	}
	seen := 0
	for {
		rest = trimLWS(rest)
		if rest == "" {
			break
		}
		name, value, tail, err := nextParam(rest)
		if err != nil {
			return Credentials{}, err
		}
		rest = tail
		var dst *string
		var bit int
		switch strings.ToLower(name) {
		case "username":
			dst, bit = &c.Username, 1
		case "realm":
			dst, bit = &c.Realm, 2
		case "nonce":
			dst, bit = &c.Nonce, 4
		case "uri":
			dst, bit = &c.URI, 8
		case "response":
			dst, bit = &c.Response, 16
		case "algorithm":
			dst, bit = &c.Algorithm, 32
		case "cnonce":
			dst, bit = &c.CNonce, 64
		case "nc":
			dst, bit = &c.NC, 128
		case "qop":
			dst, bit = &c.QOP, 256
		case "opaque":
			dst, bit = &c.Opaque, 512
		default:
			continue
		}
		if seen&bit != 0 {
			return Credentials{}, errMalformed
		}
		seen |= bit
		*dst = value
	}
	if c.Username == "" || c.Nonce == "" || c.Response == "" || c.URI == "" {
		return Credentials{}, errMalformed
	}
	return c, nil
}

// nextParam reads `name=value` or `name="quoted value"` followed by an
// optional comma. Quoted values may contain escaped characters; they are
// refused rather than unescaped, since no field a phone sends needs them
// and unescaping would need a copy.
func nextParam(s string) (name, value, rest string, err error) {
	eq := strings.IndexByte(s, '=')
	if eq <= 0 {
		return "", "", "", errMalformed
	}
	name = trimLWS(s[:eq])
	if !isToken(name) {
		return "", "", "", errMalformed
	}
	s = trimLWS(s[eq+1:])
	if strings.HasPrefix(s, `"`) {
		end := strings.IndexByte(s[1:], '"')
		if end < 0 {
			return "", "", "", errMalformed
		}
		value = s[1 : 1+end]
		if strings.IndexByte(value, '\\') >= 0 {
			return "", "", "", errMalformed
		}
		s = s[2+end:]
	} else {
		end := strings.IndexAny(s, ", \t")
		if end < 0 {
			end = len(s)
		}
		value = s[:end]
		if !isToken(value) {
			return "", "", "", errMalformed
		}
		s = s[end:]
	}
	s = trimLWS(s)
	if s != "" {
		if s[0] != ',' {
			return "", "", "", errMalformed
		}
		s = s[1:]
	}
	return name, value, s, nil
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-.!%*_+`'~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func trimLWS(s string) string { return strings.Trim(s, " \t\r\n") }

func cutLWS(s string) (before, after string, ok bool) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}
