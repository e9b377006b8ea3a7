// Package rootfs holds files that are both installed on the SD card image
// (under their path in this directory) and compiled into peerlined, so that
// the binary and the image can never disagree about them.
//
// Only the phone provisioning templates are embedded today: peerlined renders
// them per phone, and the image carries the same files for people who want to
// read what their phones are told.
package rootfs

import "embed"

// Provision holds usr/share/peerline/provision/*.tmpl, the templates of the
// per-phone configuration files and phonebooks (see pkg/provision).
//
//go:embed usr/share/peerline/provision/*.tmpl
var Provision embed.FS

// ProvisionDir is the directory of the templates inside Provision and on the
// image.
const ProvisionDir = "usr/share/peerline/provision"
