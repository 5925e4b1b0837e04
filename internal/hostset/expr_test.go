package hostset

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// groupsFixture writes ClusterShell and drove group files and returns
// their paths.
func groupsFixture(t *testing.T) GroupPaths {
	t.Helper()
	etc, user := t.TempDir(), t.TempDir()
	write := func(name, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(etc, "groups.conf"), "[Main]\ndefault: roles\nautodir: /etc/clustershell/groups.d\n")
	write(filepath.Join(etc, "groups.d", "cluster.yaml"), `
roles:
  compute: 'n[1-8]'
  gpu: 'n[7-8]'
  login: [login1, login2]
  all: '@compute,@login'
  cpu: '@compute!@gpu'
  loop: '@loop2'
  loop2: '@loop'
  rack1: 'n[1-4]'
  rack2: 'n[5-8]'
  bad: 'n[3-1]'
racks:
  r1: 'n[1-2]'
  r2: 'x1,x2'
`)
	write(filepath.Join(user, "groups.d", "local.cfg"), "adm: adm1 adm2\n")
	drove := filepath.Join(t.TempDir(), "groups.yaml")
	write(drove, "web: 'web[1-3]'\ncompute: 'overridden[1-2]'\nmine: ['u@n1:2222', n2]\n")
	return GroupPaths{ClusterShell: []string{etc, user}, Drove: drove}
}

