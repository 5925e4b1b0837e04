package recoverfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestWriteRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "recover.json")
	want := &File{ClientID: "host-1", Computation: Computation{Kind: KindProgram, Name: "/bin/true", Result: "int"}, Nodes: []string{"127.0.0.1:9701", "[::1]:9702"}}
	if err := Write(path, want); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) || got.Version != Version {
		t.Errorf("read %+v, want %+v", got, want)
	}
	// No node yet: an empty list, not null.
	if err := Write(path, &File{ClientID: "c", Computation: Computation{Kind: KindFunc, Name: "f", Result: "int"}}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), `"nodes": []`) {
		t.Errorf("no empty node list in\n%s", b)
	}
}

func TestReadErrors(t *testing.T) {
	ok := `"version":1,"client_id":"c","computation":{"kind":"func","name":"f","result":"int"},"nodes":["127.0.0.1:9701"]`
	tests := []struct {
		name, content, want string
	}{
		{"empty", "", "not a usable drove recover file: EOF"},
		{"garbled", "{\"version\":1,\"client", "unexpected EOF"},
		{"not json", "hello", "invalid character"},
		{"other json", `{"name":"x"}`, `unknown field "name"`},
		{"no version", `{"client_id":"c"}`, "no version"},
		{"newer", `{"version":2}`, "written by a newer drove"},
		{"old", `{"version":-1}`, "version -1"},
		{"no client", `{"version":1,"computation":{"kind":"func","name":"f"}}`, "no client_id"},
		{"bad kind", `{"version":1,"client_id":"c","computation":{"kind":"shell","name":"f"}}`, `kind "shell"`},
		{"no name", `{"version":1,"client_id":"c","computation":{"kind":"func"}}`, "no computation name"},
		{"bad node", `{"version":1,"client_id":"c","computation":{"kind":"func","name":"f"},"nodes":["nohost"]}`, `node address "nohost"`},
		{"scheduler", "{" + ok + `,"scheduler":"10.0.0.1:9700"}`, "scheduler at 10.0.0.1:9700"},
		{"trailing", "{" + ok + "}{}", "data after"},
		{"too big", "{" + ok + "}" + strings.Repeat(" ", MaxSize), "larger than"},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Read(path)
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %v, want ErrFormat naming %s and saying %q", err, path, tt.want)
			}
		})
	}
	_, err := Read(filepath.Join(dir, "missing"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "closes cleanly") {
		t.Errorf("missing file: %v", err)
	}
}

// FuzzDecode: Decode never panics, and what it accepts is written back and
// read again unchanged.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"version":1,"client_id":"c","computation":{"kind":"func","name":"f","result":"int"},"nodes":["127.0.0.1:9701"]}`))
	f.Add([]byte(`{"version":1,"client_id":"c","computation":{"kind":"program","name":"/bin/true","result":"int"},"nodes":[]}`))
	f.Add([]byte(`{"version":1,"scheduler":"x:1"}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		path := filepath.Join(t.TempDir(), "f")
		if err := Write(path, got); err != nil {
			t.Fatal(err)
		}
		again, err := Read(path)
		if err != nil {
			t.Fatalf("rereading %+v: %v", got, err)
		}
		if !reflect.DeepEqual(again, got) {
			t.Fatalf("reread %+v, want %+v", again, got)
		}
	})
}
