// Package filesink receives files that jobs send back, and the trees that
// SFTP downloads fetch, confining every name to one directory: absolute
// names and names that climb out with ".." are refused, and the check is
// enforced by os.Root, so symbolic links inside the directory cannot lead out
// of it either.
//
// A file is written under a temporary name and renamed when its last chunk
// arrives, so an interrupted transfer never leaves a partial file under the
// final name.
package filesink

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/drove-dev/drove/internal/atomicfile"
)

// ErrBadName is wrapped by errors about names that would leave the directory.
var ErrBadName = errors.New("drove: file name outside the destination directory")

// Dir is a destination directory. It is safe for concurrent use.
type Dir struct {
	root    *os.Root
	maxSize int64

	mu      sync.Mutex
	partial map[string]*part
}

type part struct {
	w    *atomicfile.Writer
	next int64
}

// Open returns a Dir writing under dir, which must exist. maxSize bounds one
// file (0: no bound).
func Open(dir string, maxSize int64) (*Dir, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("drove: destination directory: %w", err)
	}
	return &Dir{root: root, maxSize: maxSize, partial: map[string]*part{}}, nil
}

// WriteChunk writes data at offset of the file name. Chunks of a file must
// come in order; offset 0 starts it again and last finishes it.
func (d *Dir) WriteChunk(name string, mode os.FileMode, offset int64, data []byte, last bool) error {
	if !filepath.IsLocal(name) {
		return fmt.Errorf("%w: %q", ErrBadName, name)
	}
	name = filepath.Clean(name)
	if d.maxSize > 0 && offset+int64(len(data)) > d.maxSize {
		d.abort(name)
		return fmt.Errorf("drove: file %s is larger than the limit of %d bytes", name, d.maxSize)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.partial[name]
	if offset == 0 {
		if p != nil {
			p.w.Abort()
		}
		if dir := filepath.Dir(name); dir != "." {
			if err := d.root.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("drove: receiving %s: %w", name, err)
			}
		}
		w, err := atomicfile.Create(atomicfile.Root(d.root), name)
		if err != nil {
			delete(d.partial, name)
			return fmt.Errorf("drove: receiving %s: %w", name, err)
		}
		p = &part{w: w}
		d.partial[name] = p
	}
	if p == nil || p.next != offset {
		return fmt.Errorf("drove: receiving %s: chunk at offset %d out of order", name, offset)
	}
	if _, err := p.w.Write(data); err != nil {
		d.dropLocked(name, p)
		return fmt.Errorf("drove: receiving %s: %w", name, err)
	}
	p.next += int64(len(data))
	if !last {
		return nil
	}
	delete(d.partial, name)
	if err := p.w.Commit(mode, time.Time{}); err != nil {
		return fmt.Errorf("drove: receiving %s: %w", name, err)
	}
	return nil
}

func (d *Dir) abort(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p := d.partial[name]; p != nil {
		d.dropLocked(name, p)
	}
}

func (d *Dir) dropLocked(name string, p *part) {
	delete(d.partial, name)
	p.w.Abort()
}

// Close drops unfinished files and releases the directory.
func (d *Dir) Close() error {
	d.mu.Lock()
	for name, p := range d.partial {
		d.dropLocked(name, p)
	}
	d.mu.Unlock()
	return d.root.Close()
}
