package hostset

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrUnknownGroup is wrapped by the error of an @group that no group file
// defines.
var ErrUnknownGroup = errors.New("drove: unknown node group")

// maxGroupDepth bounds how deeply groups may name groups, so that a group
// that names itself fails instead of recursing forever.
const maxGroupDepth = 32

// An Expander expands node sets as ClusterShell writes them, with the
// operators of ClusterShell and pdsh (see [Expander.Expand]). Its zero value
// knows no groups and reads no files, as [Expand] does. An Expander loads
// its groups once and is not safe for concurrent use.
type Expander struct {
	// Groups returns the node groups @name refers to. It is called once,
	// at the first @ met, so that group files that are broken or absent
	// matter only to node sets that use groups. Nil: @group is an error.
	Groups func() (*Groups, error)
	// ReadFile reads pdsh's "^FILE" host lists; nil: "^FILE" is an error.
	ReadFile func(name string) ([]byte, error)

	groups    *Groups
	groupsErr error
	loaded    bool
}

// NewExpander returns an Expander that reads the group files
// [DefaultGroupPaths] names and pdsh's ^FILE lists from the file system.
func NewExpander() *Expander {
	return &Expander{
		Groups:   func() (*Groups, error) { return LoadGroups(DefaultGroupPaths()) },
		ReadFile: os.ReadFile,
	}
}

// orderedSet is a set of names in the order they were first added.
type orderedSet struct {
	names []string
	has   map[string]bool
}

func newSet(names ...string) *orderedSet {
	s := &orderedSet{has: map[string]bool{}}
	for _, n := range names {
		s.add(n)
	}
	return s
}

func (s *orderedSet) add(n string) {
	if !s.has[n] {
		s.has[n] = true
		s.names = append(s.names, n)
	}
}

// apply combines s with o by the operator op, as ClusterShell's NodeSet
// update, difference_update, intersection_update and
// symmetric_difference_update do. The order of s is kept; xor appends
// o's names that s lacked, in o's order.
func (s *orderedSet) apply(op byte, o *orderedSet) {
	switch op {
	case ',':
		for _, n := range o.names {
			s.add(n)
		}
		return
	}
	keep := s.names[:0:0]
	for _, n := range s.names {
		in := o.has[n]
		if (op == '&') == in {
			keep = append(keep, n)
		}
	}
	if op == '^' {
		for _, n := range o.names {
			if !s.has[n] {
				keep = append(keep, n)
			}
		}
	}
	*s = *newSet(keep...)
}

// term is one operand of a node set and the operator before it.
type term struct {
	op      byte   // ',', '!', '&' or '^'
	text    string // trimmed
	exclude bool   // pdsh's "-item": left out of the whole result
	file    bool   // pdsh's "^FILE"
}

