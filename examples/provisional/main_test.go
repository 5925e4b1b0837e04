package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/drove-dev/drove"
)

func TestMain(m *testing.M) {
	drove.Main()
	os.Exit(m.Run())
}

func TestProvisional(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), &out, 3, 0.9); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if !strings.HasPrefix(s, "good enough: 0.9") {
		t.Errorf("no good-enough line in\n%s", s)
	}
	// Running jobs return their best result when cancelled and end
	// Finished; jobs still queued (more jobs than CPUs) end Cancelled.
	finished, cancelled := strings.Count(s, ": Finished, best 0."), strings.Count(s, ": Cancelled,")
	if finished < 1 || finished+cancelled != 3 {
		t.Errorf("%d finished, %d cancelled jobs in\n%s", finished, cancelled, s)
	}
}
