// Package lab builds test networks out of real Linux network namespaces and
// runs programs in them: softphones, the peerline daemon, tools. Lab tests
// (go test -tags lab) and cmd/peerlab (make demo) use it.
//
// Why real namespaces: the fakes (netsim, bindtest, siptest) cover logic, but
// only the kernel shows what really crosses a network: routing, nftables NAT,
// UDP sockets, and SIP phones that put real RTP on the wire. One namespace is
// one machine (a Pi, a phone, a NAT router, the "Internet").
//
// What it creates, and how it is cleaned up:
//   - A *Lab records everything it creates, and Close deletes all of it, even
//     after a failure midway. Close is idempotent and safe to call from
//     another goroutine (a Ctrl-C handler). After Close, every method returns
//     ErrClosed, so a setup goroutine racing with Ctrl-C cannot leak.
//   - Hosts are named namespaces plt-<pid>-<n> (Lab.Host).
//   - Veth pairs are created with both ends already inside their namespaces
//     (ip link add … netns A type veth peer … netns B). Nothing is ever added to
//     the machine's own root namespace: every address and route goes through
//     `ip -n <host namespace>`.
//   - Bridge is an "Internet" namespace holding a Linux bridge.
//   - Programs run with `nsenter --net=/run/netns/<ns> --`, which switches only
//     the network namespace. This is not `ip netns exec`: a peerlined in a Pi
//     namespace creates named namespaces itself, and its bind mounts in
//     /run/netns must be visible to everyone, so it has to stay in the
//     machine's mount namespace.
//   - Long-running programs (Host.Start) get their own process group and a log
//     file in Lab.Dir. They die with the creating process (PR_SET_PDEATHSIG,
//     set from a dedicated OS thread that never exits). Close stops them with
//     SIGTERM, then SIGKILL.
//   - Go code that must open sockets inside a namespace uses Host.Do, Host.Dial
//     or Host.ListenPacket. Each runs on a fresh OS thread that is locked,
//     switched into the namespace and never unlocked, so the Go runtime throws
//     the thread away. No shared goroutine ever changes namespace.
//
// Phones: Lab.Phone starts baresip (Debian bookworm's 1.0.0) with a generated
// config that needs no sound card. Its microphone is a WAV file (aufile), its
// speaker is a null sink (aubridge), and sndfile records the decoded audio it
// receives. Phone drives it over baresip's ctrl_tcp module: JSON in netstrings
// on 127.0.0.1 inside the phone's namespace, carrying commands (dial, accept,
// hangup) and events (CALL_INCOMING, CALL_ESTABLISHED, CALL_CLOSED, ...).
//
// Audio: Tone writes a sine WAV with sox, AnalyzeWAV measures a recording with
// `sox … -n stat`, and CheckTone says whether it is the expected tone, or
// what is wrong with it (silent, wrong pitch, too short).
//
// Testing wrappers (RequireRoot, New registering t.Cleanup) live in
// pkg/labtest, so this package never imports testing.
//
// Set PEERLINE_LAB_KEEP=1 to keep Lab.Dir (configs, logs, recordings) after
// Close for debugging.
package lab
