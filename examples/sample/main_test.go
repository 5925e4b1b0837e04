package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/drove-dev/drove"
)

func TestMain(m *testing.M) {
	drove.Main()
	os.Exit(m.Run())
}

func TestSample(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), &out, 6, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out.String(), " executed job "); got != 6 {
		t.Errorf("%d job lines in\n%s", got, out.String())
	}
	if !strings.Contains(out.String(), "Total job time:") {
		t.Errorf("no stats in\n%s", out.String())
	}
}
