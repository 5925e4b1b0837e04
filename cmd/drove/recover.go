package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/drove-dev/drove"
	"github.com/drove-dev/drove/internal/executor/nodeexec"
	"github.com/drove-dev/drove/internal/recoverfile"
)

func newRecoverCmd() *cobra.Command {
	var (
		asJSON bool
		auth   clientAuth
	)
	cmd := &cobra.Command{
		Use:   "recover [flags] FILE",
		Short: "Collect the results of a client that was killed, from its recover file",
		Long: `Collect, from the drove nodes named in FILE, the results of the jobs of a
client that went away without closing its cluster (it crashed, or was killed),
as dispy's recover_jobs. FILE is the recover file the client kept: "drove
submit --recover-file FILE", or drove.WithRecoverFile in a Go program. Jobs
still queued or running on the nodes are waited for.

For a program (drove submit), prints each job's id, node and exit status, then
its stdout and stderr, as drove submit does, and closes the client's
computations on the nodes: the results are collected once. The exit status is
then the number of jobs that did not exit 0 (101 for more than 100), or 1 if a
node could not be reached.

For a Go function (drove.Func), the results are Go values only that program
can decode: prints each job's id, node and status (and its stdout and
stderr), and leaves the results on the nodes for the program's own
drove.RecoverFromFile.

--json prints one JSON document instead: client_id, computation {kind, name,
result}, collected (whether the results were taken from the nodes), jobs
[{id, node, status, exit_code (programs' Finished jobs), error, stdout,
stderr (stdout_base64, stderr_base64 when not UTF-8), start, end}] and
errors (one per node that failed).

Requests are signed with the cluster secret (--secret, --secret-file or
$DROVE_SECRET), over mutual TLS with --tls-ca. A missing FILE means the
client closed its cluster cleanly (it removes the file then): nothing to
collect.`,
		Example: `  drove submit --nodes 10.0.0.5 --recover-file run.recover -a 1 ./compute.sh
  drove recover run.recover
  drove recover --json --secret-file ~/.drove-secret run.recover`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			secret, tc, err := auth.resolve()
			if err != nil {
				return err
			}
			opts, err := auth.options()
			if err != nil {
				return err
			}
			return runRecover(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], asJSON, secret, tc, opts)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	auth.register(cmd.Flags())
	return cmd
}

// recoveredJob is a job collected for drove recover, programs' or
// functions'.
type recoveredJob struct {
	ID         int64
	Node       string
	Status     drove.Status
	ExitCode   *int // a program's Finished job
	Err        error
	Stdout     []byte
	Stderr     []byte
	Start, End time.Time
}

func runRecover(ctx context.Context, stdout, stderr io.Writer, path string, asJSON bool, secret string, tc *tls.Config, opts []drove.Option) error {
	f, err := recoverfile.Read(path)
	if err != nil {
		return err
	}
	var jobs []recoveredJob
	var collectErr error
	collected := f.Computation.Kind == recoverfile.KindProgram
	if collected {
		rs, err := drove.RecoverFromFile(ctx, drove.Program(f.Computation.Name), path, opts...)
		collectErr = err
		for _, r := range rs {
			j := recoveredJob{ID: r.ID, Node: r.Node, Status: r.Status, Err: r.Err, Stdout: r.Stdout, Stderr: r.Stderr, Start: r.Start, End: r.End}
			if r.Status == drove.Finished {
				j.ExitCode = &r.Result
			}
			jobs = append(jobs, j)
		}
	} else {
		// Collecting would close the computations and lose the results,
		// which only the program can decode: look, and leave them.
		var errs []error
		for _, n := range f.Nodes {
			rs, err := nodeexec.Peek(ctx, nodeexec.Config{Addr: n, Secret: secret, TLS: tc, ClientID: f.ClientID})
			if err != nil {
				errs = append(errs, fmt.Errorf("drove: recovering from %s: %w", n, err))
			}
			for _, r := range rs {
				res := r.Result
				j := recoveredJob{ID: r.JobID, Node: n, Status: drove.Status(r.State()), Err: res.Err, Stdout: res.Stdout, Stderr: res.Stderr, Start: res.Start, End: res.End}
				if j.Status != drove.Finished && j.Err == nil {
					j.Err = fmt.Errorf("drove: job %d ended %s", r.JobID, j.Status)
				}
				jobs = append(jobs, j)
			}
		}
		collectErr = errors.Join(errs...)
	}
	slices.SortStableFunc(jobs, func(a, b recoveredJob) int { return cmp.Compare(a.ID, b.ID) })
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if asJSON {
		if err := writeRecoverJSON(stdout, f, collected, jobs, collectErr); err != nil {
			return err
		}
	} else {
		writeRecoverText(stdout, stderr, f, jobs)
	}
	if collectErr != nil {
		if asJSON {
			return &exitError{code: 1} // the errors are in the document
		}
		return collectErr
	}
	if !collected {
		return nil
	}
	failed := 0
	for _, j := range jobs {
		if j.ExitCode == nil || *j.ExitCode != 0 {
			failed++
		}
	}
	if failed > 0 {
		return &exitError{code: min(failed, 101)}
	}
	return nil
}

