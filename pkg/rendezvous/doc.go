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
// Apart from the invite fetch below, two messages are not sealed: Cookie
// (server to node: the return-routability cookie for the node's source
// address and the server's clock, the answer to a sealed request that fails
// the cookie or time check; it is smaller than the smallest sealed request)
// and Relay (a WireGuard packet between two paired nodes,
// addressed by a session id the server handed out in sealed Punch messages;
// WireGuard authenticates the payload end to end).
//
// Invites: an inviting node stores a sealed invite blob (pkg/invite seals
// it with a key derived from the invite code's secret) on its servers with
// InvitePut (sealed like Register: cookie-checked, authenticated, and the id
// then belongs to the sender's key until it expires or the sender deletes
// it), answered by a sealed InvitePutReply. A joiner, who may not be
// registered anywhere, fetches it without any key or cookie:
//
//	InviteGet: header(4) id(16) length(2) join-box(length) zero-padding to InviteGetLen (342 bytes)
//	Invite:    header(4) id(16) length(2) blob(length ≤ MaxInviteBlob)
//
// An empty blob in an Invite means "not known here". InviteGet is padded to
// the longest possible Invite and any other length is dropped, so the answer
// is never longer than the question and can be sent without a cookie. A
// join box in the InviteGet (sealed by the joiner with a key derived from
// the secret) is pushed, sealed, to the node that stored the id, as
// InviteJoin, so that the inviter starts pairing in the same round trip.
// A fetch repeated with the same join box (a retransmission) gets the same
// answer for 30 s after the owner deleted the blob, so a joiner whose first
// answer was lost is not told the code is unknown.
//
// Two nodes also send each other, directly or through the relay, probes
// (TypeProbe, TypeProbeReply, TypeBye; see Probe) and pairing data
// (TypePair: the joiner's confirmation, the inviter's answers and each
// node's announcement of its name, lines and line labels, see PairMsg and
// pkg/pairing), both sealed with PeerAEAD:
//
//	Probe: header(4) sender(32) nonce(24) XChaCha20-Poly1305(txid(12) time-ms(8))
//	Pair:  header(4) sender(32) nonce(24) XChaCha20-Poly1305(time-ms(8) data(≤ MaxPairData))
//
// with the label, the header, the sender and the recipient as associated
// data.
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
// Invite storage gives a stranger no more: anyone may ask for any invite
// id, and gets at most as many bytes as they sent (so a spoofed source is
// reflected, not amplified, as with Cookie). An id is 128 bits derived from
// the invite secret, so guessing or enumerating one is hopeless, and what
// comes back is ciphertext that only a holder of the code can open. Only the
// key that stored an id can replace or delete it; storage is bounded per key
// and in total, and blobs expire (at most MaxInviteTTL). Keys cost nothing,
// so a stranger with many keys can fill the table and make other nodes'
// stores fail until the stranger's blobs expire: denial of service, as
// with the registration table, and nothing stored is lost or disclosed.
// Join boxes reach only the registered address of an id's owner, a few per
// invite (joinBurst, then one every 2 s); one that does not open with the
// secret is dropped there.
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
// traffic (WireGuard encrypts it). Of invites it learns only ids, blob
// sizes, which key stored them and which addresses fetched them: it cannot
// open a blob or forge one that opens (that needs the code's secret), only
// withhold it or hand out an older blob that the same node stored under
// that id. At worst it denies service.
package rendezvous
