package parallel

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/sched"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

func TestParseJobs(t *testing.T) {
	tests := []struct {
		in    string
		want  Jobs
		slots [3]int // on hosts of 1, 4 and 16 CPUs
		err   string // the whole message, when it is an error
	}{
		{in: "4", want: Jobs{Count: 4}, slots: [3]int{4, 4, 4}},
		{in: "200%", want: Jobs{Percent: 200}, slots: [3]int{2, 8, 32}},
		{in: "50%", want: Jobs{Percent: 50}, slots: [3]int{1, 2, 8}},
		{in: "50.5%", want: Jobs{Percent: 50.5}, slots: [3]int{1, 2, 8}},
		{in: "+2", want: Jobs{Add: 2}, slots: [3]int{3, 6, 18}},
		{in: "-1", want: Jobs{Add: -1}, slots: [3]int{1, 3, 15}},
		{in: "-8", want: Jobs{Add: -8}, slots: [3]int{1, 1, 8}},
		{in: "+0", want: Jobs{}, slots: [3]int{1, 4, 16}},
		{in: "200%x", err: `drove: -j "200%x": not a job count (a -j procfile is not supported either); give N, N% (of each host's CPUs), +N or -N (CPUs plus or minus N)`},
		{in: "x%", err: `drove: -j "x%": not a percentage; give N, N% (of each host's CPUs), +N or -N (CPUs plus or minus N)`},
		{in: "1e3%", err: `drove: -j "1e3%": not a percentage; give N, N% (of each host's CPUs), +N or -N (CPUs plus or minus N)`},
		{in: "-5%", err: `drove: -j "-5%": not a percentage; give N, N% (of each host's CPUs), +N or -N (CPUs plus or minus N)`},
		{in: "0%", err: `drove: -j "0%": no job could run; give N, N% (of each host's CPUs), +N or -N (CPUs plus or minus N)`},
		{in: "0", err: `drove: -j "0": GNU parallel's "as many jobs as possible" is not supported; give a count (say -j 64) or N/ in -S`},
		{in: "+", err: `drove: -j "+": not a number of CPUs to add or take away; give N, N% (of each host's CPUs), +N or -N (CPUs plus or minus N)`},
		{in: "--1", err: `drove: -j "--1": not a number of CPUs to add or take away; give N, N% (of each host's CPUs), +N or -N (CPUs plus or minus N)`},
		{in: "+x", err: `drove: -j "+x": not a number of CPUs to add or take away; give N, N% (of each host's CPUs), +N or -N (CPUs plus or minus N)`},
		{in: "1.5", err: `drove: -j "1.5": not a job count (a -j procfile is not supported either); give N, N% (of each host's CPUs), +N or -N (CPUs plus or minus N)`},
		{in: "procfile", err: `drove: -j "procfile": not a job count (a -j procfile is not supported either); give N, N% (of each host's CPUs), +N or -N (CPUs plus or minus N)`},
		{in: "", err: `drove: -j "": empty; give N, N% (of each host's CPUs), +N or -N (CPUs plus or minus N)`},
	}
	for _, tt := range tests {
		got, err := ParseJobs(tt.in)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("ParseJobs(%q) error\n got %v\nwant %s", tt.in, err, tt.err)
			}
			if err != nil && strings.Contains(err.Error(), "strconv") {
				t.Errorf("ParseJobs(%q): raw strconv error: %v", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseJobs(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			continue
		}
		for i, cpus := range []int{1, 4, 16} {
			if n := got.Slots(cpus); n != tt.slots[i] {
				t.Errorf("-j %s on %d CPUs: %d slots, want %d", tt.in, cpus, n, tt.slots[i])
			}
		}
	}
	if (Jobs{}).Slots(6) != 6 || (Jobs{}).Fixed() != 0 {
		t.Error("the zero Jobs is the CPU count")
	}
}

func TestSplitArgs(t *testing.T) {
	tests := []struct {
		args   string
		tmpl   string
		inputs []InputArg
	}{
		{"echo {}", "echo {}", nil},
		{"echo ::: a b ::: 1", "echo", []InputArg{{Values: []string{"a", "b"}}, {Values: []string{"1"}}}},
		{"echo ::: a b :::+ 1 2", "echo", []InputArg{{Values: []string{"a", "b"}}, {Linked: true, Values: []string{"1", "2"}}}},
		{":::: f ::::+ g h", "", []InputArg{{Files: true, Values: []string{"f"}}, {Files: true, Linked: true, Values: []string{"g", "h"}}}},
		{"cmd a :::", "cmd a", []InputArg{{Values: []string{}}}},
		{"echo :::++ x", "echo :::++ x", nil},
	}
	for _, tt := range tests {
		tmpl, ins := SplitArgs(strings.Fields(tt.args))
		if strings.Join(tmpl, " ") != tt.tmpl || !reflect.DeepEqual(ins, tt.inputs) {
			t.Errorf("SplitArgs(%q) = %q, %+v; want %q, %+v", tt.args, tmpl, ins, tt.tmpl, tt.inputs)
		}
	}
}

func TestCheckTemplate(t *testing.T) {
	for _, bad := range []string{"echo {=s/a/b/=}", "echo {= $_ .= 'x' =}", "mv {} {1= s/x/y/ =}", "x{=uc=}y"} {
		err := CheckTemplate("the command", bad)
		if err == nil {
			t.Errorf("CheckTemplate(%q) accepted", bad)
			continue
		}
		if !strings.Contains(err.Error(), "not supported") || !strings.Contains(err.Error(), "sed") {
			t.Errorf("CheckTemplate(%q) = %v: names no alternative", bad, err)
		}
	}
	for _, ok := range []string{"echo {}", "a=b; echo ${a} {=", "test $x == y", "echo {#}= =}"} {
		if err := CheckTemplate("the command", ok); err != nil {
			t.Errorf("CheckTemplate(%q) = %v", ok, err)
		}
	}
	want := `drove: run: {=s/a/b/=} in the command: {= perl expression =} replacement strings are not supported (drove runs no Perl); ` +
		`use {.} {/} {//} {/.} for the usual cases, or let the shell do it, e.g. "$(echo {} | sed 's/a/b/')"`
	if err := CheckTemplate("the command", "echo {=s/a/b/=}"); err == nil || err.Error() != want {
		t.Errorf("message\n got %v\nwant %s", err, want)
	}
}

// TestUnsupportedFlags compares every message with
// testdata/unsupported_flags.golden (go test -run TestUnsupportedFlags
// -update rewrites it).
func TestUnsupportedFlags(t *testing.T) {
	var b strings.Builder
	for _, f := range UnsupportedFlags() {
		msg, ok := UnsupportedFlag(f)
		if !ok || !strings.Contains(msg, f) {
			t.Errorf("%s: %q, %v", f, msg, ok)
		}
		b.WriteString(msg + "\n")
	}
	for _, f := range []string{"--pipe", "--semaphore", "--sqlmaster", "--tmux", "-X", "-m", "--files", "--ssh", "--plus", "-u"} {
		if _, ok := UnsupportedFlag(f); !ok {
			t.Errorf("%s is not in the table", f)
		}
	}
	if msg, ok := UnsupportedFlag("--eof=EOF"); !ok || !strings.Contains(msg, "--eof ") {
		t.Errorf("--eof=EOF: %q", msg)
	}
	for _, f := range []string{"--jobs", "--colsep", "--nosuch", "-j"} {
		if msg, ok := UnsupportedFlag(f); ok {
			t.Errorf("%s: %q", f, msg)
		}
	}
	golden := filepath.Join("testdata", "unsupported_flags.golden")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("messages differ from %s (run with -update after checking them):\n%s", golden, b.String())
	}
}

