// Package hostset parses the host lists of the tools drove imitates:
// ClusterShell node sets ("node[01-10,15]", "rack[1-2]-n[1-4]", comma
// lists, the operators ! & ^, @groups from ClusterShell's and drove's group
// files) with pdsh's additions ("-name", "^FILE"), GNU parallel's -S "[N/]login[,…]" arguments and --slf files (":"
// is this machine), and pssh host files ("[user@]host[:port] [user]" lines
// with # comments). It also folds host names back into node sets for
// headers such as clush -b's.
//
// Expansion is bounded by [MaxNodes] so that a typo like "n[1-999999999]"
// fails instead of exhausting memory.
package hostset

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// MaxNodes bounds how many names one pattern may expand to.
const MaxNodes = 1 << 20

// ErrSyntax is wrapped by every parse error, so callers can test for a
// malformed pattern with errors.Is.
var ErrSyntax = errors.New("drove: node set syntax error")

func syntaxErr(pattern, format string, args ...any) error {
	return fmt.Errorf("%w in %q: %s", ErrSyntax, pattern, fmt.Sprintf(format, args...))
}

// Expand expands a ClusterShell node set into host names, in order, without
// duplicates. Within brackets, commas separate ranges, "a-b" is an
// inclusive range, "a-b/s" a range with step s, and a leading zero fixes
// the width ("[01-10]" gives "01" … "10"). Several bracket groups in one
// pattern give their Cartesian product, the last group varying fastest. A
// bracket group containing ':' is an IPv6 address, as in
// "user@[::1]:2222", and stays as written. Patterns combine with the
// operators ',' (union), '!' (difference), '&' (intersection) and '^'
// (xor), from left to right, and pdsh's "-name" leaves a name out (see
// [Expander.Expand]; Expand knows no groups and reads no files). An empty
// set expands to no names.
func Expand(set string) ([]string, error) {
	var x Expander
	return x.Expand(set)
}

// splitTop splits s at commas outside brackets and checks bracket balance.
func splitTop(s string) ([]string, error) {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			if depth > 0 {
				return nil, syntaxErr(s, "nested '['")
			}
			depth++
		case ']':
			if depth == 0 {
				return nil, syntaxErr(s, "unbalanced ']'")
			}
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	if depth != 0 {
		return nil, syntaxErr(s, "unclosed '['")
	}
	return append(parts, s[start:]), nil
}

// expandOne expands one pattern without top-level commas into at most limit
// names.
func expandOne(whole, p string, limit int) ([]string, error) {
	// Literal pieces and range lists alternate: lit0 [r0] lit1 [r1] … litN.
	var lits []string
	var ranges [][]string
	lit := ""
	for {
		i := strings.IndexByte(p, '[')
		if i < 0 {
			lits = append(lits, lit+p)
			break
		}
		j := strings.IndexByte(p[i:], ']') + i
		if strings.Contains(p[i+1:j], ":") {
			// An IPv6 literal ("[::1]:22"): ranges never contain ':'.
			lit += p[:j+1]
			p = p[j+1:]
			continue
		}
		lits = append(lits, lit+p[:i])
		lit = ""
		r, err := expandRanges(whole, p[i+1:j], limit)
		if err != nil {
			return nil, err
		}
		ranges = append(ranges, r)
		p = p[j+1:]
	}
	total := 1
	for _, r := range ranges {
		total *= len(r)
		if total > limit {
			return nil, syntaxErr(whole, "expands to more than %d names", MaxNodes)
		}
	}
	out := make([]string, 0, total)
	idx := make([]int, len(ranges))
	var b strings.Builder
	for {
		b.Reset()
		for k, lit := range lits {
			b.WriteString(lit)
			if k < len(ranges) {
				b.WriteString(ranges[k][idx[k]])
			}
		}
		out = append(out, b.String())
		k := len(idx) - 1
		for ; k >= 0; k-- {
			idx[k]++
			if idx[k] < len(ranges[k]) {
				break
			}
			idx[k] = 0
		}
		if k < 0 {
			return out, nil
		}
	}
}

