package qrterm

import (
	"image"
	"image/color"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"github.com/peerline/peerline/pkg/invite"
	"github.com/peerline/peerline/pkg/nodekey"
)

// modules reads a rendering back into its grid of light (true) modules,
// checking its shape on the way.
func modules(t *testing.T, s string) [][]bool {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	size := len([]rune(lines[0]))
	if want := (size + 1) / 2; len(lines) != want {
		t.Fatalf("%d lines for %d columns, want %d", len(lines), size, want)
	}
	if n := size - 2*Quiet; n < 21 || (n-21)%4 != 0 {
		t.Fatalf("symbol of %d modules; QR symbols are 21, 25, 29, ...", n)
	}
	grid := make([][]bool, 2*len(lines))
	for y, line := range lines {
		r := []rune(line)
		if len(r) != size {
			t.Fatalf("line %d has %d columns, want %d", y, len(r), size)
		}
		grid[2*y], grid[2*y+1] = make([]bool, size), make([]bool, size)
		for x, c := range r {
			i := slices.Index(cell[:], string(c))
			if i < 0 {
				t.Fatalf("unexpected character %q", c)
			}
			grid[2*y][x], grid[2*y+1][x] = i&2 != 0, i&1 != 0
		}
	}
	return grid[:size]
}

// scan decodes the grid as a camera would see it: light modules white.
func scan(t *testing.T, grid [][]bool) string {
	t.Helper()
	const px = 4
	img := image.NewGray(image.Rect(0, 0, len(grid)*px, len(grid)*px))
	for y := range img.Rect.Dy() {
		for x := range img.Rect.Dx() {
			if grid[y/px][x/px] {
				img.SetGray(x, y, color.Gray{255})
			}
		}
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, nil)
	if err != nil {
		t.Fatalf("decoding the rendered QR code: %v", err)
	}
	return res.GetText()
}

func TestRenderScans(t *testing.T) {
	srv := invite.Server{Host: "rv.peerline.example.org", Port: 3478, Port2: 3479, Key: nodekey.Key{31: 9}}
	srv2 := srv
	srv2.Host = "rv2.example.net"
	iv := invite.Invite{Inviter: nodekey.Key{1}, Name: "alice", Servers: []invite.Server{srv}, Expires: time.Unix(1_800_000_000, 0)}
	iv2 := iv
	iv2.Servers = []invite.Server{srv, srv2}
	for _, tc := range []struct {
		name, text string
		maxCols    int
	}{
		{"short text", "hello", 0},
		{"invite, one server", iv.URI(), 80},
		{"invite, two servers", iv2.URI(), 80},
	} {
		s, err := Render(tc.text)
		if err != nil {
			t.Fatalf("%s: Render = %v", tc.name, err)
		}
		grid := modules(t, s)
		t.Logf("%s: %d characters of text, %d columns x %d lines", tc.name, len(tc.text), len(grid), (len(grid)+1)/2)
		if tc.maxCols > 0 && len(grid) > tc.maxCols {
			t.Errorf("%s: %d columns, want at most %d to fit a terminal", tc.name, len(grid), tc.maxCols)
		}
		for i := range len(grid) {
			if !grid[0][i] || !grid[i][0] || !grid[len(grid)-1][i] || !grid[i][len(grid)-1] {
				t.Fatalf("%s: the quiet zone is not light all round", tc.name)
			}
		}
		if got := scan(t, grid); got != tc.text {
			t.Errorf("%s: scanned %q, want %q", tc.name, got, tc.text)
		}
		if _, err := invite.Parse(scan(t, grid)); tc.text != "hello" && err != nil {
			t.Errorf("%s: the scanned text does not parse as an invite: %v", tc.name, err)
		}
	}
}

func TestRenderTooLong(t *testing.T) {
	if _, err := Render(strings.Repeat("x", 3000)); err == nil {
		t.Error("Render of 3000 bytes succeeded; no QR code holds that at level M")
	}
}
