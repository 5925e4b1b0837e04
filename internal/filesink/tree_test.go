package filesink

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCheckName(t *testing.T) {
	for _, name := range []string{"a", "with space", "..a", "a..", ".hidden", "back\\slash", "\xff", "-rf", "...", strings.Repeat("x", 255)} {
		if err := CheckName(name); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
	for _, name := range []string{"", ".", "..", "/", "a/b", "/a", "a/", "nul\x00"} {
		if err := CheckName(name); !errors.Is(err, ErrBadElement) {
			t.Errorf("%q: %v, want ErrBadElement", name, err)
		}
	}
}

// FuzzCheckName checks that a name CheckName accepts, joined to a
// directory, names an entry right in it and nothing else.
func FuzzCheckName(f *testing.F) {
	for _, s := range []string{"a", "", ".", "..", "/", "a/b", "x/..", "nul\x00", "..."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if CheckName(name) != nil {
			return
		}
		p := filepath.Join("/dest", name)
		if filepath.Dir(p) != "/dest" || filepath.Base(p) != name || !filepath.IsLocal(name) || strings.IndexByte(name, 0) >= 0 {
			t.Fatalf("%q accepted, but joined it is %q", name, p)
		}
	})
}

// TestTreeNeverFollowsLinks puts links in the way of every method: inside
// dest to outside, and inside dest to a directory of dest.
func TestTreeNeverFollowsLinks(t *testing.T) {
	base := t.TempDir()
	dest, outside := filepath.Join(base, "dest"), filepath.Join(base, "outside")
	for _, d := range []string{outside, filepath.Join(dest, "in")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"out": outside, "rel": "../outside", "inside": "in"} {
		if err := os.Symlink(target, filepath.Join(dest, link)); err != nil {
			t.Fatal(err)
		}
	}
	d, err := Create(dest)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	mt := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	write := func(s string) func(io.Writer) error {
		return func(w io.Writer) error { _, err := io.WriteString(w, s); return err }
	}
	for _, link := range []string{"out", "rel", "inside"} {
		if err := d.Mkdir(link); !errors.Is(err, ErrLink) {
			t.Errorf("Mkdir(%s): %v, want ErrLink", link, err)
		}
		if err := d.SetAttrs(link, 0o777, mt); !errors.Is(err, ErrLink) {
			t.Errorf("SetAttrs(%s): %v, want ErrLink", link, err)
		}
		// The directories on the way are the caller's to check (with
		// Mkdir); os.Root still keeps them from leading out.
		if err := d.WriteFile(link+"/f", 0o644, mt, write("x")); err == nil && link != "inside" {
			t.Errorf("WriteFile(%s/f) went through the link", link)
		}
		os.Remove(filepath.Join(dest, "in", "f"))
		// A file replaces the link itself.
		if err := d.WriteFile(link, 0o640, mt, write("data")); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(filepath.Join(dest, link))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o640 || !fi.ModTime().Equal(mt) {
			t.Errorf("%s after WriteFile: %v, %v", link, fi, err)
		}
	}
	for _, dir := range []string{outside, filepath.Join(dest, "in")} {
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("written through a link into %s: %v", dir, entries)
		}
		if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: mode changed to %v", dir, fi.Mode())
		}
	}
	// A link replaces a file or a link, never a directory.
	if err := d.Symlink(outside, "out"); err != nil {
		t.Fatal(err)
	}
	if err := d.Symlink(outside, "in"); err == nil {
		t.Error("a directory was replaced by a link")
	}
	if err := d.Mkdir("in"); err != nil {
		t.Errorf("Mkdir of an existing directory: %v", err)
	}
	if err := d.SetAttrs("in", 0o700, mt); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(filepath.Join(dest, "in")); fi.Mode() != fs.ModeDir|0o700 || !fi.ModTime().Equal(mt) {
		t.Errorf("in: %v %v", fi.Mode(), fi.ModTime())
	}
}

// TestWriteFileFailureLeavesNothing checks that a failed fill removes the
// temporary file and leaves an existing file alone.
func TestWriteFileFailureLeavesNothing(t *testing.T) {
	dest := t.TempDir()
	if err := os.WriteFile(filepath.Join(dest, "f"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := Open(dest, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	boom := errors.New("boom")
	err = d.WriteFile("f", 0o644, time.Time{}, func(w io.Writer) error {
		io.WriteString(w, "partial")
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("WriteFile: %v", err)
	}
	entries, _ := os.ReadDir(dest)
	if b, _ := os.ReadFile(filepath.Join(dest, "f")); len(entries) != 1 || string(b) != "old" {
		t.Errorf("left %v, f = %q", entries, b)
	}
}