// scan splits a node set into its terms at the operators outside
// brackets. Whitespace around an operator is ignored; whitespace between
// two terms with no operator is a union, so that "a b" is "a,b" as pssh -H
// takes it. An empty term around ',' is skipped ("a,,b"); one around '!',
// '&' or '^' is an error, as in ClusterShell.
func scan(set string) ([]term, error) {
	var terms []term
	op := byte(',')
	var cur strings.Builder
	depth := 0
	flush := func(next byte) error {
		t := strings.TrimSpace(cur.String())
		cur.Reset()
		if t == "" {
			if op != ',' || (next != ',' && next != 0) {
				sym := op
				if sym == ',' {
					sym = next
				}
				return syntaxErr(set, "missing node set operand with '%c' operator", sym)
			}
			op = next
			return nil
		}
		tm := term{op: op, text: t}
		if op == ',' {
			whole := t
			if strings.HasPrefix(t, "-") {
				tm.exclude, t = true, strings.TrimSpace(t[1:])
			}
			if strings.HasPrefix(t, "^") {
				tm.file, t = true, strings.TrimSpace(t[1:])
			}
			tm.text = t
			if t == "" {
				return syntaxErr(set, "nothing after %q", whole)
			}
		}
		if tm.file {
			terms = append(terms, tm)
			op = next
			return nil
		}
		if strings.HasPrefix(tm.text, "-") || strings.HasPrefix(tm.text, "^") {
			return syntaxErr(set, "%q: a host name cannot start with %q", tm.text, tm.text[:1])
		}
		if strings.HasPrefix(tm.text, "/") {
			return syntaxErr(set, "%q: pdsh's /regex/ filters are not supported; use & with a node set", tm.text)
		}
		terms = append(terms, tm)
		op = next
		return nil
	}
	for i := 0; i < len(set); i++ {
		c := set[i]
		switch {
		case c == '[':
			if depth > 0 {
				return nil, syntaxErr(set, "nested '['")
			}
			depth++
		case c == ']':
			if depth == 0 {
				return nil, syntaxErr(set, "unbalanced ']'")
			}
			depth--
		case depth > 0:
		case c == ',' || c == '!' || c == '&':
			if err := flush(c); err != nil {
				return nil, err
			}
			continue
		case c == '^':
			// "^FILE" at the start of a comma item is pdsh's file;
			// elsewhere '^' is ClusterShell's xor.
			if strings.TrimSpace(cur.String()) == "" && op == ',' || strings.TrimSpace(cur.String()) == "-" && op == ',' {
				break
			}
			if err := flush(c); err != nil {
				return nil, err
			}
			continue
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			// A space ends a term; what follows decides whether it was
			// around an operator or a union.
			rest := strings.TrimLeft(set[i:], " \t\n\r")
			if strings.TrimSpace(cur.String()) == "" || rest == "" || strings.ContainsRune(",!&^", rune(rest[0])) {
				break
			}
			if err := flush(','); err != nil {
				return nil, err
			}
			i = len(set) - len(rest) - 1
			continue
		}
		cur.WriteByte(c)
	}
	if depth != 0 {
		return nil, syntaxErr(set, "unclosed '['")
	}
	if err := flush(0); err != nil {
		return nil, err
	}
	return terms, nil
}

// Expand expands a node set into names, in order of first appearance,
// without duplicates. Its grammar is ClusterShell's, with pdsh's additions:
//
//   - "node[01-10,15]", "rack[1-2]-n[1-4]": bracket ranges, as [Expand].
//   - "a,b": union; "a!b": difference; "a&b": intersection; "a^b":
//     symmetric difference (xor). The operators have no precedence: they
//     apply from left to right, as in ClusterShell ("a,b&c" is "(a,b)&c").
//     Whitespace around an operator is ignored; whitespace between two
//     names is a union.
//   - "@group", "@source:group", "@source:*" (every node of the source),
//     "@rack[1-2]" (groups rack1 and rack2): node groups (see [Groups]).
//   - "-item" after a comma or at the start (pdsh): item is left out of the
//     whole result, wherever it appears; "^FILE" (pdsh): the node sets in
//     FILE, one or more per line, # starting a comment; "-^FILE" leaves
//     them out.
//
// A name left out by "-item" that has no user and no port leaves out every
// entry with that host, whatever its user and port ("admin@n[1-3],-n2").
func (x *Expander) Expand(set string) ([]string, error) {
	names, excl, err := x.expand(set, "", 0)
	if err != nil {
		return nil, err
	}
	return excludeNames(names, excl), nil
}

// expand evaluates set, naming groups without a source in source, and
// returns the names and the names pdsh's "-item"s leave out.
func (x *Expander) expand(set, source string, depth int) ([]string, []string, error) {
	terms, err := scan(set)
	if err != nil {
		return nil, nil, err
	}
	acc := newSet()
	var excl []string
	for _, t := range terms {
		names, sub, err := x.operand(set, t, source, depth)
		if err != nil {
			return nil, nil, err
		}
		excl = append(excl, sub...)
		if t.exclude {
			excl = append(excl, names...)
			continue
		}
		acc.apply(t.op, newSet(names...))
		if len(acc.names) > MaxNodes {
			return nil, nil, syntaxErr(set, "expands to more than %d names", MaxNodes)
		}
	}
	return acc.names, excl, nil
}

