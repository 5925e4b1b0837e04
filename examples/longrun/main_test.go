package main

import (
	"bytes"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/drove-dev/drove"
)

func TestMain(m *testing.M) {
	drove.Main()
	os.Exit(m.Run())
}

func TestLongRun(t *testing.T) {
	stop := make(chan struct{})
	time.AfterFunc(300*time.Millisecond, func() { close(stop) })
	var out bytes.Buffer
	if err := run(t.Context(), &out, 2, stop); err != nil {
		t.Fatal(err)
	}
	done := regexp.MustCompile(`job \d Finished after [1-9]\d* steps, best \d+, <nil>`)
	if got := len(done.FindAllString(out.String(), -1)); got != 2 {
		t.Errorf("%d gracefully finished jobs in\n%s", got, out.String())
	}
}
