package node

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	dmetrics "github.com/drove-dev/drove/internal/metrics"
)

// droveMetrics returns every drove metric a daemon can expose — the node
// daemon's own, the shared job and node metrics, a scheduler's links —
// with whether it is a histogram.
func droveMetrics(t *testing.T) map[string]bool {
	t.Helper()
	m := newMetrics(nil, nil)
	dmetrics.NewLinks(m.reg)
	// Gather leaves out a vector until it has a child.
	m.jobsDone.WithLabelValues("ok")
	m.dropped.WithLabelValues("bound")
	m.jobs.Dispatched("n")
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "drove_") {
			names[mf.GetName()] = mf.GetType() == dto.MetricType_HISTOGRAM
		}
	}
	if len(names) < 20 {
		t.Fatalf("only %d drove metrics found: %v", len(names), names)
	}
	return names
}

var metricName = regexp.MustCompile(`\bdrove_[a-z_]*[a-z]\b`)

// base is a series name's metric: a histogram's _bucket, _sum and _count
// series are its own.
func base(name string, metrics map[string]bool) (string, bool) {
	if _, ok := metrics[name]; ok {
		return name, true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(name, suf); ok && metrics[b] {
			return b, true
		}
	}
	return name, false
}

// TestGrafanaDashboard checks that docs/grafana/drove.json is a dashboard
// whose panels query only metrics that exist, and that together they show
// every shared job and node metric.
func TestGrafanaDashboard(t *testing.T) {
	metrics := droveMetrics(t)
	data, err := os.ReadFile("../../docs/grafana/drove.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("docs/grafana/drove.json: %v", err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("not a dashboard: title %q, uid %q, %d panels", dash.Title, dash.UID, len(dash.Panels))
	}
	used := map[string]bool{}
	check := func(where, expr string) {
		for _, n := range metricName.FindAllString(expr, -1) {
			b, ok := base(n, metrics)
			if !ok {
				t.Errorf("%s: %s is not a drove metric (in %q)", where, n, expr)
			}
			used[b] = true
		}
	}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Expr == "" {
				t.Errorf("panel %q has an empty query", p.Title)
			}
			check("panel "+p.Title, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		check("variable", v.Definition)
	}
	for _, n := range []string{
		"drove_jobs_total", "drove_jobs_pending", "drove_jobs_running", "drove_job_run_seconds",
		"drove_job_queue_wait_seconds", "drove_jobs_dispatched_total", "drove_nodes", "drove_nodes_lost_total",
		"drove_blob_sent_bytes_total", "drove_blob_received_bytes_total", "drove_heartbeat_misses_total",
	} {
		if !used[n] {
			t.Errorf("no panel shows %s", n)
		}
	}
}

// TestMetricsDoc checks that docs/metrics.md describes every drove metric
// and names none that does not exist.
func TestMetricsDoc(t *testing.T) {
	metrics := droveMetrics(t)
	data, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	// A metric is described in a table row that starts with its name.
	for n := range metrics {
		if !strings.Contains(doc, "| `"+n+"` |") {
			t.Errorf("docs/metrics.md has no row for %s", n)
		}
	}
	var unknown []string
	for _, n := range metricName.FindAllString(doc, -1) {
		if _, ok := base(n, metrics); !ok && !slices.Contains(unknown, n) {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		t.Errorf("docs/metrics.md names metrics that do not exist: %v", unknown)
	}
}
