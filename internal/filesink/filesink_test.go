package filesink

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteChunks(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.WriteChunk("sub/out.txt", 0o640, 0, []byte("hello "), false); err != nil {
		t.Fatal(err)
	}
	// Not complete yet: nothing under the final name.
	if _, err := os.Stat(filepath.Join(dir, "sub/out.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("partial file visible: %v", err)
	}
	if err := d.WriteChunk("sub/out.txt", 0o640, 6, []byte("world"), true); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "sub/out.txt"))
	if err != nil || string(b) != "hello world" {
		t.Fatalf("got %q, %v", b, err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "sub/out.txt")); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", fi.Mode())
	}
}

func TestRefusesNamesOutside(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "dest")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// A symlink inside pointing out must not be followed either.
	if err := os.Symlink(parent, filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	d, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, name := range []string{"../x", "/etc/passwd", "a/../../x", "", ".", "escape/x"} {
		err := d.WriteChunk(name, 0o644, 0, []byte("x"), true)
		if err == nil {
			t.Errorf("%q: accepted", name)
		}
	}
	if _, err := os.Stat(filepath.Join(parent, "x")); err == nil {
		t.Error("a file was written outside the directory")
	}
	if err := d.WriteChunk("../x", 0o644, 0, nil, true); !errors.Is(err, ErrBadName) {
		t.Errorf("traversal error %v does not match ErrBadName", err)
	}
}

func TestSizeLimitAndOrder(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.WriteChunk("big", 0o644, 0, make([]byte, 11), true); err == nil {
		t.Error("file over the limit accepted")
	}
	if err := d.WriteChunk("gap", 0o644, 5, []byte("x"), true); err == nil {
		t.Error("chunk out of order accepted")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
}

// A file received twice at once (two jobs sending the same name) or a link
// planted where the temporary file would be does not mix the writes: each
// transfer has its own temporary file, opened without following links.
func TestWriteChunkTemporaryFileIsPrivate(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "victim"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The temporary name this package once used for out.txt.
	if err := os.Symlink("victim", filepath.Join(dir, ".out.txt.drove-part")); err != nil {
		t.Fatal(err)
	}
	d, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.WriteChunk("out.txt", 0o644, 0, []byte("new"), true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "victim")); string(b) != "keep" {
		t.Errorf("the planted link's target was written: %q", b)
	}
	fi, err := os.Lstat(filepath.Join(dir, "out.txt"))
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("out.txt is %v (%v), want a regular file", fi, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "out.txt")); string(b) != "new" {
		t.Errorf("out.txt holds %q", b)
	}
}
