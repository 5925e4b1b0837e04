package parallel

import (
	"fmt"
	"strconv"
	"strings"
)

// HaltWhen says how a run stops once its halt condition is met.
type HaltWhen int

// Halt modes.
const (
	HaltNever HaltWhen = iota // run every job
	HaltSoon                  // start no new jobs; let running ones finish
	HaltNow                   // kill running jobs at once
)

// Halt is a parsed --halt option: stop When the number (or percentage) of
// jobs that ended the way On says reaches Count (or Percent).
type Halt struct {
	When    HaltWhen
	On      string  // "fail", "success" or "done"
	Count   int     // absolute threshold, or 0
	Percent float64 // percentage threshold, or 0
}

// ParseHalt parses GNU parallel's --halt values: "never",
// "soon|now,fail|success|done=N|N%", and the old numeric forms (0 never,
// 1 soon,fail=1, 2 now,fail=1, -1 soon,success=1, -2 now,success=1, and
// "N%" soon,fail=N%).
func ParseHalt(s string) (Halt, error) {
	switch s {
	case "", "never", "0":
		return Halt{}, nil
	case "1":
		return Halt{When: HaltSoon, On: "fail", Count: 1}, nil
	case "2":
		return Halt{When: HaltNow, On: "fail", Count: 1}, nil
	case "-1":
		return Halt{When: HaltSoon, On: "success", Count: 1}, nil
	case "-2":
		return Halt{When: HaltNow, On: "success", Count: 1}, nil
	}
	if strings.HasSuffix(s, "%") && !strings.Contains(s, ",") {
		s = "soon,fail=" + s
	}
	when, cond, ok := strings.Cut(s, ",")
	h := Halt{}
	switch when {
	case "soon":
		h.When = HaltSoon
	case "now":
		h.When = HaltNow
	default:
		return Halt{}, fmt.Errorf("--halt %q: want never, soon,… or now,…", s)
	}
	on, val, ok2 := strings.Cut(cond, "=")
	if !ok || !ok2 {
		return Halt{}, fmt.Errorf("--halt %q: want %s,fail=N, success=N or done=N (or N%%)", s, when)
	}
	switch on {
	case "fail", "success", "done":
		h.On = on
	default:
		return Halt{}, fmt.Errorf("--halt %q: unknown condition %q", s, on)
	}
	if p, isPct := strings.CutSuffix(val, "%"); isPct {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || f <= 0 || f > 100 {
			return Halt{}, fmt.Errorf("--halt %q: bad percentage", s)
		}
		h.Percent = f
		return h, nil
	}
	n, err := strconv.Atoi(val)
	if err != nil || n < 1 {
		return Halt{}, fmt.Errorf("--halt %q: bad count", s)
	}
	h.Count = n
	return h, nil
}

// met reports whether the condition holds after done jobs of which failed
// failed. A percentage needs at least three jobs done, as in GNU parallel.
func (h Halt) met(done, failed int) bool {
	if h.When == HaltNever || done == 0 {
		return false
	}
	var n int
	switch h.On {
	case "fail":
		n = failed
	case "success":
		n = done - failed
	default:
		n = done
	}
	if h.Percent > 0 {
		return done >= 3 && float64(n)*100 >= h.Percent*float64(done)
	}
	return n >= h.Count
}
