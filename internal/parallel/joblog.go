package parallel

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"
)

// JobLogHeader is the first line of a joblog, exactly as GNU parallel
// writes it.
const JobLogHeader = "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n"

// LogEntry is one line of a joblog.
type LogEntry struct {
	Seq      int
	Host     string
	Start    time.Time
	Runtime  time.Duration
	Send     int64
	Receive  int64
	Exitval  int
	Signal   int
	Command  string
	finished bool // parsed: Exitval and Signal are both 0
}

// format writes e as GNU parallel does: the start as Unix seconds with
// three decimals, the runtime right-aligned in ten columns with three
// decimals. A newline in the command would end the line, so it is written
// as a space, as GNU parallel's joblog does for multi-line commands.
func (e LogEntry) format() string {
	start := float64(e.Start.UnixNano()) / 1e9
	cmd := strings.NewReplacer("\n", " ", "\t", " ").Replace(e.Command)
	return fmt.Sprintf("%d\t%s\t%.3f\t%10.3f\t%d\t%d\t%d\t%d\t%s\n",
		e.Seq, e.Host, start, e.Runtime.Seconds(), e.Send, e.Receive, e.Exitval, e.Signal, cmd)
}

// ParseJobLog reads a joblog, skipping its header. Lines that do not parse
// (a torn last line after a crash) are ignored, as GNU parallel does.
func ParseJobLog(r io.Reader) ([]LogEntry, error) {
	var out []LogEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), "\t", 9)
		if len(f) != 9 {
			continue
		}
		seq, err := strconv.Atoi(f[0])
		if err != nil {
			continue // the header, or garbage
		}
		e := LogEntry{Seq: seq, Host: f[1], Command: f[8]}
		if s, err := strconv.ParseFloat(f[2], 64); err == nil {
			e.Start = time.Unix(0, int64(s*1e9))
		}
		if s, err := strconv.ParseFloat(strings.TrimSpace(f[3]), 64); err == nil {
			e.Runtime = time.Duration(s * 1e9)
		}
		e.Send, _ = strconv.ParseInt(f[4], 10, 64)
		e.Receive, _ = strconv.ParseInt(f[5], 10, 64)
		var err1, err2 error
		e.Exitval, err1 = strconv.Atoi(f[6])
		e.Signal, err2 = strconv.Atoi(f[7])
		if err1 != nil || err2 != nil {
			continue
		}
		e.finished = e.Exitval == 0 && e.Signal == 0
		out = append(out, e)
	}
	return out, sc.Err()
}

// resumeSet returns the sequence numbers a resumed run skips: every logged
// one, or with onlyOK the ones that succeeded (--resume-failed reruns the
// rest).
func resumeSet(file string, onlyOK bool) (map[int]bool, error) {
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return map[int]bool{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries, err := ParseJobLog(f)
	if err != nil {
		return nil, fmt.Errorf("joblog %s: %w", file, err)
	}
	skip := map[int]bool{}
	for _, e := range entries {
		if !onlyOK || e.finished {
			skip[e.Seq] = true
		}
	}
	// A job that failed and was later rerun successfully is done.
	return skip, nil
}

// openJobLog opens the joblog for writing: appended to when resuming,
// otherwise truncated. The header is written to a new or empty file.
func openJobLog(file string, resume bool) (*os.File, error) {
	flags := os.O_WRONLY | os.O_CREATE
	if resume {
		flags |= os.O_APPEND
	} else {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(file, flags, 0o644)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err == nil && fi.Size() == 0 {
		if _, err := io.WriteString(f, JobLogHeader); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}
