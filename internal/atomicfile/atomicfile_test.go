package atomicfile_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/drove-dev/drove/internal/atomicfile"
)

// fileSystems gives each test the same directory seen through package os
// (absolute names) and through an os.Root (relative names).
func fileSystems(t *testing.T) map[string]func(dir string) (atomicfile.FS, func(rel string) string) {
	return map[string]func(dir string) (atomicfile.FS, func(rel string) string){
		"os": func(dir string) (atomicfile.FS, func(string) string) {
			return atomicfile.OS, func(rel string) string { return filepath.Join(dir, rel) }
		},
		"root": func(dir string) (atomicfile.FS, func(string) string) {
			r, err := os.OpenRoot(dir)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			return atomicfile.Root(r), func(rel string) string { return rel }
		},
	}
}

// entries lists dir's names.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFile(t *testing.T) {
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	failed := errors.New("source failed")
	cases := []struct {
		name    string
		fill    func(io.Writer) error
		wantErr error
		want    string // contents of f afterwards
	}{
		{"complete", func(w io.Writer) error { _, err := io.WriteString(w, "new"); return err }, nil, "new"},
		{"fill fails half way", func(w io.Writer) error { _, _ = io.WriteString(w, "ne"); return failed }, failed, "old"},
	}
	for fsName, open := range fileSystems(t) {
		for _, c := range cases {
			t.Run(fsName+"/"+c.name, func(t *testing.T) {
				dir := t.TempDir()
				if err := os.WriteFile(filepath.Join(dir, "f"), []byte("old"), 0o644); err != nil {
					t.Fatal(err)
				}
				fsys, name := open(dir)
				err := atomicfile.WriteFile(fsys, name("f"), 0o640, mtime, c.fill)
				if err != c.wantErr {
					t.Fatalf("WriteFile: %v, want %v", err, c.wantErr)
				}
				b, _ := os.ReadFile(filepath.Join(dir, "f"))
				if string(b) != c.want {
					t.Errorf("f holds %q, want %q", b, c.want)
				}
				if got := entries(t, dir); len(got) != 1 {
					t.Errorf("directory holds %v, want f alone", got)
				}
				if c.wantErr != nil {
					return
				}
				fi, err := os.Stat(filepath.Join(dir, "f"))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o640 || !fi.ModTime().Equal(mtime) {
					t.Errorf("f has mode %v and mtime %v, want 0640 and %v", fi.Mode(), fi.ModTime(), mtime)
				}
			})
		}
	}
}

// A symbolic link at the final name is replaced, not written through.
func TestReplacesLink(t *testing.T) {
	for fsName, open := range fileSystems(t) {
		t.Run(fsName, func(t *testing.T) {
			dir := t.TempDir()
			victim := filepath.Join(dir, "victim")
			if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("victim", filepath.Join(dir, "f")); err != nil {
				t.Fatal(err)
			}
			fsys, name := open(dir)
			if err := atomicfile.WriteFile(fsys, name("f"), 0o644, time.Time{}, func(w io.Writer) error {
				_, err := io.WriteString(w, "new")
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(victim); string(b) != "keep" {
				t.Errorf("the link's target was written: %q", b)
			}
			fi, err := os.Lstat(filepath.Join(dir, "f"))
			if err != nil || !fi.Mode().IsRegular() {
				t.Errorf("f is %v (%v), want a regular file", fi, err)
			}
		})
	}
}

func TestAbortAndCommitErrors(t *testing.T) {
	for fsName, open := range fileSystems(t) {
		t.Run(fsName, func(t *testing.T) {
			dir := t.TempDir()
			fsys, name := open(dir)
			if _, err := atomicfile.Create(fsys, name("sub/f")); err == nil {
				t.Fatal("Create in a missing directory succeeded")
			}
			w, err := atomicfile.Create(fsys, name("f"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(filepath.Base(w.TempName()), ".drove-") || !strings.HasSuffix(w.TempName(), ".part") {
				t.Errorf("temporary name %q", w.TempName())
			}
			if _, err := io.WriteString(w, "data"); err != nil {
				t.Fatal(err)
			}
			w.Abort()
			w.Abort()
			if err := w.Commit(0o644, time.Time{}); err == nil {
				t.Error("Commit after Abort succeeded")
			}
			if got := entries(t, dir); len(got) != 0 {
				t.Errorf("directory holds %v after Abort", got)
			}

			// A directory at the final name: the rename fails, naming
			// the step, and the temporary file goes.
			if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "d", "x"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			w, err = atomicfile.Create(fsys, name("d"))
			if err != nil {
				t.Fatal(err)
			}
			err = w.Commit(0o644, time.Time{})
			var le *os.LinkError
			if !errors.As(err, &le) || le.Op != "rename" {
				t.Errorf("Commit over a directory: %v, want a rename *os.LinkError", err)
			}
			if got := entries(t, dir); len(got) != 1 || got[0] != "d" {
				t.Errorf("directory holds %v after a failed Commit, want d alone", got)
			}
		})
	}
}

func TestTempName(t *testing.T) {
	for _, c := range []struct{ name, dir string }{
		{"f", ""},
		{"a/b/f", "a/b/"},
		{"/abs/f", "/abs/"},
	} {
		got := atomicfile.TempName(c.name)
		if !strings.HasPrefix(got, c.dir+".drove-") || !strings.HasSuffix(got, ".part") || len(got) != len(c.dir)+len(".drove-")+16+len(".part") {
			t.Errorf("TempName(%q) = %q, want %s.drove-<16 hex>.part", c.name, got, c.dir)
		}
		if got == atomicfile.TempName(c.name) {
			t.Errorf("TempName(%q) twice the same", c.name)
		}
	}
}

// TestReadFrom: a copy through ReadFrom lands whole under the final name
// on Commit, and a copy that fails leaves nothing after Abort.
func TestReadFrom(t *testing.T) {
	for name, mk := range fileSystems(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			fsys, p := mk(dir)
			w, err := atomicfile.Create(fsys, p("f"))
			if err != nil {
				t.Fatal(err)
			}
			want := strings.Repeat("x", 100<<10)
			if n, err := w.ReadFrom(strings.NewReader(want)); err != nil || n != int64(len(want)) {
				t.Fatalf("ReadFrom: %d, %v", n, err)
			}
			if err := w.Commit(0o640, time.Time{}); err != nil {
				t.Fatal(err)
			}
			if got, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(got) != want {
				t.Fatalf("read back %d bytes, %v", len(got), err)
			}

			w, err = atomicfile.Create(fsys, p("g"))
			if err != nil {
				t.Fatal(err)
			}
			boom := errors.New("boom")
			if _, err := w.ReadFrom(io.MultiReader(strings.NewReader("partial"), iotest.ErrReader(boom))); !errors.Is(err, boom) {
				t.Fatalf("ReadFrom: %v, want %v", err, boom)
			}
			w.Abort()
			if got := entries(t, dir); len(got) != 1 || got[0] != "f" {
				t.Fatalf("left %v, want only f", got)
			}
		})
	}
}
