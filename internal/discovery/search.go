package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// Search defaults.
const (
	// DefaultRetry is how often a search that has found no node pings
	// again.
	DefaultRetry = 2 * time.Second
	// DefaultWarnAfter is how long a search finds nothing before it says
	// what it tried.
	DefaultWarnAfter = 3 * time.Second
)

// Search finds the nodes that match some patterns, for a client or a
// scheduler: it pings them (Round), and while the caller has no node it
// pings again every Retry, saying once, after WarnAfter, what it tried;
// meanwhile it listens for nodes that announce themselves as they start
// (Run). It is the one piece of code that looks for nodes.
type Search struct {
	// Config is where pings go and announcements are heard; its Ports are
	// set from the patterns' ports.
	Config   ClientConfig
	Patterns []Pattern
	// Add adds the matching nodes at addrs (the caller skips those it
	// knows); it may wait for them to answer.
	Add func(ctx context.Context, addrs []string)
	// Have reports whether the caller has a usable node; nil means no.
	Have      func() bool
	Retry     time.Duration // default DefaultRetry
	WarnAfter time.Duration // default DefaultWarnAfter
	Logger    *slog.Logger

	start time.Time
}

// NewSearch returns a search for the node patterns (as ParsePattern takes
// them); cfg's Ports are set from their ports unless it has Targets.
func NewSearch(cfg ClientConfig, patterns []string, add func(context.Context, []string)) (*Search, error) {
	s := &Search{Config: cfg, Add: add, start: time.Now()}
	for _, p := range patterns {
		pat, err := ParsePattern(p)
		if err != nil {
			return nil, err
		}
		s.Patterns = append(s.Patterns, pat)
		if !slices.Contains(s.Config.Ports, pat.PingPort()) {
			s.Config.Ports = append(s.Config.Ports, pat.PingPort())
		}
	}
	return s, nil
}

// Match reports whether addr matches one of the patterns.
func (s *Search) Match(addr string) bool {
	return slices.ContainsFunc(s.Patterns, func(p Pattern) bool { return p.Match(addr) })
}

// Round pings the nodes once and adds those that match.
func (s *Search) Round(ctx context.Context) error {
	found, err := Discover(ctx, s.Config)
	var addrs []string
	for _, f := range found {
		if s.Match(f.Addr) {
			addrs = append(addrs, f.Addr)
		}
	}
	if len(addrs) > 0 {
		s.Add(ctx, addrs)
	}
	return err
}

// Tried says what the search does, for a warning or an error: the
// patterns, where pings go and where announcements are heard.
func (s *Search) Tried() string {
	var pats, targets []string
	for _, p := range s.Patterns {
		pats = append(pats, fmt.Sprintf("%q", p.String()))
	}
	for _, t := range s.Config.PingTargets() {
		targets = append(targets, t.String())
	}
	return fmt.Sprintf("for %s: pinged %s every %v and listened on %s for nodes that start (a node on another port than %d is found with its port in the pattern, such as \"*:PORT\"; nodes on other subnets are listed by address)",
		strings.Join(pats, ", "), strings.Join(targets, ", "), s.retry(), s.Config.WatchAddr(), NodePort)
}

func (s *Search) retry() time.Duration {
	if s.Retry <= 0 {
		return DefaultRetry
	}
	return s.Retry
}

func (s *Search) have() bool { return s.Have != nil && s.Have() }

// Run listens for nodes announcing themselves and, while the caller has
// no node, pings again every Retry, until ctx ends. Call Round first: Run
// waits Retry before its first ping.
func (s *Search) Run(ctx context.Context) {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	warnAfter := s.WarnAfter
	if warnAfter <= 0 {
		warnAfter = DefaultWarnAfter
	}
	if s.start.IsZero() {
		s.start = time.Now()
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		err := Watch(ctx, s.Config, func(f Found) {
			if s.Match(f.Addr) {
				wg.Go(func() { s.Add(ctx, []string{f.Addr}) })
			}
		})
		if err != nil && ctx.Err() == nil {
			log.Warn("not listening for nodes that start later", "err", err)
		}
	})
	t := time.NewTicker(s.retry())
	defer t.Stop()
	warned := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s.have() {
			continue
		}
		if !warned && time.Since(s.start) >= warnAfter {
			warned = true
			log.Warn("no drove node found yet; still looking " + s.Tried())
		}
		if err := s.Round(ctx); err != nil && ctx.Err() == nil {
			log.Debug("discovery", "err", err)
		}
	}
}
