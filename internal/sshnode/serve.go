package sshnode

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/sshserve"
)

// EnvServe, set in a drove program's environment, makes drove.Main serve
// the node protocol on stdin and stdout (Main) instead of running the
// program. Its value is the host's drove cache directory
// (hostcache.Host.Dir): blobs are shared there, and each serving process
// keeps its computations in a private directory below it, removed when it
// exits.
const EnvServe = "DROVE_SSH_NODE"

// EnvLog sets the serving process's log level on stderr (debug, info,
// warn, error); default warn. The client passes on its own.
const EnvLog = "DROVE_SSH_NODE_LOG"

// Marker is the line the serving process prints on stdout before the
// protocol starts, so that the client can skip whatever the login shell
// printed first.
const Marker = "drove-ssh-node 1"

// Serving reports whether this process was started to serve (EnvServe).
func Serving() bool { return os.Getenv(EnvServe) != "" }

// Main serves the node protocol on stdin and stdout until stdin ends, and
// returns the process's exit code. Jobs' processes never get the
// connection: it is moved to descriptors that are closed on exec, stdin
// becomes /dev/null and stdout the same as stderr.
func Main() int {
	cache := os.Getenv(EnvServe)
	// Workers and programs started from here must not serve in turn.
	os.Unsetenv(EnvServe)
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(os.Getenv(EnvLog))); err != nil || os.Getenv(EnvLog) == "" {
		lvl = slog.LevelWarn
	}
	os.Unsetenv(EnvLog)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	if err := serve(cache, log); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func serve(cache string, log *slog.Logger) error {
	if !filepath.IsAbs(cache) {
		return fmt.Errorf("drove: %s=%q: want the absolute path of the cache directory", EnvServe, cache)
	}
	in, out, err := sshserve.TakeStdio()
	if err != nil {
		return fmt.Errorf("drove: serving on stdin and stdout: %w", err)
	}
	base := filepath.Join(cache, "serve")
	if err := os.MkdirAll(base, 0o700); err != nil {
		return fmt.Errorf("drove: %w", err)
	}
	dir, err := os.MkdirTemp(base, "node-")
	if err != nil {
		return fmt.Errorf("drove: %w", err)
	}
	defer os.RemoveAll(dir)
	conn := &node.StdioConn{R: in, W: out}
	n, err := node.New(node.Config{
		Dir:     dir,
		BlobDir: filepath.Join(cache, "blobs"),
		Conn:    conn,
		Logger:  log,
	})
	if err != nil {
		conn.Close()
		return err
	}
	// The client reads up to this line; the protocol follows.
	if _, err := fmt.Fprintln(out, Marker); err != nil {
		conn.Close()
		return fmt.Errorf("drove: %w", err)
	}
	// A hang-up or a termination stops the node as the end of stdin does:
	// its jobs are stopped before it exits.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err = n.Run(ctx)
	conn.Close()
	return err
}
