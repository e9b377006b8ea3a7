package lab

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"strings"
)

// ToneRate is the sample rate of the files Tone writes: G.711's 8 kHz, so
// baresip's aufile needs no resampling.
const ToneRate = 8000

// Tone writes a mono 16-bit 8 kHz WAV file at path with a sine of hz at half
// full scale (RMS ≈ 0.35), lasting seconds. hz == 0 writes silence.
// baresip's aufile source ends the call when the file runs out, so make it
// longer than the call.
func Tone(path string, hz, seconds float64) error {
	if seconds <= 0 {
		return fmt.Errorf("tone %s: duration %v s, want > 0", path, seconds)
	}
	argv := []string{"sox", "-n", "-r", strconv.Itoa(ToneRate), "-c", "1", "-b", "16", path}
	dur := strconv.FormatFloat(seconds, 'f', -1, 64)
	if hz == 0 {
		argv = append(argv, "trim", "0", dur)
	} else {
		argv = append(argv, "synth", dur, "sine", strconv.FormatFloat(hz, 'f', -1, 64), "vol", "0.5")
	}
	if _, err := run(context.Background(), argv...); err != nil {
		return fmt.Errorf("writing tone %s (needs sox): %w", path, err)
	}
	return nil
}

// Audio is what sox measured in a recording.
type Audio struct {
	Hz      float64 // sox's "Rough frequency": good for a single sine
	RMS     float64 // RMS amplitude, 0..1 of full scale
	Peak    float64 // largest absolute sample, 0..1
	Seconds float64 // length
}

func (a Audio) String() string {
	return fmt.Sprintf("%.0f Hz, RMS %.3f, peak %.3f, %.2f s", a.Hz, a.RMS, a.Peak, a.Seconds)
}

// AnalyzeWAV measures the audio file at path with `sox path -n stat`.
func AnalyzeWAV(path string) (Audio, error) {
	if _, err := exec.LookPath("sox"); err != nil {
		return Audio{}, fmt.Errorf("analyzing %s needs sox (apt-get install sox libsox-fmt-base): %w", path, err)
	}
	out, err := run(context.Background(), "sox", path, "-n", "stat")
	if err != nil {
		return Audio{}, fmt.Errorf("analyzing %s: %w", path, err)
	}
	a, err := ParseSoxStat(out)
	if err != nil {
		return Audio{}, fmt.Errorf("analyzing %s: %w", path, err)
	}
	return a, nil
}

// ParseSoxStat reads the output of sox's stat effect. Values sox prints as
// nan (an empty file) read as 0, as does a negative rough frequency.
func ParseSoxStat(out string) (Audio, error) {
	var a Audio
	var maxAmp, minAmp float64
	seen := 0
	for line := range strings.Lines(out) {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		key = strings.Join(strings.Fields(key), " ")
		var dst *float64
		switch key {
		case "Length (seconds)":
			dst = &a.Seconds
		case "RMS amplitude":
			dst = &a.RMS
		case "Rough frequency":
			dst = &a.Hz
		case "Maximum amplitude":
			dst = &maxAmp
		case "Minimum amplitude":
			dst = &minAmp
		default:
			continue
		}
		v, err := parseSoxNumber(val)
		if err != nil {
			return Audio{}, fmt.Errorf("sox stat %q: %w", key, err)
		}
		*dst = v
		seen++
	}
	if seen < 5 {
		return Audio{}, fmt.Errorf("sox stat output has %d of the 5 expected fields (Length, RMS amplitude, Rough frequency, Maximum/Minimum amplitude)", seen)
	}
	a.Hz = max(a.Hz, 0)
	a.Peak = max(math.Abs(maxAmp), math.Abs(minAmp))
	return a, nil
}

func parseSoxNumber(s string) (float64, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(strings.TrimLeft(s, "+-"), "nan") {
		return 0, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, err
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, nil
	}
	return v, nil
}

// Thresholds of CheckTone. A tone written by Tone has RMS 0.35; after G.711
// and sox's rough estimate it measures within 3% of its frequency
// (1000 Hz → 975, 440 → 438). Dithered silence measures RMS ~0.00002.
const (
	MinToneSeconds = 1.0  // shorter recordings say little
	MinToneRMS     = 0.02 // below this the line is silent (-34 dBFS)
	MaxToneRMS     = 0.7  // above this the tone is clipped or noise was added
	ToneTolerance  = 0.10 // relative frequency error accepted
)

// Reasons a recording fails CheckTone, for errors.Is.
var (
	ErrTooShort   = errors.New("too short")
	ErrSilent     = errors.New("silent")
	ErrTooLoud    = errors.New("too loud")
	ErrWrongPitch = errors.New("wrong pitch")
)

// CheckTone says whether a is a recording of a sine of wantHz at a sane
// level, and if not, everything that is wrong with it.
func CheckTone(a Audio, wantHz float64) error {
	var errs []error
	if a.Seconds < MinToneSeconds {
		errs = append(errs, fmt.Errorf("%w: %.2f s of audio, want at least %.1f s", ErrTooShort, a.Seconds, MinToneSeconds))
	}
	switch {
	case a.RMS < MinToneRMS:
		errs = append(errs, fmt.Errorf("%w: RMS amplitude %.5f, want at least %.2f (no audio arrived?)", ErrSilent, a.RMS, MinToneRMS))
	case a.RMS > MaxToneRMS:
		errs = append(errs, fmt.Errorf("%w: RMS amplitude %.3f, want at most %.2f (clipped or noise)", ErrTooLoud, a.RMS, MaxToneRMS))
	}
	// The pitch of silence is meaningless (sox reports the dither's).
	if a.RMS >= MinToneRMS {
		tol := max(wantHz*ToneTolerance, 20)
		if math.Abs(a.Hz-wantHz) > tol {
			errs = append(errs, fmt.Errorf("%w: %.0f Hz, want %.0f Hz ± %.0f", ErrWrongPitch, a.Hz, wantHz, tol))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return &toneError{audio: a, wantHz: wantHz, errs: errs}
}

// toneError lists every problem on one line and unwraps to each of them.
type toneError struct {
	audio  Audio
	wantHz float64
	errs   []error
}

func (e *toneError) Error() string {
	msgs := make([]string, len(e.errs))
	for i, err := range e.errs {
		msgs[i] = err.Error()
	}
	return fmt.Sprintf("recording (%v) is not a %.0f Hz tone: %s", e.audio, e.wantHz, strings.Join(msgs, "; "))
}

func (e *toneError) Unwrap() []error { return e.errs }
