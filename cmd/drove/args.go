package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// splitArgs splits s into words as a POSIX shell would, without expansion:
// whitespace separates words, single quotes keep everything literally,
// double quotes keep all but \" \\ \$ \`, and a backslash escapes the next
// character.
func splitArgs(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		inArg bool
	)
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\n':
			if inArg {
				words = append(words, cur.String())
				cur.Reset()
				inArg = false
			}
		case ch == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inArg = true
		case ch == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unterminated double quote")
			}
			inArg = true
		case ch == '\\':
			if i+1 >= len(s) {
				return nil, errors.New("trailing backslash")
			}
			i++
			cur.WriteByte(s[i])
			inArg = true
		default:
			cur.WriteByte(ch)
			inArg = true
		}
	}
	if inArg {
		words = append(words, cur.String())
	}
	return words, nil
}

// parseDuration accepts Go durations ("1m30s") and bare seconds ("90",
// "1.5"), as GNU parallel's --timeout does.
func parseDuration(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f < 0 {
			return 0, errors.New("must not be negative")
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err == nil && d < 0 {
		return 0, errors.New("must not be negative")
	}
	return d, err
}

// durationValue is a flag of parseDuration's forms: a Go duration or bare
// seconds.
type durationValue struct{ d *time.Duration }

func (v durationValue) String() string {
	if v.d == nil || *v.d == 0 {
		return ""
	}
	return v.d.String()
}

func (v durationValue) Set(s string) error {
	d, err := parseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (90, 1.5, 2m, 1h30m): %w", s, err)
	}
	*v.d = d
	return nil
}

func (durationValue) Type() string { return "duration" }
