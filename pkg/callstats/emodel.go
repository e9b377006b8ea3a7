package callstats

import (
	"math"
	"time"
)

// Codec is what the E-model needs to know about a codec: its equipment
// impairment Ie, its packet-loss robustness Bpl (both ITU-T G.113
// Appendix I), and the audio one packet carries.
type Codec struct {
	Name  string
	Ie    float64
	Bpl   float64
	Frame time.Duration
}

// The codecs desk phones offer, by static payload type (RFC 3551). Bpl
// assumes packet-loss concealment, which every phone we target has.
// G.722 is wideband, which the narrowband G.107 cannot credit; it is rated
// as G.711, so a G.722 call's MOS is, if anything, low.
var (
	codecG711 = Codec{Name: "G.711", Ie: 0, Bpl: 25.1, Frame: 20 * time.Millisecond}
	codecG722 = Codec{Name: "G.722", Ie: 0, Bpl: 25.1, Frame: 20 * time.Millisecond}
	codecG729 = Codec{Name: "G.729", Ie: 11, Bpl: 19.0, Frame: 20 * time.Millisecond}
	codecG723 = Codec{Name: "G.723.1", Ie: 15, Bpl: 16.1, Frame: 30 * time.Millisecond}
	codecGSM  = Codec{Name: "GSM", Ie: 20, Bpl: 10.0, Frame: 20 * time.Millisecond}
	// codecOther is a dynamic payload type (Opus, iLBC, AMR, ...) whose
	// rating we do not know: rated as G.711 rather than guessed worse.
	codecOther = Codec{Name: "other", Ie: 0, Bpl: 25.1, Frame: 20 * time.Millisecond}
)

// CodecFor is the codec of RTP payload type pt.
func CodecFor(pt uint8) Codec {
	switch pt {
	case 0, 8:
		return codecG711
	case 9:
		return codecG722
	case 18:
		return codecG729
	case 4:
		return codecG723
	case 3:
		return codecGSM
	}
	return codecOther
}

// E-model constants (ITU-T G.107 with its default values).
const (
	// rDefault is Ro − Is with every G.107 parameter at its default: the
	// R of a call with no delay, no loss and a perfect codec.
	rDefault = 93.2
	// idKnee is the one-way delay in ms past which delay impairment grows
	// steeply (the Cole–Rosenbluth fit of G.107's Idd).
	idKnee = 177.3
)

// Delay is the one-way mouth-to-ear delay the E-model charges for: half
// the peer's round trip (the network), one packet's audio (the sender
// fills a packet before sending it) and the receiver's jitter buffer,
// taken as twice the interarrival jitter and never less than a packet.
func Delay(rtt, jitter time.Duration, c Codec) time.Duration {
	return rtt/2 + c.Frame + max(2*jitter, c.Frame)
}

// RFactor is G.107's transmission rating R for a call with this one-way
// delay and packet loss (in percent, random loss: BurstR = 1) on codec c:
// R = 93.2 − Id − Ie,eff, where
//
//	Id     = 0.024·d + 0.11·(d − 177.3)·H(d − 177.3)   (d in ms)
//	Ie,eff = Ie + (95 − Ie) · Ppl / (Ppl + Bpl)
//
// The advantage factor A is 0 and the echo terms are left at their
// defaults (the phones cancel echo).
func RFactor(delay time.Duration, lossPercent float64, c Codec) float64 {
	d := float64(delay) / float64(time.Millisecond)
	id := 0.024 * d
	if d > idKnee {
		id += 0.11 * (d - idKnee)
	}
	ppl := min(max(lossPercent, 0), 100)
	ie := c.Ie + (95-c.Ie)*ppl/(ppl+c.Bpl)
	return rDefault - id - ie
}

// MOS is G.107 Annex B's conversion of R to an estimated mean opinion
// score, 1 (bad) to 4.5; a clean G.711 call scores about 4.4.
func MOS(r float64) float64 {
	switch {
	case math.IsNaN(r) || r <= 0:
		return 1
	case r >= 100:
		return 4.5
	}
	// The polynomial dips just under 1 for R below about 6.5.
	return max(1, 1+0.035*r+r*(r-60)*(100-r)*7e-6)
}

// Estimate is the MOS of a stream with this payload type, loss and jitter
// over a tunnel with this round trip.
func Estimate(pt uint8, rtt, jitter time.Duration, lossPercent float64) float64 {
	c := CodecFor(pt)
	return MOS(RFactor(Delay(rtt, jitter, c), lossPercent, c))
}
