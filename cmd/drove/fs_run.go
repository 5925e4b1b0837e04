package main

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/drove-dev/drove/remote"
)

// newFSRun returns `drove fs HOST run`: run a shell command and exit with
// its status.
func newFSRun() *fsSub {
	var runTimeout time.Duration
	var withStdin bool
	s := newFSSub("run [--timeout D] [-i] COMMAND...", cobra.MinimumNArgs(1), func(ctx context.Context, e *fsEnv, args []string) error {
		// As with ssh, the words are joined with spaces into one shell
		// command line.
		c := &remote.Cmd{Command: strings.Join(args, " "), Timeout: runTimeout}
		if withStdin {
			c.Stdin = e.stdin
		}
		if !e.json {
			c.Stdout, c.Stderr = e.stdout, e.stderr
		}
		res, err := e.h.Run(ctx, c)
		var xe *remote.ExitError
		if err != nil && !errors.As(err, &xe) {
			return err
		}
		if e.json {
			out := map[string]any{
				"exit_code": res.ExitCode, "signal": res.SignalName(),
				"stdout": string(res.Stdout), "stderr": string(res.Stderr),
				"duration_sec": res.Duration.Seconds(),
			}
			if err := e.result("run", out); err != nil {
				return err
			}
		}
		if res.ExitCode != 0 {
			code := res.ExitCode
			if code < 0 || code > 255 {
				code = 255
			}
			return &exitError{code: code}
		}
		return nil
	})
	s.cmd.Flags().SetInterspersed(false)
	s.cmd.Flags().Var(durationValue{&runTimeout}, "timeout", "kill the remote process group after this long (a bare number is seconds: 90, 1.5, 2m, 1h30m)")
	s.cmd.Flags().BoolVarP(&withStdin, "stdin", "i", false, "send standard input to the command")
	return s
}
