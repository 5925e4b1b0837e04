package parallel

import (
	"path"
	"strconv"
	"strings"

	"github.com/drove-dev/drove/internal/sshconn"
)

// Replacement strings are GNU parallel's:
//
//	{}    the input (all of a job's arguments, space separated)
//	{.}   the input without its extension
//	{/}   the basename of the input
//	{//}  the directory of the input ("." if none)
//	{/.}  the basename without its extension
//	{#}   the job's sequence number, from 1
//	{%}   the job slot the job runs in, from 1
//	{n}, {n.}, {n/}, {n//}, {n/.}  the same for the n-th argument: of the
//	      n-th input source, or with -N or --colsep, the n-th of the job's
//	      values or columns
//	{-n}, {-n.}, …  the same, counting from the last argument
//
// Arguments are shell-quoted when substituted into a command template, so
// an input reaches the command as one word whatever its bytes; {#} and {%}
// are numbers. A template with no replacement string gets " {}" appended.

// hasReplacement reports whether tmpl contains a replacement string.
func hasReplacement(tmpl string) bool {
	found := false
	expand(tmpl, func(string) (string, bool) { found = true; return "", true })
	return found
}

// expand replaces every replacement string in tmpl by f's value for its
// inner text ("", ".", "/", "//", "/.", "#", "%", "1", "2.", …); f reports
// false for text that is not a replacement string, which stays as is.
func expand(tmpl string, f func(inner string) (string, bool)) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(tmpl, '{')
		if i < 0 {
			b.WriteString(tmpl)
			return b.String()
		}
		j := strings.IndexByte(tmpl[i:], '}')
		if j < 0 {
			b.WriteString(tmpl)
			return b.String()
		}
		inner := tmpl[i+1 : i+j]
		if isReplacement(inner) {
			if v, ok := f(inner); ok {
				b.WriteString(tmpl[:i])
				b.WriteString(v)
				tmpl = tmpl[i+j+1:]
				continue
			}
		}
		b.WriteString(tmpl[:i+1])
		tmpl = tmpl[i+1:]
	}
}

// isReplacement reports whether inner (the text between braces) is a
// replacement string drove knows.
func isReplacement(inner string) bool {
	switch inner {
	case "#", "%":
		return true
	}
	if strings.HasPrefix(inner, "-") {
		inner = inner[1:]
		if inner == "" || inner[0] < '1' || inner[0] > '9' {
			return false
		}
	}
	n := 0
	for n < len(inner) && inner[n] >= '0' && inner[n] <= '9' {
		n++
	}
	if n > 0 && inner[0] == '0' {
		return false
	}
	switch inner[n:] {
	case "", ".", "/", "//", "/.":
		return true
	}
	return false
}

// transform applies a {} modifier to one argument.
func transform(arg, mod string) string {
	switch mod {
	case ".":
		return noExt(arg)
	case "/":
		return path.Base(base(arg))
	case "//":
		if i := strings.LastIndexByte(arg, '/'); i > 0 {
			return arg[:i]
		} else if i == 0 {
			return "/"
		}
		return "."
	case "/.":
		return noExt(base(arg))
	}
	return arg
}

func base(arg string) string {
	if i := strings.LastIndexByte(arg, '/'); i >= 0 {
		return arg[i+1:]
	}
	return arg
}

// noExt removes the extension of the last path element, as {.} does.
func noExt(arg string) string {
	slash := strings.LastIndexByte(arg, '/')
	dot := strings.LastIndexByte(arg, '.')
	if dot > slash+1 {
		return arg[:dot]
	}
	return arg
}

// render builds a job's command from tmpl for its arguments, sequence
// number and slot. quote decides whether arguments are shell-quoted.
func render(tmpl string, args []string, seq, slot int, quote bool) string {
	q := func(s string) string {
		if quote {
			return sshconn.Quote(s)
		}
		return s
	}
	return expand(tmpl, func(inner string) (string, bool) {
		switch inner {
		case "#":
			return strconv.Itoa(seq), true
		case "%":
			return strconv.Itoa(slot), true
		}
		fromEnd := strings.HasPrefix(inner, "-")
		if fromEnd {
			inner = inner[1:]
		}
		n := 0
		for n < len(inner) && inner[n] >= '0' && inner[n] <= '9' {
			n++
		}
		mod := inner[n:]
		if n == 0 {
			parts := make([]string, len(args))
			for i, a := range args {
				parts[i] = q(transform(a, mod))
			}
			return strings.Join(parts, " "), true
		}
		k, err := strconv.Atoi(inner[:n])
		if fromEnd {
			k = len(args) + 1 - k
		}
		if err != nil || k < 1 || k > len(args) {
			return "", true // GNU parallel gives an empty string too
		}
		return q(transform(args[k-1], mod)), true
	})
}
