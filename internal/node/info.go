package node

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
)

// infoSampler measures what the node has free, as dispy's
// DispyNodeAvailInfo: CPU from /proc/stat deltas, memory and swap from
// /proc/meminfo, disk from statfs on the node's directory. Values the system
// does not offer stay zero.
type infoSampler struct {
	dir string

	mu         sync.Mutex
	at         time.Time
	last       *drovev1.AvailInfo
	idle, totl uint64
}

func newInfoSampler(dir string) *infoSampler { return &infoSampler{dir: dir} }

// cached returns the latest sample, refreshing it at most once a second.
func (s *infoSampler) cached() *drovev1.AvailInfo {
	s.mu.Lock()
	fresh := s.last != nil && time.Since(s.at) < time.Second
	last := s.last
	s.mu.Unlock()
	if fresh {
		return last
	}
	return s.sample()
}

func (s *infoSampler) sample() *drovev1.AvailInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := &drovev1.AvailInfo{CpuFreePercent: 100}
	if idle, total, ok := readCPU(); ok {
		if s.totl != 0 && total > s.totl {
			a.CpuFreePercent = 100 * float64(idle-s.idle) / float64(total-s.totl)
		} else if total > 0 {
			a.CpuFreePercent = 100 * float64(idle) / float64(total)
		}
		s.idle, s.totl = idle, total
	}
	if mi, err := os.ReadFile("/proc/meminfo"); err == nil {
		m := parseMeminfo(mi)
		a.MemoryAvailable = m["MemAvailable"]
		if st := m["SwapTotal"]; st > 0 {
			a.SwapUsedPercent = 100 * float64(st-min(st, m["SwapFree"])) / float64(st)
		}
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(s.dir, &fs); err == nil {
		a.DiskAvailable = fs.Bavail * uint64(fs.Bsize)
	}
	s.last, s.at = a, time.Now()
	return a
}

func readCPU() (idle, total uint64, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, false
	}
	for i, v := range f[1:] {
		x, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		total += x
		if i == 3 || i == 4 { // idle, iowait
			idle += x
		}
	}
	return idle, total, true
}

// parseMeminfo returns /proc/meminfo's values in bytes.
func parseMeminfo(b []byte) map[string]uint64 {
	m := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		x, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			x *= 1024
		}
		m[k] = x
	}
	return m
}
