package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/drove-dev/drove/internal/monitor"
	"github.com/drove-dev/drove/internal/testutil/browsertest"
	"github.com/drove-dev/drove/internal/testutil/syncbuf"
)

// monitorJobs submits two jobs to the node at addr with drove submit, in
// the background: job 1 waits for the file release to exist and prints
// "released", job 2 sleeps for an hour (to be cancelled). It returns the
// channel drove submit's exit code arrives on.
func monitorJobs(t *testing.T, addr string) (release string, exit <-chan int) {
	t.Helper()
	dir := t.TempDir()
	release = filepath.Join(dir, "release")
	prog := filepath.Join(dir, "prog.sh")
	script := "#!/bin/sh\nif [ \"$1\" = gate ]; then while [ ! -e \"$2\" ]; do sleep 0.05; done; echo released; else exec sleep 3600; fi\n"
	if err := os.WriteFile(prog, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ch := make(chan int, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ch <- run(ctx, []string{"submit", "--nodes", addr, "-a", "gate " + release, "-a", "sleep", prog}, strings.NewReader(""), io.Discard, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return release, ch
}

// TestMonitorBrowser loads the web monitor of a real drove node process
// with a secret in headless Chromium: an action without signing in is
// refused, the sign-in form lets the user in, the node and the running
// jobs appear, a job goes from running to finished without a reload, a
// running job cancelled by clicking ends cancelled, and a job's page
// shows its stdout. Then drove status --json is checked field by field.
func TestMonitorBrowser(t *testing.T) {
	bin := buildDrove(t)
	const secret = "monitor-secret"
	t.Setenv("DROVE_SECRET", secret)
	p := startNodeProc(t, bin, nil, "--name", "monnode", "--cpus", "2")
	ctx := browsertest.New(t, time.Minute)
	url := "http://" + p.addr + "/"
	defer browsertest.DumpOnFailure(t, ctx)

	if err := chromedp.Do(ctx,
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.CSS("#login-form")),
	); err != nil {
		t.Fatalf("loading the monitor before signing in: %v", err)
	}
	// Not signed in: the API and actions are refused, whatever the page.
	code, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch("api/action", {method: "POST", headers: {"Content-Type": "application/json", "X-Drove-CSRF": "guess"}, body: JSON.stringify({action: "cancel", job: 1})}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if code != 401 {
		t.Errorf("action without signing in: HTTP %d, want 401", code)
	}

	// A wrong secret is refused; the right one signs in.
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS("#secret"), "wrong"),
		chromedp.Click(chromedp.CSS("#login-button")),
		chromedp.WaitVisible(chromedp.CSS("#login-error")),
	); err != nil {
		t.Fatalf("wrong secret: %v", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("secret").value = ""`)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS("#secret"), secret),
		chromedp.Click(chromedp.CSS("#login-button")),
		chromedp.WaitVisible(chromedp.CSS(`#nodes tr[data-node="monnode"]`)),
	); err != nil {
		t.Fatalf("signing in: %v", err)
	}
	// Marks this page load: a reload would lose it.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.droveTestMark = true`)); err != nil {
		t.Fatal(err)
	}

	release, exit := monitorJobs(t, p.addr)
	job := func(id int, status string) chromedp.CSS {
		return chromedp.CSS(fmt.Sprintf(`#jobs tr[data-job-id="%d"][data-status=%q]`, id, status))
	}
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(job(1, "running")),
		chromedp.WaitVisible(job(2, "running")),
	); err != nil {
		t.Fatalf("jobs running: %v", err)
	}
	busy, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#nodes tr[data-node="monnode"] td.busy`)))
	if err != nil || busy != "2" {
		t.Errorf("node busy %q (%v), want 2", busy, err)
	}
	checkStatusRunning(t, p.addr)

	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(job(1, "finished"))); err != nil {
		t.Fatalf("job 1 finished: %v", err)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`#jobs tr[data-job-id="2"] button.cancel`)),
		chromedp.WaitVisible(job(2, "cancelled")),
	); err != nil {
		t.Fatalf("cancelling job 2: %v", err)
	}
	mark, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.droveTestMark === true`))
	if err != nil || !mark {
		t.Errorf("the page was reloaded (mark %v, %v): it must update live", mark, err)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`#jobs tr[data-job-id="1"] a.job`)),
		chromedp.WaitVisible(chromedp.CSS("#job")),
	); err != nil {
		t.Fatalf("job 1's page: %v", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("job-stdout").textContent.includes("released")`)); err != nil {
		t.Fatalf("job 1's stdout: %v", err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "monitor.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("DROVE_SCREENSHOT_DIR"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, "monitor-node.png"), shot, 0o644)
	}
	t.Logf("screenshot: %s", path)

	select {
	case code := <-exit:
		if code == 0 {
			t.Errorf("drove submit exit 0, want non-zero (job 2 was cancelled)")
		}
	case <-time.After(time.Minute):
		t.Fatal("drove submit did not end within a minute")
	}
	checkStatusEnd(t, p.addr)
}

// statusJSON runs drove status --json --jobs on addr and decodes its
// output, refusing fields the monitor's Status does not have.
func statusJSON(t *testing.T, addr string) (monitor.Status, string) {
	t.Helper()
	code, out, errs := runCmd(t, "", "status", "--json", "--jobs", addr)
	if code != 0 {
		t.Fatalf("drove status --json: exit %d: %s", code, errs)
	}
	var st monitor.Status
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		t.Fatalf("drove status --json: %v\n%s", err, out)
	}
	return st, out
}

type fieldCheck struct {
	name      string
	got, want any
}

func checkFields(t *testing.T, what, out string, checks []fieldCheck) {
	t.Helper()
	failed := false
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %s = %v, want %v", what, c.name, c.got, c.want)
			failed = true
		}
	}
	if failed {
		t.Logf("%s:\n%s", what, out)
	}
}

// checkStatusRunning checks drove status --json while both of the
// monitor test's jobs run.
func checkStatusRunning(t *testing.T, addr string) {
	t.Helper()
	st, out := statusJSON(t, addr)
	checks := []fieldCheck{
		{"kind", st.Kind, "node"},
		{"name", st.Name, "monnode"},
		{"pending", st.Pending, 0},
		{"running", st.Running, 2},
		{"nodes", len(st.Nodes), 1},
		{"computations", len(st.Computations), 1},
		{"jobs", len(st.Jobs), 2},
		{"jobs_total", st.JobsTotal, 2},
		{"jobs_seen", st.JobsSeen, int64(2)},
		{"csrf", st.CSRF, ""},
		{"actions", strings.Join(st.Actions, ","), "cancel,set_cpus,allocate,deallocate"},
		{"time after begin", !st.Begin.IsZero() && st.Time.After(st.Begin), true},
	}
	if len(st.Nodes) == 1 {
		n := st.Nodes[0]
		checks = append(checks, []fieldCheck{
			{"node name", n.Name, "monnode"},
			{"node address", n.Address, addr},
			{"node cpus", n.CPUs, 2},
			{"node busy", n.Busy, 2},
			{"node jobs_done", n.JobsDone, 0},
			{"node state", n.State, "up"},
			{"node allocated", n.Allocated, true},
			{"node mem_free known", n.MemFree != nil && *n.MemFree > 0, true},
			{"node disk_free known", n.DiskFree != nil && *n.DiskFree > 0, true},
			{"node cpu_free known", n.CPUFree != nil && *n.CPUFree >= 0 && *n.CPUFree <= 100, true},
			{"node swap_used known", n.SwapUsed != nil, true},
		}...)
	}
	if len(st.Computations) == 1 {
		c := st.Computations[0]
		checks = append(checks, []fieldCheck{
			{"computation id set", c.ID != "", true},
			{"computation what", c.What, "prog.sh"},
			{"computation client set", c.Client != "", true},
			{"computation pending", c.Pending, 0},
			{"computation running", c.Running, 2},
			{"computation finished", c.Finished, 0},
			{"computation cancelled", c.Cancelled, 0},
			{"computation terminated", c.Terminated, 0},
			{"computation abandoned", c.Abandoned, 0},
		}...)
		for _, j := range st.Jobs {
			checks = append(checks, []fieldCheck{
				{fmt.Sprintf("job %d status", j.JobID), j.Status, "running"},
				{fmt.Sprintf("job %d node", j.JobID), j.Node, "monnode"},
				{fmt.Sprintf("job %d computation", j.JobID), j.Computation, c.ID},
				{fmt.Sprintf("job %d start set", j.JobID), !j.Start.IsZero() && !j.Start.After(st.Time), true},
				{fmt.Sprintf("job %d run_time", j.JobID), j.RunTime >= 0 && j.RunTime < 600, true},
			}...)
		}
	}
	if len(st.Jobs) == 2 {
		// Newest first: job 2 was dispatched after job 1.
		checks = append(checks, []fieldCheck{
			{"job ids", fmt.Sprint(st.Jobs[0].JobID, st.Jobs[1].JobID), "2 1"},
			{"monitor ids", st.Jobs[0].ID > st.Jobs[1].ID && st.Jobs[1].ID > 0, true},
		}...)
	}
	checkFields(t, "drove status --json while jobs run", out, checks)
}

// checkStatusEnd checks drove status --json (and the table) once drove
// submit has ended: job 1 finished, job 2 cancelled, the computation
// closed with its client.
func checkStatusEnd(t *testing.T, addr string) {
	t.Helper()
	st, out := statusJSON(t, addr)
	checks := []fieldCheck{
		{"pending", st.Pending, 0},
		{"running", st.Running, 0},
		{"nodes", len(st.Nodes), 1},
		{"computations", len(st.Computations), 0},
		{"jobs", len(st.Jobs), 2},
		{"jobs_total", st.JobsTotal, 2},
		{"jobs_seen", st.JobsSeen, int64(2)},
	}
	if len(st.Nodes) == 1 {
		n := st.Nodes[0]
		checks = append(checks, []fieldCheck{
			{"node busy", n.Busy, 0},
			{"node jobs_done", n.JobsDone, 2},
			{"node node_time > 0", n.NodeTime > 0, true},
		}...)
	}
	byJob := map[int64]monitor.Job{}
	for _, j := range st.Jobs {
		byJob[j.JobID] = j
	}
	checks = append(checks, []fieldCheck{
		{"job 1 status", byJob[1].Status, "finished"},
		{"job 2 status", byJob[2].Status, "cancelled"},
		{"job 1 node", byJob[1].Node, "monnode"},
		{"job 1 run_time > 0", byJob[1].RunTime > 0, true},
		{"job 2 run_time > 0", byJob[2].RunTime > 0, true},
	}...)
	checkFields(t, "drove status --json at the end", out, checks)

	// The table, and --jobs with a status filter.
	code, out, errs := runCmd(t, "", "status", "--jobs", "--status", "cancelled", addr)
	if code != 0 {
		t.Fatalf("drove status: exit %d: %s", code, errs)
	}
	for _, want := range []string{"drove node monnode:", "NODE", "monnode", "no computations", "1 of 1 jobs kept", "cancelled"} {
		if !strings.Contains(out, want) {
			t.Errorf("drove status: no %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, "finished") {
		t.Errorf("drove status --status cancelled lists a finished job:\n%s", out)
	}
	// With a wrong secret: refused.
	var o, e bytes.Buffer
	if code := run(t.Context(), []string{"status", "--secret", "wrong", addr}, strings.NewReader(""), &o, &e); code == 0 || !strings.Contains(e.String(), "drove: ") {
		t.Errorf("drove status with a wrong secret: exit %d, stderr %q", code, e.String())
	}
}

// TestDemoMonitor runs drove demo --monitor: the client serves the
// monitor's API (its jobs, its embedded node) and /metrics on a loopback
// port of its own while the jobs run.
func TestDemoMonitor(t *testing.T) {
	t.Setenv("DROVE_SECRET", "")
	var stderr syncbuf.Buffer
	done := make(chan int, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		done <- run(ctx, []string{"demo", "--monitor", "127.0.0.1:0", "--cpus", "2", "--jobs", "6", "--unit", "300ms"}, strings.NewReader(""), io.Discard, &stderr)
	}()
	re := regexp.MustCompile(`monitor at (http://\S+/)`)
	var base string
	deadline := time.Now().Add(time.Minute)
	for base == "" {
		if m := re.FindStringSubmatch(stderr.String()); m != nil {
			base = m[1]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no monitor address in drove demo's stderr: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var st monitor.Status
	for {
		resp, err := http.Get(base + "api/status")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Jobs) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no jobs on the monitor: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.Kind != "client" || st.Name != "drove.demo" || len(st.Nodes) != 1 || st.Nodes[0].CPUs != 2 || len(st.Computations) != 1 || st.Computations[0].What != "drove.demo" {
		t.Errorf("client monitor status: %+v", st)
	}
	if !slices.Contains(st.Actions, monitor.ActCancel) || st.CSRF == "" {
		t.Errorf("client monitor actions %v, csrf %q: want cancel and a token", st.Actions, st.CSRF)
	}
	resp, err := http.Get(base + "metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /metrics: %s", resp.Status)
	}
	if code := <-done; code != 0 {
		t.Errorf("drove demo exit %d: %s", code, stderr.String())
	}
	if _, err := http.Get(base + "api/status"); err == nil {
		t.Error("the monitor still serves after drove demo ended")
	}
}

// TestRunMonitor runs drove run --monitor: the monitor lists the commands
// with their host and exit codes while the run goes on.
func TestRunMonitor(t *testing.T) {
	t.Setenv("DROVE_SECRET", "")
	dir := t.TempDir()
	var stderr syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(t.Context(), []string{"run", "--monitor", "127.0.0.1:0", "-j", "3", "f={}; while [ ! -e " + dir + "/$f ]; do sleep 0.05; done; exit $f", ":::", "0", "3", "9"}, strings.NewReader(""), io.Discard, &stderr)
	}()
	re := regexp.MustCompile(`monitor at (http://\S+/)`)
	deadline := time.Now().Add(time.Minute)
	var base string
	for base == "" {
		if m := re.FindStringSubmatch(stderr.String()); m != nil {
			base = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no monitor address in drove run's stderr: %s", stderr.String())
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, f := range []string{"0", "3"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for {
		resp, err := http.Get(base + "api/status")
		if err != nil {
			t.Fatal(err)
		}
		var st monitor.Status
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, j := range st.Jobs {
			code := "-"
			if j.ExitCode != nil {
				code = fmt.Sprint(*j.ExitCode)
			}
			got[j.Command] = j.Status + " " + code + " " + j.Node
		}
		want := map[string]string{
			"f=0; while [ ! -e " + dir + "/$f ]; do sleep 0.05; done; exit $f": "finished 0 :",
			"f=3; while [ ! -e " + dir + "/$f ]; do sleep 0.05; done; exit $f": "terminated 3 :",
			"f=9; while [ ! -e " + dir + "/$f ]; do sleep 0.05; done; exit $f": "running - :",
		}
		if fmt.Sprint(got) == fmt.Sprint(want) && st.Kind == "run" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("drove run's monitor: jobs %v, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The same address serves the run's metrics: two commands ended, one
	// each way, one runs, on one host (this machine).
	resp, err := http.Get(base + "metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range []string{
		`drove_jobs_total{status="finished"} 1`,
		`drove_jobs_total{status="terminated"} 1`,
		`drove_jobs_running 1`,
		`drove_nodes{state="up"} 1`,
	} {
		if !strings.Contains(string(body), line+"\n") {
			t.Errorf("drove run's /metrics has no %q:\n%s", line, body)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "9"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := <-done; code != 2 {
		t.Errorf("drove run exit %d, want 2 (two commands failed): %s", code, stderr.String())
	}
}
