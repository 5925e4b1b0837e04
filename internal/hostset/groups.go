package hostset

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ClusterShellGroupsEnv names the environment variable that replaces the
// ClusterShell configuration directories [DefaultGroupPaths] searches: a
// colon-separated list of directories holding groups.d/*.yaml (and
// groups.conf); empty means none.
const ClusterShellGroupsEnv = "DROVE_CLUSTERSHELL_GROUPS"

// GroupsFileEnv names the environment variable that replaces the path of
// drove's own groups file; empty means none.
const GroupsFileEnv = "DROVE_GROUPS"

// DroveSource is the group source name of drove's own groups file.
const DroveSource = "drove"

// GroupPaths says where node groups are read from.
type GroupPaths struct {
	// ClusterShell are ClusterShell configuration directories, lowest
	// priority first (/etc/clustershell, then the user's). Each may hold
	// groups.d/*.yaml (each file a map of group sources, each a map of
	// group name to node set), groups.d/local.cfg (the "local" source of
	// ClusterShell's shipped groups.conf: "name: node set" lines) and
	// groups.conf, whose [Main] default names the default source.
	ClusterShell []string
	// Drove is drove's groups file: a YAML map of group name to node set
	// (a string or a list of strings), the group source "drove". Its
	// groups are found first for an @name without a source.
	Drove string
}

// DefaultGroupPaths returns the ClusterShell directories /etc/clustershell,
// $XDG_CONFIG_HOME/clustershell (~/.config/clustershell) and
// ~/.local/etc/clustershell, and drove's file
// $XDG_CONFIG_HOME/drove/groups.yaml (~/.config/drove/groups.yaml).
// $DROVE_CLUSTERSHELL_GROUPS and $DROVE_GROUPS, when set, replace them.
func DefaultGroupPaths() GroupPaths {
	var p GroupPaths
	home, _ := os.UserHomeDir()
	cfg := os.Getenv("XDG_CONFIG_HOME")
	if cfg == "" && home != "" {
		cfg = filepath.Join(home, ".config")
	}
	if v, ok := os.LookupEnv(ClusterShellGroupsEnv); ok {
		p.ClusterShell = filepath.SplitList(v)
	} else {
		p.ClusterShell = []string{"/etc/clustershell"}
		if cfg != "" {
			p.ClusterShell = append(p.ClusterShell, filepath.Join(cfg, "clustershell"))
		}
		if home != "" {
			p.ClusterShell = append(p.ClusterShell, filepath.Join(home, ".local", "etc", "clustershell"))
		}
	}
	if v, ok := os.LookupEnv(GroupsFileEnv); ok {
		p.Drove = v
	} else if cfg != "" {
		p.Drove = filepath.Join(cfg, "drove", "groups.yaml")
	}
	return p
}

// Groups are node groups by source, as ClusterShell's file group sources
// hold them. Only file sources are read: the upcall sources of
// groups.conf (shell commands) are not run.
type Groups struct {
	sources map[string]map[string]string // source → group → node set
	from    map[string]string            // source → the file it came from
	def     string                       // default source
	files   []string                     // files read, for messages
}

// LoadGroups reads the group files of p. Missing files and directories are
// no error; an unreadable or malformed file is, and so is a source defined
// in two files (as in ClusterShell).
func LoadGroups(p GroupPaths) (*Groups, error) {
	g := &Groups{sources: map[string]map[string]string{}, from: map[string]string{}}
	def := ""
	for _, dir := range p.ClusterShell {
		if dir == "" {
			continue
		}
		files, err := filepath.Glob(filepath.Join(dir, "groups.d", "*.yaml"))
		if err != nil {
			return nil, err
		}
		sort.Strings(files)
		for _, f := range files {
			if err := g.loadYAML(f); err != nil {
				return nil, err
			}
		}
		local := filepath.Join(dir, "groups.d", "local.cfg")
		if err := g.loadFlat(local, "local"); err != nil {
			return nil, err
		}
		if d, err := defaultSource(filepath.Join(dir, "groups.conf")); err != nil {
			return nil, err
		} else if d != "" {
			def = d
		}
	}
	if p.Drove != "" {
		if err := g.loadFlat(p.Drove, DroveSource); err != nil {
			return nil, err
		}
	}
	switch {
	case def != "":
		if _, ok := g.sources[def]; !ok && def != "local" {
			return nil, fmt.Errorf("drove: groups.conf: default group source %q is not defined in any group file (%s)", def, g.fileList())
		}
		g.def = def
	case g.sources["local"] != nil:
		g.def = "local"
	default:
		// ClusterShell picks a source when groups.conf names none: the
		// first one read.
		for _, f := range g.files {
			for src, file := range g.from {
				if file == f && src != DroveSource && (g.def == "" || src < g.def) {
					g.def = src
				}
			}
			if g.def != "" {
				break
			}
		}
	}
	return g, nil
}

func (g *Groups) addSource(src, file string, groups map[string]string) error {
	if prev, ok := g.from[src]; ok {
		return fmt.Errorf("drove: group source %q is defined twice: in %s and in %s", src, prev, file)
	}
	g.sources[src] = groups
	g.from[src] = file
	return nil
}

