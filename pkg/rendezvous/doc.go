// Package rendezvous is the wire format between peerline nodes and a
// rendezvous server (cmd/rendezvousd): message types with Append and Parse,
// key derivation, and sealing. It does no I/O, so every parser can be fuzzed
// and the server and the node share one definition of the protocol.
//
// # Wire format
//
// Every datagram starts with a 4-byte header: Magic (0xF5, which no
// WireGuard message (types 1..4) and no STUN message (top bits 00) starts
// with, so a node can demultiplex one UDP socket), Version (1), Type, and a
// zero byte. Unknown versions, types or a non-zero fourth byte are rejected.
//
// Control messages (register, connect, punch, ...) are sealed in an envelope:
//
//	header(4) cookie(16) sender-public-key(32) time-ms(8) nonce(24) ciphertext(body+16)
//
// The ciphertext is XChaCha20-Poly1305 over the message body; everything
// before it is authenticated as associated data, so the type, the sender,
// the time and the cookie cannot be changed. The key is HKDF-SHA256 of
// X25519(node, server), bound to a label and both public keys
// (NodeAEAD/ServerAEAD). Replies use the same key but their own types, so a
// request is never accepted as a reply or the other way round.
//
// Two messages are not sealed: Cookie (server to node: the return-routability
// cookie for the node's source address and the server's clock, the only
// answer an unauthenticated packet can get; it is smaller than the smallest
// sealed request) and Relay (a WireGuard packet between two paired nodes,
// addressed by a session id the server handed out in sealed Punch messages;
// WireGuard authenticates the payload end to end).
//
// Payloads that one node means for another (PeerInfo: LAN endpoints, later
// pairing and punch data) travel as a Box sealed with PeerAEAD, a key derived
// from X25519(node A, node B) that the server does not have. The server only
// copies boxes.
//
// # Who may learn an endpoint
//
// The server tells A where B is only when both asked for each other: A sends
// Connect(B, box for B); the server forwards the box to B (Incoming) without
// any address; if B is paired with A, B answers with Connect(A, box for A),
// and only then does the server send Punch to both, with each one's observed
// endpoints and the other's box. The server needs no pairing list (which
// could be large and would tell the server the whole social graph up front),
// and a node that is not paired with B gets only an acknowledgement, whether
// or not B is online.
//
// # Threat model
//
// A stranger (anyone who knows the server's address and can send and receive
// from their own address) can: make the server compute a cookie (cheap) and
// answer with a Cookie smaller than the request; register their own key;
// send Connect to any public key they know, which reaches that node as an
// Incoming it ignores (rate limited per sender). They cannot: register or
// unregister in another node's name (that needs the node's private key);
// learn any node's endpoint, online status or peers; use the relay towards a
// node that did not ask to talk to them; get the server to send more bytes
// to an address than it received from it (spoofed sources fail the cookie
// check, which binds every sealed request to its source address).
//
// An on-path attacker (sees and changes packets between node and server) can
// additionally drop, delay or replay packets, and learn endpoints and who
// talks to whom from addresses and sizes. Replays are refused (time window
// and replay cache); changed packets fail authentication; so such an
// attacker can deny service, as it could anyway, but cannot register,
// redirect or read a node's messages.
//
// A compromised server (or its key) sees endpoints and who connects to whom,
// and can lie about endpoints, drop, delay, or replay boxes and relay
// traffic. It cannot read or forge a Box (PeerAEAD needs a node private key),
// cannot impersonate a node to another (nodes pin each other's keys at
// pairing; WireGuard authenticates every packet) and cannot read relayed
// traffic (WireGuard encrypts it). At worst it denies service.
package rendezvous
