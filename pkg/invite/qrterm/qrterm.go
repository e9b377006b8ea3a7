// Package qrterm draws a QR code with text characters, so `peerline invite`
// can show a code a phone camera reads straight off an SSH session.
//
// It lives apart from pkg/invite so that package stays a pure leaf
// (standard library only); this one brings in the QR encoder.
package qrterm

import (
	"fmt"
	"strings"

	"rsc.io/qr"
)

// Quiet is the light border around the symbol, in modules, as the QR
// standard asks (scanners find the symbol by it).
const Quiet = 4

// Render returns text as a QR code (error correction level M) drawn with
// half-block characters, two module rows per line, one column per module.
//
// Light modules (and the quiet zone) are drawn as blocks and dark ones as
// blanks, which comes out right on a terminal with light text on a dark
// background, the common case. On a dark-on-light terminal the symbol
// appears inverted; most phone scanners read that too.
func Render(text string) (string, error) {
	c, err := qr.Encode(text, qr.M)
	if err != nil {
		return "", fmt.Errorf("making QR code: %w", err)
	}
	size := c.Size + 2*Quiet
	light := func(x, y int) bool {
		x, y = x-Quiet, y-Quiet
		if x < 0 || y < 0 || x >= c.Size || y >= c.Size {
			return true
		}
		return !c.Black(x, y)
	}
	var sb strings.Builder
	for y := 0; y < size; y += 2 {
		for x := range size {
			top := light(x, y)
			bottom := y+1 < size && light(x, y+1)
			sb.WriteString(cell[b2i(top)<<1|b2i(bottom)])
		}
		sb.WriteByte('\n')
	}
	return sb.String(), nil
}

// cell is the character for a pair of modules, indexed top<<1|bottom with
// 1 meaning drawn.
var cell = [4]string{" ", "▄", "▀", "█"}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
