package dhcpd

import "strings"

// identify derives a phone's vendor and model from its HTTP User-Agent
// (reported by the provisioning server, most precise) or else its DHCP
// vendor class (option 60). What the phones send, as collected by
// provisioning servers that match on it:
//
//   - Grandstream User-Agent "Grandstream Model HW GXP1628 SW 1.0.4.138
//     DevId c074ad2bd859" and, for some models, "Grandstream Model HW
//     GXP2200 V2.2A SW …" (wazo-platform/wazo-provd-plugins,
//     plugins/wazo-grandstream common.py, BaseGrandstreamHTTPDeviceInfoExtractor).
//   - Grandstream vendor class "Grandstream GXP1405 dslforum.org", and
//     "HT500 dslforum.org" / "DP7XX dslforum.org" without the vendor name
//     (test vectors of a DHCP vendor-class taxonomy, dhcpvendortax_test.sh,
//     in Google Fiber's gfiber platform code; an isc-dhcp example matching a
//     HT801 on "HT8XX dslforum.org").
//   - Yealink User-Agent "Yealink SIP-T19P_E2 53.80.0.3 00:15:65:4c:4c:26",
//     also lower-case "yealink SIP-T18 …" (wazo-provd-plugins,
//     plugins/xivo-yealink common.py, BaseYealinkHTTPDeviceInfoExtractor).
//   - Yealink vendor class: the admin guides list option 60 as sent and
//     configurable (static.network.dhcp.option60type), but the exact default
//     string was not found; "yealink" is matched case-insensitively as a
//     prefix, and anything else is shown raw.
func identify(userAgent, vendorClass string) (vendor, model string) {
	if v, m, ok := fromUserAgent(userAgent); ok {
		return v, m
	}
	return fromVendorClass(vendorClass)
}

func fromUserAgent(ua string) (vendor, model string, ok bool) {
	f := strings.Fields(ua)
	if len(f) < 2 {
		return "", "", false
	}
	switch strings.ToLower(f[0]) {
	case "grandstream":
		// "Grandstream Model HW GXP1610 [V…] SW …" or older
		// "Grandstream GXP2000 (…)".
		if len(f) >= 4 && f[1] == "Model" && f[2] == "HW" {
			return "Grandstream", f[3], true
		}
		return "Grandstream", f[1], true
	case "yealink":
		// "Yealink SIP-T19P 31.72.0.75 00:15:65:…"; "Yealink SIP VP-T49G …"
		if f[1] == "SIP" && len(f) >= 3 {
			return "Yealink", "SIP " + f[2], true
		}
		return "Yealink", f[1], true
	}
	return "", "", false
}

func fromVendorClass(vc string) (vendor, model string) {
	f := strings.Fields(vc)
	if len(f) == 0 {
		return "", ""
	}
	switch {
	case strings.EqualFold(f[0], "grandstream"):
		if len(f) >= 2 && !strings.EqualFold(f[1], "dslforum.org") {
			return "Grandstream", f[1]
		}
		return "Grandstream", ""
	case len(f) == 2 && strings.EqualFold(f[1], "dslforum.org") && grandstreamModel(f[0]):
		return "Grandstream", f[0]
	case strings.HasPrefix(strings.ToLower(f[0]), "yealink"):
		model := strings.TrimSpace(vc[len(f[0]):])
		if rest := f[0][len("yealink"):]; rest != "" {
			model = strings.TrimLeft(rest, "-_ ")
		}
		return "Yealink", model
	}
	return vc, ""
}

// grandstreamModel recognises the model prefixes Grandstream puts alone
// before "dslforum.org".
func grandstreamModel(s string) bool {
	for _, p := range []string{"GXP", "GXV", "GRP", "HT", "DP", "WP"} {
		if strings.HasPrefix(strings.ToUpper(s), p) {
			return true
		}
	}
	return false
}
