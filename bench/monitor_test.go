package bench

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"testing"

	"github.com/drove-dev/drove"
	"github.com/drove-dev/drove/internal/monitor"
)

// BenchmarkMonitorStatus100k runs 100,000 jobs on an embedded cluster
// with a web monitor (drove.WithMonitor), then measures loading the
// monitor's snapshot (GET /api/status, what the page and drove status
// read first) and the memory the cluster holds afterwards: the monitor
// keeps the latest monitor.DefaultKeep jobs and counts the rest, so the
// heap does not grow with the jobs run.
//
//	go test -run '^$' -bench MonitorStatus -benchtime 200x ./bench/
func BenchmarkMonitorStatus100k(b *testing.B) {
	const jobs = 100_000
	ctx := context.Background()
	c, err := drove.NewCluster(ctx, noop, drove.WithMonitor("127.0.0.1:0"), drove.WithCPUs(2), drove.WithMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(ctx)
	for i := range jobs {
		if _, err := c.Submit(ctx, i); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	url := "http://" + c.MonitorAddr() + "/api/status?limit=50"
	get := func() (monitor.Status, int) {
		resp, err := http.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("GET /api/status: %v %s", err, resp.Status)
		}
		var st monitor.Status
		if err := json.Unmarshal(body, &st); err != nil {
			b.Fatal(err)
		}
		return st, len(body)
	}
	st, size := get()
	if got := st.Computations[0].Finished; got != jobs {
		b.Fatalf("finished %d, want %d", got, jobs)
	}
	if st.JobsTotal != monitor.DefaultKeep || len(st.Jobs) != 50 || st.JobsSeen != jobs {
		b.Fatalf("jobs kept %d, page %d, seen %d: %+v", st.JobsTotal, len(st.Jobs), st.JobsSeen, st.Computations)
	}
	b.ResetTimer()
	for b.Loop() {
		get()
	}
	b.StopTimer()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(size), "resp-bytes")
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MiB")
}

// BenchmarkRecorder measures recording a job's events in the monitor's
// ring (one started and one final event per job) once it is full: the
// cost every job pays with a monitor on.
func BenchmarkRecorder(b *testing.B) {
	r := monitor.NewRecorder(0)
	for b.Loop() {
		recordOne(r)
	}
}