func testExpander(t *testing.T) *Expander {
	paths := groupsFixture(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hosts"), []byte("# hosts\nf1 f2\nf[3-4] # more\n\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "nested"), []byte("g1\n^"+filepath.Join(dir, "hosts")+"\n"), 0o644)
	return &Expander{
		Groups: func() (*Groups, error) { return LoadGroups(paths) },
		ReadFile: func(name string) ([]byte, error) {
			if !filepath.IsAbs(name) {
				name = filepath.Join(dir, name)
			}
			return os.ReadFile(name)
		},
	}
}

func TestExpandOperators(t *testing.T) {
	x := testExpander(t)
	tests := []struct {
		in   string
		want string // comma-joined
	}{
		// ClusterShell's operators.
		{"h[1-9]!h5", "h1,h2,h3,h4,h6,h7,h8,h9"},
		{"h[1-9]!h[2-8]", "h1,h9"},
		{"h[1-5]&h[4-9]", "h4,h5"},
		{"h[1-5]^h[4-7]", "h1,h2,h3,h6,h7"},
		{"h[1-3],h[3-4]", "h1,h2,h3,h4"},
		// Left to right, no precedence, as ClusterShell evaluates them.
		{"h1,h2&h2", "h2"},
		{"h[1-4]!h2,h2", "h1,h3,h4,h2"},
		{"h[1-4]&h[2-6]!h3", "h2,h4"},
		{"h[1-4]^h[3-6]&h[1-5]", "h1,h2,h5"},
		{"h1!h1,h1", "h1"},
		// Whitespace around operators is ignored; between names it is a union.
		{"h[1-4] ! h2", "h1,h3,h4"},
		{"h1 h2", "h1,h2"},
		{"  h1 ,  h2  ", "h1,h2"},
		{"h[1, 3]", "h1,h3"},
		// Operators inside brackets belong to the range.
		{"n[1-3]!n[2]", "n1,n3"},
		// pdsh: "-item" leaves item out of the whole result, wherever it is.
		{"h[1-4],-h2", "h1,h3,h4"},
		{"-h2,h[1-4]", "h1,h3,h4"},
		{"h[1-4],-h[2-3],h3", "h1,h4"},
		{"admin@h[1-3]:22,-h2", "admin@h1:22,admin@h3:22"},
		{"admin@h[1-3],-root@h2", "admin@h1,admin@h2,admin@h3"},
		// pdsh: ^FILE and -^FILE.
		{"^hosts", "f1,f2,f3,f4"},
		{"^hosts,-f2", "f1,f3,f4"},
		{"f[0-5],-^hosts", "f0,f5"},
		{"^hosts&f[2-3]", "f2,f3"},
		{"^nested", "g1,f1,f2,f3,f4"},
		// Groups: drove's file first, then the default source.
		{"@web", "web1,web2,web3"},
		{"@compute", "overridden1,overridden2"},
		{"@roles:compute!@roles:gpu", "n1,n2,n3,n4,n5,n6"},
		{"@roles:cpu", "n1,n2,n3,n4,n5,n6"},
		{"@gpu", "n7,n8"},
		{"@login", "login1,login2"},
		{"@roles:*", "n1,n2,n3,n4,n5,n6,n7,n8,login1,login2"},
		{"@racks:*", "n1,n2,x1,x2"},
		{"@racks:r[1-2]", "n1,n2,x1,x2"},
		{"@rack[1-2]&@gpu", "n7,n8"},
		{"@local:adm", "adm1,adm2"},
		{"@mine", "u@n1:2222,n2"},
		{"@web,-web2", "web1,web3"},
		{"n[1-8]!@gpu^h1", "n1,n2,n3,n4,n5,n6,h1"},
	}
	for _, tt := range tests {
		got, err := x.Expand(tt.in)
		if err != nil {
			t.Errorf("Expand(%q): %v", tt.in, err)
			continue
		}
		if strings.Join(got, ",") != tt.want {
			t.Errorf("Expand(%q) = %s, want %s", tt.in, strings.Join(got, ","), tt.want)
		}
	}
}

// TestGroupAllInDefaultSource checks that @roles:all names the
// ClusterShell "all" group, not drove's @compute.
func TestGroupAllUsesItsSource(t *testing.T) {
	x := testExpander(t)
	got, err := x.Expand("@roles:all")
	if err != nil {
		t.Fatal(err)
	}
	// A group inside a group is looked up in that group's source.
	if want := "n1,n2,n3,n4,n5,n6,n7,n8,login1,login2"; strings.Join(got, ",") != want {
		t.Fatalf("got %s, want %s", strings.Join(got, ","), want)
	}
}

func TestExpandErrorsNew(t *testing.T) {
	x := testExpander(t)
	tests := []struct {
		in      string
		is      error
		message string
	}{
		{"h1!", ErrSyntax, "missing node set operand with '!' operator"},
		{"!h1", ErrSyntax, "missing node set operand with '!' operator"},
		{"h1&&h2", ErrSyntax, "missing node set operand with '&' operator"},
		{"h1,^", ErrSyntax, `nothing after "^"`},
		{"h1,-", ErrSyntax, `nothing after "-"`},
		{"h1!-h2", ErrSyntax, `a host name cannot start with "-"`},
		{"/node.*/", ErrSyntax, "/regex/ filters are not supported"},
		{"h[3-1]", ErrSyntax, `bad range "3-1"`},
		{"h[1-2", ErrSyntax, "unclosed '['"},
		{"@nosuch", ErrUnknownGroup, "unknown node group: @nosuch (sources: drove, roles (default);"},
		{"@nosrc:x", ErrUnknownGroup, `no group source "nosrc" (sources: drove, local, racks, roles;`},
		{"@racks:r9", ErrUnknownGroup, "@racks:r9 (sources: racks;"},
		{"@loop", ErrSyntax, "nested more than"},
		{"@bad", ErrSyntax, `group @roles:bad: drove: node set syntax error in "n[3-1]": bad range "3-1"`},
		{"@", ErrSyntax, "empty group name"},
		{"^nofile", os.ErrNotExist, "host file"},
	}
	for _, tt := range tests {
		_, err := x.Expand(tt.in)
		if !errors.Is(err, tt.is) || !strings.Contains(fmtErr(err), tt.message) {
			t.Errorf("Expand(%q) error = %v, want %v containing %q", tt.in, err, tt.is, tt.message)
		}
	}
	// Without groups or files, as plain Expand.
	for _, in := range []string{"@web", "^hosts"} {
		if _, err := Expand(in); !errors.Is(err, ErrSyntax) {
			t.Errorf("Expand(%q) error = %v, want ErrSyntax", in, err)
		}
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestLoadGroupsErrors(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "a", "groups.d"), 0o755)
	os.MkdirAll(filepath.Join(dir, "b", "groups.d"), 0o755)
	os.WriteFile(filepath.Join(dir, "a", "groups.d", "x.yaml"), []byte("s: {g: n1}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "b", "groups.d", "y.yaml"), []byte("s: {g: n2}\n"), 0o644)
	_, err := LoadGroups(GroupPaths{ClusterShell: []string{filepath.Join(dir, "a"), filepath.Join(dir, "b")}})
	if err == nil || !strings.Contains(err.Error(), `group source "s" is defined twice`) {
		t.Errorf("two files, one source: %v", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("g: {nested: map}\n"), 0o644)
	if _, err := LoadGroups(GroupPaths{Drove: bad}); err == nil || !strings.Contains(err.Error(), "want a node set or a list") {
		t.Errorf("nested map: %v", err)
	}
	os.WriteFile(bad, []byte("[not, a, map]\n"), 0o644)
	if _, err := LoadGroups(GroupPaths{Drove: bad}); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("list: %v", err)
	}
	// Nothing there is no error, and no group is found.
	g, err := LoadGroups(GroupPaths{ClusterShell: []string{filepath.Join(dir, "none")}, Drove: filepath.Join(dir, "none.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	x := &Expander{Groups: func() (*Groups, error) { return g, nil }}
	if _, err := x.Expand("@g"); !errors.Is(err, ErrUnknownGroup) || !strings.Contains(err.Error(), "no group file found") {
		t.Errorf("no files: %v", err)
	}
	// A broken group file matters only to node sets with groups.
	x = &Expander{Groups: func() (*Groups, error) { return LoadGroups(GroupPaths{Drove: bad}) }}
	if got, err := x.Expand("h1"); err != nil || len(got) != 1 {
		t.Errorf("Expand(h1) with a broken group file = %v, %v", got, err)
	}
}

func TestDefaultGroupPaths(t *testing.T) {
	t.Setenv(ClusterShellGroupsEnv, "/a:/b")
	t.Setenv(GroupsFileEnv, "/g.yaml")
	p := DefaultGroupPaths()
	if !reflect.DeepEqual(p, GroupPaths{ClusterShell: []string{"/a", "/b"}, Drove: "/g.yaml"}) {
		t.Errorf("with the variables set: %+v", p)
	}
	os.Unsetenv(ClusterShellGroupsEnv)
	os.Unsetenv(GroupsFileEnv)
	t.Setenv("HOME", "/home/u")
	t.Setenv("XDG_CONFIG_HOME", "")
	p = DefaultGroupPaths()
	want := GroupPaths{ClusterShell: []string{"/etc/clustershell", "/home/u/.config/clustershell", "/home/u/.local/etc/clustershell"}, Drove: "/home/u/.config/drove/groups.yaml"}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("defaults: %+v, want %+v", p, want)
	}
}

func TestSelectionHosts(t *testing.T) {
	x := testExpander(t)
	file := filepath.Join(t.TempDir(), "pssh-hosts")
	os.WriteFile(file, []byte("f9 admin\n@web\n"), 0o644)
	got, err := x.Hosts(Selection{
		Sets:    []string{"admin@h[1-4]:2222,-h3", "@mine", "g[1-2] g3"},
		Files:   []string{file},
		Exclude: []string{"g2,web2", "u@n1:2222"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Host{
		{User: "admin", Host: "h1", Port: "2222"}, {User: "admin", Host: "h2", Port: "2222"}, {User: "admin", Host: "h4", Port: "2222"},
		{Host: "n2"}, {Host: "g1"}, {Host: "g3"}, {User: "admin", Host: "f9"}, {Host: "web1"}, {Host: "web3"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if _, err := x.Hosts(Selection{Sets: []string{"h1"}, Exclude: []string{"@nosuch"}}); !errors.Is(err, ErrUnknownGroup) || !strings.HasPrefix(err.Error(), "-x: ") {
		t.Errorf("bad -x: %v", err)
	}
}

func FuzzExpandOperators(f *testing.F) {
	for _, s := range []string{"h[1-9]!h5", "a,b&c^d", "h[1-4],-h2", "-^f", "@g!@h", "a b ! c", "x^y", "[::1]:2&[::1]:2", "@a:b[1-2]", ",,!", "n[1-3]^"} {
		f.Add(s)
	}
	paths := GroupPaths{}
	f.Fuzz(func(t *testing.T, s string) {
		// Groups that expand to names of their own; no files are read.
		g, err := LoadGroups(paths)
		if err != nil {
			t.Fatal(err)
		}
		g.sources["drove"] = map[string]string{"g": "n[1-3]", "h": "n2,m1", "self": "@self"}
		x := &Expander{Groups: func() (*Groups, error) { return g, nil }}
		names, err := x.Expand(s)
		if err != nil {
			if !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrUnknownGroup) {
				t.Fatalf("Expand(%q): error %v wraps neither ErrSyntax nor ErrUnknownGroup", s, err)
			}
			return
		}
		if len(names) > MaxNodes {
			t.Fatalf("%d names", len(names))
		}
		seen := map[string]bool{}
		for _, n := range names {
			if seen[n] || n == "" {
				t.Fatalf("Expand(%q): duplicate or empty name %q in %q", s, n, names)
			}
			seen[n] = true
		}
		// Set identities that hold whatever the operands: a!a and a^a are
		// empty, a&a and a,a are a. Not with a space in a, which separates
		// sets as a comma does ("x y!x y" is "x", "y!x", "y").
		if len(names) > 0 && !strings.ContainsAny(s, ",!&^- \t\n\v\f\r") {
			for _, op := range []string{"!", "^"} {
				if got, err := x.Expand(s + op + s); err == nil && len(got) != 0 {
					t.Fatalf("Expand(%q) = %q, want nothing", s+op+s, got)
				}
			}
			if got, err := x.Expand(s + "&" + s); err == nil && !reflect.DeepEqual(got, names) {
				t.Fatalf("Expand(%q) = %q, want %q", s+"&"+s, got, names)
			}
		}
	})
}

func TestExcludeLogins(t *testing.T) {
	x := testExpander(t)
	logins := []Login{{Host: ":"}, {Host: "u@h1:22", Slots: 2}, {Host: "h2"}, {Host: "web2"}, {Host: "h3"}}
	got, err := x.ExcludeLogins(logins, []string{"h1", "@web!web1,h[3-4]"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Login{{Host: ":"}, {Host: "h2"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got, _ := x.ExcludeLogins(logins, []string{":"}); len(got) != 4 || got[0].Host != "u@h1:22" {
		t.Errorf(`excluding ":": %+v`, got)
	}
	if _, err := x.ExcludeLogins(logins[1:3], []string{"h[1-2]"}); err == nil || !strings.Contains(err.Error(), "every host") {
		t.Errorf("everything excluded: %v", err)
	}
	if _, err := x.ExcludeLogins(logins, []string{"@nosuch"}); !errors.Is(err, ErrUnknownGroup) {
		t.Errorf("unknown group: %v", err)
	}
}

func TestParseLoginsGroups(t *testing.T) {
	x := testExpander(t)
	got, err := x.ParseLogins("4/@web!web2,:,2/h[1-3]&h[2-5]")
	if err != nil {
		t.Fatal(err)
	}
	want := []Login{{Host: "web1", Slots: 4}, {Host: "web3", Slots: 4}, {Host: ":"}, {Host: "h2", Slots: 2}, {Host: "h3", Slots: 2}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for _, bad := range []string{"h[1-3],-h2", "^hosts"} {
		if _, err := x.ParseLogins(bad); !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), "--exclude") {
			t.Errorf("ParseLogins(%q) error = %v", bad, err)
		}
	}
	if _, err := ParseLogins("@web"); !errors.Is(err, ErrSyntax) {
		t.Errorf("ParseLogins without groups: %v", err)
	}
}
