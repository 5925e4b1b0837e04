package main

import (
	"io"
	"log/slog"
	"time"

	"github.com/spf13/pflag"

	"github.com/drove-dev/drove"
)

// defaultDiscoverTimeout is how long demo and submit look for a first
// node with a pattern in --nodes ("*") before they fail.
const defaultDiscoverTimeout = 10 * time.Second

const discoverTimeoutUsage = `with a pattern in --nodes ("*", "10.0.0.*", "*:PORT"): fail if discovery finds no usable node in this time, saying what it tried (0 waits for ever)`

// clusterWarnings are the options of demo and submit that make a
// cluster's problems visible: its warnings (a listed node that cannot be
// reached, discovery that finds nothing, a node lost) go to stderr, and
// discovery that finds nothing fails after --discover-timeout.
type clusterWarnings struct {
	discoverTimeout time.Duration
}

func (c *clusterWarnings) register(f *pflag.FlagSet) {
	f.DurationVar(&c.discoverTimeout, "discover-timeout", defaultDiscoverTimeout, discoverTimeoutUsage)
}

// options returns the cluster options that log warnings to stderr and
// bound discovery.
func (c *clusterWarnings) options(stderr io.Writer) []drove.Option {
	opts := []drove.Option{drove.WithLogger(warnLogger(stderr))}
	if c.discoverTimeout > 0 {
		opts = append(opts, drove.WithDiscoverTimeout(c.discoverTimeout))
	}
	return opts
}

// warnLogger logs warnings and errors on w, without the time: a command's
// stderr, read by the person who ran it.
func warnLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: slog.LevelWarn,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
}
