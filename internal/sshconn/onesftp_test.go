package sshconn_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestOnlyPoolCreatesSFTPClients checks that this package is the only one
// in the module that creates SFTP clients (github.com/pkg/sftp's
// NewClient and NewClientPipe), so that every SFTP session is the pool's
// one per host and every transfer goes through internal/sshconn/sftpengine.
func TestOnlyPoolCreatesSFTPClients(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	here := filepath.Join(root, "internal", "sshconn")
	found := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); p != root && (strings.HasPrefix(n, ".") || n == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, c := range sftpClientCalls(f) {
			found++
			if filepath.Dir(p) != here {
				rel, _ := filepath.Rel(root, p)
				t.Errorf("%s calls sftp.%s: only internal/sshconn (Pool.SFTP) may create SFTP clients", rel, c)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found == 0 {
		t.Error("no call to sftp.NewClient found at all: the check looks in the wrong place")
	}
}

// sftpClientCalls returns the names of the client constructors of
// github.com/pkg/sftp that f calls.
func sftpClientCalls(f *ast.File) []string {
	name := ""
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == "github.com/pkg/sftp" {
			name = "sftp"
			if imp.Name != nil {
				name = imp.Name.Name
			}
		}
	}
	if name == "" {
		return nil
	}
	var calls []string
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if id, ok := sel.X.(*ast.Ident); ok && id.Name == name && (sel.Sel.Name == "NewClient" || sel.Sel.Name == "NewClientPipe") {
			calls = append(calls, sel.Sel.Name)
		}
		return true
	})
	return calls
}