// operand expands one term.
func (x *Expander) operand(set string, t term, source string, depth int) ([]string, []string, error) {
	switch {
	case t.file:
		return x.file(t.text, depth)
	case strings.HasPrefix(t.text, "@"):
		return x.group(set, t.text[1:], source, depth)
	}
	names, err := expandOne(set, t.text, MaxNodes)
	return names, nil, err
}

// file reads pdsh's ^FILE: node sets, whitespace-separated, # comments.
func (x *Expander) file(name string, depth int) ([]string, []string, error) {
	if x.ReadFile == nil {
		return nil, nil, syntaxErr("^"+name, "host files (^FILE) are not read here")
	}
	if depth > maxGroupDepth {
		return nil, nil, syntaxErr("^"+name, "files and groups nested more than %d deep", maxGroupDepth)
	}
	data, err := x.ReadFile(name)
	if err != nil {
		return nil, nil, fmt.Errorf("drove: host file: %w", err)
	}
	acc := newSet()
	var excl []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for line := 1; sc.Scan(); line++ {
		l := sc.Text()
		if i := strings.IndexByte(l, '#'); i >= 0 {
			l = l[:i]
		}
		if strings.TrimSpace(l) == "" {
			continue
		}
		names, sub, err := x.expand(l, "", depth+1)
		if err != nil {
			return nil, nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		acc.apply(',', newSet(names...))
		excl = append(excl, sub...)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("drove: host file %s: %w", name, err)
	}
	return acc.names, excl, nil
}

// group expands "@[source:]name" where name may hold bracket ranges.
func (x *Expander) group(set, ref, source string, depth int) ([]string, []string, error) {
	if !x.loaded {
		x.loaded = true
		if x.Groups == nil {
			x.groupsErr = syntaxErr(set, "node groups (@group) are not available here")
		} else {
			x.groups, x.groupsErr = x.Groups()
		}
	}
	if x.groupsErr != nil {
		return nil, nil, x.groupsErr
	}
	if depth > maxGroupDepth {
		return nil, nil, fmt.Errorf("%w: @%s: groups nested more than %d deep (does a group name itself?)", ErrSyntax, ref, maxGroupDepth)
	}
	if s, name, ok := strings.Cut(ref, ":"); ok {
		source, ref = s, name
		if source == "" {
			return nil, nil, syntaxErr(set, "empty group source in %q", "@"+s+":"+name)
		}
	}
	if ref == "" {
		return nil, nil, syntaxErr(set, "empty group name")
	}
	acc := newSet()
	var excl []string
	var names []string
	if ref == "*" {
		names = []string{"*"}
	} else {
		var err error
		if names, err = expandOne(set, ref, MaxNodes); err != nil {
			return nil, nil, err
		}
	}
	for _, name := range names {
		val, src, err := x.groups.lookup(source, name)
		if err != nil {
			return nil, nil, err
		}
		got, sub, err := x.expand(val, src, depth+1)
		if err != nil {
			return nil, nil, fmt.Errorf("group @%s:%s: %w", src, name, err)
		}
		acc.apply(',', newSet(got...))
		excl = append(excl, sub...)
	}
	return acc.names, excl, nil
}

// excludeNames returns names without those excl matches (see
// [Expander.Expand]).
func excludeNames(names, excl []string) []string {
	if len(excl) == 0 {
		return names
	}
	exact := map[string]bool{}
	host := map[string]bool{}
	for _, e := range excl {
		exact[e] = true
		if h, err := ParseHost(e); err == nil && h.User == "" && h.Port == "" {
			host[h.Host] = true
		}
	}
	out := names[:0:0]
	for _, n := range names {
		if exact[n] {
			continue
		}
		if h, err := ParseHost(n); err == nil && host[h.Host] {
			continue
		}
		out = append(out, n)
	}
	return out
}
