// Package blob is a content-addressed file store: files are kept under the
// hex SHA-256 of their contents, copied in once and hard-linked (or copied,
// across file systems) to where jobs need them.
package blob

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/drove-dev/drove/internal/atomicfile"
)

// Store is a directory of blobs. Its methods are safe for concurrent use:
// blobs are written under a temporary name and renamed into place.
type Store struct {
	Dir string
}

// Path returns where the blob with the given sum lives.
func (s Store) Path(sum string) string { return filepath.Join(s.Dir, sum) }

// Has reports whether the store holds sum.
func (s Store) Has(sum string) bool {
	_, err := os.Stat(s.Path(sum))
	return err == nil
}

// PutFile copies the file at path into the store and returns its sum and
// mode. A blob already present is not copied again.
func (s Store) PutFile(path string) (sum string, mode os.FileMode, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	if !fi.Mode().IsRegular() {
		return "", 0, fmt.Errorf("blob: %s is not a regular file", path)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", 0, fmt.Errorf("blob: hashing %s: %w", path, err)
	}
	sum = hex.EncodeToString(h.Sum(nil))
	if s.Has(sum) {
		return sum, fi.Mode().Perm(), nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", 0, err
	}
	if _, err := s.Put(sum, f); err != nil {
		return "", 0, err
	}
	return sum, fi.Mode().Perm(), nil
}

// ErrSumMismatch is returned by Put when the data does not hash to the sum.
var ErrSumMismatch = errors.New("blob: content does not match its sum")

// Put stores the data read from r under sum, checking that it hashes to sum.
// It returns the number of bytes written.
func (s Store) Put(sum string, r io.Reader) (int64, error) {
	if _, err := hex.DecodeString(sum); err != nil || len(sum) != 64 {
		return 0, fmt.Errorf("blob: bad sum %q", sum)
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return 0, err
	}
	w, err := atomicfile.Create(atomicfile.OS, s.Path(sum))
	if err != nil {
		return 0, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), r)
	if err != nil {
		w.Abort()
		return n, fmt.Errorf("blob: writing %s: %w", sum, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		w.Abort()
		return n, fmt.Errorf("%w: got %s, want %s", ErrSumMismatch, got, sum)
	}
	if err := w.Commit(0o444, time.Time{}); err != nil {
		return n, fmt.Errorf("blob: writing %s: %w", sum, err)
	}
	return n, nil
}

// Link places blob sum at dst. A file with no execute bit in mode is hard
// linked and so read-only (0444): blobs are read-only, which makes sharing
// the inode safe. An executable, or a link across file systems, is copied
// and given mode.
func (s Store) Link(sum, dst string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	src := s.Path(sum)
	if mode.Perm()&0o111 == 0 {
		if err := os.Link(src, dst); err == nil {
			return nil
		}
	}
	// While the copy is open for writing, a fork elsewhere in the process
	// (a job starting) inherits the descriptor, and exec of the copy then
	// fails with "text file busy"; os/exec takes this lock to fork.
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode.Perm())
}

// HashFile returns the SHA-256 (hex) of the regular file at path and its
// FileInfo: what names a local file in a blob store anywhere.
func HashFile(path string) (sum string, fi fs.FileInfo, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return "", nil, err
	}
	if !fi.Mode().IsRegular() {
		return "", nil, fmt.Errorf("drove: %s is not a regular file", path)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", nil, fmt.Errorf("drove: hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), fi, nil
}
