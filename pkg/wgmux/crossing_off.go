//go:build peerline_nocrossguard

package wgmux

// Built with the tag peerline_nocrossguard, the crossed-handshake guard
// only counts and logs crossings: for the lab test that shows what the
// guard prevents (pkg/peerlab's TestRekeyCrossing with
// PEERLINE_LAB_NOCROSSGUARD=1). No product build sets it.
func init() { crossGuardOff.Store(true) }