// loadYAML reads a ClusterShell groups.d file: {source: {group: nodes}}.
func (g *Groups) loadYAML(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("drove: group file: %w", err)
	}
	g.files = append(g.files, file)
	var doc map[string]map[string]yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("drove: group file %s: want a map of group sources, each a map of group name to node set: %w", file, err)
	}
	srcs := make([]string, 0, len(doc))
	for src := range doc {
		srcs = append(srcs, src)
	}
	sort.Strings(srcs)
	for _, src := range srcs {
		groups, err := groupValues(file, doc[src])
		if err != nil {
			return err
		}
		if err := g.addSource(src, file, groups); err != nil {
			return err
		}
	}
	return nil
}

// loadFlat reads a file of one source: a YAML map {group: nodes}, which
// ClusterShell's "name: node set" lines also are.
func (g *Groups) loadFlat(file, src string) error {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("drove: group file: %w", err)
	}
	g.files = append(g.files, file)
	var doc map[string]yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("drove: group file %s: want a map of group name to node set: %w", file, err)
	}
	groups, err := groupValues(file, doc)
	if err != nil {
		return err
	}
	if src == "local" {
		if _, ok := g.from[src]; ok {
			return nil // a local.cfg of lower priority: the first one wins
		}
	}
	return g.addSource(src, file, groups)
}

// groupValues turns YAML values (a node set string, a number, or a list of
// them) into node set strings.
func groupValues(file string, in map[string]yaml.Node) (map[string]string, error) {
	out := make(map[string]string, len(in))
	for name, n := range in {
		switch n.Kind {
		case yaml.ScalarNode:
			out[name] = n.Value
		case yaml.SequenceNode:
			parts := make([]string, 0, len(n.Content))
			for _, c := range n.Content {
				if c.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("drove: group file %s:%d: group %q: want node sets", file, c.Line, name)
				}
				parts = append(parts, c.Value)
			}
			out[name] = strings.Join(parts, ",")
		default:
			return nil, fmt.Errorf("drove: group file %s:%d: group %q: want a node set or a list of node sets", file, n.Line, name)
		}
	}
	return out, nil
}

// defaultSource reads "default" in the [Main] section of a groups.conf.
func defaultSource(file string) (string, error) {
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("drove: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	section := ""
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || l[0] == '#' || l[0] == ';':
		case l[0] == '[':
			section = strings.Trim(l, "[] ")
		case section == "Main":
			k, v, ok := strings.Cut(l, ":")
			if k2, v2, ok2 := strings.Cut(l, "="); ok2 && (!ok || len(k2) < len(k)) {
				k, v, ok = k2, v2, ok2
			}
			if ok && strings.TrimSpace(k) == "default" {
				return strings.TrimSpace(v), nil
			}
		}
	}
	return "", sc.Err()
}

func (g *Groups) fileList() string {
	if len(g.files) == 0 {
		return "no group file found"
	}
	return "read " + strings.Join(g.files, ", ")
}

// Sources returns the names of the group sources, sorted.
func (g *Groups) Sources() []string {
	out := make([]string, 0, len(g.sources))
	for s := range g.sources {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Default returns the default group source's name ("" if there is none).
func (g *Groups) Default() string { return g.def }

// lookup returns the node set of group name in source, and the source it
// was found in. With no source, drove's groups file is looked in first,
// then the default source. "*" is every node of the source: its group
// "all", else the union of its groups, as ClusterShell's file sources do.
func (g *Groups) lookup(source, name string) (string, string, error) {
	tries := []string{source}
	if source == "" {
		tries = []string{DroveSource, g.def}
	}
	for _, src := range tries {
		groups, ok := g.sources[src]
		if !ok {
			continue
		}
		if name == "*" {
			if all, ok := groups["all"]; ok {
				return all, src, nil
			}
			names := make([]string, 0, len(groups))
			for n := range groups {
				names = append(names, n)
			}
			sort.Strings(names)
			var parts []string
			for _, n := range names {
				parts = append(parts, groups[n])
			}
			return strings.Join(parts, ","), src, nil
		}
		if v, ok := groups[name]; ok {
			return v, src, nil
		}
	}
	ref := "@" + name
	if source != "" {
		ref = "@" + source + ":" + name
		if _, ok := g.sources[source]; !ok {
			return "", "", fmt.Errorf("%w: %s: no group source %q (sources: %s; %s)", ErrUnknownGroup, ref, source, strings.Join(g.Sources(), ", "), g.fileList())
		}
	}
	return "", "", fmt.Errorf("%w: %s (sources: %s; %s)", ErrUnknownGroup, ref, g.describe(source), g.fileList())
}

func (g *Groups) describe(source string) string {
	if source != "" {
		return source
	}
	var s []string
	if _, ok := g.sources[DroveSource]; ok {
		s = append(s, DroveSource)
	}
	if g.def != "" {
		s = append(s, g.def+" (default)")
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