// TestInputs: how sources combine, link, split into columns and group
// into jobs, as GNU parallel does (the same cases run side by side with
// it in cmd/drove).
func TestInputs(t *testing.T) {
	src := func(vals ...string) Source { return Source{Args: vals} }
	linked := func(vals ...string) Source { return Source{Args: vals, Linked: true} }
	tests := []struct {
		name string
		cfg  Config
		want string // jobs separated by "|", arguments by ","
	}{
		{"one source", Config{Sources: []Source{src("a", "b")}}, "a|b"},
		{"product", Config{Sources: []Source{src("a", "b"), src("1", "2")}}, "a,1|a,2|b,1|b,2"},
		{"linked", Config{Sources: []Source{src("a", "b", "c"), linked("1", "2", "3")}}, "a,1|b,2|c,3"},
		{"linked cut to the shorter", Config{Sources: []Source{src("a", "b", "c"), linked("1", "2")}}, "a,1|b,2"},
		{"linked three", Config{Sources: []Source{src("a", "b", "c"), linked("1", "2"), linked("x", "y", "z")}}, "a,1,x|b,2,y"},
		{"product then linked", Config{Sources: []Source{src("x", "y"), src("a", "b"), linked("1", "2")}}, "x,a,1|x,b,2|y,a,1|y,b,2"},
		{"first linked is plain", Config{Sources: []Source{linked("a", "b")}}, "a|b"},
		{"--link wraps", Config{Link: true, Sources: []Source{src("a", "b", "c"), src("1", "2"), src("x")}}, "a,1,x|b,2,x|c,1,x"},
		{"empty source", Config{Sources: []Source{src("a"), src()}}, ""},
		{"-N2", Config{MaxArgs: 2, Sources: []Source{src("a", "b", "c", "d", "e")}}, "a,b|c,d|e"},
		{"-N2 product", Config{MaxArgs: 2, Sources: []Source{src("a", "b"), src("1", "2")}}, "a,1,a,2|b,1,b,2"},
		{"-N0", Config{NoArgs: true, Sources: []Source{src("a", "b", "c")}}, "||"},
		{"colsep", Config{Colsep: regexp.MustCompile(","), Sources: []Source{src("a,b", "c,d,e", "f")}}, "a,b|c,d,e|f"},
		{"colsep -N2", Config{MaxArgs: 2, Colsep: regexp.MustCompile(`\s+`), Sources: []Source{src("a  b", "c\td", "e")}}, "a,b,c,d|e"},
		{"stream -N2", Config{MaxArgs: 2, Sources: []Source{{Lines: strings.NewReader("1\n2\n3\n")}}}, "1,2|3"},
		{"lines linked", Config{Sources: []Source{{Lines: strings.NewReader("1\n2\n")}, {Lines: strings.NewReader("x\ny\n"), Linked: true}}}, "1,x|2,y"},
	}
	for _, tt := range tests {
		in, err := newInputs(&tt.cfg)
		if err != nil {
			t.Fatal(err)
		}
		var jobs []string
		for {
			args, ok, err := in.next()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			jobs = append(jobs, strings.Join(args, ","))
		}
		if got := strings.Join(jobs, "|"); got != tt.want {
			t.Errorf("%s: jobs %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestRenderFromEnd(t *testing.T) {
	tests := []struct{ tmpl, want string }{
		{"{-1}", "c.y"},
		{"{-2.}", "b"},
		{"{-3/}", "a"},
		{"{-4}", ""},
		{"{-0}", "{-0}"},
		{"{-}", "{-}"},
		{"{-01}", "{-01}"},
	}
	for _, tt := range tests {
		if got := render(tt.tmpl, []string{"a", "b.x", "c.y"}, 1, 1, true); got != tt.want {
			t.Errorf("render(%q) = %q, want %q", tt.tmpl, got, tt.want)
		}
	}
}

func TestProgressHosts(t *testing.T) {
	got := hostsText([]sched.NodeStats{
		{Name: ":", Busy: 1, Jobs: 2, Time: 3 * time.Second},
		{Name: "alice@h1:2222", Busy: 2, Jobs: 0},
		{Name: "h2"},
	})
	if want := "local:1/2/60%/1.5s alice@h1:2222:2/0/40%/0.0s h2:0/0/0%/0.0s"; got != want {
		t.Errorf("--progress line\n got %q\nwant %q", got, want)
	}
}
