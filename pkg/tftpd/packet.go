package tftpd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Opcodes (RFC 1350 §5, RFC 2347).
const (
	opRRQ   = 1
	opWRQ   = 2
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

// Error codes (RFC 1350 appendix, RFC 2347).
const (
	errUndefined     = 0
	errNotFound      = 1
	errAccess        = 2
	errIllegalOp     = 4
	errUnknownTID    = 5
	errOptionRefused = 8
)

// maxRequestLen bounds a request: RFC 1350 packets fit in 512 bytes and
// the option extension (RFC 2347) keeps that limit.
const maxRequestLen = 512

// Request is a parsed RRQ or WRQ.
type Request struct {
	Write    bool // WRQ; this server refuses it
	Filename string
	Mode     string            // "octet" or "netascii", lower case
	Options  map[string]string // option names lower case; values as sent
}

var errMalformed = errors.New("malformed TFTP request")

// ParseRequest parses a read or write request: opcode, then NUL-terminated
// filename and mode, then NUL-terminated option name/value pairs. Anything
// else (a DATA or ACK on the server port, a truncated string, an unknown
// mode, a repeated option) is an error.
func ParseRequest(b []byte) (Request, error) {
	if len(b) < 2 || len(b) > maxRequestLen {
		return Request{}, fmt.Errorf("%w: %d bytes", errMalformed, len(b))
	}
	var r Request
	switch binary.BigEndian.Uint16(b) {
	case opRRQ:
	case opWRQ:
		r.Write = true
	default:
		return Request{}, fmt.Errorf("%w: opcode %d is not a request", errMalformed, binary.BigEndian.Uint16(b))
	}
	fields := bytes.Split(b[2:], []byte{0})
	// A well-formed packet ends in NUL, so the last field is empty.
	if len(fields) < 3 || len(fields[len(fields)-1]) != 0 {
		return Request{}, fmt.Errorf("%w: missing NUL terminator", errMalformed)
	}
	fields = fields[:len(fields)-1]
	if len(fields)%2 != 0 {
		return Request{}, fmt.Errorf("%w: option without a value", errMalformed)
	}
	r.Filename = string(fields[0])
	if r.Filename == "" || !printable(r.Filename) {
		return Request{}, fmt.Errorf("%w: empty or unprintable filename", errMalformed)
	}
	r.Mode = strings.ToLower(string(fields[1]))
	if r.Mode != "octet" && r.Mode != "netascii" {
		return Request{}, fmt.Errorf("%w: mode %q", errMalformed, r.Mode)
	}
	for i := 2; i < len(fields); i += 2 {
		name := strings.ToLower(string(fields[i]))
		if name == "" || !printable(name) || !printable(string(fields[i+1])) {
			return Request{}, fmt.Errorf("%w: empty or unprintable option", errMalformed)
		}
		if r.Options == nil {
			r.Options = map[string]string{}
		}
		if _, dup := r.Options[name]; dup {
			return Request{}, fmt.Errorf("%w: option %q twice", errMalformed, name)
		}
		r.Options[name] = string(fields[i+1])
	}
	return r, nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// options are the negotiated transfer parameters.
type options struct {
	blksize int
	timeout int // seconds; 0 = server default
	tsize   bool
}

// Limits of negotiable options. Block sizes above maxBlksize would
// fragment on an Ethernet phone port (1500 - IP 20 - UDP 8 - TFTP 4).
const (
	defaultBlksize = 512
	minBlksize     = 8
	maxBlksize     = 1468
)

// negotiate picks the options this server accepts (RFC 2347-2349);
// unknown and malformed options are left out of the OACK, as RFC 2347
// asks, rather than failing the transfer.
func negotiate(req map[string]string) (options, []string) {
	o := options{blksize: defaultBlksize}
	var ack []string
	if v, ok := req["blksize"]; ok {
		if n, err := strconv.Atoi(v); err == nil && n >= minBlksize {
			o.blksize = min(n, maxBlksize)
			ack = append(ack, "blksize", strconv.Itoa(o.blksize))
		}
	}
	if v, ok := req["timeout"]; ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 1 && n <= 255 {
			o.timeout = n
			ack = append(ack, "timeout", v)
		}
	}
	if v, ok := req["tsize"]; ok && v == "0" {
		o.tsize = true // the value is filled in once the size is known
	}
	return o, ack
}

func errorPacket(code uint16, msg string) []byte {
	b := binary.BigEndian.AppendUint16(nil, opERROR)
	b = binary.BigEndian.AppendUint16(b, code)
	b = append(b, msg...)
	return append(b, 0)
}

func oackPacket(kv []string) []byte {
	b := binary.BigEndian.AppendUint16(nil, opOACK)
	for _, s := range kv {
		b = append(b, s...)
		b = append(b, 0)
	}
	return b
}

func dataPacket(buf []byte, block uint16, data []byte) []byte {
	b := binary.BigEndian.AppendUint16(buf[:0], opDATA)
	b = binary.BigEndian.AppendUint16(b, block)
	return append(b, data...)
}

// toNetascii converts a file to netascii (RFC 764): lines end in CR LF and
// a bare CR becomes CR NUL.
func toNetascii(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/16)
	for _, c := range b {
		switch c {
		case '\n':
			out = append(out, '\r', '\n')
		case '\r':
			out = append(out, '\r', 0)
		default:
			out = append(out, c)
		}
	}
	return out
}
