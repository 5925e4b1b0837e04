package hostset

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Local is the GNU parallel login that means this machine.
const Local = ":"

// Login is one host of a work queue: GNU parallel's "[N/]login", where
// login is "[user@]host[:port]", an ssh_config alias, or ":" for this
// machine.
type Login struct {
	Host  string // as written, with user and port; ":" for this machine
	Slots int    // the "N/" prefix; 0 means "as many as the host has CPUs"
}

// IsLocal reports whether l is this machine.
func (l Login) IsLocal() bool { return l.Host == Local }

// ParseLogins parses a -S argument: comma-separated "[N/]login" entries,
// each login possibly a node set ("4/user@node[01-10]"). Entries expand in
// order; a host listed twice is kept once, with the later slot count.
// Within a login, a node set may use the operators "!", "&" and "^"
// (ParseLogins knows no groups: see [Expander.ParseLogins]).
func ParseLogins(arg string) ([]Login, error) {
	var x Expander
	return x.ParseLogins(arg)
}

// ParseLogins is [ParseLogins] with x's groups: "4/@compute". pdsh's
// "-name" is refused (drove run has --exclude), and so is "^FILE" (--slf
// reads a file of logins).
func (x *Expander) ParseLogins(arg string) ([]Login, error) {
	parts, err := splitTop(arg)
	if err != nil {
		return nil, err
	}
	var out []Login
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		slots := 0
		if i := strings.IndexByte(p, '/'); i >= 0 && !strings.Contains(p[:i], "[") {
			n, err := strconv.Atoi(strings.TrimSpace(p[:i]))
			if err != nil || n < 1 {
				return nil, syntaxErr(arg, "bad slot count in %q", p)
			}
			slots = n
			p = strings.TrimSpace(p[i+1:])
		}
		if p == "" {
			return nil, syntaxErr(arg, "empty login")
		}
		if strings.HasPrefix(p, "-") || strings.HasPrefix(p, "^") {
			return nil, syntaxErr(arg, "login %q: to leave hosts out use --exclude; for a file of logins, --slf", p)
		}
		if strings.ContainsAny(p, " \t") {
			// GNU parallel would read "ssh -p 2222 host" as a custom ssh
			// command; drove has its own SSH client, so say so plainly.
			return nil, syntaxErr(arg, "login %q contains a space (custom ssh commands are not supported; use ssh_config or host:port)", p)
		}
		var hosts []string
		if p == Local {
			hosts = []string{Local}
		} else if hosts, err = x.Expand(p); err != nil {
			return nil, err
		}
		for _, h := range hosts {
			out = appendLogin(out, Login{Host: h, Slots: slots})
		}
	}
	return out, nil
}

func appendLogin(ls []Login, l Login) []Login {
	for i := range ls {
		if ls[i].Host == l.Host {
			ls[i] = l
			return ls
		}
	}
	return append(ls, l)
}

// MergeLogins appends b to a, dropping hosts already in a (the later slot
// count wins), as repeated -S and --slf options combine.
func MergeLogins(a []Login, b ...Login) []Login {
	for _, l := range b {
		a = appendLogin(a, l)
	}
	return a
}

// ParseLoginFile reads a GNU parallel --slf file: one -S argument per line;
// blank lines and lines starting with # are ignored.
func ParseLoginFile(r io.Reader) ([]Login, error) {
	var x Expander
	return x.ParseLoginFile(r)
}

// ParseLoginFile is [ParseLoginFile] with x's groups.
func (x *Expander) ParseLoginFile(r io.Reader) ([]Login, error) {
	var out []Login
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		ls, err := x.ParseLogins(line)
		if err != nil {
			return nil, err
		}
		out = MergeLogins(out, ls...)
	}
	return out, sc.Err()
}

// Host is one pssh host file entry.
type Host struct {
	User string // "" when the entry names none
	Host string
	Port string // "" when the entry names none
}

// Target returns "[user@]host[:port]", the form the SSH layer dials.
func (h Host) Target() string {
	s := h.Host
	if h.User != "" {
		s = h.User + "@" + s
	}
	if h.Port != "" {
		s += ":" + h.Port
	}
	return s
}

// ParseHost parses "[user@]host[:port]" as pssh does: the user ends at the
// first "@", the port starts after the last ":". An IPv6 address is written
// in brackets ("[::1]:2222") and keeps them in Host, so that Target can be
// dialled. An empty host or a port that is not a number in 1-65535 is an
// error.
func ParseHost(s string) (Host, error) {
	var h Host
	if i := strings.IndexByte(s, '@'); i >= 0 {
		h.User, s = s[:i], s[i+1:]
		if h.User == "" {
			return Host{}, syntaxErr(s, "empty user")
		}
	}
	colon := strings.LastIndexByte(s, ':')
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		switch {
		case end < 0:
			return Host{}, syntaxErr(s, "unclosed '['")
		case end == len(s)-1:
			colon = -1 // no port
		case s[end+1] != ':':
			return Host{}, syntaxErr(s, "text after ']'")
		default:
			colon = end + 1
		}
		if end <= 1 {
			return Host{}, syntaxErr(s, "empty host")
		}
	}
	if i := colon; i >= 0 {
		s, h.Port = s[:i], s[i+1:]
		p, err := strconv.Atoi(h.Port)
		if err != nil || p < 1 || p > 65535 || h.Port[0] == '+' || h.Port[0] == '0' {
			return Host{}, syntaxErr(s, "bad port %q", h.Port)
		}
	}
	if s == "" {
		return Host{}, syntaxErr(s, "empty host")
	}
	h.Host = s
	return h, nil
}

