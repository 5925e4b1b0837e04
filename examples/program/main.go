// Command program is dispy's program computation (dispy_cmd.py): a shell
// script shipped to the cluster and run once per argument list; its exit
// code is the job's result and its output is captured.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	"github.com/drove-dev/drove"
)

const script = `#!/bin/sh
# count lines of the data file that contain the word; exit 1 when none do
n=$(grep -c -- "$1" data.txt)
echo "$1: $n"
[ "$n" -gt 0 ]
`

func main() {
	drove.Main()
	dir, err := os.MkdirTemp("", "program-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := run(context.Background(), os.Stdout, dir, []string{"go", "dispy", "cluster"}); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, w io.Writer, dir string, words []string) error {
	prog := filepath.Join(dir, "count.sh")
	if err := os.WriteFile(prog, []byte(script), 0o755); err != nil {
		return err
	}
	data := filepath.Join(dir, "data.txt")
	if err := os.WriteFile(data, []byte("go is fast\na go cluster\n"), 0o644); err != nil {
		return err
	}
	c, err := drove.NewCluster(ctx, drove.Program(prog), drove.WithDepends(data))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	var jobs []*drove.Job[int]
	for _, word := range words {
		j, err := c.Submit(ctx, []string{word})
		if err != nil {
			return err
		}
		jobs = append(jobs, j)
	}
	for _, j := range jobs {
		code, err := j.Result(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "exit %d: %s", code, j.Stdout())
	}
	return nil
}
