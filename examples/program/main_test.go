package main

import (
	"bytes"
	"os"
	"testing"

	"github.com/drove-dev/drove"
)

func TestMain(m *testing.M) {
	drove.Main()
	os.Exit(m.Run())
}

func TestProgram(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), &out, t.TempDir(), []string{"go", "dispy", "cluster"}); err != nil {
		t.Fatal(err)
	}
	want := "exit 0: go: 2\nexit 1: dispy: 0\nexit 0: cluster: 1\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}
