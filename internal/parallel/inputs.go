package parallel

import (
	"bufio"
	"fmt"
	"regexp"
)

// inputs yields the argument lists of the jobs in order: the combinations
// of the sources (linked ones going together), each value split into
// columns by --colsep, MaxArgs combinations per job.
type inputs struct {
	src     tuples
	colsep  *regexp.Regexp
	perJob  int  // combinations per job (-N), at least 1
	noArgs  bool // -N 0: one combination per job, none of it inserted
	pending error
}

// tuples yields the combinations of the sources, one value per source.
type tuples interface {
	next() ([]string, bool, error)
}

func newInputs(cfg *Config) (*inputs, error) {
	in := &inputs{colsep: cfg.Colsep, perJob: max(1, cfg.MaxArgs), noArgs: cfg.NoArgs}
	if in.noArgs {
		in.perJob = 1
	}
	srcs := cfg.Sources
	if len(srcs) == 1 && srcs[0].Lines != nil {
		sc := bufio.NewScanner(srcs[0].Lines)
		sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
		in.src = &stream{sc: sc}
		return in, nil
	}
	p := &product{}
	for _, s := range srcs {
		list := s.Args
		if s.Lines != nil {
			sc := bufio.NewScanner(s.Lines)
			sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
			for sc.Scan() {
				list = append(list, sc.Text())
			}
			if err := sc.Err(); err != nil {
				return nil, fmt.Errorf("drove: reading input: %w", err)
			}
		}
		if (cfg.Link || s.Linked) && len(p.groups) > 0 {
			g := &p.groups[len(p.groups)-1]
			g.lists = append(g.lists, list)
			continue
		}
		p.groups = append(p.groups, group{lists: [][]string{list}})
	}
	for k := range p.groups {
		g := &p.groups[k]
		g.wrap = cfg.Link
		g.n = len(g.lists[0])
		for _, l := range g.lists {
			if g.wrap {
				g.n = max(g.n, len(l))
			} else {
				g.n = min(g.n, len(l))
			}
			if len(l) == 0 {
				g.n = 0 // nothing to wrap around: no combination at all
			}
		}
		if g.n == 0 {
			p.done = true
		}
	}
	p.idx = make([]int, len(p.groups))
	in.src = p
	return in, nil
}

// next returns the next job's arguments.
func (in *inputs) next() ([]string, bool, error) {
	if in.pending != nil {
		err := in.pending
		in.pending = nil
		return nil, false, err
	}
	var args []string
	n := 0
	for n < in.perJob {
		t, ok, err := in.src.next()
		if err != nil {
			if n > 0 {
				in.pending = err // the job so far runs, the error comes next
				break
			}
			return nil, false, err
		}
		if !ok {
			break
		}
		n++
		if in.noArgs {
			continue
		}
		for _, v := range t {
			if in.colsep != nil {
				args = append(args, in.colsep.Split(v, -1)...)
			} else {
				args = append(args, v)
			}
		}
	}
	if n == 0 {
		return nil, false, nil
	}
	if args == nil {
		args = []string{}
	}
	return args, true, nil
}

// stream reads a single line source as jobs start.
type stream struct{ sc *bufio.Scanner }

func (s *stream) next() ([]string, bool, error) {
	if !s.sc.Scan() {
		return nil, false, s.sc.Err()
	}
	return []string{s.sc.Text()}, true, nil
}

// group is sources linked together (:::+, ::::+, --link): their n-th
// values go together. Linked with :::+, the longer ones are cut to the
// shortest; with --link, the shorter ones wrap around to the longest, as
// GNU parallel does.
type group struct {
	lists [][]string
	n     int
	wrap  bool
}

// product yields every combination of the groups, the first varying
// slowest.
type product struct {
	groups  []group
	idx     []int
	started bool
	done    bool
}

func (p *product) next() ([]string, bool, error) {
	if p.done {
		return nil, false, nil
	}
	if p.started {
		k := len(p.idx) - 1
		for ; k >= 0; k-- {
			p.idx[k]++
			if p.idx[k] < p.groups[k].n {
				break
			}
			p.idx[k] = 0
		}
		if k < 0 {
			p.done = true
			return nil, false, nil
		}
	}
	p.started = true
	var t []string
	for k, i := range p.idx {
		for _, l := range p.groups[k].lists {
			t = append(t, l[i%len(l)])
		}
	}
	return t, true, nil
}