func writeRecoverText(stdout, stderr io.Writer, f *recoverfile.File, jobs []recoveredJob) {
	for _, j := range jobs {
		status := j.Status.String()
		switch {
		case j.ExitCode != nil:
			status = fmt.Sprintf("exit status %d", *j.ExitCode)
		case j.Err != nil:
			status = fmt.Sprintf("%s: %v", j.Status, j.Err)
		}
		fmt.Fprintf(stdout, "job %d on %s: %s\n", j.ID, j.Node, status)
		writeSection(stdout, "stdout", j.Stdout)
		writeSection(stdout, "stderr", j.Stderr)
	}
	if len(jobs) == 0 {
		fmt.Fprintf(stderr, "drove: the nodes hold no jobs of client %s\n", f.ClientID)
	}
	if f.Computation.Kind == recoverfile.KindFunc && len(jobs) > 0 {
		fmt.Fprintf(stderr, "drove: the results of Go function %s (%s) are left on the nodes: only its program decodes them, with drove.RecoverFromFile\n", f.Computation.Name, f.Computation.Result)
	}
}

// jsonJob is a job in drove recover --json.
type jsonJob struct {
	ID           int64  `json:"id"`
	Node         string `json:"node"`
	Status       string `json:"status"`
	ExitCode     *int   `json:"exit_code,omitempty"`
	Error        string `json:"error,omitempty"`
	Stdout       string `json:"stdout,omitempty"`
	StdoutBase64 string `json:"stdout_base64,omitempty"`
	Stderr       string `json:"stderr,omitempty"`
	StderrBase64 string `json:"stderr_base64,omitempty"`
	Start        string `json:"start,omitempty"`
	End          string `json:"end,omitempty"`
}

// jsonRecover is the document drove recover --json prints.
type jsonRecover struct {
	ClientID    string                  `json:"client_id"`
	Computation recoverfile.Computation `json:"computation"`
	Collected   bool                    `json:"collected"`
	Jobs        []jsonJob               `json:"jobs"`
	Errors      []string                `json:"errors,omitempty"`
}

func writeRecoverJSON(w io.Writer, f *recoverfile.File, collected bool, jobs []recoveredJob, collectErr error) error {
	doc := jsonRecover{ClientID: f.ClientID, Computation: f.Computation, Collected: collected, Jobs: []jsonJob{}}
	for _, j := range jobs {
		jj := jsonJob{ID: j.ID, Node: j.Node, Status: j.Status.String(), ExitCode: j.ExitCode}
		if j.Err != nil {
			jj.Error = j.Err.Error()
		}
		jj.Stdout, jj.StdoutBase64 = textOrBase64(j.Stdout)
		jj.Stderr, jj.StderrBase64 = textOrBase64(j.Stderr)
		if !j.Start.IsZero() {
			jj.Start = j.Start.Format(time.RFC3339Nano)
		}
		if !j.End.IsZero() {
			jj.End = j.End.Format(time.RFC3339Nano)
		}
		doc.Jobs = append(doc.Jobs, jj)
	}
	if collectErr != nil {
		// errors.Join's text has one line per node.
		var joined interface{ Unwrap() []error }
		if errors.As(collectErr, &joined) {
			for _, e := range joined.Unwrap() {
				doc.Errors = append(doc.Errors, e.Error())
			}
		} else {
			doc.Errors = []string{collectErr.Error()}
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

// textOrBase64 keeps output that is not UTF-8 intact, base64-encoded,
// where JSON would replace its bytes.
func textOrBase64(b []byte) (text, b64 string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return "", base64.StdEncoding.EncodeToString(b)
}
