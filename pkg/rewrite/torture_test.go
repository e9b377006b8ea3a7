package rewrite

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/sipmsg"
)

// tortureDir is sipmsg's RFC 4475 corpus: the original messages under
// valid/ and invalid/, the same with local-plan addresses under local/, and
// their golden wire form (out through tunnel 7) under wire/.
const tortureDir = "../sipmsg/testdata/rfc4475"

// TestPacketTorture runs the whole packet path over every RFC 4475 message,
// carried from Alice's phone (10.0.1.1) to Bob's (10.7.2.1):
//   - the original messages name no local address: the payload passes
//     unchanged, whether sipmsg parses it (SIPUnchanged) or not
//     (SIPUnparsable), or it is not even sniffed as SIP (Plain: intmeth's
//     method starts with '!', novelsc has a soap.beep: Request-URI);
//   - the localised messages come out as sipmsg's golden wire form when they
//     are rewritten, with lengths and checksums right, and out at Alice's
//     node, in at Bob's, out at Bob's and in at Alice's give back the packet;
//     those sipmsg refuses pass unchanged, or are refused (SIPRefused,
//     dropped by Device) when they carry our addresses (sipmsg.Mappable).
func TestPacketTorture(t *testing.T) {
	for _, verdict := range []string{"valid", "invalid"} {
		files, err := filepath.Glob(filepath.Join(tortureDir, verdict, "*.dat"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no torture messages under %s: %v", tortureDir, err)
		}
		for _, f := range files {
			name := verdict + "/" + filepath.Base(f)
			t.Run(name, func(t *testing.T) {
				orig := readTortureFile(t, f)
				in := udp4("10.0.1.1", "10.7.2.1", 5060, 5060, orig)
				got, res := Packet(nil, bytes.Clone(in), bobAtAlice, numplan.Outbound)
				if p := udpPayload(got); !bytes.Equal(p, orig) {
					t.Errorf("Packet(%s) changed a payload without local addresses (%v):\n%q", name, res, p)
				}
				_, _, perr := sipmsg.Rewrite(nil, orig, outAt7)
				switch {
				case res == SIPUnparsable && perr == nil,
					res == SIPUnchanged && perr != nil,
					res != SIPUnparsable && res != SIPUnchanged && res != Plain:
					t.Errorf("Packet(%s) = %v, sipmsg says %v", name, res, perr)
				case verdict == "valid" && res == SIPUnparsable:
					t.Errorf("Packet(%s) = %v for a valid message", name, res)
				}
				checkPacket(t, got)

				local := readTortureFile(t, filepath.Join(tortureDir, "local", verdict, filepath.Base(f)))
				wire := readTortureFile(t, filepath.Join(tortureDir, "wire", verdict, filepath.Base(f)))
				pkt := udp4("10.0.1.1", "10.7.2.1", 5060, 5060, local)
				got, res = Packet(nil, bytes.Clone(pkt), bobAtAlice, numplan.Outbound)
				checkPacket(t, got)
				switch res {
				case SIPRewritten, SIPUnchanged:
					if p := udpPayload(got); !bytes.Equal(p, wire) {
						t.Errorf("Packet(local %s) payload =\n%q\nwant (golden)\n%q", name, p, wire)
					}
				case SIPUnparsable, Plain:
					if p := udpPayload(got); !bytes.Equal(p, local) {
						t.Errorf("Packet(local %s) = %v changed the payload", name, res)
					}
				default:
					// Anything else refuses the packet, which is only right
					// for a malformed message that carries our addresses.
					if _, _, err := sipmsg.Rewrite(nil, local, outAt7); err == nil || !sipmsg.Mappable(local, outAt7) {
						t.Errorf("Packet(local %s) = %v, but sipmsg says %v, mappable %v", name, res, err, sipmsg.Mappable(local, outAt7))
					}
					return
				}
				for _, step := range []struct {
					peer uint8
					dir  numplan.Direction
				}{{aliceAtBob, numplan.Inbound}, {aliceAtBob, numplan.Outbound}, {bobAtAlice, numplan.Inbound}} {
					got, _ = Packet(nil, bytes.Clone(got), step.peer, step.dir)
					checkPacket(t, got)
				}
				if !bytes.Equal(got, pkt) {
					t.Errorf("round trip of local %s through both nodes =\n%q\nwant\n%q", name, udpPayload(got), local)
				}
			})
		}
	}
}

// outAt7 is the map Packet applies to what leaves Alice's node for Bob's.
func outAt7(a [4]byte) ([4]byte, bool) { return numplan.Map(a, bobAtAlice, numplan.Outbound) }

func readTortureFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// udpPayload returns the UDP payload of a valid IPv4/UDP packet.
func udpPayload(pkt []byte) []byte {
	ihl := int(pkt[0]&0x0f) * 4
	return pkt[ihl+udpHeaderLen:]
}

// BenchmarkRewriteInvite is the whole packet path for a desk phone's INVITE
// with a 13-codec SDP (1.2 kB of SIP, seven literals): parse, rewrite,
// rebuild, lengths and both checksums. Goal ≤ 10 µs, no allocation.
func BenchmarkRewriteInvite(b *testing.B) {
	msg, err := os.ReadFile("../sipmsg/testdata/bench/invite.sip")
	if err != nil {
		b.Fatal(err)
	}
	pkt := udp4("10.0.1.1", "10.7.1.1", 5060, 5060, msg)
	scratch := make([]byte, 0, 1<<16)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, res := Packet(scratch, pkt, bobAtAlice, numplan.Outbound); res != SIPRewritten {
			b.Fatalf("Packet(INVITE) = %v", res)
		}
	}
}
