package remote_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"
	"sync/atomic"
	"time"

	"github.com/drove-dev/drove/remote"
)

// Dial a host by its ssh_config alias, work in a fresh directory, run a
// command there and fetch its output file.
func ExampleDial() {
	ctx := context.Background()
	h, err := remote.Dial(ctx, "build-box") // or "user@host:2222"
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()

	dir, err := h.TempDir(ctx, "", "job-*")
	if err != nil {
		log.Fatal(err)
	}
	defer h.RemoveAll(ctx, dir)
	if err := h.Upload(ctx, "input", dir+"/input"); err != nil {
		log.Fatal(err)
	}
	if _, err := h.Run(ctx, &remote.Cmd{Command: "sort input > output", Dir: dir}); err != nil {
		log.Fatal(err)
	}
	if err := h.Download(ctx, dir+"/output", "output"); err != nil {
		log.Fatal(err)
	}
}

// Run a program with literal arguments, a timeout that kills its whole
// process group, and its output collected.
func ExampleHost_Run() {
	ctx := context.Background()
	h, err := remote.Dial(ctx, "alice@10.0.0.7")
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()

	cmd := remote.Command("grep", "-c", "$(not expanded)", "/etc/hosts")
	cmd.Timeout = 30 * time.Second
	res, err := h.Run(ctx, cmd)
	if err != nil {
		log.Fatal(err) // *remote.ExitError for a non-zero exit
	}
	fmt.Printf("%s", res.Stdout)
}

// exec_proxy's model: issue several calls, check once.
func ExampleSticky() {
	ctx := context.Background()
	h, err := remote.Dial(ctx, "worker1")
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()

	s := remote.NewSticky(h)
	s.MkdirAll(ctx, "run/out", 0o755)
	s.Chdir(ctx, "run")
	s.WriteFile(ctx, "params", []byte("n=10\n"), 0o644)
	s.Run(ctx, &remote.Cmd{Command: "./simulate params > out/result"})
	if !s.OK() {
		log.Printf("batch failed: %v", s.Err())
		s.ResetErr()
	}
}

// Exists distinguishes "missing" (false, nil) from a failure to check.
func ExampleHost_Exists() {
	ctx := context.Background()
	h, err := remote.Dial(ctx, "worker1")
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()

	ok, err := h.Exists(ctx, "/var/run/job.lock")
	switch {
	case err != nil:
		log.Fatal(err)
	case ok:
		fmt.Println("busy")
	}
}

// The io/fs view works with fs.WalkDir, fs.Glob, template.ParseFS, ….
func ExampleHost_FS() {
	ctx := context.Background()
	h, err := remote.Dial(ctx, "worker1")
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()

	logs, err := fs.Sub(h.FS(), "var/log")
	if err != nil {
		log.Fatal(err)
	}
	matches, _ := fs.Glob(logs, "*.log")
	for _, m := range matches {
		fmt.Println(m)
	}
}

// Show a byte count while uploading a directory.
func ExampleWithProgress() {
	ctx := context.Background()
	h, err := remote.Dial(ctx, "worker1")
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()

	var total atomic.Int64 // fn is called from several goroutines for a directory
	err = h.Upload(ctx, "dataset", "/scratch/dataset", remote.WithProgress(func(n int64) {
		fmt.Fprintf(os.Stderr, "\r%d bytes", total.Add(n))
	}))
	if err != nil {
		log.Fatal(err)
	}
}

// Batchlib: evaluate a script for many parameter values over several hosts.
// Idle hosts take the next value; a value whose host dies is run elsewhere.
func ExampleMap() {
	ctx := context.Background()
	p, err := remote.NewPool(ctx, []string{"node1", "node2", "node3"}, remote.WithSlots(4))
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	params := []string{"0.1", "0.2", "0.5", "1.0"}
	results := remote.Map(ctx, p, params, func(ctx context.Context, h *remote.Host, x string) (string, error) {
		out, err := h.Output(ctx, "./model", "--alpha", x)
		return string(out), err
	})
	for _, r := range results {
		fmt.Println(r.Input, r.Host, r.Output, r.Err)
	}
}

// Tell a lost host from an answer of the server: every error caused by the
// connection or the SFTP session, also in the middle of a transfer, matches
// *ConnError, inside the *fs.PathError of the call.
func ExampleConnError() {
	ctx := context.Background()
	h, err := remote.Dial(ctx, "build-box")
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	err = h.Download(ctx, "/scratch/results", "results")
	var ce *remote.ConnError
	switch {
	case errors.As(err, &ce):
		log.Printf("%s went away, try another host: %v", ce.Host, err)
	case errors.Is(err, fs.ErrNotExist):
		log.Print("no results yet")
	case err != nil:
		log.Fatal(err)
	}
}

// Bound a file operation with a deadline: Stat returns when ctx ends even
// if the server has stopped answering (a hung file system).
func ExampleHost_Stat() {
	h, err := remote.Dial(context.Background(), "build-box")
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	fi, err := h.Stat(ctx, "/nfs/project")
	if errors.Is(err, context.DeadlineExceeded) {
		log.Fatal("/nfs/project does not answer")
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(fi.Mode())
}
