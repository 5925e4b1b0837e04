package sshconn

import "strings"

// Quote returns s as a single POSIX shell word. A string made only of
// characters no shell treats specially (letters, digits, and / . _ - , : + @ %,
// not starting with - or ~) is returned as is; any other is wrapped in single
// quotes, each embedded single quote written as '\”. Inside single quotes a POSIX
// shell treats every byte literally (newlines, $, `, \, ;, and bytes that are
// not UTF-8 included), so the remote shell sees exactly s. The empty string
// becomes ”.
//
// A NUL byte cannot be passed through a shell; callers must reject it (see
// [CheckArg]).
func Quote(s string) string {
	if s != "" && isSafe(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Join quotes each argument with [Quote] and joins them with spaces, giving
// a command line that runs args[0] with exactly args[1:] as its arguments.
func Join(args ...string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = Quote(a)
	}
	return strings.Join(q, " ")
}

// CheckArg reports an error if s contains a NUL byte, which no command line
// can carry.
func CheckArg(s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return errNUL
	}
	return nil
}

// isSafe reports whether s needs no quoting: only characters that no shell
// treats specially, and not starting with '-' so that it reads the same to
// a reader scanning for options, nor with '~' or containing '=' before a
// command name.
func isSafe(s string) bool {
	if s[0] == '-' || s[0] == '~' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '/' || c == '.' || c == '_' || c == '-' || c == ',' || c == ':' || c == '+' || c == '@' || c == '%':
		default:
			return false
		}
	}
	return true
}
