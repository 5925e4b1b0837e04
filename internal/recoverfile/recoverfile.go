// Package recoverfile is the format of the file a cluster writes with
// drove.WithRecoverFile: what a later process needs to collect the results
// of a client that went away (drove.RecoverFromFile, drove recover).
//
// The file is one JSON object, version 1:
//
//	{
//	  "version": 1,
//	  "client_id": "build-host-3f2a9c0d1e2b4a5f",
//	  "computation": {"kind": "func", "name": "main.render", "result": "main.Frame"},
//	  "nodes": ["10.0.0.5:9701", "10.0.0.6:9701"]
//	}
//
// kind is "func" (name is the name a Go function was registered under with
// drove.Func, result the Go type of its results) or "program" (name is the
// program's absolute path, result "int": its exit code). nodes are the
// host:port addresses of the drove nodes the computation was set up on.
// "scheduler" is reserved for a shared scheduler's address: a file naming
// one is refused until drove can recover from a scheduler. The secret is
// never in the file. Unknown fields are refused: a change of format comes
// with a new version.
package recoverfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"time"

	"github.com/drove-dev/drove/internal/atomicfile"
)

// Version is the format version this package writes and reads.
const Version = 1

// Kinds of computation.
const (
	KindFunc    = "func"
	KindProgram = "program"
)

// MaxSize bounds a file Read accepts: a recover file naming a hundred
// thousand nodes is still well under it.
const MaxSize = 8 << 20

// ErrFormat is wrapped by the errors of a file that is not a recover file
// this version can use.
var ErrFormat = errors.New("not a usable drove recover file")

// File is a recover file's content.
type File struct {
	Version     int         `json:"version"`
	ClientID    string      `json:"client_id"`
	Computation Computation `json:"computation"`
	Nodes       []string    `json:"nodes"`
	// Scheduler is reserved for the address of a shared scheduler the
	// client's jobs went to; it is empty in files this version writes.
	Scheduler string `json:"scheduler,omitempty"`
}

// Computation says what the client ran.
type Computation struct {
	Kind   string `json:"kind"`   // KindFunc or KindProgram
	Name   string `json:"name"`   // function name or program path
	Result string `json:"result"` // the Go type of the results
}

// Decode parses and checks a recover file.
func Decode(b []byte) (*File, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var f File
	if err := d.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	if d.More() {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrFormat)
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	return &f, nil
}

func (f *File) check() error {
	switch {
	case f.Version == 0:
		return fmt.Errorf("%w: no version", ErrFormat)
	case f.Version > Version:
		return fmt.Errorf("%w: version %d, written by a newer drove (this one reads version %d): recover with that drove", ErrFormat, f.Version, Version)
	case f.Version != Version:
		return fmt.Errorf("%w: version %d (this drove reads version %d)", ErrFormat, f.Version, Version)
	case f.ClientID == "":
		return fmt.Errorf("%w: no client_id", ErrFormat)
	case f.Computation.Kind != KindFunc && f.Computation.Kind != KindProgram:
		return fmt.Errorf("%w: computation kind %q (want %q or %q)", ErrFormat, f.Computation.Kind, KindFunc, KindProgram)
	case f.Computation.Name == "":
		return fmt.Errorf("%w: no computation name", ErrFormat)
	case f.Scheduler != "":
		return fmt.Errorf("%w: its jobs went to the scheduler at %s; this drove recovers from drove nodes only", ErrFormat, f.Scheduler)
	}
	for _, n := range f.Nodes {
		if _, _, err := net.SplitHostPort(n); err != nil {
			return fmt.Errorf("%w: node address %q: %w", ErrFormat, n, err)
		}
	}
	return nil
}

// Read reads and checks the recover file at path. A missing file's error
// wraps fs.ErrNotExist and says that a cluster removes its file when it
// closes cleanly.
func Read(path string) (*File, error) {
	fh, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("drove: no recover file %s (a cluster removes it when it closes cleanly, leaving nothing to collect; or the path is wrong): %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("drove: recover file: %w", err)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("drove: recover file %s: %w", path, err)
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("drove: recover file %s: %w: larger than %d bytes", path, ErrFormat, MaxSize)
	}
	f, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("drove: recover file %s: %w", path, err)
	}
	return f, nil
}

// Write writes f to path atomically, mode 0600: a reader sees the previous
// content or the new, never a mix, even if this process is killed.
func Write(path string, f *File) error {
	f.Version = Version
	if f.Nodes == nil {
		f.Nodes = []string{} // [], not null, for people reading it
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	err = atomicfile.WriteFile(atomicfile.OS, path, 0o600, time.Time{}, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
	if err != nil {
		return fmt.Errorf("drove: writing the recover file: %w", err)
	}
	return nil
}
