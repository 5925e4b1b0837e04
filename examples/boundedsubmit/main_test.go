package main

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"github.com/drove-dev/drove"
)

func TestMain(m *testing.M) {
	drove.Main()
	os.Exit(m.Run())
}

func TestBoundedSubmit(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), &out, 500, 20); err != nil {
		t.Fatal(err)
	}
	var n, sum, peak, bound int
	if _, err := fmt.Sscanf(out.String(), "%d jobs, sum %d, at most %d unfinished (bound %d)", &n, &sum, &peak, &bound); err != nil {
		t.Fatalf("%v in %q", err, out.String())
	}
	if sum != 2*(499*500/2) {
		t.Errorf("sum %d", sum)
	}
	if peak > bound || peak < 1 {
		t.Errorf("peak unfinished %d, bound %d", peak, bound)
	}
}
