package provision

import (
	"net"
	"strings"
)

// maxPathLen bounds the request paths the server looks at; every file a phone
// asks for is far shorter.
const maxPathLen = 128

// kind is what a request path asks for.
type kind int

const (
	kindOther     kind = iota // not provisioning: handed to Options.Extra
	kindConfig                // a per-MAC configuration file
	kindCommon                // a vendor's common file (nothing per line)
	kindPhonebook             // the requester's phonebook
	kindNotServed             // a provisioning name deliberately answered with 404
)

// request is a parsed provisioning path.
type request struct {
	kind   kind
	vendor Vendor
	mac    net.HardwareAddr // only for kindConfig
}

// parsePath recognises the files phones fetch. Per-MAC names, as the vendors
// document them (MAC in any case, with no separators or with ':' or '-'):
//
//	/cfg<mac>.xml  Grandstream (GXP16xx admin guide, "Config File Download")
//	/<mac>.cfg     Yealink (auto-provisioning guide, "MAC-Oriented CFG File")
//
// Any number of leading slashes is accepted: a phone joins the server path
// from DHCP option 66 and the file name with a "/" of its own, so a path
// that ends in "/" (as option 66 did, or a Yealink server URL still does)
// yields "//cfg<mac>.xml".
//
// /cfg<mac> without ".xml" is Grandstream's name for its legacy binary
// (encoded) file; a firmware that asks for it expects that format, not XML,
// so it is kindNotServed (404) and the phone goes on to cfg<mac>.xml.
//
// Common files: /y000000000031.cfg (T19P) and /y000000000053.cfg (T19P E2).
// Phonebooks: /phonebook/yealink.xml; for Grandstream, which appends
// "/phonebook.xml" to its phonebook path P331 (the FusionPBX rewrite rule for
// GXP phonebooks matches ".../phonebook.xml"), /phonebook/grandstream/phonebook.xml,
// and /phonebook/grandstream.xml for firmware that takes the path as a file.
// Anything else is kindOther. The Grandstream fallbacks cfg<model>.xml and
// cfg.xml are kindOther too: a phone only asks for them after its own file
// failed, and then it must not get another phone's settings.
func parsePath(p string) request {
	if len(p) > maxPathLen || !strings.HasPrefix(p, "/") {
		return request{}
	}
	name := strings.ToLower(strings.TrimLeft(p, "/"))
	switch name {
	case "y000000000031.cfg", "y000000000053.cfg":
		return request{kind: kindCommon, vendor: Yealink}
	case "phonebook/yealink.xml":
		return request{kind: kindPhonebook, vendor: Yealink}
	case "phonebook/grandstream.xml", "phonebook/grandstream/phonebook.xml":
		return request{kind: kindPhonebook, vendor: Grandstream}
	}
	if rest, ok := strings.CutPrefix(name, "cfg"); ok {
		rest, xml := strings.CutSuffix(rest, ".xml")
		mac := parseMAC(rest)
		switch {
		case mac == nil:
			return request{}
		case !xml:
			return request{kind: kindNotServed, vendor: Grandstream}
		}
		return request{kind: kindConfig, vendor: Grandstream, mac: mac}
	}
	if rest, ok := strings.CutSuffix(name, ".cfg"); ok {
		if mac := parseMAC(rest); mac != nil {
			return request{kind: kindConfig, vendor: Yealink, mac: mac}
		}
	}
	return request{}
}

// parseMAC accepts exactly 12 hex digits, or 6 pairs joined by one kind of
// separator (':' or '-'); s is already lower case. net.ParseMAC is not used
// because it also takes dotted and longer forms no phone asks for.
func parseMAC(s string) net.HardwareAddr {
	var sep byte
	switch len(s) {
	case 12:
	case 17:
		sep = s[2]
		if sep != ':' && sep != '-' {
			return nil
		}
	default:
		return nil
	}
	mac := make(net.HardwareAddr, 6)
	for i := range mac {
		j := 2 * i
		if sep != 0 {
			j = 3 * i
			if i > 0 && s[j-1] != sep {
				return nil
			}
		}
		hi, ok1 := hexVal(s[j])
		lo, ok2 := hexVal(s[j+1])
		if !ok1 || !ok2 {
			return nil
		}
		mac[i] = hi<<4 | lo
	}
	return mac
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
