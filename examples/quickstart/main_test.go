package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/drove-dev/drove"
)

func TestMain(m *testing.M) {
	drove.Main()
	os.Exit(m.Run())
}

// TestQuickstart runs the README's program as it is and checks what it
// prints: ten results (n*n, no error) and the stats table.
func TestQuickstart(t *testing.T) {
	out, err := os.Create(filepath.Join(t.TempDir(), "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = out
	defer func() { os.Stdout = stdout }()
	main()
	b, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	results := regexp.MustCompile(`(?m)^(\d+) (\d+) <nil> \S+ \S+$`).FindAllStringSubmatch(string(b), -1)
	if len(results) != 10 {
		t.Fatalf("%d result lines in\n%s", len(results), b)
	}
	for i, r := range results {
		if want := []string{strconv.Itoa(i + 1), strconv.Itoa(i * i)}; r[1] != want[0] || r[2] != want[1] {
			t.Errorf("line %d: %q, want id %s result %s", i, r[0], want[0], want[1])
		}
	}
	if !regexp.MustCompile(`Total job time: .* speedup: `).Match(b) {
		t.Errorf("no stats in\n%s", b)
	}
}
