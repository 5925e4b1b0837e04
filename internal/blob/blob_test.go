package blob

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPutFileOnceAndLink(t *testing.T) {
	s := Store{Dir: filepath.Join(t.TempDir(), "blobs")}
	src := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(src, []byte("contents"), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, mode, err := s.PutFile(src)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256([]byte("contents"))
	if sum != hex.EncodeToString(want[:]) || mode != 0o644 || !s.Has(sum) {
		t.Fatalf("sum %s mode %v", sum, mode)
	}
	fi1, _ := os.Stat(s.Path(sum))
	if _, _, err := s.PutFile(src); err != nil {
		t.Fatal(err)
	}
	fi2, _ := os.Stat(s.Path(sum))
	if !os.SameFile(fi1, fi2) {
		t.Error("the same content was stored again")
	}
	dst := filepath.Join(t.TempDir(), "job", "data")
	if err := s.Link(sum, dst, mode); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "contents" {
		t.Errorf("linked %q", b)
	}
	exe := filepath.Join(t.TempDir(), "job2", "prog")
	if err := s.Link(sum, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(exe); fi.Mode().Perm() != 0o755 {
		t.Errorf("executable staged as %v", fi.Mode())
	}
}

func TestPutChecksSum(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	wrong := strings.Repeat("0", 64)
	if _, err := s.Put(wrong, strings.NewReader("data")); !errors.Is(err, ErrSumMismatch) {
		t.Fatalf("got %v, want ErrSumMismatch", err)
	}
	if s.Has(wrong) {
		t.Error("a blob with the wrong sum was kept")
	}
	for _, bad := range []string{"", "../etc", strings.Repeat("g", 64)} {
		if _, err := s.Put(bad, strings.NewReader("x")); err == nil {
			t.Errorf("sum %q accepted", bad)
		}
	}
}
