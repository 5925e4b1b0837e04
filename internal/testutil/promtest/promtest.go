// Package promtest reads Prometheus metrics for tests: a daemon's /metrics
// scraped over HTTP and parsed as a Prometheus server would (expfmt), or a
// registry gathered directly, and the value of one series in them.
package promtest

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families are metric families by name.
type Families map[string]*dto.MetricFamily

// Scrape gets http://addr/metrics and parses it in the text format.
func Scrape(t testing.TB, addr string) Families {
	t.Helper()
	fams, err := TryScrape(addr)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// TryScrape is Scrape returning its error, for polling.
func TryScrape(addr string) (Families, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing /metrics: %w", err)
	}
	return fams, nil
}

// Gather gathers reg.
func Gather(t testing.TB, reg prometheus.Gatherer) Families {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	fams := Families{}
	for _, mf := range mfs {
		fams[mf.GetName()] = mf
	}
	return fams
}

// Value returns the value of the series of name whose labels include
// labels (name, value pairs): a counter's or gauge's value, a histogram's
// sample count; summed over every matching series. A missing family or
// series is 0 and found false.
func (f Families) Value(name string, labels ...string) (v float64, found bool) {
	mf, ok := f[name]
	if !ok {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		found = true
		switch {
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		case m.Histogram != nil:
			v += float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			v += m.Untyped.GetValue()
		}
	}
	return v, found
}

// Get is Value without found.
func (f Families) Get(name string, labels ...string) float64 {
	v, _ := f.Value(name, labels...)
	return v
}

// Names returns the family names, sorted.
func (f Families) Names() []string {
	var names []string
	for n := range f {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Type returns the family's type, or "" if it is missing.
func (f Families) Type(name string) string {
	if mf, ok := f[name]; ok {
		return strings.ToLower(mf.GetType().String())
	}
	return ""
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		ok := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}
