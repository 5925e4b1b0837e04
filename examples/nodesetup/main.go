// Command nodesetup is dispy's node_setup.py: each worker loads a data set
// into memory once, in its setup, and every job it runs searches that data
// instead of reading it again.
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/drove-dev/drove"
)

// Words is the in-memory data: the lines of words.txt, staged into each
// worker's directory with WithDepends.
var Words = drove.NewSetup("nodesetup.words", func(ctx context.Context) (map[string]int, error) {
	f, err := os.Open("words.txt")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]int{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		for _, w := range strings.Fields(s.Text()) {
			m[strings.ToLower(w)]++
		}
	}
	return m, s.Err()
}, func(ctx context.Context, m map[string]int) error {
	fmt.Fprintf(os.Stderr, "worker done with %d words\n", len(m))
	return nil
})

// Count returns how often a word occurs in the worker's in-memory data.
var Count = drove.Func("nodesetup.count", func(ctx context.Context, word string) (int, error) {
	return Words.State(ctx)[strings.ToLower(word)], nil
})

func main() {
	drove.Main()
	data := "words.txt"
	if len(os.Args) > 1 {
		data = os.Args[1]
	}
	if err := run(context.Background(), os.Stdout, data, []string{"the", "go", "cluster"}); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, w io.Writer, data string, words []string) error {
	abs, err := filepath.Abs(data)
	if err != nil {
		return err
	}
	c, err := drove.NewCluster(ctx, Count, drove.WithSetup(Words), drove.WithDepends(abs))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	for _, word := range words {
		j, err := c.Submit(ctx, word)
		if err != nil {
			return err
		}
		n, err := j.Result(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s: %d\n", word, n)
	}
	return nil
}
