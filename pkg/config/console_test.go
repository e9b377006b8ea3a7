package config

import (
	"strings"
	"testing"
)

func TestConsoleAndLabels(t *testing.T) {
	base := `{"phone_port": "eth0", "lines": [1], "peers": []`
	for _, tc := range []struct {
		name, extra, wantErr string
	}{
		{"none", ``, ""},
		{"label", `, "line_labels": {"1": "kitchen"}`, ""},
		{"label line out of range", `, "line_labels": {"0": "x"}`, "line_labels: line 0"},
		{"label with a control character", `, "line_labels": {"2": "a\u0007b"}`, "line_labels: line 2"},
		{"label too long", `, "line_labels": {"2": "` + strings.Repeat("x", 64) + `"}`, "at most 63"},
		{"public uplink", `, "console": {"public_uplink": true}`, ""},
		{"token", `, "console": {"metrics_token": "0123456789abcdef"}`, ""},
		{"short token", `, "console": {"metrics_token": "short"}`, "console.metrics_token"},
		{"token with a space", `, "console": {"metrics_token": "0123456789 abcdef"}`, "console.metrics_token"},
	} {
		_, err := Parse([]byte(base + tc.extra + `}`))
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wantErr)
		}
	}
}