// ParseHostFile reads a pssh host file: lines "[user@]host[:port]" or
// "host[:port] user"; text from "#" to the end of a line is a comment. Each
// host part may be a node set ("web[1-3]:2222").
func ParseHostFile(r io.Reader) ([]Host, error) {
	var x Expander
	return x.ParseHostFile(r)
}

// ParseHostFile is [ParseHostFile] with x's groups and files.
func (x *Expander) ParseHostFile(r io.Reader) ([]Host, error) {
	var out []Host
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) > 2 {
			return nil, syntaxErr(line, "line %d: want [user@]host[:port] [user]", lineNo)
		}
		names, err := x.Expand(fields[0])
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			h, err := ParseHost(n)
			if err != nil {
				return nil, err
			}
			if len(fields) == 2 {
				if h.User != "" {
					return nil, syntaxErr(line, "line %d: user given twice", lineNo)
				}
				h.User = fields[1]
			}
			out = append(out, h)
		}
	}
	return out, sc.Err()
}

// ParseHosts parses a pssh -H or clush -w argument: node sets of
// "[user@]host[:port]" entries, whitespace meaning union as a comma does.
func ParseHosts(arg string) ([]Host, error) {
	var x Expander
	return x.Hosts(Selection{Sets: []string{arg}})
}

// Selection is how drove exec, up and down are told their hosts, as clush
// and pdsh are: node sets (-w, arguments), pssh hosts files (-h) and node
// sets to leave out (-x).
type Selection struct {
	Sets    []string // node sets of [user@]host[:port] entries
	Files   []string // pssh hosts files
	Exclude []string // node sets left out of the others
}

// Hosts returns the hosts sel selects: those of each node set and hosts
// file, in order (a host named in two of them twice, as pssh takes it),
// less those of sel.Exclude and of pdsh's "-name" items anywhere. A name
// left out that has no user and no port leaves out every entry with that
// host, whatever its user and port.
func (x *Expander) Hosts(sel Selection) ([]Host, error) {
	var names, excl []string
	for _, set := range sel.Sets {
		n, e, err := x.expand(set, "", 0)
		if err != nil {
			return nil, err
		}
		names = append(names, n...)
		excl = append(excl, e...)
	}
	for _, set := range sel.Exclude {
		n, e, err := x.expand(set, "", 0)
		if err != nil {
			return nil, fmt.Errorf("-x: %w", err)
		}
		excl = append(append(excl, n...), e...)
	}
	var out []Host
	for _, n := range names {
		h, err := ParseHost(n)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	for _, name := range sel.Files {
		fh, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		hs, err := x.ParseHostFile(fh)
		fh.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, hs...)
	}
	return excludeHosts(out, excl), nil
}

// excludeHosts returns hosts without those excl names (see
// [Expander.Hosts]).
func excludeHosts(hosts []Host, excl []string) []Host {
	if len(excl) == 0 {
		return hosts
	}
	exact := map[Host]bool{}
	host := map[string]bool{}
	for _, e := range excl {
		h, err := ParseHost(e)
		if err != nil {
			continue
		}
		exact[h] = true
		if h.User == "" && h.Port == "" {
			host[h.Host] = true
		}
	}
	out := hosts[:0:0]
	for _, h := range hosts {
		if !exact[h] && !host[h.Host] {
			out = append(out, h)
		}
	}
	return out
}

// OutputNames returns the pssh -o/-e file name of each host, in order:
// "[user@]host[:port]", with ".1", ".2", … added to repeats of the same name
// (pssh's Writer.open_files). The user appears only when the entry named one.
func OutputNames(hosts []Host) []string {
	counts := map[string]int{}
	out := make([]string, len(hosts))
	for i, h := range hosts {
		name := h.Target()
		c := counts[name]
		counts[name] = c + 1
		if c > 0 {
			name += "." + strconv.Itoa(c)
		}
		out[i] = name
	}
	return out
}

// ExcludeLogins returns logins without the hosts of the node sets excl
// (drove run --exclude), matched as [Expander.Hosts] matches -x: a name
// with no user and no port leaves out that host whatever its user and
// port. This machine (":") is left out only by ":". Leaving out every
// host is an error, so that the jobs do not silently run here instead.
func (x *Expander) ExcludeLogins(logins []Login, excl []string) ([]Login, error) {
	var names []string
	for _, set := range excl {
		if set == Local {
			names = append(names, Local)
			continue
		}
		n, e, err := x.expand(set, "", 0)
		if err != nil {
			return nil, fmt.Errorf("--exclude: %w", err)
		}
		names = append(append(names, n...), e...)
	}
	if len(names) == 0 {
		return logins, nil
	}
	out := logins[:0:0]
	for _, l := range logins {
		if l.IsLocal() {
			if !slices.Contains(names, Local) {
				out = append(out, l)
			}
			continue
		}
		h, err := ParseHost(l.Host)
		if err != nil || len(excludeHosts([]Host{h}, names)) == 1 {
			out = append(out, l)
		}
	}
	if len(out) == 0 && len(logins) > 0 {
		return nil, errors.New("--exclude leaves out every host")
	}
	return out, nil
}
