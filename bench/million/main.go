// Command million submits a million no-op jobs to an embedded cluster and
// reports the client's peak resident memory (VmHWM), the number the
// one-million-jobs target is about. Workers are separate processes with
// their own, small, memory.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/drove-dev/drove"
)

var noop = drove.Func("million.noop", func(ctx context.Context, n int) (int, error) { return n, nil })

func main() {
	drove.Main()
	n := flag.Int("n", 1_000_000, "jobs to run")
	flag.Parse()
	ctx := context.Background()
	c, err := drove.NewCluster(ctx, noop)
	if err != nil {
		log.Fatal(err)
	}
	start := time.Now()
	for i := range *n {
		// Results are not kept: a producer of a million jobs reads them
		// through callbacks or Wait, not by holding every Job.
		if _, err := c.Submit(ctx, i); err != nil {
			log.Fatal(err)
		}
	}
	if err := c.Close(ctx); err != nil {
		log.Fatal(err)
	}
	elapsed := time.Since(start)
	st := c.Stats()
	done := 0
	for _, nd := range st.Nodes {
		done += nd.Jobs
	}
	fmt.Printf("jobs %d done %d in %.2fs (%.0f jobs/s), client peak RSS %s\n",
		*n, done, elapsed.Seconds(), float64(*n)/elapsed.Seconds(), peakRSS())
}

func peakRSS() string {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
