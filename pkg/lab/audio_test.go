package lab

import (
	"errors"
	"os/exec"
	"path/filepath"
	"testing"
)

// Captured from `sox … -n stat` (sox 14.4.2, Debian bookworm).
const (
	statPCMU440 = `Samples read:             31200
Length (seconds):      3.900000
Scaled by:         2147483647.0
Maximum amplitude:     0.511597
Minimum amplitude:    -0.511597
Midline amplitude:     0.000000
Mean    norm:          0.319577
Mean    amplitude:     0.000001
RMS     amplitude:     0.355145
Maximum delta:         0.175537
Minimum delta:         0.000000
Mean    delta:         0.111610
RMS     delta:         0.122343
Rough   frequency:          438
Volume adjustment:        1.955
`
	statSilence = `Samples read:             16000
Length (seconds):      2.000000
Scaled by:         2147483647.0
Maximum amplitude:     0.000031
Minimum amplitude:    -0.000031
Midline amplitude:     0.000000
Mean    norm:          0.000007
Mean    amplitude:    -0.000000
RMS     amplitude:     0.000015
Maximum delta:         0.000061
Minimum delta:         0.000000
Mean    delta:         0.000013
RMS     delta:         0.000022
Rough   frequency:         1813
Volume adjustment:    32768.000
`
	statEmpty = `Samples read:                 0
Length (seconds):      0.000000
Scaled by:         2147483647.0
Maximum amplitude:     0.000000
Minimum amplitude:     0.000000
Midline amplitude:     0.000000
Mean    norm:              -nan
Mean    amplitude:         -nan
RMS     amplitude:         -nan
Maximum delta:         0.000000
Minimum delta:         0.000000
Mean    delta:        -0.000000
RMS     delta:        -0.000000
Rough   frequency:  -2147483648

Probably text, not sound
`
)

func TestParseSoxStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Audio
		wantErr bool
	}{
		{name: "pcmu 440", in: statPCMU440, want: Audio{Hz: 438, RMS: 0.355145, Peak: 0.511597, Seconds: 3.9}},
		{name: "silence", in: statSilence, want: Audio{Hz: 1813, RMS: 0.000015, Peak: 0.000031, Seconds: 2}},
		{name: "empty file", in: statEmpty, want: Audio{}},
		{name: "not sox", in: "sox FAIL formats: can't open input file `x.wav'\n", wantErr: true},
		{name: "bad number", in: "Length (seconds): 1\nRMS amplitude: x\nRough frequency: 1\nMaximum amplitude: 1\nMinimum amplitude: 1\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSoxStat(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseSoxStat() error = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ParseSoxStat() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCheckTone(t *testing.T) {
	tests := []struct {
		name   string
		audio  Audio
		wantHz float64
		want   []error // every reason expected, nil for a pass
	}{
		{name: "1000 Hz over PCMU", audio: Audio{Hz: 975, RMS: 0.355, Seconds: 3.9}, wantHz: 1000},
		{name: "440 Hz over PCMU", audio: Audio{Hz: 438, RMS: 0.355, Seconds: 3.9}, wantHz: 440},
		{name: "440 is not 1000", audio: Audio{Hz: 438, RMS: 0.355, Seconds: 3.9}, wantHz: 1000, want: []error{ErrWrongPitch}},
		{name: "1000 is not 440", audio: Audio{Hz: 975, RMS: 0.355, Seconds: 3.9}, wantHz: 440, want: []error{ErrWrongPitch}},
		{name: "silence", audio: Audio{Hz: 1813, RMS: 0.000015, Seconds: 2}, wantHz: 1000, want: []error{ErrSilent}},
		{name: "empty", audio: Audio{}, wantHz: 1000, want: []error{ErrTooShort, ErrSilent}},
		{name: "short", audio: Audio{Hz: 1000, RMS: 0.35, Seconds: 0.3}, wantHz: 1000, want: []error{ErrTooShort}},
		{name: "noise", audio: Audio{Hz: 2900, RMS: 0.8, Seconds: 3}, wantHz: 1000, want: []error{ErrTooLoud, ErrWrongPitch}},
		{name: "quiet but there", audio: Audio{Hz: 1010, RMS: 0.03, Seconds: 3}, wantHz: 1000},
	}
	all := []error{ErrTooShort, ErrSilent, ErrTooLoud, ErrWrongPitch}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckTone(tt.audio, tt.wantHz)
			if (err == nil) != (tt.want == nil) {
				t.Fatalf("CheckTone(%v, %v) = %v, want reasons %v", tt.audio, tt.wantHz, err, tt.want)
			}
			for _, reason := range all {
				wanted := false
				for _, w := range tt.want {
					wanted = wanted || w == reason
				}
				if errors.Is(err, reason) != wanted {
					t.Errorf("CheckTone(%v, %v) = %v; errors.Is(%v) = %v, want %v", tt.audio, tt.wantHz, err, reason, !wanted, wanted)
				}
			}
		})
	}
}

// TestToneRoundTrip writes tones and silence with sox, passes them through
// G.711 μ-law like a call would, and checks that CheckTone tells them apart.
// It needs sox but not root.
func TestToneRoundTrip(t *testing.T) {
	if _, err := exec.LookPath("sox"); err != nil {
		t.Skip("needs sox: apt-get install sox libsox-fmt-base")
	}
	dir := t.TempDir()
	mk := func(name string, hz float64) string {
		t.Helper()
		src := filepath.Join(dir, name+".wav")
		if err := Tone(src, hz, 2); err != nil {
			t.Fatal(err)
		}
		ulaw := filepath.Join(dir, name+"-ulaw.wav")
		if _, err := run(t.Context(), "sox", src, "-e", "u-law", ulaw); err != nil {
			t.Fatal(err)
		}
		return ulaw
	}
	files := map[float64]string{1000: mk("1000", 1000), 440: mk("440", 440), 0: mk("silence", 0)}
	measured := map[float64]Audio{}
	for hz, path := range files {
		a, err := AnalyzeWAV(path)
		if err != nil {
			t.Fatal(err)
		}
		measured[hz] = a
		t.Logf("%v Hz file: %v", hz, a)
	}
	for _, tt := range []struct {
		file, want float64
		pass       bool
	}{
		{1000, 1000, true}, {440, 440, true},
		{440, 1000, false}, {1000, 440, false},
		{0, 1000, false}, {0, 440, false},
	} {
		err := CheckTone(measured[tt.file], tt.want)
		if (err == nil) != tt.pass {
			t.Errorf("CheckTone(%v Hz file, %v) = %v, want pass=%v", tt.file, tt.want, err, tt.pass)
		}
	}
	if _, err := AnalyzeWAV(filepath.Join(dir, "missing.wav")); err == nil {
		t.Error("AnalyzeWAV(missing file) = nil error")
	}
}
