package netsetup

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
)

func TestErrnoClasses(t *testing.T) {
	tests := []struct {
		name          string
		err           error
		exist, absent bool
	}{
		{"nil", nil, false, false},
		{"EEXIST", syscall.EEXIST, true, false},
		{"wrapped EEXIST", fmt.Errorf("adding: %w", syscall.EEXIST), true, false},
		{"ENOENT", syscall.ENOENT, false, true},
		{"ESRCH from route delete", syscall.ESRCH, false, true},
		{"ENODEV from link lookup", syscall.ENODEV, false, true},
		{"EADDRNOTAVAIL from address delete", fmt.Errorf("x: %w", syscall.EADDRNOTAVAIL), false, true},
		{"no namespace", fmt.Errorf("namespace pl-7: %w", ErrNoNamespace), false, true},
		{"EPERM", syscall.EPERM, false, false},
		{"EINVAL", syscall.EINVAL, false, false},
		{"other", errors.New("boom"), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isExist(tt.err); got != tt.exist {
				t.Errorf("isExist(%v) = %v, want %v", tt.err, got, tt.exist)
			}
			if got := isNotExist(tt.err); got != tt.absent {
				t.Errorf("isNotExist(%v) = %v, want %v", tt.err, got, tt.absent)
			}
		})
	}
}

func TestStepError(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantHint bool
	}{
		{"EPERM", syscall.EPERM, true},
		{"EACCES", fmt.Errorf("open: %w", syscall.EACCES), true},
		{"EEXIST", syscall.EEXIST, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := stepError("creating namespace pl-7", tt.err)
			if !errors.Is(err, tt.err) {
				t.Errorf("stepError(%v) = %v, does not wrap it", tt.err, err)
			}
			if !strings.HasPrefix(err.Error(), "creating namespace pl-7: ") {
				t.Errorf("stepError(%v) = %q, want the step first", tt.err, err)
			}
			if got := strings.Contains(err.Error(), "are you root?"); got != tt.wantHint {
				t.Errorf("stepError(%v) = %q, hint %v, want %v", tt.err, err, got, tt.wantHint)
			}
		})
	}
}
