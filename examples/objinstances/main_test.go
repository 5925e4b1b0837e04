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

func TestObjInstances(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), &out, 3); err != nil {
		t.Fatal(err)
	}
	want := `job 1 printed "0: 0.50\n" and returned 1.00
job 2 printed "1: 1.50\n" and returned 3.00
job 3 printed "2: 2.50\n" and returned 5.00
`
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}
