package parallel

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Jobs is GNU parallel's -j: how many jobs a host whose -S entry has no
// "N/" runs at once, as a fixed count or relative to the host's CPU count.
// The zero value means the CPU count.
type Jobs struct {
	// Count, when positive, is the slot count whatever the CPUs.
	Count int
	// Percent, when positive, takes this share of the CPUs (-j 200%);
	// zero means 100%.
	Percent float64
	// Add is added to that (-j +2, -j -1).
	Add int
}

// ParseJobs parses a -j value: N, N%, +N or -N. Zero jobs (GNU parallel's
// "as many as possible") and procfiles are refused with a message that
// says what to give instead.
func ParseJobs(s string) (Jobs, error) {
	bad := func(why string) (Jobs, error) {
		return Jobs{}, fmt.Errorf("drove: -j %q: %s", s, why)
	}
	const forms = "give N, N% (of each host's CPUs), +N or -N (CPUs plus or minus N)"
	switch {
	case s == "":
		return bad("empty; " + forms)
	case strings.HasSuffix(s, "%"):
		p, err := strconv.ParseFloat(s[:len(s)-1], 64)
		if err != nil || p < 0 || strings.ContainsAny(s, "eExXpP_") || s[0] == '+' || s[0] == '-' {
			return bad("not a percentage; " + forms)
		}
		if p == 0 {
			return bad("no job could run; " + forms)
		}
		return Jobs{Percent: p}, nil
	case s[0] == '+' || s[0] == '-':
		n, err := strconv.Atoi(s[1:])
		if err != nil || n < 0 || s[1] == '+' || s[1] == '-' {
			return bad("not a number of CPUs to add or take away; " + forms)
		}
		if s[0] == '-' {
			n = -n
		}
		return Jobs{Add: n}, nil
	}
	n, err := strconv.Atoi(s)
	switch {
	case err != nil:
		return bad("not a job count (a -j procfile is not supported either); " + forms)
	case n == 0:
		return bad("GNU parallel's \"as many jobs as possible\" is not supported; give a count (say -j 64) or N/ in -S")
	case n < 0:
		return bad(forms)
	}
	return Jobs{Count: n}, nil
}

// Fixed returns the slot count when it does not depend on the CPUs, or 0.
func (j Jobs) Fixed() int { return j.Count }

// Slots returns the slot count on a host with cpus CPUs: at least one, as
// a host that is asked to leave all its CPUs free still runs jobs.
func (j Jobs) Slots(cpus int) int {
	if j.Count > 0 {
		return j.Count
	}
	n := cpus
	if j.Percent > 0 {
		n = int(float64(cpus) * j.Percent / 100)
	}
	return max(1, n+j.Add)
}

// String returns the -j value j was parsed from (in a canonical form).
func (j Jobs) String() string {
	switch {
	case j.Count > 0:
		return strconv.Itoa(j.Count)
	case j.Percent > 0:
		return strconv.FormatFloat(j.Percent, 'f', -1, 64) + "%"
	case j.Add > 0:
		return "+" + strconv.Itoa(j.Add)
	case j.Add < 0:
		return strconv.Itoa(j.Add)
	}
	return "100%"
}

// Separators of input sources on the command line.
const (
	sepArgs        = ":::"
	sepArgsLinked  = ":::+"
	sepFiles       = "::::"
	sepFilesLinked = "::::+"
)

// InputArg is one input source as the command line gives it: arguments
// after ::: or :::+, or file names after :::: or ::::+.
type InputArg struct {
	// Files is true for :::: and ::::+: Values are file names ("-" is
	// standard input), each a source of its own.
	Files bool
	// Linked is true for :::+ and ::::+: the source is linked to the one
	// before it (its n-th value goes with the n-th value of that one)
	// instead of combined with it.
	Linked bool
	// Values are the arguments, or the file names.
	Values []string
}

func isSep(s string) bool {
	switch s {
	case sepArgs, sepArgsLinked, sepFiles, sepFilesLinked:
		return true
	}
	return false
}

// SplitArgs separates a drove run command line (what follows its flags)
// into the command template's words and the input sources: ::: ARG…,
// :::+ ARG…, :::: FILE…, ::::+ FILE…, as GNU parallel does.
func SplitArgs(args []string) (template []string, inputs []InputArg) {
	i := 0
	for i < len(args) && !isSep(args[i]) {
		i++
	}
	template = args[:i]
	for i < len(args) {
		sep := args[i]
		i++
		start := i
		for i < len(args) && !isSep(args[i]) {
			i++
		}
		inputs = append(inputs, InputArg{
			Files:  sep == sepFiles || sep == sepFilesLinked,
			Linked: strings.HasSuffix(sep, "+"),
			Values: append([]string{}, args[start:i]...),
		})
	}
	return template, inputs
}

// perlExpr matches GNU parallel's {= perl expression =} and positional
// {N= … =} replacement strings.
var perlExpr = regexp.MustCompile(`\{-?[0-9]*=.*=\}`)

// CheckTemplate returns an error for GNU parallel replacement strings that
// drove cannot honour, so that a command line written for GNU parallel
// fails rather than runs different commands: {= perl =}, which needs
// Perl. what names the template in the message ("the command",
// "--return").
func CheckTemplate(what, tmpl string) error {
	if m := perlExpr.FindString(tmpl); m != "" {
		return fmt.Errorf("drove: run: %s in %s: {= perl expression =} replacement strings are not supported (drove runs no Perl); "+
			"use {.} {/} {//} {/.} for the usual cases, or let the shell do it, e.g. \"$(echo {} | sed 's/a/b/')\"", m, what)
	}
	return nil
}

// ParseColsep compiles a --colsep regular expression. It is Go's syntax
// (RE2), which is Perl's for everything but look-around and
// back-references.
func ParseColsep(s string) (*regexp.Regexp, error) {
	if s == "" {
		return nil, errors.New("drove: --colsep: empty separator")
	}
	re, err := regexp.Compile(s)
	if err != nil {
		return nil, fmt.Errorf("drove: --colsep %q: %w (Go regular expressions have no look-around or back-references)", s, err)
	}
	return re, nil
}

// CheckEnvName returns an error for a --env name drove cannot pass on;
// function tells whether this process has a Bash function of that name
// exported (and no variable).
func CheckEnvName(name string, function bool) error {
	switch {
	case name == "_":
		return errors.New("drove: --env _ (every variable not in ~/.parallel/ignored_vars) is not supported; name each variable: --env NAME")
	case !envName.MatchString(name):
		return fmt.Errorf("drove: --env %q: not a variable name", name)
	case function:
		return fmt.Errorf("drove: --env %s: Bash functions are not passed to jobs (the remote shell may not be Bash); put the function in a script and transfer it with --basefile", name)
	}
	return nil
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
