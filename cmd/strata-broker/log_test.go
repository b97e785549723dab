package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

func TestNewLogger(t *testing.T) {
	tests := []struct {
		format string
		json   bool
		err    string
	}{
		{format: "json", json: true},
		{format: "console"},
		// A buffer (or a pipe, a file) is not a terminal: JSON.
		{format: "auto", json: true},
		{format: "yaml", err: "--log-format"},
	}
	for _, tc := range tests {
		t.Run(tc.format, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := newLogger(tc.format, "info", &buf)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("want an error naming %s, got %v", tc.err, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			log.Debug("hidden")
			log.Info("hello")
			out := buf.String()
			if strings.Contains(out, "hidden") {
				t.Errorf("debug logged at level info: %s", out)
			}
			var m map[string]any
			isJSON := json.Unmarshal([]byte(strings.TrimSpace(out)), &m) == nil
			if isJSON != tc.json || !strings.Contains(out, "hello") {
				t.Errorf("format %s: JSON %v, want %v: %s", tc.format, isJSON, tc.json, out)
			}
		})
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	if _, err := newLogger("auto", "info", devNull); err != nil {
		t.Errorf("auto on a file that is not a terminal: %v", err)
	}
	if _, err := newLogger("json", "loud", &bytes.Buffer{}); err == nil {
		t.Error("an unknown level is refused")
	}
}
