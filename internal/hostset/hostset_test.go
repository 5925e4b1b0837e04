package hostset

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"a", []string{"a"}},
		{"a,b , c", []string{"a", "b", "c"}},
		{"node[1-3]", []string{"node1", "node2", "node3"}},
		{"node[01-10,15]", []string{"node01", "node02", "node03", "node04", "node05", "node06", "node07", "node08", "node09", "node10", "node15"}},
		{"n[8-11]", []string{"n8", "n9", "n10", "n11"}},
		{"n[1-10/4]", []string{"n1", "n5", "n9"}},
		{"a[1-3]b[1-2]", []string{"a1b1", "a1b2", "a2b1", "a2b2", "a3b1", "a3b2"}},
		{"rack[1-2]-n[1-2].example", []string{"rack1-n1.example", "rack1-n2.example", "rack2-n1.example", "rack2-n2.example"}},
		{"x[1-2],y,x1", []string{"x1", "x2", "y"}},
		{"user@127.0.0.[2-3]:2222", []string{"user@127.0.0.2:2222", "user@127.0.0.3:2222"}},
		{"n[007]", []string{"n007"}},
		{"[1-2]", []string{"1", "2"}},
		{"[::1]:2", []string{"[::1]:2"}},
		{"u@[::1],u@[fe80::1%lo]:22,n[1-2]", []string{"u@[::1]", "u@[fe80::1%lo]:22", "n1", "n2"}},
		{"[2001:db8::1]x[1-2]", []string{"[2001:db8::1]x1", "[2001:db8::1]x2"}},
	}
	for _, tt := range tests {
		got, err := Expand(tt.in)
		if err != nil {
			t.Errorf("Expand(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Expand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestExpandErrors(t *testing.T) {
	for _, in := range []string{"n[", "n]", "n[1-", "n[3-1]", "n[a-b]", "n[]", "n[[1]]", "n[1-2/0]", "n[1-1000000000]", "n[1-2000]m[1-2000]"} {
		if _, err := Expand(in); !errors.Is(err, ErrSyntax) {
			t.Errorf("Expand(%q) error = %v, want ErrSyntax", in, err)
		}
	}
}

func TestFold(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"n1", "n2", "n3", "x"}, "n[1-3],x"},
		{[]string{"n3", "n1", "n2", "n5"}, "n[1-3,5]"},
		{[]string{"n01", "n02", "n1"}, "n1,n[01-02]"},
		{[]string{"a1b2", "a1b3"}, "a1b[2-3]"},
		{[]string{"web7"}, "web7"},
		{[]string{"127.0.0.2:22", "127.0.0.3:22"}, "127.0.0.2:22,127.0.0.3:22"},
		{[]string{"h", "h"}, "h"},
	}
	for _, tt := range tests {
		if got := Fold(tt.in); got != tt.want {
			t.Errorf("Fold(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFoldManyUnfoldable(t *testing.T) {
	// ClusterShell issue #560: folding names that do not fold must not be
	// quadratic.
	var names []string
	for i := 0; i < 100000; i++ {
		names = append(names, "host-"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+"-"+string(rune('a'+i/26%26))+string(rune('a'+i/676%26)))
	}
	Fold(names)
}

func TestParseLogins(t *testing.T) {
	tests := []struct {
		in   string
		want []Login
	}{
		{":", []Login{{Host: ":"}}},
		{"4/:", []Login{{Host: ":", Slots: 4}}},
		{"2/a,b", []Login{{Host: "a", Slots: 2}, {Host: "b"}}},
		{"8/user@node[1-2]:2222,:", []Login{{Host: "user@node1:2222", Slots: 8}, {Host: "user@node2:2222", Slots: 8}, {Host: ":"}}},
		{"a,2/a", []Login{{Host: "a", Slots: 2}}},
		{"n[1-4/2]", []Login{{Host: "n1"}, {Host: "n3"}}},
		{"[::1]:2", []Login{{Host: "[::1]:2"}}},
		{"2/alice@[::1]:2222,[::1]", []Login{{Host: "alice@[::1]:2222", Slots: 2}, {Host: "[::1]"}}},
	}
	for _, tt := range tests {
		got, err := ParseLogins(tt.in)
		if err != nil {
			t.Errorf("ParseLogins(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseLogins(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{"0/a", "x/a", "4/", "ssh -p 22 host", "n[1"} {
		if _, err := ParseLogins(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseLogins(%q) error = %v, want ErrSyntax", bad, err)
		}
	}
}

func TestParseLoginFile(t *testing.T) {
	in := "# hosts\n\n8/big\n  small  \n:\nbig\nn[1-2]\n"
	got, err := ParseLoginFile(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Login{{Host: "big"}, {Host: "small"}, {Host: ":"}, {Host: "n1"}, {Host: "n2"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestParseHostFile(t *testing.T) {
	in := `# pssh hosts
web1
root@web2:2222   # trailing comment
web3:22 admin
db[1-2]
[::1]:2222
u@[::1]

`
	got, err := ParseHostFile(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Host{{Host: "web1"}, {User: "root", Host: "web2", Port: "2222"}, {User: "admin", Host: "web3", Port: "22"}, {Host: "db1"}, {Host: "db2"},
		{Host: "[::1]", Port: "2222"}, {User: "u", Host: "[::1]"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for _, bad := range []string{"a b c", "u@h x", "h:0", "h:x", "h:70000", "@h", ":22", "h:", "[::1", "[::1]x", "[]:22", "[::1]:0"} {
		if _, err := ParseHostFile(strings.NewReader(bad)); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseHostFile(%q) error = %v, want ErrSyntax", bad, err)
		}
	}
}

func TestParseHostsIPv6(t *testing.T) {
	got, err := ParseHosts("[::1]:2 u@[::1] web[1-2]")
	if err != nil {
		t.Fatal(err)
	}
	want := []Host{{Host: "[::1]", Port: "2"}, {User: "u", Host: "[::1]"}, {Host: "web1"}, {Host: "web2"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if got[0].Target() != "[::1]:2" {
		t.Errorf("Target() = %q", got[0].Target())
	}
}

func TestOutputNames(t *testing.T) {
	hosts := []Host{{Host: "a"}, {User: "u", Host: "a", Port: "22"}, {Host: "a"}, {Host: "a"}}
	got := OutputNames(hosts)
	want := []string{"a", "u@a:22", "a.1", "a.2"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func FuzzExpand(f *testing.F) {
	for _, s := range []string{"n[1-3]", "a[1-3]b[01-02],c", "x[1-10/3]", "[", "a,,b", "n[0-0]", "[::1]:2", "u@[fe80::1]:22,n[1-2]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		names, err := Expand(s)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("error %v does not wrap ErrSyntax", err)
			}
			return
		}
		if len(names) > MaxNodes {
			t.Fatalf("%d names", len(names))
		}
		seen := map[string]bool{}
		for _, n := range names {
			if seen[n] {
				t.Fatalf("duplicate %q", n)
			}
			seen[n] = true
		}
		// Folding the names of a valid set and expanding again gives the
		// same set, provided the names carry no syntax of their own.
		for _, n := range names {
			if strings.ContainsAny(n, "[], \t\n\v\f\r\u0085\u00a0") {
				return
			}
		}
		back, err := Expand(Fold(names))
		if err != nil {
			t.Fatalf("Expand(Fold(%q)) = %v", names, err)
		}
		a, b := slices.Clone(names), back
		slices.Sort(a)
		slices.Sort(b)
		if !slices.Equal(a, b) {
			t.Fatalf("fold round trip: %q → %q → %q", names, Fold(names), back)
		}
	})
}

func FuzzParseLogins(f *testing.F) {
	for _, s := range []string{":", "4/:", "2/u@h[1-2]:22,x", "0/x", "a/b/c", "[::1]:2", "3/u@[::1]:22,[::2]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ls, err := ParseLogins(s)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("error %v does not wrap ErrSyntax", err)
			}
			return
		}
		for _, l := range ls {
			if l.Host == "" || l.Slots < 0 {
				t.Fatalf("bad login %+v", l)
			}
		}
	})
}

func FuzzParseHostFile(f *testing.F) {
	for _, s := range []string{"a\nu@b:22\nc:1 u\n#x\n", "a b c", "h[1-2]:2222", "[::1]:2222\nu@[::1]\n[::1] u\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		hs, err := ParseHostFile(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, h := range hs {
			if h.Host == "" {
				t.Fatalf("empty host in %+v", h)
			}
			back, err := ParseHost(h.Target())
			if err != nil || back != h {
				if strings.ContainsAny(h.User, "@") {
					continue // "host user" form lets a user contain '@'
				}
				t.Fatalf("ParseHost(%q) = %+v, %v; want %+v", h.Target(), back, err, h)
			}
		}
	})
}
