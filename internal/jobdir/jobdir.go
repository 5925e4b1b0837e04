// Package jobdir makes the directories jobs run in on this machine: the
// files a computation depends on staged from the blob store, and the files
// that capture a job's output. The warm Go workers (internal/executor/local)
// and the programs run once per job (internal/executor/process) both run
// in one.
package jobdir

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/drove-dev/drove/internal/blob"
)

// Depend is a file staged into every job directory.
type Depend struct {
	Name string // path relative to the job directory
	Sum  string // blob holding its contents
	Mode os.FileMode
}

// Dir is a job directory and the files its jobs' output goes to. It is
// reused by the jobs that run there one after the other.
type Dir struct {
	Path           string
	Stdout, Stderr *os.File // unlinked: only the descriptors keep them
}

// Make creates the directory path with deps staged from blobs and its
// output files.
func Make(path string, blobs blob.Store, deps []Depend) (*Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("drove: job directory: %w", err)
	}
	for _, d := range deps {
		if err := blobs.Link(d.Sum, filepath.Join(path, d.Name), d.Mode); err != nil {
			return nil, fmt.Errorf("drove: staging %s: %w", d.Name, err)
		}
	}
	d := &Dir{Path: path}
	var err error
	if d.Stdout, err = openCapture(path, ".stdout"); err != nil {
		return nil, err
	}
	if d.Stderr, err = openCapture(path, ".stderr"); err != nil {
		d.Stdout.Close()
		return nil, err
	}
	return d, nil
}

// openCapture opens an output file for appending, so the writer's offset
// follows truncation, and unlinks it: only the descriptors keep it.
func openCapture(dir, name string) (*os.File, error) {
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("drove: output file: %w", err)
	}
	_ = os.Remove(path)
	return f, nil
}

// Release closes the output files and removes the directory.
func (d *Dir) Release() {
	d.Stdout.Close()
	d.Stderr.Close()
	_ = os.RemoveAll(d.Path)
}
