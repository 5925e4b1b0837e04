package sshserve

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

func TestReadMarker(t *testing.T) {
	const marker = "drove-test-marker 1"
	tests := []struct {
		name, out string
		ok        bool
		rest      string
	}{
		{"alone", marker + "\nPRI", true, "PRI"},
		{"after a login shell's noise", "Welcome!\nlast login\n" + marker + "\r\nPRI * HTTP/2.0", true, "PRI * HTTP/2.0"},
		{"ended before", "oops: exec format error\n", false, ""},
		{"no newline", "partial " + marker, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tt.out))
			err := readMarker(br, marker)
			if (err == nil) != tt.ok {
				t.Fatalf("readMarker: %v, want ok %v", err, tt.ok)
			}
			if !tt.ok {
				return
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != tt.rest {
				t.Errorf("left %q, want %q", rest, tt.rest)
			}
		})
	}
}
