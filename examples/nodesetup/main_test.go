package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/drove-dev/drove"
)

func TestMain(m *testing.M) {
	drove.Main()
	os.Exit(m.Run())
}

func TestNodeSetup(t *testing.T) {
	data := filepath.Join(t.TempDir(), "words.txt")
	if err := os.WriteFile(data, []byte("The go cluster\nthe GO the\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(t.Context(), &out, data, []string{"the", "go", "cluster", "dispy"}); err != nil {
		t.Fatal(err)
	}
	if want := "the: 3\ngo: 2\ncluster: 1\ndispy: 0\n"; out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}
