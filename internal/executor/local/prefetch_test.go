package local

import "testing"

// Workers queue 16 small jobs each, but only 2 once inputs run large.
func TestPrefetchFollowsInputSize(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input int
		want  int
	}{
		{"no inputs yet", -1, prefetchPerWorker * 3},
		{"small inputs", 100, prefetchPerWorker * 3},
		{"large inputs", 1 << 20, 2 * 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &Executor{cfg: Config{Func: "f", Slots: 3}}
			for range 50 {
				if tc.input >= 0 {
					e.noteInput(tc.input)
				}
			}
			if got := e.Prefetch(); got != tc.want {
				t.Errorf("Prefetch() = %d after inputs of %d bytes, want %d", got, tc.input, tc.want)
			}
		})
	}
}
