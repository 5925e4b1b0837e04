// Command drove is the drove toolkit's command line: the demo, submitting
// programs to a cluster, and (as they land) the node daemon, the SSH work
// queue and the remote file tools.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/drove-dev/drove"
)

func main() {
	drove.Main() // in a worker process this serves jobs and never returns
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args and returns the exit code; it is what
// the tests call.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	return exitCode(err, stderr)
}