// expandRanges expands the inside of one bracket group: "1-3,07,10-20/5".
func expandRanges(whole, inner string, limit int) ([]string, error) {
	if strings.TrimSpace(inner) == "" {
		return nil, syntaxErr(whole, "empty range")
	}
	var out []string
	for _, r := range strings.Split(inner, ",") {
		r = strings.TrimSpace(r)
		step := 1
		if i := strings.IndexByte(r, '/'); i >= 0 {
			s, err := strconv.Atoi(r[i+1:])
			if err != nil || s < 1 {
				return nil, syntaxErr(whole, "bad step in %q", r)
			}
			step = s
			r = r[:i]
		}
		lo, hi, ok := strings.Cut(r, "-")
		if !ok {
			hi = lo
		}
		if !isDigits(lo) || !isDigits(hi) {
			return nil, syntaxErr(whole, "bad range %q", r)
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil || a > b {
			return nil, syntaxErr(whole, "bad range %q", r)
		}
		if (b-a)/step+1 > limit-len(out) {
			return nil, syntaxErr(whole, "expands to more than %d names", MaxNodes)
		}
		// A leading zero on either bound pads every number to that width,
		// as ClusterShell does: [01-10] is 01 … 10, [1-10] is 1 … 10.
		width := 0
		if len(lo) > 1 && lo[0] == '0' {
			width = len(lo)
		} else if len(hi) > 1 && hi[0] == '0' {
			width = len(hi)
		}
		for n := a; n <= b; n += step {
			s := strconv.Itoa(n)
			if len(s) < width {
				s = strings.Repeat("0", width-len(s)) + s
			}
			out = append(out, s)
		}
	}
	return out, nil
}

func isDigits(s string) bool {
	if s == "" || len(s) > 9 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Fold is the inverse of Expand: it writes names as a compact node set,
// grouping names that differ only in their last number ("n1", "n2", "n3",
// "x" → "n[1-3],x"). Numbers keep their width, so "n01" and "n1" do not
// merge. The result is sorted and expands back to the same set of names.
// It runs in O(n log n), so sets of names that do not fold stay cheap.
func Fold(names []string) string {
	type key struct {
		prefix, suffix string
		width          int // 0: no padding; else the fixed digit count
	}
	groups := map[key][]int{}
	var keys []key
	var plain []string
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		pre, num, suf, ok := lastNumber(n)
		if !ok {
			plain = append(plain, n)
			continue
		}
		k := key{prefix: pre, suffix: suf}
		if len(num) > 1 && num[0] == '0' {
			k.width = len(num)
		}
		v, err := strconv.Atoi(num)
		if err != nil {
			plain = append(plain, n)
			continue
		}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], v)
	}
	var parts []string
	for _, k := range keys {
		nums := groups[k]
		sort.Ints(nums)
		if len(nums) == 1 && k.width == 0 {
			parts = append(parts, k.prefix+strconv.Itoa(nums[0])+k.suffix)
			continue
		}
		format := func(v int) string {
			s := strconv.Itoa(v)
			if len(s) < k.width {
				s = strings.Repeat("0", k.width-len(s)) + s
			}
			return s
		}
		var rs []string
		for i := 0; i < len(nums); {
			j := i
			for j+1 < len(nums) && nums[j+1] == nums[j]+1 {
				j++
			}
			if i == j {
				rs = append(rs, format(nums[i]))
			} else {
				rs = append(rs, format(nums[i])+"-"+format(nums[j]))
			}
			i = j + 1
		}
		if len(nums) == 1 {
			// A padded single number may be written bare: "n01".
			parts = append(parts, k.prefix+rs[0]+k.suffix)
			continue
		}
		parts = append(parts, k.prefix+"["+strings.Join(rs, ",")+"]"+k.suffix)
	}
	parts = append(parts, plain...)
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// lastNumber splits s around its last run of digits. Names containing
// characters that Expand treats specially are never folded.
func lastNumber(s string) (prefix, num, suffix string, ok bool) {
	if strings.ContainsAny(s, "[],") {
		return "", "", "", false
	}
	end := -1
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] >= '0' && s[i] <= '9' {
			end = i + 1
			break
		}
	}
	if end < 0 {
		return "", "", "", false
	}
	start := end - 1
	for start > 0 && s[start-1] >= '0' && s[start-1] <= '9' {
		start--
	}
	if end-start > 9 {
		return "", "", "", false
	}
	return s[:start], s[start:end], s[end:], true
}
